"""Actor and centralised critic networks of the MAPPO learner, and their action distributions.

Actor: all observation sensors flattened and concatenated -> :class:`ObsNormalizer` (running mean/std, clipped
to [-5, 5]; registered buffers, so part of ``state_dict`` and of the ONNX graph) -> MLP trunk -> heads:

- continuous: a mean head and a state-independent ``log_std`` parameter; actions ~ Normal(mean, exp(log_std)),
  sampled unclipped (the rollout side clips to [-1, 1] before the game sees them);
- discrete: one logits head over all branches; masked logits are ``logit - (1 - mask) * MASK_PENALTY`` (mask 1
  = allowed), so a masked action has probability exactly 0 after softmax in float32 and still a finite
  log-prob (no NaN in entropies); then one slice per branch, each an independent Categorical.

Hybrid actions sum the log-probs and entropies of both parts. The actor's forward uses no data-dependent
Python control flow and only Flatten, Concat, Sub, Div, Clip, Gemm/MatMul+Add, Tanh/Relu, torch's layer_norm
(exported as elementary ops below opset 17), Mul and Slice, so it exports to ONNX opset <= 15.

Each hidden layer is Linear -> activation -> LayerNorm (when ``layer_norm``), as in the MAPPO reference code.
The inputs get no LayerNorm: they are already normalised by running statistics, and a per-sample LayerNorm
would erase the magnitude of small observation vectors (a 1-D observation would become constant 0).

Critic: values in normalised units ([B]). With ``spec.state_shape`` it is an MLP on [normalised state, own
obs]. Without, it builds an agent-specific global state: own obs, plus mean and max pooling over a
per-teammate encoder applied to ``team_obs`` (masked by ``team_mask``), plus log(1 + number of teammates).
Pooling is permutation invariant and works for any K, including K = 0 (pooled features are then 0).

With ``centralized=False`` the critic sees only the agent's own observation (decentralised, as in plain
shared-policy PPO): the baseline that MAPPO's centralised critic is compared against.

Init: orthogonal, gain sqrt(2) for hidden layers, 0.01 for the policy heads, 1 for the value head; biases 0.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from unimarl.trainers.batch import PolicySpec
from unimarl.trainers.errors import ConfigError, TrainerError
from unimarl.trainers.normalizers import ObsNormalizer

MASK_PENALTY = 1e8
"""Subtracted from the logit of every masked action."""

_ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}
_LOG_2PI = math.log(2.0 * math.pi)


class ActorOutput(NamedTuple):
    """Distribution parameters for B agents (see the module docstring)."""

    continuous_mean: Tensor | None  # [B, c]
    continuous_log_std: Tensor | None  # [c]
    discrete_logits: list[Tensor]  # one [B, branch] per branch, masking applied


@dataclass(frozen=True)
class CriticInputTensors:
    """Torch counterpart of :class:`unimarl.trainers.batch.CriticInput`."""

    state: Tensor | None = None  # [B, *state_shape]
    team_obs: Tensor | None = None  # [B, K, obs_size]
    team_mask: Tensor | None = None  # bool [B, K]


def _init(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def _check_hidden_sizes(hidden_sizes: Sequence[int]) -> list[int]:
    if not hidden_sizes or any(int(h) <= 0 for h in hidden_sizes):
        raise ConfigError(f"hidden sizes must be a non-empty list of positive ints, got {list(hidden_sizes)}")
    return [int(h) for h in hidden_sizes]


def mlp(in_size: int, hidden_sizes: Sequence[int], activation: str, layer_norm: bool) -> nn.Sequential:
    """Hidden layers Linear -> activation -> [LayerNorm], orthogonally initialised with gain sqrt(2)."""
    if activation not in _ACTIVATIONS:
        raise ConfigError(
            f"unknown activation {activation!r}; use one of {sorted(_ACTIVATIONS)} in network_settings"
        )
    layers: list[nn.Module] = []
    size = in_size
    for hidden in _check_hidden_sizes(hidden_sizes):
        layers += [_init(nn.Linear(size, int(hidden)), math.sqrt(2.0)), _ACTIVATIONS[activation]()]
        if layer_norm:
            layers.append(nn.LayerNorm(int(hidden)))
        size = int(hidden)
    return nn.Sequential(*layers)


def flatten_obs(obs: Sequence[Tensor]) -> Tensor:
    """Concatenate all sensors, each flattened to [B, -1]."""
    return torch.cat([torch.flatten(o, start_dim=1) for o in obs], dim=1)


class Actor(nn.Module):
    """Shared policy network of one behaviour (see the module docstring)."""

    def __init__(
        self,
        spec: PolicySpec,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        layer_norm: bool = True,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.obs_norm = ObsNormalizer(spec.obs_size)
        self.trunk = mlp(spec.obs_size, hidden_sizes, activation, layer_norm)
        out = int(hidden_sizes[-1])
        action_spec = spec.action_spec
        self.mean_head = (
            _init(nn.Linear(out, action_spec.continuous_size), 0.01) if action_spec.continuous_size else None
        )
        self.log_std = (
            nn.Parameter(torch.zeros(action_spec.continuous_size)) if action_spec.continuous_size else None
        )
        self.logits_head = _init(nn.Linear(out, spec.mask_size), 0.01) if spec.mask_size else None
        bounds = [0]
        for branch in action_spec.discrete_branches:
            bounds.append(bounds[-1] + int(branch))
        self._branch_bounds = list(itertools.pairwise(bounds))

    def forward(self, obs: list[Tensor], action_mask: Tensor | None = None) -> ActorOutput:
        hidden = self.trunk(self.obs_norm(flatten_obs(obs)))
        mean = self.mean_head(hidden) if self.mean_head is not None else None
        logits: list[Tensor] = []
        if self.logits_head is not None:
            flat_logits = self.logits_head(hidden)
            if action_mask is not None:
                flat_logits = flat_logits - (1.0 - action_mask) * MASK_PENALTY
            logits = [flat_logits[:, lo:hi] for lo, hi in self._branch_bounds]
        return ActorOutput(mean, self.log_std, logits)


def sample_actions(
    out: ActorOutput, deterministic: bool, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Continuous [B, c] (unclipped) and discrete int64 [B, branches] actions; mean/argmax if deterministic.

    Sampling draws from ``generator`` only, never from the global RNG.
    """
    batch = _batch_size(out)
    device = _device(out)
    continuous = torch.zeros((batch, 0), device=device)
    if out.continuous_mean is not None and out.continuous_log_std is not None:
        continuous = out.continuous_mean
        if not deterministic:
            noise = torch.randn(continuous.shape, generator=generator, device=device, dtype=continuous.dtype)
            continuous = continuous + torch.exp(out.continuous_log_std) * noise
    branches = []
    for logits in out.discrete_logits:
        if deterministic:
            branches.append(torch.argmax(logits, dim=1))
        else:
            probs = torch.softmax(logits, dim=1)
            branches.append(torch.multinomial(probs, 1, generator=generator).squeeze(1))
    discrete = (
        torch.stack(branches, dim=1)
        if branches
        else torch.zeros((batch, 0), dtype=torch.int64, device=device)
    )
    return continuous, discrete


