"""Networks, config fields and tensor helpers shared by MF-Q (:mod:`unimarl.trainers.algos.meanfield.mfq`)
and MF-AC (:mod:`unimarl.trainers.algos.meanfield.mfac`).

:class:`Encoder` embeds one agent's sensors (a conv stack per visual sensor, a dense layer on the rest);
:class:`QNetwork` adds the mean-action branch and gives Q(s, ., mean_a); :class:`Actor` gives MF-AC's policy
logits from the observation alone. :class:`LearnerConfig` holds the settings both learners share and
:class:`LearnerBase` the plumbing both share: the replay/rollout buffer, mean-action checks, replay samples as
tensors (:class:`Batch`), the optimiser, the replay counters and the
:class:`~unimarl.trainers.core.batch.ActOutput` of a categorical policy.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from unimarl.trainers.algos.encoders import conv_stack
from unimarl.trainers.algos.meanfield.mean_action import MeanFieldError
from unimarl.trainers.algos.meanfield.replay import ReplayBuffer, ReplaySample
from unimarl.trainers.core.batch import ActOutput, PolicySpec
from unimarl.trainers.core.mf_settings import MEAN_INPUTS


@dataclass(frozen=True)
class NetworkConfig:
    """Network shape. Reference: conv 32@3x3 x2 -> dense 256 on each view, dense 32 on the vector sensors,
    mean-action branch 64 -> 32, then 128 -> 64 -> one output per action; ReLU everywhere."""

    encoder: str = "conv"
    """"conv": a conv stack per visual sensor; "mlp": every sensor flattened into one dense layer."""
    visual_layout: str = "auto"
    """"hwc" (ML-Agents package 2.x), "chw" (3.x), or "auto": channels are the smallest of the three dims."""
    conv_channels: tuple[int, ...] = (32, 32)
    """Output channels of the 3x3 'valid' convolutions, in order."""
    visual_hidden: int = 256
    """Dense units after the convolutions (or of the whole MLP encoder)."""
    vector_hidden: int = 32
    """Dense units on the concatenated non-visual sensors."""
    mean_hidden: tuple[int, ...] = (64, 32)
    """Dense layers of the mean-action branch."""
    head_hidden: tuple[int, ...] = (128, 64)
    """Dense layers after concatenating the encoder and mean-action outputs."""
    mean_input: str = "probabilities"
    """What the mean-action branch reads: "probabilities", the mean action as it is (the reference; entries
    near 1 / n_actions), or "centred": ``n_actions * mean_action - 1``, 0 for the uniform mean and of the
    observation's scale, so that Adam's steps move the branch's output as much as the encoder's. The scaling
    is part of the network, so exported models take the mean action as it is either way."""

    def __post_init__(self) -> None:
        if self.encoder not in ("conv", "mlp") or self.visual_layout not in ("auto", "hwc", "chw"):
            raise MeanFieldError(
                f"encoder={self.encoder!r}, visual_layout={self.visual_layout!r}: "
                "use encoder 'conv' or 'mlp' and visual_layout 'auto', 'hwc' or 'chw'"
            )
        if self.mean_input not in MEAN_INPUTS:
            raise MeanFieldError(f"mean_input={self.mean_input!r}: use one of {', '.join(MEAN_INPUTS)}")


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """Embeds an agent's observations (one tensor per sensor, batch first) into one feature vector."""

    def __init__(self, obs_shapes: Sequence[tuple[int, ...]], cfg: NetworkConfig) -> None:
        super().__init__()
        self.obs_shapes = [tuple(s) for s in obs_shapes]
        self.conv_idx = [i for i, s in enumerate(self.obs_shapes) if len(s) == 3 and cfg.encoder == "conv"]
        self.flat_idx = [i for i in range(len(self.obs_shapes)) if i not in self.conv_idx]
        self.channels_last: list[bool] = []
        self.convs = nn.ModuleList()
        self.out_size = 0
        for i in self.conv_idx:
            h, w, c = self.obs_shapes[i]
            last = cfg.visual_layout == "hwc" or (cfg.visual_layout == "auto" and c <= min(h, w))
            if not last:
                c, h, w = self.obs_shapes[i]
            self.channels_last.append(last)
            layers = [(out, 3, 1) for out in cfg.conv_channels]  # the stack MAPPO's encoders are built from
            self.convs.append(conv_stack(c, h, w, layers, cfg.visual_hidden, nn.ReLU))
            self.out_size += cfg.visual_hidden
        flat = sum(math.prod(self.obs_shapes[i]) for i in self.flat_idx)
        hidden = cfg.visual_hidden if cfg.encoder == "mlp" else cfg.vector_hidden
        self.flat = _mlp([flat, hidden]) if flat else None
        self.out_size += hidden if flat else 0

    def forward(self, obs: Sequence[torch.Tensor]) -> torch.Tensor:
        parts = []
        for conv, i, last in zip(self.convs, self.conv_idx, self.channels_last, strict=True):
            x = obs[i].permute(0, 3, 1, 2) if last else obs[i]
            parts.append(conv(x))
        if self.flat is not None:
            parts.append(self.flat(torch.cat([obs[i].flatten(1) for i in self.flat_idx], dim=1)))
        return torch.cat(parts, dim=1)


