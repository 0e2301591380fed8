"""Centralised-critic inputs built from teammates, and concatenation of batches with different team sizes.

Without a game-provided global state, an agent's critic sees ``team_obs`` [B, K, obs_size]: the flattened
observations of its live teammates at that step (itself excluded), padded to K with ``team_mask`` False. K
is the largest team size minus one in the batch; batches with different K are padded to the largest when
concatenated.
"""

from __future__ import annotations

import numpy as np

from unimarl.trainers.batch import CriticInput, RolloutBatch
from unimarl.trainers.errors import TrainerError


def team_arrays(flat_obs: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Teammates' observations for each row; rows with equal ``groups`` values are teammates.

    ``flat_obs`` float32 [B, D], ``groups`` int [B] -> (team_obs float32 [B, K, D], team_mask bool [B, K]).
    Teammates keep their row order; one gather for all groups (no loop over groups).
    """
    b, d = flat_obs.shape
    if b == 0:
        return np.zeros((0, 0, d), np.float32), np.zeros((0, 0), bool)
    groups = np.asarray(groups)
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    first = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    sizes = np.diff(np.r_[first, b])
    group_of = np.repeat(np.arange(len(first)), sizes)
    start, size = first[group_of], sizes[group_of]  # per sorted row
    k = int(sizes.max()) - 1
    slot = np.arange(k)[None, :]
    position = np.arange(b)[:, None] - start[:, None]  # own position inside the group
    member = slot + (slot >= position)  # skip oneself
    valid = member < size[:, None]
    source = order[np.where(valid, start[:, None] + member, 0)]
    team_obs = np.zeros((b, k, d), np.float32)
    team_mask = np.zeros((b, k), bool)
    team_obs[order] = np.where(valid[:, :, None], flat_obs[source], 0.0)
    team_mask[order] = valid
    return team_obs, team_mask


def _pad_team(critics: list[CriticInput]) -> CriticInput:
    k = max(c.team_obs.shape[1] for c in critics if c.team_obs is not None)
    obs, masks = [], []
    for c in critics:
        assert c.team_obs is not None and c.team_mask is not None
        pad = k - c.team_obs.shape[1]
        obs.append(np.pad(c.team_obs, ((0, 0), (0, pad), (0, 0))))
        masks.append(np.pad(c.team_mask, ((0, 0), (0, pad))))
    return CriticInput(team_obs=np.concatenate(obs), team_mask=np.concatenate(masks))


def concat_critic(critics: list[CriticInput]) -> CriticInput:
    """Concatenate critic inputs along the batch axis (padding the teammate axis)."""
    with_state = [c.state is not None for c in critics]
    if all(with_state):
        return CriticInput(state=np.concatenate([c.state for c in critics]))  # type: ignore[misc]
    if any(with_state):
        raise TrainerError("cannot concatenate critic inputs with and without global state")
    return _pad_team(critics)


def concat_batches(batches: list[RolloutBatch]) -> RolloutBatch:
    """One batch from several of the same policy (e.g. from several workers)."""
    if not batches:
        raise TrainerError("concat_batches needs at least one batch")
    if len(batches) == 1:
        return batches[0]
    masks = [b.action_mask for b in batches]
    return RolloutBatch(
        obs=tuple(np.concatenate(parts) for parts in zip(*(b.obs for b in batches), strict=True)),
        critic=concat_critic([b.critic for b in batches]),
        continuous_actions=np.concatenate([b.continuous_actions for b in batches]),
        discrete_actions=np.concatenate([b.discrete_actions for b in batches]),
        action_mask=None if masks[0] is None else np.concatenate(masks),  # type: ignore[arg-type]
        logp=np.concatenate([b.logp for b in batches]),
        values=np.concatenate([b.values for b in batches]),
        advantages=np.concatenate([b.advantages for b in batches]),
        returns=np.concatenate([b.returns for b in batches]),
        loss_mask=np.concatenate([b.loss_mask for b in batches]),
    )
