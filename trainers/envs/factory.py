"""Environments for training: creation from the config, and the view the rollout workers need of them.

Any PettingZoo ``ParallelEnv`` can be trained on. Unity games and sim games arrive through
``unimarl.bridge.UnityParallelEnv``; other envs are imported from ``package.module:factory`` (or
``path/to/file.py:factory``).

Behaviours: a Unity agent's behaviour is ``infos[agent]["behavior"]``; for other envs it is the agent name
without a trailing ``_<index>`` (``agent_0`` -> ``agent``, ``red_12`` -> ``red``). Teams (whose
observations feed an agent's centralised critic): see :mod:`unimarl.trainers.algos.mappo.teams`.

Spaces: observations are a Box, a Tuple of Boxes (one per sensor), or PettingZoo's action-mask convention
``Dict{"observation": ..., "action_mask": ...}`` (1 = allowed, one array per discrete branch or one array
for all). Actions are Discrete, MultiDiscrete, Box (continuous) or ``Dict{"continuous": Box, "discrete":
Discrete | MultiDiscrete}`` (hybrid). A continuous action reaches the env through
:func:`unimarl.trainers.core.action_map.to_env` (ML-Agents' ``clip(a, -3, 3) / 3``, then mapped onto the Box's
bounds), the same rule the exported model applies.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from unimarl.bridge.errors import BridgeError
from unimarl.bridge.spec import ActionSpec, DimensionProperty, ObservationSpec
from unimarl.trainers.core.action_map import ActionBounds, bounds_of, to_env
from unimarl.trainers.core.batch import PolicySpec
from unimarl.trainers.core.config import EngineSettings, EnvSettings, SamplerSettings
from unimarl.trainers.core.errors import EnvSetupError

logger = logging.getLogger(__name__)

_INDEX_SUFFIX = re.compile(r"^(.+)_(\d+)$")


def behavior_from_name(agent: str) -> str:
    """Behaviour of a non-Unity agent: its name without a trailing ``_<index>``."""
    match = _INDEX_SUFFIX.match(agent)
    return match.group(1) if match else agent


def load_factory(target: str) -> Callable[..., Any]:
    """Import ``package.module:factory`` or ``path/to/file.py:factory``."""
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        raise EnvSetupError(f"env.pettingzoo must look like 'package.module:factory', got '{target}'")
    try:
        if module_name.endswith(".py"):
            spec = importlib.util.spec_from_file_location(Path(module_name).stem, module_name)
            if spec is None or spec.loader is None:
                raise EnvSetupError(f"env.pettingzoo: cannot load file '{module_name}'")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except (ImportError, FileNotFoundError) as e:
        raise EnvSetupError(
            f"env.pettingzoo: cannot import '{module_name}' ({e}); check the module path"
        ) from e
    try:
        return getattr(module, attr)
    except AttributeError as e:
        raise EnvSetupError(f"env.pettingzoo: module '{module_name}' has no attribute '{attr}'") from e


def _side_channels(engine: EngineSettings, parameters: dict[str, Any], seed: int = 0) -> list[Any]:
    """Engine settings and environment parameters for one game (see :func:`send_parameters`)."""
    from unimarl.bridge.side_channels import EngineConfigurationChannel, EnvironmentParametersChannel

    engine_channel = EngineConfigurationChannel()
    engine_channel.set_configuration_parameters(
        width=engine.width,
        height=engine.height,
        quality_level=engine.quality_level,
        time_scale=engine.time_scale,
        target_frame_rate=engine.target_frame_rate,
        capture_frame_rate=engine.capture_frame_rate,
    )
    params_channel = EnvironmentParametersChannel()
    send_parameters(params_channel, parameters, seed)
    return [engine_channel, params_channel]


def send_parameters(channel: Any, parameters: dict[str, Any], seed: int = 0) -> None:
    """Queue environment ``parameters`` on a game's EnvironmentParametersChannel (sent with its next
    message): numbers, or samplers seeded with the game's ``seed`` (each game draws its own values) unless
    they name their own seed."""
    for key, value in parameters.items():
        if not isinstance(value, SamplerSettings):
            channel.set_float_parameter(key, float(value))
            continue
        p = value.sampler_parameters
        sampler_seed = int(p.get("seed", seed)) % 2**31
        if value.sampler_type == "uniform":
            channel.set_uniform_sampler_parameters(
                key, float(p["min_value"]), float(p["max_value"]), sampler_seed
            )
        elif value.sampler_type == "gaussian":
            channel.set_gaussian_sampler_parameters(key, float(p["mean"]), float(p["st_dev"]), sampler_seed)
        else:
            intervals = [(float(low), float(high)) for low, high in p["intervals"]]
            channel.set_multirangeuniform_sampler_parameters(key, intervals, sampler_seed)


@dataclass(frozen=True)
class EnvFactory:
    """Picklable recipe for the environments of one run (sent to Ray actors)."""

    settings: EnvSettings
    engine: EngineSettings = field(default_factory=EngineSettings)
    environment_parameters: dict[str, float | SamplerSettings] = field(default_factory=dict)
    """The values games start with (for a curriculum: its current lesson)."""
    run_dir: str = "."
    build_path: str | None = None
    """For sim games: the wrapper written by ``unimarl.sim.make_build`` (re-made on a node that lacks it)."""

    def __call__(self, worker_index: int, env_index: int, seed: int, attempt: int = 0) -> Any:
        """Env ``env_index`` of worker ``worker_index``; ``attempt`` > 0: a relaunch of a game (its own log
        folder, ``...-restart<attempt>``)."""
        kind = self.settings.kind
        if kind == "pettingzoo":
            env = load_factory(str(self.settings.pettingzoo))(**self.settings.kwargs)
            if not hasattr(env, "step") or not hasattr(env, "possible_agents"):
                raise EnvSetupError(
                    f"env.pettingzoo factory '{self.settings.pettingzoo}' returned {type(env).__name__}, "
                    "not a PettingZoo ParallelEnv"
                )
            return env
        from unimarl.bridge.parallel_env import UnityParallelEnv
        from unimarl.bridge.policy_channel import PolicyChannel

        policy_channel = (
            PolicyChannel()
        )  # hot-swap (unimarl.trainers.export.hotswap) pushes models through it
        log_dir = Path(self.run_dir) / "logs" / f"worker{worker_index}-env{env_index}"
        if attempt:
            log_dir = log_dir.with_name(f"{log_dir.name}-restart{attempt}")
        file_name = None if kind == "editor" else self._executable()
        channels = _side_channels(self.engine, self.environment_parameters, seed)
        env = UnityParallelEnv(
            file_name,
            seed=seed,
            no_graphics=self.engine.no_graphics,
            timeout=self.settings.timeout_s,
            side_channels=[*channels, policy_channel],
            additional_args=tuple(self.settings.args) if kind == "build" else (),
            log_dir=str(log_dir),
            port=self.settings.editor_port if kind == "editor" else None,
            num_areas=self.settings.num_areas,
        )
        env.policy_channel = policy_channel
        env.params_channel = channels[1]  # curriculum lessons change parameters while the game runs
        env.params_seed = seed
        return env

    def _executable(self) -> str:
        if self.settings.build:
            return self.settings.build
        if self.build_path and Path(self.build_path).exists():
            return self.build_path
        return str(make_sim_build(self.settings, Path(self.run_dir)))


def make_sim_build(settings: EnvSettings, run_dir: Path) -> Path:
    """Write the sim game's executable wrapper into ``run_dir/build``."""
    import unimarl.sim

    if settings.sim not in unimarl.sim.GAMES:
        raise EnvSetupError(
            f"env.sim '{settings.sim}' is not a sim game; known: {', '.join(unimarl.sim.GAMES)}"
        )
    return Path(unimarl.sim.make_build(settings.sim, run_dir / "build", extra_args=tuple(settings.args)))


