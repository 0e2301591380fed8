"""The game's end of the policy side channel: receive pushed ONNX models, acknowledge them, run them.

Like the plug-in's ``PolicySideChannel`` + ``PolicyHotSwap`` in a Unity game: chunk messages on channel
``7f3c2a91-5b6e-4d08-9c1a-2e4b6d8f0a13`` are reassembled and hash-checked by
:class:`~unimarl.protos.policy_wire.PolicyAssembler`; a complete model is loaded with onnxruntime (imported
only when the first model arrives) and tried once on a zero observation, and the game answers with one
acknowledgement per model: accepted, or the reason it was rejected (corrupt, truncated, oversized, hash
mismatch, out of order, duplicate chunk, load failed). A rejected model never replaces the running one.

Which agents act from a received model depends on the behaviour type, as in Unity: with ``--behavior-type
default`` (the default) the game keeps applying the trainer's actions (a connected Unity agent of type
*Default* does the same), with ``--behavior-type inference`` (*Inference Only*) the agents of every behaviour
that has received a model act from it with its deterministic outputs, whatever the trainer sends.

Observations are fed in the layout the model declares, whatever the game's own wire layout: ML-Agents'
contract (and ``unimarl`` exports, whose manifest records ``input_shapes``) takes rank-3 observations NCHW,
so a model trained on a 3.x (CHW) game runs in a 2.x (HWC) game and the other way round; a model whose
``obs_i`` is declared ``[batch, H, W, C]`` (exported before the layout was recorded, from a 2.x game) is fed
HWC. An input that fits neither layout fails the load (acknowledged as load failed, with both shapes). Masks
are fed as ``action_masks`` with 1 = allowed. Continuous actions are the model's
``deterministic_continuous_actions`` (ML-Agents' ``clip(mean, -3, 3) / 3``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from unimarl.protos.policy_wire import (
    MAX_MODEL_SIZE,
    POLICY_CHANNEL_ID,
    PolicyAssembler,
    PolicyRejectedError,
    ReceivedPolicy,
    RejectReason,
    encode_ack,
)
from unimarl.protos.sidechannel import frame
from unimarl.sim.game import BehaviorDef

logger = logging.getLogger(__name__)

BEHAVIOR_TYPES = ("default", "inference")


@dataclass
class LoadedPolicy:
    """A received model that passed every check, and the session that runs it."""

    version: int
    sha256: bytes
    session: Any  # onnxruntime.InferenceSession
    input_names: tuple[str, ...]
    channels_first: tuple[bool, ...] = ()
    """Per observation: the model takes it CHW (the game's arrays are HWC, so they are transposed)."""


class PolicyRunner:
    """Receives, acknowledges and runs pushed policies for one game (see the module docstring)."""

    def __init__(self, chw: bool, inference: bool = False, max_model_size: int = MAX_MODEL_SIZE) -> None:
        self.chw = chw  # the game's wire layout: only logged, models declare the layout they take
        self.inference = inference
        self.assembler = PolicyAssembler(max_model_size)
        self.policies: dict[str, LoadedPolicy] = {}
        self._acks: list[bytes] = []

    def receive(self, payload: bytes, behaviors: Mapping[str, BehaviorDef]) -> None:
        """Feed one chunk message; queue an acknowledgement when a model completes or is rejected."""
        try:
            received = self.assembler.feed(payload)
        except PolicyRejectedError as e:
            logger.warning("policy rejected: %s; keeping the previous policy", e)
            self._acks.append(encode_ack(e.behavior, e.version, e.sha256, e.reason, str(e)))
            return
        if received is not None:
            self._install(received, behaviors)

    def _install(self, received: ReceivedPolicy, behaviors: Mapping[str, BehaviorDef]) -> None:
        behavior = behaviors.get(received.behavior)
        try:
            if behavior is None:
                raise ValueError(
                    f"this game has no behaviour {received.behavior!r} (it has {sorted(behaviors)})"
                )
            loaded = _load(received, behavior)
        except Exception as e:  # onnxruntime raises its own types; any failure means the model cannot run
            logger.warning("policy %s v%d failed to load: %s", received.behavior, received.version, e)
            self._acks.append(
                encode_ack(
                    received.behavior, received.version, received.sha256, RejectReason.LOAD_FAILED, str(e)
                )
            )
            return
        self.policies[received.behavior] = loaded
        assert behavior is not None
        pairs = zip(behavior.observations, loaded.channels_first, strict=True)
        visual = sorted({"CHW" if first else "HWC" for o, first in pairs if len(o.shape) == 3})
        logger.info(
            "running policy %s v%d (images fed %s; the game's wire layout is %s)",
            received.behavior,
            received.version,
            "/".join(visual) or "-",
            "CHW" if self.chw else "HWC",
        )
        self._acks.append(
            encode_ack(received.behavior, received.version, received.sha256, RejectReason.ACCEPTED)
        )

    def pop_ack_frames(self) -> bytes:
        """Side-channel bytes with every queued acknowledgement (sent with the next output)."""
        acks, self._acks = self._acks, []
        return frame((POLICY_CHANNEL_ID, ack) for ack in acks)

    def acts_for(self, behavior: str) -> bool:
        """Whether agents of ``behavior`` act from a received model instead of the trainer's actions."""
        return self.inference and behavior in self.policies

    def act(
        self, behavior: BehaviorDef, obs: list[np.ndarray], mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Deterministic actions (float32 ``[n, c]``, int32 ``[n, branches]``) of the received model."""
        return _act(self.policies[behavior.name], behavior, obs, mask)


def _act(
    policy: LoadedPolicy, behavior: BehaviorDef, obs: list[np.ndarray], mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`PolicyRunner.act` with ``policy``."""
    feed = _feed(behavior, obs, mask, policy.channels_first)
    n = len(obs[0])
    names = ["deterministic_continuous_actions", "deterministic_discrete_actions"]
    wanted = [names[0]] * bool(behavior.num_continuous) + [names[1]] * bool(behavior.discrete_branches)
    results = dict(zip(wanted, policy.session.run(wanted, feed), strict=True))
    continuous = np.asarray(results.get(names[0], np.zeros((n, 0))), np.float32)
    discrete = np.asarray(results.get(names[1], np.zeros((n, 0))), np.int32)
    return continuous, discrete


def _feed(
    behavior: BehaviorDef, obs: list[np.ndarray], mask: np.ndarray | None, channels_first: tuple[bool, ...]
) -> dict:
    """The model's inputs for a batch of agents (game arrays, rank-3 ones HWC, in the model's layout)."""
    feed: dict[str, np.ndarray] = {}
    for i, data in enumerate(obs):
        array = np.asarray(data, np.float32)
        feed[f"obs_{i}"] = array.transpose(0, 3, 1, 2) if array.ndim == 4 and channels_first[i] else array
    if behavior.discrete_branches:
        n, width = len(obs[0]), sum(behavior.discrete_branches)
        allowed = np.ones((n, width), np.float32) if mask is None else (~mask).astype(np.float32)
        feed["action_masks"] = allowed
    return feed


def _channels_first(session: Any, behavior: BehaviorDef) -> tuple[bool, ...]:
    """Per observation, whether the model declares it CHW (preferred when both fit) or HWC."""
    declared = {i.name: tuple(i.shape[1:]) for i in session.get_inputs()}
    layouts = []
    for i, obs in enumerate(behavior.observations):
        shape = tuple(obs.shape)
        if len(shape) != 3:
            layouts.append(False)
            continue
        chw = (shape[2], shape[0], shape[1])
        if declared.get(f"obs_{i}") not in (chw, shape):
            raise ValueError(
                f"model input obs_{i} has shape {list(declared.get(f'obs_{i}', ()))} (without batch); "
                f"the game's {obs.name} is {list(chw)} as CHW (ML-Agents' layout) or {list(shape)} as HWC"
            )
        layouts.append(declared[f"obs_{i}"] == chw)
    return tuple(layouts)


def _load(received: ReceivedPolicy, behavior: BehaviorDef) -> LoadedPolicy:
    """Open the model and run it once on zeros: a model that cannot act for ``behavior`` fails here."""
    import onnxruntime as ort  # only games that receive a policy pay for the import

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(received.model, options, providers=["CPUExecutionProvider"])
    names = tuple(i.name for i in session.get_inputs())
    expected = [f"obs_{i}" for i in range(len(behavior.observations))]
    expected += ["action_masks"] * bool(behavior.discrete_branches)
    if sorted(names) != sorted(expected):
        raise ValueError(f"model inputs {list(names)} do not match behaviour inputs {expected}")
    zeros = [np.zeros((1, *o.shape), np.float32) for o in behavior.observations]
    layouts = _channels_first(session, behavior)
    loaded = LoadedPolicy(received.version, received.sha256, session, names, layouts)
    continuous, discrete = _act(loaded, behavior, zeros, None)
    if continuous.shape != (1, behavior.num_continuous) or discrete.shape != (
        1,
        len(behavior.discrete_branches),
    ):
        raise ValueError(
            f"model actions have shapes {continuous.shape} and {discrete.shape}; behaviour {behavior.name} "
            f"needs {behavior.num_continuous} continuous and branches {behavior.discrete_branches}"
        )
    return loaded