def log_prob(out: ActorOutput, continuous: Tensor, discrete: Tensor) -> Tensor:
    """Log-probability [B] of the given actions, summed over continuous dimensions and discrete branches."""
    total = torch.zeros(_batch_size(out), device=continuous.device)
    if out.continuous_mean is not None and out.continuous_log_std is not None:
        log_std = out.continuous_log_std
        z = (continuous - out.continuous_mean) / torch.exp(log_std)
        total = total + (-0.5 * z.square() - log_std - 0.5 * _LOG_2PI).sum(dim=1)
    for b, logits in enumerate(out.discrete_logits):
        logp = torch.log_softmax(logits, dim=1)
        total = total + logp.gather(1, discrete[:, b : b + 1].long()).squeeze(1)
    return total


def entropy(out: ActorOutput) -> Tensor:
    """Entropy [B] of the action distribution (continuous + all branches)."""
    total = torch.zeros(_batch_size(out), device=_device(out))
    if out.continuous_log_std is not None:
        total = total + (0.5 + 0.5 * _LOG_2PI + out.continuous_log_std).sum()
    for logits in out.discrete_logits:
        logp = torch.log_softmax(logits, dim=1)
        total = total - (torch.exp(logp) * logp).sum(dim=1)
    return total


def _batch_size(out: ActorOutput) -> int:
    if out.continuous_mean is not None:
        return int(out.continuous_mean.shape[0])
    return int(out.discrete_logits[0].shape[0])


