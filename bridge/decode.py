"""Decode the game's ``UnityRLOutputProto`` into numpy batches (:class:`~unimarl.bridge.spec.GameOutput`).

Semantics:

- A behaviour's spec is built the first time the game announces it: the action spec from its
  ``BrainParametersProto``, the observation specs (shape, dimension properties, type, sensor name) from its
  first ``AgentInfoProto``. Shapes are kept as the game declares them: visual observations are HWC for C#
  package 2.x and CHW for 3.x+ (both speak API 1.5.0; see :func:`visual_layout_for`).
- Every known behaviour gets an entry in ``GameOutput.steps``; agents with ``done`` go to ``terminal`` (with
  ``interrupted`` = ``max_step_reached``), the others to ``decision``, each in message order. An agent may be
  in both (episode ended and the next one started in the same message).
- Action masks (decision agents only) arrive flattened over branches with True = *disabled*; they are split
  per branch. Agents that sent no mask get all actions enabled; ``None`` when no agent sent one.
- Speed: a behaviour's agent infos are read as columns, and float observations as one matrix, without
  per-agent Python (:mod:`unimarl.bridge.decode_columns`). A column with fewer than n values (proto3 omits
  default values, e.g. ``id`` 0 or ``done`` false for some agents only) is read per agent; anything else that
  does not fit (observation counts, observations that differ in more than their floats) takes the per-agent
  path, which validates and names the faulty agent.
- PNG observations are decoded by :mod:`unimarl.bridge.png` to HWC and moved to CHW for 3.x games.
- Packages 3.0.0 to 4.0.0 declare uncompressed rank-3 observations [C, H, W] but write their floats in H, W, C
  order (fixed in 4.0.1, #6239; :func:`floats_hwc_under_chw` cites the C# lines); with ``hwc_floats`` the
  decoder reorders them, so every version decodes to the same [C, H, W] array.
- Variable-length observations (``VARIABLE_SIZE`` flag) are zero-padded to the declared shape.
- Malformed input ends in :class:`ProtocolError` / :class:`ObservationError`, and sizes are checked before
  anything is allocated for them: a new behaviour's observation shapes must be non-negative and no larger
  than its first observation's data can fill (:func:`_check_shape`), action counts >= 0 and branch sizes
  >= 1; masks' lengths are checked before the mask array is built, a PNG's header size before decoding.
- NaN/inf in observations or rewards: ``nan_policy`` "raise" (ObservationError), "warn" (replace with 0 and
  log once per behaviour and observation of one game: the caller passes its own ``warned`` set, so one game's
  warning never silences another's) or "ignore".
"""

from __future__ import annotations

import itertools
import logging
import math
import operator
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from unimarl.bridge.decode_columns import float_fast_path, float_rows, split_columns
from unimarl.bridge.errors import ObservationError, ProtocolError
from unimarl.bridge.png import decode_png_observation
from unimarl.bridge.spec import (
    ActionSpec,
    AgentBatch,
    BehaviorSpec,
    BehaviorSteps,
    DimensionProperty,
    GameOutput,
    ObservationSpec,
    ObservationType,
)
from unimarl.protos import AgentInfoProto, BrainParametersProto, ObservationProto, UnityRLOutputProto

logger = logging.getLogger(__name__)

NAN_POLICIES = ("raise", "warn", "ignore")
MAX_VARIABLE_VALUES = 1 << 24
"""Most values one variable-length observation may pad to, over all agents of a message (64 MiB float32)."""
_PNG_MAX_VALUES_PER_BYTE = 8 * 1032
LAYOUTS = ("CHW", "HWC")
_PNG = 1
# Every AgentInfoProto field the decoder reads, fetched in one C-level call per agent.
_FIELDS = operator.attrgetter(
    "id", "reward", "group_id", "group_reward", "max_step_reached", "done", "observations", "action_mask"
)
_OBSERVATIONS = operator.attrgetter("observations")
_DONE = 5


