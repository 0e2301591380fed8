"""Rollout worker: k environments, one batched policy forward per step, per-agent trajectories.

A :class:`RolloutWorker` owns ``num_envs`` environments and keeps them running across iterations. Each call
of :meth:`RolloutWorker.collect` loads the learner's weights, steps every environment ``horizon`` times and
returns one :class:`~unimarl.trainers.batch.RolloutBatch` per policy. At every step all agents that act, of
all environments, go through ONE ``act`` call per policy.

Trajectories: experience is kept per agent (keyed by env and agent name; a restarted Unity agent has a new
name, so a new trajectory). Rewards returned by a step are added to the agent's last action. GAE runs per
trajectory: no bootstrap after a termination; bootstrap from the critic's value of the final observation
after a truncation; bootstrap from the value of the current observation when the iteration ends while the
agent lives (a fragment: the next iteration continues the episode in a new trajectory). An agent that
disappears without a termination or truncation flag is treated as truncated and bootstrapped from its last
value. Critic inputs for bootstrapping use the teammates ending at the same step (or all live teammates at a
fragment cut).

Agents whose ``infos["requested_decision"]`` is False (Unity decision period > 1) do not act; their rewards
go to their last action. Each row of a batch is a real decision of a live agent, so ``loss_mask`` is all
ones.
"""

from __future__ import annotations

import logging
import platform
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from unimarl.trainers.batch import CriticInput, PolicySpec, RolloutBatch
from unimarl.trainers.envs import (
    AgentView,
    EnvFactory,
    agent_behavior,
    agent_view,
    env_state,
    is_unity,
    team_key,
)
from unimarl.trainers.errors import EnvSetupError, TrainerError
from unimarl.trainers.gae import gae
from unimarl.trainers.mappo import MAPPOHyperparameters, MAPPOPolicy, NetworkSettings
from unimarl.trainers.teams import concat_batches, team_arrays

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PolicySetup:
    """What a worker needs to build one policy's local copy and to compute its advantages."""

    spec: PolicySpec
    hyperparameters: MAPPOHyperparameters
    network: NetworkSettings


@dataclass(frozen=True)
class WorkerPlan:
    """Which policy acts for which behaviour, and how group rewards are weighted."""

    policies: dict[str, PolicySetup]
    behavior_policy: dict[str, str]
    group_reward_weight: dict[str, float] = field(default_factory=dict)


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


@dataclass
class _Record:
    """One policy's batched act() at one step (rows = agents)."""

    obs: tuple[np.ndarray, ...]
    mask: np.ndarray | None
    critic: CriticInput
    continuous: np.ndarray
    discrete: np.ndarray
    logp: np.ndarray
    values: np.ndarray


@dataclass
class _Trajectory:
    policy: str
    behavior: str
    entries: list[tuple[int, int]] = field(default_factory=list)  # (record index, row)
    rewards: list[float] = field(default_factory=list)


@dataclass
class _Row:
    env: int
    agent: str
    behavior: str
    raw_obs: Any
    team: tuple[str, int]


def _node_name() -> str:
    ray = sys.modules.get("ray")  # never imported here: only the Ray pool imports it
    if ray is not None and ray.is_initialized():
        return str(ray.get_runtime_context().get_node_id())
    return platform.node()


