"""Self-play between a game's teams (``ghost``, ML-Agents' ghost trainer), as every algorithm acts it: which
policy plays on which team, through which acting *slot*. The rules (snapshots, swaps, the learning team, ELO)
are :mod:`unimarl.trainers.selfplay.ghost`'s; the algorithms (MAPPO, the mean-field learners) give each ghost
policy its slots in their acting plans and train a policy on its learning slot's data only."""

from __future__ import annotations

from unimarl.trainers.core.config import TrainConfig
from unimarl.trainers.core.errors import ConfigError
from unimarl.trainers.core.mappo_settings import GhostSettings
from unimarl.trainers.core.names import team_of


def ghost_settings(config: TrainConfig, behavior_policy: dict[str, str]) -> dict[str, GhostSettings]:
    """Policy -> its self-play settings (``ghost``), for the policies that have them (read as the plan reads
    a policy's settings: its own section, else its behaviour's)."""
    out: dict[str, GhostSettings] = {}
    for behavior, policy in behavior_policy.items():
        ghost = (config.behaviors.get(policy) or config.behavior_settings(behavior)).ghost
        if ghost is not None:
            out.setdefault(policy, ghost)
    return out


def ghost_slots(config: TrainConfig, behavior_policy: dict[str, str]) -> dict[str, dict[int, str]]:
    """Self-play between teams (``ghost``): policy -> team -> the acting slot of that policy on that team.
    A policy that plays on one team acts as itself; one on several teams (a symmetric game's one policy)
    gets a slot per team, ``<policy>#team<T>``, so that one team can act with the learner's weights and the
    others with snapshots. Raises :class:`ConfigError` when the game's teams cannot self-play."""
    slots: dict[str, dict[int, str]] = {}
    for policy in sorted(ghost_settings(config, behavior_policy)):
        teams = sorted({team_of(b) for b, p in behavior_policy.items() if p == policy})
        slots[policy] = {t: policy if len(teams) == 1 else f"{policy}#team{t}" for t in teams}
    if slots and len({t for by_team in slots.values() for t in by_team}) < 2:
        raise ConfigError(
            f"self_play (ghost) for {sorted(slots)}: the game's behaviours {sorted(behavior_policy)} are all "
            "on one team; self-play needs behaviour ids with teams (Name?team=0, Name?team=1: Behavior "
            "Parameters' Team Id in Unity)"
        )
    return slots
