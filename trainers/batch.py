"""Data passed between the rollout workers and the learners.

Experience is assembled per agent into trajectories; the rollout side computes advantages per trajectory (GAE,
bootstrapping on truncation, not on termination) and hands the learner one :class:`RolloutBatch` per policy,
flattened over all agent steps of the iteration (first axis ``N``). Variable team sizes are handled by padding
the teammate axis ``K`` with a mask, never by assuming a fixed agent set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unimarl.bridge.spec import ActionSpec


@dataclass(frozen=True)
class PolicySpec:
    """What a policy needs to know about its agents.

    ``obs_shapes``: one shape per sensor of the agent's own observation (global state excluded).
    ``state_shape``: shape of the game-provided global state, or None when the critic must build an
    agent-specific global state from the agent's own and its teammates' observations.
    """

    obs_shapes: tuple[tuple[int, ...], ...]
    action_spec: ActionSpec
    state_shape: tuple[int, ...] | None = None

    @property
    def obs_size(self) -> int:
        """Length of all sensors flattened and concatenated."""
        return int(sum(int(np.prod(s)) for s in self.obs_shapes))

    @property
    def mask_size(self) -> int:
        """Length of the flattened action mask (sum of discrete branch sizes)."""
        return int(sum(self.action_spec.discrete_branches))


@dataclass(frozen=True)
class CriticInput:
    """Input of the centralised critic for B agent steps.

    Either ``state`` [B, *state_shape] (the game's global state), or ``team_obs`` [B, K, obs_size] with
    ``team_mask`` bool [B, K]: the flattened observations of the agent's live teammates at that step (the
    agent itself excluded, padded to K with False in the mask). Dead agents' own rows are zeroed by the caller
    (death masking) and excluded from the loss through ``RolloutBatch.loss_mask``.
    """

    state: np.ndarray | None = None
    team_obs: np.ndarray | None = None
    team_mask: np.ndarray | None = None


@dataclass(frozen=True)
class RolloutBatch:
    """One policy's experience for one iteration, flattened over agent steps (first axis N).

    ``action_mask``: float32 [N, sum(branches)], 1 = allowed (None without discrete actions).
    ``values``/``returns`` are in reward units (not normalised); ``logp`` is the behaviour policy's log-prob
    of the taken (continuous + discrete) action. ``loss_mask`` is 1 for steps that count in the loss.
    """

    obs: tuple[np.ndarray, ...]
    critic: CriticInput
    continuous_actions: np.ndarray
    discrete_actions: np.ndarray
    action_mask: np.ndarray | None
    logp: np.ndarray
    values: np.ndarray
    advantages: np.ndarray
    returns: np.ndarray
    loss_mask: np.ndarray

    def __len__(self) -> int:
        return int(self.logp.shape[0])


@dataclass(frozen=True)
class ActOutput:
    """What a policy returns for B agents in one batched forward pass."""

    continuous_actions: np.ndarray  # float32 [B, continuous_size]
    discrete_actions: np.ndarray  # int64 [B, branches]
    logp: np.ndarray  # float32 [B]
    values: np.ndarray  # float32 [B], reward units
