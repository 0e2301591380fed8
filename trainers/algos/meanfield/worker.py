"""Rollout worker of the mean-field trainers: k environments, mean actions, streamed transitions.

A :class:`MFRolloutWorker` drives an :class:`~unimarl.trainers.collect.runner.EnvRunner` (its ``num_envs``
environments, decisions, rewards with group rewards, episodes, resets). Each behaviour is driven by an
*actor*: a local copy of an MF-Q / MF-AC network (a learning policy, or a frozen self-play opponent whose
weights arrive like the learner's) or a baseline (``baseline:random``: uniform over allowed actions;
``baseline:scripted``: uniform over the battle game's scripted choices,
:func:`~unimarl.trainers.envs.battles.scripted_choices`). Per step,
all agents an actor drives, over every environment, go through one ``act`` call. Every actor samples from a
random stream of its own, so one side's sampling never shifts another's.

Mean actions: one :class:`~unimarl.trainers.algos.meanfield.mean_action.MeanActionTracker` per environment
and behaviour, segmented by Unity group (one battle's team; the whole behaviour without groups) and reset
when a PettingZoo environment restarts (its agent names come back). Agents that ended at the previous step
are passed with ``alive=False``: they receive the next mean action of their last transition and contribute
none.

Transitions of learning policies: an agent's transition from step t is completed when the agent next decides
(its next observation, mean action and mask are the ones it decides on) or when it ends (its final
observation; ``terminated`` / ``truncated`` from the env). Keys are ``(worker, env, agent name)``, so a
learner's replay buffer shares frames between an agent's consecutive transitions. An agent that vanishes
without a final observation has its last transition dropped (counted in ``dropped``). Each transition carries
the log-probability of its action under the weights that chose it (MF-AC corrects for their age).

Rewards (group rewards included) reach an agent's pending transition from the runner's steps, and episode
returns are the runner's (the rewards from an agent's first action). The episodes that end and start feed the
battles, outcomes and sides (``MFPlan.swap_sides``: a learning policy and its self-play opponent trade teams
after every battle) that :class:`~unimarl.trainers.envs.battles.EnvBook` keeps per environment. A behaviour
that appears after reset acts with the policy ``MFPlan.late_policy`` maps it to (same spec), or stops the
worker with :class:`EnvSetupError`.

Opponents run in the game (``MFPlan.game_driven``, self-play with ``opponent_runs: game``): those behaviours
are not reported to the trainer; ``collect`` receives their ONNX models (behaviour -> (version, bytes)) and
pushes each new version into every game of the worker; each chunk carries what the games acknowledged
(:attr:`MFChunk.game_status`).
"""

from __future__ import annotations

import functools
import logging
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from unimarl.trainers.algos.meanfield.learners import MeanFieldHyperparameters, MFLearner, make_learner
from unimarl.trainers.algos.meanfield.mean_action import MeanActionTracker
from unimarl.trainers.algos.meanfield.replay import Transitions
from unimarl.trainers.algos.meanfield.transitions import Completed, Pending, stack
from unimarl.trainers.collect.runner import AgentEnd, Decision, EnvRunner, EnvStep, RunnerWorker
from unimarl.trainers.core.batch import PolicySpec
from unimarl.trainers.core.errors import ConfigError, EnvSetupError, TrainerError
from unimarl.trainers.envs.battles import EnvBook, Outcome, group_id, scripted_choices
from unimarl.trainers.envs.factory import EnvFactory

__all__ = [
    "BASELINES",
    "MFChunk",
    "MFPlan",
    "MFPolicySetup",
    "MFRolloutWorker",
    "Outcome",
    "baseline_actions",
]

logger = logging.getLogger(__name__)