def visual_layout_for(package_version: str) -> str:
    """Layout of visual observations for a C# package version: "CHW" for major >= 3, else "HWC"."""
    head = package_version.strip().split(".")[0]
    if not head.isdigit():
        raise ProtocolError(
            f"cannot read the major version of the game's package_version {package_version!r}; "
            "expected a version like '2.2.1-exp.1' or '3.0.0'"
        )
    return "CHW" if int(head) >= 3 else "HWC"


def _version_tuple(package_version: str) -> tuple[int, int, int] | None:
    match = re.match(r"\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?", package_version)
    if match is None:
        return None
    return int(match[1]), int(match[2] or 0), int(match[3] or 0)


def floats_hwc_under_chw(package_version: str) -> bool:
    """True for C# packages 3.0.0 up to 4.0.0: rank-3 float observations declared CHW, written HWC.

    3.0.0 ``ObservationWriter[ch, h, w]`` writes the proto's float list at ``TensorShape.Index(n, c, h, w)``
    (Runtime/Sensors/ObservationWriter.cs:151), which is ``h * W * C + w * C + c`` in 3.0.0
    (Runtime/Inference/TensorExtensions.cs:56-63) while ``ObservationSpec.Visual`` declares [C, H, W]
    (Runtime/Sensors/ObservationSpec.cs:98-107); 4.0.1 writes ``c * H * W + h * W + w``
    (TensorExtensions.cs:60-62; CHANGELOG.md:13 "Fixed tensor indexing to use correct CHW layout (#6239)").
    4.0.0 is taken to have the bug, as the fix first shipped in 4.0.1.
    """
    version = _version_tuple(package_version)
    return version is not None and (3, 0, 0) <= version < (4, 0, 1)


def _chw_from_hwc(batch: np.ndarray) -> np.ndarray:
    """``[n, C, H, W]`` floats that arrived in H, W, C order -> the same observations in C, H, W order."""
    n, c, h, w = batch.shape
    return np.ascontiguousarray(batch.reshape(n, h, w, c).transpose(0, 3, 1, 2))


def decode_output(
    rl_output: UnityRLOutputProto,
    brain_parameters: Sequence[BrainParametersProto],
    known_specs: Mapping[str, BehaviorSpec],
    *,
    visual_layout: str,
    nan_policy: str = "raise",
    warned: set[tuple[str, str]] | None = None,
    hwc_floats: bool = False,
) -> GameOutput:
    """Decode one output of the game; ``brain_parameters`` are those announced in this same message.

    ``hwc_floats``: the game is a 3.0.0-4.0.0 package (:func:`floats_hwc_under_chw`); its uncompressed rank-3
    observations are reordered from H, W, C to the declared C, H, W.

    ``warned``: (behaviour, observation) pairs already warned about under ``nan_policy="warn"``, updated in
    place; keep one set per game (:class:`~unimarl.bridge.connection.UnityConnection` does). None: warn for
    every message that holds NaN/inf.
    """
    if visual_layout not in LAYOUTS:
        raise ValueError(f"visual_layout must be one of {LAYOUTS}, got {visual_layout!r}")
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}")
    lists = dict(rl_output.agentInfos.items())
    infos_by_name = {name: lst.value for name, lst in lists.items()}
    new_specs: dict[str, BehaviorSpec] = {}
    for brain in brain_parameters:
        if brain.brain_name in known_specs:
            continue
        infos = infos_by_name.get(brain.brain_name)
        if not infos:
            raise ProtocolError(
                f"behaviour {brain.brain_name!r} was announced without any agent info; "
                "the game must announce a behaviour in the first message that holds one of its agents"
            )
        new_specs[brain.brain_name] = _spec_from_proto(brain, infos[0])
    specs = {**known_specs, **new_specs}
    unknown = sorted(set(infos_by_name) - set(specs))
    if unknown:
        raise ProtocolError(
            f"agent infos for behaviour(s) {unknown} that were never announced with brain parameters; "
            f"known behaviours: {sorted(specs)}"
        )
    decoder = _Decoder(visual_layout, nan_policy, set() if warned is None else warned)
    decoder.hwc_floats = hwc_floats and visual_layout == "CHW"
    steps = {
        name: decoder.behavior(spec, infos_by_name.get(name, ()), lists.get(name))
        for name, spec in specs.items()
    }
    return GameOutput(steps=steps, new_specs=new_specs, side_channel=bytes(rl_output.side_channel))


