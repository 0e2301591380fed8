"""PPO loss terms for MAPPO, as pure functions of tensors with the loss mask passed in.

Every function reduces with :func:`masked_mean`: entries with ``mask == 0`` (dead agents, padding) contribute
nothing, and an all-zero mask gives 0 rather than NaN. Shapes: all arguments are [N] (one entry per agent
step). Signs follow the optimiser: the returned losses are minimised; :func:`entropy_bonus` is the (positive)
mean entropy, subtracted from the total loss with the entropy coefficient.
"""

from __future__ import annotations

import torch
from torch import Tensor


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` over entries where ``mask`` is nonzero (0 when the mask is empty)."""
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def policy_loss(logp_new: Tensor, logp_old: Tensor, advantages: Tensor, mask: Tensor, clip: float) -> Tensor:
    """Clipped surrogate objective, negated (Schulman et al. 2017, arXiv 1707.06347, eq. 7)."""
    ratio = torch.exp(logp_new - logp_old)
    surrogate = ratio * advantages
    clipped_surrogate = torch.clamp(ratio, 1.0 - clip, 1.0 + clip) * advantages
    return -masked_mean(torch.min(surrogate, clipped_surrogate), mask)


def _regression_loss(error: Tensor, huber_delta: float | None) -> Tensor:
    """Elementwise 0.5 * e^2, or the Huber loss with threshold ``huber_delta`` (equal for |e| <= delta)."""
    if huber_delta is None:
        return 0.5 * error.square()
    abs_error = error.abs()
    quadratic = 0.5 * error.square()
    linear = huber_delta * (abs_error - 0.5 * huber_delta)
    return torch.where(abs_error <= huber_delta, quadratic, linear)


def value_loss(
    values_new: Tensor,
    values_old: Tensor,
    returns: Tensor,
    mask: Tensor,
    clip: float | None,
    huber_delta: float | None,
) -> Tensor:
    """Value regression loss, clipped around the behaviour-time values when ``clip`` is set.

    With clipping, the elementwise loss is max(l(R - V), l(R - V_clipped)) where V_clipped = V_old +
    clamp(V - V_old, -clip, clip), as in the MAPPO reference code; ``l`` is 0.5 e^2 or Huber(``huber_delta``).
    All values and returns must be in the same units (normalised when a value normaliser is used).
    """
    loss = _regression_loss(returns - values_new, huber_delta)
    if clip is not None:
        values_clipped = values_old + torch.clamp(values_new - values_old, -clip, clip)
        loss = torch.max(loss, _regression_loss(returns - values_clipped, huber_delta))
    return masked_mean(loss, mask)


def entropy_bonus(entropy: Tensor, mask: Tensor) -> Tensor:
    """Mean policy entropy over counted steps (to be maximised)."""
    return masked_mean(entropy, mask)
