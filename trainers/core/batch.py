"""Data passed between the rollout workers and the learners.

Experience is assembled per agent into trajectories; the rollout side computes advantages per trajectory (GAE,
bootstrapping on truncation, not on termination) and hands the learner one :class:`RolloutBatch` per policy,
flattened over all agent steps of the iteration (first axis ``N``). Variable team sizes are handled by padding
the teammate axis ``K`` (row references, -1 = empty), never by assuming a fixed agent set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unimarl.bridge.spec import ActionSpec
from unimarl.trainers.core.action_map import ActionBounds


@dataclass(frozen=True)
class PolicySpec:
    """What a policy needs to know about its agents.

    ``obs_shapes``: one shape per sensor of the agent's own observation (global state excluded).
    ``state_shape``: shape of the game-provided global state, or None when the critic must build an
    agent-specific global state from the agent's own and its teammates' observations.
    ``action_bounds``: the continuous action Box when it is not ``[-1, 1]`` (None: Unity's ``[-1, 1]``); the
    mapping from network output to game action (:mod:`unimarl.trainers.core.action_map`) depends on it.
    """

    obs_shapes: tuple[tuple[int, ...], ...]
    action_spec: ActionSpec
    state_shape: tuple[int, ...] | None = None
    action_bounds: ActionBounds | None = None

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
    """Input of the centralised critic for B agent steps, besides their own observations.

    Either ``state`` [B, *state_shape] (the game's global state of each agent's area or group), or the
    agent's live teammates at that step (the agent itself excluded), in two parts whose union the critic
    pools:

    - ``team_rows`` int32 [B, K]: rows of the same batch holding a teammate's observation (-1 = empty slot).
      Observations are stored once and referenced, never copied per teammate; the critic encodes each row
      once and gathers the embeddings.
    - ``team_embeddings`` float32 [B, M, W] with ``team_embedding_mask`` bool [B, M]: teammates whose rows
      are not in the batch (another policy's agents in the same group, or rows left in an earlier iteration),
      as their own critic's teammate embedding at acting time (no gradient flows into them).
    """

    state: np.ndarray | None = None
    team_rows: np.ndarray | None = None
    team_embeddings: np.ndarray | None = None
    team_embedding_mask: np.ndarray | None = None

    def __len__(self) -> int:
        for part in (self.state, self.team_rows, self.team_embeddings):
            if part is not None:
                return int(part.shape[0])
        return 0


@dataclass(frozen=True)
class RolloutBatch:
    """One policy's experience for one iteration, flattened over agent steps (first axis N).

    ``obs``: one array per sensor; image sensors may be uint8 holding ``k / 255`` (see
    :mod:`unimarl.trainers.algos.mappo.records`), everything else float32.
    ``action_mask``: float32 [N, sum(branches)], 1 = allowed (None without discrete actions).
    ``values``/``returns`` are in reward units (not normalised); ``logp`` is the behaviour policy's log-prob
    of the taken (continuous + discrete) action. ``loss_mask``: 1 for rows that count in the losses and
    metrics, 0 for rows to ignore; rollout workers emit only real decisions of live agents, so their batches
    are all ones (the mask is for callers that pad rows).
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
    embeddings: np.ndarray | None = None
    """float32 [B, W]: each agent's teammate embedding in its critic (what its teammates' critics pool)."""
