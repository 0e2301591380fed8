"""``visual``: reach a coloured goal seen in a PNG-compressed top-down image and in a vector observation.

``--agents`` agents per area (default 4; ``num_areas`` multiplies them), each alone in its own unit-square
room, behaviour ``Visual?team=0``. Observations:

* ``CameraSensor``: a ``--size`` x ``--size`` (default 32) rendering sent as PNG (Unity's compressed
  camera sensor): dark grey floor, the goal as a red 4x4 square, the agent as a green 4x4 square (drawn
  last). With ``--channels 4`` a fourth channel marks the goal's pixels; the image then travels as two
  concatenated PNGs with ``compressed_channel_mapping = [0, 1, 2, 3, -1, -1]``. Pixel values are multiples
  of 1/255, so decoding returns exactly the rendered array.
* ``VectorSensor``: agent position (2) and goal position relative to the agent (2).

Hybrid actions: 2 continuous (direction, clipped to [-1, 1]) and one discrete branch of 3 (speed: 0 normal
0.05, 1 stop, 2 fast 0.1 per step). Reward: distance progress + 1 on reaching the goal (within 0.08) - 0.01
per step. Reaching the goal ends the agent's episode (done); otherwise it ends after ``episode_length``
steps (flag or EnvironmentParameters key, default 100; ``max_step_reached``). The agent restarts at once.
"""

from __future__ import annotations

import argparse

import numpy as np

from unimarl.sim.game import AgentBatch, BehaviorDef, EnvParams, Game, ObsDef, align_actions, area_rng

BEHAVIOR = "Visual?team=0"
FLOOR = np.array([51, 51, 51]) / 255.0
GOAL = np.array([230, 25, 25]) / 255.0
AGENT = np.array([25, 230, 25]) / 255.0
SPEEDS = np.array([0.05, 0.0, 0.1], np.float32)
GOAL_RADIUS, STEP_COST, GOAL_REWARD, SPRITE = 0.08, 0.01, 1.0, 4


class Visual(Game):
    name = "visual"

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        add = parser.add_argument
        add("--agents", type=int, default=4, help="agents per area")
        add("--size", type=int, default=32, help="image side in pixels")
        add("--channels", type=int, choices=(3, 4), default=3, help="image channels")
        add("--episode-length", type=int, default=100, help="steps before an episode is cut")

    def __init__(self, args: argparse.Namespace, seed: int, num_areas: int) -> None:
        super().__init__(args, seed, num_areas)
        if args.agents < 1 or args.size < 2 * SPRITE:
            raise ValueError(f"--agents ({args.agents}) must be >= 1, --size ({args.size}) >= {2 * SPRITE}")
        self.n = args.agents * self.num_areas
        self.area = np.repeat(np.arange(self.num_areas), args.agents)
        self.rngs = [area_rng(seed, k) for k in range(self.num_areas)]
        self.ids = np.arange(self.n, dtype=np.int32)
        self.pos = np.zeros((self.n, 2), np.float32)
        self.goal = np.zeros((self.n, 2), np.float32)
        self.move = np.zeros((self.n, 2), np.float32)
        self.speed = np.zeros(self.n, np.float32)
        self.ep_step = np.zeros(self.n, np.int64)
        self.acc = np.zeros(self.n, np.float32)
        self.episode_length = args.episode_length
        self._pending: AgentBatch | None = None
        mapping = (0, 1, 2, 3, -1, -1) if args.channels == 4 else ()
        camera = ObsDef(
            "CameraSensor", (args.size, args.size, args.channels), png=True, channel_mapping=mapping
        )
        self._behavior = BehaviorDef(
            BEHAVIOR, (camera, ObsDef("VectorSensor", (4,))), num_continuous=2, discrete_branches=(3,)
        )

    @property
    def behaviors(self) -> list[BehaviorDef]:
        return [self._behavior]

    def _restart(self, agents: np.ndarray) -> None:
        for i in agents:
            rng = self.rngs[self.area[i]]
            self.pos[i] = rng.uniform(0.05, 0.95, 2)
            self.goal[i] = rng.uniform(0.05, 0.95, 2)
        self.move[agents] = 0
        self.speed[agents] = 0
        self.ep_step[agents] = 0
        self.acc[agents] = 0

    def reset(self, params: EnvParams) -> None:
        self.episode_length = max(1, int(params.get("episode_length", self.args.episode_length)))
        everyone = np.arange(self.n)
        self._restart(everyone)
        self._pending = self._part(everyone, done=False, max_step=np.zeros(self.n, bool))

    def set_actions(
        self, behavior: str, ids: np.ndarray, continuous: np.ndarray, discrete: np.ndarray
    ) -> None:
        align_actions(ids, self.ids, np.clip(continuous, -1, 1), self.move)
        align_actions(ids, self.ids, SPEEDS[np.clip(discrete[:, 0], 0, 2)], self.speed)

    def render(self, agents: np.ndarray) -> np.ndarray:
        """Images ``[n, S, S, C]`` in [0, 1] of ``agents``."""
        size = self.args.size
        image = np.broadcast_to(FLOOR, (len(agents), size, size, 3)).copy()
        pixels = np.arange(size)
        sprites = []
        for where, colour in ((self.goal, GOAL), (self.pos, AGENT)):
            corner = np.floor(where[agents] * (size - SPRITE)).astype(np.int64)  # [n, 2] as (x, y)
            cols = (pixels[None] >= corner[:, :1]) & (pixels[None] < corner[:, :1] + SPRITE)
            rows = (pixels[None] >= corner[:, 1:]) & (pixels[None] < corner[:, 1:] + SPRITE)
            inside = rows[:, :, None] & cols[:, None, :]
            image[inside] = colour
            sprites.append(inside)
        if self.args.channels == 4:
            image = np.concatenate([image, sprites[0][..., None].astype(np.float64)], axis=-1)
        return image.astype(np.float32)

    def _part(self, agents: np.ndarray, done: bool, max_step: np.ndarray) -> AgentBatch:
        rewards = self.acc[agents].copy()
        self.acc[agents] = 0
        vector = np.concatenate([self.pos[agents], self.goal[agents] - self.pos[agents]], axis=1)
        return AgentBatch(
            ids=self.ids[agents],
            rewards=rewards,
            done=np.full(len(agents), done),
            max_step=max_step,
            obs=[self.render(agents), vector.astype(np.float32)],
        )

    def step(self, params: EnvParams) -> None:
        before = np.linalg.norm(self.goal - self.pos, axis=1)
        self.pos = np.clip(self.pos + self.move * self.speed[:, None], 0.0, 1.0)
        after = np.linalg.norm(self.goal - self.pos, axis=1)
        reached = after < GOAL_RADIUS
        self.acc += before - after - STEP_COST + GOAL_REWARD * reached
        self.ep_step += 1
        finished = np.nonzero(reached | (self.ep_step >= self.episode_length))[0]
        parts = []
        if len(finished):
            parts.append(self._part(finished, done=True, max_step=~reached[finished]))
            self._restart(finished)
        parts.append(self._part(np.arange(self.n), done=False, max_step=np.zeros(self.n, bool)))
        self._pending = AgentBatch.concat(parts)

    def collect(self) -> dict[str, AgentBatch]:
        pending, self._pending = self._pending, None
        return {BEHAVIOR: pending} if pending is not None else {}