def _spec_from_proto(brain: BrainParametersProto, first: AgentInfoProto) -> BehaviorSpec:
    name = brain.brain_name
    obs_specs = []
    for index, obs in enumerate(first.observations):
        try:
            obs_type = ObservationType(obs.observation_type)
            props = tuple(DimensionProperty(d) for d in obs.dimension_properties)
        except ValueError as e:
            raise ProtocolError(f"behaviour {name!r} observation {index}: {e}") from e
        shape = tuple(int(s) for s in obs.shape)
        if not props:
            props = (DimensionProperty.UNSPECIFIED,) * len(shape)
        obs_spec = ObservationSpec(shape, props, obs_type, obs.name)
        _check_shape(name, index, obs_spec, obs)
        obs_specs.append(obs_spec)
    spec = brain.action_spec
    if (
        spec.num_continuous_actions == 0
        and spec.num_discrete_actions == 0
        and brain.vector_action_size_deprecated
    ):
        # Games older than API 1.3 describe actions only with the deprecated fields (1 = continuous).
        sizes = tuple(brain.vector_action_size_deprecated)
        is_continuous = brain.vector_action_space_type_deprecated == 1
        actions = ActionSpec(sizes[0], ()) if is_continuous else ActionSpec(0, sizes)
    else:
        actions = ActionSpec(spec.num_continuous_actions, tuple(spec.discrete_branch_sizes))
    if actions.continuous_size < 0 or any(size < 1 for size in actions.discrete_branches):
        raise ProtocolError(
            f"behaviour {name!r} declares {actions.continuous_size} continuous actions and discrete branch "
            f"sizes {list(actions.discrete_branches)}: counts must be >= 0 and branch sizes >= 1"
        )
    return BehaviorSpec(name, tuple(obs_specs), actions)


def _check_shape(behavior: str, index: int, spec: ObservationSpec, first: ObservationProto) -> None:
    """Refuse a declared shape that is negative or larger than the first observation's bytes can fill.

    Every later observation must match this shape, so the bound keeps the decoder from allocating arrays
    for sizes no message carries. Floats: ``prod(shape)`` values must be present (4 bytes each). PNG:
    deflate expands at most 1032:1 (zlib technical details, "Maximum compression factor") and 1-bit
    palette pixels pack 8 to a byte, so ``8 * 1032`` values per compressed byte. Variable-length
    observations are zero-padded, so their bytes bound nothing: :data:`MAX_VARIABLE_VALUES`.
    """
    where = f"behaviour {behavior!r} observation {index} ({spec.name!r})"
    if any(d < 0 for d in spec.shape):
        raise ObservationError(f"{where}: shape {spec.shape} has a negative dimension; fix the game's sensor")
    # a zero dimension makes the size 0, but numpy still refuses the product of the others if it overflows
    size = max(math.prod(spec.shape), math.prod(d for d in spec.shape if d) - 1)
    if spec.is_variable_length:
        limit, carried = MAX_VARIABLE_VALUES, "the limit for variable-length observations"
    elif first.compression_type == _PNG:
        limit = _PNG_MAX_VALUES_PER_BYTE * len(first.compressed_data)
        carried = f"what {len(first.compressed_data)} PNG bytes can decode to"
    else:
        limit, carried = len(first.float_data.data), "the floats its first observation carries"
    if size > limit:
        raise ObservationError(
            f"{where}: shape {spec.shape} needs more values than {carried} ({limit}); "
            "the message is malformed or the sensor's shape does not match its data"
        )


