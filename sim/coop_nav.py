"""``coop_nav``: cooperative navigation (like MPE simple_spread), vectorised over areas.

Each area holds N agents (``--agents``, default 3) and N landmarks in [-1, 1]^2; ``num_areas`` from the
handshake sets the number of areas. One behaviour, ``CoopNav?team=0``; agent ids ``area * N + i``.

* Observation (float vector, ``4 + 2N + 2(N-1)``): own velocity, own position, landmark positions
  relative to the agent, other agents' positions relative to the agent. ``--global-state`` adds an
  observation named ``global_state`` (all positions, velocities and landmarks of the area; the same for
  every agent of the area).
* Actions: one discrete branch of 5 (0 no-op, 1 +x, 2 -x, 3 +y, 4 -y), or with ``--continuous`` 2
  continuous actions (force, clipped to [-1, 1]). Dynamics: velocity damping 0.25, acceleration 5, dt 0.1.
* Reward: the team reward ``-sum over landmarks of the nearest agent's distance - number of colliding
  agent pairs`` (agents of radius 0.15), summed since the agent's last decision. As in ML-Agents' cooperative
  games (PushBlockCollab, DungeonEscape: ``SimpleMultiAgentGroup.AddGroupReward``) it is only the
  ``group_reward`` of group ``area + 1``; the individual reward is 0 (there is no individual shaping term).
  A trainer counts it with ``group_reward_weight`` (default 1.0).
* Episodes last ``episode_length`` steps (flag, or EnvironmentParameters key ``episode_length``, default
  25) and end with ``max_step_reached``; the area restarts at once, so each agent is reported done and
  deciding in the same message.
* ``--decision-period K``: agent i requests a decision when ``(episode_step + i) % K == 0`` and at the
  start of an episode, so with K > 1 a message may hold only some agents; between decisions actions repeat.
* Stats: ``CoopNav/episode_team_reward`` (AVERAGE) per finished area episode.
"""

from __future__ import annotations

import argparse

import numpy as np

from unimarl.sim.game import AgentBatch, BehaviorDef, EnvParams, Game, ObsDef, align_actions, area_rng

BEHAVIOR = "CoopNav?team=0"
_MOVES = np.array([[0, 0], [1, 0], [-1, 0], [0, 1], [0, -1]], np.float32)
_DAMPING, _ACCEL, _DT, _RADIUS = 0.25, 5.0, 0.1, 0.15


