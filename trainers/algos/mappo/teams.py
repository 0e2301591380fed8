"""Who is whose teammate for the centralised critic, and concatenation of critic inputs and batches.

Teams (:func:`team_key`): a Unity agent's team is its Unity group (``SimpleMultiAgentGroup``, ``group_id !=
0``) in its game, whatever the behaviour (a striker and a goalie of one group are teammates); a Unity agent
without a group is alone (its critic needs a group or a ``global_state`` sensor to see more than itself).
A PettingZoo env has no groups: its agents of one behaviour are a team (names like ``red_0``/``blue_3`` mark
the sides). Agents of different envs are never teammates.

Without a game-provided global state, an agent's critic pools its live teammates at that step (itself
excluded). Teammates acting through the same policy are referenced by row (``CriticInput.team_rows`` [B, K],
-1 = empty): their observations are stored once, not copied into every teammate's row. K is the largest team
size minus one in the batch; inputs with different K are padded when concatenated, and row references are
shifted by the rows before them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from unimarl.trainers.core.batch import CriticInput, RolloutBatch
from unimarl.trainers.core.errors import ConfigError, TrainerError


def team_key(
    env_index: int, behavior: str, info: dict[str, Any] | None, unity: bool
) -> tuple[Any, ...] | None:
    """Agents of one worker with equal keys are teammates; None: the agent is alone (see the module
    docstring)."""
    if not unity:
        return (env_index, "behavior", behavior)
    group = int((info or {}).get("group_id", 0))
    return None if group == 0 else (env_index, "group", group)


def team_rows(groups: np.ndarray) -> np.ndarray:
    """int32 [B, K]: for each row, the other rows with the same ``groups`` value (in row order), -1 padded.

    One gather for all groups (no loop over groups); K is the largest group size minus one.
    """
    groups = np.asarray(groups)
    b = len(groups)
    if b == 0:
        return np.zeros((0, 0), np.int32)
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
    rows = np.full((b, k), -1, np.int32)
    rows[order] = np.where(valid, order[np.where(valid, start[:, None] + member, 0)], -1)
    return rows


def other_policy_teammates(
    teams: dict[str, np.ndarray], embed: Callable[[str], np.ndarray]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Teammates acting through another policy, as that policy's teammate embeddings.

    ``teams``: policy -> team id of each of its rows at this step (negative: alone); ``embed(policy)``: the
    embeddings [n, W] of that policy's rows. Returns, for each policy with such teammates, float32 [n, M, W]
    embeddings and their bool [n, M] mask. Raises :class:`ConfigError` when two policies of one team embed
    in different widths.
    """
    members: dict[int, list[tuple[str, int]]] = {}
    for name, ids in teams.items():
        for row, team in enumerate(ids.tolist()):
            if team >= 0:
                members.setdefault(team, []).append((name, row))
    mixed = {t: m for t, m in members.items() if len({name for name, _ in m}) > 1}
    involved = sorted({name for m in mixed.values() for name, _ in m})
    embedded = {name: embed(name) for name in involved}
    out = {}
    for name in involved:
        foreign = [
            [embedded[other][row] for other, row in mixed.get(team, ()) if other != name]
            for team in teams[name].tolist()
        ]
        width = embedded[name].shape[1]
        given = np.zeros((len(foreign), max(len(f) for f in foreign), width), np.float32)
        mask = np.zeros(given.shape[:2], bool)
        for row, vectors in enumerate(foreign):
            for slot, vector in enumerate(vectors):
                if vector.shape[0] != width:
                    raise ConfigError(
                        f"policy '{name}' shares Unity groups with a policy whose critic embeds teammates "
                        f"in {vector.shape[0]} units, not {width}; give both the same "
                        "network_settings.hidden_units"
                    )
                given[row, slot], mask[row, slot] = vector, True
        out[name] = (given, mask)
    return out


def _pad(a: np.ndarray, width: int, axis: int, value: Any) -> np.ndarray:
    pad = [(0, 0)] * a.ndim
    pad[axis] = (0, width - a.shape[axis])
    return np.pad(a, pad, constant_values=value)


def _shift(rows: np.ndarray, offset: int) -> np.ndarray:
    return np.where(rows >= 0, rows + offset, -1).astype(np.int32)


def concat_critic(critics: list[CriticInput], sizes: list[int] | None = None) -> CriticInput:
    """Concatenate critic inputs along the batch axis: pad the teammate axes, shift row references.

    ``sizes``: rows of each part (default: ``len`` of each critic input).
    """
    sizes = [len(c) for c in critics] if sizes is None else sizes
    with_state = [c.state is not None for c in critics]
    if all(with_state):
        return CriticInput(state=np.concatenate([c.state for c in critics]))  # type: ignore[misc]
    if any(with_state):
        raise TrainerError("cannot concatenate critic inputs with and without global state")
    offsets = np.cumsum([0, *sizes[:-1]])
    rows = [
        c.team_rows if c.team_rows is not None else np.full((n, 0), -1, np.int32)
        for c, n in zip(critics, sizes, strict=True)
    ]
    k = max(r.shape[1] for r in rows)
    team_rows = np.concatenate(
        [_pad(_shift(r, int(o)), k, 1, -1) for r, o in zip(rows, offsets, strict=True)]
    )
    given = [c for c in critics if c.team_embeddings is not None]
    if not given:
        return CriticInput(team_rows=team_rows)
    width = given[0].team_embeddings.shape[2]  # type: ignore[union-attr]
    m = max(c.team_embeddings.shape[1] for c in given)  # type: ignore[union-attr]
    embeddings, masks = [], []
    for c, n in zip(critics, sizes, strict=True):
        e = c.team_embeddings if c.team_embeddings is not None else np.zeros((n, 0, width), np.float32)
        mask = c.team_embedding_mask if c.team_embedding_mask is not None else np.ones(e.shape[:2], bool)
        embeddings.append(_pad(e, m, 1, 0.0))
        masks.append(_pad(mask, m, 1, False))
    return CriticInput(
        team_rows=team_rows,
        team_embeddings=np.concatenate(embeddings),
        team_embedding_mask=np.concatenate(masks),
    )


def concat_batches(batches: list[RolloutBatch]) -> RolloutBatch:
    """One batch from several of the same policy (e.g. from several workers); always writable arrays."""
    if not batches:
        raise TrainerError("concat_batches needs at least one batch")
    if len(batches) == 1 and batches[0].advantages.flags.writeable:
        return batches[0]  # (a batch from Ray's object store is read-only: copied below, as torch wants)
    masks = [b.action_mask for b in batches]
    return RolloutBatch(
        obs=tuple(np.concatenate(parts) for parts in zip(*(b.obs for b in batches), strict=True)),
        critic=concat_critic([b.critic for b in batches], [len(b) for b in batches]),
        continuous_actions=np.concatenate([b.continuous_actions for b in batches]),
        discrete_actions=np.concatenate([b.discrete_actions for b in batches]),
        action_mask=None if masks[0] is None else np.concatenate(masks),  # type: ignore[arg-type]
        logp=np.concatenate([b.logp for b in batches]),
        values=np.concatenate([b.values for b in batches]),
        advantages=np.concatenate([b.advantages for b in batches]),
        returns=np.concatenate([b.returns for b in batches]),
        loss_mask=np.concatenate([b.loss_mask for b in batches]),
    )