@dataclass(frozen=True)
class AgentView:
    """How one behaviour's observations and actions map to the policy's arrays."""

    spec: PolicySpec
    obs_is_dict: bool
    obs_is_tuple: bool
    action_space: spaces.Space

    def obs_arrays(self, raw: Any) -> tuple[list[np.ndarray], np.ndarray | None]:
        """Split one agent's observation into its sensors and its flattened float mask (None without one)."""
        mask = None
        if self.obs_is_dict:
            raw_mask = raw["action_mask"]
            mask = (
                np.concatenate([np.asarray(m, np.float32).ravel() for m in raw_mask])
                if isinstance(raw_mask, tuple | list)
                else np.asarray(raw_mask, np.float32).ravel()
            )
            raw = raw["observation"]
        sensors = list(raw) if self.obs_is_tuple else [raw]
        return sensors, mask

    def stack(self, raws: Sequence[Any]) -> tuple[tuple[np.ndarray, ...], np.ndarray | None]:
        """Observations of n agents -> one float32 [n, *shape] array per sensor, and the float32 [n, mask]
        action mask (all ones when the space has none but the actions are discrete; None otherwise)."""
        n = len(raws)
        mask = None
        if self.obs_is_dict:
            masks = [r["action_mask"] for r in raws]
            if isinstance(masks[0], tuple | list):
                parts = [np.stack([m[k] for m in masks]).reshape(n, -1) for k in range(len(masks[0]))]
                mask = np.concatenate(parts, axis=1).astype(np.float32)
            else:
                mask = np.stack(masks).reshape(n, -1).astype(np.float32)
            raws = [r["observation"] for r in raws]
        elif self.spec.mask_size:
            mask = np.ones((n, self.spec.mask_size), np.float32)
        if self.obs_is_tuple:
            obs = tuple(
                np.stack([r[k] for r in raws]).astype(np.float32, copy=False)
                for k in range(len(self.spec.obs_shapes))
            )
        else:
            obs = (np.stack(raws).astype(np.float32, copy=False),)
        return obs, mask

    def env_actions(self, continuous: np.ndarray, discrete: np.ndarray) -> list[Any]:
        """Actions of n agents ([n, c] and [n, branches]) in the env's action space, one per agent."""
        space = self.action_space
        if isinstance(space, spaces.Discrete):
            return (discrete[:, 0] + int(space.start)).tolist()
        if isinstance(space, spaces.MultiDiscrete):
            return list(discrete.astype(np.int64))
        if isinstance(space, spaces.Box):
            return list(to_env(continuous, self.spec.action_bounds).astype(space.dtype, copy=False))
        mapped = to_env(continuous, self.spec.action_bounds)
        return [self.to_env_action(c, d, mapped=True) for c, d in zip(mapped, discrete, strict=True)]

    def to_env_action(self, continuous: np.ndarray, discrete: np.ndarray, mapped: bool = False) -> Any:
        """One agent's action in the env's action space from the policy's raw output (``mapped``: the
        continuous part already went through :func:`~unimarl.trainers.core.action_map.to_env`)."""
        space = self.action_space
        if isinstance(space, spaces.Dict):
            box = space["continuous"]
            assert isinstance(box, spaces.Box)  # checked by _action_spec when the view was made
            return {
                "continuous": self._continuous(box, continuous, mapped),
                "discrete": self._discrete(space["discrete"], discrete),
            }
        if isinstance(space, spaces.Box):
            return self._continuous(space, continuous, mapped)
        return self._discrete(space, discrete)

    def _continuous(self, space: spaces.Box, value: np.ndarray, mapped: bool) -> np.ndarray:
        if not mapped:
            value = to_env(np.asarray(value).reshape(1, -1), self.spec.action_bounds)[0]
        return value.astype(space.dtype, copy=False)

    @staticmethod
    def _discrete(space: spaces.Space, value: np.ndarray) -> Any:
        if isinstance(space, spaces.Discrete):
            return int(value[0]) + int(space.start)
        return value.astype(np.int64)


