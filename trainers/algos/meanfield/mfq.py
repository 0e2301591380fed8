"""Mean-field Q-learning (MF-Q, Yang et al. 2018, arXiv 1802.05438, Alg. 1) and independent Q-learning (IQL).

One network Q(s, ., mean_a) gives the Q value of every action of one discrete branch, given the agent's
observation s and its mean action mean_a (:mod:`unimarl.trainers.algos.meanfield.mean_action`). The policy is
Boltzmann over the allowed actions only, pi(a | s, mean_a) ∝ exp(Q(s, a, mean_a) / T), with the temperature T
following a piecewise-linear schedule over training progress. Targets (paper eq. 10-11):

    v_MF(s') = sum_a pi(a | s', mean_a') Q_target(s', a, mean_a')
    y = r + gamma (1 - terminated) v_MF(s')

With ``double_q`` the online network gives pi and the target network evaluates; without, the target network
does both. The loss is (y - Q(s, a, mean_a))^2 and the target network follows by soft updates of rate tau.
IQL is the same learner with ``use_mean_action=False`` (no mean-action input at all).

Pace: once ``learning_starts`` transitions are stored, ``update`` runs the gradient steps owed, the more of
(a) enough that batch_size x gradient steps >= ``replay_ratio`` x transitions added over the run and (b) the
fixed cadence, ``gradient_steps`` per ``update_every`` calls of ``add``. Each step draws its own batch; the
batches of one ``update`` are read from the buffer in a few large gathers.

Seam with the training loop: ``act`` (batched, numpy in/out), ``add`` (one worker step of transitions),
``update`` (runs the gradient steps owed), ``set_progress`` (drives the temperature; rollout workers need it
too, it does not travel with the weights), ``get_weights``/``set_weights`` (numpy, for rollout workers) and
``state_dict``/``load_state_dict`` (plain tensors and numbers: loadable with
``torch.load(weights_only=True)``). The replay content is not saved.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from unimarl.trainers.algos.meanfield.mean_action import MeanFieldError
from unimarl.trainers.algos.meanfield.networks import (
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

GATHER_BYTES = 64 * 2**20
"""About how many bytes of observations one replay gather reads (batches for several steps at once)."""


# -- pure pieces of the update -------------------------------------------------------------------------------
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


def scheduled(points: Sequence[tuple[float, float]], progress: float) -> float:
    """Piecewise-linear schedule: ``points`` are (progress, value) pairs with increasing progress."""
    xs, ys = zip(*points, strict=True)
    return float(np.interp(min(max(progress, 0.0), 1.0), xs, ys))


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.perf_counter() >= deadline


# -- the learner ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MFQConfig(LearnerConfig):
    """MF-Q / IQL hyperparameters (with
    :class:`~unimarl.trainers.algos.meanfield.networks.LearnerConfig`'s)."""

    buffer_capacity: int = 80_000
    """Replay capacity in transitions (agent steps)."""
    replay_ratio: float = 0.0
    """Samples learned per transition added (see the module docstring). 0 here, so a learner built alone
    keeps the fixed cadence below; the training config defaults to 2.0, the reference's pace
    (:class:`~unimarl.trainers.core.mf_settings.MeanFieldHyperparameters`)."""
    update_every: int = 5
    """Calls of ``add`` per round of the fixed cadence; one call per worker step (the transitions of every
    agent of the worker's ``num_envs`` games), so num_envs env steps."""
    gradient_steps: int = 1
    """Gradient steps per round of the fixed cadence; 0: no fixed cadence (``replay_ratio`` alone)."""
    learning_starts: int = 64
    """Transitions stored before the first gradient step."""
    double_q: bool = True
    """Online network gives the target policy, target network evaluates it."""
    temperature: tuple[tuple[float, float], ...] = ((0.0, 1.0), (0.8, 0.2), (1.0, 0.1))
    """Boltzmann temperature as (progress, value) points: 1 -> 0.2 over 80% of training, then -> 0.1."""

    def __post_init__(self) -> None:
        bad = {k: getattr(self, k) for k in ("buffer_capacity", "update_every") if getattr(self, k) <= 0}
        bad |= {k: getattr(self, k) for k in ("replay_ratio", "gradient_steps") if getattr(self, k) < 0}
        if bad or self.invalid() or any(t <= 0 for _, t in self.temperature):
            raise MeanFieldError(
                f"invalid MF-Q settings {bad or ''} lr={self.learning_rate} batch_size={self.batch_size} "
                f"tau={self.tau} gamma={self.gamma} temperature={self.temperature}: need positive "
                "sizes/rates (replay_ratio, gradient_steps >= 0), tau in (0, 1], gamma in [0, 1]"
            )
        if self.replay_ratio == 0 and self.gradient_steps == 0:
            raise MeanFieldError(
                "MF-Q with replay_ratio 0 and gradient_steps 0 would never learn; set either above 0"
            )


class MFQLearner(LearnerBase):
    """MF-Q (or IQL) for one behaviour, with parameter sharing over its agents."""

    ALGORITHMS = ("mfq", "iql")
    ACTING = "q_online"
    NETS = {"q_online": "Q network", "q_target": "target Q network"}  # noqa: RUF012 - read-only table

    def __init__(
        self,
        spec: PolicySpec,
        config: MFQConfig | None = None,
        *,
        device: str = "cpu",
        seed: int | None = None,
    ) -> None:
        self.config = cfg = config or MFQConfig()
        super().__init__(spec, cfg, cfg.buffer_capacity, device, seed)
        self.q_online = QNetwork(spec.obs_shapes, self.n_actions, self.mean_dim, cfg.network).to(self.device)
        self.q_target = QNetwork(spec.obs_shapes, self.n_actions, self.mean_dim, cfg.network).to(self.device)
        self.q_target.load_state_dict(self.q_online.state_dict())
        self.optimizer = make_adam(self.q_online.parameters(), cfg.learning_rate)
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
        mask = self._mask(action_mask)
        pi = boltzmann_policy(q, mask, 1.0 / self.temperature)
        values = (pi * q.masked_fill(pi == 0, 0.0)).sum(dim=1).cpu().numpy()
        return self._choose(pi, masked_logits(q, mask), values, deterministic)

    def add(self, transitions: Transitions) -> None:
        """Store one worker step of transitions; counts them and the fixed cadence's rounds."""
        self.buffer.add(transitions)
        self.env_steps += 1
        self.transitions_added += len(transitions)
        if self.env_steps % self.config.update_every == 0:
            self._due += self.config.gradient_steps

    def steps_owed(self) -> int:
        """Gradient steps ``update`` would run now (see the module docstring)."""
        cfg = self.config
        if len(self.buffer) < cfg.learning_starts:
            return 0
        short = cfg.replay_ratio * self.transitions_added - self.samples_learned
        return max(self._due, math.ceil(short / cfg.batch_size) if short > 0 else 0)

    @torch.no_grad()
    def td_targets(self, s: ReplaySample) -> torch.Tensor:
        """y for a replay sample, with the current temperature (see the module docstring)."""
        return self._targets(self._batch(s), 1.0 / self.temperature)

    def _targets(self, b: Batch, beta: float) -> torch.Tensor:
        next_mean = b.next_mean_action if self.mean_dim else None
        q_t = self.q_target(b.next_obs, next_mean)
        q_o = self.q_online(b.next_obs, next_mean) if self.config.double_q else None
        v = mf_value(q_t, b.next_action_mask, beta, q_o)
        return td_target(b.reward, b.terminated, v, self.config.gamma)

    def _gradient_step(self, b: Batch, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
        """One step on batch ``b``; returns (loss, mean Q of the taken actions), detached."""
        with torch.no_grad():
            y = self._targets(b, beta)
        q = self.q_online(b.obs, b.mean_action if self.mean_dim else None)
        q_a = q.gather(1, b.action.view(-1, 1)).squeeze(1)
        loss = torch.mean((y - q_a) ** 2)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        soft_update(self.q_target, self.q_online, self.config.tau)
        self.gradient_steps += 1
        self.samples_learned += len(b.action)
        return loss.detach(), q_a.detach().mean()

    def _steps_per_gather(self) -> int:
        row_bytes = 2 * 4 * sum(math.prod(s) for s in self.spec.obs_shapes)  # obs and next obs, float32
        return max(1, GATHER_BYTES // (row_bytes * self.config.batch_size))

    def update(self, deadline: float | None = None) -> dict[str, float]:
        """Run the gradient steps owed (:meth:`steps_owed`), or as many as fit before ``deadline`` (a
        ``time.perf_counter()``; what the replay ratio asks stays owed); returns mean metrics (empty when none
        ran).

        Rounds of the fixed cadence that fall due before ``learning_starts`` transitions are stored are
        dropped; the replay ratio counts every transition added.
        """
        n = self.steps_owed()
        self._due = 0
        bs, beta = self.config.batch_size, 1.0 / self.temperature
        losses: list[torch.Tensor] = []
        q_means: list[torch.Tensor] = []
        while len(losses) < n and not _past(deadline):
            k = min(n - len(losses), self._steps_per_gather())
            batches = self._batch(self.buffer.sample_batches(bs, k))
            for i in range(k):
                if _past(deadline):
                    break
                loss, q_mean = self._gradient_step(batches.rows(i * bs, (i + 1) * bs), beta)
                losses.append(loss)
                q_means.append(q_mean)
        if not losses:
            return {}
        return {
            "q_loss": float(np.mean(torch.stack(losses).tolist())),
            "q_mean": float(np.mean(torch.stack(q_means).tolist())),
            "temperature": self.temperature,
            "gradient_steps": float(self.gradient_steps),
        }

    def _counters(self) -> dict[str, float | int]:
        return {"progress": self.progress, "env_steps": self.env_steps, "gradient_steps": self.gradient_steps}

    def _load_counters(self, counters: dict[str, float | int]) -> None:
        self.progress = float(counters["progress"])
        self.env_steps, self.gradient_steps = int(counters["env_steps"]), int(counters["gradient_steps"])
