"""The environment runner: k envs of one worker, stepped in lockstep, seen as per-agent rewards and episodes.

An :class:`EnvRunner` makes ``num_envs`` envs with the run's
:class:`~unimarl.trainers.envs.factory.EnvFactory` (env ``i`` of worker ``w`` gets seed
``seed + 1000 * w + i``), resets them and keeps them running. Every step and reset of an env goes through
it. An algorithm plugs in as an :class:`Actor`: at each step it receives the agents that decide and
returns their actions; then, per env, each rewarded agent's credited reward and the episodes that ended and
started (:class:`EnvStep`). The runner never imports an algorithm.

Decisions: an agent decides unless ``infos[agent]["requested_decision"]`` is False (a Unity agent between
decisions, decision period > 1); an agent that does not decide keeps its last action, and every reward
until its next decision or its end belongs to that action.

Rewards: an agent's reward plus ``group_weight`` (per behaviour: its exact name, else its name before
``?``, else 0) times its Unity group reward (:func:`~unimarl.trainers.envs.factory.credit_group_reward`).

Episodes: an agent's episode starts when the runner first sees it (after a reset, or in a step's rewards
or live agents) and ends when it is terminated, truncated, or leaves ``env.agents`` without either (a
Unity agent that restarts comes back under a new name). Its return sums its credited rewards, its length
counts the actions it was given. The return counts only rewards that reach an action (a reward an agent
appears with, before it acted, is credited to nothing and not counted), and an agent that never acted reports
no episode: every algorithm's returns are the rewards it trains on. A PettingZoo env whose
agents are all gone is reset (without a seed); Unity and sim games restart their agents themselves.

Games (Unity and sim envs) run in other processes: with more than one env they are stepped concurrently
from threads (gRPC releases the GIL); other envs are stepped in order.

Crashed games: a game that exits or is killed, stops answering within the env's ``timeout_s``, or breaks its
connection is relaunched in place (a fresh port, its own log folder ``...-restart<k>``, a new seed) and reset;
a relaunch that fails at start-up (handshake never finished) is retried the same way. Its running episodes
end as *lost* (:attr:`AgentEnd.lost`): they are not counted as episodes and algorithms drop their data;
everything that ended before, terminal rewards included, is kept. Bounds per game, as ML-Agents':
``env.max_lifetime_restarts`` and ``env.restarts_rate_limit_n`` per ``restarts_rate_limit_period_s``; past
them the run ends with :class:`GameRestartError`. :attr:`Collected.game_restarts` counts relaunches per
reason. PettingZoo envs are never relaunched: their exceptions are bugs and propagate.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import platform
import sys
import time
from collections import defaultdict, deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from unimarl.bridge.errors import (
    BridgeError,
    ProtocolError,
    UnityClosedError,
    UnityProcessExitedError,
    UnityTimeoutError,
)
from unimarl.trainers.core.batch import PolicySpec
from unimarl.trainers.core.errors import TrainerError
from unimarl.trainers.envs.factory import (
    AgentView,
    EnvFactory,
    agent_behavior,
    agent_view,
    credit_group_reward,
    env_state,
    is_unity,
    send_parameters,
    visual_layout_of,
)
from unimarl.trainers.envs.game_state import byte_sensors, game_state_shape

logger = logging.getLogger(__name__)

StepResult = tuple[dict[str, Any], dict[str, float], dict[str, bool], dict[str, bool], dict[str, Any]]
"""What ``env.step`` returns: observations, rewards, terminations, truncations, infos."""


class Decision(NamedTuple):
    """An agent that decides at this step."""

    env: int
    agent: str
    behavior: str


@dataclass(slots=True)
class AgentEnd:
    """An agent whose episode ended at a step."""

    agent: str
    behavior: str
    observation: Any
    """Its final observation, None when the step returned none."""
    action: Any
    """The action it was last given (None if it never acted)."""
    reward: float
    """Its reward at this step with its weighted group reward (0.0 when the step gave it none)."""
    terminated: bool
    truncated: bool
    """As the env reported them: both False for an agent that left ``env.agents`` without either."""
    info: dict[str, Any]
    ret: float
    """Its episode's return (the rewards from its first action on)."""
    length: int
    """The actions it was given in its episode."""
    lost: bool = False
    """Its game crashed or hung mid-episode and was relaunched: the episode is broken off, not ended by
    the game (no final observation; its last action may never have run). Algorithms drop its data."""


