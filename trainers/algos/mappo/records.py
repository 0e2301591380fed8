"""A rollout worker's stored decisions, and their assembly into one batch per policy.

Each batched ``act`` of one policy at one step is kept as a :class:`StepRecord` (rows: the agents that
acted). Rewards are added to a row until the agent's next decision. When the iteration ends while an agent
waits between decisions (Unity decision period > 1), its last row is *held*: it leaves this iteration's
batch (:func:`take_rows` copies it for the next one, where it keeps collecting rewards) and is skipped here
through ``StepRecord.held``. :func:`assemble_batches` runs GAE per trajectory over the kept rows and
concatenates.

Memory: a row's teammates are row references (``CriticInput.team_rows``), never copies; a held row's
references become its teammates' embeddings at acting time (its teammates stay in this iteration). Image
sensors are kept as bytes when that loses nothing (:func:`compact_images`): values that are all exactly
``k / 255`` (Unity's camera and PNG sensors), or integers 0..255 from a uint8 observation space, are stored
as uint8 ``k`` and read by the networks as ``k / 255`` (so a uint8 space's images reach the networks scaled
to [0, 1], the scale Unity's camera sensors send); anything else stays float32.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from unimarl.trainers.algos.mappo.teams import concat_critic
from unimarl.trainers.algos.mappo.trajectories import batched_gae
from unimarl.trainers.core.batch import CriticInput, RolloutBatch

_255 = np.float32(255.0)


def compact_images(obs: tuple[np.ndarray, ...], byte_spaces: tuple[bool, ...]) -> tuple[np.ndarray, ...]:
    """Image sensors ([n, *rank-3 shape]) as uint8 where nothing is lost (module docstring); ``byte_spaces``
    marks sensors whose observation space is uint8. Other arrays are returned unchanged."""
    out = []
    for x, byte_space in zip(obs, byte_spaces, strict=True):
        if x.ndim == 4 and x.dtype != np.uint8 and x.size:
            if byte_space:
                k = x
            else:
                k = np.rint(x * _255)  # float32 throughout: k / 255 is then the PNG decoder's float32 value
                if not np.array_equal(k.astype(np.float32) / _255, x):
                    k = None  # type: ignore[assignment]
            if k is not None and k.min() >= 0 and k.max() <= 255 and np.array_equal(k, np.rint(k)):
                x = k.astype(np.uint8)
        out.append(x)
    return tuple(out)


def images_as_float(x: np.ndarray) -> np.ndarray:
    """The values the networks see: uint8 k -> float32 k / 255; float arrays unchanged."""
    return x.astype(np.float32) / _255 if x.dtype == np.uint8 else x


def concat_obs(parts: list[np.ndarray]) -> np.ndarray:
    """Concatenate one sensor's arrays; bytes stay bytes unless some part could not be stored as bytes."""
    if len({p.dtype for p in parts}) > 1:
        parts = [images_as_float(p).astype(np.float32, copy=False) for p in parts]
    return np.concatenate(parts)


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
    embeddings: np.ndarray | None = None
    """float32 [n, W]: each row's teammate embedding at acting time (for rows held over a cut)."""
    held: list[int] = field(default_factory=list)
    """Rows carried into the next iteration (left out of this one's batch)."""


def _critic_rows(critic: CriticInput, rows: np.ndarray, embeddings: np.ndarray | None, n: int) -> CriticInput:
    """The critic input of ``rows`` (of ``n``) taken out of their record: references to rows also taken are
    renumbered, references to the others become those rows' acting-time ``embeddings``."""
    if critic.state is not None:
        return CriticInput(state=critic.state[rows])
    if critic.team_rows is None:
        return critic
    refs = critic.team_rows[rows]
    position = np.full(n, -1, np.int32)
    position[rows] = np.arange(len(rows))
    target = position[refs.clip(min=0)]
    inside, outside = (refs >= 0) & (target >= 0), (refs >= 0) & (target < 0)
    new_refs = np.where(inside, target, -1).astype(np.int32)
    parts = [] if critic.team_embeddings is None else [critic.team_embeddings[rows]]
    masks = [] if critic.team_embedding_mask is None else [critic.team_embedding_mask[rows]]
    if outside.any() and embeddings is not None:
        parts.append(np.where(outside[:, :, None], embeddings[refs.clip(min=0)], 0.0).astype(np.float32))
        masks.append(outside)
    if not parts:
        return CriticInput(team_rows=new_refs)
    return CriticInput(
        team_rows=new_refs,
        team_embeddings=np.concatenate(parts, 1),
        team_embedding_mask=np.concatenate(masks, 1),
    )


def take_rows(rec: StepRecord, rows: np.ndarray) -> StepRecord:
    """A copy of ``rows`` of ``rec`` (its ``traj`` still to be renumbered by the caller), standing alone."""
    return StepRecord(
        obs=tuple(o[rows] for o in rec.obs),
        mask=None if rec.mask is None else rec.mask[rows],
        critic=_critic_rows(rec.critic, rows, rec.embeddings, len(rec.values)),
        continuous=rec.continuous[rows],
        discrete=rec.discrete[rows],
        logp=rec.logp[rows],
        values=rec.values[rows],
        traj=rec.traj[rows],
        rewards=rec.rewards[rows].copy(),
        embeddings=None if rec.embeddings is None else rec.embeddings[rows],
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
    lost: set[int] | frozenset[int] = frozenset(),
) -> dict[str, RolloutBatch]:
    """GAE per trajectory (vectorised), then one flat batch per policy.

    ``ends``: per trajectory id, (terminated, value to bootstrap from); ``discount``: policy -> (gamma, lam);
    ``lost``: trajectories broken off by a relaunched game, whose rows get ``loss_mask`` 0 (no gradient, no
    normaliser update).
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
        traj = np.concatenate([r.traj for r in recs])
        gamma, lam = discount[name]
        advantages, returns = batched_gae(
            np.concatenate([r.rewards for r in recs]),
            values,
            traj,
            terminated,
            next_value,
            gamma,
            lam,
        )
        masks = [r.mask for r in recs]
        batches[name] = RolloutBatch(
            obs=tuple(concat_obs(list(parts)) for parts in zip(*(r.obs for r in recs), strict=True)),
            critic=concat_critic([r.critic for r in recs], [len(r.values) for r in recs]),
            continuous_actions=np.concatenate([r.continuous for r in recs]),
            discrete_actions=np.concatenate([r.discrete for r in recs]),
            action_mask=None if masks[0] is None else np.concatenate(masks),  # type: ignore[arg-type]
            logp=np.concatenate([r.logp for r in recs]),
            values=values,
            advantages=advantages,
            returns=returns,
            loss_mask=(~np.isin(traj, list(lost))).astype(np.float32)
            if lost
            else np.ones(len(values), np.float32),
        )
    return batches
