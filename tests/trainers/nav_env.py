"""A tiny cooperative-navigation PettingZoo ParallelEnv for trainer tests and benchmarks.

N agents (``agent_0`` ...) on the plane [-1, 1]^2 should cover N landmarks. Each step an agent moves by 0.1
in one of four directions or stays (Discrete 5; ``continuous=True``: a 2-D Box velocity). Every agent
receives the team reward ``-sum_l min_a |p_a - l|``. Episodes last ``max_cycles`` steps and end in
truncation. ``masks=True`` wraps observations in PettingZoo's ``{"observation", "action_mask"}`` dict (moves
off the plane disabled); ``with_state=True`` makes ``state()`` return all positions and landmarks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

_MOVES = np.array([[0, 0], [0.1, 0], [-0.1, 0], [0, 0.1], [0, -0.1]], np.float32)


class TinyNav(ParallelEnv):
    metadata = {"name": "tiny_nav_v0"}  # noqa: RUF012 - PettingZoo's class attribute convention

    def __init__(
        self,
        n_agents: int = 3,
        max_cycles: int = 25,
        masks: bool = False,
        with_state: bool = False,
        continuous: bool = False,
    ) -> None:
        self.n = n_agents
        self.max_cycles = max_cycles
        self.masks = masks
        self.with_state = with_state
        self.continuous = continuous
        self.possible_agents = [f"agent_{i}" for i in range(n_agents)]
        self.agents: list[str] = []
        size = 4 + 2 * n_agents + 2 * (n_agents - 1)
        box = spaces.Box(-np.inf, np.inf, (size,), np.float32)
        obs_space: spaces.Space = (
            spaces.Dict({"observation": box, "action_mask": spaces.Box(0, 1, (5,), np.int8)})
            if masks
            else box
        )
        act_space: spaces.Space = spaces.Box(-1, 1, (2,), np.float32) if continuous else spaces.Discrete(5)
        self._obs_spaces = {a: obs_space for a in self.possible_agents}
        self._act_spaces = {a: act_space for a in self.possible_agents}
        self.state_space = spaces.Box(-np.inf, np.inf, (4 * n_agents,), np.float32)
        self._rng = np.random.default_rng(0)
        self._pos = np.zeros((n_agents, 2), np.float32)
        self._landmarks = np.zeros((n_agents, 2), np.float32)
        self._t = 0
        others = [[j for j in range(n_agents) if j != i] for i in range(n_agents)]
        self._others = (np.arange(n_agents)[:, None], np.array(others, np.int64).reshape(n_agents, -1))

    def observation_space(self, agent: str) -> spaces.Space:
        return self._obs_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space:
        return self._act_spaces[agent]

    def state(self) -> np.ndarray:
        if not self.with_state:
            raise NotImplementedError("TinyNav has no global state unless with_state=True")
        return np.concatenate([self._pos.ravel(), self._landmarks.ravel()]).astype(np.float32)

    def _observe(self) -> dict[str, Any]:
        """[0 velocity, own position, landmarks and others relative to the agent] for all agents."""
        n, pos = self.n, self._pos
        rel_land = (self._landmarks[None, :, :] - pos[:, None, :]).reshape(n, -1)
        rel_others = (pos[None, :, :] - pos[:, None, :])[self._others].reshape(n, -1)
        vecs = np.concatenate([np.zeros((n, 2), np.float32), pos, rel_land, rel_others], axis=1)
        vecs = vecs.astype(np.float32)
        if not self.masks:
            return dict(zip(self.agents, vecs, strict=True))
        masks = np.all(np.abs(pos[:, None, :] + _MOVES[None]) <= 1.0, axis=2).astype(np.int8)
        return {
            agent: {"observation": vecs[i], "action_mask": masks[i]} for i, agent in enumerate(self.agents)
        }

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        self._pos = self._rng.uniform(-1, 1, (self.n, 2)).astype(np.float32)
        self._landmarks = self._rng.uniform(-1, 1, (self.n, 2)).astype(np.float32)
        self._t = 0
        return self._observe(), {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        acts = [actions[agent] for agent in self.agents]
        if self.continuous:
            moves = np.clip(np.asarray(acts, np.float32).reshape(self.n, 2), -1, 1) * 0.1
        else:
            moves = _MOVES[np.asarray(acts, np.int64)]
        self._pos = np.clip(self._pos + moves, -1, 1).astype(np.float32)
        dist = np.linalg.norm(self._landmarks[:, None, :] - self._pos[None, :, :], axis=2)
        reward = -float(dist.min(axis=1).sum())
        self._t += 1
        done = self._t >= self.max_cycles
        obs = self._observe()
        agents = list(self.agents)
        rewards = {a: reward for a in agents}
        terminations = {a: False for a in agents}
        truncations = {a: done for a in agents}
        infos: dict[str, dict] = {a: {} for a in agents}
        if done:
            self.agents = []
        return obs, rewards, terminations, truncations, infos


def make(**kwargs: Any) -> TinyNav:
    """Factory for ``env: {pettingzoo: "tests/trainers/nav_env.py:make"}``."""
    return TinyNav(**kwargs)
