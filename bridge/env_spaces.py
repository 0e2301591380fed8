"""Gymnasium spaces of :class:`~unimarl.bridge.parallel_env.UnityParallelEnv` agents, from behaviour specs.

Observations: one ``Box`` per sensor (a ``Tuple`` for several; the ``global_state`` sensor left out), inside
``Dict(observation=..., action_mask=...)`` for behaviours with discrete actions. Actions: ``Box(-1, 1)``
(continuous), ``Discrete`` (one branch), ``MultiDiscrete`` (several), or :class:`HybridActionSpace` for both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium import spaces

from unimarl.bridge.spec import ActionSpec, BehaviorSpec

#: Sensor name that marks an observation as the global state (the centralised critic's input).
GLOBAL_STATE = "global_state"


class HybridActionSpace(spaces.Dict):
    """``Dict(continuous=Box, discrete=Discrete|MultiDiscrete)``; ``sample`` also takes the plain mask."""

    def sample(self, mask: Any = None, probability: Any = None) -> dict[str, Any]:
        if mask is not None and not isinstance(mask, Mapping):
            mask = {"continuous": None, "discrete": mask}
        return super().sample(mask=mask, probability=probability)


def observation_space_for(spec: BehaviorSpec) -> spaces.Space:
    """The per-agent observation space of a behaviour (global state removed, masks added)."""
    boxes = [
        spaces.Box(-np.inf, np.inf, o.shape, np.float32)
        for o in spec.observation_specs
        if o.name != GLOBAL_STATE
    ]
    obs: spaces.Space = boxes[0] if len(boxes) == 1 else spaces.Tuple(boxes)
    branches = spec.action_spec.discrete_branches
    if not branches:
        return obs
    masks = [spaces.Box(0, 1, (b,), np.int8) for b in branches]
    mask: spaces.Space = masks[0] if len(masks) == 1 else spaces.Tuple(masks)
    return spaces.Dict({"observation": obs, "action_mask": mask})


def action_space_for(action_spec: ActionSpec) -> spaces.Space:
    """``Box(-1, 1)``, ``Discrete``, ``MultiDiscrete``, or :class:`HybridActionSpace` for both kinds."""
    branches = action_spec.discrete_branches
    discrete: spaces.Space | None = None
    if len(branches) == 1:
        discrete = spaces.Discrete(branches[0])
    elif branches:
        discrete = spaces.MultiDiscrete(list(branches))
    if action_spec.continuous_size == 0:
        if discrete is None:
            return spaces.Box(-1.0, 1.0, (0,), np.float32)
        return discrete
    box = spaces.Box(-1.0, 1.0, (action_spec.continuous_size,), np.float32)
    return box if discrete is None else HybridActionSpace({"continuous": box, "discrete": discrete})
