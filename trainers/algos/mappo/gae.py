"""Generalised advantage estimation (Schulman et al. 2016, arXiv 1506.02438) for ONE agent trajectory.

A trajectory is the consecutive steps of one agent, length T, in order: ``rewards[t]`` is the reward received
after acting at step t, ``values[t]`` the critic's value (reward units) of the observation at step t, and
``next_value`` the value of the observation after the last step.

Bootstrapping convention:

- ``terminated=True``: the episode reached a terminal state after the last step; the value after it is 0 and
  ``next_value`` is ignored (termination wins when both flags are set).
- ``truncated=True`` (Unity's ``interrupted`` / max step reached), or both flags False (an unfinished fragment
  cut at the rollout horizon): the future is estimated with ``next_value``.

Inside the trajectory no step is terminal, so the recursion is the plain one: ``delta_t = r_t + gamma *
V_{t+1} - V_t``, ``A_t = delta_t + gamma * lam * A_{t+1}``; returns are ``A + V`` (the critic's regression
target, the TD(lambda) return).
"""

from __future__ import annotations

import numpy as np

from unimarl.trainers.core.errors import TrainerError


def gae(
    rewards: np.ndarray,
    values: np.ndarray,
    next_value: float,
    terminated: bool,
    truncated: bool,
    gamma: float,
    lam: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Advantages and returns (float32 [T] each) of one trajectory; see the module docstring for the flags."""
    rewards = np.asarray(rewards, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if rewards.ndim != 1 or rewards.shape != values.shape:
        raise TrainerError(
            f"gae needs 1-D rewards and values of equal length, got shapes {rewards.shape} and "
            f"{values.shape}; pass one agent's trajectory at a time"
        )
    del truncated  # truncation and unfinished fragments bootstrap alike; only termination stops it
    bootstrap = 0.0 if terminated else float(next_value)
    next_values = np.append(values[1:], bootstrap)
    deltas = rewards + gamma * next_values - values
    advantages = np.zeros_like(deltas)
    running = 0.0
    for t in range(len(deltas) - 1, -1, -1):
        running = deltas[t] + gamma * lam * running
        advantages[t] = running
    returns = advantages + values
    return advantages.astype(np.float32), returns.astype(np.float32)