@dataclass(frozen=True, slots=True)
class EnvStep:
    """One env's step."""

    env: int
    rewards: dict[str, float]
    """Per agent rewarded at this step (in the env's order): its reward with its weighted group reward."""
    ended: list[AgentEnd]
    """The agents whose episode ended, in the order their episodes started."""
    started: list[str]
    """The agents whose episode started at this step and goes on after it, in the order they started."""
    result: StepResult
    """What ``env.step`` returned (for algorithm bookkeeping that needs the raw step)."""


@dataclass
class Collected:
    """What :meth:`EnvRunner.run` did."""

    env_steps: int = 0
    agent_steps: int = 0
    episode_returns: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    episode_lengths: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    final_rewards: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    """Per behaviour, each ended episode's last reward with its weighted group reward (self-play's ELO reads
    win, draw or loss from its sign, as ML-Agents' ghost trainer does)."""
    timers: dict[str, float] = field(default_factory=lambda: {"act_s": 0.0, "env_s": 0.0})
    game_restarts: dict[str, int] = field(default_factory=dict)
    """Games relaunched, per reason: exited (the process ended or was killed), hung (no answer within the
    env's ``timeout_s``), broken (the connection failed otherwise)."""


class GameRestartError(TrainerError):
    """A game kept failing: more relaunches than ``max_lifetime_restarts``, or than
    ``restarts_rate_limit_n`` within ``restarts_rate_limit_period_s``."""


GAME_FAILURES: dict[type[BridgeError], str] = {
    UnityProcessExitedError: "exited",
    UnityTimeoutError: "hung",
    UnityClosedError: "broken",
    ProtocolError: "broken",
}
"""Errors of a game (not of the trainer's set-up or actions) that a relaunch can cure, by reason."""


def is_unity_kind(factory: EnvFactory) -> bool:
    """Whether ``factory`` makes Unity/sim games (launched builds; the Editor is never relaunched)."""
    settings = getattr(factory, "settings", None)  # a factory of the caller's own has none
    return settings is not None and settings.kind in ("build", "sim")


def _failure_reason(error: BaseException) -> str | None:
    return next((reason for cls, reason in GAME_FAILURES.items() if isinstance(error, cls)), None)


class Actor(Protocol):
    """What an algorithm supplies to the runner."""

    def act(self, decisions: list[Decision]) -> list[dict[str, Any]]:
        """Per env, the actions of the deciding agents (agent -> action in its action space)."""
        ...

    def observe(self, steps: list[EnvStep]) -> None:
        """What the last step did, env by env (before finished envs are reset): rewards, ended and started
        episodes."""
        ...

    def restarted(self, env: int) -> None:
        """Env ``env`` was reset: its agent names may come back as new agents."""
        ...


@dataclass
class _Episode:
    behavior: str
    ret: float = 0.0
    length: int = 0
    action: Any = None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def node_name() -> str:
    """Where this process runs: the Ray node id inside a Ray actor, else the host name."""
    ray = sys.modules.get("ray")  # never imported here: only the Ray pool imports it
    if ray is not None and ray.is_initialized():
        return str(ray.get_runtime_context().get_node_id())
    return platform.node()


def game_layouts(env: Any, only: str | None = None) -> dict[str, str]:
    """Visual layout per behaviour (or of ``only``) that the game behind ``env`` marks (Unity/sim envs)."""
    layouts = {}
    for behavior, spec in getattr(env, "behavior_specs", {}).items():
        layout = visual_layout_of(spec.observation_specs) if only in (None, behavior) else None
        if layout is not None:
            layouts[behavior] = layout
    return layouts


