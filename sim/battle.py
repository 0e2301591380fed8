"""``battle``: two teams fight on a grid (MAgent-battle-like); one grid per area, numpy over agents.

Behaviours ``Battle?team=0`` and ``Battle?team=1`` (``--behaviors``), ``--team-size`` agents each (default
64), on a ``--grid`` x ``--grid`` map (default 40) with walls on the border and random obstacles
(``--obstacles`` fraction of cells, fixed per area). Agent ids: area k, team t, index j ->
``k * 2T + t * T + j``.

Fairness: the map is mirror-symmetric (obstacles are drawn for the left half and mirrored; the border is
walls), team 0 starts in columns ``[1, size // 2)`` and team 1 in the mirrored columns
``[size - size // 2, size - 1)``, and each team sees and acts in its own *egocentric frame*: team 1's
columns are mirrored (column c is seen as ``size - 1 - c``), so every agent sees its own start on the
left and the enemy's on the right. A team-1 agent therefore gets exactly the observation and mask a team-0
agent gets in the mirrored position, and the same action number does the mirrored thing; a policy trained
on one side plays the other identically. Rows are never mirrored. The wire format and the spec are the same
for both teams.

Observations (rank-3 layout follows the package version, see :mod:`unimarl.sim.encode`), all in the
observing team's frame, sent in ML-Agents' sensor order LocalView, position, Status
(:mod:`unimarl.sim.sensors`; the names are those of the Unity example's sensors):

* ``LocalView``: ``(V, V, 5)`` floats around the agent (``--view`` V, default 13; row r, column c of the
  view is the cell ``(r - V//2, c - V//2)`` away in the team's frame); channels: walls (also outside the
  map), own team, other team, own team's hp, other team's hp (hp / max hp);
* ``Status``: own hp fraction, own team alive fraction, other team alive fraction, episode progress;
* ``position``: ``(x, y)`` = (column, row) / (size - 1) in the team's frame (team 1: ``x = 1 - column /
  (size - 1)``); distances are the same in both frames, as radius-based mean-field neighbourhoods need.

Actions: one discrete branch of 21: 0 stay; 1-12 move to a cell within Manhattan distance 2
(:data:`MOVES`); 13-20 attack one of the 8 adjacent cells (:data:`ATTACKS`); offsets ``(row, column)`` in
the team's frame (team 1's column offsets are negated on the map; :data:`MIRRORED_ACTION` maps an action to
the one with the mirrored offset). Masks (True = disabled): moves into walls, obstacles or occupied cells;
attacks on cells without an enemy. Attacks resolve first (on positions before moving); then deaths; then
moves in a random order, the first mover winning a contested cell.

Hp 10, damage 2 per attack. Rewards: +0.2 per hit dealt, +5 per kill (to every attacker that hit the
victim that step), -1 on death, -0.005 per step. A dead agent is reported done once and not again in that
episode. The episode ends when a team is wiped out (done) or after ``max_steps`` steps (flag or
EnvironmentParameters key ``max_steps``, default 400; ``max_step_reached``); then every agent restarts with
the same id. ``--reenable-dead`` models the Unity example, which switches a dead agent off
(``SetActive(false)``) and on again at the next episode: ``Agent.OnEnable`` draws a new episode id and
subscribes the agent to the Academy's events again, at the end of the list (Agent.cs:480-499, 574-593), so a
revived agent comes back under a new id, after every agent of its behaviour that stayed enabled. Stats per
episode (AVERAGE): ``Battle/kills_team0``, ``Battle/kills_team1``,
``Battle/team0_win`` (1: team 0 made more kills, 0: fewer, 0.5: as many; a wiped-out team has fewer), one
value per area whose battle ended, in area order.

``--behaviors A,B`` names team 0's behaviour ``A?team=0`` and team 1's ``B?team=1`` (two behaviours: an
asymmetric game for self-play, as Strikers vs Goalie; the team sizes stay equal). ``--win-reward R`` scores
a battle by its result only, as SoccerTwos' ``SetGroupReward``: when it ends, the surviving agents of the
team with more kills get group reward +R on their terminal step, those of the other team -R (0 on a draw),
and the hit, kill, death and step rewards are off (a dead agent's episode ends with reward 0); self-play's
ELO reads it.

Groups: each team of each area is one Unity group (a ``SimpleMultiAgentGroup`` per team, created area by
area, team 0 first, so ids count from 1 as Unity numbers groups): ``group_id = 2 * area + team + 1``; group
reward 0. A trainer tells the areas' battles apart by these groups.
"""