BASELINES = ("baseline:random", "baseline:scripted")


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
    """Pairs of behaviours whose actors trade places after every battle, per Unity group (self-play on both
    sides; in environment i groups start swapped when i is odd, so with two or more environments both
    orientations play at once)."""
    game_driven: tuple[str, ...] = ()
    """Behaviours the games drive from pushed models (not reported to the trainer)."""
    group_reward_weight: dict[str, float] = field(default_factory=dict)
    """Behaviour -> weight of its Unity group reward in each agent's reward (absent: 0)."""
    late_policy: dict[str, str] = field(default_factory=dict)
    """Behaviour (or its name before ``?``) -> actor, for behaviours that appear after reset."""


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
    weights_version: int = 0
    """The pool's version of the weights the actions were chosen with."""
    game_restarts: dict[str, int] = field(default_factory=dict)
    """Games this worker relaunched while collecting the chunk, per reason."""
    episode_lengths: dict[str, list[int]] = field(default_factory=dict)
    """Per behaviour: the length of every agent episode that ended (as ``episode_returns``)."""
    game_stats: dict[str, list[float]] = field(default_factory=dict)
    """What the games recorded with Unity's ``StatsRecorder`` during the chunk and no battle's outcome read,
    per key (drained at every chunk, so a game without battles does not keep them all)."""
    final_rewards: dict[str, list[float]] = field(default_factory=dict)
    """Per behaviour, each ended episode's last reward with its weighted group reward (ghost self-play's ELO
    reads win, draw or loss from its sign)."""


@dataclass
class _EnvState:
    book: EnvBook | None = None
    trackers: dict[str, MeanActionTracker] = field(default_factory=dict)
    pending: dict[str, Pending] = field(default_factory=dict)
    ended: dict[str, list[AgentEnd]] = field(default_factory=lambda: defaultdict(list))
    """Behaviour -> agents that ended at the last step (taken by the next act)."""


def baseline_actions(name: str, mask: np.ndarray | None, n: int, rng: np.random.Generator) -> np.ndarray:
    """Actions of a baseline actor for ``n`` agents (``mask`` [n, A], nonzero = allowed)."""
    if mask is None:
        raise TrainerError(f"{name} needs action masks (a discrete action space); use a trained policy")
    allowed = np.asarray(mask) != 0
    allowed[~allowed.any(axis=1)] = True
    if name == "baseline:scripted":
        allowed = scripted_choices(allowed)
    weights = allowed / allowed.sum(axis=1, keepdims=True)
    u = rng.random(n)[:, None]
    return np.minimum((np.cumsum(weights, axis=1) < u).sum(axis=1), allowed.shape[1] - 1)


