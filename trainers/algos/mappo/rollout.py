"""MAPPO's rollout worker: k environments, one batched policy forward per step, per-agent trajectories.

A :class:`RolloutWorker` drives an :class:`~unimarl.trainers.collect.runner.EnvRunner` (its ``num_envs``
environments, decisions, rewards with group rewards, episodes, resets) and turns its per-agent steps into
trajectories. Each call of :meth:`RolloutWorker.collect` loads the learner's weights, steps every
environment ``horizon`` times and returns one :class:`~unimarl.trainers.core.batch.RolloutBatch` per policy.
At every step all agents that act, of all environments, go through ONE ``act`` call per policy.

Trajectories: experience is kept per agent (keyed by env and agent name; a restarted Unity agent has a new
name, so a new trajectory). Rewards returned by a step are added to the agent's last action. Episode returns
count rewards from an agent's first action (the runner's accounting). GAE runs per
trajectory (vectorised over all trajectories,
:func:`~unimarl.trainers.algos.mappo.trajectories.batched_gae`): no bootstrap after a termination; bootstrap
from the critic's value of the final observation after a truncation; bootstrap from the value of the current
observation when the iteration ends while the agent lives (a fragment: the next iteration continues the
episode in a new trajectory). An agent that disappears without a termination or truncation flag is treated as
truncated and bootstrapped from its last value. Critic inputs for bootstrapping use the teammates ending at
the same step (or all live teammates at a fragment cut), and the global state each ending agent reported at
its last step (a terminal step's state, never the state of the episode that restarts in the same message).

Teams and global state (:mod:`~unimarl.trainers.algos.mappo.teams`): a Unity agent's teammates are its Unity
group, whatever their behaviour; teammates acting through another policy reach the critic as that policy's
teammate embeddings (:meth:`MAPPOPolicy.embed`). A game's ``global_state`` sensor is read per agent (each
area or group has its own); a PettingZoo env's ``state()`` serves all of its agents.

Decision periods: agents between decisions do not act and every reward until their next decision (or their
end) goes to their last action, as in ML-Agents (the runner's rule). An agent that waits between decisions
when the iteration ends keeps its last action open: the trajectory up to it ends bootstrapped from that
action's value, and the action itself moves to the next iteration's batch
(:mod:`~unimarl.trainers.algos.mappo.records`), so no reward, terminal one included, is lost. Each row of a
batch is a real decision of a live agent, so ``loss_mask`` is one, except on the trajectories of a game that
was relaunched mid-episode (:attr:`~unimarl.trainers.collect.runner.AgentEnd.lost`): those rows get 0. An
agent's behaviour, policy and team are looked up once, when it first acts (a Unity agent keeps its group for
its whole episode).

Late behaviours: a behaviour whose agents first appear after reset gets its policy when they appear, from
``WorkerPlan.config`` (its mapping and settings; a new policy starts from the deterministic initial weights
of :func:`late_policy_seed`, the same in every worker and in the learner). The worker reports it in
``RolloutResult.new_policies`` so the learner creates its copy; weights sent for a policy a worker has not
met yet wait until the behaviour appears there.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from unimarl.trainers.algos.mappo.plan import (
    PolicySetup,
    RolloutResult,
    WorkerPlan,
    late_policy_seed,
    policy_setup,
)
from unimarl.trainers.algos.mappo.policy import MAPPOPolicy
from unimarl.trainers.algos.mappo.records import StepRecord, assemble_batches, compact_images, take_rows
from unimarl.trainers.algos.mappo.teams import other_policy_teammates, team_key, team_rows
from unimarl.trainers.collect.runner import Decision, EnvRunner, EnvStep, RunnerWorker, node_name
from unimarl.trainers.core.batch import CriticInput
from unimarl.trainers.core.errors import ConfigError, EnvSetupError, TrainerError
from unimarl.trainers.envs.factory import AgentView, EnvFactory, env_state

logger = logging.getLogger(__name__)


_Inputs = tuple[tuple[np.ndarray, ...], np.ndarray | None, CriticInput]
"""One policy's batched obs (one array per sensor), action mask and critic input."""


