"""Mean-field Q-learning (MF-Q, Yang et al. 2018, arXiv 1802.05438, Alg. 1) and independent Q-learning (IQL).

One network Q(s, ., mean_a) gives the Q value of every action of one discrete branch, given the agent's
observation s and its mean action mean_a (:mod:`unimarl.trainers.meanfield`). The policy is Boltzmann over the
allowed actions only, pi(a | s, mean_a) ∝ exp(Q(s, a, mean_a) / T), with the temperature T following a
piecewise-linear schedule over training progress. Targets (paper eq. 10-11):

    v_MF(s') = sum_a pi(a | s', mean_a') Q_target(s', a, mean_a')
    y = r + gamma (1 - terminated) v_MF(s')

With ``double_q`` the online network gives pi and the target network evaluates; without, the target network
does both. The loss is (y - Q(s, a, mean_a))^2 and the target network follows by soft updates of rate tau.
IQL is the same learner with ``use_mean_action=False`` (no mean-action input at all).

Seam with the training loop: ``act`` (batched, numpy in/out), ``add`` (one env step of transitions),
``update`` (runs the gradient steps due: one per ``update_every`` calls of ``add``), ``set_progress``
(drives the temperature; rollout workers need it too, it does not travel with the weights),
``get_weights``/``set_weights`` (numpy, for rollout workers) and ``state_dict``/``load_state_dict`` (plain
tensors and numbers: loadable with ``torch.load(weights_only=True)``). The replay content is not saved.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from unimarl.trainers.batch import ActOutput, PolicySpec
from unimarl.trainers.meanfield import MeanFieldError
from unimarl.trainers.replay import ReplayBuffer, ReplaySample, Transitions

logger = logging.getLogger(__name__)


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

    def __post_init__(self) -> None:
        if self.encoder not in ("conv", "mlp") or self.visual_layout not in ("auto", "hwc", "chw"):
            raise MeanFieldError(
                f"encoder={self.encoder!r}, visual_layout={self.visual_layout!r}: "
                "use encoder 'conv' or 'mlp' and visual_layout 'auto', 'hwc' or 'chw'"
            )


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
            layers: list[nn.Module] = []
            for out in cfg.conv_channels:
                layers += [nn.Conv2d(c, out, 3), nn.ReLU()]
                c, h, w = out, h - 2, w - 2
            if h < 1 or w < 1:
                raise MeanFieldError(
                    f"view {self.obs_shapes[i]} is too small for {len(cfg.conv_channels)} 3x3 convs"
                )
            layers += [nn.Flatten(), nn.Linear(c * h * w, cfg.visual_hidden), nn.ReLU()]
            self.convs.append(nn.Sequential(*layers))
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
            x = torch.cat([x, self.mean_branch(mean_action)], dim=1)
        return self.head(x)


# -- pure pieces of the update -------------------------------------------------------------------------------
def masked_logits(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Disallowed actions (mask False) get -inf; a row with no allowed action is left unmasked."""
    if mask is None:
        return logits
    mask = mask.bool() | ~mask.bool().any(dim=1, keepdim=True)
    return logits.masked_fill(~mask, float("-inf"))


def boltzmann_policy(q: torch.Tensor, mask: torch.Tensor | None, beta: float) -> torch.Tensor:
    """pi(a) ∝ exp(beta Q(a)) over allowed actions; exactly 0 on disallowed ones (paper eq. 12)."""
    return torch.softmax(masked_logits(beta * q, mask), dim=1)


def mf_value(
    q_target: torch.Tensor, mask: torch.Tensor | None, beta: float, q_online: torch.Tensor | None = None
) -> torch.Tensor:
    """v_MF(s') = sum_a pi(a|s') Q_target(s', a) (paper eq. 10); pi from ``q_online`` if given (double Q)."""
    pi = boltzmann_policy(q_target if q_online is None else q_online, mask, beta)
    return (pi * q_target.masked_fill(pi == 0, 0.0)).sum(dim=1)


def td_target(
    reward: torch.Tensor, terminated: torch.Tensor, v_next: torch.Tensor, gamma: float
) -> torch.Tensor:
    """y = r + gamma (1 - terminated) v(s'); truncated transitions bootstrap (paper eq. 11)."""
    return reward + gamma * (1.0 - terminated) * v_next


