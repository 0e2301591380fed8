"""Running statistics used by the MAPPO learner: observation and value normalisation.

- :class:`RunningMeanStd`: exact mean/variance of everything seen so far, merged batch by batch with the
  parallel algorithm of Chan, Golub & LeVeque (1979). Statistics are registered buffers, so they travel in
  ``state_dict``.
- :class:`ObsNormalizer`: a :class:`RunningMeanStd` over a flat feature vector whose forward pass is ``clip((x
  - mean) / std, -5, 5)``; ``std`` is kept as its own buffer so that the exported ONNX graph is only Sub, Div
  and Clip.
- :class:`ValueNorm`: the value normaliser of the MAPPO reference code (Yu et al. 2021, arXiv 2103.01955): a
  debiased exponential moving average of the mean and the mean square of the returns (``beta`` close to 1, one
  EMA step per :meth:`ValueNorm.update` call). The critic regresses ``normalize(returns)``; its outputs are
  ``denormalize``-d before they are used for GAE. Before its first update it is the identity.
- :class:`PopArt`: the same statistics, but an update also rescales the critic's output layer so its
  de-normalised outputs are preserved (van Hasselt et al. 2016, "Learning values across many orders of
  magnitude", arXiv 1602.07714, eq. 6).

All three value/observation normalisers accept float tensors; statistics are accumulated in float64.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

OBS_CLIP = 5.0
"""Normalised observations are clipped to [-OBS_CLIP, OBS_CLIP]."""


class RunningMeanStd(nn.Module):
    """Mean and (population) variance over the first axis of every batch passed to :meth:`update`.

    ``epsilon`` is the pseudo-count of the initial statistics (mean 0, var 1); 0 gives the exact statistics of
    the data seen.
    """

    mean: Tensor
    var: Tensor
    count: Tensor

    def __init__(self, shape: tuple[int, ...], epsilon: float = 1e-4) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(float(epsilon), dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: Tensor) -> None:
        """Merge the statistics of ``x`` ([n, *shape]); an empty batch changes nothing."""
        n = x.shape[0]
        if n == 0:
            return
        x = x.to(self.mean.device, torch.float64)
        batch_mean = x.mean(dim=0)
        batch_var = x.var(dim=0, unbiased=False)
        total = self.count + n
        delta = batch_mean - self.mean
        # Chan et al.: M2 = M2_a + M2_b + delta^2 * n_a * n_b / (n_a + n_b)
        m2 = self.var * self.count + batch_var * n + delta.square() * self.count * n / total
        self.mean.add_(delta * n / total)
        self.var.copy_(m2 / total)
        self.count.copy_(total)


class ObsNormalizer(nn.Module):
    """Normalises flat feature vectors [B, size] with running statistics, clipped to [-5, 5]."""

    offset: Tensor
    scale: Tensor

    def __init__(self, size: int, epsilon: float = 1e-8) -> None:
        super().__init__()
        self.stats = RunningMeanStd((size,))
        self.epsilon = epsilon
        self.register_buffer("offset", torch.zeros(size))
        self.register_buffer("scale", torch.ones(size))

    @torch.no_grad()
    def update(self, x: Tensor) -> None:
        """Merge ``x`` [n, size] into the statistics and refresh the float32 offset/scale used by forward."""
        self.stats.update(x)
        self.offset.copy_(self.stats.mean.to(self.offset.dtype))
        self.scale.copy_(torch.sqrt(self.stats.var + self.epsilon).to(self.scale.dtype))

    def forward(self, x: Tensor) -> Tensor:
        return torch.clamp((x - self.offset) / self.scale, -OBS_CLIP, OBS_CLIP)


class ValueNorm(nn.Module):
    """Debiased EMA of mean and mean square of scalar targets, as in the MAPPO reference code.

    After updates with batch means m_1..m_n the mean is sum_k w_k m_k / sum_k w_k with
    w_k = beta^(n-k) (1 - beta), which for beta -> 1 is the plain average of the batch means; the first update
    gives exactly the batch's mean and variance. The variance is clamped below at ``min_var`` so near-constant
    returns do not blow up the normalised targets. Before any update the statistics are mean 0, variance 1
    (the identity): the reference code divides by a debiasing term clamped at 1e-5, which with no data gives
    variance 0, floored to ``min_var``, and scales every target by 1 / sqrt(min_var) = 10.
    """

    running_mean: Tensor
    running_mean_sq: Tensor
    debiasing_term: Tensor

    def __init__(self, beta: float = 0.99999, min_var: float = 1e-2) -> None:
        super().__init__()
        self.beta = beta
        self.min_var = min_var
        self.register_buffer("running_mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("running_mean_sq", torch.zeros((), dtype=torch.float64))
        self.register_buffer("debiasing_term", torch.zeros((), dtype=torch.float64))

    @property
    def initialised(self) -> bool:
        """Whether any data has been seen (before that, :meth:`normalize` is the identity)."""
        return bool(self.debiasing_term.item() > 0.0)

    def mean_var(self) -> tuple[Tensor, Tensor]:
        """The debiased mean and variance (float64 scalars); (0, 1) before the first update."""
        debias = self.debiasing_term
        seen = debias > 0.0
        # no floor on the debiasing term: after n updates it is 1 - beta^n > 0, which for beta close to 1 lies
        # below the reference's epsilon (1e-5) and would then shrink the mean
        safe = torch.where(seen, debias, torch.ones_like(debias))
        mean = self.running_mean / safe
        var = (self.running_mean_sq / safe - mean.square()).clamp(min=self.min_var)
        return torch.where(seen, mean, torch.zeros_like(mean)), torch.where(seen, var, torch.ones_like(var))

    @torch.no_grad()
    def update(self, x: Tensor) -> None:
        """One EMA step towards the mean and mean square of ``x`` (any shape); empty ``x`` changes nothing."""
        if x.numel() == 0:
            return
        x = x.to(self.running_mean.device, torch.float64)
        w = self.beta
        self.running_mean.mul_(w).add_(x.mean() * (1.0 - w))
        self.running_mean_sq.mul_(w).add_(x.square().mean() * (1.0 - w))
        self.debiasing_term.mul_(w).add_(1.0 - w)

    def normalize(self, x: Tensor) -> Tensor:
        """Reward units -> normalised units."""
        mean, var = self.mean_var()
        return ((x - mean) / torch.sqrt(var)).to(x.dtype)

    def denormalize(self, x: Tensor) -> Tensor:
        """Normalised units -> reward units."""
        mean, var = self.mean_var()
        return (x * torch.sqrt(var) + mean).to(x.dtype)


class PopArt(ValueNorm):
    """:class:`ValueNorm` statistics whose update preserves the outputs of the value head (PopArt).

    The value head is the critic's last linear layer (out_features 1), passed to :meth:`update_preserving`.
    """

    @torch.no_grad()
    def update_preserving(self, x: Tensor, head: nn.Linear) -> None:
        """Update the statistics with ``x`` and rescale ``head`` so ``denormalize(head(h))`` is unchanged.

        PopArt (arXiv 1602.07714, eq. 6): W' = W sigma / sigma', b' = (sigma b + mu - mu') / sigma'.
        """
        old_mean, old_var = self.mean_var()
        self.update(x)
        new_mean, new_var = self.mean_var()
        old_std, new_std = torch.sqrt(old_var), torch.sqrt(new_var)
        weight = head.weight.data.to(torch.float64)
        bias = head.bias.data.to(torch.float64)
        head.weight.data.copy_((weight * old_std / new_std).to(head.weight.dtype))
        head.bias.data.copy_(((old_std * bias + old_mean - new_mean) / new_std).to(head.bias.dtype))
