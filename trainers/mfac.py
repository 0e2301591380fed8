"""Mean-field actor-critic (MF-AC, Yang et al. 2018, arXiv 1802.05438, sec. 3.3) and the plain AC baseline.

An actor pi_theta(a | s) over the allowed actions of one discrete branch (it does not see the mean action) and
a mean-field critic Q_phi(s, ., mean_a) trained like MF-Q, with the actor as the target policy:

    y = r + gamma (1 - terminated) sum_a pi_theta(a | s') Q_target(s', a, mean_a')
    A = Q_phi(s, a, mean_a) - sum_a pi_theta(a | s) Q_phi(s, a, mean_a)     (a constant in the actor loss)
    loss = -A log pi_theta(a | s) + value_coef (y - Q_phi(s, a, mean_a))^2 - entropy_coef H(pi_theta(. | s))

The learner is on-policy like the reference: ``add`` collects the transitions of the current policy,
``update`` makes one pass over them in shuffled minibatches and forgets them (call it at the end of each
episode or iteration). ``use_mean_action=False`` gives the plain actor-critic baseline (critic Q(s, a)).
The seam is the one of :class:`unimarl.trainers.mfq.MFQLearner`; the acting network is the actor alone.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from unimarl.trainers.batch import ActOutput, PolicySpec
from unimarl.trainers.meanfield import MeanFieldError
from unimarl.trainers.mfq import (
    Encoder,
    NetworkConfig,
    QNetwork,
    check_discrete_spec,
    load_module,
    masked_logits,
    numpy_weights,
    replay_dtypes,
    sample_categorical,
    soft_update,
    td_target,
    to_tensors,
)
from unimarl.trainers.replay import ReplayBuffer, ReplaySample, Transitions

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MFACConfig:
    """MF-AC / AC hyperparameters; defaults are the reference (MAgent battle) settings."""

    use_mean_action: bool = True
    """False gives the plain actor-critic baseline: the critic has no mean-action input."""
    network: NetworkConfig = field(default_factory=NetworkConfig)
    """Shape of the actor (without the mean-action branch) and of the critic."""
    learning_rate: float = 1e-4
    """Adam step size (one optimiser over actor and critic)."""
    gamma: float = 0.95
    """Discount."""
    batch_size: int = 64
    """Transitions per minibatch."""
    value_coef: float = 0.1
    """Weight of the critic's squared TD error."""
    entropy_coef: float = 0.08
    """Weight of the policy entropy bonus."""
    tau: float = 0.005
    """Soft update rate of the critic's target network, after every minibatch."""
    rollout_capacity: int = 65_536
    """Transitions held between two updates; the oldest are overwritten beyond it."""
    obs_dtypes: tuple[str, ...] | None = None
    """Storage dtype per sensor: "float32", "float16" or "uint8"; None: float16 for views, else float32."""
    share_frames: bool = True
    """Store each observation once per agent step (transitions must carry agent_keys); False: twice."""

    def __post_init__(self) -> None:
        if (
            self.learning_rate <= 0
            or self.batch_size <= 0
            or self.rollout_capacity <= 0
            or not 0 < self.tau <= 1
            or not 0 <= self.gamma <= 1
            or min(self.value_coef, self.entropy_coef) < 0
        ):
            raise MeanFieldError(
                f"invalid MF-AC settings {self}: need positive rates and sizes, tau in (0, 1], "
                "gamma in [0, 1], non-negative coefficients"
            )