class _Decoder:
    """Decoding of one message; holds the options so the helpers stay small."""

    def __init__(self, layout: str, nan_policy: str, warned: set[tuple[str, str]]) -> None:
        self.layout = layout
        self.nan_policy = nan_policy
        self.warned = warned
        self.hwc_floats = False

    def behavior(
        self, spec: BehaviorSpec, infos: Sequence[AgentInfoProto], records: Any = None
    ) -> BehaviorSteps:
        if not infos:
            return BehaviorSteps(decision=AgentBatch.empty(spec), terminal=AgentBatch.empty(spec))
        if records is not None:
            steps = self.columns(spec, infos, records)
            if steps is not None:
                return steps
        # One pass over the agents reads every field (attribute access on protobuf messages is the cost).
        rows = list(map(_FIELDS, infos))
        if any(row[_DONE] for row in rows):
            decision = [row for row in rows if not row[_DONE]]
            terminal = [row for row in rows if row[_DONE]]
        else:
            decision, terminal = rows, []
        return BehaviorSteps(
            decision=self.batch(spec, decision, with_mask=True),
            terminal=self.batch(spec, terminal, with_mask=False),
        )

    def columns(
        self, spec: BehaviorSpec, infos: Sequence[AgentInfoProto], records: Any
    ) -> BehaviorSteps | None:
        """The behaviour's steps read as columns (see the module docstring); None: take the per-agent path."""
        split = split_columns(records)
        if split is None:
            return None
        bodies, columns = split
        n, n_obs = len(bodies), len(spec.observation_specs)
        observations = list(columns.observations)
        if n != len(infos) or len(observations) != n * n_obs:
            return None
        # equal totals can still hide agents with too many and too few observations: check each agent's count
        if any(len(obs) != n_obs for obs in map(_OBSERVATIONS, infos)):
            return None

        def column(name: str, dtype: type) -> np.ndarray:
            values = getattr(columns, name)
            if len(values) == n:
                return np.array(values, dtype)
            if not values:
                return np.zeros(n, dtype)
            return np.array(list(map(operator.attrgetter(name), infos)), dtype)  # omitted for some agents

        done = column("done", bool)
        values = {
            "agent_id": column("id", np.int32),
            "reward": column("reward", np.float32),
            "group_id": column("group_id", np.int32),
            "group_reward": column("group_reward", np.float32),
            "interrupted": column("max_step_reached", bool),
        }
        per_obs = [observations[k::n_obs] for k in range(n_obs)]
        masks = self.mask_rows(spec, infos, columns.action_mask)
        parts = []
        for rows, with_mask in ((np.flatnonzero(~done), True), (np.flatnonzero(done), False)):
            if not len(rows):
                parts.append(AgentBatch.empty(spec))
                continue
            every = len(rows) == n
            picked = {key: array if every else array[rows] for key, array in values.items()}
            if with_mask:
                picked["interrupted"] = np.zeros(len(rows), bool)
            index = rows.tolist()
            chunks = [chunk if every else [chunk[i] for i in index] for chunk in per_obs]
            obs = tuple(self.observation_bytes(spec, c, picked["agent_id"], k) for k, c in enumerate(chunks))
            reward = self.finite(picked.pop("reward"), spec.name, picked["agent_id"], "reward")
            picked["group_reward"] = self.finite(
                picked["group_reward"], spec.name, picked["agent_id"], "group_reward"
            )
            mask = None
            if with_mask and masks is not None:
                mask = masks(rows, picked["agent_id"])
            parts.append(AgentBatch(obs=obs, reward=reward, action_mask=mask, **picked))
        return BehaviorSteps(decision=parts[0], terminal=parts[1])

    def mask_rows(self, spec: BehaviorSpec, infos: Sequence[AgentInfoProto], column: Any) -> Any:
        """A function (rows, agent ids) -> the masks of those agents, or None without discrete actions."""
        branches = spec.action_spec.discrete_branches
        if not branches:
            return None
        total, n = sum(branches), len(infos)
        if len(column) == n * total:
            flat = np.array(column, bool).reshape(n, total)
            bounds = np.cumsum(branches)[:-1]
            return lambda rows, _ids: tuple(np.split(flat[rows], bounds, axis=1))
        if not column:
            return lambda rows, _ids: None
        return lambda rows, ids: _masks(spec, [infos[i].action_mask for i in rows.tolist()], ids)

    def observation_bytes(
        self, spec: BehaviorSpec, chunks: list[bytes], agent_id: np.ndarray, k: int
    ) -> np.ndarray:
        """Observation ``k`` of the agents from their serialized ``ObservationProto``s."""
        obs_spec = spec.observation_specs[k]
        first = ObservationProto.FromString(chunks[0])
        batch = None
        if first.compression_type != _PNG and not obs_spec.is_variable_length:
            batch = float_rows(chunks, first, obs_spec.shape)
            if batch is not None and self.hwc_floats and batch.ndim == 4:
                batch = _chw_from_hwc(batch)
        if batch is None:
            protos = [ObservationProto.FromString(chunk) for chunk in chunks]
            batch = self.per_agent(spec, k, protos, agent_id)
        return self.finite(batch, spec.name, agent_id, f"observation {k}")

    def batch(self, spec: BehaviorSpec, rows: list[tuple], *, with_mask: bool) -> AgentBatch:
        if not rows:
            return AgentBatch.empty(spec)
        ids, rewards, group_ids, group_rewards, max_steps, _, observations, masks = zip(*rows, strict=True)
        agent_id = np.array(ids, np.int32)
        n_obs = len(spec.observation_specs)
        counts = list(map(len, observations))
        if counts.count(n_obs) != len(counts):
            bad = next(i for i, c in enumerate(counts) if c != n_obs)
            raise ObservationError(
                f"behaviour {spec.name!r} agent {agent_id[bad]}: {counts[bad]} observations, "
                f"expected {n_obs} as in the behaviour's spec"
            )
        obs = tuple(self.observation(spec, observations, agent_id, k) for k in range(n_obs))
        reward = self.finite(np.array(rewards, np.float32), spec.name, agent_id, "reward")
        group_reward = self.finite(np.array(group_rewards, np.float32), spec.name, agent_id, "group_reward")
        # Only terminal batches are built from done agents, so max_step_reached is "interrupted" there.
        interrupted = np.zeros(len(rows), bool) if with_mask else np.array(max_steps, bool)
        return AgentBatch(
            agent_id=agent_id,
            obs=obs,
            reward=reward,
            group_id=np.array(group_ids, np.int32),
            group_reward=group_reward,
            interrupted=interrupted,
            action_mask=_masks(spec, masks, agent_id) if with_mask else None,
        )

    def observation(
        self,
        spec: BehaviorSpec,
        observations: Sequence[Sequence[ObservationProto]],
        agent_id: np.ndarray,
        k: int,
    ) -> np.ndarray:
        obs_spec = spec.observation_specs[k]
        protos = list(map(operator.itemgetter(k), observations))
        batch = None
        if protos[0].compression_type != _PNG and not obs_spec.is_variable_length:
            batch = float_fast_path(protos, obs_spec.shape)
            if batch is not None and self.hwc_floats and batch.ndim == 4:
                batch = _chw_from_hwc(batch)
        if batch is None:
            batch = self.per_agent(spec, k, protos, agent_id)
        return self.finite(batch, spec.name, agent_id, f"observation {k}")

    def per_agent(
        self, spec: BehaviorSpec, k: int, protos: Sequence[ObservationProto], agent_id: np.ndarray
    ) -> np.ndarray:
        """Observation ``k`` decoded agent by agent; memory grows only with observations that decoded."""
        obs_spec = spec.observation_specs[k]
        if obs_spec.is_variable_length and len(protos) * math.prod(obs_spec.shape) > MAX_VARIABLE_VALUES:
            raise ObservationError(
                f"behaviour {spec.name!r} observation {k}: {len(protos)} agents of variable-length shape "
                f"{obs_spec.shape} would pad to more than MAX_VARIABLE_VALUES = {MAX_VARIABLE_VALUES} values"
            )
        rows = [
            self.one_observation(spec, obs_spec, proto, aid, k)
            for proto, aid in zip(protos, agent_id.tolist(), strict=True)
        ]
        return np.stack(rows).astype(np.float32, copy=False)

    def one_observation(
        self, spec: BehaviorSpec, obs_spec: ObservationSpec, proto: ObservationProto, aid: int, k: int
    ) -> np.ndarray:
        where = f"behaviour {spec.name!r} agent {aid} observation {k}"
        shape = tuple(proto.shape)
        if shape != obs_spec.shape:
            raise ObservationError(
                f"{where}: shape {shape}, expected {obs_spec.shape} as in the behaviour's spec"
            )
        if proto.compression_type == _PNG:
            return self.png(proto, obs_spec.shape, where)
        data = np.asarray(proto.float_data.data, np.float32)
        size = math.prod(obs_spec.shape)
        if data.size == size:
            if self.hwc_floats and len(obs_spec.shape) == 3:
                return _chw_from_hwc(data.reshape(1, *obs_spec.shape))[0]
            return data.reshape(obs_spec.shape)
        if obs_spec.is_variable_length and data.size < size:
            padded = np.zeros(size, np.float32)
            padded[: data.size] = data
            return padded.reshape(obs_spec.shape)
        raise ObservationError(
            f"{where}: float_data holds {data.size} values, expected {size} = prod{obs_spec.shape}"
        )

    def png(self, proto: ObservationProto, shape: tuple[int, ...], where: str) -> np.ndarray:
        if len(shape) != 3:
            raise ObservationError(f"{where}: PNG compression on a rank-{len(shape)} observation {shape}")
        channels, size = (shape[0], shape[1:]) if self.layout == "CHW" else (shape[2], shape[:2])
        try:
            image = decode_png_observation(
                proto.compressed_data, channels, proto.compressed_channel_mapping, (size[0], size[1])
            )
        except ObservationError as e:
            raise ObservationError(f"{where}: {e}") from e
        if self.layout == "CHW":
            image = np.moveaxis(image, -1, 0)
        if image.shape != shape:
            raise ObservationError(
                f"{where}: PNG decodes to {image.shape} ({self.layout}), "
                f"expected {shape} as declared by the game"
            )
        return image

    def finite(self, values: np.ndarray, behavior: str, agent_id: np.ndarray, what: str) -> np.ndarray:
        if self.nan_policy == "ignore" or np.isfinite(values).all():
            return values
        bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
        bad_ids = agent_id[bad].tolist()
        if self.nan_policy == "raise":
            raise ObservationError(
                f"behaviour {behavior!r} agent(s) {bad_ids}: {what} holds NaN or inf; "
                "fix the game's sensor or reward, or pass nan_policy='warn' to replace them with 0"
            )
        if (behavior, what) not in self.warned:
            self.warned.add((behavior, what))
            logger.warning(
                "behaviour %r agent(s) %s: %s holds NaN or inf, replaced with 0 (logged once)",
                behavior,
                bad_ids,
                what,
            )
        return np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)


def _masks(
    spec: BehaviorSpec, masks: Sequence[Sequence[bool]], agent_id: np.ndarray
) -> tuple[np.ndarray, ...] | None:
    branches = spec.action_spec.discrete_branches
    if not branches:
        return None
    lengths = list(map(len, masks))
    if not any(lengths):
        return None
    total = sum(branches)
    bounds = np.cumsum(branches)[:-1]
    if lengths.count(total) == len(masks):
        values = itertools.chain.from_iterable(masks)
        flat = np.fromiter(values, bool, len(masks) * total).reshape(len(masks), total)
        return tuple(np.split(flat, bounds, axis=1))
    # lengths first: only then is ``total`` known to be backed by mask data in the message
    for row, n in enumerate(lengths):
        if n and n != total:
            raise ProtocolError(
                f"behaviour {spec.name!r} agent {agent_id[row]}: action mask of length {n}, expected {total} "
                f"(sum of discrete branch sizes {branches})"
            )
    flat = np.zeros((len(masks), total), bool)
    for row, (mask, n) in enumerate(zip(masks, lengths, strict=True)):
        if n:
            flat[row] = mask
    return tuple(np.split(flat, bounds, axis=1))