@torch.no_grad()
def soft_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- tau * online + (1 - tau) * target, parameter by parameter."""
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.mul_(1.0 - tau).add_(o, alpha=tau)


def scheduled(points: Sequence[tuple[float, float]], progress: float) -> float:
    """Piecewise-linear schedule: ``points`` are (progress, value) pairs with increasing progress."""
    xs, ys = zip(*points, strict=True)
    return float(np.interp(min(max(progress, 0.0), 1.0), xs, ys))


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


# -- the learner ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MFQConfig:
    """MF-Q / IQL hyperparameters; defaults are the reference (MAgent battle) settings."""

    use_mean_action: bool = True
    """False gives independent Q-learning: no mean-action input."""
    network: NetworkConfig = field(default_factory=NetworkConfig)
    """Q network shape."""
    learning_rate: float = 1e-4
    """Adam step size."""
    gamma: float = 0.95
    """Discount."""
    batch_size: int = 64
    """Transitions per gradient step."""
    buffer_capacity: int = 80_000
    """Replay capacity in transitions (agent steps)."""
    update_every: int = 5
    """Calls of ``add`` (env steps) per round of gradient steps."""
    gradient_steps: int = 1
    """Gradient steps per round."""
    learning_starts: int = 64
    """Transitions stored before the first gradient step."""
    tau: float = 0.005
    """Soft target update rate, applied after every gradient step."""
    double_q: bool = True
    """Online network gives the target policy, target network evaluates it."""
    temperature: tuple[tuple[float, float], ...] = ((0.0, 1.0), (0.8, 0.2), (1.0, 0.1))
    """Boltzmann temperature as (progress, value) points: 1 -> 0.2 over 80% of training, then -> 0.1."""
    obs_dtypes: tuple[str, ...] | None = None
    """Replay dtype per sensor: "float32", "float16" or "uint8"; None: float16 for views, else float32."""
    share_frames: bool = True
    """Store each observation once per agent step (transitions must carry agent_keys); False: twice."""

    def __post_init__(self) -> None:
        bad = {
            k: getattr(self, k) for k in ("learning_rate", "batch_size", "buffer_capacity", "update_every")
        }
        bad = {k: v for k, v in bad.items() if v <= 0}
        if (
            bad
            or not 0 < self.tau <= 1
            or not 0 <= self.gamma <= 1
            or any(t <= 0 for _, t in self.temperature)
        ):
            raise MeanFieldError(
                f"invalid MF-Q settings {bad or ''} tau={self.tau} gamma={self.gamma} "
                f"temperature={self.temperature}: need positive sizes/rates, tau in (0, 1], gamma in [0, 1]"
            )


def to_tensors(obs: Sequence[np.ndarray], device: torch.device) -> list[torch.Tensor]:
    return [torch.as_tensor(np.asarray(o, np.float32), device=device) for o in obs]


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


class MFQLearner:
    """MF-Q (or IQL) for one behaviour, with parameter sharing over its agents."""

    def __init__(
        self,
        spec: PolicySpec,
        config: MFQConfig | None = None,
        *,
        device: str = "cpu",
        seed: int | None = None,
    ) -> None:
        self.spec = spec
        self.config = cfg = config or MFQConfig()
        self.n_actions = check_discrete_spec(spec)
        self.mean_dim = self.n_actions if cfg.use_mean_action else 0
        self.device = torch.device(device)
        if seed is not None:
            torch.manual_seed(seed)
        self.q_online = QNetwork(spec.obs_shapes, self.n_actions, self.mean_dim, cfg.network).to(self.device)
        self.q_target = QNetwork(spec.obs_shapes, self.n_actions, self.mean_dim, cfg.network).to(self.device)
        self.q_target.load_state_dict(self.q_online.state_dict())
        self.optimizer = torch.optim.Adam(self.q_online.parameters(), lr=cfg.learning_rate)
        self.buffer = ReplayBuffer(
            spec.obs_shapes,
            cfg.buffer_capacity,
            n_actions=self.n_actions,
            mean_dim=self.mean_dim,
            obs_dtypes=replay_dtypes(spec, cfg.obs_dtypes),
            share_frames=cfg.share_frames,
            seed=seed,
        )
        self.rng = np.random.default_rng(seed)
        self.progress = 0.0
        self.env_steps = 0
        self.gradient_steps = 0
        self._due = 0

    @property
    def temperature(self) -> float:
        return scheduled(self.config.temperature, self.progress)

    def set_progress(self, fraction: float) -> None:
        """Training progress in [0, 1]; drives the temperature schedule."""
        self.progress = float(fraction)

    def _mean(self, mean_action: np.ndarray | None, b: int) -> torch.Tensor | None:
        if not self.mean_dim:
            return None
        if mean_action is None or np.shape(mean_action) != (b, self.mean_dim):
            got = None if mean_action is None else np.shape(mean_action)
            raise MeanFieldError(
                f"mean_action must be [{b}, {self.mean_dim}], got {got}; see MeanActionTracker"
            )
        return torch.as_tensor(np.asarray(mean_action, np.float32), device=self.device)

    @torch.no_grad()
    def act(
        self,
        obs: Sequence[np.ndarray],
        mean_action: np.ndarray | None = None,
        action_mask: np.ndarray | None = None,
        *,
        deterministic: bool = False,
    ) -> ActOutput:
        """Boltzmann actions for B agents; ``action_mask`` [B, n_actions] nonzero = allowed."""
        b = int(np.shape(obs[0])[0])
        q = self.q_online(to_tensors(obs, self.device), self._mean(mean_action, b))
        mask = (
            None if action_mask is None else torch.as_tensor(np.asarray(action_mask) != 0, device=self.device)
        )
        pi = boltzmann_policy(q, mask, 1.0 / self.temperature)
        if deterministic:
            act = masked_logits(q, mask).argmax(dim=1).cpu().numpy()
        else:
            act = sample_categorical(pi.cpu().numpy().astype(np.float64), self.rng)
        pi_np = pi.cpu().numpy()
        return ActOutput(
            continuous_actions=np.zeros((b, 0), np.float32),
            discrete_actions=act.reshape(b, 1).astype(np.int64),
            logp=np.log(np.maximum(pi_np[np.arange(b), act], 1e-12)).astype(np.float32),
            values=(pi * q.masked_fill(pi == 0, 0.0)).sum(dim=1).cpu().numpy().astype(np.float32),
        )

    def add(self, transitions: Transitions) -> None:
        """Store one env step of transitions; every ``update_every`` calls make gradient steps due."""
        self.buffer.add(transitions)
        self.env_steps += 1
        if self.env_steps % self.config.update_every == 0:
            self._due += self.config.gradient_steps

    def _tensors(self, s: ReplaySample) -> dict[str, torch.Tensor]:
        return {
            f.name: torch.as_tensor(np.asarray(getattr(s, f.name)), device=self.device)
            for f in dataclasses.fields(s)
            if f.name not in ("obs", "next_obs")
        }

    @torch.no_grad()
    def td_targets(self, s: ReplaySample) -> torch.Tensor:
        """y for a replay sample, with the current temperature (see the module docstring)."""
        t = self._tensors(s)
        next_obs = to_tensors(s.next_obs, self.device)
        next_mean = t["next_mean_action"] if self.mean_dim else None
        q_t = self.q_target(next_obs, next_mean)
        q_o = self.q_online(next_obs, next_mean) if self.config.double_q else None
        v = mf_value(q_t, t["next_action_mask"], 1.0 / self.temperature, q_o)
        return td_target(t["reward"], t["terminated"], v, self.config.gamma)

    def _gradient_step(self) -> dict[str, float]:
        s = self.buffer.sample(self.config.batch_size)
        y = self.td_targets(s)
        t = self._tensors(s)
        q = self.q_online(to_tensors(s.obs, self.device), t["mean_action"] if self.mean_dim else None)
        q_a = q.gather(1, t["action"].view(-1, 1)).squeeze(1)
        loss = torch.mean((y - q_a) ** 2)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        soft_update(self.q_target, self.q_online, self.config.tau)
        self.gradient_steps += 1
        return {"q_loss": float(loss.detach()), "q_mean": float(q_a.detach().mean())}

    def update(self) -> dict[str, float]:
        """Run the gradient steps due; returns mean metrics (empty when none ran)."""
        if len(self.buffer) < self.config.learning_starts:
            return {}
        logs = [self._gradient_step() for _ in range(self._due)]
        self._due = 0
        if not logs:
            return {}
        out = {k: float(np.mean([m[k] for m in logs])) for k in logs[0]}
        return {**out, "temperature": self.temperature, "gradient_steps": float(self.gradient_steps)}

    def get_weights(self) -> dict[str, np.ndarray]:
        """Acting weights (online Q network) as numpy arrays."""
        return numpy_weights(self.q_online)

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        load_module(self.q_online, weights, "Q network")

    def state_dict(self) -> dict:
        """Networks, optimiser, config and counters; plain types only (``torch.load(weights_only=True)``)."""
        return {
            "algorithm": "mfq" if self.mean_dim else "iql",
            "config": dataclasses.asdict(self.config),
            "q_online": self.q_online.state_dict(),
            "q_target": self.q_target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "counters": {
                "progress": self.progress,
                "env_steps": self.env_steps,
                "gradient_steps": self.gradient_steps,
            },
        }

    def load_state_dict(self, state: dict) -> None:
        expected = "mfq" if self.mean_dim else "iql"
        if state.get("algorithm") != expected:
            raise MeanFieldError(
                f"checkpoint is for {state.get('algorithm')!r}, this learner is {expected!r}"
            )
        load_module(self.q_online, state["q_online"], "Q network")
        load_module(self.q_target, state["q_target"], "target Q network")
        self.optimizer.load_state_dict(state["optimizer"])
        c = state["counters"]
        self.progress, self.env_steps, self.gradient_steps = (
            float(c["progress"]),
            int(c["env_steps"]),
            int(c["gradient_steps"]),
        )