class EnvRunner:
    """k envs of one worker; see the module docstring.

    ``global_state``: the behaviours' policy specs carry the shape of their global state (a game's
    ``global_state`` sensor, a PettingZoo env's ``state()``)."""

    def __init__(
        self,
        factory: EnvFactory,
        num_envs: int,
        worker_index: int = 0,
        seed: int = 0,
        global_state: bool = False,
    ) -> None:
        self.global_state = global_state
        self._factory, self._worker, self._seed = factory, worker_index, seed
        self._launches = [0] * num_envs  # relaunches per env over the worker's lifetime
        self._recent: list[deque[float]] = [deque() for _ in range(num_envs)]  # their times (rate limit)
        self._relaunched: list[int] = []
        self._reset_pending: set[int] = set()
        self.start_restarts: dict[str, int] = {}
        """Games relaunched because they failed while starting, per reason (before the first collect)."""
        self.envs: list[Any] = []
        self.obs: list[dict[str, Any]] = []
        self.infos: list[dict[str, Any]] = []
        self._previous_infos: list[dict[str, Any]] = []
        self._episodes: list[dict[str, _Episode]] = [{} for _ in range(num_envs)]
        try:
            for i in range(num_envs):
                env, obs, infos = self._start_game(i, self.start_restarts)
                self.envs.append(env)
                self.obs.append(obs)
                self.infos.append(infos)
                self._previous_infos.append(infos)
                for agent in env.agents:
                    self._start(i, agent)
        except BaseException:
            for env in self.envs:
                with contextlib.suppress(Exception):
                    env.close()
            raise
        self.unity = [is_unity(env) for env in self.envs]
        self._threads = ThreadPoolExecutor(num_envs) if num_envs > 1 and any(self.unity) else None
        self.views: dict[str, AgentView] = {}
        """Behaviour -> its view (those after reset by :meth:`specs`; later ones added by the worker)."""
        self.byte_sensors: dict[str, tuple[bool, ...]] = {}
        """Behaviour -> per sensor, whether its observation space is uint8."""
        self.group_weight: dict[str, float] = {}
        """Behaviour (or its name before ``?``) -> weight of its Unity group reward."""
        self.warned: set[str] = set()
        """Behaviours warned about ignored group rewards."""

    # -- behaviours -----------------------------------------------------------------------------------
    def behavior_of(self, env: int, agent: str) -> str:
        """The agent's behaviour (as first seen; an agent the runner does not track: from its infos)."""
        episode = self._episodes[env].get(agent)
        if episode is not None:
            return episode.behavior
        info = self.infos[env].get(agent) or self._previous_infos[env].get(agent)
        return agent_behavior(self.envs[env], agent, info)

    def view_for(self, env: int, agent: str, behavior: str) -> AgentView:
        """A view of ``behavior`` from ``agent``'s spaces in env ``env`` (not added to :attr:`views`)."""
        game = self.envs[env]
        state_shape = None
        if self.global_state and self.unity[env]:
            state_shape = game_state_shape(game, behavior)
        elif self.global_state:
            state = env_state(game)
            state_shape = None if state is None else tuple(state.shape)
        self.byte_sensors[behavior] = byte_sensors(game.observation_space(agent))
        return agent_view(
            game.observation_space(agent), game.action_space(agent), state_shape, f"behaviour '{behavior}'"
        )

    def specs(self) -> dict[str, PolicySpec]:
        """Policy spec of every behaviour with agents now (after reset: the ones training starts with)."""
        for i, env in enumerate(self.envs):
            for agent in self.obs[i]:
                behavior = agent_behavior(env, agent, self.infos[i].get(agent))
                if behavior not in self.views:
                    self.views[behavior] = self.view_for(i, agent, behavior)
        return {b: v.spec for b, v in self.views.items()}

    def visual_layouts(self, behavior: str | None = None, env: int | None = None) -> dict[str, str]:
        """Layout ("CHW" or "HWC") of the visual observations per behaviour (or of ``behavior``) that the
        games (all, or env ``env``) mark; PettingZoo envs mark none."""
        layouts: dict[str, str] = {}
        for game in self.envs if env is None else [self.envs[env]]:
            layouts.update(game_layouts(game, behavior))
        return layouts

    # -- stepping -------------------------------------------------------------------------------------
    def run(self, actor: Actor, steps: int, start: float, max_seconds: float | None = None) -> Collected:
        """Step every env ``steps`` times with ``actor``'s actions (stop once ``max_seconds`` have passed
        since ``start``, a ``time.perf_counter()``, after at least one step)."""
        done = Collected(game_restarts=self.start_restarts)  # relaunches while starting count in the first
        self.start_restarts = {}
        if self._reset_pending:
            resets = self._forced_resets(done)
            actor.observe(resets)
            for reset in resets:
                actor.restarted(reset.env)
        for stepped in range(steps):
            if stepped and max_seconds is not None and time.perf_counter() - start >= max_seconds:
                break
            t0 = time.perf_counter()
            decisions = self.deciding()
            actions = actor.act(decisions)
            t1 = time.perf_counter()
            env_steps = self.step(actions, done)
            done.timers["env_s"] += time.perf_counter() - t1
            done.timers["act_s"] += t1 - t0
            done.agent_steps += len(decisions)
            actor.observe(env_steps)
            for i in [*self.reset_finished(), *self._relaunched]:
                actor.restarted(i)
            self._relaunched = []
        return done

    def deciding(self) -> list[Decision]:
        """The agents that decide now, env by env in each env's agent order."""
        out = []
        for i, env in enumerate(self.envs):
            infos, episodes = self.infos[i], self._episodes[i]
            for agent in env.agents:
                info = infos.get(agent)
                if info and not info.get("requested_decision", True):
                    continue
                episode = episodes.get(agent)
                behavior = episode.behavior if episode is not None else self.behavior_of(i, agent)
                out.append(Decision(i, agent, behavior))
        return out

    def step(self, actions: Sequence[dict[str, Any]], done: Collected | None = None) -> list[EnvStep]:
        """Step every env with its ``actions``; ended episodes are added to ``done``."""
        started: list[list[str]] = []
        for i, env_actions in enumerate(actions):
            episodes, first_seen = self._episodes[i], []
            for agent, action in env_actions.items():
                episode = episodes.get(agent)
                if episode is None:
                    episode = self._start(i, agent)
                    first_seen.append(agent)
                episode.length += 1
                episode.action = action
            started.append(first_seen)
        if self._threads is None:
            results = [self._step_one(i, actions[i]) for i in range(len(self.envs))]
        else:
            results = list(self._threads.map(lambda i: self._step_one(i, actions[i]), range(len(self.envs))))
        done = Collected() if done is None else done
        done.env_steps += len(results)
        return [
            self._relaunch(i, result, done)
            if isinstance(result, BaseException)
            else self._account(i, result, started[i], done)
            for i, result in enumerate(results)
        ]

    def _step_one(self, i: int, actions: dict[str, Any]) -> StepResult | BridgeError:
        """``env.step``; a game's failure that a relaunch can cure is returned, not raised."""
        try:
            return self.envs[i].step(actions)
        except BridgeError as e:
            if not is_unity_kind(self._factory) or _failure_reason(e) is None:
                raise
            return e

    def _relaunch(self, i: int, error: BaseException, done: Collected) -> EnvStep:
        """Replace env ``i``'s failed game by a fresh one (new port, new log folder) under the restart
        bounds; its running episodes end as lost (not counted as episodes, their data dropped)."""
        reason = _failure_reason(error) or "broken"
        ended = self._lose_episodes(i)
        # the game is gone; closing reaps what is left of it (one that stopped answering has had its timeout
        # already: it is ended without waiting for it)
        with contextlib.suppress(Exception):  # (only Unity/sim games are relaunched: their close takes grace)
            self.envs[i].close(grace=0.0 if reason == "hung" else None)
        env, obs, infos = self._start_game(i, done.game_restarts, (reason, error))
        self.envs[i] = env
        self._previous_infos[i], self.obs[i], self.infos[i] = self.infos[i], obs, infos
        for agent in env.agents:
            self._start(i, agent)
        self._relaunched.append(i)
        return EnvStep(i, {}, ended, [], (obs, {}, {}, {}, infos))

    def _lose_episodes(self, i: int) -> list[AgentEnd]:
        """End env ``i``'s running episodes as lost (not counted as episodes, their data dropped)."""
        ended = [
            AgentEnd(agent, ep.behavior, None, ep.action, 0.0, False, False, {}, ep.ret, ep.length, lost=True)
            for agent, ep in self._episodes[i].items()
        ]
        self._episodes[i] = {}
        return ended

    def set_environment_parameters(self, values: dict[str, Any], reset: bool = False) -> int:
        """Queue environment parameter ``values`` on every Unity/sim game (sent with its next message; games
        relaunched later start with them). With ``reset``, every such game is reset before the next step and
        its running episodes are dropped (a curriculum lesson's ``require_reset``). Returns the number of
        games told."""
        self._factory = dataclasses.replace(
            self._factory, environment_parameters={**self._factory.environment_parameters, **values}
        )
        told = 0
        for i, env in enumerate(self.envs):
            channel = getattr(env, "params_channel", None)
            if channel is None:
                continue
            send_parameters(channel, values, getattr(env, "params_seed", 0))
            told += 1
            if reset:
                self._reset_pending.add(i)
        return told

    def _forced_resets(self, done: Collected) -> list[EnvStep]:
        """Reset the games :meth:`set_environment_parameters` asked to reset; their episodes end as lost."""
        out = []
        for i in sorted(self._reset_pending):
            ended = self._lose_episodes(i)
            try:
                obs, infos = self.envs[i].reset()
            except BridgeError as e:
                if not is_unity_kind(self._factory) or _failure_reason(e) is None:
                    raise
                relaunched = self._relaunch(i, e, done)  # (its episodes were ended just above)
                self._relaunched.remove(i)  # restarted by the caller with the other resets
                out.append(dataclasses.replace(relaunched, ended=ended))
                continue
            self._previous_infos[i], self.obs[i], self.infos[i] = self.infos[i], obs, infos
            for agent in self.envs[i].agents:
                self._start(i, agent)
            out.append(EnvStep(i, {}, ended, [], (obs, {}, {}, {}, infos)))
        self._reset_pending.clear()
        return out

    def _start_game(
        self, i: int, counts: dict[str, int], failed: tuple[str, BaseException] | None = None
    ) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        """Launch (or, after ``failed``, relaunch) env ``i`` and reset it; a game that fails while starting
        (exits, never finishes its handshake) is relaunched under the bounds; relaunches are counted in
        ``counts``."""
        while True:
            if failed is not None:
                reason, error = failed
                self._check_bounds(i, reason, error)
                self._launches[i] += 1
                self._recent[i].append(time.monotonic())
                counts[reason] = counts.get(reason, 0) + 1
                logger.warning(
                    "game %d of worker %d failed (%s: %s); relaunching it (relaunch %d)",
                    i, self._worker, reason, _first_line(error), self._launches[i],
                )  # fmt: skip
            seed = self._seed + 1000 * self._worker + i + 7919 * self._launches[i]
            env = None
            try:
                attempt = self._launches[i]
                env = (
                    self._factory(self._worker, i, seed, attempt=attempt)
                    if attempt
                    else self._factory(self._worker, i, seed)
                )
                obs, infos = env.reset(seed=seed)
                return env, obs, infos
            except BridgeError as e:  # died or hung while starting
                if env is not None:
                    with contextlib.suppress(Exception):
                        env.close()
                if _failure_reason(e) is None or not is_unity_kind(self._factory):
                    raise
                failed = (_failure_reason(e) or "broken", e)

    def _check_bounds(self, i: int, reason: str, error: BaseException) -> None:
        settings = self._factory.settings
        recent, period = self._recent[i], settings.restarts_rate_limit_period_s
        while recent and time.monotonic() - recent[0] > period:
            recent.popleft()
        lifetime = settings.max_lifetime_restarts
        over_lifetime = lifetime >= 0 and self._launches[i] >= lifetime
        over_rate = settings.restarts_rate_limit_n >= 0 and len(recent) >= settings.restarts_rate_limit_n
        if over_lifetime or over_rate:
            limit = (
                f"max_lifetime_restarts {lifetime}"
                if over_lifetime
                else f"restarts_rate_limit_n {settings.restarts_rate_limit_n} per {period:g} s"
            )
            raise GameRestartError(
                f"game {i} of worker {self._worker} failed again ({reason}) after {self._launches[i]} "
                f"relaunches, over env.{limit}. Its last error: {error}\nThe game's log says why (the run "
                "folder's logs/); raise the env's restart limits to keep going"
            ) from error

    def _account(self, i: int, result: StepResult, started: list[str], done: Collected) -> EnvStep:
        """Credit rewards, end episodes and start those of agents seen for the first time (``started``: those
        started from this step's actions)."""
        obs, rewards, terminations, truncations, infos = result
        self._previous_infos[i], self.infos[i], self.obs[i] = self.infos[i], infos, obs
        episodes = self._episodes[i]
        credited: dict[str, float] = {}
        for agent, reward in rewards.items():
            episode = episodes.get(agent)
            if episode is None:
                episode = self._start(i, agent)
                started.append(agent)
            info = infos.get(agent)
            if info and info.get("group_reward"):
                weight = self._weight(episode.behavior)
                r = credit_group_reward(reward, info, weight, episode.behavior, self.warned)
            else:  # no group reward: credit_group_reward would return the reward itself
                r = float(reward)
            if episode.length:
                episode.ret += r
            credited[agent] = r
        live = set(self.envs[i].agents)
        ending = [a for a in episodes if a not in live or terminations.get(a) or truncations.get(a)]
        ended = []
        for agent in ending:
            episode = episodes.pop(agent)
            if episode.length:
                done.episode_returns[episode.behavior].append(episode.ret)
                done.episode_lengths[episode.behavior].append(episode.length)
                done.final_rewards[episode.behavior].append(credited.get(agent, 0.0))
            ended.append(
                AgentEnd(
                    agent,
                    episode.behavior,
                    obs.get(agent),
                    episode.action,
                    credited.get(agent, 0.0),
                    bool(terminations.get(agent)),
                    bool(truncations.get(agent)),
                    infos.get(agent) or {},
                    episode.ret,
                    episode.length,
                )
            )
        if ending:
            started = [a for a in started if a in episodes]
        for agent in self.envs[i].agents:
            if agent not in episodes and not (terminations.get(agent) or truncations.get(agent)):
                self._start(i, agent)
                started.append(agent)
        return EnvStep(i, credited, ended, started, result)

    def _weight(self, behavior: str) -> float:
        weights = self.group_weight
        return weights.get(behavior, weights.get(behavior.split("?", 1)[0], 0.0))

    def _start(self, env: int, agent: str) -> _Episode:
        """Start the episode of ``agent`` (not running)."""
        episode = self._episodes[env][agent] = _Episode(self.behavior_of(env, agent))
        return episode

    def reset_finished(self) -> list[int]:
        """Reset the PettingZoo envs whose agents are all gone; returns their indices."""
        reset = []
        for i, env in enumerate(self.envs):
            if not env.agents and not self.unity[i]:
                self._previous_infos[i] = self.infos[i]
                self.obs[i], self.infos[i] = env.reset()
                self._episodes[i] = {}
                for agent in env.agents:
                    self._start(i, agent)
                reset.append(i)
        return reset

    def drain_stats(self) -> dict[str, list[float]]:
        """Every stat the games recorded since the last call (Unity's ``StatsRecorder``), per key, cleared
        from the games' stats channels (which otherwise keep them all)."""
        out: dict[str, list[float]] = defaultdict(list)
        for env in self.envs:
            stats = getattr(getattr(env, "connection", None), "stats", None)
            if stats is None:
                continue
            for key, values in stats.get_and_reset_stats().items():
                out[key].extend(float(value) for value, _ in values)
        return dict(out)

    def open_episodes(self, env: int) -> list[str]:
        """The agents of env ``env`` whose episode is running, in the order their episodes started."""
        return list(self._episodes[env])

    # -- games ----------------------------------------------------------------------------------------
    def push_policy(self, behavior: str, version: int, model: bytes) -> int:
        """Queue an ONNX model on every Unity/sim env's policy channel; returns how many games get it."""
        channels = [c for env in self.envs if (c := getattr(env, "policy_channel", None)) is not None]
        for channel in channels:
            channel.push(behavior, version, model)
        return len(channels)

    def policy_status(self) -> list[dict[str, Any]]:
        """Per Unity/sim env, behaviour -> ``PolicyStatus`` (what the game acknowledged running)."""
        return [c.status() for env in self.envs if (c := getattr(env, "policy_channel", None)) is not None]

    def close(self) -> None:
        for env in self.envs:
            env.close()
        if self._threads is not None:
            self._threads.shutdown()


