"""``bench``: a throughput test game that costs as little as possible per step.

``--agents N`` agents per area (default 16; ``num_areas`` multiplies them), behaviour ``Bench?team=0``.
Each agent observes ``--obs-size D`` seeded uniform random floats, acts with one discrete branch of
``--discrete B`` actions (default 3; B = 0 means 2 continuous actions instead), receives a constant reward
of 0.1 per step, and every agent decides every step. All episodes last ``--episode-length`` steps (default
100, EnvironmentParameters key ``episode_length``) and end with ``max_step_reached``.

It is a throughput probe, so a step costs the game almost nothing: the observations are drawn once, as
:data:`POOL_SIZE` batches per kind of output (episode start, mid-episode, episode end + restart), and the
outputs cycle through them; each pooled batch is encoded to wire bytes once
(:class:`~unimarl.sim.encode.CachedBatch`), and the game declares that it ignores actions
(``reads_actions = False``), so the client does not parse them.
"""

from __future__ import annotations

import argparse

import numpy as np

from unimarl.sim.encode import CachedBatch
from unimarl.sim.game import AgentBatch, BehaviorDef, EnvParams, Game, ObsDef, area_rng

BEHAVIOR = "Bench?team=0"
STEP_REWARD = 0.1
#: Pre-drawn batches per kind of output, cycled step after step.
POOL_SIZE = 8


class Bench(Game):
    name = "bench"
    #: Actions do not influence this game: the client skips parsing them.
    reads_actions = False

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
        self._outputs = 0
        self._behavior = BehaviorDef(
            BEHAVIOR,
            (ObsDef("VectorSensor", (args.obs_size,)),),
            num_continuous=0 if args.discrete else 2,
            discrete_branches=(args.discrete,) if args.discrete else (),
        )
        self._starts = [self._cached(self._part(False, 0.0)) for _ in range(POOL_SIZE)]
        self._middles = [self._cached(self._part(False, STEP_REWARD)) for _ in range(POOL_SIZE)]
        self._ends = [
            self._cached(AgentBatch.concat([self._part(True, STEP_REWARD), self._part(False, 0.0)]))
            for _ in range(POOL_SIZE)
        ]

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

    @staticmethod
    def _cached(batch: AgentBatch) -> CachedBatch:
        for array in (batch.ids, batch.rewards, batch.done, batch.max_step, *batch.obs):
            array.flags.writeable = False  # pooled and encoded once: must never change
        return CachedBatch(batch.ids, batch.rewards, batch.done, batch.max_step, batch.obs)

    def collect(self) -> dict[str, AgentBatch]:
        pool = self._middles
        if self._episode_start:
            pool = self._starts
        elif self.ep_step >= self.episode_length:
            pool, self.ep_step = self._ends, 0
        self._outputs += 1
        return {BEHAVIOR: pool[self._outputs % POOL_SIZE]}