class QNetwork(nn.Module):
    """Q(s, ., mean_a): [B, n_actions]; ``mean_dim=0`` drops the mean-action input (IQL)."""

    def __init__(
        self, obs_shapes: Sequence[tuple[int, ...]], n_actions: int, mean_dim: int, cfg: NetworkConfig
    ):
        super().__init__()
        self.encoder = Encoder(obs_shapes, cfg)
        self.mean_dim = mean_dim
        self.centred = cfg.mean_input == "centred"
        self.mean_branch = _mlp([mean_dim, *cfg.mean_hidden]) if mean_dim else None
        width = self.encoder.out_size + (cfg.mean_hidden[-1] if mean_dim and cfg.mean_hidden else mean_dim)
        self.head = nn.Sequential(
            _mlp([width, *cfg.head_hidden]), nn.Linear(([width, *cfg.head_hidden])[-1], n_actions)
        )

    def forward(self, obs: Sequence[torch.Tensor], mean_action: torch.Tensor | None = None) -> torch.Tensor:
        x = self.encoder(obs)
        if self.mean_branch is not None:
            if mean_action is None:
                raise MeanFieldError("this Q network takes mean actions; pass mean_action [B, n_actions]")
            if self.centred:
                mean_action = mean_action * self.mean_dim - 1.0
            x = torch.cat([x, self.mean_branch(mean_action)], dim=1)
        return self.head(x)