def _action_spec(space: spaces.Space, where: str) -> ActionSpec:
    if isinstance(space, spaces.Discrete):
        return ActionSpec(0, (int(space.n),))
    if isinstance(space, spaces.MultiDiscrete):
        return ActionSpec(0, tuple(int(n) for n in np.asarray(space.nvec).ravel()))
    if isinstance(space, spaces.Box) and len(space.shape) == 1:
        return ActionSpec(int(space.shape[0]), ())
    if isinstance(space, spaces.Dict) and set(space.spaces) == {"continuous", "discrete"}:
        cont, disc = _action_spec(space["continuous"], where), _action_spec(space["discrete"], where)
        return ActionSpec(cont.continuous_size, disc.discrete_branches)
    raise EnvSetupError(
        f"{where}: action space {space} is not supported; use Discrete, MultiDiscrete, a 1-D Box, or "
        "Dict{'continuous': Box, 'discrete': Discrete|MultiDiscrete}"
    )


def _action_bounds(space: spaces.Space) -> ActionBounds | None:
    """Bounds of the continuous part of an action space (None: none, or ML-Agents' ``[-1, 1]``)."""
    box = space["continuous"] if isinstance(space, spaces.Dict) else space
    if not isinstance(box, spaces.Box) or not box.shape or not box.shape[0]:
        return None
    return bounds_of(box.low, box.high)


