"""Actor and centralised critic networks of the MAPPO learner, and their action distributions.

Observations (:class:`Encoded`, shared by actor and critic): the vector sensors flattened and concatenated
-> :class:`ObsNormalizer` (running mean/std, clipped to [-5, 5]; registered buffers, so part of
``state_dict`` and of the ONNX graph); each image sensor (rank 3) through a visual encoder of type
``vis_encode_type`` (:mod:`unimarl.trainers.algos.encoders`, ML-Agents' encoders; images are not normalised by
running statistics, as in ML-Agents); the features are concatenated.

Actor: observation features -> MLP trunk -> heads:

- continuous: a mean head and a state-independent ``log_std`` parameter; actions ~ Normal(mean, exp(log_std)),
  sampled unclipped (the rollout side clips to [-1, 1] before the game sees them);
- discrete: one logits head over all branches; masked logits are ``logit - (1 - mask) * MASK_PENALTY`` (mask 1
  = allowed), so a masked action has probability exactly 0 after softmax in float32 and still a finite
  log-prob (no NaN in entropies); then one slice per branch, each an independent Categorical.

Hybrid actions sum the log-probs and entropies of both parts. The actor's forward uses no data-dependent
Python control flow and only Flatten, Concat, Sub, Div, Clip, Gemm/MatMul+Add, Tanh/Relu, torch's layer_norm
(exported as elementary ops below opset 17), Mul and Slice (plus Conv, Transpose, Neg and Sigmoid in the
visual encoders), so it exports to ONNX opset <= 15.

Each hidden layer is Linear -> activation -> LayerNorm (when ``layer_norm``), as in the MAPPO reference code.
The inputs get no LayerNorm: they are already normalised by running statistics, and a per-sample LayerNorm
would erase the magnitude of small observation vectors (a 1-D observation would become constant 0).

Critic: values in normalised units ([B]). With ``spec.state_shape`` it is an MLP on [normalised state, own
features]. Without, it builds an agent-specific global state: own features, plus a pooling over the
teammates' embeddings (``team_encoder`` applied to each teammate's features: every observation is encoded
once and referenced by ``CriticInput.team_rows``; embeddings of teammates outside the batch arrive
precomputed), plus log(1 + number of teammates). ``team_pooling`` "mean_max": the masked mean and max of the
embeddings; "attention": one masked attention read of the embeddings with the agent's own embedding as
query (as MA-POCA attends over its teammates' embeddings, Cohen et al. 2021, arXiv 2111.05992). Both are
permutation invariant and work for any number of teammates, including none (pooled features are then 0).

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

from unimarl.trainers.algos.encoders import VisualEncoder, is_visual
from unimarl.trainers.algos.mappo.normalizers import ObsNormalizer
from unimarl.trainers.core.batch import PolicySpec
from unimarl.trainers.core.errors import ConfigError, TrainerError
from unimarl.trainers.core.mappo_settings import TEAM_POOLINGS, NetworkSettings

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
    """Torch counterpart of :class:`unimarl.trainers.core.batch.CriticInput`.

    ``team_rows`` index ``team_source`` (one tensor per sensor) when given, else the observations passed
    with them (a minibatch's teammates may lie outside the minibatch).
    """

    state: Tensor | None = None  # [B, *state_shape]
    team_rows: Tensor | None = None  # int64 [B, K], -1 = empty slot
    team_source: list[Tensor] | None = None
    team_embeddings: Tensor | None = None  # [B, M, W]
    team_embedding_mask: Tensor | None = None  # bool [B, M]


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


class Encoded(nn.Module):
    """Observation features of actor and critic: normalised vector sensors and encoded image sensors."""

    def __init__(self, spec: PolicySpec, vis_encode_type: str | None, visual_out: int) -> None:
        super().__init__()
        shapes = [tuple(s) for s in spec.obs_shapes]
        self.visual_idx = [i for i, s in enumerate(shapes) if is_visual(s)]
        self.vector_idx = [i for i, s in enumerate(shapes) if not is_visual(s)]
        self.vector_size = int(sum(math.prod(shapes[i]) for i in self.vector_idx))
        self.obs_norm = ObsNormalizer(self.vector_size)
        self.visual = nn.ModuleList(
            VisualEncoder(shapes[i], vis_encode_type, visual_out) for i in self.visual_idx
        )
        self.feature_size = self.vector_size + len(self.visual_idx) * int(visual_out)

    def vector_obs(self, obs: Sequence[Tensor]) -> Tensor:
        """The vector sensors flattened and concatenated, [B, vector_size] (what the normaliser sees)."""
        return torch.cat([torch.flatten(obs[i], start_dim=1) for i in self.vector_idx], dim=1)

    def features(self, obs: Sequence[Tensor]) -> Tensor:
        parts = [encoder(obs[i]) for encoder, i in zip(self.visual, self.visual_idx, strict=True)]
        if self.vector_idx:
            parts.append(self.obs_norm(self.vector_obs(obs)))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    @torch.no_grad()
    def update_normalizer(self, obs: Sequence[Tensor]) -> None:
        """Merge the vector sensors of ``obs`` [N, ...] into the running statistics."""
        if self.vector_idx:
            self.obs_norm.update(self.vector_obs(obs))


class Actor(Encoded):
    """Shared policy network of one behaviour (see the module docstring)."""

    def __init__(
        self,
        spec: PolicySpec,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        layer_norm: bool = True,
        vis_encode_type: str | None = None,
    ) -> None:
        """``vis_encode_type``: see :class:`~unimarl.trainers.core.mappo_settings.NetworkSettings`."""
        super().__init__(spec, vis_encode_type, _check_hidden_sizes(hidden_sizes)[0])
        self.spec = spec
        self.trunk = mlp(self.feature_size, hidden_sizes, activation, layer_norm)
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
        hidden = self.trunk(self.features(obs))
        mean = self.mean_head(hidden) if self.mean_head is not None else None
        logits: list[Tensor] = []
        if self.logits_head is not None:
            flat_logits = self.logits_head(hidden)
            if action_mask is not None:
                flat_logits = flat_logits - (1.0 - action_mask) * MASK_PENALTY
            logits = [flat_logits[:, lo:hi] for lo, hi in self._branch_bounds]
        return ActorOutput(mean, self.log_std, logits)


def build_actor(spec: PolicySpec, net: NetworkSettings) -> Actor:
    """The actor ``net`` describes (what training, checkpoints and exports build alike)."""
    hidden = [int(net.hidden_units)] * int(net.num_layers)
    return Actor(spec, hidden, net.activation, net.layer_norm, net.vis_encode_type)


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


class Critic(Encoded):
    """Centralised value function V(agent-specific global state) in normalised units (module docstring)."""

    def __init__(
        self,
        spec: PolicySpec,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        layer_norm: bool = True,
        centralized: bool = True,
        vis_encode_type: str | None = None,
        team_pooling: str = "mean_max",
    ) -> None:
        width = _check_hidden_sizes(hidden_sizes)[0]
        super().__init__(spec, vis_encode_type, width)
        if team_pooling not in TEAM_POOLINGS:
            raise ConfigError(f"unknown team_pooling {team_pooling!r}; use one of {list(TEAM_POOLINGS)}")
        self.spec = spec
        self.centralized = centralized
        self.team_pooling = team_pooling
        self.team_width = width
        self.team_encoder: nn.Sequential | None = None
        self.attention: nn.ModuleDict | None = None
        if not centralized:  # plain PPO baseline: V(own obs)
            self.state_norm: ObsNormalizer | None = None
            in_size = self.feature_size
        elif spec.state_shape is not None:
            state_size = int(math.prod(spec.state_shape))
            self.state_norm = ObsNormalizer(state_size)
            in_size = state_size + self.feature_size
        else:
            self.state_norm = None
            self.team_encoder = mlp(self.feature_size, [width], activation, layer_norm)
            pooled = 2 * width if team_pooling == "mean_max" else width
            if team_pooling == "attention":
                self.attention = nn.ModuleDict(
                    {name: _init(nn.Linear(width, width), 1.0) for name in ("query", "key", "value")}
                )
            in_size = self.feature_size + pooled + 1
        self.trunk = mlp(in_size, hidden_sizes, activation, layer_norm)
        self.value_head = _init(nn.Linear(int(hidden_sizes[-1]), 1), 1.0)

    def forward(self, obs: list[Tensor], critic: CriticInputTensors) -> Tensor:
        return self.values_and_embeddings(obs, critic)[0]

    def values_and_embeddings(
        self, obs: list[Tensor], critic: CriticInputTensors
    ) -> tuple[Tensor, Tensor | None]:
        """Values [B] and each row's own teammate embedding [B, W] (None without teammate pooling)."""
        own = self.features(obs)
        embeddings = None
        if not self.centralized:
            features = own
        elif self.state_norm is not None:
            if critic.state is None:
                raise TrainerError("this critic was built for a global state (spec.state_shape) but got none")
            features = torch.cat([self.state_norm(torch.flatten(critic.state, start_dim=1)), own], dim=1)
        else:
            assert self.team_encoder is not None
            embeddings = self.team_encoder(own)
            features = torch.cat([own, self._pool_team(embeddings, critic)], dim=1)
        return self.value_head(self.trunk(features)).squeeze(1), embeddings

    def embed(self, obs: Sequence[Tensor]) -> Tensor:
        """Teammate embeddings [B, W] of the agents observing ``obs`` (what teammates' critics pool)."""
        if self.team_encoder is None:
            raise TrainerError("this critic pools no teammates (it has a global state or is decentralised)")
        return self.team_encoder(self.features(obs))

    def _team(self, own_embeddings: Tensor, critic: CriticInputTensors) -> tuple[Tensor, Tensor]:
        """Embeddings [B, K + M, W] of the teammates of every row and their mask [B, K + M]."""
        batch, width = own_embeddings.shape
        parts, masks = [], []
        rows = critic.team_rows
        if rows is not None and rows.shape[1] > 0:
            valid = rows >= 0
            flat = rows.clamp(min=0).reshape(-1)
            if critic.team_source is None:  # teammates are rows of this batch: encoded once above
                team = own_embeddings[flat]
            else:  # rows of a larger batch (a minibatch's teammates): encode each distinct row once
                unique, inverse = torch.unique(flat, return_inverse=True)
                team = self.embed([source[unique] for source in critic.team_source])[inverse]
            parts.append(team.reshape(batch, rows.shape[1], width))
            masks.append(valid)
        if critic.team_embeddings is not None and critic.team_embeddings.shape[1] > 0:
            given = critic.team_embeddings
            if given.shape[2] != width:
                raise TrainerError(
                    f"teammate embeddings of width {given.shape[2]} reached a critic of width {width}: "
                    "behaviours that share a Unity group need equal network_settings.hidden_units"
                )
            parts.append(given.to(own_embeddings.dtype))
            mask = critic.team_embedding_mask
            masks.append(
                torch.ones(given.shape[:2], dtype=torch.bool, device=given.device)
                if mask is None
                else mask.bool()
            )
        if not parts:
            empty = own_embeddings.new_zeros((batch, 0, width))
            return empty, torch.zeros((batch, 0), dtype=torch.bool, device=own_embeddings.device)
        return torch.cat(parts, dim=1), torch.cat(masks, dim=1)

    def _pool_team(self, own_embeddings: Tensor, critic: CriticInputTensors) -> Tensor:
        """[pooled embeddings, log1p(count)] over the live teammates; zeros where there are none."""
        team, mask = self._team(own_embeddings, critic)
        batch, width = own_embeddings.shape
        pooled_width = 2 * width if self.attention is None else width
        if team.shape[1] == 0:
            return own_embeddings.new_zeros((batch, pooled_width + 1))
        weights = mask.to(team.dtype).unsqueeze(2)
        count = weights.sum(dim=1)
        present = (count > 0).to(team.dtype)
        if self.attention is None:
            mean = (team * weights).sum(dim=1) / count.clamp(min=1.0)
            maximum = team.masked_fill(~mask.unsqueeze(2), -MASK_PENALTY).amax(dim=1) * present
            pooled = torch.cat([mean, maximum], dim=1)
        else:
            query = self.attention["query"](own_embeddings).unsqueeze(1)  # [B, 1, W]
            scores = (query * self.attention["key"](team)).sum(dim=2) / math.sqrt(width)  # [B, K]
            scores = scores.masked_fill(~mask, -MASK_PENALTY)
            attended = (torch.softmax(scores, dim=1).unsqueeze(2) * self.attention["value"](team)).sum(dim=1)
            pooled = attended * present
        return torch.cat([pooled, torch.log1p(count)], dim=1)


def build_critic(spec: PolicySpec, net: NetworkSettings) -> Critic:
    """The critic ``net`` describes."""
    hidden = [int(net.hidden_units)] * int(net.num_layers)
    return Critic(
        spec,
        hidden,
        net.activation,
        net.layer_norm,
        net.centralized_critic,
        net.vis_encode_type,
        net.team_pooling,
    )


def critic_rows(critic: CriticInputTensors, idx: Tensor | None, source: list[Tensor]) -> CriticInputTensors:
    """The critic input of the rows ``idx`` of a batch whose observations are ``source`` (None: all rows);
    teammate rows keep pointing into ``source``."""
    if idx is None:
        return critic

    def take(t: Tensor | None) -> Tensor | None:
        return None if t is None else t[idx]

    return CriticInputTensors(
        state=take(critic.state),
        team_rows=take(critic.team_rows),
        team_source=None if critic.team_rows is None else source,
        team_embeddings=take(critic.team_embeddings),
        team_embedding_mask=take(critic.team_embedding_mask),
    )
