"""The battle game's knowledge for mean-field training: battles, sides and the scripted baseline.

Episodes come from the rollout worker's runner (agents that start and end, with their returns, rewards
credited once there); :class:`EnvBook` turns them into battles, per environment.

Battles are fought by Unity groups (``infos["group_id"]``; agents without one, id 0, and PettingZoo agents
form one group per environment). A group's battle ends at a step in which every agent of the group alive
during the step ended (an agent first seen at the step it ends fights in that battle). Groups whose battles
end at the same step are taken in id order and joined into battles with one group per behaviour: Unity
numbers groups in creation order, so a game that creates the groups of each area's teams together (as the
sim battle does: ``2 * area + team + 1``) has each area's teams fight one battle, never a team of another
area. An :class:`Outcome` per battle gives per behaviour the kills (the game's ``<Game>/kills_team<k>`` stat
for behaviours named ``<Game>?team=<k>``, one value per battle ended at that step, in the same order; else
the deaths of the other behaviours' groups in the battle), the mean agent return, the battle's length, its
actors and groups, and for game-driven behaviours the model version that ran the whole battle (None if it
changed or none ran).

Sides: with ``MFPlan.swap_sides`` a group's actors trade behaviours after each of its battles (in environment
i, groups start swapped when i is odd), so in every area the learner plays both teams.

Scripted baseline: the battle's actions are 0 (stay), 1..12 (moves) and 13..20 (attacks on the 8 adjacent
cells, allowed by the mask only where an enemy stands); ``baseline:scripted`` attacks when it can
(:func:`scripted_choices`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

NO_GROUP = 0
"""Unity's group id of an agent outside any SimpleMultiAgentGroup."""

FIRST_ATTACK = 13
"""The battle's first attack action (``unimarl.sim.battle.FIRST_ATTACK``; the Unity game's layout)."""


@dataclass(frozen=True)
class Outcome:
    """One finished battle (one area's episode, or the environment's when the game has no groups)."""

    kills: dict[str, float]
    returns: dict[str, float]
    """Per behaviour: the mean return of its agents' episodes."""
    steps: int
    actors: dict[str, str] = field(default_factory=dict)
    """Per behaviour: the actor that drove it in this battle (they differ between battles with swap_sides)."""
    versions: dict[str, int | None] = field(default_factory=dict)
    """Per game-driven behaviour: the model version the game ran for the whole battle (None: it changed
    during the battle, or no pushed model ran)."""
    groups: dict[str, int] = field(default_factory=dict)
    """Per behaviour: the Unity group that fought the battle (0: no group)."""


@dataclass
class _Group:
    swapped: bool
    start_step: int
    versions: dict[str, int | None]
    finished: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    deaths: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class EndedAgent(Protocol):
    """An agent whose episode ended at a step (the runner's ``AgentEnd``)."""

    @property
    def agent(self) -> str: ...
    @property
    def behavior(self) -> str: ...
    @property
    def terminated(self) -> bool: ...
    @property
    def ret(self) -> float:
        """Its episode's return."""
        ...


