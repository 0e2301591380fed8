"""Rollout worker: k environments, one batched policy forward per step, per-agent trajectories.

A :class:`RolloutWorker` owns ``num_envs`` environments and keeps them running across iterations. Each call
of :meth:`RolloutWorker.collect` loads the learner's weights, steps every environment ``horizon`` times and
returns one :class:`~unimarl.trainers.batch.RolloutBatch` per policy. At every step all agents that act, of
all environments, go through ONE ``act`` call per policy.

Trajectories: experience is kept per agent (keyed by env and agent name; a restarted Unity agent has a new
name, so a new trajectory). Rewards returned by a step are added to the agent's last action. GAE runs per
trajectory (vectorised over all trajectories, :func:`~unimarl.trainers.trajectories.batched_gae`): no
bootstrap after a termination; bootstrap from the critic's value of the final observation after a
truncation; bootstrap from the value of the current observation when the iteration ends while the agent lives
(a fragment: the next iteration continues the episode in a new trajectory). An agent that disappears without
a termination or truncation flag is treated as truncated and bootstrapped from its last value. Critic inputs
for bootstrapping use the teammates ending at the same step (or all live teammates at a fragment cut), and
the global state each ending agent reported at its last step (a terminal step's state, never the state of
the episode that restarts in the same message).

Teams and global state (:mod:`~unimarl.trainers.teams`): a Unity agent's teammates are its Unity group,
whatever their behaviour; teammates acting through another policy reach the critic as that policy's
teammate embeddings (:meth:`MAPPOPolicy.embed`). A game's ``global_state`` sensor is read per agent (each
area or group has its own); a PettingZoo env's ``state()`` serves all of its agents.

Decision periods: agents whose ``infos["requested_decision"]`` is False (Unity decision period > 1) do not
act; every reward until their next decision (or their end) goes to their last action, as in ML-Agents. An
agent that waits between decisions when the iteration ends keeps its last action open: the trajectory up to
it ends bootstrapped from that action's value, and the action itself moves to the next iteration's batch
(:mod:`~unimarl.trainers.rollout_records`), so no reward, terminal one included, is lost. Each row of a
batch is a real decision of a live agent, so ``loss_mask`` is all ones. An agent's behaviour, policy and
team are looked up once, when it first acts (a Unity agent keeps its group for its whole episode).

Late behaviours: a behaviour whose agents first appear after reset gets its policy when they appear, from
``WorkerPlan.config`` (its mapping and settings; a new policy starts from the deterministic initial weights
of :func:`late_policy_seed`, the same in every worker and in the learner). The worker reports it in
``RolloutResult.new_policies`` so the learner creates its copy; weights sent for a policy a worker has not
met yet wait until the behaviour appears there.
"""

from __future__ import annotations

import logging
import platform
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from unimarl.trainers.batch import CriticInput, PolicySpec
from unimarl.trainers.envs import (
    AgentView,
    EnvFactory,
    agent_behavior,
    agent_view,
    credit_group_reward,
    env_state,
    is_unity,
)
from unimarl.trainers.errors import ConfigError, EnvSetupError, TrainerError
from unimarl.trainers.mappo import MAPPOPolicy
from unimarl.trainers.rollout_plan import (
    PolicySetup,
    RolloutResult,
    WorkerPlan,
    late_policy_seed,
    policy_setup,
)
from unimarl.trainers.rollout_records import StepRecord, assemble_batches, compact_images, take_rows
from unimarl.trainers.rollout_state import byte_sensors, game_state_shape
from unimarl.trainers.teams import other_policy_teammates, team_key, team_rows

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


class GamePushing:
    """Hot-swap at a worker's end: its Unity/sim envs (``self._envs``) carry a policy channel each."""

    _envs: list[Any]

    def push_policy(self, behavior: str, version: int, model: bytes) -> int:
        """Queue an ONNX model on every Unity/sim env's policy channel; returns how many games get it."""
        channels = [c for env in self._envs if (c := getattr(env, "policy_channel", None)) is not None]
        for channel in channels:
            channel.push(behavior, version, model)
        return len(channels)

    def policy_status(self) -> list[dict[str, Any]]:
        """Per Unity/sim env, behaviour -> ``PolicyStatus`` (what the game acknowledged running)."""
        return [c.status() for env in self._envs if (c := getattr(env, "policy_channel", None)) is not None]