from __future__ import annotations

import argparse

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from unimarl.sim.game import AgentBatch, BehaviorDef, EnvParams, Game, ObsDef, area_rng

BEHAVIORS = ("Battle?team=0", "Battle?team=1")
MOVES = np.array(
    [(-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1), (-2, 0), (2, 0), (0, -2), (0, 2)],
    np.int64,
)
ATTACKS = np.array([(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)], np.int64)
NUM_ACTIONS = 1 + len(MOVES) + len(ATTACKS)
FIRST_ATTACK = 1 + len(MOVES)


def _mirrored(offsets: np.ndarray) -> list[int]:
    """Index, in ``offsets``, of each offset with its column negated."""
    rows = [tuple(o) for o in offsets.tolist()]
    return [rows.index((r, -c)) for r, c in rows]


#: Action -> the action whose offset has the column negated (stay -> stay); an involution.
MIRRORED_ACTION = np.array(
    [0, *(1 + i for i in _mirrored(MOVES)), *(FIRST_ATTACK + i for i in _mirrored(ATTACKS))], np.int64
)
MAX_HP, DAMAGE = 10.0, 2.0
HIT_REWARD, KILL_REWARD, DEATH_PENALTY, STEP_COST = 0.2, 5.0, -1.0, -0.005
_PAD = 2  # padding of the lookup grids: the longest move or attack reach


