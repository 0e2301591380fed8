"""Codec of the policy side channel (hot-swap): chunking, reassembly and acknowledgements, on bytes.

Pure wire code shared by the trainer (:mod:`unimarl.bridge.policy_channel`) and the stand-in games
(:mod:`unimarl.sim.policy_runner`); it depends on protobuf only.

Messages are defined in ``protos/unimarl/policy_channel.proto``; one side-channel payload is one serialized
message. The trainer splits a model with :func:`encode_policy` into :class:`PolicyChunkProto` payloads (chunk
0 first); the game feeds each payload to a :class:`PolicyAssembler`, which returns the complete model after
its last chunk, and answers with :func:`encode_ack`. The C# plug-in (``unity_project/.../PolicyCodec.cs``)
implements the same assembler with the same rejection reasons; the stand-in games use this module.

Assembler rules, checked in this order for every payload (the C# codec follows the same order):

1. the payload does not parse, the behaviour name is empty, the hash is not 32 bytes, ``chunk_count < 1``,
   ``chunk_index`` outside ``[0, chunk_count)`` or ``total_size < 0``: ``CORRUPT``;
2. a chunk other than chunk 0 of a transfer rejected before (same behaviour, version and hash) is ignored, so
   one bad transfer yields one rejection;
3. ``total_size`` above the assembler's maximum model size: ``OVERSIZED``;
4. chunk 0 starts a transfer (replacing an unfinished one of the same behaviour), unless the same transfer
   (version and hash) is already under way: ``DUPLICATE_CHUNK``. Any other chunk needs the transfer of its
   behaviour with the same version and hash under way, else ``OUT_OF_ORDER``; a different ``total_size`` or
   ``chunk_count`` than chunk 0 declared: ``CORRUPT``; an index already received: ``DUPLICATE_CHUNK``; an
   index past the next expected one: ``OUT_OF_ORDER``;
5. more bytes than ``total_size``: ``CORRUPT``;
6. after the last chunk: fewer bytes than ``total_size``: ``TRUNCATED``; a SHA-256 other than declared:
   ``HASH_MISMATCH``; otherwise the model is complete.

A rejection from rule 3 on ends the transfer it belongs to (a stale chunk of a replaced transfer does not end
the current one). "Does not parse" follows protobuf's rules: a payload cut inside a field, a bad wire type or
invalid UTF-8 in the name fails; a payload cut exactly between fields parses (its missing data is caught by
the size checks).
"""

from __future__ import annotations

import enum
import hashlib
import logging
import math
import uuid
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from unimarl.protos._generated.policy_channel_pb2 import PolicyAckProto, PolicyChunkProto

logger = logging.getLogger(__name__)

POLICY_CHANNEL_ID = uuid.UUID("7f3c2a91-5b6e-4d08-9c1a-2e4b6d8f0a13")
"""Side-channel GUID of the policy channel (same in the C# plug-in)."""
DEFAULT_CHUNK_SIZE = 512 * 1024
"""Bytes of model per chunk message."""
MAX_MODEL_SIZE = 64 * 1024 * 1024
"""Default largest model a game accepts."""
SHA256_SIZE = 32


class RejectReason(enum.IntEnum):
    """Why a game rejected a model (``PolicyRejectReasonProto``); ``ACCEPTED`` means it did not."""

    ACCEPTED = 0
    CORRUPT = 1
    TRUNCATED = 2
    OVERSIZED = 3
    HASH_MISMATCH = 4
    OUT_OF_ORDER = 5
    DUPLICATE_CHUNK = 6
    LOAD_FAILED = 7


class PolicyRejectedError(ValueError):
    """A policy chunk was rejected: ``reason`` says why; ``behavior``/``version`` name the transfer.

    A ``ValueError`` (the wire layer has no error root of its own, as :class:`WireFormatError`); the bridge
    reports it to callers as :class:`~unimarl.bridge.policy_channel.PolicyChannelError`.
    """

    def __init__(
        self, reason: RejectReason, message: str, behavior: str = "", version: int = 0, sha256: bytes = b""
    ) -> None:
        super().__init__(f"{reason.name}: {message}")
        self.reason = reason
        self.behavior = behavior
        self.version = version
        self.sha256 = sha256


