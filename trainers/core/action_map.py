"""The one mapping from a policy's continuous output to the game's action.

Training (the env wrappers in :mod:`unimarl.trainers.envs.factory`), the ONNX export (``continuous_actions``
and ``deterministic_continuous_actions``), hot-swap and ``unimarl play`` all use this module, so a game
receives the same action from the exported model as it did from the trainer for the same observation.

Rule, per continuous dimension, for the network's raw output ``a`` (the Gaussian sample, or its mean when
deterministic):

* ``y = clip(a, -3, 3) / 3`` in ``[-1, 1]``: ML-Agents' rule in training and in the model
  (``mlagents/trainers/torch_entities/agent_action.py`` ``AgentAction.to_action_tuple(clip=True)`` and
  ``action_model.py``'s exported ``clip(a, -3, 3) / 3``). A Unity game's action Box is ``[-1, 1]``, so Unity
  games receive ``y`` itself.
* Other envs (PettingZoo ``Box(low, high)``): ``y * scale + offset``, an affine map of ``[-1, 1]`` onto
  the dimension's range. Both bounds finite: ``scale = (high - low) / 2``, ``offset = (high + low) / 2``.
  Only ``low`` finite: ``[low, low + 2]`` (scale 1, offset ``low + 1``); only ``high`` finite:
  ``[high - 2, high]``; both infinite: ``[-1, 1]`` (no map). A dimension without a finite range has no scale
  to map onto, so it keeps ML-Agents' unit width; wrap such an env to give finite bounds when the task needs
  larger actions.
* The numpy side finally clips to ``[low, high]``, a guard against float rounding at the bounds (it changes
  a value by at most one float32 step); the ONNX graph leaves it out.

:func:`to_env` (numpy, torch-free) and :func:`to_env_torch` (the same rule on tensors, traced into the
exported graph with the operators Clip, Div, Mul and Add) are the two spellings of this rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor

CONTINUOUS_CLIP = 3.0
"""Raw continuous outputs are clipped to [-CONTINUOUS_CLIP, CONTINUOUS_CLIP] and divided by it (ML-Agents)."""


@dataclass(frozen=True)
class ActionBounds:
    """Bounds of a continuous action Box other than ML-Agents' ``[-1, 1]`` (infinite bounds allowed)."""

    low: tuple[float, ...]
    high: tuple[float, ...]

    def scale_offset(self) -> tuple[np.ndarray, np.ndarray]:
        """float32 ``scale`` and ``offset`` per dimension (module docstring)."""
        low, high = np.asarray(self.low, np.float64), np.asarray(self.high, np.float64)
        low_ok, high_ok = np.isfinite(low), np.isfinite(high)
        both = low_ok & high_ok
        low, high = np.where(low_ok, low, 0.0), np.where(high_ok, high, 0.0)  # no inf - inf below
        scale = np.where(both, (high - low) / 2.0, 1.0)
        offset = np.where(both, (high + low) / 2.0, 0.0)
        offset = np.where(low_ok & ~high_ok, low + 1.0, offset)
        offset = np.where(high_ok & ~low_ok, high - 1.0, offset)
        return scale.astype(np.float32), offset.astype(np.float32)

    def to_entry(self) -> dict[str, list[float | None]]:
        """JSON form (an infinite bound is ``null``); :meth:`from_entry` reads it back."""
        return {
            "low": [None if not np.isfinite(v) else float(v) for v in self.low],
            "high": [None if not np.isfinite(v) else float(v) for v in self.high],
        }

    @staticmethod
    def from_entry(entry: dict[str, Any] | None) -> ActionBounds | None:
        """The bounds :meth:`to_entry` wrote (None stays None: ML-Agents' ``[-1, 1]``)."""
        if entry is None:
            return None
        low = tuple(-np.inf if v is None else float(v) for v in entry["low"])
        high = tuple(np.inf if v is None else float(v) for v in entry["high"])
        return ActionBounds(low, high)


def bounds_entry(bounds: ActionBounds | None) -> dict[str, list[float | None]] | None:
    """JSON form of optional bounds (None: Unity's ``[-1, 1]``), read by :meth:`ActionBounds.from_entry`."""
    return None if bounds is None else bounds.to_entry()


def bounds_of(low: Sequence[float] | np.ndarray, high: Sequence[float] | np.ndarray) -> ActionBounds | None:
    """The :class:`ActionBounds` of a 1-D Box, or None when it is ``[-1, 1]`` in every dimension (Unity)."""
    lo = np.asarray(low, np.float64).ravel()
    hi = np.asarray(high, np.float64).ravel()
    if lo.shape != hi.shape:
        raise ValueError(f"Box bounds have shapes {lo.shape} and {hi.shape}; they must match")
    if np.all(lo == -1.0) and np.all(hi == 1.0):
        return None
    return ActionBounds(tuple(float(v) for v in lo), tuple(float(v) for v in hi))


def to_env(raw: np.ndarray, bounds: ActionBounds | None = None) -> np.ndarray:
    """float32 ``[n, c]`` game actions for raw outputs ``[n, c]`` (numpy spelling of the module's rule)."""
    squashed = np.clip(np.asarray(raw, np.float32), -CONTINUOUS_CLIP, CONTINUOUS_CLIP) / np.float32(
        CONTINUOUS_CLIP
    )
    if bounds is None:
        return squashed
    scale, offset = bounds.scale_offset()
    mapped = squashed * scale + offset
    return np.clip(mapped, np.asarray(bounds.low), np.asarray(bounds.high)).astype(np.float32)


def to_env_torch(raw: Tensor, bounds: ActionBounds | None = None) -> Tensor:
    """The same rule as :func:`to_env` on a tensor ``[n, c]`` (traced into the ONNX export)."""
    import torch

    squashed = torch.clamp(raw, -CONTINUOUS_CLIP, CONTINUOUS_CLIP) / CONTINUOUS_CLIP
    if bounds is None:
        return squashed
    scale, offset = bounds.scale_offset()
    return squashed * torch.as_tensor(scale, device=raw.device) + torch.as_tensor(offset, device=raw.device)
