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

    def observation_space(self, agent: str) -> spaces.Space:
        return self._obs_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space:
        return self._act_spaces[agent]

    def state(self) -> np.ndarray:
        if not self.with_state:
            raise NotImplementedError("TinyNav has no global state unless with_state=True")
        return np.concatenate([self._pos.ravel(), self._landmarks.ravel()]).astype(np.float32)

    def _observe(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for i, agent in enumerate(self.agents):
            others = np.delete(self._pos, i, axis=0) - self._pos[i]
            vec = np.concatenate([self._pos[i], (self._landmarks - self._pos[i]).ravel(), others.ravel()])
            vec = np.concatenate([np.zeros(2, np.float32), vec]).astype(np.float32)
            if self.masks:
                nxt = self._pos[i] + _MOVES
                mask = np.all(np.abs(nxt) <= 1.0, axis=1).astype(np.int8)
                out[agent] = {"observation": vec, "action_mask": mask}
            else:
                out[agent] = vec
        return out

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        self._pos = self._rng.uniform(-1, 1, (self.n, 2)).astype(np.float32)
        self._landmarks = self._rng.uniform(-1, 1, (self.n, 2)).astype(np.float32)
        self._t = 0
        return self._observe(), {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        for i, agent in enumerate(self.agents):
            act = actions[agent]
            move = np.clip(np.asarray(act, np.float32), -1, 1) * 0.1 if self.continuous else _MOVES[int(act)]
            self._pos[i] = np.clip(self._pos[i] + move, -1, 1)
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
