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
that has received a model act from it with its deterministic outputs (as in Unity, such agents are never
reported to the trainer: :mod:`unimarl.sim.client`).

Observations are fed in the layout the model declares, whatever the game's own wire layout: ML-Agents'
contract (and ``unimarl`` exports, whose manifest records ``input_shapes``) takes rank-3 observations NCHW,
so a model trained on a 3.x (CHW) game runs in a 2.x (HWC) game and the other way round; a model whose
``obs_i`` is declared ``[batch, H, W, C]`` (exported before the layout was recorded, from a 2.x game) is fed
HWC. An input that fits neither layout fails the load (acknowledged as load failed, with both shapes). Masks
are fed as ``action_masks`` with 1 = allowed. The model's outputs are the actions, applied as they are, as
Unity's ML-Agents runner does: continuous actions are ``deterministic_continuous_actions``, which already went
through the trainer's one mapping inside the graph (ML-Agents' ``clip(mean, -3, 3) / 3``,
``unimarl.trainers.core.action_map``); no second mapping here.

Behaviours named with ``--inference-behavior`` (Unity's *Heuristic Only* agents whose ``Heuristic`` calls
``PolicyHotSwap.TryDecide``) act from their received model whatever ``--behavior-type`` says; the client
hides them from the trainer and gives them zero actions until a model arrives.

