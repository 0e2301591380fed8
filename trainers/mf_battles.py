"""Episode and battle bookkeeping of one environment of a mean-field rollout worker.

Rewards: an agent's reward plus ``group_reward_weight`` (per behaviour, as for MAPPO) times its Unity group
reward (``infos["group_reward"]``, ML-Agents' ``AddGroupReward``), credited to its open transition and to its
episode return. A behaviour whose weight is 0 but whose group reward is not gets one warning per worker.

Battles are fought by Unity groups (``infos["group_id"]``; agents without one, id 0, and PettingZoo agents
form one group per environment). A group's battle ends at a step in which every agent of the group that was
alive before the step ended. Groups whose battles end at the same step are taken in id order and joined into
battles with one group per behaviour: Unity numbers groups in creation order, so a game that creates the
groups of each area's teams together (as the sim battle does: ``2 * area + team + 1``) has each area's teams
fight one battle, never a team of another area. An :class:`Outcome` per battle gives per behaviour the kills
(the game's ``<Game>/kills_team<k>`` stat for behaviours named ``<Game>?team=<k>``, one value per battle ended
at that step, in the same order; else the deaths of the other behaviours' groups in the battle), the mean
agent return, the battle's length, its actors and groups, and for game-driven behaviours the model version
that ran the whole battle (None if it changed or none ran).

Sides: with ``MFPlan.swap_sides`` a group's actors trade behaviours after each of its battles (in environment
i, groups start swapped when i is odd), so in every area the learner plays both teams.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from unimarl.trainers.envs import credit_group_reward

NO_GROUP = 0
"""Unity's group id of an agent outside any SimpleMultiAgentGroup."""


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


Ended = tuple[str, Any, bool, bool]
"""(agent, final observation or None, terminated, truncated)."""


class EnvBook:
    """Returns, ended agents, battles and sides of one environment (module docstring)."""

    def __init__(
        self,
        env_index: int,
        actors: dict[str, str],
        swap_sides: tuple[tuple[str, str], ...],
        group_weight: dict[str, float],
        running: Callable[[], dict[str, int | None]],
        warned: set[str],
    ) -> None:
        self.env_index = env_index
        self.actors = actors
        """Behaviour -> actor (shared with the worker, which adds behaviours that appear late)."""
        self.partner = {a: b for a, b in swap_sides} | {b: a for a, b in swap_sides}
        self.group_weight = group_weight
        self.running = running
        self.warned = warned
        self.returns: dict[str, float] = {}
        self.member: dict[str, tuple[str, int]] = {}
        """Live agent -> (behaviour, group)."""
        self.ended: dict[str, list[Ended]] = defaultdict(list)
        """Behaviour -> agents that ended at the last step (taken by the worker's next act)."""
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
        """Start the episodes of ``agents`` (after a reset: forget everything else first)."""
        for agent in agents:
            if agent not in self.member:
                self.member[agent] = (behavior_of(agent), group_id(infos.get(agent)))
                self.returns.setdefault(agent, 0.0)
                self.group(self.member[agent][1])

    def restart(self, agents: Iterable[str], behavior_of: Callable[[str], str], infos: dict) -> None:
        """The environment was reset: every episode ended, the agents (names may repeat) start anew."""
        self.returns, self.member = {}, {}
        self.register(agents, behavior_of, infos)

    # -- one step -------------------------------------------------------------------------------------
    def credit(self, agent: str, behavior: str, reward: float, info: dict | None) -> float:
        """The agent's reward with its weighted group reward."""
        weight = self.group_weight.get(behavior, self.group_weight.get(behavior.split("?", 1)[0], 0.0))
        return credit_group_reward(reward, info, weight, behavior, self.warned)

    def step(
        self,
        live: Iterable[str],
        result: tuple[Any, ...],
        behavior_of: Callable[[str, dict | None], str],
        pending: dict[str, Any],
        returns: dict[str, list[float]],
    ) -> list[list[int]]:
        """Credit rewards and end agents after one env step; returns the battles that ended (group ids)."""
        obs, rewards, terminations, truncations, infos = result
        before = list(self.member)
        self.steps += 1
        for agent, reward in rewards.items():
            if agent not in self.member:
                self.register([agent], lambda a: behavior_of(a, infos.get(a)), infos)
            r = self.credit(agent, self.member[agent][0], float(reward), infos.get(agent))
            if agent in pending:
                pending[agent].reward += r
            self.returns[agent] += r
        live = set(live)
        alive: dict[int, int] = defaultdict(int)
        gone: dict[int, int] = defaultdict(int)
        for agent in before:
            behavior, gid = self.member[agent]
            alive[gid] += 1
            term, trunc = bool(terminations.get(agent)), bool(truncations.get(agent))
            if not (term or trunc or agent not in live):
                continue
            gone[gid] += 1
            self.ended[behavior].append((agent, obs.get(agent), term, trunc or not term))
            del self.member[agent]
            ep = self.returns.pop(agent)
            grp = self.group(gid)
            grp.finished[behavior].append(ep)
            returns[behavior].append(ep)
            if term:
                grp.deaths[behavior] += 1
        fresh = [a for a in live if not (terminations.get(a) or truncations.get(a))]
        self.register(fresh, lambda a: behavior_of(a, infos.get(a)), infos)
        return self._battles(sorted(g for g, n in gone.items() if n == alive[g]))

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