def agent_view(
    obs_space: spaces.Space, action_space: spaces.Space, state_shape: tuple[int, ...] | None, where: str
) -> AgentView:
    """Derive the policy spec and converters from one agent's spaces."""
    obs_is_dict = isinstance(obs_space, spaces.Dict) and "observation" in obs_space.spaces
    inner = obs_space["observation"] if isinstance(obs_space, spaces.Dict) and obs_is_dict else obs_space
    obs_is_tuple = isinstance(inner, spaces.Tuple)
    sensors: Sequence[spaces.Space] = inner.spaces if isinstance(inner, spaces.Tuple) else (inner,)
    for sensor in sensors:
        if not isinstance(sensor, spaces.Box):
            raise EnvSetupError(
                f"{where}: observation space {sensor} is not supported; use Box sensors "
                "(a Tuple of Boxes for several), optionally in Dict{'observation', 'action_mask'}"
            )
    spec = PolicySpec(
        obs_shapes=tuple(tuple(int(d) for d in s.shape or ()) for s in sensors),
        action_spec=_action_spec(action_space, where),
        state_shape=state_shape,
        action_bounds=_action_bounds(action_space),
    )
    return AgentView(spec, obs_is_dict, obs_is_tuple, action_space)


def env_state(env: Any) -> np.ndarray | None:
    """The env's global state, or None when it provides none."""
    try:
        state = env.state()
    except (NotImplementedError, AttributeError, BridgeError):
        return None
    return None if state is None else np.asarray(state, np.float32)


def is_unity(env: Any) -> bool:
    """True for the bridge's env (behaviour and group from infos)."""
    return hasattr(env, "agent_behavior") and hasattr(env, "behavior_specs")


def agent_behavior(env: Any, agent: str, info: dict[str, Any] | None) -> str:
    """Behaviour of ``agent`` (see the module docstring)."""
    if is_unity(env):
        if info and "behavior" in info:
            return str(info["behavior"])
        return str(env.agent_behavior(agent))
    return behavior_from_name(agent)


def credit_group_reward(
    reward: float, info: dict[str, Any] | None, weight: float, behavior: str, warned: set[str]
) -> float:
    """An agent's reward plus ``weight`` times its Unity group reward (``infos["group_reward"]``, ML-Agents'
    ``AddGroupReward``), as MAPPO and the mean-field learners credit it.

    A non-zero group reward met with weight 0 is ignored and warned about once per behaviour (``warned``
    records the behaviours already warned about).
    """
    group = float((info or {}).get("group_reward", 0.0) or 0.0)
    if group and not weight and behavior not in warned:
        warned.add(behavior)
        logger.warning(
            "behaviour '%s' receives group rewards (Unity AddGroupReward) but its group_reward_weight is 0, "
            "so they are ignored; unless the game also adds them to the agents' own rewards, set "
            "behaviors.%s.group_reward_weight (default 1.0)",
            behavior,
            behavior.split("?", 1)[0],
        )
    return float(reward) + weight * group


def visual_layout_of(observations: Sequence[ObservationSpec]) -> str | None:
    """The layout of a game's rank-3 observations read from their dimension properties (C# 3.x marks them
    [None, TE, TE], 2.x [TE, TE, None]); None when there is no rank-3 observation or no marking."""
    for obs in observations:
        props = tuple(obs.dimension_property)
        if len(obs.shape) != 3 or len(props) != 3:
            continue
        if props[0] == DimensionProperty.NONE and props[2] != DimensionProperty.NONE:
            return "CHW"
        if props[2] == DimensionProperty.NONE and props[0] != DimensionProperty.NONE:
            return "HWC"
    return None
