"""What a rollout worker reads from an env's spaces: the global-state shape of a behaviour and which
observation sensors are bytes."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from unimarl.bridge.env_spaces import GLOBAL_STATE


def game_state_shape(env: Any, behavior: str) -> tuple[int, ...] | None:
    """Shape of ``behavior``'s ``global_state`` sensor in a Unity/sim game, or None when it has none."""
    spec = getattr(env, "behavior_specs", {}).get(behavior)
    for obs in getattr(spec, "observation_specs", ()):
        if obs.name == GLOBAL_STATE:
            return tuple(int(d) for d in obs.shape)
    return None


def byte_sensors(obs_space: spaces.Space) -> tuple[bool, ...]:
    """Per sensor of an agent's observation space: True when it is a uint8 Box."""
    if isinstance(obs_space, spaces.Dict) and "observation" in obs_space.spaces:
        obs_space = obs_space["observation"]
    sensors = obs_space.spaces if isinstance(obs_space, spaces.Tuple) else (obs_space,)
    return tuple(isinstance(s, spaces.Box) and s.dtype == np.uint8 for s in sensors)
