"""Transitions of the mean-field rollout worker: an agent's open step and its completion into replay rows.

An agent's transition from step t stays :class:`Pending` (observation, mask, mean action, action, the
action's log-probability under the weights that chose it, reward so far) until the agent next decides or ends;
it is then :class:`Completed` with the next observation, mask and mean action, and :func:`stack` turns one
policy's completed transitions into :class:`~unimarl.trainers.algos.meanfield.replay.Transitions`.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np

from unimarl.trainers.algos.meanfield.replay import Transitions


@dataclass
class Pending:
    """An agent's step waiting for its next observation."""

    policy: str
    obs: list[np.ndarray]
    mask: np.ndarray | None
    mean: np.ndarray | None
    action: int
    logp: float | None
    reward: float = 0.0


@dataclass(frozen=True)
class Completed:
    """A pending step with what followed it."""

    step: Pending
    next_obs: list[np.ndarray]
    next_mask: np.ndarray | None
    next_mean: np.ndarray | None
    terminated: bool
    truncated: bool
    key: Hashable
    """(worker, env, agent name): stable per agent episode, so the replay shares frames."""


def stack(rows: list[Completed]) -> Transitions:
    """One Transitions from completed rows (all of one policy)."""
    ps = [r.step for r in rows]
    n_sensors = len(ps[0].obs)

    def masks(values: list[Any]) -> np.ndarray | None:
        return None if values[0] is None else np.stack(values).astype(bool)

    return Transitions(
        obs=tuple(np.stack([p.obs[k] for p in ps]).astype(np.float32) for k in range(n_sensors)),
        action=np.array([p.action for p in ps], np.int64),
        reward=np.array([p.reward for p in ps], np.float32),
        next_obs=tuple(np.stack([r.next_obs[k] for r in rows]).astype(np.float32) for k in range(n_sensors)),
        terminated=np.array([r.terminated for r in rows], bool),
        truncated=np.array([r.truncated for r in rows], bool),
        mean_action=None if ps[0].mean is None else np.stack([p.mean for p in ps if p.mean is not None]),
        next_mean_action=None
        if rows[0].next_mean is None
        else np.stack([np.asarray(r.next_mean) for r in rows]),
        action_mask=masks([p.mask for p in ps]),
        next_action_mask=masks([r.next_mask for r in rows]),
        agent_keys=[r.key for r in rows],
        logp=None if ps[0].logp is None else np.array([p.logp for p in ps], np.float32),
    )