class Arena:
    """One area's grid and agents; agents 0..T-1 are team 0, T..2T-1 team 1.

    ``pos`` is on the map (row, column); ``action`` holds each agent's action in its team's frame.
    """

    def __init__(
        self, size: int, team_size: int, view: int, obstacles: float, rng: np.random.Generator
    ) -> None:
        self.size, self.t, self.view, self.rng = size, team_size, view, rng
        self.wall = np.zeros((size, size), bool)
        self.wall[[0, -1], :] = True
        self.wall[:, [0, -1]] = True
        interior = rng.random((size - 2, size - 2)) < obstacles
        width = size - 2
        left = (width + 1) // 2  # the left half of the interior, with the middle column if there is one
        interior[:, width - left :] = interior[:, :left][:, ::-1]
        self.wall[1:-1, 1:-1] |= interior
        self.team = np.repeat(np.arange(2), team_size)
        #: Per agent, the (row, column) signs from its team's frame to the map: team 1 mirrors columns.
        self.frame = np.ones((2 * team_size, 2), np.int64)
        self.frame[team_size:, 1] = -1
        n = 2 * team_size
        self.pos = np.zeros((n, 2), np.int64)
        self.hp = np.zeros(n, np.float32)
        self.alive = np.zeros(n, bool)
        self.action = np.zeros(n, np.int64)
        self.acc = np.zeros(n, np.float32)
        self.kills = np.zeros(2, np.int64)
        self.ep_step = 0

    def reset(self) -> None:
        half = self.size // 2
        for team, first_col, end_col in ((0, 1, half), (1, self.size - half, self.size - 1)):
            free = np.argwhere(~self.wall[:, first_col:end_col])
            if len(free) < self.t:
                raise ValueError(
                    f"team size {self.t} does not fit a {self.size}x{self.size} grid; raise --grid"
                )
            chosen = free[self.rng.choice(len(free), self.t, replace=False)]
            chosen[:, 1] += first_col
            self.pos[team * self.t : (team + 1) * self.t] = chosen
        self.hp[:] = MAX_HP
        self.alive[:] = True
        self.action[:] = 0
        self.acc[:] = 0
        self.kills[:] = 0
        self.ep_step = 0

    def occupancy(self) -> np.ndarray:
        """Padded grid of living agents' indices (-1: empty)."""
        occ = np.full((self.size + 2 * _PAD, self.size + 2 * _PAD), -1, np.int64)
        live = np.nonzero(self.alive)[0]
        occ[self.pos[live, 0] + _PAD, self.pos[live, 1] + _PAD] = live
        return occ

    def blocked(self) -> np.ndarray:
        """Padded grid of walls and obstacles (outside the map counts as blocked)."""
        padded = np.ones((self.size + 2 * _PAD, self.size + 2 * _PAD), bool)
        padded[_PAD:-_PAD, _PAD:-_PAD] = self.wall
        return padded

    def step(self) -> None:
        hits_by = self._attack(self.occupancy(), np.nonzero(self.alive)[0])
        killed = self.alive & (self.hp <= 0)
        for victim in np.nonzero(killed)[0].tolist():
            self.acc[hits_by[victim]] += KILL_REWARD
            self.kills[1 - self.team[victim]] += 1
        self.acc[killed] += DEATH_PENALTY
        self.alive &= ~killed
        self._move()
        self.acc[self.alive] += STEP_COST
        self.ep_step += 1

    def _attack(self, occ: np.ndarray, live: np.ndarray) -> dict[int, list[int]]:
        attackers = live[self.action[live] >= FIRST_ATTACK]
        offset = ATTACKS[self.action[attackers] - FIRST_ATTACK] * self.frame[attackers]
        target = self.pos[attackers] + offset + _PAD
        victim = occ[target[:, 0], target[:, 1]]
        valid = victim >= 0
        valid[valid] = self.team[victim[valid]] != self.team[attackers[valid]]
        attackers, victim = attackers[valid], victim[valid]
        np.subtract.at(self.hp, victim, DAMAGE)
        self.acc[attackers] += HIT_REWARD
        hits_by: dict[int, list[int]] = {}
        for a, v in zip(attackers.tolist(), victim.tolist(), strict=True):
            hits_by.setdefault(v, []).append(a)
        return hits_by

    def _move(self) -> None:
        live = np.nonzero(self.alive)[0]
        movers = live[(self.action[live] >= 1) & (self.action[live] < FIRST_ATTACK)]
        movers = movers[self.rng.permutation(len(movers))]
        target = self.pos[movers] + MOVES[self.action[movers] - 1] * self.frame[movers]
        row, col = target[:, 0] + _PAD, target[:, 1] + _PAD
        free = (self.occupancy()[row, col] < 0) & ~self.blocked()[row, col]
        movers, target = movers[free], target[free]
        _, first = np.unique(target[:, 0] * self.size + target[:, 1], return_index=True)
        self.pos[movers[first]] = target[first]

    def masks(self, agents: np.ndarray) -> np.ndarray:
        """``bool [n, 21]``, True = disabled."""
        occ, blocked = self.occupancy(), self.blocked()
        pos = self.pos[agents] + _PAD
        frame = self.frame[agents][:, None, :]
        mask = np.zeros((len(agents), NUM_ACTIONS), bool)
        to = pos[:, None, :] + MOVES[None] * frame
        mask[:, 1:FIRST_ATTACK] = blocked[to[..., 0], to[..., 1]] | (occ[to[..., 0], to[..., 1]] >= 0)
        hit = pos[:, None, :] + ATTACKS[None] * frame
        other = occ[hit[..., 0], hit[..., 1]]
        enemy = (other >= 0) & (self.team[np.maximum(other, 0)] != self.team[agents][:, None])
        mask[:, FIRST_ATTACK:] = ~enemy
        return mask

    def observe(self, agents: np.ndarray, max_steps: int) -> list[np.ndarray]:
        """LocalView [n, V, V, 5], Features [n, 4], position [n, 2] of ``agents`` (one team), in its frame."""
        r = self.view // 2
        team = int(self.team[agents[0]]) if len(agents) else 0
        grid = np.zeros((self.size + 2 * r, self.size + 2 * r, 5), np.float32)
        grid[..., 0] = 1.0
        grid[r : r + self.size, r : r + self.size, 0] = self.wall
        for channel, side in ((1, team), (2, 1 - team)):
            members = np.nonzero(self.alive & (self.team == side))[0]
            rows, cols = self.pos[members, 0] + r, self.pos[members, 1] + r
            grid[rows, cols, channel] = 1.0
            grid[rows, cols, channel + 2] = self.hp[members] / MAX_HP
        windows = sliding_window_view(grid, (self.view, self.view), axis=(0, 1))  # [H, W, 5, V, V]
        view = windows[self.pos[agents, 0], self.pos[agents, 1]].transpose(0, 2, 3, 1)
        col = self.pos[agents, 1]
        if team == 1:
            view, col = view[:, :, ::-1], self.size - 1 - col
        features = np.empty((len(agents), 4), np.float32)
        features[:, 0] = self.hp[agents] / MAX_HP
        features[:, 1] = self.alive[self.team == team].mean()
        features[:, 2] = self.alive[self.team != team].mean()
        features[:, 3] = self.ep_step / max_steps
        position = (np.stack([col, self.pos[agents, 0]], axis=1) / (self.size - 1)).astype(np.float32)
        return [np.ascontiguousarray(view), features, position]