@dataclass
class _Meta:
    """An agent's behaviour, policy, view and worker-wide team id (looked up once per agent name)."""

    behavior: str
    policy: str
    view: AgentView
    team: int


@dataclass
class _Open:
    """An agent's open trajectory and where its last action is stored."""

    traj: int
    policy: str
    behavior: str
    rec: int
    row: int


@dataclass
class _Rows:
    """Agents gathered for one policy's batched call."""

    env: list[int] = field(default_factory=list)
    agent: list[str] = field(default_factory=list)
    meta: list[_Meta] = field(default_factory=list)


def _env_actions(rows: _Rows, continuous: np.ndarray, discrete: np.ndarray) -> list[Any]:
    """The policy's actions for ``rows`` in each agent's action space (vectorised if one view serves all)."""
    view = rows.meta[0].view
    if all(m.view is view for m in rows.meta):
        return view.env_actions(continuous, discrete)
    return [m.view.to_env_action(c, d) for m, c, d in zip(rows.meta, continuous, discrete, strict=True)]


class RolloutWorker(RunnerWorker):
    """k environments stepped in lockstep (an :class:`~unimarl.trainers.collect.runner.EnvRunner`) with
    MAPPO policies acting; see the module docstring."""

    def __init__(self, factory: EnvFactory, num_envs: int, worker_index: int = 0, seed: int = 0) -> None:
        self.worker_index = worker_index
        self.seed = seed
        torch.set_num_threads(1)
        self.runner = EnvRunner(factory, num_envs, worker_index, seed, global_state=True)
        self._alone_warned: set[str] = set()
        self._next_alone = -1  # team ids of agents without a team count down from -1
        self._plan: WorkerPlan | None = None
        self._behavior_policy: dict[str, str] = {}
        self._setups: dict[str, PolicySetup] = {}
        self._policies: dict[str, MAPPOPolicy] = {}
        self._waiting_weights: dict[str, dict[str, np.ndarray]] = {}
        self._new_policies: dict[str, PolicySetup] = {}
        self._new_behaviors: dict[str, str] = {}
        self._meta: list[dict[str, _Meta]] = [{} for _ in range(num_envs)]
        self._teams: dict[tuple[Any, ...], int] = {}
        self._open: list[dict[str, _Open]] = [{} for _ in range(num_envs)]
        self._new_layouts: dict[str, str] = {}
        self._records: dict[str, list[StepRecord]] = {}
        self._ends: list[tuple[bool, float]] = []  # per trajectory id: (terminated, next value)
        self._carried: dict[str, list[StepRecord]] = {}  # actions held over a cut (module docstring)
        self._carried_trajs = 0

    # -- set-up ---------------------------------------------------------------------------------------
    def configure(self, plan: WorkerPlan) -> None:
        """Build the local policy copies (CPU) used for acting."""
        self.specs()
        self._plan = plan
        self._behavior_policy = dict(plan.behavior_policy)
        self.runner.group_weight = dict(plan.group_reward_weight)
        self._setups = dict(plan.policies)
        seed = self.seed + 7919 * (self.worker_index + 1)  # overwritten by the learner's weights
        self._policies = {
            name: MAPPOPolicy(p.spec, p.hyperparameters, p.network, device="cpu", seed=seed)
            for name, p in plan.policies.items()
        }

    def _add_behavior(self, env_i: int, agent: str, behavior: str) -> None:
        """A behaviour met after reset: its view, and its policy unless an existing one serves it."""
        view = self.runner.view_for(env_i, agent, behavior)
        config = self._plan.config if self._plan is not None else None
        if config is None:
            raise EnvSetupError(
                f"behaviour '{behavior}' (agent '{agent}') appeared after training started and this worker "
                "has no config to set it up; pass WorkerPlan(config=...)"
            )
        policy, setup, weight = policy_setup(config, behavior, view.spec)
        known = self._setups.get(policy)
        if known is not None and known.spec != setup.spec:
            raise ConfigError(
                f"late behaviour '{behavior}' maps to policy '{policy}' whose spec differs "
                f"({known.spec} vs {setup.spec}); map it to a policy of its own in policy_mapping"
            )
        if known is None:
            seed = late_policy_seed(self.seed, policy)
            self._policies[policy] = MAPPOPolicy(
                setup.spec, setup.hyperparameters, setup.network, device="cpu", seed=seed
            )
            if policy in self._waiting_weights:
                self._policies[policy].set_weights(self._waiting_weights.pop(policy))
            self._setups[policy] = self._new_policies[policy] = setup
            self._records[policy] = []
            logger.info("behaviour '%s' appeared after reset: acting with new policy '%s'", behavior, policy)
        self.runner.views[behavior] = view
        self._new_layouts.update(self.runner.visual_layouts(behavior, env_i))
        self._behavior_policy[behavior] = self._new_behaviors[behavior] = policy
        self.runner.group_weight[behavior] = weight

    # -- collection -----------------------------------------------------------------------------------
    def collect(
        self, weights: dict[str, dict[str, np.ndarray]], horizon: int, max_seconds: float | None = None
    ) -> RolloutResult:
        """Step every env ``horizon`` times with ``weights`` and return per-policy batches.

        ``max_seconds``: stop stepping once this much time has passed (at least one step; the run's time
        budget); the fragments are cut and bootstrapped as at the end of a full horizon.
        """
        if self._plan is None:
            raise TrainerError("RolloutWorker.collect called before configure(plan)")
        start = time.perf_counter()
        for name, w in weights.items():
            if name in self._policies:
                self._policies[name].set_weights(w)
            else:
                self._waiting_weights[name] = w
        self._records = {name: list(self._carried.get(name, ())) for name in self._policies}
        self._ends = [(False, 0.0)] * self._carried_trajs  # the held actions' trajectories come first
        self._lost: set[int] = set()
        self._carried, self._carried_trajs = {}, 0
        self._new_policies, self._new_behaviors, self._new_layouts = {}, {}, {}
        done = self.runner.run(self, horizon, start, max_seconds)
        self._cut_fragments()
        discount = {n: (s.hyperparameters.gamma, s.hyperparameters.lam) for n, s in self._setups.items()}
        batches = assemble_batches(self._records, self._ends, discount, self._lost)
        self._records = {}
        done.timers["collect_s"] = time.perf_counter() - start
        return RolloutResult(
            batches,
            done.env_steps,
            done.agent_steps,
            dict(done.episode_returns),
            dict(done.episode_lengths),
            done.timers,
            node_name(),
            dict(self._new_policies),
            dict(self._new_behaviors),
            dict(self._new_layouts),
            dict(done.game_restarts),
            self.runner.drain_stats(),
            dict(done.final_rewards),
        )

    def _meta_of(self, env_i: int, agent: str) -> _Meta:
        meta = self._meta[env_i].get(agent)
        if meta is None:
            info = self.runner.infos[env_i].get(agent)
            behavior = self.runner.behavior_of(env_i, agent)
            if behavior not in self._behavior_policy:
                self._add_behavior(env_i, agent, behavior)
            key = team_key(env_i, behavior, info, self.runner.unity[env_i])
            if key is None:
                team = self._next_alone
                self._next_alone -= 1
                self._warn_alone(behavior, agent)
            else:
                team = self._teams.setdefault(key, len(self._teams))
            meta = _Meta(behavior, self._behavior_policy[behavior], self.runner.views[behavior], team)
            self._meta[env_i][agent] = meta
        return meta

    def _gather(self, pairs: list[tuple[int, str]]) -> dict[str, _Rows]:
        grouped: dict[str, _Rows] = defaultdict(_Rows)
        for env_i, agent in pairs:
            meta = self._meta_of(env_i, agent)
            rows = grouped[meta.policy]
            rows.env.append(env_i)
            rows.agent.append(agent)
            rows.meta.append(meta)
        return grouped

    def _warn_alone(self, behavior: str, agent: str) -> None:
        spec = self.runner.views[behavior].spec
        setup = self._setups.get(self._behavior_policy[behavior])
        centralized = setup is None or setup.network.centralized_critic
        if spec.state_shape is None and centralized and behavior not in self._alone_warned:
            self._alone_warned.add(behavior)
            logger.warning(
                "agent %s of behaviour '%s' is in no Unity group (group_id 0): its centralised critic sees "
                "only its own observation; put teammates in a SimpleMultiAgentGroup, or add a sensor named "
                "'global_state'",
                agent,
                behavior,
            )

    def _inputs(self, rows: _Rows) -> _Inputs:
        """Stack the current observations of ``rows`` (one policy) into obs (images as bytes where lossless),
        mask and critic input (global states, or references to the teammates among ``rows``)."""
        view, now = rows.meta[0].view, self.runner.obs
        if all(m.view is view for m in rows.meta):
            obs, mask = view.stack([now[e][a] for e, a in zip(rows.env, rows.agent, strict=True)])
        else:  # several behaviours share the policy (same spec, possibly different obs wrappers)
            raws = zip(rows.env, rows.agent, rows.meta, strict=True)
            parts = [m.view.stack([now[e][a]]) for e, a, m in raws]
            obs = tuple(np.concatenate(s) for s in zip(*(p[0] for p in parts), strict=True))
            masks = [p[1] for p in parts]
            mask = None if masks[0] is None else np.concatenate(masks)  # type: ignore[arg-type]
        flags = [self.runner.byte_sensors[m.behavior] for m in rows.meta]
        obs = compact_images(obs, tuple(all(f) for f in zip(*flags, strict=True)))
        if view.spec.state_shape is not None:
            return obs, mask, CriticInput(state=self._state_rows(rows))
        return obs, mask, CriticInput(team_rows=team_rows(np.array([m.team for m in rows.meta])))

    def _state_rows(self, rows: _Rows) -> np.ndarray:
        """Each row's global state: the Unity agent's own (its area's or group's), or its env's state()."""
        per_env: dict[int, np.ndarray] = {}
        states = []
        for env_i, agent in zip(rows.env, rows.agent, strict=True):
            env = self.runner.envs[env_i]
            if self.runner.unity[env_i]:
                states.append(np.asarray(env.agent_state(agent), np.float32))
                continue
            if env_i not in per_env:
                state = env_state(env)
                if state is None:
                    raise EnvSetupError(f"env {env_i} stopped providing state(); its agents' critic needs it")
                per_env[env_i] = state
            states.append(per_env[env_i])
        return np.stack(states)

    def _critic_inputs(self, gathered: dict[str, _Rows]) -> dict[str, _Inputs]:
        """:meth:`_inputs` of every policy, with teammates acting through other policies added as their
        policies' teammate embeddings."""
        inputs = {name: self._inputs(rows) for name, rows in gathered.items()}
        teams = {
            name: np.array([m.team for m in rows.meta])
            for name, rows in gathered.items()
            if inputs[name][2].team_rows is not None and self._policies[name].embedding_width is not None
        }
        extra = other_policy_teammates(teams, lambda name: self._policies[name].embed(inputs[name][0]))
        for name, (given, mask) in extra.items():
            obs, action_mask, critic = inputs[name]
            inputs[name] = (
                obs,
                action_mask,
                replace(critic, team_embeddings=given, team_embedding_mask=mask),
            )
        return inputs

    # -- the runner's hooks (collect/runner.py: Actor) -------------------------------------------------
    def act(self, decisions: list[Decision]) -> list[dict[str, Any]]:
        """One batched forward per policy over every deciding agent of every env."""
        deterministic = self._plan is not None and self._plan.deterministic
        actions: list[dict[str, Any]] = [{} for _ in self.runner.envs]
        gathered = self._gather([(d.env, d.agent) for d in decisions])
        for name, (obs, mask, critic) in self._critic_inputs(gathered).items():
            rows = gathered[name]
            out = self._policies[name].act(obs, mask, critic, deterministic=deterministic)
            records = self._records[name]
            rec = len(records)
            n = len(rows.env)
            trajs = np.empty(n, np.int64)
            env_actions = _env_actions(rows, out.continuous_actions, out.discrete_actions)
            for j, (env_i, agent, meta) in enumerate(zip(rows.env, rows.agent, rows.meta, strict=True)):
                actions[env_i][agent] = env_actions[j]
                slot = self._open[env_i].get(agent)
                if slot is None:
                    slot = self._open[env_i][agent] = _Open(len(self._ends), name, meta.behavior, rec, j)
                    self._ends.append((False, 0.0))
                else:
                    slot.rec, slot.row = rec, j
                trajs[j] = slot.traj
            records.append(
                StepRecord(
                    obs,
                    mask,
                    critic,
                    out.continuous_actions,
                    out.discrete_actions,
                    out.logp,
                    out.values,
                    trajs,
                    np.zeros(n, np.float32),
                    out.embeddings,
                )
            )
        return actions

    def observe(self, steps: list[EnvStep]) -> None:
        """Credit rewards to each agent's last action; close ended trajectories (bootstrapping
        truncations)."""
        bootstrap: list[tuple[int, str, _Open]] = []
        for env_step in steps:
            i, open_trajs = env_step.env, self._open[env_step.env]
            for agent, reward in env_step.rewards.items():
                slot = open_trajs.get(agent)
                if slot is not None:
                    self._records[slot.policy][slot.rec].rewards[slot.row] += reward
            for step in env_step.ended:
                slot = open_trajs.pop(step.agent, None)
                if slot is None:  # no open action (every reward already credited)
                    continue
                if step.lost:  # its game was relaunched mid-episode: the fragment is dropped
                    self._lost.add(slot.traj)
                    self._ends[slot.traj] = (False, 0.0)
                elif step.terminated:
                    self._ends[slot.traj] = (True, 0.0)
                elif step.truncated and step.agent in env_step.result[0]:
                    bootstrap.append((i, step.agent, slot))
                else:
                    last = float(self._records[slot.policy][slot.rec].values[slot.row])
                    self._ends[slot.traj] = (False, last)
        if bootstrap:
            self._bootstrap(bootstrap)
        for env_step in steps:
            for step in env_step.ended:
                self._meta[env_step.env].pop(step.agent, None)

    def restarted(self, env: int) -> None:
        """A PettingZoo env was reset: its agent names start new episodes."""
        self._meta[env].clear()

    def _bootstrap(self, pending: list[tuple[int, str, _Open]]) -> None:
        """Close trajectories with the critic's value of each agent's current observation."""
        slots = {(env_i, agent): slot for env_i, agent, slot in pending}
        gathered = self._gather([(e, a) for e, a, _ in pending])
        for name, (obs, _, critic) in self._critic_inputs(gathered).items():
            rows = gathered[name]
            values = self._policies[name].value(obs, critic)
            for env_i, agent, v in zip(rows.env, rows.agent, values.tolist(), strict=True):
                self._ends[slots[(env_i, agent)].traj] = (False, v)

    def _cut_fragments(self) -> None:
        """End of the iteration: close every open trajectory as a fragment, bootstrapped; an agent between
        decisions keeps its last action open into the next iteration (module docstring)."""
        pending: list[tuple[int, str, _Open]] = []
        held: list[tuple[int, str, _Open]] = []
        for i, open_trajs in enumerate(self._open):
            infos = self.runner.infos[i]
            for agent, slot in open_trajs.items():
                deciding = (infos.get(agent) or {}).get("requested_decision", True)
                (pending if deciding else held).append((i, agent, slot))
        self._open = [{} for _ in self.runner.envs]
        if pending:
            self._bootstrap(pending)
        if held:
            self._hold(held)

    def _hold(self, held: list[tuple[int, str, _Open]]) -> None:
        """Carry each agent's last action into the next iteration (``self._carried``; its trajectory ids
        0..k-1 there) and end the trajectory before it with that action's value."""
        by_record: dict[tuple[str, int], list[tuple[int, str, _Open]]] = defaultdict(list)
        for entry in held:
            by_record[(entry[2].policy, entry[2].rec)].append(entry)
        for (policy, rec_index), entries in by_record.items():
            rec = self._records[policy][rec_index]
            rows = [slot.row for _, _, slot in entries]
            part = take_rows(rec, np.asarray(rows))
            first = self._carried_trajs
            part.traj = np.arange(first, first + len(rows))
            rec.held.extend(rows)
            carried = self._carried.setdefault(policy, [])
            for j, (env_i, agent, slot) in enumerate(entries):
                self._ends[slot.traj] = (False, float(rec.values[slot.row]))
                self._open[env_i][agent] = _Open(first + j, policy, slot.behavior, len(carried), j)
            carried.append(part)
            self._carried_trajs += len(rows)
