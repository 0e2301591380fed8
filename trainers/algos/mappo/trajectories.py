"""GAE for many agent trajectories at once, from rows stored in time order.

The rollout side stores each policy's experience as rows in the order they were acted (all agents of step 0,
then of step 1, ...); ``traj`` names the trajectory of every row. :func:`batched_gae` gives the same numbers
as :func:`unimarl.trainers.algos.mappo.gae.gae` applied to each trajectory separately (same bootstrapping
convention: ``terminated`` trajectories bootstrap from 0, all others from ``next_value``), but runs one
vectorised backward recursion over [position in trajectory, trajectory] instead of a Python loop per
trajectory.
"""

from __future__ import annotations

import numpy as np

from unimarl.trainers.core.errors import TrainerError


def batched_gae(
    rewards: np.ndarray,
    values: np.ndarray,
    traj: np.ndarray,
    terminated: np.ndarray,
    next_value: np.ndarray,
    gamma: float,
    lam: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Advantages and returns (float32 [N]) for N rows of several trajectories.

    ``rewards``/``values`` [N] (reward units), ``traj`` int [N] in 0..T-1 (rows of one trajectory appear in
    time order), ``terminated`` bool [T] and ``next_value`` [T] per trajectory.
    """
    n = len(rewards)
    if not (len(values) == len(traj) == n) or len(terminated) != len(next_value):
        raise TrainerError(
            f"batched_gae: rewards, values and traj need one entry per row ({n}, {len(values)}, {len(traj)}) "
            f"and terminated/next_value one per trajectory ({len(terminated)}, {len(next_value)})"
        )
    if n == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    order = np.argsort(traj, kind="stable")  # rows of each trajectory together, still in time order
    sorted_traj = traj[order]
    first = np.flatnonzero(np.r_[True, sorted_traj[1:] != sorted_traj[:-1]])
    lengths = np.diff(np.r_[first, n])
    column = np.repeat(np.arange(len(first)), lengths)
    position = np.arange(n) - first[column]
    width, horizon = len(first), int(lengths.max())
    r = np.zeros((horizon, width))
    v = np.zeros((horizon + 1, width))
    r[position, column] = rewards[order]
    v[position, column] = values[order]
    ids = sorted_traj[first]
    v[lengths, np.arange(width)] = np.where(terminated[ids], 0.0, next_value[ids])
    deltas = r + gamma * v[1:] - v[:-1]
    adv = np.zeros((horizon + 1, width))
    for t in range(horizon - 1, -1, -1):
        # the factor stops the recursion at each trajectory's end (its bootstrap is already in deltas)
        adv[t] = deltas[t] + gamma * lam * adv[t + 1] * (t + 1 < lengths)
    advantages = np.empty(n, np.float32)
    advantages[order] = adv[position, column]
    returns = advantages + values.astype(np.float32)
    return advantages, returns.astype(np.float32)
