"""The interface every stand-in game implements, and the data it hands to the Unity-like client.

A game owns agents grouped by behaviour (``"Name?team=T"``, as Unity's ``FullyQualifiedBehaviorName``).
Each agent has a stable integer id (like ``Agent.m_EpisodeId``: assigned once, kept across episodes).
The client drives a game with four calls:

* ``reset(params)``: restart every area (the trainer's RESET); afterwards every agent requests a decision.
* ``set_actions(behavior, ids, continuous, discrete)``: actions for the agents that requested a decision
  in the previous output, aligned with ``ids``. Agents keep their last action until they decide again.
* ``step(params)``: advance one academy step.
* ``collect()``: the agents to report now, per behaviour, as an :class:`AgentBatch`: terminal agents
  first (``done``; ``max_step_reached`` for step-limit ends), then deciding agents. An agent that ended
  its episode and restarted appears twice: once done with its final reward and observation, then deciding
  with its new first observation. Rewards are the sum since the agent's last report.

Observations are float32 arrays ``[n_agents, *shape]``. Rank-3 observations are always produced HWC; the
wire encoder transposes them to CHW for package versions >= 3 (Unity C# 3.x), see
:mod:`unimarl.sim.encode`.
"""

from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

#: Stats side-channel aggregation codes (Unity ``StatAggregationMethod``).
AVERAGE, MOST_RECENT, SUM, HISTOGRAM = 0, 1, 2, 3


@dataclass(frozen=True)
class ObsDef:
    """One sensor of a behaviour: name, shape (HWC for rank 3), and whether it travels as PNG."""

    name: str
    shape: tuple[int, ...]
    png: bool = False
    #: For PNG observations with more than 3 channels: sent as ceil(C/3) concatenated PNGs and this mapping.
    channel_mapping: tuple[int, ...] = ()


@dataclass(frozen=True)
class BehaviorDef:
    """A behaviour's observation sensors and action space (what BrainParameters announces)."""

    name: str
    observations: tuple[ObsDef, ...]
    num_continuous: int = 0
    discrete_branches: tuple[int, ...] = ()
    has_mask: bool = False


@dataclass
class AgentBatch:
    """The agents of one behaviour reported in one output, in message order (terminal agents first)."""

    ids: np.ndarray  # int32 [n]
    rewards: np.ndarray  # float32 [n]
    done: np.ndarray  # bool [n]
    max_step: np.ndarray  # bool [n]
    obs: list[np.ndarray]  # float32 [n, *shape] per ObsDef
    mask: np.ndarray | None = None  # bool [n, sum(branches)], True = action disabled (Unity convention)
    group_id: np.ndarray | None = None  # int32 [n]
    group_reward: np.ndarray | None = None  # float32 [n]

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @staticmethod
    def concat(parts: list[AgentBatch]) -> AgentBatch:
        """Join batches in order (e.g. terminal part then deciding part); optional fields must agree."""
        parts = [p for p in parts if len(p)]
        if not parts:
            raise ValueError("AgentBatch.concat needs at least one non-empty batch")
        if len(parts) == 1:
            return parts[0]

        def cat(attr: str) -> np.ndarray | None:
            values = [getattr(p, attr) for p in parts]
            return None if values[0] is None else np.concatenate(values)

        return AgentBatch(
            ids=np.concatenate([p.ids for p in parts]),
            rewards=np.concatenate([p.rewards for p in parts]),
            done=np.concatenate([p.done for p in parts]),
            max_step=np.concatenate([p.max_step for p in parts]),
            obs=[np.concatenate([p.obs[k] for p in parts]) for k in range(len(parts[0].obs))],
            mask=cat("mask"),
            group_id=cat("group_id"),
            group_reward=cat("group_reward"),
        )


@dataclass
class EnvParams:
    """Values received on the EnvironmentParameters side channel: plain floats and seeded samplers.

    Like Unity's ``EnvironmentParameters.GetWithDefault``, a sampler draws a fresh value on every read.
    """

    floats: dict[str, float] = field(default_factory=dict)
    samplers: dict[str, Callable[[], float]] = field(default_factory=dict)

    def get(self, key: str, default: float) -> float:
        if key in self.samplers:
            return float(self.samplers[key]())
        return float(self.floats.get(key, default))


class Game(ABC):
    """A headless stand-in game; see the module docstring for the call protocol."""

    #: Registry name (``python -m unimarl.sim NAME``).
    name: str = ""
    #: False for a game whose agents ignore their actions: the client then checks how many arrived and
    #: skips parsing them (:meth:`set_actions` is never called).
    reads_actions: bool = True

    def __init__(self, args: argparse.Namespace, seed: int, num_areas: int) -> None:
        self.args = args
        self.seed = seed
        self.num_areas = max(1, num_areas)
        self._pending_stats: list[tuple[str, float, int]] = []

    @classmethod
    @abstractmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add the game's own command-line flags."""

    @property
    @abstractmethod
    def behaviors(self) -> list[BehaviorDef]:
        """The game's behaviours, in the order they appear in outputs."""

    @abstractmethod
    def reset(self, params: EnvParams) -> None:
        """Restart every area; every agent then requests a decision."""

    @abstractmethod
    def set_actions(
        self, behavior: str, ids: np.ndarray, continuous: np.ndarray, discrete: np.ndarray
    ) -> None:
        """Store actions (``[n, num_continuous]`` float32, ``[n, num_branches]`` int32) for agents ``ids``."""

    @abstractmethod
    def step(self, params: EnvParams) -> None:
        """Advance one academy step."""

    @abstractmethod
    def collect(self) -> dict[str, AgentBatch]:
        """Agents to report now, per behaviour (behaviours without agents are left out)."""

    def record_stat(self, key: str, value: float, aggregation: int = AVERAGE) -> None:
        """Queue a Stats side-channel message (sent with the next output)."""
        self._pending_stats.append((key, float(value), aggregation))

    def pop_stats(self) -> list[tuple[str, float, int]]:
        stats, self._pending_stats = self._pending_stats, []
        return stats


def area_rng(seed: int, area: int) -> np.random.Generator:
    """The random generator of one area: determined by the handshake seed and the area index."""
    return np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFF, area]))


def align_actions(ids: np.ndarray, all_ids: np.ndarray, values: np.ndarray, target: np.ndarray) -> None:
    """Write ``values`` (rows aligned with ``ids``) into ``target`` (rows aligned with sorted ``all_ids``)."""
    if not len(ids):
        return
    index = np.searchsorted(all_ids, ids)
    if np.any(index >= len(all_ids)) or np.any(all_ids[np.minimum(index, len(all_ids) - 1)] != ids):
        raise ValueError(f"actions for unknown agent ids {ids.tolist()[:8]}")
    target[index] = values
