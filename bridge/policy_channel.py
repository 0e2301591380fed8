"""The trainer's end of the policy side channel: push ONNX models to a game, track what it runs.

:meth:`PolicyChannel.push` splits a model into chunk messages (``policy_wire.encode_policy``) that leave
with the next reset or step; the game reassembles them, checks the SHA-256 and answers with one
acknowledgement per model (version, hash, ok or the reason it was rejected), which arrives with a later
output. The channel keeps, per behaviour, the version the game *runs* (the newest accepted one) and the last
acknowledgement of any kind, so a rejected push never hides which policy is still in charge.

Message format: ``protos/unimarl/policy_channel.proto``; rules: :mod:`unimarl.protos.policy_wire`. Register
the channel with a :class:`~unimarl.bridge.connection.UnityConnection` (``side_channels=[channel]``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

from unimarl.bridge.errors import SideChannelError
from unimarl.bridge.side_channels import IncomingMessage, SideChannel
from unimarl.protos.policy_wire import (
    DEFAULT_CHUNK_SIZE,
    POLICY_CHANNEL_ID,
    PolicyAck,
    PolicyRejectedError,
    RejectReason,
    decode_ack,
    encode_policy,
)

logger = logging.getLogger(__name__)

__all__ = ["POLICY_CHANNEL_ID", "PolicyChannel", "PolicyChannelError", "PolicyStatus", "RejectReason"]


class PolicyChannelError(SideChannelError):
    """A model could not be pushed (bad arguments), or an acknowledgement from the game does not parse."""


@dataclass(frozen=True)
class PolicyStatus:
    """What the trainer knows about one behaviour's policy in one game."""

    running_version: int | None
    """Newest version the game acknowledged as loaded (None: it still runs whatever it started with)."""
    running_sha256: bytes
    last_ack: PolicyAck | None
    """The most recent acknowledgement, accepted or not."""
    pushed_version: int | None
    """Newest version pushed to the game."""
    round_trip_s: float | None
    """Seconds from the push of ``last_ack``'s model to its acknowledgement (None if not measured)."""


class PolicyChannel(SideChannel):
    """Side channel ``7f3c2a91-5b6e-4d08-9c1a-2e4b6d8f0a13``: models out, acknowledgements in."""

    def __init__(self, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        super().__init__(POLICY_CHANNEL_ID)
        self.chunk_size = chunk_size
        self._status: dict[str, PolicyStatus] = {}
        self._pushed_at: dict[tuple[str, int, bytes], float] = {}
        self._acks: list[PolicyAck] = []

    def push(self, behavior: str, version: int, model: bytes) -> bytes:
        """Queue ``model`` as ``version`` of ``behavior`` for the next exchange; returns its SHA-256."""
        if version < 0:
            raise PolicyChannelError(f"model version {version} is negative: number versions from 0")
        try:
            payloads = encode_policy(behavior, version, model, self.chunk_size)
        except PolicyRejectedError as e:
            raise PolicyChannelError(f"cannot push a model for {behavior!r}: {e}") from e
        digest = hashlib.sha256(model).digest()
        self.push_payloads(behavior, version, digest, payloads)
        return digest

    def push_payloads(self, behavior: str, version: int, sha256: bytes, payloads: list[bytes]) -> None:
        """Queue chunk payloads as they are (tests and fault injection send hand-made or damaged chunks)."""
        with self._lock:
            self._outgoing.extend(payloads)
            self._pushed_at[(behavior, version, sha256)] = time.perf_counter()
            old = self._status.get(behavior, PolicyStatus(None, b"", None, None, None))
            self._status[behavior] = PolicyStatus(
                old.running_version, old.running_sha256, old.last_ack, version, old.round_trip_s
            )
        logger.info("pushing %s v%d (%d chunk messages)", behavior, version, len(payloads))

    def on_message_received(self, msg: IncomingMessage) -> None:
        try:
            ack = decode_ack(msg.get_raw_bytes())
        except PolicyRejectedError as e:
            raise PolicyChannelError(f"the game sent a policy acknowledgement that is unreadable: {e}") from e
        with self._lock:
            sent = self._pushed_at.pop((ack.behavior, ack.version, ack.sha256), None)
            round_trip = None if sent is None else time.perf_counter() - sent
            old = self._status.get(ack.behavior, PolicyStatus(None, b"", None, None, None))
            running = (ack.version, ack.sha256) if ack.ok else (old.running_version, old.running_sha256)
            self._status[ack.behavior] = PolicyStatus(
                running[0], running[1], ack, old.pushed_version, round_trip
            )
            self._acks.append(ack)
        if ack.ok:
            logger.info("game runs %s v%d", ack.behavior, ack.version)
        else:
            logger.warning(
                "game rejected %s v%d (%s): %s; it keeps its previous policy",
                ack.behavior,
                ack.version,
                ack.reason.name,
                ack.error,
            )

    def status(self) -> dict[str, PolicyStatus]:
        """Per behaviour: the running version, the last acknowledgement, the newest pushed version."""
        with self._lock:
            return dict(self._status)

    def running_versions(self) -> dict[str, int | None]:
        """Per pushed behaviour, the version the game runs (None: none of the pushed models yet)."""
        return {behavior: s.running_version for behavior, s in self.status().items()}

    def pop_acks(self) -> list[PolicyAck]:
        """Every acknowledgement received since the last call, in arrival order."""
        with self._lock:
            acks, self._acks = self._acks, []
        return acks

    def awaiting_ack(self) -> int:
        """Number of pushed models not acknowledged yet."""
        with self._lock:
            return len(self._pushed_at)