class RolloutWorker:
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
        self._has_state = env_state(self._envs[0]) is not None
        self._views: dict[str, AgentView] = {}
        self._plan: WorkerPlan | None = None
        self._policies: dict[str, MAPPOPolicy] = {}
        self._open: list[dict[str, _Trajectory]] = [{} for _ in self._envs]
        self._episode: list[dict[str, list[float]]] = [{} for _ in self._envs]  # agent -> [return, length]
        self._records: dict[str, list[_Record]] = {}

    # -- set-up ---------------------------------------------------------------------------------------
    def specs(self) -> dict[str, PolicySpec]:
        """Policy spec of every behaviour with agents after reset."""
        for i, env in enumerate(self._envs):
            state = env_state(env) if self._has_state else None
            for agent in self._obs[i]:
                behavior = agent_behavior(env, agent, self._infos[i].get(agent))
                if behavior not in self._views:
                    self._views[behavior] = agent_view(
                        env.observation_space(agent),
                        env.action_space(agent),
                        None if state is None else tuple(state.shape),
                        f"behaviour '{behavior}'",
                    )
        return {b: v.spec for b, v in self._views.items()}

    def configure(self, plan: WorkerPlan) -> None:
        """Build the local policy copies (CPU) used for acting."""
        self.specs()
        self._plan = plan
        self._policies = {
            name: MAPPOPolicy(
                p.spec,
                p.hyperparameters,
                p.network,
                device="cpu",
                seed=self.seed + 7919 * (self.worker_index + 1),
            )
            for name, p in plan.policies.items()
        }

    def node(self) -> str:
        """Where this worker runs: the Ray node id inside a Ray actor, else the host name."""
        return _node_name()

    def close(self) -> None:
        for env in self._envs:
            env.close()
        if self._threads is not None:
            self._threads.shutdown()

    # -- collection -----------------------------------------------------------------------------------
    def collect(self, weights: dict[str, dict[str, np.ndarray]], horizon: int) -> RolloutResult:
        """Step every env ``horizon`` times with ``weights`` and return per-policy batches."""
        if self._plan is None:
            raise TrainerError("RolloutWorker.collect called before configure(plan)")
        start = time.perf_counter()
        for name, w in weights.items():
            self._policies[name].set_weights(w)
        self._records = {name: [] for name in self._policies}
        finished: list[tuple[_Trajectory, bool, float]] = []
        returns: dict[str, list[float]] = defaultdict(list)
        lengths: dict[str, list[int]] = defaultdict(list)
        timers = {"act_s": 0.0, "env_s": 0.0}
        agent_steps = 0
        for _ in range(horizon):
            t0 = time.perf_counter()
            actions, n = self._act()
            agent_steps += n
            t1 = time.perf_counter()
            steps = self._step_all(actions)
            timers["env_s"] += time.perf_counter() - t1
            timers["act_s"] += t1 - t0
            self._process_steps(steps, finished, returns, lengths)
        finished.extend(self._cut_fragments())
        batches = self._assemble(finished)
        timers["collect_s"] = time.perf_counter() - start
        return RolloutResult(
            batches,
            horizon * len(self._envs),
            agent_steps,
            dict(returns),
            dict(lengths),
            timers,
            _node_name(),
        )

    def _step_all(self, actions: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        """Step every env; games in other processes (Unity/sim) are stepped concurrently from threads."""
        if self._threads is None:
            return [env.step(actions[i]) for i, env in enumerate(self._envs)]
        return list(self._threads.map(lambda i: self._envs[i].step(actions[i]), range(len(self._envs))))

    def _rows(self, env_i: int, agents: list[str]) -> list[_Row]:
        env, unity, obs, infos = self._envs[env_i], self._unity[env_i], self._obs[env_i], self._infos[env_i]
        rows = []
        for agent in agents:
            info = infos.get(agent)
            behavior = agent_behavior(env, agent, info)
            if behavior not in self._views:
                raise EnvSetupError(
                    f"behaviour '{behavior}' (agent '{agent}') appeared after training started; "
                    "every behaviour must have agents right after reset"
                )
            rows.append(_Row(env_i, agent, behavior, obs[agent], team_key(behavior, info, unity)))
        return rows

    def _inputs(
        self, rows: list[_Row], states: list[np.ndarray | None]
    ) -> tuple[tuple[np.ndarray, ...], np.ndarray | None, CriticInput]:
        """Stack rows of one policy into batched obs, mask and critic input."""
        view = self._views[rows[0].behavior]
        split = [view.obs_arrays(r.raw_obs) for r in rows]
        obs = tuple(
            np.stack([np.asarray(s[0][k], np.float32) for s in split]) for k in range(len(split[0][0]))
        )
        mask = None
        if view.spec.mask_size:
            mask = np.stack(
                [m if m is not None else np.ones(view.spec.mask_size, np.float32) for _, m in split]
            )
        if self._has_state:
            return obs, mask, CriticInput(state=np.stack([states[r.env] for r in rows]))
        flat = np.concatenate([o.reshape(len(rows), -1) for o in obs], axis=1)
        group_ids: dict[tuple[int, tuple[str, int]], int] = {}
        groups = np.array([group_ids.setdefault((r.env, r.team), len(group_ids)) for r in rows])
        team_obs, team_mask = team_arrays(flat, groups)
        return obs, mask, CriticInput(team_obs=team_obs, team_mask=team_mask)

    def _by_policy(self, rows: list[_Row]) -> dict[str, list[_Row]]:
        assert self._plan is not None
        grouped: dict[str, list[_Row]] = defaultdict(list)
        for row in rows:
            grouped[self._plan.behavior_policy[row.behavior]].append(row)
        return grouped

    def _act(self) -> tuple[list[dict[str, Any]], int]:
        """One batched forward per policy over every acting agent of every env."""
        rows: list[_Row] = []
        for i, env in enumerate(self._envs):
            infos = self._infos[i]
            acting = [a for a in env.agents if infos.get(a, {}).get("requested_decision", True)]
            rows.extend(self._rows(i, acting))
        states = [env_state(env) if self._has_state else None for env in self._envs]
        actions: list[dict[str, Any]] = [{} for _ in self._envs]
        for name, p_rows in self._by_policy(rows).items():
            obs, mask, critic = self._inputs(p_rows, states)
            out = self._policies[name].act(obs, mask, critic)
            records = self._records[name]
            records.append(
                _Record(obs, mask, critic, out.continuous_actions, out.discrete_actions, out.logp, out.values)
            )
            rec = len(records) - 1
            for j, row in enumerate(p_rows):
                view = self._views[row.behavior]
                actions[row.env][row.agent] = view.to_env_action(
                    out.continuous_actions[j], out.discrete_actions[j]
                )
                traj = self._open[row.env].get(row.agent)
                if traj is None:
                    traj = self._open[row.env][row.agent] = _Trajectory(name, row.behavior)
                traj.entries.append((rec, j))
                traj.rewards.append(0.0)
                self._episode[row.env].setdefault(row.agent, [0.0, 0])[1] += 1
        return actions, len(rows)

    def _process_steps(
        self,
        steps: list[tuple[Any, ...]],
        finished: list[tuple[_Trajectory, bool, float]],
        returns: dict[str, list[float]],
        lengths: dict[str, list[int]],
    ) -> None:
        """Credit rewards, close ended trajectories (bootstrapping truncations) and reset finished envs."""
        assert self._plan is not None
        weights = self._plan.group_reward_weight
        bootstrap: list[tuple[_Row, _Trajectory]] = []
        states: list[np.ndarray | None] = []
        for i, (obs, rewards, terminations, truncations, infos) in enumerate(steps):
            self._obs[i], self._infos[i] = obs, infos
            states.append(env_state(self._envs[i]) if self._has_state else None)
            open_trajs, episode = self._open[i], self._episode[i]
            for agent, reward in rewards.items():
                traj = open_trajs.get(agent)
                if traj is None:
                    continue
                info = infos.get(agent) or {}
                r = float(reward) + weights.get(traj.behavior, 0.0) * float(info.get("group_reward", 0.0))
                traj.rewards[-1] += r
                episode[agent][0] += r
            live = set(self._envs[i].agents)
            for agent in list(open_trajs):
                terminated, truncated = bool(terminations.get(agent)), bool(truncations.get(agent))
                if not (terminated or truncated or agent not in live):
                    continue
                traj = open_trajs.pop(agent)
                ep_return, ep_length = episode.pop(agent)
                returns[traj.behavior].append(ep_return)
                lengths[traj.behavior].append(ep_length)
                if terminated:
                    finished.append((traj, True, 0.0))
                elif truncated and agent in obs:
                    bootstrap.append((self._rows(i, [agent])[0], traj))
                else:
                    finished.append((traj, False, self._last_value(traj)))
        finished.extend(self._bootstrapped(bootstrap, states))
        for i, env in enumerate(self._envs):
            if not env.agents and not self._unity[i]:
                self._obs[i], self._infos[i] = env.reset()

    def _last_value(self, traj: _Trajectory) -> float:
        rec, row = traj.entries[-1]
        return float(self._records[traj.policy][rec].values[row])

    def _bootstrapped(
        self, pending: list[tuple[_Row, _Trajectory]], states: list[np.ndarray | None]
    ) -> list[tuple[_Trajectory, bool, float]]:
        """Close trajectories with the critic's value of each agent's current observation."""
        out: list[tuple[_Trajectory, bool, float]] = []
        by_traj = {id(row): traj for row, traj in pending}
        for name, rows in self._by_policy([row for row, _ in pending]).items():
            obs, _, critic = self._inputs(rows, states)
            values = self._policies[name].value(obs, critic)
            out.extend((by_traj[id(row)], False, float(v)) for row, v in zip(rows, values, strict=True))
        return out

    def _cut_fragments(self) -> list[tuple[_Trajectory, bool, float]]:
        """End of the iteration: close every open trajectory as a fragment, bootstrapped."""
        pending = []
        for i in range(len(self._envs)):
            for agent, traj in self._open[i].items():
                pending.append((self._rows(i, [agent])[0], traj))
            self._open[i] = {}
        states = [env_state(env) if self._has_state else None for env in self._envs]
        return self._bootstrapped(pending, states)

    def _assemble(self, finished: list[tuple[_Trajectory, bool, float]]) -> dict[str, RolloutBatch]:
        """GAE per trajectory, then one flat batch per policy."""
        assert self._plan is not None
        batches = {}
        for name, records in self._records.items():
            if not records:
                continue
            offsets = np.cumsum([0] + [len(r.logp) for r in records])
            values = np.concatenate([r.values for r in records]).astype(np.float32)
            advantages = np.zeros_like(values)
            returns = np.zeros_like(values)
            hp = self._plan.policies[name].hyperparameters
            for traj, terminated, next_value in finished:
                if traj.policy != name:
                    continue
                idx = np.array([offsets[rec] + row for rec, row in traj.entries])
                adv, ret = gae(
                    np.asarray(traj.rewards, np.float32),
                    values[idx],
                    next_value,
                    terminated,
                    not terminated,
                    hp.gamma,
                    hp.lam,
                )
                advantages[idx], returns[idx] = adv, ret
            batches[name] = concat_batches(
                [
                    RolloutBatch(
                        r.obs,
                        r.critic,
                        r.continuous,
                        r.discrete,
                        r.mask,
                        r.logp,
                        r.values,
                        advantages[offsets[k] : offsets[k + 1]],
                        returns[offsets[k] : offsets[k + 1]],
                        np.ones(len(r.logp), np.float32),
                    )
                    for k, r in enumerate(records)
                ]
            )
        self._records = {}
        return batches