class Battle(Game):
    name = "battle"

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        add = parser.add_argument
        add("--team-size", type=int, default=64, help="agents per team")
        add("--grid", type=int, default=40, help="map side length, walls included")
        add("--view", type=int, default=13, help="side of the (odd) local view")
        add("--obstacles", type=float, default=0.03, help="fraction of interior cells blocked")
        add("--max-steps", type=int, default=400, help="steps before an episode is interrupted")
        add(
            "--behaviors",
            default=",".join(b.split("?")[0] for b in BEHAVIORS),
            help="names of team 0's and team 1's behaviours, comma-separated (default Battle,Battle: one "
            "symmetric behaviour; two names make an asymmetric game of two behaviours, as Strikers vs "
            "Goalie)",
        )
        add(
            "--win-reward",
            type=float,
            default=0.0,
            help="score battles by their result only (SoccerTwos' rule; what self-play's ELO reads): group "
            "reward +R at the end to the surviving agents of the team with more kills, -R to the other's, "
            "0 on a draw; no hit, kill, death or step rewards",
        )
        add(
            "--reenable-dead",
            action="store_true",
            help="Unity rule: dead agents are re-enabled at the next episode under new ids, reported after "
            "the agents that stayed enabled",
        )

    def __init__(self, args: argparse.Namespace, seed: int, num_areas: int) -> None:
        super().__init__(args, seed, num_areas)
        if args.view < 1 or args.view % 2 == 0 or args.team_size < 1 or args.grid < 6:
            raise ValueError(
                f"--view ({args.view}) must be odd, --team-size ({args.team_size}) >= 1, "
                f"--grid ({args.grid}) >= 6"
            )
        self.arenas = [
            Arena(args.grid, args.team_size, args.view, args.obstacles, area_rng(seed, k))
            for k in range(self.num_areas)
        ]
        self.max_steps = args.max_steps
        self._pending: dict[str, AgentBatch] = {}
        n = 2 * args.team_size
        #: Per area, each agent's current id and its place in the Academy's event lists (enable order).
        self.agent_ids = [np.arange(k * n, (k + 1) * n, dtype=np.int32) for k in range(self.num_areas)]
        self._enable_order = [ids.astype(np.int64) for ids in self.agent_ids]
        self._next = self.num_areas * n
        self._where: dict[int, tuple[int, int]] = {}  # id -> (area, agent), with --reenable-dead only
        obs = (
            ObsDef("LocalView", (args.view, args.view, 5)),
            ObsDef("Status", (4,)),
            ObsDef("position", (2,)),
        )
        names = args.behaviors.split(",")
        if len(names) != 2 or not all(names):
            raise ValueError(f"--behaviors takes two names, comma-separated; got {args.behaviors!r}")
        #: Team -> its behaviour, ML-Agents' ``Name?team=T``.
        self.names = tuple(f"{name}?team={t}" for t, name in enumerate(names))
        self._behaviors = [
            BehaviorDef(name, obs, discrete_branches=(NUM_ACTIONS,), has_mask=True) for name in self.names
        ]

    @property
    def behaviors(self) -> list[BehaviorDef]:
        return self._behaviors

    def _part(
        self, area: int, agents: np.ndarray, done: bool, max_step: bool, group_reward: float = 0.0
    ) -> AgentBatch:
        arena = self.arenas[area]
        rewards = arena.acc[agents].copy() if not self.args.win_reward else np.zeros(len(agents), np.float32)
        arena.acc[agents] = 0
        return AgentBatch(
            ids=self.agent_ids[area][agents],
            rewards=rewards,
            done=np.full(len(agents), done),
            max_step=np.full(len(agents), max_step),
            obs=arena.observe(agents, self.max_steps),
            mask=arena.masks(agents),
            group_id=(2 * area + arena.team[agents] + 1).astype(np.int32),
            group_reward=np.full(len(agents), group_reward, np.float32),
        )

    def reset(self, params: EnvParams) -> None:
        self.max_steps = max(1, int(params.get("max_steps", self.args.max_steps)))
        parts: dict[int, list[AgentBatch]] = {0: [], 1: []}
        for k, arena in enumerate(self.arenas):
            self._restart(k)
            for team in (0, 1):
                parts[team].append(self._part(k, np.nonzero(arena.team == team)[0], False, False))
        self._pending = {self.names[t]: self._in_order(AgentBatch.concat(parts[t])) for t in (0, 1)}

    def _restart(self, area: int) -> None:
        """Restart an arena; ``--reenable-dead``: its dead agents come back under new ids, last in order."""
        arena = self.arenas[area]
        if self.args.reenable_dead:
            dead = np.nonzero(~arena.alive)[0] if arena.ep_step or arena.kills.any() else np.zeros(0, int)
            fresh = np.arange(self._next, self._next + len(dead))
            self._next += len(dead)
            for old in self.agent_ids[area][dead].tolist():  # a switched-off agent's id never returns
                self._where.pop(old, None)
            self.agent_ids[area][dead] = fresh
            self._enable_order[area][dead] = fresh
            for agent in range(len(arena.alive)):
                self._where[int(self.agent_ids[area][agent])] = (area, agent)
        arena.reset()

    def _in_order(self, batch: AgentBatch) -> AgentBatch:
        """``--reenable-dead``: terminal agents first, then the deciding ones in enable order (all areas)."""
        if not self.args.reenable_dead or not len(batch):
            return batch
        order = {int(i): int(self._enable_order[a][j]) for i, (a, j) in self._where.items()}
        keys = np.array([order.get(int(i), 0) for i in batch.ids], np.int64)  # done rows: no key needed
        rows = np.lexsort((np.where(batch.done, 0, keys), ~batch.done))
        return _take(batch, rows)

    def set_actions(
        self, behavior: str, ids: np.ndarray, continuous: np.ndarray, discrete: np.ndarray
    ) -> None:
        if self.args.reenable_dead:
            where = [self._where.get(int(i), (len(self.arenas), 0)) for i in ids]
            area, local = np.array(where, np.int64).reshape(-1, 2).T
        else:
            area, local = np.divmod(ids.astype(np.int64), 2 * self.args.team_size)
        if np.any(area >= len(self.arenas)):
            raise ValueError(f"actions for unknown agent ids {ids[area >= len(self.arenas)].tolist()[:8]}")
        for k in np.unique(area):
            chosen = area == k
            self.arenas[k].action[local[chosen]] = np.clip(discrete[chosen, 0], 0, NUM_ACTIONS - 1)

    def step(self, params: EnvParams) -> None:
        parts: dict[int, list[AgentBatch]] = {0: [], 1: []}
        for k, arena in enumerate(self.arenas):
            before = arena.alive.copy()
            arena.step()
            wiped = [not arena.alive[arena.team == t].any() for t in (0, 1)]
            ended = any(wiped) or arena.ep_step >= self.max_steps
            for team in (0, 1):
                in_team = arena.team == team
                died = np.nonzero(before & ~arena.alive & in_team)[0]
                if len(died):
                    parts[team].append(self._part(k, died, True, False))
                survivors = np.nonzero(arena.alive & in_team)[0]
                if ended and len(survivors):
                    won = float(np.sign(arena.kills[team] - arena.kills[1 - team]))
                    win_reward = won * self.args.win_reward
                    parts[team].append(self._part(k, survivors, True, not any(wiped), win_reward))
            if ended:
                self._episode_stats(arena)
                self._restart(k)
            for team in (0, 1):
                parts[team].append(
                    self._part(k, np.nonzero(arena.alive & (arena.team == team))[0], False, False)
                )
        self._pending = {
            self.names[t]: self._in_order(AgentBatch.concat(parts[t]))
            for t in (0, 1)
            if any(len(p) for p in parts[t])
        }

    def _episode_stats(self, arena: Arena) -> None:
        self.record_stat("Battle/kills_team0", float(arena.kills[0]))
        self.record_stat("Battle/kills_team1", float(arena.kills[1]))
        # more kills wins (a team wiped out has fewer), as unimarl.trainers.run.evaluate counts a battle
        self.record_stat("Battle/team0_win", 0.5 + 0.5 * float(np.sign(arena.kills[0] - arena.kills[1])))

    def collect(self) -> dict[str, AgentBatch]:
        pending, self._pending = self._pending, {}
        return pending


def _take(batch: AgentBatch, rows: np.ndarray) -> AgentBatch:
    """The rows ``rows`` of ``batch``."""

    def pick(values: np.ndarray | None) -> np.ndarray | None:
        return None if values is None else values[rows]

    return AgentBatch(
        ids=batch.ids[rows],
        rewards=batch.rewards[rows],
        done=batch.done[rows],
        max_step=batch.max_step[rows],
        obs=[o[rows] for o in batch.obs],
        mask=pick(batch.mask),
        group_id=pick(batch.group_id),
        group_reward=pick(batch.group_reward),
    )
