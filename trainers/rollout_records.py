"""A rollout worker's stored decisions, and their assembly into one batch per policy.

Each batched ``act`` of one policy at one step is kept as a :class:`StepRecord` (rows: the agents that
acted). Rewards are added to a row until the agent's next decision. When the iteration ends while an agent
waits between decisions (Unity decision period > 1), its last row is *held*: it leaves this iteration's
batch (:func:`take_rows` copies it for the next one, where it keeps collecting rewards) and is skipped here
through ``StepRecord.held``. :func:`assemble_batches` runs GAE per trajectory over the kept rows and
concatenates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from unimarl.trainers.batch import CriticInput, RolloutBatch
from unimarl.trainers.teams import concat_critic
from unimarl.trainers.trajectories import batched_gae


@dataclass
class StepRecord:
    """One policy's batched act() at one step (rows = agents)."""

    obs: tuple[np.ndarray, ...]
    mask: np.ndarray | None
    critic: CriticInput
    continuous: np.ndarray
    discrete: np.ndarray
    logp: np.ndarray
    values: np.ndarray
    traj: np.ndarray
    rewards: np.ndarray
    held: list[int] = field(default_factory=list)
    """Rows carried into the next iteration (left out of this one's batch)."""


def _critic_rows(critic: CriticInput, rows: np.ndarray) -> CriticInput:
    def part(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else a[rows]

    return CriticInput(part(critic.state), part(critic.team_obs), part(critic.team_mask))


def take_rows(rec: StepRecord, rows: np.ndarray) -> StepRecord:
    """A copy of ``rows`` of ``rec`` (its ``traj`` still to be renumbered by the caller)."""
    return StepRecord(
        obs=tuple(o[rows] for o in rec.obs),
        mask=None if rec.mask is None else rec.mask[rows],
        critic=_critic_rows(rec.critic, rows),
        continuous=rec.continuous[rows],
        discrete=rec.discrete[rows],
        logp=rec.logp[rows],
        values=rec.values[rows],
        traj=rec.traj[rows],
        rewards=rec.rewards[rows].copy(),
    )


def _kept(rec: StepRecord) -> StepRecord:
    if not rec.held:
        return rec
    keep = np.ones(len(rec.values), bool)
    keep[rec.held] = False
    return take_rows(rec, np.flatnonzero(keep))


def assemble_batches(
    records: dict[str, list[StepRecord]],
    ends: list[tuple[bool, float]],
    discount: dict[str, tuple[float, float]],
) -> dict[str, RolloutBatch]:
    """GAE per trajectory (vectorised), then one flat batch per policy.

    ``ends``: per trajectory id, (terminated, value to bootstrap from); ``discount``: policy -> (gamma, lam).
    """
    terminated = np.array([t for t, _ in ends], bool)
    next_value = np.array([v for _, v in ends], np.float64)
    batches = {}
    for name, all_records in records.items():
        recs = [_kept(r) for r in all_records]
        recs = [r for r in recs if len(r.values)]
        if not recs:
            continue
        values = np.concatenate([r.values for r in recs]).astype(np.float32)
        gamma, lam = discount[name]
        advantages, returns = batched_gae(
            np.concatenate([r.rewards for r in recs]),
            values,
            np.concatenate([r.traj for r in recs]),
            terminated,
            next_value,
            gamma,
            lam,
        )
        masks = [r.mask for r in recs]
        batches[name] = RolloutBatch(
            obs=tuple(np.concatenate(parts) for parts in zip(*(r.obs for r in recs), strict=True)),
            critic=concat_critic([r.critic for r in recs]),
            continuous_actions=np.concatenate([r.continuous for r in recs]),
            discrete_actions=np.concatenate([r.discrete for r in recs]),
            action_mask=None if masks[0] is None else np.concatenate(masks),  # type: ignore[arg-type]
            logp=np.concatenate([r.logp for r in recs]),
            values=values,
            advantages=advantages,
            returns=returns,
            loss_mask=np.ones(len(values), np.float32),
        )
    return batches