class Actor(nn.Module):
    """pi_theta(. | s): logits [B, n_actions]."""

    def __init__(self, obs_shapes: Sequence[tuple[int, ...]], n_actions: int, cfg: NetworkConfig) -> None:
        super().__init__()
        self.encoder = Encoder(obs_shapes, cfg)
        sizes = [self.encoder.out_size, *cfg.head_hidden]
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(sizes):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.head = nn.Sequential(*layers, nn.Linear(sizes[-1], n_actions))

    def forward(self, obs: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.head(self.encoder(obs))


def actor_critic_loss(
    logits: torch.Tensor,
    q: torch.Tensor,
    action: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor | None,
    value_coef: float,
    entropy_coef: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of the module doc; ``logits``/``q`` [B, A], ``action``/``y`` [B], mask True = allowed."""
    logp_all = torch.log_softmax(masked_logits(logits, mask), dim=1)
    pi = logp_all.exp()
    logp_safe = logp_all.masked_fill(pi == 0, 0.0)  # disallowed actions: 0 * -inf would be nan
    q_a = q.gather(1, action.view(-1, 1)).squeeze(1)
    advantage = (q_a - (pi * q).sum(dim=1)).detach()
    pg_loss = -(advantage * logp_safe.gather(1, action.view(-1, 1)).squeeze(1)).mean()
    critic_loss = torch.mean((y - q_a) ** 2)
    entropy = -(pi * logp_safe).sum(dim=1).mean()
    loss = pg_loss + value_coef * critic_loss - entropy_coef * entropy
    return loss, {
        "pg_loss": float(pg_loss.detach()),
        "critic_loss": float(critic_loss.detach()),
        "entropy": float(entropy.detach()),
        "advantage_abs": float(advantage.abs().mean()),
    }


class MFACLearner:
    """MF-AC (or AC) for one behaviour, with parameter sharing over its agents."""

    def __init__(
        self,
        spec: PolicySpec,
        config: MFACConfig | None = None,
        *,
        device: str = "cpu",
        seed: int | None = None,
    ) -> None:
        self.spec = spec
        self.config = cfg = config or MFACConfig()
        self.n_actions = check_discrete_spec(spec)
        self.mean_dim = self.n_actions if cfg.use_mean_action else 0
        self.device = torch.device(device)
        if seed is not None:
            torch.manual_seed(seed)
        self.actor = Actor(spec.obs_shapes, self.n_actions, cfg.network).to(self.device)
        self.critic = QNetwork(spec.obs_shapes, self.n_actions, self.mean_dim, cfg.network).to(self.device)
        self.critic_target = QNetwork(spec.obs_shapes, self.n_actions, self.mean_dim, cfg.network).to(
            self.device
        )
        self.critic_target.load_state_dict(self.critic.state_dict())
        params = [*self.actor.parameters(), *self.critic.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=cfg.learning_rate)
        self.buffer = ReplayBuffer(
            spec.obs_shapes,
            cfg.rollout_capacity,
            n_actions=self.n_actions,
            mean_dim=self.mean_dim,
            obs_dtypes=replay_dtypes(spec, cfg.obs_dtypes),
            share_frames=cfg.share_frames,
            seed=seed,
        )
        self.rng = np.random.default_rng(seed)
        self.gradient_steps = 0

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
        """Actions for B agents from the actor; ``values`` = sum_a pi Q(s, a, mean_a) when computable."""
        b = int(np.shape(obs[0])[0])
        x = to_tensors(obs, self.device)
        mask = (
            None if action_mask is None else torch.as_tensor(np.asarray(action_mask) != 0, device=self.device)
        )
        logits = masked_logits(self.actor(x), mask)
        pi = torch.softmax(logits, dim=1)
        if deterministic:
            act = logits.argmax(dim=1).cpu().numpy()
        else:
            act = sample_categorical(pi.cpu().numpy().astype(np.float64), self.rng)
        if self.mean_dim == 0 or mean_action is not None:
            values = (pi * self.critic(x, self._mean(mean_action, b))).sum(dim=1).cpu().numpy()
        else:
            values = np.zeros(b, np.float32)
        pi_np = pi.cpu().numpy()
        return ActOutput(
            continuous_actions=np.zeros((b, 0), np.float32),
            discrete_actions=act.reshape(b, 1).astype(np.int64),
            logp=np.log(np.maximum(pi_np[np.arange(b), act], 1e-12)).astype(np.float32),
            values=values.astype(np.float32),
        )

    def add(self, transitions: Transitions) -> None:
        """Collect one env step of transitions of the current policy."""
        self.buffer.add(transitions)

    def _minibatch_step(self, s: ReplaySample) -> dict[str, float]:
        t = {
            f.name: torch.as_tensor(np.asarray(getattr(s, f.name)), device=self.device)
            for f in dataclasses.fields(s)
            if f.name not in ("obs", "next_obs")
        }
        with torch.no_grad():
            next_obs = to_tensors(s.next_obs, self.device)
            pi_next = torch.softmax(masked_logits(self.actor(next_obs), t["next_action_mask"]), dim=1)
            q_next = self.critic_target(next_obs, t["next_mean_action"] if self.mean_dim else None)
            y = td_target(t["reward"], t["terminated"], (pi_next * q_next).sum(dim=1), self.config.gamma)
        obs = to_tensors(s.obs, self.device)
        q = self.critic(obs, t["mean_action"] if self.mean_dim else None)
        loss, logs = actor_critic_loss(
            self.actor(obs),
            q,
            t["action"],
            y,
            t["action_mask"],
            self.config.value_coef,
            self.config.entropy_coef,
        )
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        soft_update(self.critic_target, self.critic, self.config.tau)
        self.gradient_steps += 1
        return logs

    def update(self) -> dict[str, float]:
        """One shuffled pass over the collected transitions, then forget them; mean metrics ({} if none)."""
        if len(self.buffer) == 0:
            return {}
        logs = [self._minibatch_step(s) for s in self.buffer.iterate(self.config.batch_size)]
        self.buffer.clear()
        if not logs:
            return {}
        out = {k: float(np.mean([m[k] for m in logs])) for k in logs[0]}
        return {**out, "gradient_steps": float(self.gradient_steps)}

    def get_weights(self) -> dict[str, np.ndarray]:
        """Acting weights (the actor) as numpy arrays."""
        return numpy_weights(self.actor)

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        load_module(self.actor, weights, "actor")

    def state_dict(self) -> dict:
        """Networks, optimiser, config and counters; plain types only (``torch.load(weights_only=True)``)."""
        return {
            "algorithm": "mfac" if self.mean_dim else "ac",
            "config": dataclasses.asdict(self.config),
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "counters": {"gradient_steps": self.gradient_steps},
        }

    def load_state_dict(self, state: dict) -> None:
        expected = "mfac" if self.mean_dim else "ac"
        if state.get("algorithm") != expected:
            raise MeanFieldError(
                f"checkpoint is for {state.get('algorithm')!r}, this learner is {expected!r}"
            )
        load_module(self.actor, state["actor"], "actor")
        load_module(self.critic, state["critic"], "critic")
        load_module(self.critic_target, state["critic_target"], "target critic")
        self.optimizer.load_state_dict(state["optimizer"])
        self.gradient_steps = int(state["counters"]["gradient_steps"])