@dataclass(frozen=True)
class ReceivedPolicy:
    """A complete, hash-checked model."""

    behavior: str
    version: int
    sha256: bytes
    model: bytes


@dataclass(frozen=True)
class PolicyAck:
    """A game's answer to one model."""

    behavior: str
    version: int
    sha256: bytes
    ok: bool
    reason: RejectReason
    error: str


def encode_policy(
    behavior: str, version: int, model: bytes, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> list[bytes]:
    """Split ``model`` into serialized :class:`PolicyChunkProto` payloads, chunk 0 first (>= 1 chunk)."""
    if chunk_size < 1:
        raise PolicyRejectedError(RejectReason.CORRUPT, f"chunk_size {chunk_size} must be at least 1 byte")
    if not behavior:
        raise PolicyRejectedError(RejectReason.CORRUPT, "behaviour name is empty: pass the behaviour's name")
    digest = hashlib.sha256(model).digest()
    count = max(1, math.ceil(len(model) / chunk_size))
    return [
        PolicyChunkProto(
            behavior_name=behavior,
            model_version=version,
            sha256=digest,
            total_size=len(model),
            chunk_index=i,
            chunk_count=count,
            data=model[i * chunk_size : (i + 1) * chunk_size],
        ).SerializeToString()
        for i in range(count)
    ]


def encode_ack(behavior: str, version: int, sha256: bytes, reason: RejectReason, error: str = "") -> bytes:
    """Serialized :class:`PolicyAckProto`; ``ok`` is true exactly when ``reason`` is ``ACCEPTED``."""
    ok = reason == RejectReason.ACCEPTED
    return PolicyAckProto(
        behavior_name=behavior, model_version=version, sha256=sha256, ok=ok, reason=int(reason), error=error
    ).SerializeToString()


def decode_ack(payload: bytes) -> PolicyAck:
    """Parse an acknowledgement; raises :class:`PolicyRejectedError` (``CORRUPT``) when it does not parse."""
    proto = PolicyAckProto()
    try:
        proto.ParseFromString(payload)
    except DecodeError as e:
        raise PolicyRejectedError(RejectReason.CORRUPT, f"acknowledgement does not parse: {e}") from e
    try:
        reason = RejectReason(proto.reason)
    except ValueError as e:
        raise PolicyRejectedError(RejectReason.CORRUPT, f"unknown reject reason {proto.reason}") from e
    return PolicyAck(proto.behavior_name, proto.model_version, proto.sha256, proto.ok, reason, proto.error)


@dataclass
class _Transfer:
    version: int
    sha256: bytes
    total_size: int
    chunk_count: int
    next_index: int
    data: bytearray


class PolicyAssembler:
    """Reassembles chunked models, one transfer per behaviour at a time (rules in the module docstring)."""

    def __init__(self, max_model_size: int = MAX_MODEL_SIZE) -> None:
        self.max_model_size = max_model_size
        self._transfers: dict[str, _Transfer] = {}
        self._aborted: dict[str, tuple[int, bytes]] = {}

    def feed(self, payload: bytes) -> ReceivedPolicy | None:
        """Take one chunk payload; return the model after its last chunk, None while incomplete or ignored.

        Raises :class:`PolicyRejectedError` with the reason when the chunk or the transfer is rejected.
        """
        chunk = self._parse(payload)
        name, key = chunk.behavior_name, (chunk.model_version, chunk.sha256)
        try:
            if chunk.chunk_index != 0 and self._aborted.get(name) == key:
                logger.debug("ignoring chunk %d of rejected transfer %s v%d", chunk.chunk_index, name, key[0])
                return None
            if chunk.total_size > self.max_model_size:
                self._reject(
                    RejectReason.OVERSIZED,
                    chunk,
                    f"model of {chunk.total_size} bytes exceeds the "
                    f"maximum of {self.max_model_size}: raise the game's limit or shrink the network",
                )
            transfer = self._transfer_for(chunk)
            if len(transfer.data) + len(chunk.data) > transfer.total_size:
                self._reject(
                    RejectReason.CORRUPT,
                    chunk,
                    f"chunk {chunk.chunk_index} brings the model past its "
                    f"declared {transfer.total_size} bytes",
                )
            transfer.data += chunk.data
            transfer.next_index += 1
            if transfer.next_index < transfer.chunk_count:
                return None
            return self._complete(chunk, transfer)
        except PolicyRejectedError:
            current = self._transfers.get(name)
            if current is not None and (current.version, current.sha256) == key:
                del self._transfers[name]  # a stale chunk of another transfer leaves the current one alone
            self._aborted[name] = key
            raise

    def _parse(self, payload: bytes) -> PolicyChunkProto:
        chunk = PolicyChunkProto()
        try:
            chunk.ParseFromString(payload)
        except DecodeError as e:
            raise PolicyRejectedError(
                RejectReason.CORRUPT, f"chunk of {len(payload)} bytes does not parse"
            ) from e
        problem = ""
        if not chunk.behavior_name:
            problem = "behaviour name is empty"
        elif len(chunk.sha256) != SHA256_SIZE:
            problem = f"sha256 has {len(chunk.sha256)} bytes, expected {SHA256_SIZE}"
        elif chunk.chunk_count < 1 or not 0 <= chunk.chunk_index < chunk.chunk_count:
            problem = f"chunk index {chunk.chunk_index} is outside a count of {chunk.chunk_count}"
        elif chunk.total_size < 0:
            problem = f"negative total size {chunk.total_size}"
        if problem:
            raise PolicyRejectedError(
                RejectReason.CORRUPT, problem, chunk.behavior_name, chunk.model_version, chunk.sha256
            )
        return chunk

    def _transfer_for(self, chunk: PolicyChunkProto) -> _Transfer:
        current = self._transfers.get(chunk.behavior_name)
        same = current is not None and (current.version, current.sha256) == (
            chunk.model_version,
            chunk.sha256,
        )
        if chunk.chunk_index == 0:
            if same:
                self._reject(RejectReason.DUPLICATE_CHUNK, chunk, "chunk 0 of a transfer already under way")
            if current is not None:
                logger.warning(
                    "policy transfer %s v%d replaced before it completed",
                    chunk.behavior_name,
                    current.version,
                )
            transfer = _Transfer(
                chunk.model_version, chunk.sha256, chunk.total_size, chunk.chunk_count, 0, bytearray()
            )
            self._transfers[chunk.behavior_name] = transfer
            self._aborted.pop(chunk.behavior_name, None)
            return transfer
        if current is None or not same:
            self._reject(
                RejectReason.OUT_OF_ORDER,
                chunk,
                f"chunk {chunk.chunk_index} arrived without chunk 0 of its transfer",
            )
        assert current is not None
        if (current.total_size, current.chunk_count) != (chunk.total_size, chunk.chunk_count):
            self._reject(
                RejectReason.CORRUPT,
                chunk,
                f"chunk {chunk.chunk_index} declares size/count "
                f"{chunk.total_size}/{chunk.chunk_count}, chunk 0 {current.total_size}/{current.chunk_count}",
            )
        if chunk.chunk_index < current.next_index:
            self._reject(RejectReason.DUPLICATE_CHUNK, chunk, f"chunk {chunk.chunk_index} arrived twice")
        if chunk.chunk_index > current.next_index:
            self._reject(
                RejectReason.OUT_OF_ORDER,
                chunk,
                f"chunk {chunk.chunk_index} arrived before chunk {current.next_index}",
            )
        return current

    def _complete(self, chunk: PolicyChunkProto, transfer: _Transfer) -> ReceivedPolicy:
        del self._transfers[chunk.behavior_name]
        if len(transfer.data) < transfer.total_size:
            self._reject(
                RejectReason.TRUNCATED, chunk, f"received {len(transfer.data)} of {transfer.total_size} bytes"
            )
        if hashlib.sha256(transfer.data).digest() != transfer.sha256:
            self._reject(
                RejectReason.HASH_MISMATCH, chunk, "the reassembled model does not match its SHA-256"
            )
        return ReceivedPolicy(chunk.behavior_name, transfer.version, transfer.sha256, bytes(transfer.data))

    @staticmethod
    def _reject(reason: RejectReason, chunk: PolicyChunkProto, message: str) -> None:
        raise PolicyRejectedError(
            reason,
            f"{chunk.behavior_name} v{chunk.model_version}: {message}",
            chunk.behavior_name,
            chunk.model_version,
            chunk.sha256,
        )
