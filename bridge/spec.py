"""Specs and decoded step data shared by every layer of the bridge.

A *behaviour* is what Unity calls a brain: a named group of agents sharing observation and action specs (the
name is Unity's fully qualified one, e.g. ``Striker?team=0``). Each message from the game carries, per
behaviour, the agents requesting a decision and the agents whose episode ended since the last message. Both
are :class:`AgentBatch` es: named numpy arrays in the order the game sent the agents. Actions are matched *by
position* to the decision agents of the previous message, per behaviour.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np


class DimensionProperty(enum.IntFlag):
    """Per-dimension flags of an observation (C# ``DimensionProperty``)."""

    UNSPECIFIED = 0
    NONE = 1
    TRANSLATIONAL_EQUIVARIANCE = 2
    VARIABLE_SIZE = 4


class ObservationType(enum.IntEnum):
    """What an observation is for (C# ``ObservationType``)."""

    DEFAULT = 0
    GOAL_SIGNAL = 1


@dataclass(frozen=True)
class ObservationSpec:
    """One sensor's observation: its decoded ``shape`` (visual observations in the game's layout, see
    :mod:`unimarl.bridge.decode`), per-dimension properties, type and sensor name."""

    shape: tuple[int, ...]
    dimension_property: tuple[DimensionProperty, ...]
    observation_type: ObservationType = ObservationType.DEFAULT
    name: str = ""

    @property
    def is_variable_length(self) -> bool:
        return any(p & DimensionProperty.VARIABLE_SIZE for p in self.dimension_property)

    @property
    def is_visual(self) -> bool:
        return len(self.shape) == 3


@dataclass(frozen=True)
class ActionSpec:
    """Continuous actions (each in [-1, 1] by convention) followed by discrete branches with their sizes."""

    continuous_size: int = 0
    discrete_branches: tuple[int, ...] = ()

    @property
    def discrete_size(self) -> int:
        """Number of discrete branches (one integer action per branch)."""
        return len(self.discrete_branches)

    @property
    def is_hybrid(self) -> bool:
        return self.continuous_size > 0 and self.discrete_size > 0

    def empty(self, n_agents: int) -> ActionTuple:
        """All-zero actions for ``n_agents`` agents."""
        return ActionTuple(
            continuous=np.zeros((n_agents, self.continuous_size), np.float32),
            discrete=np.zeros((n_agents, self.discrete_size), np.int32),
        )


@dataclass(frozen=True)
class BehaviorSpec:
    """Everything fixed about a behaviour: its name, one spec per observation, and the action spec."""

    name: str
    observation_specs: tuple[ObservationSpec, ...]
    action_spec: ActionSpec


@dataclass(frozen=True)
class ActionTuple:
    """Actions for n agents: ``continuous`` float32 [n, continuous_size], ``discrete`` int32 [n, branches]."""

    continuous: np.ndarray
    discrete: np.ndarray

    @property
    def n_agents(self) -> int:
        return int(max(self.continuous.shape[0], self.discrete.shape[0]))


@dataclass(frozen=True)
class AgentBatch:
    """Agents of one behaviour from one message, in message order.

    ``obs[i]`` is float32 [n, *observation_specs[i].shape]. ``action_mask[b]`` is bool [n, branch_size] with
    True = action *disabled* (None when the behaviour has no discrete actions or the game sent no mask).
    ``interrupted`` is True where the episode ended by reaching its step limit (``max_step_reached``) rather
    than by a terminal state; it is always False for decision agents.
    """

    agent_id: np.ndarray
    obs: tuple[np.ndarray, ...]
    reward: np.ndarray
    group_id: np.ndarray
    group_reward: np.ndarray
    interrupted: np.ndarray
    action_mask: tuple[np.ndarray, ...] | None = None

    def __len__(self) -> int:
        return int(self.agent_id.shape[0])

    @staticmethod
    def empty(spec: BehaviorSpec) -> AgentBatch:
        return AgentBatch(
            agent_id=np.zeros(0, np.int32),
            obs=tuple(np.zeros((0, *o.shape), np.float32) for o in spec.observation_specs),
            reward=np.zeros(0, np.float32),
            group_id=np.zeros(0, np.int32),
            group_reward=np.zeros(0, np.float32),
            interrupted=np.zeros(0, bool),
        )


@dataclass(frozen=True)
class BehaviorSteps:
    """One behaviour's part of a message: agents that ended an episode, and agents requesting a decision.

    An agent can be in both (it ended an episode and immediately requested the first decision of the next):
    ``terminal`` then holds its last reward and observation, ``decision`` its new first observation.
    """

    decision: AgentBatch
    terminal: AgentBatch


@dataclass(frozen=True)
class GameOutput:
    """Everything decoded from one message of the game: per-behaviour steps, plus side-channel bytes."""

    steps: dict[str, BehaviorSteps]
    new_specs: dict[str, BehaviorSpec] = field(default_factory=dict)
    side_channel: bytes = b""
