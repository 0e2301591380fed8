"""``bench``: a throughput test game that costs as little as possible per step.

``--agents N`` agents per area (default 16; ``num_areas`` multiplies them), behaviour ``Bench?team=0``.
Each agent observes ``--obs-size D`` seeded uniform random floats (a fresh draw each step), acts with one
discrete branch of ``--discrete B`` actions (default 3; B = 0 means 2 continuous actions instead), receives
a constant reward of 0.1 per step, and every agent decides every step. All episodes last
``--episode-length`` steps (default 100, EnvironmentParameters key ``episode_length``) and end with
``max_step_reached``.
"""

from __future__ import annotations

import argparse

import numpy as np

from unimarl.sim.game import AgentBatch, BehaviorDef, EnvParams, Game, ObsDef, area_rng

BEHAVIOR = "Bench?team=0"
STEP_REWARD = 0.1


class Bench(Game):
    name = "bench"

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        add = parser.add_argument
        add("--agents", type=int, default=16, help="agents per area")
        add("--obs-size", type=int, default=64, help="floats per observation")
        add("--discrete", type=int, default=3, help="size of the one discrete branch (0: continuous)")
        add("--episode-length", type=int, default=100, help="steps per episode")

    def __init__(self, args: argparse.Namespace, seed: int, num_areas: int) -> None:
        super().__init__(args, seed, num_areas)
        if args.agents < 1 or args.obs_size < 1 or args.discrete < 0:
            raise ValueError(
                f"--agents ({args.agents}) and --obs-size ({args.obs_size}) must be >= 1, "
                f"--discrete ({args.discrete}) >= 0"
            )
        self.n = args.agents * self.num_areas
        self.rng = area_rng(seed, 0)
        self.ids = np.arange(self.n, dtype=np.int32)
        self.episode_length = args.episode_length
        self.ep_step = 0
        self._episode_start = True
        self._behavior = BehaviorDef(
            BEHAVIOR,
            (ObsDef("VectorSensor", (args.obs_size,)),),
            num_continuous=0 if args.discrete else 2,
            discrete_branches=(args.discrete,) if args.discrete else (),
        )

    @property
    def behaviors(self) -> list[BehaviorDef]:
        return [self._behavior]

    def reset(self, params: EnvParams) -> None:
        self.episode_length = max(1, int(params.get("episode_length", self.args.episode_length)))
        self.ep_step = 0
        self._episode_start = True

    def set_actions(
        self, behavior: str, ids: np.ndarray, continuous: np.ndarray, discrete: np.ndarray
    ) -> None:
        """Actions do not influence this game."""

    def step(self, params: EnvParams) -> None:
        self.ep_step += 1
        self._episode_start = False

    def _part(self, done: bool, reward: float) -> AgentBatch:
        obs = self.rng.random((self.n, self.args.obs_size), dtype=np.float32)
        flags = np.full(self.n, done)
        return AgentBatch(self.ids, np.full(self.n, reward, np.float32), flags, flags, [obs])

    def collect(self) -> dict[str, AgentBatch]:
        if self._episode_start:
            return {BEHAVIOR: self._part(done=False, reward=0.0)}
        if self.ep_step < self.episode_length:
            return {BEHAVIOR: self._part(done=False, reward=STEP_REWARD)}
        terminal = self._part(done=True, reward=STEP_REWARD)
        self.ep_step = 0
        return {BEHAVIOR: AgentBatch.concat([terminal, self._part(done=False, reward=0.0)])}