Mean action (mean-field policies, e.g. MF-Q's Boltzmann policy over ``Q(obs, a, mean_action)``): a model may
take one input after the contract's, ``mean_action``, float32 ``[batch, D]`` with ``D = continuous size + sum
of the discrete branch sizes``; any other extra input fails the load. Each deciding agent is fed the mean of
the *encoded* actions (continuous values, then a one-hot per discrete branch, as
``unimarl.trainers.algos.meanfield.mean_action.encode_actions``) that the other agents of its behaviour *and
Unity group* (one area's team: a battle's group is ``2 * area + team + 1``; agents without a group, id 0,
form one group) applied at the behaviour's previous decision, counting only agents that decide now and are
not starting a new episode (an id reported done in this output restarted: a new agent without a previous
action); the zero vector when there is none. An agent's group is the one reported with this decision. This is
``MeanActionTracker`` with the ``team`` neighbourhood and the Unity group as ``segment``, as the trainer's
mean-field worker runs it. The runner keeps, per behaviour, the ids and actions the game applied at the last
decision (:meth:`PolicyRunner.record`), whoever chose them (model, trainer, or zeros before a model); discrete
actions are clipped into their branch.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
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
MEAN_ACTION = "mean_action"
"""Name of the optional mean-action model input."""


@dataclass
class LoadedPolicy:
    """A received model that passed every check, and the session that runs it."""

    version: int
    sha256: bytes
    session: Any  # onnxruntime.InferenceSession
    input_names: tuple[str, ...]
    channels_first: tuple[bool, ...] = ()
    """Per observation: the model takes it CHW (the game's arrays are HWC, so they are transposed)."""
    mean_action: bool = False
    """The model takes a ``mean_action`` input (see the module docstring)."""


@dataclass(frozen=True)
class AppliedActions:
    """The actions the game applied to a behaviour's deciding agents at one decision (rows match ``ids``)."""

    ids: np.ndarray  # int32 [n]
    continuous: np.ndarray  # float32 [n, c]
    discrete: np.ndarray  # int32 [n, branches]


class PolicyRunner:
    """Receives, acknowledges and runs pushed policies for one game (see the module docstring)."""

    def __init__(
        self,
        chw: bool,
        inference: bool = False,
        max_model_size: int = MAX_MODEL_SIZE,
        hidden: Collection[str] = (),
    ) -> None:
        self.chw = chw  # the game's wire layout: only logged, models declare the layout they take
        self.inference = inference
        self.hidden = frozenset(hidden)
        """Behaviours that act from their model whatever ``inference`` says (``--inference-behavior``)."""
        self.applied: dict[str, AppliedActions] = {}
        """Per behaviour, the actions applied at its previous decision (for ``mean_action``)."""
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
        return (self.inference or behavior in self.hidden) and behavior in self.policies

    def act(
        self,
        behavior: BehaviorDef,
        obs: list[np.ndarray],
        mask: np.ndarray | None,
        ids: np.ndarray | None = None,
        ended: np.ndarray | None = None,
        groups: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Deterministic actions (float32 ``[n, c]``, int32 ``[n, branches]``) of the received model.

        ``ids``: the deciding agents (rows of ``obs``); ``ended``: ids reported done in the same output;
        ``groups``: the deciding agents' Unity group ids (None: no groups). They only matter to a model with a
        ``mean_action`` input (without ``ids`` it gets zeros).
        """
        policy = self.policies[behavior.name]
        mean = None
        if policy.mean_action and ids is not None:
            mean = self.mean_actions(behavior, ids, ended, groups)
        return _act(policy, behavior, obs, mask, mean)

    def record(self, behavior: str, ids: np.ndarray, continuous: np.ndarray, discrete: np.ndarray) -> None:
        """Remember the actions the game applied to ``ids`` at this decision of ``behavior`` (not copied)."""
        self.applied[behavior] = AppliedActions(ids, continuous, discrete)

    def mean_actions(
        self,
        behavior: BehaviorDef,
        ids: np.ndarray,
        ended: np.ndarray | None = None,
        groups: np.ndarray | None = None,
    ) -> np.ndarray:
        """float32 ``[len(ids), D]``: each agent's mean action at this decision (see the module docstring).

        ``groups``: Unity group id per row of ``ids`` (None: every agent in group 0).
        """
        ids = np.asarray(ids)
        out = np.zeros((len(ids), action_size(behavior)), np.float32)
        group = np.zeros(len(ids), np.int64) if groups is None else np.asarray(groups, np.int64).reshape(-1)
        if len(group) != len(ids):
            raise ValueError(f"{len(group)} group ids for {len(ids)} deciding agents; pass one per agent")
        previous = self.applied.get(behavior.name)
        if previous is None or not len(ids):
            return out
        counted = np.isin(previous.ids, ids)
        if ended is not None and len(ended):
            counted &= ~np.isin(previous.ids, ended)
        if not counted.any():
            return out
        rows = encode_applied(behavior, previous.continuous[counted], previous.discrete[counted])
        counted_ids = previous.ids[counted]
        by_id = np.argsort(ids, kind="stable")
        # every counted agent decides now (it is in ids), so its group is the one reported with this decision
        counted_group = group[by_id[np.searchsorted(ids[by_id], counted_ids)]]
        keys, key_of = np.unique(np.concatenate([counted_group, group]), return_inverse=True)
        key_of = key_of.reshape(-1)
        sums = np.zeros((len(keys), out.shape[1]), np.float64)
        np.add.at(sums, key_of[: len(rows)], rows)
        counts = np.bincount(key_of[: len(rows)], minlength=len(keys))
        mine = key_of[len(rows) :]
        order = np.argsort(counted_ids, kind="stable")
        where = np.minimum(np.searchsorted(counted_ids[order], ids), len(order) - 1)
        own = counted_ids[order][where] == ids  # the agent itself is among those counted (in its own group)
        agent_sums = sums[mine]
        agent_sums[own] -= rows[order[where[own]]]
        agent_counts = counts[mine] - own.astype(np.int64)
        has = agent_counts > 0
        out[has] = agent_sums[has] / agent_counts[has, None]
        return out


def action_size(behavior: BehaviorDef) -> int:
    """D of ``mean_action``: continuous size plus the sum of the discrete branch sizes."""
    return int(behavior.num_continuous + sum(behavior.discrete_branches))


def encode_applied(behavior: BehaviorDef, continuous: np.ndarray, discrete: np.ndarray) -> np.ndarray:
    """float32 ``[n, D]``: continuous values, then a one-hot per discrete branch (clipped into the branch)."""
    parts = [np.asarray(continuous, np.float32).reshape(len(continuous), -1)] * bool(behavior.num_continuous)
    discrete = np.asarray(discrete).reshape(len(discrete), -1)
    for b, size in enumerate(behavior.discrete_branches):
        parts.append(np.eye(size, dtype=np.float32)[np.clip(discrete[:, b], 0, size - 1)])
    if not parts:
        return np.zeros((len(continuous), 0), np.float32)
    return np.concatenate(parts, axis=1)


def _act(
    policy: LoadedPolicy,
    behavior: BehaviorDef,
    obs: list[np.ndarray],
    mask: np.ndarray | None,
    mean: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`PolicyRunner.act` with ``policy`` (``mean``: the ``mean_action`` rows, if it takes them)."""
    feed = _feed(behavior, obs, mask, policy.channels_first)
    if policy.mean_action:
        feed["mean_action"] = (
            np.zeros((len(obs[0]), action_size(behavior)), np.float32) if mean is None else mean
        )
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


def _check_mean_action(session: Any, behavior: BehaviorDef) -> None:
    """A declared ``mean_action`` must be ``[batch, D]`` with D = :func:`action_size` of ``behavior``."""
    shape = next(i.shape for i in session.get_inputs() if i.name == MEAN_ACTION)
    size = action_size(behavior)
    if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != size):
        raise ValueError(
            f"model input {MEAN_ACTION!r} has shape {list(shape)}; behaviour {behavior.name} needs "
            f"[batch, {size}] (continuous size + sum of discrete branch sizes)"
        )


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
    if sorted(set(names) - {MEAN_ACTION}) != sorted(expected) or len(set(names)) != len(names):
        raise ValueError(
            f"model inputs {list(names)} do not match behaviour inputs {expected} "
            f"(optionally followed by {MEAN_ACTION!r})"
        )
    if MEAN_ACTION in names:
        _check_mean_action(session, behavior)
    zeros = [np.zeros((1, *o.shape), np.float32) for o in behavior.observations]
    layouts = _channels_first(session, behavior)
    loaded = LoadedPolicy(
        received.version, received.sha256, session, names, layouts, mean_action=MEAN_ACTION in names
    )
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
