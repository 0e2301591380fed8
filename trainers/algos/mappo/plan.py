"""What a rollout worker is told (:class:`WorkerPlan`, :class:`PolicySetup`) and what it returns
(:class:`RolloutResult`); :func:`policy_setup` and :func:`late_policy_seed` set up behaviours that appear
after reset the same way in every worker and in the learner. Re-exported by
:mod:`unimarl.trainers.algos.mappo.rollout`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from unimarl.trainers.algos.mappo.policy import MAPPOHyperparameters, NetworkSettings
from unimarl.trainers.core.batch import PolicySpec, RolloutBatch

if TYPE_CHECKING:
    from unimarl.trainers.core.config import TrainConfig


@dataclass(frozen=True)
class PolicySetup:
    """What a worker needs to build one policy's local copy and to compute its advantages."""

    spec: PolicySpec
    hyperparameters: MAPPOHyperparameters
    network: NetworkSettings


@dataclass(frozen=True)
class WorkerPlan:
    """Which policy acts for which behaviour, and how group rewards are weighted.

    ``config``: the run's config, used to map and set up behaviours that appear after reset (None: such a
    behaviour raises :class:`EnvSetupError`). ``deterministic``: act with the actors' mean / argmax instead
    of sampling (evaluation; the exported model's ``deterministic_*`` outputs are the same actions).
    """

    policies: dict[str, PolicySetup]
    behavior_policy: dict[str, str]
    group_reward_weight: dict[str, float] = field(default_factory=dict)
    config: TrainConfig | None = None
    deterministic: bool = False


@dataclass(frozen=True)
class RolloutResult:
    """One worker's output for one iteration."""

    batches: dict[str, RolloutBatch]
    env_steps: int
    agent_steps: int
    episode_returns: dict[str, list[float]]
    """Per behaviour: the return of every agent episode that ended during the iteration."""
    episode_lengths: dict[str, list[int]]
    timers: dict[str, float]
    node: str
    new_policies: dict[str, PolicySetup] = field(default_factory=dict)
    """Policies this worker created for late behaviours during the iteration."""
    new_behaviors: dict[str, str] = field(default_factory=dict)
    """Late behaviour -> its policy."""
    new_layouts: dict[str, str] = field(default_factory=dict)
    """Late behaviour -> layout ("CHW"/"HWC") of its visual observations, where its game marks one."""
    game_restarts: dict[str, int] = field(default_factory=dict)
    """Games this worker relaunched during the iteration, per reason
    (:attr:`~unimarl.trainers.collect.runner.Collected.game_restarts`)."""
    game_stats: dict[str, list[float]] = field(default_factory=dict)
    """What the games recorded with Unity's ``StatsRecorder`` during the iteration, per key."""
    final_rewards: dict[str, list[float]] = field(default_factory=dict)
    """Per behaviour: the last reward (with group reward) of every agent episode that ended."""


def policy_setup(config: TrainConfig, behavior: str, spec: PolicySpec) -> tuple[str, PolicySetup, float]:
    """(policy name, its setup, group-reward weight) of ``behavior`` under ``config``."""
    policy = config.policy_of(behavior)
    settings = config.behaviors.get(policy) or config.behavior_settings(behavior)
    setup = PolicySetup(spec, settings.hyperparameters, settings.network_settings)
    return policy, setup, config.behavior_settings(behavior).group_reward_weight


def late_policy_seed(seed: int, policy: str) -> int:
    """Initial-weight seed of a policy created for a late behaviour (equal in workers and learner)."""
    return seed + 1_000_003 + zlib.crc32(policy.encode()) % 1_000_000
