"""Mean-field actor-critic (MF-AC, Yang et al. 2018, arXiv 1802.05438, sec. 3.3) and the plain AC baseline.

An actor pi_theta(a | s) over the allowed actions of one discrete branch (it does not see the mean action) and
a mean-field critic Q_phi(s, ., mean_a) trained like MF-Q, with the actor as the target policy:

    y = r + gamma (1 - terminated) sum_a pi_theta(a | s') Q_target(s', a, mean_a')
    A = Q_phi(s, a, mean_a) - sum_a pi_theta(a | s) Q_phi(s, a, mean_a)     (a constant in the actor loss)
    rho = min(1, pi_theta(a | s) / mu(a | s))                                  (a constant in the actor loss)
    loss = -rho A log pi_theta(a | s) + value_coef (y - Q_phi(s, a, mean_a))^2
           - entropy_coef H(pi_theta(. | s))

The learner is on-policy like the reference: ``add`` collects the transitions of the current policy,
``update`` makes one pass over them in shuffled minibatches and forgets them (call it at the end of each
episode or iteration). Transitions may carry ``logp``, the log-probability mu(a | s) of the action under the
weights that chose it: asynchronous (Ray) workers deliver data up to a few weight refreshes old, and the
policy gradient weights each such transition by the truncated importance ratio rho (IMPALA, Espeholt et al.
2018, arXiv 1802.01561, sec. 4: rho = min(rho_bar, pi / mu) with rho_bar = 1; rho = 1 where ``logp`` is
unknown). The critic needs no correction: its target takes the expectation under pi_theta for the action
actually taken. ``use_mean_action=False`` gives the plain actor-critic baseline (critic Q(s, a)).
The seam is the one of :class:`unimarl.trainers.algos.meanfield.mfq.MFQLearner`; the acting network is the
actor alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from unimarl.trainers.algos.meanfield.mean_action import MeanFieldError
from unimarl.trainers.algos.meanfield.mfq import td_target
from unimarl.trainers.algos.meanfield.networks import (
    Actor,
    Batch,
    LearnerBase,
    LearnerConfig,
    QNetwork,
    make_adam,
    masked_logits,
    soft_update,
    to_tensors,
)
from unimarl.trainers.algos.meanfield.replay import ReplaySample, Transitions
from unimarl.trainers.core.batch import ActOutput, PolicySpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MFACConfig(LearnerConfig):
    """MF-AC / AC hyperparameters (with :class:`~unimarl.trainers.algos.meanfield.networks.LearnerConfig`'s;
    one Adam optimiser over actor and critic; ``tau`` is the critic target's rate)."""

    value_coef: float = 0.1
    """Weight of the critic's squared TD error."""
    entropy_coef: float = 0.08
    """Weight of the policy entropy bonus."""
    rollout_capacity: int = 65_536
    """Transitions held between two updates; the oldest are overwritten beyond it."""

    def __post_init__(self) -> None:
        if self.invalid() or self.rollout_capacity <= 0 or min(self.value_coef, self.entropy_coef) < 0:
            raise MeanFieldError(
                f"invalid MF-AC settings {self}: need positive rates and sizes, tau in (0, 1], "
                "gamma in [0, 1], non-negative coefficients"
            )


def actor_critic_loss(
    logits: torch.Tensor,
    q: torch.Tensor,
    action: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor | None,
    value_coef: float,
    entropy_coef: float,
    behaviour_logp: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of the module doc; ``logits``/``q`` [B, A], ``action``/``y`` [B], mask True = allowed;
    ``behaviour_logp`` [B]: log mu(a | s) of the weights that chose each action (NaN or None: rho = 1)."""
    logp_all = torch.log_softmax(masked_logits(logits, mask), dim=1)
    pi = logp_all.exp()
    logp_safe = logp_all.masked_fill(pi == 0, 0.0)  # disallowed actions: 0 * -inf would be nan
    q_a = q.gather(1, action.view(-1, 1)).squeeze(1)
    advantage = (q_a - (pi * q).sum(dim=1)).detach()
    logp_a = logp_safe.gather(1, action.view(-1, 1)).squeeze(1)
    rho = torch.ones_like(advantage)
    if behaviour_logp is not None:
        known = torch.isfinite(behaviour_logp)
        ratio = torch.exp(logp_a.detach() - torch.where(known, behaviour_logp, logp_a.detach()))
        rho = ratio.clamp(max=1.0)  # truncated importance weight, rho_bar = 1 (IMPALA, arXiv 1802.01561)
    pg_loss = -(rho * advantage * logp_a).mean()
    critic_loss = torch.mean((y - q_a) ** 2)
    entropy = -(pi * logp_safe).sum(dim=1).mean()
    loss = pg_loss + value_coef * critic_loss - entropy_coef * entropy
    return loss, {
        "pg_loss": float(pg_loss.detach()),
        "critic_loss": float(critic_loss.detach()),
        "entropy": float(entropy.detach()),
        "advantage_abs": float(advantage.abs().mean()),
        "is_ratio": float(rho.mean()),
    }


class MFACLearner(LearnerBase):
    """MF-AC (or AC) for one behaviour, with parameter sharing over its agents."""

    ALGORITHMS = ("mfac", "ac")
    ACTING = "actor"
    NETS = {"actor": "actor", "critic": "critic", "critic_target": "target critic"}  # noqa: RUF012 - a table
    STORES_LOGP = True

    def __init__(
        self,
        spec: PolicySpec,
        config: MFACConfig | None = None,
        *,
        device: str = "cpu",
        seed: int | None = None,
    ) -> None:
        self.config = cfg = config or MFACConfig()
        super().__init__(spec, cfg, cfg.rollout_capacity, device, seed)
        self.actor = Actor(spec.obs_shapes, self.n_actions, cfg.network).to(self.device)
        self.critic = QNetwork(spec.obs_shapes, self.n_actions, self.mean_dim, cfg.network).to(self.device)
        self.critic_target = QNetwork(spec.obs_shapes, self.n_actions, self.mean_dim, cfg.network).to(
            self.device
        )
        self.critic_target.load_state_dict(self.critic.state_dict())
        params = [*self.actor.parameters(), *self.critic.parameters()]
        self.optimizer = make_adam(params, cfg.learning_rate)
        self.gradient_steps = 0

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
        logits = masked_logits(self.actor(x), self._mask(action_mask))
        pi = torch.softmax(logits, dim=1)
        if self.mean_dim == 0 or mean_action is not None:
            values = (pi * self.critic(x, self._mean(mean_action, b))).sum(dim=1).cpu().numpy()
        else:
            values = np.zeros(b, np.float32)
        return self._choose(pi, logits, values, deterministic)

    def add(self, transitions: Transitions) -> None:
        """Collect one worker step of transitions (with ``logp`` when chosen by older weights)."""
        self.buffer.add(transitions)
        self.transitions_added += len(transitions)

    def _minibatch_step(self, s: ReplaySample) -> dict[str, float]:
        b: Batch = self._batch(s)
        with torch.no_grad():
            pi_next = torch.softmax(masked_logits(self.actor(b.next_obs), b.next_action_mask), dim=1)
            q_next = self.critic_target(b.next_obs, b.next_mean_action if self.mean_dim else None)
            y = td_target(b.reward, b.terminated, (pi_next * q_next).sum(dim=1), self.config.gamma)
        q = self.critic(b.obs, b.mean_action if self.mean_dim else None)
        loss, logs = actor_critic_loss(
            self.actor(b.obs),
            q,
            b.action,
            y,
            b.action_mask,
            self.config.value_coef,
            self.config.entropy_coef,
            b.logp,
        )
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        soft_update(self.critic_target, self.critic, self.config.tau)
        self.gradient_steps += 1
        self.samples_learned += len(s.action)
        return logs

    def update(self, deadline: float | None = None) -> dict[str, float]:
        """One shuffled pass over the collected transitions (cut short at ``deadline``, a
        ``time.perf_counter()``), then forget them; mean metrics ({} if none)."""
        if len(self.buffer) == 0:
            return {}
        logs = []
        for s in self.buffer.iterate(self.config.batch_size):
            if deadline is not None and time.perf_counter() >= deadline:
                break
            logs.append(self._minibatch_step(s))
        self.buffer.clear()
        if not logs:
            return {}
        out = {k: float(np.mean([m[k] for m in logs])) for k in logs[0]}
        return {**out, "gradient_steps": float(self.gradient_steps)}

    def _counters(self) -> dict[str, float | int]:
        return {"gradient_steps": self.gradient_steps}

    def _load_counters(self, counters: dict[str, float | int]) -> None:
        self.gradient_steps = int(counters["gradient_steps"])