class MFRolloutWorker(RunnerWorker):
    """k environments (an :class:`~unimarl.trainers.collect.runner.EnvRunner`) with mean-field actors; see
    the module docstring."""

    def __init__(self, factory: EnvFactory, num_envs: int, worker_index: int = 0, seed: int = 0) -> None:
        torch.set_num_threads(1)
        self.worker_index, self.seed = worker_index, seed
        self.runner = EnvRunner(factory, num_envs, worker_index, seed)
        self._state = [_EnvState() for _ in range(num_envs)]
        self._plan: MFPlan | None = None
        self._actors: dict[str, MFLearner] = {}
        self._actor_of: dict[str, str] = {}
        self._pushed: dict[str, int] = {}
        self._streams: dict[str, np.random.Generator] = {}
        self._out: dict[str, list[Transitions]] = defaultdict(list)
        self._outcomes: list[Outcome] = []
        self._dropped = 0

    # -- set-up ---------------------------------------------------------------------------------------
    def _stream(self, actor: str) -> np.random.Generator:
        """The actor's own random generator: (seed, worker, actor name) -> an independent stream."""
        if actor not in self._streams:
            key = np.random.SeedSequence([self.seed, self.worker_index, zlib.crc32(actor.encode())])
            self._streams[actor] = np.random.default_rng(key)
        return self._streams[actor]

    def configure(self, plan: MFPlan) -> None:
        """Build the local acting networks (CPU)."""
        self.specs()
        missing = set(self.runner.views) - set(plan.behavior_actor)
        if missing:
            raise EnvSetupError(f"behaviours {sorted(missing)} have no actor; map them to a policy")
        if plan.game_driven and any(getattr(e, "policy_channel", None) is None for e in self.runner.envs):
            raise EnvSetupError(
                f"behaviours {list(plan.game_driven)} run in the game from pushed models, which needs Unity "
                "or sim games (env.build / env.sim); a PettingZoo environment has no policy channel"
            )
        self._plan = plan
        self._actor_of = dict(plan.behavior_actor)
        runner = self.runner
        runner.group_weight = plan.group_reward_weight
        for i, st in enumerate(self._state):
            running = functools.partial(self._running_versions, i)
            st.book, st.ended = EnvBook(i, self._actor_of, plan.swap_sides, running), defaultdict(list)
            behavior_of = functools.partial(self._behavior_of, i)
            st.book.register(runner.open_episodes(i), behavior_of, runner.infos[i])
        self._actors = {}
        for k, (name, p) in enumerate(sorted(plan.policies.items())):
            seed = self.seed + 7919 * (self.worker_index + 1) + k  # initial weights, until weights arrive
            actor = make_learner(p.trainer_type, p.spec, p.hyperparameters, seed=seed, acting_only=True)
            actor.rng = self._stream(name)  # sampling: the actor's own stream
            self._actors[name] = actor

    def _behavior_of(self, i: int, agent: str, info: dict | None = None) -> str:
        return self.runner.behavior_of(i, agent)

    def _add_behavior(self, i: int, agent: str, behavior: str) -> None:
        """A behaviour met after reset gets its actor (or a typed error)."""
        assert self._plan is not None
        plan = self._plan
        view = self.runner.view_for(i, agent, behavior)
        late = plan.late_policy
        actor = late.get(behavior) or late.get(behavior.split("?", 1)[0])
        if actor is None:
            raise EnvSetupError(
                f"behaviour '{behavior}' (agent '{agent}') appeared after training started and has no "
                "policy: map it with policy_mapping to the policy of a behaviour the game reports from the "
                "start (same observations and actions), or have the game report it from the first step"
            )
        setup = plan.policies.get(actor)
        if setup is not None and setup.spec != view.spec:
            raise ConfigError(
                f"late behaviour '{behavior}' maps to policy '{actor}' whose spec differs ({setup.spec} vs "
                f"{view.spec}); map it to a policy with the same observations and actions"
            )
        self.runner.views[behavior] = view
        self._actor_of[behavior] = actor
        logger.info("behaviour '%s' appeared after reset: acting with '%s'", behavior, actor)

    # -- collection -----------------------------------------------------------------------------------
    def collect(
        self,
        weights: dict[str, dict[str, np.ndarray]],
        progress: float,
        steps: int,
        models: dict[str, tuple[int, bytes]] | None = None,
        version: int = 0,
        max_seconds: float | None = None,
    ) -> MFChunk:
        """Step every env ``steps`` times with ``weights`` (pool version ``version``; game-driven behaviours'
        ``models`` are pushed when their version is new); returns the learning policies' transitions.

        ``max_seconds``: stop stepping once this much time has passed (at least one step; the run's time
        budget holds inside a long chunk)."""
        if self._plan is None:
            raise TrainerError("MFRolloutWorker.collect called before configure(plan)")
        start = time.perf_counter()
        for behavior, (model_version, model) in (models or {}).items():
            if self._pushed.get(behavior) != model_version:
                self.push_policy(behavior, model_version, model)
                self._pushed[behavior] = model_version
        for name, w in weights.items():
            self._actors[name].set_weights(w)
        for actor in self._actors.values():
            if hasattr(actor, "set_progress"):
                actor.set_progress(progress)
        self._out, self._outcomes, self._dropped = defaultdict(list), [], 0
        self._stats: defaultdict[str, list[float]] = defaultdict(list)
        done = self.runner.run(self, steps, start, max_seconds)
        done.timers["collect_s"] = time.perf_counter() - start
        return MFChunk(
            dict(self._out),
            done.env_steps,
            done.agent_steps,
            dict(done.episode_returns),
            self._outcomes,
            done.timers,
            self.worker_index,
            self._dropped,
            self._game_status(),
            version,
            dict(done.game_restarts),
            dict(done.episode_lengths),
            self._game_stats(),
            dict(done.final_rewards),
        )

    def _game_stats(self) -> dict[str, list[float]]:
        """The stats read at battle ends during the chunk, then every stat the games hold besides."""
        stats = self._stats
        for key, values in self.runner.drain_stats().items():
            stats[key].extend(values)
        self._stats = defaultdict(list)
        return dict(stats)

    def _game_status(self) -> dict[str, list[Any]]:
        assert self._plan is not None
        if not self._plan.game_driven:
            return {}
        statuses = self.policy_status()
        return {b: [s.get(b) for s in statuses] for b in self._plan.game_driven}

    def _running_versions(self, i: int) -> dict[str, int | None]:
        assert self._plan is not None
        channel = getattr(self.runner.envs[i], "policy_channel", None)
        status = channel.status() if channel is not None and self._plan.game_driven else {}
        return {b: status[b].running_version if b in status else None for b in self._plan.game_driven}

    # -- the runner's hooks (collect/runner.py: Actor) -------------------------------------------------
    def act(self, decisions: list[Decision]) -> list[dict[str, Any]]:
        """Mean actions, completed transitions and one batched act per actor."""
        assert self._plan is not None
        plan, runner = self._plan, self.runner
        by_actor: dict[str, list[tuple]] = defaultdict(list)
        done_rows: dict[str, list[Completed]] = defaultdict(list)
        acting: list[dict[str, list[str]]] = [defaultdict(list) for _ in runner.envs]
        views = runner.views
        for i, agent, behavior in decisions:
            if behavior not in views:
                self._add_behavior(i, agent, behavior)
            acting[i][behavior].append(agent)
        for i, st in enumerate(self._state):
            assert st.book is not None
            obs = runner.obs[i]
            for behavior in sorted(set(acting[i]) | set(st.ended)):  # sorted: same seed, same draws
                names, ended = acting[i].get(behavior, []), st.ended.pop(behavior, [])
                if behavior not in runner.views:  # a late behaviour whose agents ended before deciding
                    continue
                view = runner.views[behavior]
                split = [view.obs_arrays(obs[a]) for a in names]
                ended_split = [
                    None if e.observation is None else view.obs_arrays(e.observation) for e in ended
                ]
                means = self._means(i, behavior, names, split, ended, ended_split)
                # only agents of learning policies have pending transitions; an ended agent's may belong
                # to the actor that drove the behaviour before a side swap
                for k, e in enumerate(ended):
                    p = st.pending.pop(e.agent, None)
                    nxt = ended_split[k]
                    if p is None or nxt is None:
                        self._dropped += p is not None
                        continue
                    m = _mean_row(means, k)
                    trunc = e.truncated or not e.terminated  # gone without either: truncated
                    key = (self.worker_index, i, e.agent)
                    done_rows[p.policy].append(Completed(p, nxt[0], nxt[1], m, e.terminated, trunc, key))
                for k, agent in enumerate(names):
                    p = st.pending.pop(agent, None)
                    if p is not None:
                        m = _mean_row(means, len(ended) + k)
                        key = (self.worker_index, i, agent)
                        done_rows[p.policy].append(
                            Completed(p, split[k][0], split[k][1], m, False, False, key)
                        )
                for k, agent in enumerate(names):
                    actor = st.book.actor(behavior, group_id(runner.infos[i].get(agent)))
                    by_actor[actor].append(
                        (i, agent, behavior, split[k][0], split[k][1], _mean_row(means, len(ended) + k))
                    )
        actions: list[dict[str, Any]] = [{} for _ in runner.envs]
        for actor, rows in by_actor.items():
            chosen, logp = self._choose(actor, rows)
            recorded: dict[tuple[int, str], tuple[list[str], list[int]]] = defaultdict(lambda: ([], []))
            for k, ((i, agent, behavior, sensors, mask, mean), a) in enumerate(
                zip(rows, chosen, strict=True)
            ):
                actions[i][agent] = runner.views[behavior].to_env_action(np.zeros(0), np.array([a]))
                names_acts = recorded[(i, behavior)]
                names_acts[0].append(agent)
                names_acts[1].append(int(a))
                if actor in plan.learning:
                    lp = None if logp is None else float(logp[k])
                    self._state[i].pending[agent] = Pending(actor, sensors, mask, mean, int(a), lp)
            for (i, behavior), (names, acts) in recorded.items():
                tracker = self._state[i].trackers.get(behavior)
                if tracker is not None:
                    tracker.record(names, np.asarray(acts).reshape(-1, 1))
        for policy, completed in done_rows.items():
            self._out[policy].append(stack(completed))
        return actions

    def observe(self, steps: list[EnvStep]) -> None:
        """Credit rewards to pending transitions; keep ended agents for the next act; account battles."""
        assert self._plan is not None
        for env_step in steps:
            i = env_step.env
            env, st = self.runner.envs[i], self._state[i]
            assert st.book is not None
            pending = st.pending
            for agent, reward in env_step.rewards.items():
                p = pending.get(agent)
                if p is not None:
                    p.reward += reward
            for end in env_step.ended:
                st.ended[end.behavior].append(end)
            behavior_of = functools.partial(self._behavior_of, i)
            # a relaunched game's broken-off episodes end no battle: its book starts again (restarted)
            ended = [e for e in env_step.ended if not e.lost]
            battles = st.book.step(ended, env_step.started, behavior_of, self.runner.infos[i])
            if battles:
                stats = env.connection.stats.get_and_reset_stats() if self.runner.unity[i] else {}
                self._outcomes.extend(st.book.outcomes(battles, stats, self._plan.game_driven))
                for key, values in stats.items():  # every stat also reaches the metrics (game/<key>)
                    self._stats[key].extend(float(value) for value, _ in values)

    def restarted(self, env: int) -> None:
        """A PettingZoo env was reset: its agents start new episodes and new battles; agent names come back,
        so the mean actions forget the previous episode's."""
        st = self._state[env]
        assert st.book is not None
        agents, infos = self.runner.open_episodes(env), self.runner.infos[env]
        st.book.restart(agents, functools.partial(self._behavior_of, env), infos)
        for tracker in st.trackers.values():
            tracker.reset()

    def _means(
        self,
        i: int,
        behavior: str,
        names: list[str],
        split: list[tuple[list[np.ndarray], np.ndarray | None]],
        ended: list[AgentEnd],
        ended_split: list[tuple[list[np.ndarray], np.ndarray | None] | None],
    ) -> np.ndarray | None:
        """Mean actions of ended agents (alive=False) then acting ones, or None if the actor takes none.

        Neighbours are segmented by Unity group: agents of one behaviour in another area's group never mix.
        """
        assert self._plan is not None
        st, infos = self._state[i], self.runner.infos[i]
        setup = self._plan.policies.get(self._actor_of[behavior])
        if setup is None or not setup.hyperparameters.use_mean_action:
            return None
        hp = setup.hyperparameters
        tracker = st.trackers.get(behavior)
        if tracker is None:
            tracker = st.trackers[behavior] = MeanActionTracker(
                setup.spec.action_spec, hp.neighbourhood, hp.radius
            )
        agents = [e.agent for e in ended] + names
        if not agents:
            return None
        alive = np.array([False] * len(ended) + [True] * len(names))
        groups = np.array([group_id(infos.get(a)) for a in agents], np.int64)
        sensors = [*ended_split, *split]
        positions = None
        if hp.neighbourhood == "radius":
            # an agent that ended without a final observation has no position; it contributes none anyway
            nowhere = np.zeros(int(np.prod(setup.spec.obs_shapes[hp.position_sensor])), np.float32)
            positions = np.stack(
                [nowhere if s is None else np.ravel(s[0][hp.position_sensor]) for s in sensors]
            )
        group = groups if hp.neighbourhood == "group" else None
        return tracker.mean_actions(agents, alive=alive, segment=groups, positions=positions, group_id=group)

    def _choose(self, actor: str, rows: list[tuple]) -> tuple[np.ndarray, np.ndarray | None]:
        """Actions for ``rows`` and their log-probabilities (None for baselines)."""
        masks = [r[4] for r in rows]
        mask = None if masks[0] is None else np.stack(masks)
        if actor in BASELINES:
            return baseline_actions(actor, mask, len(rows), self._stream(actor)), None
        obs = [np.stack([r[3][k] for r in rows]).astype(np.float32) for k in range(len(rows[0][3]))]
        mean = None if rows[0][5] is None else np.stack([r[5] for r in rows])
        assert self._plan is not None
        out = self._actors[actor].act(obs, mean, mask, deterministic=self._plan.deterministic)
        return out.discrete_actions[:, 0], out.logp


def _mean_row(means: np.ndarray | None, k: int) -> np.ndarray | None:
    return None if means is None else means[k]