class Actor(nn.Module):
    """pi_theta(. | s): logits [B, n_actions] (MF-AC's actor: no mean-action input)."""

    def __init__(self, obs_shapes: Sequence[tuple[int, ...]], n_actions: int, cfg: NetworkConfig) -> None:
        super().__init__()
        self.encoder = Encoder(obs_shapes, cfg)
        sizes = [self.encoder.out_size, *cfg.head_hidden]
        self.head = nn.Sequential(*_mlp(sizes), nn.Linear(sizes[-1], n_actions))  # flat: checkpoint keys

    def forward(self, obs: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.head(self.encoder(obs))


def masked_logits(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Disallowed actions (mask False) get -inf; a row with no allowed action is left unmasked."""
    if mask is None:
        return logits
    mask = mask.bool() | ~mask.bool().any(dim=1, keepdim=True)
    return logits.masked_fill(~mask, float("-inf"))


@torch.no_grad()
def soft_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- (1 - tau) * target + tau * online for every parameter (two vectorised calls in all)."""
    t: list[torch.Tensor] = list(target.parameters())
    o: list[torch.Tensor] = list(online.parameters())
    if len(t) != len(o):
        raise MeanFieldError(f"soft update of {len(t)} target parameters from {len(o)}: build equal networks")
    torch._foreach_mul_(t, 1.0 - tau)
    torch._foreach_add_(t, o, alpha=tau)


def make_adam(params: Iterable[nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam updating all parameters in a few vectorised calls per step (``foreach``: the same numbers as
    torch's per-parameter loop, which is its CPU default, at about a third of the time)."""
    return torch.optim.Adam(params, lr=lr, foreach=True)


def sample_categorical(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One index per row of ``probs`` [B, A]; never an index of probability 0."""
    cdf = np.cumsum(probs, axis=1)
    u = (1.0 - rng.random(probs.shape[0])) * cdf[:, -1]  # in (0, total]
    return np.minimum((cdf < u[:, None]).sum(axis=1), probs.shape[1] - 1)


def check_discrete_spec(spec: PolicySpec) -> int:
    """The mean-field learners take one discrete branch; returns its size."""
    a = spec.action_spec
    if a.continuous_size or len(a.discrete_branches) != 1:
        raise MeanFieldError(
            f"mean-field learners need exactly one discrete branch and no continuous actions, got {a}; "
            "use MAPPO for this behaviour"
        )
    return int(a.discrete_branches[0])


def to_tensors(obs: Sequence[np.ndarray], device: torch.device) -> list[torch.Tensor]:
    return [torch.as_tensor(np.asarray(o, np.float32), device=device) for o in obs]


def to_device(a: np.ndarray, device: torch.device) -> torch.Tensor:
    """A numpy array on ``device``: shared memory on the CPU, through pinned memory to CUDA."""
    t = torch.from_numpy(np.ascontiguousarray(a))
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


@dataclass(frozen=True)
class Batch:
    """A :class:`~unimarl.trainers.algos.meanfield.replay.ReplaySample` as tensors on the learner's device
    (same fields and dtypes)."""

    obs: tuple[torch.Tensor, ...]
    mean_action: torch.Tensor
    action_mask: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: tuple[torch.Tensor, ...]
    next_mean_action: torch.Tensor
    next_action_mask: torch.Tensor
    terminated: torch.Tensor
    logp: torch.Tensor

    @staticmethod
    def of(s: ReplaySample, device: torch.device) -> Batch:
        def put(a: np.ndarray) -> torch.Tensor:
            return to_device(a, device)

        return Batch(
            obs=tuple(put(o) for o in s.obs),
            mean_action=put(s.mean_action),
            action_mask=put(s.action_mask),
            action=put(s.action),
            reward=put(s.reward),
            next_obs=tuple(put(o) for o in s.next_obs),
            next_mean_action=put(s.next_mean_action),
            next_action_mask=put(s.next_action_mask),
            terminated=put(s.terminated),
            logp=put(s.logp),
        )

    def rows(self, start: int, stop: int) -> Batch:
        """Rows ``start:stop`` (views, no copy)."""
        r = slice(start, stop)
        return Batch(
            obs=tuple(o[r] for o in self.obs),
            mean_action=self.mean_action[r],
            action_mask=self.action_mask[r],
            action=self.action[r],
            reward=self.reward[r],
            next_obs=tuple(o[r] for o in self.next_obs),
            next_mean_action=self.next_mean_action[r],
            next_action_mask=self.next_action_mask[r],
            terminated=self.terminated[r],
            logp=self.logp[r],
        )


def replay_dtypes(spec: PolicySpec, dtypes: tuple[str, ...] | None) -> tuple[str, ...]:
    return dtypes or tuple("float16" if len(s) == 3 else "float32" for s in spec.obs_shapes)


def numpy_weights(module: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def load_module(module: nn.Module, state: dict, what: str) -> None:
    try:
        # arrays from Ray's object store are read-only: copy them (load_state_dict copies anyway)
        module.load_state_dict(
            {k: torch.from_numpy(np.array(v)) if isinstance(v, np.ndarray) else v for k, v in state.items()}
        )
    except RuntimeError as e:
        raise MeanFieldError(
            f"{what} weights do not fit this network (different spec or config?): {e}"
        ) from e


@dataclass(frozen=True)
class LearnerConfig:
    """Settings MF-Q and MF-AC share; defaults are the reference (MAgent battle) settings."""

    use_mean_action: bool = True
    """False gives the independent baselines: IQL / plain actor-critic (no mean-action input at all)."""
    network: NetworkConfig = field(default_factory=NetworkConfig)
    """Network shape."""
    learning_rate: float = 1e-4
    """Adam step size."""
    gamma: float = 0.95
    """Discount."""
    batch_size: int = 64
    """Transitions per gradient step (minibatch)."""
    tau: float = 0.005
    """Soft target-network update rate, applied after every gradient step."""
    obs_dtypes: tuple[str, ...] | None = None
    """Storage dtype per sensor: "float32", "float16" or "uint8"; None: float16 for views, else float32."""
    share_frames: bool = True
    """Store each observation once per agent step (transitions must carry agent_keys); False: twice."""

    def invalid(self) -> bool:
        """Whether a shared setting is out of range (each learner raises naming its own settings)."""
        return (
            self.learning_rate <= 0
            or self.batch_size <= 0
            or not 0 < self.tau <= 1
            or not 0 <= self.gamma <= 1
        )


class LearnerBase:
    """Spec checks, device, seeding, buffer, weights and checkpoints of a mean-field learner.

    A subclass names its algorithm (``ALGORITHMS``: with and without the mean action), its acting network
    (``ACTING``) and its checkpointed networks (``NETS``: attribute -> label for error messages), and keeps
    ``optimizer`` (:func:`make_adam`); its counters go through ``_counters`` / ``_load_counters``. The
    base counts ``transitions_added`` and ``samples_learned`` (checkpointed with the subclass's counters).
    """

    ALGORITHMS: tuple[str, str]
    ACTING: str
    NETS: dict[str, str]
    STORES_LOGP = False
    """Whether the buffer keeps each action's behaviour log-probability (on-policy learners)."""
    config: LearnerConfig
    optimizer: torch.optim.Optimizer

    def __init__(
        self, spec: PolicySpec, cfg: LearnerConfig, capacity: int, device: str, seed: int | None
    ) -> None:
        self.spec = spec
        self.n_actions = check_discrete_spec(spec)
        self.mean_dim = self.n_actions if cfg.use_mean_action else 0
        self.device = torch.device(device)
        if seed is not None:
            torch.manual_seed(seed)
        self.buffer = ReplayBuffer(
            spec.obs_shapes,
            capacity,
            n_actions=self.n_actions,
            mean_dim=self.mean_dim,
            obs_dtypes=replay_dtypes(spec, cfg.obs_dtypes),
            share_frames=cfg.share_frames,
            seed=seed,
            store_logp=self.STORES_LOGP,
        )
        self.rng = np.random.default_rng(seed)
        self.transitions_added = 0
        """Transitions given to ``add`` over the run."""
        self.samples_learned = 0
        """Transitions replayed in gradient steps over the run (batch_size per step)."""

    @property
    def achieved_replay_ratio(self) -> float:
        """Samples learned per transition added so far (0 before any)."""
        return self.samples_learned / self.transitions_added if self.transitions_added else 0.0

    def _mean(self, mean_action: np.ndarray | None, b: int) -> torch.Tensor | None:
        if not self.mean_dim:
            return None
        if mean_action is None or np.shape(mean_action) != (b, self.mean_dim):
            got = None if mean_action is None else np.shape(mean_action)
            raise MeanFieldError(
                f"mean_action must be [{b}, {self.mean_dim}], got {got}; see MeanActionTracker"
            )
        return torch.as_tensor(np.asarray(mean_action, np.float32), device=self.device)

    def _mask(self, action_mask: np.ndarray | None) -> torch.Tensor | None:
        if action_mask is None:
            return None
        return torch.as_tensor(np.asarray(action_mask) != 0, device=self.device)

    def _batch(self, s: ReplaySample) -> Batch:
        return Batch.of(s, self.device)

    def _choose(
        self, pi: torch.Tensor, greedy: torch.Tensor, values: np.ndarray, deterministic: bool
    ) -> ActOutput:
        """Sampled (or argmax of ``greedy``) actions from ``pi`` [B, A], with their log-probabilities."""
        b = pi.shape[0]
        pi_np = pi.cpu().numpy()
        if deterministic:
            act = greedy.argmax(dim=1).cpu().numpy()
        else:
            act = sample_categorical(pi_np.astype(np.float64), self.rng)
        return ActOutput(
            continuous_actions=np.zeros((b, 0), np.float32),
            discrete_actions=act.reshape(b, 1).astype(np.int64),
            logp=np.log(np.maximum(pi_np[np.arange(b), act], 1e-12)).astype(np.float32),
            values=values.astype(np.float32),
        )

    @property
    def algorithm(self) -> str:
        """The algorithm's name: MF variant with the mean action, the independent baseline without."""
        return self.ALGORITHMS[0] if self.mean_dim else self.ALGORITHMS[1]

    def get_weights(self) -> dict[str, np.ndarray]:
        """Acting weights as numpy arrays (what rollout workers need)."""
        return numpy_weights(getattr(self, self.ACTING))

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        load_module(getattr(self, self.ACTING), weights, self.NETS[self.ACTING])

    def _counters(self) -> dict[str, float | int]:
        raise NotImplementedError

    def _load_counters(self, counters: dict[str, float | int]) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Networks, optimiser, config and counters; plain types only (``torch.load(weights_only=True)``)."""
        return {
            "algorithm": self.algorithm,
            "config": dataclasses.asdict(self.config),
            **{attr: getattr(self, attr).state_dict() for attr in self.NETS},
            "optimizer": self.optimizer.state_dict(),
            "counters": {
                **self._counters(),
                "transitions_added": self.transitions_added,
                "samples_learned": self.samples_learned,
            },
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("algorithm") != self.algorithm:
            raise MeanFieldError(
                f"checkpoint is for {state.get('algorithm')!r}, this learner is {self.algorithm!r}"
            )
        for attr, label in self.NETS.items():
            load_module(getattr(self, attr), state[attr], label)
        # keep this optimiser's kernel (fused / foreach) whatever the checkpoint was saved with
        kernel = {k: self.optimizer.param_groups[0][k] for k in ("fused", "foreach")}
        saved = state["optimizer"]
        groups = [{**g, **kernel} for g in saved["param_groups"]]
        self.optimizer.load_state_dict({**saved, "param_groups": groups})
        counters = state["counters"]
        self._load_counters(counters)
        self.transitions_added = int(counters.get("transitions_added", 0))  # absent before they were counted
        self.samples_learned = int(counters.get("samples_learned", 0))
