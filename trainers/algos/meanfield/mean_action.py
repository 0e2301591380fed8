"""Mean actions for mean-field MARL (Yang et al. 2018, arXiv 1802.05438, eq. 6).

The mean action of agent j at step t is the average of its neighbours' actions taken at step t-1, each
action encoded as a vector: continuous actions as they are, then one one-hot per discrete branch (so for one
discrete branch it is the neighbours' empirical action distribution). The encoded one-hot is that of the
*taken* action; action masks play no part here (they only restrict the agent's own policy).

Who counts as a neighbour of j at step t:

- only agents that are alive at step t (dead agents are excluded, even if they acted at t-1) *and* that
  took an action at t-1; an agent that arrived at step t has no previous action and is excluded (never
  counted as a uniform distribution), though it gets a mean action of its own from the others;
- never j itself;
- within a :class:`Neighbourhood`: the whole team (the reference code's choice), the same Unity group id,
  or the agents within a radius of j's current position;
- within the same ``segment`` when several games (or teams) are batched together in one call; the rollout
  worker passes the Unity group, so agents of one behaviour in different areas (separate battles) never mix.

An agent with no neighbour gets the zero vector. The reference code instead averages the whole team's previous
actions including the agent itself and agents that died at that step; the difference is O(1/N).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence

import numpy as np

from unimarl.bridge.spec import ActionSpec
from unimarl.trainers.core.errors import TrainerError
from unimarl.trainers.core.mf_settings import Neighbourhood

logger = logging.getLogger(__name__)


class MeanFieldError(TrainerError, ValueError):
    """Bad input to the mean-field learners: a shape, an index, a neighbourhood or a hyperparameter."""


def action_dim(action_spec: ActionSpec) -> int:
    """Length of an encoded action: continuous size plus the sum of the discrete branch sizes."""
    return int(action_spec.continuous_size + sum(action_spec.discrete_branches))


def encode_actions(
    action_spec: ActionSpec, discrete: np.ndarray | None = None, continuous: np.ndarray | None = None
) -> np.ndarray:
    """Encode B taken actions as float32 [B, action_dim]: continuous values, then a one-hot per branch."""
    parts: list[np.ndarray] = []
    n = None
    if action_spec.continuous_size:
        if continuous is None or continuous.ndim != 2 or continuous.shape[1] != action_spec.continuous_size:
            got = None if continuous is None else continuous.shape
            raise MeanFieldError(
                f"continuous actions must be [B, {action_spec.continuous_size}], got {got}; "
                "pass the taken actions"
            )
        parts.append(continuous.astype(np.float32, copy=False))
        n = continuous.shape[0]
    if action_spec.discrete_branches:
        if discrete is None:
            raise MeanFieldError("discrete actions are required by this action spec; pass the taken actions")
        discrete = np.asarray(discrete)
        discrete = discrete.reshape(len(discrete), -1 if discrete.size else action_spec.discrete_size)
        if discrete.shape[1] != action_spec.discrete_size or (n is not None and discrete.shape[0] != n):
            raise MeanFieldError(
                f"discrete actions must be [B, {action_spec.discrete_size}] matching the continuous ones, "
                f"got {discrete.shape}"
            )
        for b, size in enumerate(action_spec.discrete_branches):
            col = discrete[:, b].astype(np.int64)
            if col.size and (col.min() < 0 or col.max() >= size):
                raise MeanFieldError(
                    f"discrete action {col.min()}..{col.max()} outside branch {b} of size {size}"
                )
            parts.append(np.eye(size, dtype=np.float32)[col])
    if not parts:
        return np.zeros((0, 0), np.float32)
    return np.concatenate(parts, axis=1)


def _check_rows(name: str, arr: np.ndarray | None, b: int) -> np.ndarray | None:
    if arr is None:
        return None
    arr = np.asarray(arr)
    if arr.shape[0] != b:
        raise MeanFieldError(
            f"{name} has {arr.shape[0]} rows but there are {b} agents; pass one row per agent"
        )
    return arr


def mean_actions(
    actions: np.ndarray,
    has_action: np.ndarray,
    *,
    neighbourhood: Neighbourhood = Neighbourhood.TEAM,
    alive: np.ndarray | None = None,
    segment: np.ndarray | None = None,
    group_id: np.ndarray | None = None,
    positions: np.ndarray | None = None,
    radius: float | None = None,
) -> np.ndarray:
    """Mean of the neighbours' encoded actions for B agents at once: float32 [B, D].

    ``actions`` [B, D]: each agent's encoded previous action (rows without one are ignored).
    ``has_action`` bool [B]: the agent took an action at the previous step. ``alive`` bool [B] (default all):
    the agent is alive now; rows that are not alive still get a mean action but contribute none.
    ``segment`` int [B]: agents only see agents of their own segment (e.g. one id per game and team).
    ``group_id`` int [B] for :attr:`Neighbourhood.GROUP`; ``positions`` [B, P] and ``radius`` for
    :attr:`Neighbourhood.RADIUS`.
    """
    actions = np.asarray(actions, np.float32)
    if actions.ndim != 2:
        raise MeanFieldError(
            f"actions must be [B, D], got shape {actions.shape}; encode them with encode_actions"
        )
    b = actions.shape[0]
    contrib = np.asarray(_check_rows("has_action", has_action, b), bool)
    if alive is not None:
        contrib = contrib & np.asarray(_check_rows("alive", alive, b), bool)
    seg = _check_rows("segment", segment, b)
    seg = np.zeros(b, np.int64) if seg is None else seg.astype(np.int64)
    weights = contrib.astype(np.float32)
    if neighbourhood in (Neighbourhood.TEAM, Neighbourhood.GROUP):
        if neighbourhood is Neighbourhood.GROUP:
            gid = _check_rows("group_id", group_id, b)
            if gid is None:
                raise MeanFieldError(
                    "the 'group' neighbourhood needs group_id (the Unity group id of each agent)"
                )
            keys = np.stack([seg, gid.astype(np.int64)], axis=1)
        else:
            keys = seg[:, None]
        _, inverse = np.unique(keys, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        member = np.zeros((int(inverse.max(initial=-1)) + 1, b), np.float32)
        member[inverse, np.arange(b)] = 1.0
        sums = (member @ (actions * weights[:, None]))[inverse] - actions * weights[:, None]
        counts = (member @ weights)[inverse] - weights
    elif neighbourhood is Neighbourhood.RADIUS:
        pos = _check_rows("positions", positions, b)
        if pos is None or radius is None or radius < 0:
            raise MeanFieldError(
                f"the 'radius' neighbourhood needs positions [B, P] and a radius >= 0, got radius={radius}"
            )
        pos = pos.astype(np.float64).reshape(b, -1)
        d2 = ((pos[:, None, :] - pos[None, :, :]) ** 2).sum(axis=-1)
        adj = (d2 <= radius * radius) & (seg[:, None] == seg[None, :]) & contrib[None, :]
        np.fill_diagonal(adj, False)
        adj_f = adj.astype(np.float32)
        sums = adj_f @ actions
        counts = adj_f.sum(axis=1)
    else:
        raise MeanFieldError(
            f"unknown neighbourhood {neighbourhood!r}; use one of {[n.value for n in Neighbourhood]}"
        )
    out = np.zeros_like(actions)
    has_nb = counts > 0.5
    out[has_nb] = sums[has_nb] / counts[has_nb, None]
    return out


class MeanActionTracker:
    """Remembers the actions agents took at the previous step and turns them into mean actions.

    One tracker per game (or pass ``segment``). Per step: ``mean_actions(agents)`` gives the mean action
    each agent acts on, then ``record(agents, actions)`` stores what they did; agents missing from the next
    call are dead and drop out. For a transition, the next mean action is ``mean_actions`` of the next step,
    with agents that just ended passed as ``alive=False`` (they get a mean action but contribute none).
    """

    def __init__(
        self,
        action_spec: ActionSpec,
        neighbourhood: Neighbourhood | str = Neighbourhood.TEAM,
        radius: float | None = None,
    ) -> None:
        try:
            self.neighbourhood = Neighbourhood(neighbourhood)
        except ValueError as e:
            raise MeanFieldError(
                f"unknown neighbourhood {neighbourhood!r}; use one of {[n.value for n in Neighbourhood]}"
            ) from e
        if self.neighbourhood is Neighbourhood.RADIUS and (radius is None or radius < 0):
            raise MeanFieldError(f"the 'radius' neighbourhood needs a radius >= 0, got {radius}")
        self.action_spec = action_spec
        self.radius = radius
        self.dim = action_dim(action_spec)
        self._prev: dict[Hashable, np.ndarray] = {}

    def reset(self) -> None:
        """Forget all previous actions: call it when the whole game starts a new episode (environments that
        reuse agent names, as PettingZoo's do, would otherwise carry the last episode's actions over)."""
        self._prev = {}

    def record(
        self,
        agents: Sequence[Hashable],
        discrete: np.ndarray | None = None,
        continuous: np.ndarray | None = None,
    ) -> None:
        """Store the actions ``agents`` took at this step, replacing the previous step's record."""
        encoded = encode_actions(self.action_spec, discrete, continuous)
        if encoded.shape[0] != len(agents):
            raise MeanFieldError(
                f"{len(agents)} agents but {encoded.shape[0]} actions; pass one action per agent"
            )
        self._prev = dict(zip(agents, encoded, strict=True))

    def mean_actions(
        self,
        agents: Sequence[Hashable],
        *,
        alive: np.ndarray | None = None,
        segment: np.ndarray | None = None,
        group_id: np.ndarray | None = None,
        positions: np.ndarray | None = None,
    ) -> np.ndarray:
        """Mean actions float32 [B, dim] of ``agents`` from the recorded previous actions (see module doc)."""
        b = len(agents)
        actions = np.zeros((b, self.dim), np.float32)
        has_action = np.zeros(b, bool)
        for i, agent in enumerate(agents):
            prev = self._prev.get(agent)
            if prev is not None:
                actions[i] = prev
                has_action[i] = True
        return mean_actions(
            actions,
            has_action,
            neighbourhood=self.neighbourhood,
            alive=alive,
            segment=segment,
            group_id=group_id,
            positions=positions,
            radius=self.radius,
        )