class CoopNav(Game):
    name = "coop_nav"

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        add = parser.add_argument
        add("--agents", type=int, default=3, help="agents (and landmarks) per area")
        add("--continuous", action="store_true", help="2 continuous actions instead of 5 discrete")
        add("--global-state", action="store_true", help="add a 'global_state' observation")
        add("--decision-period", type=int, default=1, help="steps between an agent's decisions")
        add("--episode-length", type=int, default=25, help="steps per episode")

    def __init__(self, args: argparse.Namespace, seed: int, num_areas: int) -> None:
        super().__init__(args, seed, num_areas)
        n, a = args.agents, self.num_areas
        if n < 1 or args.decision_period < 1:
            raise ValueError(f"--agents ({n}) and --decision-period ({args.decision_period}) must be >= 1")
        self.n = n
        self.rngs = [area_rng(seed, k) for k in range(a)]
        self.ids = np.arange(a * n, dtype=np.int32).reshape(a, n)
        self.pos = np.zeros((a, n, 2), np.float32)
        self.vel = np.zeros((a, n, 2), np.float32)
        self.land = np.zeros((a, n, 2), np.float32)
        self.force = np.zeros((a, n, 2), np.float32)
        self.ep_step = np.zeros(a, np.int64)
        self.acc = np.zeros((a, n), np.float32)
        self.ep_return = np.zeros(a, np.float64)
        self.episode_length = args.episode_length
        self._others = np.array([[j for j in range(n) if j != i] for i in range(n)], np.int64).reshape(
            n, n - 1
        )
        self._pending: AgentBatch | None = None
        obs = [ObsDef("VectorSensor", (4 + 2 * n + 2 * (n - 1),))]
        if args.global_state:
            obs.append(ObsDef("global_state", (6 * n,)))
        self._behavior = BehaviorDef(
            BEHAVIOR,
            tuple(obs),
            num_continuous=2 if args.continuous else 0,
            discrete_branches=() if args.continuous else (5,),
        )

    @property
    def behaviors(self) -> list[BehaviorDef]:
        return [self._behavior]

    def _reset_areas(self, areas: np.ndarray, params: EnvParams) -> None:
        self.episode_length = max(1, int(params.get("episode_length", self.args.episode_length)))
        for k in areas:
            rng = self.rngs[k]
            self.pos[k] = rng.uniform(-1, 1, (self.n, 2))
            self.land[k] = rng.uniform(-0.9, 0.9, (self.n, 2))
        self.vel[areas] = 0
        self.force[areas] = 0
        self.ep_step[areas] = 0
        self.acc[areas] = 0
        self.ep_return[areas] = 0

    def reset(self, params: EnvParams) -> None:
        self._reset_areas(np.arange(self.num_areas), params)
        self._pending = self._batch(np.ones((self.num_areas, self.n), bool), done=False)

    def set_actions(
        self, behavior: str, ids: np.ndarray, continuous: np.ndarray, discrete: np.ndarray
    ) -> None:
        moves = _MOVES[np.clip(discrete[:, 0], 0, 4)] if discrete.shape[1] else None
        values = np.clip(continuous, -1, 1) if moves is None else moves
        align_actions(ids, self.ids.reshape(-1), values, self.force.reshape(-1, 2))

    def _observe(self) -> list[np.ndarray]:
        a, n = self.num_areas, self.n
        rel_land = self.land[:, None, :, :] - self.pos[:, :, None, :]  # [A, N, L, 2]
        rel_agents = self.pos[:, None, :, :] - self.pos[:, :, None, :]  # [A, N, N, 2]
        rel_others = np.take_along_axis(rel_agents, self._others[None, :, :, None], axis=2)
        parts = [self.vel, self.pos, rel_land.reshape(a, n, -1), rel_others.reshape(a, n, -1)]
        obs = [np.concatenate(parts, axis=2).astype(np.float32)]
        if self.args.global_state:
            state = np.concatenate(
                [self.pos.reshape(a, -1), self.vel.reshape(a, -1), self.land.reshape(a, -1)], 1
            )
            obs.append(np.broadcast_to(state[:, None, :], (a, n, state.shape[1])).astype(np.float32))
        return obs

    def _batch(self, select: np.ndarray, done: bool) -> AgentBatch:
        """Agents where ``select`` [A, N] holds, with current observations and accumulated group rewards."""
        area = np.nonzero(select)[0].astype(np.int32)
        team = self.acc[select].astype(np.float32)
        self.acc[select] = 0
        flags = np.full(len(area), done)
        return AgentBatch(
            ids=self.ids[select],
            rewards=np.zeros(len(area), np.float32),  # the team reward is the group's only
            done=flags,
            max_step=flags.copy(),
            obs=[o[select] for o in self._observe()],
            group_id=area + 1,
            group_reward=team,
        )

    def _team_reward(self) -> np.ndarray:
        dist = np.linalg.norm(self.land[:, None, :, :] - self.pos[:, :, None, :], axis=-1)  # [A, N, L]
        cover = dist.min(axis=1).sum(axis=1)
        pair = np.linalg.norm(self.pos[:, None] - self.pos[:, :, None], axis=-1)
        collisions = np.triu(pair < 2 * _RADIUS, k=1).sum(axis=(1, 2))
        return (-cover - collisions).astype(np.float32)

    def step(self, params: EnvParams) -> None:
        self.vel = self.vel * (1 - _DAMPING) + self.force * _ACCEL * _DT
        self.pos = self.pos + self.vel * _DT
        team = self._team_reward()
        self.acc += team[:, None]
        self.ep_return += team
        self.ep_step += 1
        ended = self.ep_step >= self.episode_length
        parts = []
        if ended.any():
            parts.append(self._batch(np.repeat(ended[:, None], self.n, axis=1), done=True))
            for k in np.nonzero(ended)[0]:
                self.record_stat("CoopNav/episode_team_reward", float(self.ep_return[k]))
            self._reset_areas(np.nonzero(ended)[0], params)
        phase = (self.ep_step[:, None] + np.arange(self.n)[None, :]) % self.args.decision_period
        deciding = (phase == 0) | (self.ep_step[:, None] == 0)
        if deciding.any():
            parts.append(self._batch(deciding, done=False))
        self._pending = AgentBatch.concat(parts) if parts else None

    def collect(self) -> dict[str, AgentBatch]:
        pending, self._pending = self._pending, None
        return {BEHAVIOR: pending} if pending is not None else {}
