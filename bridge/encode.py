"""Encode per-behaviour actions into the ``UnityRLInputProto`` the game receives.

Semantics (as the official mlagents-envs 0.28 client sends them):

- Per behaviour, one ``AgentActionProto`` per decision agent of the previous output, in that order (the game
  matches actions by position). Behaviours without decision agents get no entry.
- Each action fills ``continuous_actions``, ``discrete_actions`` and, for games that still read it,
  ``vector_actions_deprecated`` = continuous values followed by the discrete values as floats.
- A known behaviour with decision agents but no entry in ``actions`` gets all-zero actions.
- ``command`` and ``side_channel`` are left for the caller to set.

Validation: exactly ``n_decisions[behaviour]`` rows; continuous values finite (cast to float32); discrete
values integers in ``[0, branch_size)``. Anything else raises :class:`~unimarl.bridge.errors.ActionError`
naming the behaviour, what was expected, what was given and how to fix it.

Speed: the repeated ``AgentActionProto`` list of a behaviour is laid out as bytes with numpy (every agent's
message has the same size when all discrete values fit one varint byte) and parsed once by protobuf, instead
of building one message per agent in Python. Larger discrete values take the per-message path.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from unimarl.bridge.errors import ActionError
from unimarl.bridge.spec import ActionSpec, ActionTuple, BehaviorSpec
from unimarl.protos import AgentActionProto, UnityRLInputProto
from unimarl.protos.wire import Segment, le_float_bytes, rows, varint, width

# Wire tags (field number << 3 | wire type 2 = length-delimited) of the fields written here.
_TAG_LIST_VALUE = 0x0A  # ListAgentActionProto.value = 1
_TAG_VECTOR = 0x0A  # AgentActionProto.vector_actions_deprecated = 1 (packed float)
_TAG_CONTINUOUS = 0x32  # AgentActionProto.continuous_actions = 6 (packed float)
_TAG_DISCRETE = 0x3A  # AgentActionProto.discrete_actions = 7 (packed varint)


def encode_actions(
    actions: Mapping[str, ActionTuple],
    specs: Mapping[str, BehaviorSpec],
    n_decisions: Mapping[str, int],
) -> UnityRLInputProto:
    """Build the ``rl_input`` of one step; ``actions[b]`` rows follow the previous output's decision order."""
    unknown = sorted(set(actions) - set(specs))
    if unknown:
        raise ActionError(
            f"actions given for unknown behaviour(s) {unknown}; the game's behaviours are {sorted(specs)}"
        )
    rl_input = UnityRLInputProto()
    for name, spec in specs.items():
        n = int(n_decisions.get(name, 0))
        if name in actions:
            continuous, discrete = validate_actions(name, spec.action_spec, actions[name], n)
        else:
            empty = spec.action_spec.empty(n)
            continuous, discrete = empty.continuous, empty.discrete
        if n == 0:
            continue
        target = rl_input.agent_actions[name]
        if discrete.size == 0 or int(discrete.max()) < 0x80:
            target.ParseFromString(_list_bytes(continuous, discrete))
        else:
            for c_row, d_row in zip(continuous.tolist(), discrete.tolist(), strict=True):
                target.value.append(
                    AgentActionProto(
                        vector_actions_deprecated=c_row + d_row,
                        continuous_actions=c_row,
                        discrete_actions=d_row,
                    )
                )
    return rl_input


def validate_actions(
    name: str, spec: ActionSpec, action: ActionTuple, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Check one behaviour's actions; returns (float32 [n, continuous], int32 [n, branches])."""
    continuous = np.asarray(action.continuous)
    discrete = np.asarray(action.discrete)
    continuous = _shaped(name, "continuous", continuous, n, spec.continuous_size, np.float32)
    if continuous.dtype.kind not in "fiu":
        raise ActionError(f"behaviour {name!r}: continuous actions of dtype {continuous.dtype}; pass float32")
    continuous = continuous.astype(np.float32, copy=False)
    if not np.isfinite(continuous).all():
        rows = np.flatnonzero(~np.isfinite(continuous).all(axis=1)).tolist()
        raise ActionError(
            f"behaviour {name!r}: continuous actions hold NaN or inf in row(s) {rows}; "
            "the policy must output finite values (check for diverged weights)"
        )
    discrete = _shaped(name, "discrete", discrete, n, spec.discrete_size, np.int32)
    if discrete.dtype.kind not in "iu":
        raise ActionError(
            f"behaviour {name!r}: discrete actions of dtype {discrete.dtype}, expected integers; "
            "cast them with .astype(np.int32)"
        )
    branches = np.asarray(spec.discrete_branches, np.int64)
    bad = (discrete < 0) | (discrete >= branches)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise ActionError(
            f"behaviour {name!r}: discrete action {int(discrete[row, col])} in row {row}, branch {col} "
            f"is outside [0, {int(branches[col])}); branch sizes are {spec.discrete_branches}"
        )
    return continuous, discrete.astype(np.int32, copy=False)


def _shaped(name: str, kind: str, values: np.ndarray, n: int, size: int, dtype: type) -> np.ndarray:
    """``values`` checked to be ``[n, size]``; with no actions of this kind, any empty array passes."""
    if size == 0 and values.size == 0:
        return np.zeros((n, 0), dtype)
    if values.shape != (n, size):
        raise ActionError(
            f"behaviour {name!r}: {kind} actions of shape {values.shape}, expected ({n}, {size}); "
            "pass one row per decision agent of the last output, in its order"
        )
    return values


def _list_bytes(continuous: np.ndarray, discrete: np.ndarray) -> bytes:
    """Serialized ``ListAgentActionProto``; every discrete value must be < 128 (one varint byte)."""
    n, n_cont = continuous.shape
    n_disc = discrete.shape[1]
    # Segments of one agent's message, in field order: constant bytes or a [n, k] uint8 block.
    segments: list[Segment] = []
    if n_cont + n_disc:
        vector = np.concatenate([continuous, discrete.astype(np.float32)], axis=1)
        segments += [bytes([_TAG_VECTOR]) + varint(4 * (n_cont + n_disc)), le_float_bytes(vector)]
    if n_cont:
        segments += [bytes([_TAG_CONTINUOUS]) + varint(4 * n_cont), le_float_bytes(continuous)]
    if n_disc:
        segments += [bytes([_TAG_DISCRETE]) + varint(n_disc), discrete.astype(np.uint8)]
    segments.insert(0, bytes([_TAG_LIST_VALUE]) + varint(sum(width(s) for s in segments)))
    return rows(n, segments)