def _device(out: ActorOutput) -> torch.device:
    return out.continuous_mean.device if out.continuous_mean is not None else out.discrete_logits[0].device


class Critic(nn.Module):
    """Centralised value function V(agent-specific global state) in normalised units (module docstring)."""

    def __init__(
        self,
        spec: PolicySpec,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        layer_norm: bool = True,
        centralized: bool = True,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.centralized = centralized
        self.obs_norm = ObsNormalizer(spec.obs_size)
        self._team_width = _check_hidden_sizes(hidden_sizes)[0]
        self.team_encoder: nn.Sequential | None = None
        if not centralized:  # plain PPO baseline: V(own obs)
            self.state_norm: ObsNormalizer | None = None
            in_size = spec.obs_size
        elif spec.state_shape is not None:
            state_size = int(math.prod(spec.state_shape))
            self.state_norm = ObsNormalizer(state_size)
            in_size = state_size + spec.obs_size
        else:
            self.state_norm = None
            width = self._team_width
            self.team_encoder = mlp(spec.obs_size, [width], activation, layer_norm)
            in_size = spec.obs_size + 2 * width + 1
        self.trunk = mlp(in_size, hidden_sizes, activation, layer_norm)
        self.value_head = _init(nn.Linear(int(hidden_sizes[-1]), 1), 1.0)

    def forward(self, obs: list[Tensor], critic: CriticInputTensors) -> Tensor:
        own = self.obs_norm(flatten_obs(obs))
        if not self.centralized:
            features = own
        elif self.state_norm is not None:
            if critic.state is None:
                raise TrainerError("this critic was built for a global state (spec.state_shape) but got none")
            features = torch.cat([self.state_norm(torch.flatten(critic.state, start_dim=1)), own], dim=1)
        else:
            features = torch.cat([own, self._pool_team(own, critic)], dim=1)
        return self.value_head(self.trunk(features)).squeeze(1)

    def _pool_team(self, own: Tensor, critic: CriticInputTensors) -> Tensor:
        """[mean, max, log1p(count)] over the encoded live teammates; zeros where there are none."""
        assert self.team_encoder is not None
        width = self._team_width
        batch = own.shape[0]
        if critic.team_obs is None or critic.team_obs.shape[1] == 0:
            return torch.zeros((batch, 2 * width + 1), device=own.device, dtype=own.dtype)
        team_obs, team_mask = critic.team_obs, critic.team_mask
        if team_mask is None:
            team_mask = torch.ones(team_obs.shape[:2], dtype=torch.bool, device=team_obs.device)
        k = team_obs.shape[1]
        encoded = self.team_encoder(self.obs_norm(team_obs.reshape(batch * k, -1))).reshape(batch, k, width)
        weights = team_mask.to(encoded.dtype).unsqueeze(2)
        count = weights.sum(dim=1)
        mean = (encoded * weights).sum(dim=1) / count.clamp(min=1.0)
        maximum = encoded.masked_fill(~team_mask.bool().unsqueeze(2), -MASK_PENALTY).amax(dim=1)
        maximum = maximum * (count > 0).to(encoded.dtype)
        return torch.cat([mean, maximum, torch.log1p(count)], dim=1)
