"""A Unity ML-Agents game (build, Editor or stand-in sim) as a PettingZoo ``ParallelEnv``.

Who is the server: the trainer. The env opens a :class:`~unimarl.bridge.connection.UnityConnection` (a gRPC
server on 127.0.0.1) on the first :meth:`UnityParallelEnv.reset`; the game dials it (a build is launched with
``--mlagents-port``; the Editor connects when Play is pressed).

Agent names: ``f"{behavior}?agent_id={unity_id}"`` for an agent's first episode, then
``f"{behavior}?agent_id={unity_id}&episode={k}"`` for its k-th later episode (k >= 1). A name that was
terminated or truncated never comes back; :func:`parse_agent_name` splits a name. ``reset()`` starts a new
episode for every agent, so names from before a reset never come back either. Names being per episode, the
list of every name grows for as long as the game runs: ``possible_agents`` holds the latest step's agents
(live ones and those that ended at it), a superset of ``agents``.

Terminal and restart in one step: Unity can report an agent as done and as requesting the first decision of
its next episode in the same message. :meth:`~UnityParallelEnv.step` then returns the final observation,
reward and termination under the old name AND the new name (in ``agents`` and in every returned dict, with
reward 0 and its first observation). Neither the terminal reward nor the terminal observation is lost.

Episode ends: ``max_step_reached`` (interrupted) -> truncation True, termination False,
``infos["interrupted"]`` True; any other ``done`` -> termination True.

Decision periods: agents that are alive but did not request a decision in this message (Unity's decision
period > 1) stay in ``agents``, get their last observation again, reward 0 and ``infos["requested_decision"] =
False``; actions given for them are ignored. A live agent that requested a decision must be given an action.

Rewards: the AgentInfo reward (Unity's reward since the agent's last decision). Group rewards are reported in
``infos["group_reward"]`` only, with ``infos["group_id"]``; infos also hold ``behavior`` and ``agent_id``.

Spaces: one float32 ``Box`` per sensor (a ``Tuple`` of them if several). With discrete actions the observation
is ``{"observation": ..., "action_mask": ...}`` (int8, 1 = allowed; one array for a single branch, a tuple for
several) so ``action_space(agent).sample(mask=obs["action_mask"])`` works. Actions: ``Box(-1, 1)``
(continuous), ``Discrete`` (one branch), ``MultiDiscrete`` (several), or for hybrid actions a ``Dict`` with
``"continuous"`` and ``"discrete"`` whose ``sample(mask=...)`` also accepts the plain mask.

Global state: a game marks an observation as the global state by naming its sensor ``"global_state"``. It is
removed from the agents' observations; :meth:`~UnityParallelEnv.state` returns the latest one (from the first
agent that carried it) and ``state_space`` is its Box. Each area or group of a game has its own state:
:meth:`~UnityParallelEnv.agent_state` gives the one an agent reported at its latest step (for an agent that
ended, its terminal step's, even when its area restarted in the same message). Games without one raise
:class:`NoGlobalStateError`.

Seeds: Unity takes the seed only in the handshake, so ``reset(seed=s)`` with ``s`` different from the current
connection's seed closes the game and opens it again with the new seed (for the Editor: press Play again).
``options`` are ignored.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from unimarl.bridge.connection import UnityConnection
from unimarl.bridge.env_spaces import GLOBAL_STATE, HybridActionSpace, action_space_for, observation_space_for
from unimarl.bridge.errors import ActionError, BridgeError
from unimarl.bridge.side_channels import SideChannel
from unimarl.bridge.spec import ActionSpec, ActionTuple, AgentBatch, BehaviorSpec, GameOutput

__all__ = [
    "GLOBAL_STATE",
    "HybridActionSpace",
    "NoGlobalStateError",
    "UnityParallelEnv",
    "action_space_for",
    "agent_name",
    "observation_space_for",
    "parse_agent_name",
]

logger = logging.getLogger(__name__)

_AGENT_SEP = "?agent_id="
_EPISODE_SEP = "&episode="
REMEMBERED_IDS = 50_000
"""Agent ids whose next episode index an env remembers after their episode ended. An agent switched off and
on again gets a new id (com.unity.ml-agents 3.0.0 ``Agent.LazyInitialize``, run by ``OnEnable``,
Agent.cs:480-489; battle's ``--reenable-dead``), and older releases drew a new id at every episode end
(``NotifyAgentDone``): such ids never return, and without a bound one entry per agent episode would pile up
for the whole run. Agents that keep their id (3.0.0's rule) stay far below it."""


class NoGlobalStateError(BridgeError):
    """``state()`` / ``state_space`` on a game that has no observation named ``global_state``."""


def agent_name(behavior: str, unity_id: int, episode: int) -> str:
    """The PettingZoo name of a Unity agent's ``episode``-th episode (0 = its first)."""
    base = f"{behavior}{_AGENT_SEP}{unity_id}"
    return base if episode == 0 else f"{base}{_EPISODE_SEP}{episode}"


def parse_agent_name(name: str) -> tuple[str, int, int]:
    """``(behavior, unity_id, episode)`` of an agent name made by this env."""
    behavior, sep, rest = name.rpartition(_AGENT_SEP)
    unity_id, _, episode = rest.partition(_EPISODE_SEP)
    try:
        if not sep:
            raise ValueError("no agent id")
        return behavior, int(unity_id), int(episode or 0)
    except ValueError as e:
        raise ValueError(
            f"{name!r} is not an agent name of this env; expected 'Behavior?team=0?agent_id=3[&episode=2]'"
        ) from e


class UnityParallelEnv(ParallelEnv):
    """See the module docstring for the semantics."""

    metadata: ClassVar[dict[str, Any]] = {
        "name": "unimarl_unity_v0",
        "render_modes": [],
        "is_parallelizable": True,
    }
    render_mode = None

    def __init__(
        self,
        file_name: str | os.PathLike | None = None,
        *,
        seed: int = 0,
        no_graphics: bool = True,
        timeout: float = 60,
        side_channels: Sequence[SideChannel] = (),
        additional_args: Sequence[str] = (),
        log_dir: str | os.PathLike | None = None,
        port: int | None = None,
        num_areas: int = 1,
        nan_policy: str = "raise",
        **connection_kwargs: Any,
    ) -> None:
        self._connection_kwargs = dict(
            no_graphics=no_graphics,
            timeout=timeout,
            side_channels=tuple(side_channels),
            additional_args=tuple(additional_args),
            log_dir=log_dir,
            port=port,
            num_areas=num_areas,
            nan_policy=nan_policy,
            **connection_kwargs,
        )
        self.file_name = file_name
        self._seed = seed
        self._connection: UnityConnection | None = None
        self.agents: list[str] = []
        self.possible_agents: list[str] = []
        self._live: dict[str, dict[str, Any]] = {}  # name -> last observation, infos
        self._current: dict[tuple[str, int], str] = {}  # (behavior, unity id) -> live name
        # (behavior, unity id) -> next episode index; the oldest ended ids beyond REMEMBERED_IDS are forgotten
        self._episodes: OrderedDict[tuple[str, int], int] = OrderedDict()
        self._decision_names: dict[str, list[str]] = {}
        self._obs_spaces: dict[str, spaces.Space] = {}
        self._act_spaces: dict[str, spaces.Space] = {}
        self._state: np.ndarray | None = None
        self._agent_states: dict[str, np.ndarray] = {}

    # ----------------------------------------------------------------------------------------- connection
    @property
    def connection(self) -> UnityConnection:
        if self._connection is None:
            raise BridgeError("the game is not open yet: call reset() first")
        return self._connection

    @property
    def behavior_specs(self) -> dict[str, BehaviorSpec]:
        return dict(self._connection.behavior_specs) if self._connection is not None else {}

    def agent_behavior(self, agent: str) -> str:
        return parse_agent_name(agent)[0]

    def _open(self, seed: int) -> UnityConnection:
        if self._connection is not None:
            logger.info("reopening the game with seed %d (was %d)", seed, self._connection.seed)
            self._connection.close()
            self._connection = None
        connection = UnityConnection(self.file_name, seed=seed, **self._connection_kwargs)
        connection.open()
        self._connection, self._seed = connection, seed
        return connection

    # ----------------------------------------------------------------------------------------- spaces
    def observation_space(self, agent: str) -> spaces.Space:
        behavior = self.agent_behavior(agent)
        if behavior not in self._obs_spaces:
            self._obs_spaces[behavior] = observation_space_for(self._spec(behavior))
        return self._obs_spaces[behavior]

    def action_space(self, agent: str) -> spaces.Space:
        behavior = self.agent_behavior(agent)
        if behavior not in self._act_spaces:
            self._act_spaces[behavior] = action_space_for(self._spec(behavior).action_spec)
        return self._act_spaces[behavior]

    def _spec(self, behavior: str) -> BehaviorSpec:
        specs = self.behavior_specs
        if behavior not in specs:
            raise BridgeError(f"unknown behaviour {behavior!r}; the game's behaviours are {sorted(specs)}")
        return specs[behavior]

    @property
    def state_space(self) -> spaces.Box:
        for spec in self.behavior_specs.values():
            for obs in spec.observation_specs:
                if obs.name == GLOBAL_STATE:
                    return spaces.Box(-np.inf, np.inf, obs.shape, np.float32)
        raise NoGlobalStateError(self._no_state_message())

    def state(self) -> np.ndarray:
        if self._state is None:
            raise NoGlobalStateError(self._no_state_message())
        return self._state.copy()

    def agent_state(self, agent: str) -> np.ndarray:
        """The global state ``agent`` reported at its latest step (see the module docstring)."""
        state = self._agent_states.get(agent)
        if state is None:
            if self._state is None:
                raise NoGlobalStateError(self._no_state_message())
            raise NoGlobalStateError(
                f"agent {agent!r} reported no global state at the latest step; ask only for agents of the "
                "latest step whose behaviour has a 'global_state' sensor"
            )
        return state.copy()

    def _no_state_message(self) -> str:
        if self._connection is None:
            return "the game is not open yet: call reset() first"
        return (
            f"the game provides no global state (no observation named {GLOBAL_STATE!r} in behaviours "
            f"{sorted(self.behavior_specs)}); name a sensor 'global_state' in the game, or use a critic on "
            "the agents' own observations"
        )

    # ----------------------------------------------------------------------------------------- episode loop
    def _ended(self, key: tuple[str, int]) -> None:
        """The episode of agent ``key`` ended: its next one (if its id returns) gets the next index."""
        self._episodes[key] = self._episodes.get(key, 0) + 1
        self._episodes.move_to_end(key)
        while len(self._episodes) > REMEMBERED_IDS:
            self._episodes.popitem(last=False)

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        if self._connection is None or (seed is not None and seed != self._connection.seed):
            self._open(self._seed if seed is None else seed)
        for key in self._current:
            self._ended(key)
        self._current.clear()
        self._live.clear()
        self._state = None
        self._agent_states = {}
        obs, _, _, _, infos = self._apply(self.connection.reset())
        return obs, infos

    def step(self, actions: Mapping[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        connection = self.connection
        unknown = [name for name in actions if name not in self._live]
        if unknown:
            raise ActionError(f"actions for agents that are not live: {unknown[:5]}; act only for env.agents")
        per_behavior = {
            behavior: self._actions_of(behavior, names, actions)
            for behavior, names in self._decision_names.items()
            if names
        }
        return self._apply(connection.step(per_behavior))

    def render(self) -> None:
        return None

    def close(self, grace: float | None = None) -> None:
        """Close the game (see :meth:`UnityConnection.close`; ``grace`` 0 ends a game that stopped answering
        at once)."""
        if self._connection is not None:
            if grace is None:
                self._connection.close()
            else:
                self._connection.close(grace)
            self._connection = None

    # ----------------------------------------------------------------------------------------- helpers
    def _actions_of(self, behavior: str, names: list[str], actions: Mapping[str, Any]) -> ActionTuple:
        spec = self._spec(behavior).action_spec
        try:
            chosen = [actions[name] for name in names]
        except KeyError as e:
            raise ActionError(
                f"no action for agent {e.args[0]!r}, which requested a decision; pass one for it"
            ) from None
        n = len(names)
        continuous = np.zeros((n, spec.continuous_size), np.float32)
        discrete = np.zeros((n, spec.discrete_size), np.int64)
        try:  # one conversion for all agents; the per-agent loop below names a misfit action
            if spec.is_hybrid:
                raise ValueError("hybrid actions are converted per agent")
            if spec.discrete_size:
                discrete[:] = _integral(np.asarray(chosen)).reshape(discrete.shape)
            else:
                continuous[:] = np.asarray(chosen, np.float32).reshape(continuous.shape)
        except (ValueError, TypeError):
            for row, (name, action) in enumerate(zip(names, chosen, strict=True)):
                self._one_action(spec, name, action, continuous[row], discrete[row])
        bad = ((discrete < 0) | (discrete >= np.asarray(spec.discrete_branches, np.int64))).any(axis=1)
        if bad.any():
            names_bad = [names[i] for i in np.flatnonzero(bad)[:5]]
            raise ActionError(
                f"discrete actions out of range for agent(s) {names_bad}; "
                f"branch sizes are {spec.discrete_branches}"
            )
        return ActionTuple(continuous=continuous, discrete=discrete)

    def _one_action(
        self, spec: ActionSpec, name: str, action: Any, continuous: np.ndarray, discrete: np.ndarray
    ) -> None:
        """Write one agent's action into its rows (views), or raise ActionError naming the agent."""
        try:
            if spec.is_hybrid:
                continuous[:] = np.asarray(action["continuous"], np.float32).reshape(-1)
                discrete[:] = _integral(np.asarray(action["discrete"])).reshape(-1)
            elif spec.discrete_size:
                discrete[:] = _integral(np.asarray(action)).reshape(-1)
            else:
                continuous[:] = np.asarray(action, np.float32).reshape(-1)
        except (ValueError, TypeError, KeyError, IndexError) as e:
            raise ActionError(
                f"action {action!r} for agent {name!r} does not fit its action space "
                f"{self.action_space(name)}: {e}"
            ) from e

    def _apply(self, output: GameOutput) -> tuple[dict, dict, dict, dict, dict]:
        obs: dict[str, Any] = {}
        rewards: dict[str, float] = {}
        terminations: dict[str, bool] = {}
        truncations: dict[str, bool] = {}
        infos: dict[str, dict[str, Any]] = {}
        self._decision_names = {}
        ended: list[str] = []
        state_found = False
        agent_states: dict[str, np.ndarray] = {}
        for behavior, steps in output.steps.items():
            spec = self._spec(behavior)
            state_found = state_found or self._update_state(spec, steps.decision, steps.terminal)
            state_k = next((k for k, o in enumerate(spec.observation_specs) if o.name == GLOBAL_STATE), None)
            interrupted_rows = steps.terminal.interrupted.tolist()
            terminal_rewards = steps.terminal.reward.tolist()
            for row, key, name, entry in self._rows(spec, steps.terminal, requested=False):
                if name is None:  # ended before it ever requested a decision: nothing to report
                    continue
                interrupted = interrupted_rows[row]
                if interrupted:
                    entry["info"]["interrupted"] = True
                obs[name], infos[name] = entry["obs"], entry["info"]
                if state_k is not None:
                    agent_states[name] = steps.terminal.obs[state_k][row]
                rewards[name] = terminal_rewards[row]
                terminations[name], truncations[name] = not interrupted, interrupted
                del self._live[name], self._current[key]
                ended.append(name)
                self._ended(key)
            names = []
            decision_rewards = steps.decision.reward.tolist()
            for row, key, name, entry in self._rows(spec, steps.decision, requested=True):
                if name is None:
                    name = agent_name(behavior, key[1], self._episodes.get(key, 0))
                    self._current[key] = name
                self._live[name] = entry
                names.append(name)
                obs[name], infos[name] = entry["obs"], entry["info"]
                if state_k is not None:
                    agent_states[name] = steps.decision.obs[state_k][row]
                rewards[name] = decision_rewards[row]
                terminations[name] = truncations[name] = False
            self._decision_names[behavior] = names
        for name, entry in self._live.items():
            if name not in obs:  # alive, but no decision requested in this message
                entry["info"] = {**entry["info"], "requested_decision": False}
                obs[name], infos[name], rewards[name] = entry["obs"], entry["info"], 0.0
                terminations[name] = truncations[name] = False
                if name in self._agent_states:
                    agent_states[name] = self._agent_states[name]
        self._agent_states = agent_states
        self.agents = list(self._live)
        self.possible_agents = [*ended, *self.agents]
        return obs, rewards, terminations, truncations, infos

    def _rows(
        self, spec: BehaviorSpec, batch: AgentBatch, *, requested: bool
    ) -> Iterator[tuple[int, tuple[str, int], str | None, dict[str, Any]]]:
        """Per agent of ``batch``: (row, key, live name or None, {"obs", "info"}).

        Whole-batch conversions first (rows as views, ``tolist``), so the per-agent loop only builds dicts.
        """
        if not len(batch):
            return
        sensors = [list(batch.obs[k]) for k, o in enumerate(spec.observation_specs) if o.name != GLOBAL_STATE]
        agent_obs: list[Any] = sensors[0] if len(sensors) == 1 else list(zip(*sensors, strict=True))
        branches = spec.action_spec.discrete_branches
        if branches:
            agent_obs = [
                {"observation": o, "action_mask": m}
                for o, m in zip(agent_obs, _agent_masks(branches, batch), strict=True)
            ]
        columns = (batch.agent_id.tolist(), agent_obs, batch.group_id.tolist(), batch.group_reward.tolist())
        current, name = self._current, spec.name
        for row, (unity_id, one_obs, group_id, group_reward) in enumerate(zip(*columns, strict=True)):
            key = (name, unity_id)
            info = {
                "behavior": name,
                "agent_id": unity_id,
                "group_id": group_id,
                "group_reward": group_reward,
                "requested_decision": requested,
            }
            yield row, key, current.get(key), {"obs": one_obs, "info": info}

    def _update_state(self, spec: BehaviorSpec, *batches: AgentBatch) -> bool:
        for k, obs_spec in enumerate(spec.observation_specs):
            if obs_spec.name != GLOBAL_STATE:
                continue
            for batch in batches:
                if len(batch):
                    self._state = batch.obs[k][0]
                    return True
        return False


def _agent_masks(branches: tuple[int, ...], batch: AgentBatch) -> list[Any]:
    """Per agent: its action mask (int8, 1 = allowed), or a tuple of them for several branches."""
    if batch.action_mask is None:  # one shared, read-only all-allowed mask when the game sent none
        shared = [np.ones(b, np.int8) for b in branches]
        for mask in shared:
            mask.flags.writeable = False
        return [shared[0] if len(shared) == 1 else tuple(shared)] * len(batch)
    allowed = [list((~m).astype(np.int8)) for m in batch.action_mask]
    return allowed[0] if len(allowed) == 1 else list(zip(*allowed, strict=True))


def _integral(values: np.ndarray) -> np.ndarray:
    """Discrete actions as int64; a non-integer value (1.7) raises ValueError instead of being truncated."""
    if values.dtype.kind not in "iub" and not np.array_equal(values, np.rint(values)):
        raise ValueError(f"discrete actions must be integers, got {values.tolist()!r}")
    return values.astype(np.int64)
