"""Rollout worker of the mean-field trainers: k environments, mean actions, streamed transitions.

A :class:`MFRolloutWorker` owns ``num_envs`` environments (made by the run's
:class:`~unimarl.trainers.envs.EnvFactory`) and keeps them running. Each behaviour is driven by an *actor*:
a local copy of an MF-Q / MF-AC network (a learning policy, or a frozen self-play opponent whose weights
arrive like the learner's) or a baseline (``baseline:random``: uniform over allowed actions;
``baseline:scripted``: attack an adjacent enemy when the mask allows, else a random allowed move). Per step,
all agents an actor drives, over every environment, go through one ``act`` call.

Mean actions: one :class:`~unimarl.trainers.meanfield.MeanActionTracker` per environment and behaviour (a
behaviour is a team). Agents that ended at the previous step are passed with ``alive=False``: they receive the
next mean action of their last transition and contribute none.

Transitions of learning policies: an agent's transition from step t is completed when the agent next decides
(its next observation, mean action and mask are the ones it decides on) or when it ends (its final
observation; ``terminated`` / ``truncated`` from the env). Keys are ``(worker, env, agent name)``, so a
learner's replay buffer shares frames between an agent's consecutive transitions. An agent that vanishes
without a final observation has its last transition dropped (counted in ``dropped``).

Sides: the actors driving each behaviour are kept per environment. With ``MFPlan.swap_sides`` a learning
policy and its self-play opponent trade behaviours (teams) after every battle, so the learner plays both
sides of the game; transitions go to the policy that chose the action, whichever team it drove.

Battles: an environment's episode ends at a step in which every agent alive before it ended. Its
:class:`Outcome` gives per behaviour the kills (the game's ``<Game>/kills_team<k>`` stat for behaviours named
``<Game>?team=<k>`` when reported, else the other behaviours' terminations) and the mean agent return. One
area per environment is assumed for outcomes.

Opponents run in the game (``MFPlan.game_driven``, self-play with ``opponent_runs: game``): those behaviours
are not reported to the trainer; ``collect`` receives their ONNX models (behaviour -> (version, bytes)) and
pushes each new version into every game of the worker; each chunk carries what the games acknowledged
(:attr:`MFChunk.game_status`). Their kills come from the game's stats only (so do the learner's then), and an
outcome records, per such behaviour, the model version that ran the whole battle (None if it changed or none
ran), so a battle is credited to the right snapshot.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from unimarl.trainers.batch import PolicySpec
from unimarl.trainers.envs import AgentView, EnvFactory, agent_behavior, agent_view, is_unity
from unimarl.trainers.errors import EnvSetupError, TrainerError
from unimarl.trainers.meanfield import MeanActionTracker
from unimarl.trainers.mf_config import MeanFieldHyperparameters, MFLearner, make_learner
from unimarl.trainers.replay import Transitions
from unimarl.trainers.rollout import GamePushing

logger = logging.getLogger(__name__)

BASELINES = ("baseline:random", "baseline:scripted")
FIRST_ATTACK = 13  # battle's attack actions are 13..20 (unimarl.sim.battle.FIRST_ATTACK)


@dataclass(frozen=True)
class MFPolicySetup:
    """What a worker needs to build one acting network."""

    spec: PolicySpec
    trainer_type: str
    hyperparameters: MeanFieldHyperparameters


@dataclass(frozen=True)
class MFPlan:
    """Which actor drives each behaviour, and whose transitions are collected."""

    policies: dict[str, MFPolicySetup]
    behavior_actor: dict[str, str]
    """Behaviour -> policy name (a key of ``policies``) or one of :data:`BASELINES`."""
    learning: frozenset[str] = frozenset()
    """Policies whose transitions are streamed to the learner."""
    deterministic: bool = False
    """Greedy actions instead of sampled ones (evaluation)."""
    swap_sides: tuple[tuple[str, str], ...] = ()
    """Pairs of behaviours whose actors trade places after every battle, per environment (self-play on both
    sides; environment i starts swapped when i is odd, so with two or more environments both orientations
    play at once)."""
    game_driven: tuple[str, ...] = ()
    """Behaviours the games drive from pushed models (not reported to the trainer)."""


@dataclass(frozen=True)
class Outcome:
    """One finished battle (an environment's episode)."""

    kills: dict[str, float]
    returns: dict[str, float]
    """Per behaviour: the mean return of its agents' episodes."""
    steps: int
    actors: dict[str, str] = field(default_factory=dict)
    """Per behaviour: the actor that drove it in this battle (they differ between battles with swap_sides)."""
    versions: dict[str, int | None] = field(default_factory=dict)
    """Per game-driven behaviour: the model version the game ran for the whole battle (None: it changed
    during the battle, or no pushed model ran)."""


@dataclass(frozen=True)
class MFChunk:
    """What a worker streams to the learner after ``steps`` worker steps."""

    transitions: dict[str, list[Transitions]]
    env_steps: int
    agent_steps: int
    episode_returns: dict[str, list[float]]
    outcomes: list[Outcome]
    timers: dict[str, float]
    worker_index: int
    dropped: int = 0
    game_status: dict[str, list[Any]] = field(default_factory=dict)
    """Per game-driven behaviour: each game's ``PolicyStatus`` (None before anything was pushed)."""


@dataclass
class _Pending:
    policy: str
    obs: list[np.ndarray]
    mask: np.ndarray | None
    mean: np.ndarray | None
    action: int
    reward: float = 0.0


@dataclass
class _EnvState:
    obs: dict[str, Any]
    infos: dict[str, Any]
    trackers: dict[str, MeanActionTracker] = field(default_factory=dict)
    pending: dict[str, _Pending] = field(default_factory=dict)
    ended: dict[str, list[tuple[str, Any, bool, bool]]] = field(default_factory=lambda: defaultdict(list))
    returns: dict[str, float] = field(default_factory=dict)
    finished: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    deaths: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    steps: int = 0
    actors: dict[str, str] = field(default_factory=dict)
    """Behaviour -> actor in this environment now (the plan's, with swap_sides applied)."""
    versions: dict[str, int | None] = field(default_factory=dict)
    """Game-driven behaviour -> model version running when the current battle started."""


def baseline_actions(name: str, mask: np.ndarray | None, n: int, rng: np.random.Generator) -> np.ndarray:
    """Actions of a baseline actor for ``n`` agents (``mask`` [n, A], nonzero = allowed)."""
    if mask is None:
        raise TrainerError(f"{name} needs action masks (a discrete action space); use a trained policy")
    allowed = np.asarray(mask) != 0
    allowed[~allowed.any(axis=1)] = True
    if name == "baseline:scripted":
        attack = allowed.copy()
        attack[:, :FIRST_ATTACK] = False
        can = attack.any(axis=1)
        allowed[can] = attack[can]
    weights = allowed / allowed.sum(axis=1, keepdims=True)
    u = rng.random(n)[:, None]
    return np.minimum((np.cumsum(weights, axis=1) < u).sum(axis=1), allowed.shape[1] - 1)


class MFRolloutWorker(GamePushing):
    """k environments with mean-field actors; see the module docstring."""

    def __init__(self, factory: EnvFactory, num_envs: int, worker_index: int = 0, seed: int = 0) -> None:
        torch.set_num_threads(1)
        self.worker_index, self.seed = worker_index, seed
        self._envs: list[Any] = []
        self._state: list[_EnvState] = []
        for i in range(num_envs):
            env = factory(worker_index, i, seed + 1000 * worker_index + i)
            self._envs.append(env)
            obs, infos = env.reset(seed=seed + 1000 * worker_index + i)
            self._state.append(_EnvState(obs, infos, returns={a: 0.0 for a in env.agents}))
        self._views: dict[str, AgentView] = {}
        self._plan: MFPlan | None = None
        self._actors: dict[str, MFLearner] = {}
        self._pushed: dict[str, int] = {}
        self._rng = np.random.default_rng(seed + 7919 * (worker_index + 1))

    # -- set-up ---------------------------------------------------------------------------------------
    def specs(self) -> dict[str, PolicySpec]:
        """Policy spec of every behaviour with agents after reset."""
        for env, st in zip(self._envs, self._state, strict=True):
            for agent in st.obs:
                behavior = agent_behavior(env, agent, st.infos.get(agent))
                if behavior not in self._views:
                    self._views[behavior] = agent_view(
                        env.observation_space(agent), env.action_space(agent), None, f"behaviour '{behavior}'"
                    )
        return {b: v.spec for b, v in self._views.items()}

    def configure(self, plan: MFPlan) -> None:
        """Build the local acting networks (CPU)."""
        self.specs()
        missing = set(self._views) - set(plan.behavior_actor)
        if missing:
            raise EnvSetupError(f"behaviours {sorted(missing)} have no actor; map them to a policy")
        if plan.game_driven and any(getattr(e, "policy_channel", None) is None for e in self._envs):
            raise EnvSetupError(
                f"behaviours {list(plan.game_driven)} run in the game from pushed models, which needs Unity "
                "or sim games (env.build / env.sim); a PettingZoo environment has no policy channel"
            )
        self._plan = plan
        for i, st in enumerate(self._state):
            st.actors = dict(plan.behavior_actor)
            st.versions = self._running_versions(i)
            if i % 2:
                _swap(st.actors, plan.swap_sides)
        self._actors = {
            name: make_learner(
                p.trainer_type,
                p.spec,
                p.hyperparameters,
                seed=self.seed + 7919 * (self.worker_index + 1) + k,
                acting_only=True,
            )
            for k, (name, p) in enumerate(sorted(plan.policies.items()))
        }

    def close(self) -> None:
        for env in self._envs:
            env.close()

    # -- collection -----------------------------------------------------------------------------------
    def collect(
        self,
        weights: dict[str, dict[str, np.ndarray]],
        progress: float,
        steps: int,
        models: dict[str, tuple[int, bytes]] | None = None,
    ) -> MFChunk:
        """Step every env ``steps`` times with ``weights`` (and game-driven behaviours' ``models``, pushed
        when their version is new); returns the learning policies' transitions."""
        if self._plan is None:
            raise TrainerError("MFRolloutWorker.collect called before configure(plan)")
        start = time.perf_counter()
        for behavior, (version, model) in (models or {}).items():
            if self._pushed.get(behavior) != version:
                self.push_policy(behavior, version, model)
                self._pushed[behavior] = version
        for name, w in weights.items():
            self._actors[name].set_weights(w)
        for actor in self._actors.values():
            if hasattr(actor, "set_progress"):
                actor.set_progress(progress)
        out: dict[str, list[Transitions]] = defaultdict(list)
        returns: dict[str, list[float]] = defaultdict(list)
        outcomes: list[Outcome] = []
        timers = {"act_s": 0.0, "env_s": 0.0}
        agent_steps = dropped = 0
        for _ in range(steps):
            t0 = time.perf_counter()
            actions, done_rows, n, lost = self._act()
            agent_steps += n
            dropped += lost
            t1 = time.perf_counter()
            results = [env.step(actions[i]) for i, env in enumerate(self._envs)]
            timers["env_s"] += time.perf_counter() - t1
            timers["act_s"] += t1 - t0
            for policy, rows in done_rows.items():
                out[policy].append(_stack(rows))
            for i, result in enumerate(results):
                outcome = self._process(i, result, returns)
                if outcome is not None:
                    outcomes.append(outcome)
        timers["collect_s"] = time.perf_counter() - start
        return MFChunk(
            dict(out),
            steps * len(self._envs),
            agent_steps,
            dict(returns),
            outcomes,
            timers,
            self.worker_index,
            dropped,
            self._game_status(),
        )

    def _game_status(self) -> dict[str, list[Any]]:
        assert self._plan is not None
        if not self._plan.game_driven:
            return {}
        statuses = self.policy_status()
        return {b: [s.get(b) for s in statuses] for b in self._plan.game_driven}

    def _running_versions(self, i: int) -> dict[str, int | None]:
        assert self._plan is not None
        channel = getattr(self._envs[i], "policy_channel", None)
        status = channel.status() if channel is not None and self._plan.game_driven else {}
        return {b: status[b].running_version if b in status else None for b in self._plan.game_driven}

    def _act(self) -> tuple[list[dict[str, Any]], dict[str, list[tuple]], int, int]:
        """Mean actions, completed transitions and one batched act per actor."""
        assert self._plan is not None
        plan = self._plan
        by_actor: dict[str, list[tuple[int, str, str, list[np.ndarray], np.ndarray | None, Any]]] = (
            defaultdict(list)
        )
        done_rows: dict[str, list[tuple]] = defaultdict(list)
        lost = 0
        for i, (env, st) in enumerate(zip(self._envs, self._state, strict=True)):
            acting: dict[str, list[str]] = defaultdict(list)
            for agent in env.agents:
                info = st.infos.get(agent) or {}
                if info.get("requested_decision", True):
                    acting[agent_behavior(env, agent, info)].append(agent)
            for behavior in sorted(set(acting) | set(st.ended)):  # sorted: same seed, same draws
                names, ended = acting.get(behavior, []), st.ended.pop(behavior, [])
                view = self._views[behavior]
                actor = st.actors[behavior]
                split = [view.obs_arrays(st.obs[a]) for a in names]
                ended_split = [None if raw is None else view.obs_arrays(raw) for _, raw, _, _ in ended]
                means = self._means(i, behavior, names, split, ended, ended_split)
                # only agents of learning policies have pending transitions; an ended agent's may belong
                # to the actor that drove the behaviour before a side swap
                for k, (agent, _, term, trunc) in enumerate(ended):
                    p = st.pending.pop(agent, None)
                    nxt = ended_split[k]
                    if p is None or nxt is None:
                        lost += p is not None
                        continue
                    done_rows[p.policy].append(_row(i, agent, p, nxt, _mean_row(means, k), term, trunc, self))
                for k, agent in enumerate(names):
                    p = st.pending.pop(agent, None)
                    if p is not None:
                        m = _mean_row(means, len(ended) + k)
                        done_rows[p.policy].append(_row(i, agent, p, split[k], m, False, False, self))
                for k, agent in enumerate(names):
                    by_actor[actor].append(
                        (i, agent, behavior, split[k][0], split[k][1], _mean_row(means, len(ended) + k))
                    )
        actions: list[dict[str, Any]] = [{} for _ in self._envs]
        n = 0
        for actor, rows in by_actor.items():
            chosen = self._choose(actor, rows)
            n += len(rows)
            recorded: dict[tuple[int, str], tuple[list[str], list[int]]] = defaultdict(lambda: ([], []))
            for (i, agent, behavior, sensors, mask, mean), a in zip(rows, chosen, strict=True):
                actions[i][agent] = self._views[behavior].to_env_action(np.zeros(0), np.array([a]))
                names_acts = recorded[(i, behavior)]
                names_acts[0].append(agent)
                names_acts[1].append(int(a))
                if actor in plan.learning:
                    self._state[i].pending[agent] = _Pending(actor, sensors, mask, mean, int(a))
            for (i, behavior), (names, acts) in recorded.items():
                tracker = self._state[i].trackers.get(behavior)
                if tracker is not None:
                    tracker.record(names, np.asarray(acts).reshape(-1, 1))
        return actions, done_rows, n, lost

    def _means(
        self,
        i: int,
        behavior: str,
        names: list[str],
        split: list[tuple[list[np.ndarray], np.ndarray | None]],
        ended: list[tuple[str, Any, bool, bool]],
        ended_split: list[tuple[list[np.ndarray], np.ndarray | None] | None],
    ) -> np.ndarray | None:
        """Mean actions of ended agents (alive=False) then acting ones, or None if the actor takes none."""
        assert self._plan is not None
        st = self._state[i]
        setup = self._plan.policies.get(st.actors[behavior])
        if setup is None or not setup.hyperparameters.use_mean_action:
            return None
        hp = setup.hyperparameters
        tracker = st.trackers.get(behavior)
        if tracker is None:
            tracker = st.trackers[behavior] = MeanActionTracker(
                setup.spec.action_spec, hp.neighbourhood, hp.radius
            )
        agents = [a for a, *_ in ended] + names
        if not agents:
            return None
        alive = np.array([False] * len(ended) + [True] * len(names))
        sensors = [*ended_split, *split]
        positions = group_id = None
        if hp.neighbourhood == "radius":
            # an agent that ended without a final observation has no position; it contributes none anyway
            nowhere = np.zeros(int(np.prod(setup.spec.obs_shapes[hp.position_sensor])), np.float32)
            positions = np.stack(
                [nowhere if s is None else np.ravel(s[0][hp.position_sensor]) for s in sensors]
            )
        elif hp.neighbourhood == "group":
            group_id = np.array([int((st.infos.get(a) or {}).get("group_id", 0)) for a in agents])
        return tracker.mean_actions(agents, alive=alive, positions=positions, group_id=group_id)

    def _choose(self, actor: str, rows: list[tuple]) -> np.ndarray:
        masks = [r[4] for r in rows]
        mask = None if masks[0] is None else np.stack(masks)
        if actor in BASELINES:
            return baseline_actions(actor, mask, len(rows), self._rng)
        obs = [np.stack([r[3][k] for r in rows]).astype(np.float32) for k in range(len(rows[0][3]))]
        mean = None if rows[0][5] is None else np.stack([r[5] for r in rows])
        assert self._plan is not None
        out = self._actors[actor].act(obs, mean, mask, deterministic=self._plan.deterministic)
        return out.discrete_actions[:, 0]

    def _process(self, i: int, result: tuple[Any, ...], returns: dict[str, list[float]]) -> Outcome | None:
        """Credit rewards, stash ended agents, account the battle; reset finished non-Unity envs."""
        env, st = self._envs[i], self._state[i]
        obs, rewards, terminations, truncations, infos = result
        before, prev_infos = list(st.returns), st.infos
        st.obs, st.infos = obs, infos
        st.steps += 1
        for agent, reward in rewards.items():
            if agent in st.pending:
                st.pending[agent].reward += float(reward)
            st.returns[agent] = st.returns.get(agent, 0.0) + float(reward)
        live = set(env.agents)
        ended_now = 0
        for agent in before:
            term, trunc = bool(terminations.get(agent)), bool(truncations.get(agent))
            if not (term or trunc or agent not in live):
                continue
            ended_now += 1
            behavior = agent_behavior(env, agent, infos.get(agent) or prev_infos.get(agent))
            st.ended[behavior].append((agent, obs.get(agent), term, trunc or not term))
            ep = st.returns.pop(agent)
            st.finished[behavior].append(ep)
            returns[behavior].append(ep)
            if term:
                st.deaths[behavior] += 1
        for agent in live:
            if agent not in st.returns and not (terminations.get(agent) or truncations.get(agent)):
                st.returns[agent] = 0.0
        outcome = None
        if before and ended_now == len(before):
            outcome = self._outcome(i)
        if not env.agents and not is_unity(env):
            st.obs, st.infos = env.reset()
            st.returns = {a: 0.0 for a in env.agents}
        return outcome

    def _outcome(self, i: int) -> Outcome:
        env, st = self._envs[i], self._state[i]
        stats = env.connection.stats.get_and_reset_stats() if is_unity(env) else {}
        assert self._plan is not None
        hidden = self._plan.game_driven
        behaviors = sorted(st.finished)
        kills: dict[str, float] = {}
        for b in sorted({*behaviors, *hidden}):
            game, _, team = b.partition("?team=")
            key = f"{game}/kills_team{team}"
            if team and stats.get(key):
                kills[b] = float(stats[key][-1][0])
            elif not hidden:  # with hidden opponents the terminations seen are not all the kills
                kills[b] = float(sum(st.deaths[o] for o in behaviors if o != b))
        returns = {b: float(np.mean(v)) for b, v in st.finished.items()}
        now = self._running_versions(i)
        versions = {b: v if v == st.versions.get(b) else None for b, v in now.items()}
        out = Outcome(kills, returns, st.steps, dict(st.actors), versions)
        st.versions = now
        _swap(st.actors, self._plan.swap_sides)
        st.finished.clear()
        st.deaths.clear()
        st.steps = 0
        return out


def _swap(actors: dict[str, str], pairs: tuple[tuple[str, str], ...]) -> None:
    for a, b in pairs:
        actors[a], actors[b] = actors[b], actors[a]


def _mean_row(means: np.ndarray | None, k: int) -> np.ndarray | None:
    return None if means is None else means[k]


def _row(
    i: int,
    agent: str,
    p: _Pending,
    nxt: tuple[list[np.ndarray], np.ndarray | None],
    next_mean: np.ndarray | None,
    term: bool,
    trunc: bool,
    worker: MFRolloutWorker,
) -> tuple:
    return (p, nxt[0], nxt[1], next_mean, term, trunc, (worker.worker_index, i, agent))


def _stack(rows: list[tuple]) -> Transitions:
    """One Transitions from completed rows (all of one policy)."""
    ps: list[_Pending] = [r[0] for r in rows]
    n_sensors = len(ps[0].obs)

    def masks(values: list[Any]) -> np.ndarray | None:
        return None if values[0] is None else np.stack(values).astype(bool)

    return Transitions(
        obs=tuple(np.stack([p.obs[k] for p in ps]).astype(np.float32) for k in range(n_sensors)),
        action=np.array([p.action for p in ps], np.int64),
        reward=np.array([p.reward for p in ps], np.float32),
        next_obs=tuple(np.stack([r[1][k] for r in rows]).astype(np.float32) for k in range(n_sensors)),
        terminated=np.array([r[4] for r in rows], bool),
        truncated=np.array([r[5] for r in rows], bool),
        mean_action=None if ps[0].mean is None else np.stack([p.mean for p in ps if p.mean is not None]),
        next_mean_action=None if rows[0][3] is None else np.stack([r[3] for r in rows]),
        action_mask=masks([p.mask for p in ps]),
        next_action_mask=masks([r[2] for r in rows]),
        agent_keys=[r[6] for r in rows],
    )
