"""MAPPO on the one training loop (:class:`~unimarl.trainers.algos.base.Algorithm`), synchronous.

One iteration: every worker steps its environments ``time_horizon`` times with the current weights (sent
once per iteration) and returns one batch per policy with advantages computed per trajectory
(:mod:`~unimarl.trainers.algos.mappo.rollout`); each policy is updated on the concatenation of the workers'
batches (its normalisers move after its gradient steps). Policies of behaviours that appear after reset are
created when a worker first meets them and are checkpointed and resumed like the others (the workers and
this learner start them from the same deterministic weights, :func:`~unimarl.trainers.algos.mappo.plan.
late_policy_seed`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Protocol

import numpy as np

from unimarl.trainers.algos.base import Learned
from unimarl.trainers.algos.ghost import ghost_settings, ghost_slots
from unimarl.trainers.algos.mappo.plan import (
    PolicySetup,
    RolloutResult,
    WorkerPlan,
    late_policy_seed,
    policy_setup,
)
from unimarl.trainers.algos.mappo.policy import MAPPOPolicy
from unimarl.trainers.algos.mappo.rollout import RolloutWorker
from unimarl.trainers.algos.mappo.teams import concat_batches
from unimarl.trainers.core.batch import PolicySpec
from unimarl.trainers.core.config import TrainConfig
from unimarl.trainers.core.errors import ConfigError, ResumeError
from unimarl.trainers.core.names import team_of

logger = logging.getLogger(__name__)


def make_plan(config: TrainConfig, specs: dict[str, PolicySpec]) -> WorkerPlan:
    """One policy per behaviour unless mapped; behaviours sharing a policy must share a spec."""
    behavior_policy = {b: config.policy_of(b) for b in specs}
    setups: dict[str, PolicySetup] = {}
    for behavior, policy in behavior_policy.items():
        settings = config.behaviors.get(policy) or config.behavior_settings(behavior)
        setup = PolicySetup(specs[behavior], settings.hyperparameters, settings.network_settings)
        if policy in setups and setups[policy].spec != setup.spec:
            raise ConfigError(
                f"policy_mapping maps behaviours with different observation/action specs to "
                f"policy '{policy}' ({setups[policy].spec} vs {setup.spec} for '{behavior}'); "
                "map them to separate policies"
            )
        setups.setdefault(policy, setup)
    weights = {b: config.behavior_settings(b).group_reward_weight for b in specs}
    return WorkerPlan(setups, behavior_policy, weights, config)  # config: for behaviours met later


def acting_plan(plan: WorkerPlan, slots: dict[str, dict[int, str]]) -> WorkerPlan:
    """``plan`` as the workers act it under self-play: each behaviour of a ghost policy acts through its
    team's slot (:func:`ghost_slots`), with the policy's setup."""
    if not slots:
        return plan
    setups, acting = dict(plan.policies), dict(plan.behavior_policy)
    for policy, by_team in slots.items():
        for slot in by_team.values():
            setups[slot] = plan.policies[policy]
        for behavior, name in plan.behavior_policy.items():
            if name == policy:
                acting[behavior] = by_team[team_of(behavior)]
    used = set(acting.values())
    setups = {name: setup for name, setup in setups.items() if name in used}
    return dataclasses.replace(plan, policies=setups, behavior_policy=acting)


def policy_layouts(behavior_layouts: dict[str, str], behavior_policy: dict[str, str]) -> dict[str, str]:
    """Visual layout per policy, from the layouts of the behaviours it drives."""
    return {behavior_policy[b]: layout for b, layout in behavior_layouts.items() if b in behavior_policy}


def _behavior_of(policy: str, config: TrainConfig, saved: dict[str, str]) -> str:
    """A behaviour that ``policy`` acts for: from the checkpoint's mapping, else from ``policy_mapping``, else
    the policy's own name (unmapped behaviours get a policy of their name)."""
    for mapping in (saved, config.policy_mapping):
        for behavior, name in sorted(mapping.items()):
            if name == policy:
                return behavior
    return policy