class EnvBook:
    """Battles and sides of one environment (module docstring)."""

    def __init__(
        self,
        env_index: int,
        actors: dict[str, str],
        swap_sides: tuple[tuple[str, str], ...],
        running: Callable[[], dict[str, int | None]],
    ) -> None:
        self.env_index = env_index
        self.actors = actors
        """Behaviour -> actor (shared with the worker, which adds behaviours that appear late)."""
        self.partner = {a: b for a, b in swap_sides} | {b: a for a, b in swap_sides}
        self.running = running
        self.member: dict[str, tuple[str, int]] = {}
        """Live agent -> (behaviour, group)."""
        self.alive: dict[int, int] = defaultdict(int)
        """Group -> its live agents."""
        self.groups: dict[int, _Group] = {}
        self.steps = 0

    # -- who drives whom ------------------------------------------------------------------------------
    def group(self, gid: int) -> _Group:
        if gid not in self.groups:
            self.groups[gid] = _Group(self.env_index % 2 == 1, self.steps, self.running())
        return self.groups[gid]

    def actor(self, behavior: str, gid: int) -> str:
        """The actor driving ``behavior``'s agents of group ``gid`` now."""
        partner = self.partner.get(behavior)
        if partner is not None and self.group(gid).swapped:
            return self.actors[partner]
        return self.actors[behavior]

    def register(self, agents: Iterable[str], behavior_of: Callable[[str], str], infos: dict) -> None:
        """Start the episodes of ``agents`` (their groups from ``infos``)."""
        for agent in agents:
            if agent not in self.member:
                gid = group_id(infos.get(agent))
                self.member[agent] = (behavior_of(agent), gid)
                self.alive[gid] += 1
                self.group(gid)

    def restart(self, agents: Iterable[str], behavior_of: Callable[[str], str], infos: dict) -> None:
        """The environment was reset: every episode ended, the agents (names may repeat) start anew."""
        self.member, self.alive = {}, defaultdict(int)
        self.register(agents, behavior_of, infos)

    # -- one step -------------------------------------------------------------------------------------
    def step(
        self,
        ended: Sequence[EndedAgent],
        started: Iterable[str],
        behavior_of: Callable[[str], str],
        infos: dict,
    ) -> list[list[int]]:
        """One env step: the agents whose episodes ``ended`` and ``started`` (infos: the step's); returns the
        battles that ended (group ids)."""
        self.steps += 1
        gone: dict[int, int] = defaultdict(int)
        for end in ended:
            member = self.member.pop(end.agent, None)
            if member is None:  # first seen at this step: it never counted among the live agents
                behavior, gid = end.behavior, group_id(infos.get(end.agent))
            else:
                behavior, gid = member
                self.alive[gid] -= 1
            gone[gid] += 1
            grp = self.group(gid)
            grp.finished[behavior].append(end.ret)
            if end.terminated:
                grp.deaths[behavior] += 1
        over = sorted(g for g in gone if not self.alive[g])
        self.register(started, behavior_of, infos)
        return self._battles(over)

    def _battles(self, over: list[int]) -> list[list[int]]:
        """Groups whose battle ended at this step, joined in id order, one group per behaviour."""
        battles: list[tuple[list[int], set[str]]] = []
        for gid in over:
            behaviors = set(self.groups[gid].finished)
            for groups, taken in battles:
                if not taken & behaviors:
                    groups.append(gid)
                    taken |= behaviors
                    break
            else:
                battles.append(([gid], behaviors))
        return [groups for groups, _ in battles]

    def outcomes(
        self, battles: list[list[int]], stats: dict[str, list[tuple[float, Any]]], hidden: tuple[str, ...]
    ) -> list[Outcome]:
        """One :class:`Outcome` per battle; then each battle's groups start their next battle."""
        now = self.running()
        out = []
        for j, gids in enumerate(battles):
            groups = {b: gid for gid in gids for b in self.groups[gid].finished}
            behaviors = sorted({*groups, *hidden})
            kills: dict[str, float] = {}
            for b in behaviors:
                game, _, team = b.partition("?team=")
                values = (stats.get(f"{game}/kills_team{team}") or []) if team else []
                if len(values) >= len(battles):
                    kills[b] = float(values[len(values) - len(battles) + j][0])
                elif not hidden:  # with hidden opponents the terminations seen are not all the kills
                    kills[b] = float(sum(self.groups[g].deaths[o] for o, g in groups.items() if o != b))
            first = self.groups[gids[0]]
            returns = {
                b: sum(self.groups[g].finished[b]) / len(self.groups[g].finished[b])
                for b, g in groups.items()
            }
            actors = {b: self.actor(b, g) for b, g in groups.items() if b in self.actors}
            versions = {b: v if v == first.versions.get(b) else None for b, v in now.items()}
            out.append(Outcome(kills, returns, self.steps - first.start_step, actors, versions, groups))
            for gid in gids:
                grp = self.groups[gid]
                self.groups[gid] = _Group(not grp.swapped, self.steps, now)
        return out


def group_id(info: dict | None) -> int:
    """The Unity group id in an agent's infos (0 without one)."""
    return int((info or {}).get("group_id", NO_GROUP) or NO_GROUP)


def scripted_choices(allowed: np.ndarray) -> np.ndarray:
    """What ``baseline:scripted`` picks from, per agent (a row of ``allowed``, [n, A] bool): its allowed
    attacks when it has any (an adjacent enemy), else every allowed action."""
    attacks = allowed.copy()
    attacks[:, :FIRST_ATTACK] = False
    return np.where(attacks.any(axis=1, keepdims=True), attacks, allowed)


def outcome_metrics(outcome: Outcome, acc: dict[str, list[float]]) -> None:
    """A finished battle's metrics: kills per team (``battle/kills/<behaviour>``) and whether each team won
    (``battle/win/<behaviour>``: 1 for the most kills, 0.5 for a draw, 0 otherwise)."""
    for behavior, kills in outcome.kills.items():
        acc[f"battle/kills/{behavior}"].append(kills)
        others = [k for other, k in outcome.kills.items() if other != behavior]
        if others:
            acc[f"battle/win/{behavior}"].append(
                1.0 if kills > max(others) else 0.5 if kills == max(others) else 0.0
            )