class RunnerWorker:
    """What every rollout worker answers through its runner (``self.runner``): its behaviours' specs and
    visual layouts, where it runs, hot-swap pushes into its games, what the games run, and closing them."""

    runner: EnvRunner

    def specs(self) -> dict[str, PolicySpec]:
        """Policy spec of every behaviour with agents after reset."""
        return self.runner.specs()

    def visual_layouts(self) -> dict[str, str]:
        """Layout ("CHW" or "HWC") of the visual observations of each behaviour whose game marks one (Unity
        and sim games); exports record it so a model feeds the layout the game sends. Behaviours met later
        are reported by the worker's results."""
        return self.runner.visual_layouts()

    def node(self) -> str:
        """Where this worker runs: the Ray node id inside a Ray actor, else the host name."""
        return node_name()

    def push_policy(self, behavior: str, version: int, model: bytes) -> int:
        """Queue an ONNX model on every Unity/sim env's policy channel; returns how many games get it."""
        return self.runner.push_policy(behavior, version, model)

    def set_environment_parameters(self, values: dict[str, Any], reset: bool = False) -> int:
        """New environment parameter values for every game (a curriculum lesson); see
        :meth:`EnvRunner.set_environment_parameters`."""
        return self.runner.set_environment_parameters(values, reset)

    def policy_status(self) -> list[dict[str, Any]]:
        """Per Unity/sim env, behaviour -> ``PolicyStatus`` (what the game acknowledged running)."""
        return self.runner.policy_status()

    def close(self) -> None:
        self.runner.close()