def _game_layouts(env: Any, only: str | None = None) -> dict[str, str]:
    """Visual layout per behaviour (or of ``only``) that the game behind ``env`` marks (Unity/sim envs)."""
    from unimarl.trainers.policy_export import visual_layout_of  # imports torch.onnx: only when asked

    layouts = {}
    for behavior, spec in getattr(env, "behavior_specs", {}).items():
        layout = visual_layout_of(spec.observation_specs) if only in (None, behavior) else None
        if layout is not None:
            layouts[behavior] = layout
    return layouts


def _node_name() -> str:
    ray = sys.modules.get("ray")  # never imported here: only the Ray pool imports it
    if ray is not None and ray.is_initialized():
        return str(ray.get_runtime_context().get_node_id())
    return platform.node()


class RolloutWorker(GamePushing):
    """k environments stepped in lockstep; see the module docstring."""

    def __init__(self, factory: EnvFactory, num_envs: int, worker_index: int = 0, seed: int = 0) -> None:
        self.worker_index = worker_index
        self.seed = seed
        torch.set_num_threads(1)
        self._envs = [factory(worker_index, i, seed + 1000 * worker_index + i) for i in range(num_envs)]
        self._unity = [is_unity(env) for env in self._envs]
        # a Unity/sim env waits on another process (gRPC releases the GIL): step those concurrently
        self._threads = ThreadPoolExecutor(num_envs) if num_envs > 1 and any(self._unity) else None
        self._obs: list[dict[str, Any]] = []
        self._infos: list[dict[str, Any]] = []
        for i, env in enumerate(self._envs):
            obs, infos = env.reset(seed=seed + 1000 * worker_index + i)
            self._obs.append(obs)
            self._infos.append(infos)
        self._views: dict[str, AgentView] = {}
        self._byte_sensors: dict[str, tuple[bool, ...]] = {}
        self._alone_warned: set[str] = set()
        self._next_alone = -1  # team ids of agents without a team count down from -1
        self._plan: WorkerPlan | None = None
        self._behavior_policy: dict[str, str] = {}
        self._group_weight: dict[str, float] = {}
        self._ignored_group: set[str] = set()  # behaviours warned about ignored group rewards
        self._setups: dict[str, PolicySetup] = {}
        self._policies: dict[str, MAPPOPolicy] = {}
        self._waiting_weights: dict[str, dict[str, np.ndarray]] = {}
        self._new_policies: dict[str, PolicySetup] = {}
        self._new_behaviors: dict[str, str] = {}
        self._meta: list[dict[str, _Meta]] = [{} for _ in self._envs]
        self._teams: dict[tuple[Any, ...], int] = {}
        self._open: list[dict[str, _Open]] = [{} for _ in self._envs]
        self._episode: list[dict[str, list[float]]] = [{} for _ in self._envs]  # agent -> [return, length]
        self._new_layouts: dict[str, str] = {}
        self._records: dict[str, list[StepRecord]] = {}
        self._ends: list[tuple[bool, float]] = []  # per trajectory id: (terminated, next value)
        self._carried: dict[str, list[StepRecord]] = {}  # actions held over a cut (module docstring)
        self._carried_trajs = 0

    # -- set-up ---------------------------------------------------------------------------------------
    def specs(self) -> dict[str, PolicySpec]:
        """Policy spec of every behaviour with agents after reset."""
        for i, env in enumerate(self._envs):
            for agent in self._obs[i]:
                behavior = agent_behavior(env, agent, self._infos[i].get(agent))
                if behavior not in self._views:
                    self._views[behavior] = self._view(i, agent, behavior)
        return {b: v.spec for b, v in self._views.items()}

    def visual_layouts(self) -> dict[str, str]:
        """Layout ("CHW" or "HWC") of the visual observations of each behaviour whose game marks one (Unity
        and sim games); exports record it so a model feeds the layout the game sends. Behaviours met later
        are reported in ``RolloutResult.new_layouts``."""
        layouts: dict[str, str] = {}
        for env in self._envs:
            layouts.update(_game_layouts(env))
        return layouts

    def _view(self, env_i: int, agent: str, behavior: str) -> AgentView:
        env = self._envs[env_i]
        if self._unity[env_i]:
            state_shape = game_state_shape(env, behavior)
        else:
            state = env_state(env)
            state_shape = None if state is None else tuple(state.shape)
        self._byte_sensors[behavior] = byte_sensors(env.observation_space(agent))
        return agent_view(
            env.observation_space(agent), env.action_space(agent), state_shape, f"behaviour '{behavior}'"
        )

    def configure(self, plan: WorkerPlan) -> None:
        """Build the local policy copies (CPU) used for acting."""
        self.specs()
        self._plan = plan
        self._behavior_policy = dict(plan.behavior_policy)
        self._group_weight = dict(plan.group_reward_weight)
        self._setups = dict(plan.policies)
        seed = self.seed + 7919 * (self.worker_index + 1)  # overwritten by the learner's weights
        self._policies = {
            name: MAPPOPolicy(p.spec, p.hyperparameters, p.network, device="cpu", seed=seed)
            for name, p in plan.policies.items()
        }

    def _add_behavior(self, env_i: int, agent: str, behavior: str) -> None:
        """A behaviour met after reset: its view, and its policy unless an existing one serves it."""
        view = self._view(env_i, agent, behavior)
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
        self._views[behavior] = view
        self._new_layouts.update(_game_layouts(self._envs[env_i], behavior))
        self._behavior_policy[behavior] = self._new_behaviors[behavior] = policy
        self._group_weight[behavior] = weight

    def node(self) -> str:
        """Where this worker runs: the Ray node id inside a Ray actor, else the host name."""
        return _node_name()

    def close(self) -> None:
        for env in self._envs:
            env.close()
        if self._threads is not None:
            self._threads.shutdown()

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
        self._carried, self._carried_trajs = {}, 0
        self._new_policies, self._new_behaviors, self._new_layouts = {}, {}, {}
        returns: dict[str, list[float]] = defaultdict(list)
        lengths: dict[str, list[int]] = defaultdict(list)
        timers = {"act_s": 0.0, "env_s": 0.0}
        agent_steps = 0
        steps_done = 0
        for _ in range(horizon):
            if steps_done and max_seconds is not None and time.perf_counter() - start >= max_seconds:
                break
            steps_done += 1
            t0 = time.perf_counter()
            actions, n = self._act()
            agent_steps += n
            t1 = time.perf_counter()
            steps = self._step_all(actions)
            timers["env_s"] += time.perf_counter() - t1
            timers["act_s"] += t1 - t0
            self._process_steps(steps, returns, lengths)
        self._cut_fragments()
        discount = {n: (s.hyperparameters.gamma, s.hyperparameters.lam) for n, s in self._setups.items()}
        batches = assemble_batches(self._records, self._ends, discount)
        self._records = {}
        timers["collect_s"] = time.perf_counter() - start
        return RolloutResult(
            batches,
            steps_done * len(self._envs),
            agent_steps,
            dict(returns),
            dict(lengths),
            timers,
            _node_name(),
            dict(self._new_policies),
            dict(self._new_behaviors),
            dict(self._new_layouts),
        )

    def _step_all(self, actions: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        """Step every env; games in other processes (Unity/sim) are stepped concurrently from threads."""
        if self._threads is None:
            return [env.step(actions[i]) for i, env in enumerate(self._envs)]
        return list(self._threads.map(lambda i: self._envs[i].step(actions[i]), range(len(self._envs))))

    def _meta_of(self, env_i: int, agent: str) -> _Meta:
        meta = self._meta[env_i].get(agent)
        if meta is None:
            info = self._infos[env_i].get(agent)
            behavior = agent_behavior(self._envs[env_i], agent, info)
            if behavior not in self._behavior_policy:
                self._add_behavior(env_i, agent, behavior)
            key = team_key(env_i, behavior, info, self._unity[env_i])
            if key is None:
                team = self._next_alone
                self._next_alone -= 1
                self._warn_alone(behavior, agent)
            else:
                team = self._teams.setdefault(key, len(self._teams))
            meta = _Meta(behavior, self._behavior_policy[behavior], self._views[behavior], team)
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
        spec = self._views[behavior].spec
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
        view = rows.meta[0].view
        if all(m.view is view for m in rows.meta):
            obs, mask = view.stack([self._obs[e][a] for e, a in zip(rows.env, rows.agent, strict=True)])
        else:  # several behaviours share the policy (same spec, possibly different obs wrappers)
            raws = zip(rows.env, rows.agent, rows.meta, strict=True)
            parts = [m.view.stack([self._obs[e][a]]) for e, a, m in raws]
            obs = tuple(np.concatenate(s) for s in zip(*(p[0] for p in parts), strict=True))
            masks = [p[1] for p in parts]
            mask = None if masks[0] is None else np.concatenate(masks)  # type: ignore[arg-type]
        flags = [self._byte_sensors[m.behavior] for m in rows.meta]
        obs = compact_images(obs, tuple(all(f) for f in zip(*flags, strict=True)))
        if view.spec.state_shape is not None:
            return obs, mask, CriticInput(state=self._state_rows(rows))
        return obs, mask, CriticInput(team_rows=team_rows(np.array([m.team for m in rows.meta])))

    def _state_rows(self, rows: _Rows) -> np.ndarray:
        """Each row's global state: the Unity agent's own (its area's or group's), or its env's state()."""
        per_env: dict[int, np.ndarray] = {}
        states = []
        for env_i, agent in zip(rows.env, rows.agent, strict=True):
            env = self._envs[env_i]
            if self._unity[env_i]:
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

    def _act(self) -> tuple[list[dict[str, Any]], int]:
        """One batched forward per policy over every acting agent of every env."""
        pairs: list[tuple[int, str]] = []
        for i, env in enumerate(self._envs):
            infos = self._infos[i]
            pairs.extend((i, a) for a in env.agents if infos.get(a, {}).get("requested_decision", True))
        deterministic = self._plan is not None and self._plan.deterministic
        actions: list[dict[str, Any]] = [{} for _ in self._envs]
        gathered = self._gather(pairs)
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
                self._episode[env_i].setdefault(agent, [0.0, 0])[1] += 1
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
        return actions, len(pairs)

    def _process_steps(
        self, steps: list[tuple[Any, ...]], returns: dict[str, list[float]], lengths: dict[str, list[int]]
    ) -> None:
        """Credit rewards, close ended trajectories (bootstrapping truncations) and reset finished envs."""
        weights = self._group_weight
        bootstrap: list[tuple[int, str, _Open]] = []
        ended: list[tuple[int, str]] = []
        for i, (obs, rewards, terminations, truncations, infos) in enumerate(steps):
            self._obs[i], self._infos[i] = obs, infos
            open_trajs, episode = self._open[i], self._episode[i]
            for agent, reward in rewards.items():
                slot = open_trajs.get(agent)
                if slot is None:
                    continue
                weight = weights.get(slot.behavior, 0.0)
                r = credit_group_reward(reward, infos.get(agent), weight, slot.behavior, self._ignored_group)
                self._records[slot.policy][slot.rec].rewards[slot.row] += r
                episode[agent][0] += r
            live = set(self._envs[i].agents)
            for agent in [a for a in episode if terminations.get(a) or truncations.get(a) or a not in live]:
                slot = open_trajs.pop(agent, None)
                ended.append((i, agent))
                ep_return, ep_length = episode.pop(agent)
                behavior = self._meta[i][agent].behavior if slot is None else slot.behavior
                returns[behavior].append(ep_return)
                lengths[behavior].append(int(ep_length))
                if slot is None:  # no open action (every reward already credited)
                    continue
                if terminations.get(agent):
                    self._ends[slot.traj] = (True, 0.0)
                elif truncations.get(agent) and agent in obs:
                    bootstrap.append((i, agent, slot))
                else:
                    last = float(self._records[slot.policy][slot.rec].values[slot.row])
                    self._ends[slot.traj] = (False, last)
        if bootstrap:
            self._bootstrap(bootstrap)
        for i, agent in ended:
            self._meta[i].pop(agent, None)
        for i, env in enumerate(self._envs):
            if not env.agents and not self._unity[i]:
                self._obs[i], self._infos[i] = env.reset()
                self._meta[i].clear()

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
            infos = self._infos[i]
            for agent, slot in open_trajs.items():
                deciding = (infos.get(agent) or {}).get("requested_decision", True)
                (pending if deciding else held).append((i, agent, slot))
        self._open = [{} for _ in self._envs]
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