class TeamOpponents(Protocol):
    """Self-play between teams (built by :mod:`unimarl.trainers.selfplay.ghost`): which slot trains each
    policy, the acting weights of every slot, and its bookkeeping after each round."""

    def learning_slot(self, policy: str) -> str | None: ...
    def weights(self, learner: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, np.ndarray]]: ...
    def after_round(
        self,
        env_steps: int,
        final_rewards: Mapping[str, Sequence[float]],
        behavior_policy: dict[str, str],
        learner: Callable[[str], dict[str, np.ndarray]],
    ) -> None: ...
    def metrics(self) -> dict[str, float]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class MAPPO:
    """MAPPO's learner side; see the module docstring."""

    name: ClassVar[str] = "mappo"
    worker_cls: ClassVar[type] = RolloutWorker
    streaming: ClassVar[bool] = False

    def __init__(
        self, config: TrainConfig, specs: dict[str, PolicySpec], layouts: dict[str, str], device: str
    ) -> None:
        self.config, self.device = config, device
        self._plan = make_plan(config, specs)
        self.behavior_policy = self._plan.behavior_policy
        self.policies: dict[str, MAPPOPolicy] = {
            name: MAPPOPolicy(s.spec, s.hyperparameters, s.network, device=device, seed=config.run.seed + i)
            for i, (name, s) in enumerate(sorted(self._plan.policies.items()))
        }
        self.visual_layouts = policy_layouts(layouts, self.behavior_policy)
        """Policy -> layout ("CHW"/"HWC") of its visual observations, where its game marks one."""
        self._specs = list(specs)
        self._horizon = max(config.behavior_settings(b).time_horizon for b in specs)
        self.ghost_slots = ghost_slots(config, self.behavior_policy)
        """Self-play between teams: policy -> team -> acting slot (:func:`ghost_slots`)."""
        self.ghost_settings = ghost_settings(config, self.behavior_policy)
        self.opponents: TeamOpponents | None = None

    def plan(self) -> WorkerPlan:
        return acting_plan(self._plan, self.ghost_slots)

    def schedule_behaviors(self) -> list[str]:
        return list(self._specs)

    def collect_args(self) -> tuple[Any, ...]:
        weights = {n: p.get_weights() for n, p in self.policies.items()}
        if self.opponents is not None:
            weights = self.opponents.weights(weights)
        return weights, self._horizon

    def learn(self, results: Sequence[Any], acc: dict[str, list[float]], deadline: float | None) -> Learned:
        """Adopt late behaviours, update every policy on its batches, add returns and timers to ``acc``."""
        rollouts: list[RolloutResult] = list(results)
        self._adopt_late(rollouts)
        for name, policy in self.policies.items():
            slot: str | None = name
            if self.opponents is not None and name in self.ghost_slots:
                slot = self.opponents.learning_slot(name)  # the learning team's trajectories only
            if slot is None:
                continue
            batches = [r.batches[slot] for r in rollouts if slot in r.batches]
            if not batches:
                continue
            batch = concat_batches(batches)
            dropped = int((batch.loss_mask == 0).sum())
            if dropped:  # steps of episodes broken off by a relaunched game
                acc[f"counters/dropped_steps/{name}"].append(float(dropped))
            if not batch.loss_mask.any():  # every step was on a game that was relaunched: nothing to learn
                continue
            for key, value in policy.update(batch, deadline).items():
                acc[f"{key}/{name}"].append(value)
        for r in rollouts:
            for behavior, returns in r.episode_returns.items():
                acc[f"return/{behavior}"].extend(returns)
                acc[f"episode_length/{behavior}"].extend(r.episode_lengths[behavior])
            for timer, seconds in r.timers.items():
                acc[f"timers/{timer}"].append(seconds)
            for key, values in r.game_stats.items():  # averaged over the metrics line, whatever their
                acc[f"game/{key}"].extend(values)  # aggregation method in the game
        restarts: Counter[str] = Counter()
        for r in rollouts:
            restarts.update(r.game_restarts)
        env_steps = sum(r.env_steps for r in rollouts)
        if self.opponents is not None:
            final: dict[str, list[float]] = defaultdict(list)
            for r in rollouts:
                for behavior, rewards in r.final_rewards.items():
                    final[behavior].extend(rewards)
            self.opponents.after_round(
                env_steps, final, self.behavior_policy, lambda n: self.policies[n].get_weights()
            )
        return Learned(env_steps, sum(r.agent_steps for r in rollouts), 1, dict(restarts))

    def refresh_due(self, learned: Learned) -> bool:
        return True

    def set_progress(self, progress: float) -> None:
        """Scheduled settings (``lr_schedule``, ``entropy_schedule``, ``clip_schedule``) follow the run."""
        for policy in self.policies.values():
            policy.set_progress(progress)

    def describe(self) -> str:
        return "mappo"

    def metrics(self) -> dict[str, float]:
        return self.opponents.metrics() if self.opponents is not None else {}

    def _late_policy(self, name: str, setup: PolicySetup) -> MAPPOPolicy:
        logger.info("policy '%s' created for a behaviour that appeared after reset", name)
        seed = late_policy_seed(self.config.run.seed, name)  # the initial weights the workers act with
        return MAPPOPolicy(setup.spec, setup.hyperparameters, setup.network, device=self.device, seed=seed)

    def _adopt_late(self, results: list[RolloutResult]) -> None:
        """The learner's copy of every policy workers created for behaviours appearing after reset, and
        the visual layouts of those behaviours."""
        for r in results:
            self.behavior_policy.update(r.new_behaviors)
            for name, setup in r.new_policies.items():
                if name not in self.policies:
                    self.policies[name] = self._late_policy(name, setup)
        found = {b: layout for r in results for b, layout in r.new_layouts.items()}
        for policy, layout in policy_layouts(found, self.behavior_policy).items():
            self.visual_layouts.setdefault(policy, layout)

    def state_dict(self) -> dict[str, Any]:
        return {
            "behavior_policy": dict(self.behavior_policy),
            "policies": {name: p.state_dict() for name, p in self.policies.items()},
            "ghost": self.opponents.state_dict() if self.opponents is not None else {},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("behavior_policy", {})  # absent in checkpoints written before it was recorded
        for name in set(state["policies"]) - set(self.policies):  # policies of behaviours that appeared late
            spec = MAPPOPolicy.spec_from_state(state["policies"][name])
            behavior = _behavior_of(name, self.config, saved)
            self.policies[name] = self._late_policy(name, policy_setup(self.config, behavior, spec)[1])
        if set(state["policies"]) != set(self.policies):
            raise ResumeError(
                f"checkpoint holds policies {sorted(state['policies'])}, this config makes "
                f"{sorted(self.policies)}; resume with the config of the original run"
            )
        for name, policy in self.policies.items():
            policy.load_state_dict(state["policies"][name])
        if self.opponents is not None and state.get("ghost"):  # a run started without self-play starts it
            self.opponents.load_state_dict(state["ghost"])
