"""MAPPO (Yu et al. 2021, arXiv 2103.01955): one shared actor and one centralised critic per policy.

:class:`MAPPOPolicy` is the learner's and the rollout workers' view of a policy:

- :meth:`MAPPOPolicy.act` runs ONE batched forward for B agents (numpy in, numpy out): sampled (or
  deterministic) actions, their log-prob, and the critic's value in reward units.
- :meth:`MAPPOPolicy.update` trains on one :class:`RolloutBatch` (advantages already computed per trajectory
  by the rollout side): ``epochs`` passes, each over ``num_minibatches`` random minibatches of the N agent
  steps. The critic regresses normalised returns with a clipped Huber (or MSE) loss whose clip is centred on
  the critic's own output at collection time. Actor and critic have separate Adam optimisers and separate
  gradient clipping, as in the reference code. Advantages are normalised per minibatch over counted
  (``loss_mask``) steps; masked-out rows (padding added by a caller; rollout batches hold none) contribute
  nothing to any loss, metric or normaliser.
- Normalisers move after the epochs: the observation, global-state and value statistics take the batch's
  counted steps once the gradient steps are done, so the epochs see the inputs and value units the batch was
  collected with (the ratio is exactly 1 at the first minibatch). One exception: a ValueNorm that has seen
  no data takes its first statistics before the epochs, so the critic does not learn identity-unit targets
  that the first update would then rescale (PopArt rescales its head instead). Statistics are updated only by
  the learner and reach the workers with the weights, so every worker normalises identically.

Randomness is private: network init runs under a forked global RNG seeded with ``seed``, and sampling and
minibatch shuffling use the policy's own generators (saved in :meth:`state_dict` for exact resume).

The settings (:class:`MAPPOHyperparameters`, :class:`NetworkSettings`) live in
:mod:`unimarl.trainers.core.mappo_settings`, which imports no torch; they are re-exported here.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from unimarl.bridge.spec import ActionSpec
from unimarl.trainers.algos.mappo.losses import entropy_bonus, masked_mean, policy_loss, value_loss
from unimarl.trainers.algos.mappo.networks import (
    CriticInputTensors,
    build_actor,
    build_critic,
    critic_rows,
    entropy,
    log_prob,
    sample_actions,
)
from unimarl.trainers.algos.mappo.normalizers import PopArt, ValueNorm
from unimarl.trainers.core.action_map import ActionBounds, bounds_entry
from unimarl.trainers.core.batch import ActOutput, CriticInput, PolicySpec, RolloutBatch
from unimarl.trainers.core.errors import TrainerError
from unimarl.trainers.core.mappo_settings import MAPPOHyperparameters, NetworkSettings

__all__ = [
    "STATE_DICT_FORMAT",
    "MAPPOHyperparameters",
    "MAPPOPolicy",
    "NetworkSettings",
    "PolicyInputError",
]

STATE_DICT_FORMAT = 1


class PolicyInputError(TrainerError):
    """Arrays passed to a policy disagree with its PolicySpec (number of sensors, shapes, mask width)."""


@dataclass(frozen=True)
class _BatchTensors:
    """A RolloutBatch on the learner's device; ``returns_n``/``values_n`` are in normalised units."""

    obs: list[Tensor]
    critic: CriticInputTensors
    continuous: Tensor
    discrete: Tensor
    action_mask: Tensor | None
    logp: Tensor
    advantages: Tensor
    returns_n: Tensor
    values_n: Tensor
    loss_mask: Tensor


def _take(t: Tensor | None, idx: Tensor | None) -> Tensor | None:
    """Rows ``idx`` of ``t``; all of them when ``idx`` is None."""
    return t if t is None or idx is None else t[idx]


class MAPPOPolicy:
    """Actor, centralised critic, normalisers and optimisers of one policy (see the module docstring)."""

    def __init__(
        self,
        spec: PolicySpec,
        hp: MAPPOHyperparameters,
        net: NetworkSettings,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        self.spec, self.hp, self.net = spec, hp, net
        self.device = torch.device(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.actor = build_actor(spec, net).to(self.device)
            self.critic = build_critic(spec, net).to(self.device)
        self.value_norm: ValueNorm | None = None
        if hp.use_popart:
            self.value_norm = PopArt().to(self.device)
        elif hp.use_value_norm:
            self.value_norm = ValueNorm().to(self.device)
        # foreach: one multi-tensor kernel per Adam step instead of one per parameter (CPU default is off)
        self.actor_optim = torch.optim.Adam(self.actor.parameters(), lr=hp.lr, eps=hp.adam_eps, foreach=True)
        self.critic_optim = torch.optim.Adam(
            self.critic.parameters(), lr=hp.critic_lr, eps=hp.adam_eps, foreach=True
        )
        self.lr, self.critic_lr, self.entropy_coef, self.clip = hp.scheduled(0.0)
        """The values in use now (they follow the run's progress under a linear schedule)."""
        self._sample_gen = torch.Generator(device=self.device)
        self._sample_gen.manual_seed(seed)
        self._perm_gen = torch.Generator()
        self._perm_gen.manual_seed(seed + 1)

    # numpy <-> torch
    def _obs_tensors(self, obs: tuple[np.ndarray, ...]) -> list[Tensor]:
        if len(obs) != len(self.spec.obs_shapes):
            raise PolicyInputError(
                f"policy expects {len(self.spec.obs_shapes)} observation arrays "
                f"(shapes {self.spec.obs_shapes}), got {len(obs)}; pass one array per sensor in spec order"
            )
        tensors = []
        for i, (o, shape) in enumerate(zip(obs, self.spec.obs_shapes, strict=True)):
            if tuple(o.shape[1:]) != tuple(shape):
                raise PolicyInputError(
                    f"observation {i} has shape {tuple(o.shape)}, expected [B, *{tuple(shape)}]; "
                    "check the PolicySpec built for this behaviour"
                )
            # uint8 images (k / 255) travel as bytes; the encoders convert them
            # (unimarl.trainers.algos.encoders)
            dtype = np.uint8 if o.dtype == np.uint8 else np.float32
            tensors.append(torch.as_tensor(np.asarray(o, dtype), device=self.device))
        return tensors

    def _mask_tensor(self, action_mask: np.ndarray | None, batch: int) -> Tensor | None:
        if action_mask is None or self.spec.mask_size == 0:
            return None
        if tuple(action_mask.shape) != (batch, self.spec.mask_size):
            raise PolicyInputError(
                f"action_mask has shape {tuple(action_mask.shape)}, "
                f"expected ({batch}, {self.spec.mask_size}) "
                f"= [B, sum of branches {self.spec.action_spec.discrete_branches}] with 1 = allowed"
            )
        return torch.as_tensor(np.asarray(action_mask, np.float32), device=self.device)

    def _critic_tensors(self, critic: CriticInput) -> CriticInputTensors:
        def conv(a: np.ndarray | None, dtype: Any) -> Tensor | None:
            return None if a is None else torch.as_tensor(np.asarray(a, dtype), device=self.device)

        return CriticInputTensors(
            state=conv(critic.state, np.float32),
            team_rows=conv(critic.team_rows, np.int64),
            team_embeddings=conv(critic.team_embeddings, np.float32),
            team_embedding_mask=conv(critic.team_embedding_mask, bool),
        )

    def _to_reward_units(self, values: Tensor) -> Tensor:
        return values if self.value_norm is None else self.value_norm.denormalize(values)

    def _to_normalised(self, values: Tensor) -> Tensor:
        return values if self.value_norm is None else self.value_norm.normalize(values)

    # acting
    @torch.no_grad()
    def act(
        self,
        obs: tuple[np.ndarray, ...],
        action_mask: np.ndarray | None,
        critic: CriticInput,
        deterministic: bool = False,
    ) -> ActOutput:
        """Actions, log-probs and values (reward units) for B agents in one batched forward pass."""
        obs_t = self._obs_tensors(obs)
        out = self.actor(obs_t, self._mask_tensor(action_mask, obs_t[0].shape[0]))
        continuous, discrete = sample_actions(out, deterministic, self._sample_gen)
        logp = log_prob(out, continuous, discrete)
        values, embeddings = self.critic.values_and_embeddings(obs_t, self._critic_tensors(critic))
        return ActOutput(
            continuous_actions=continuous.cpu().numpy().astype(np.float32),
            discrete_actions=discrete.cpu().numpy().astype(np.int64),
            logp=logp.cpu().numpy().astype(np.float32),
            values=self._to_reward_units(values).cpu().numpy().astype(np.float32),
            embeddings=None if embeddings is None else embeddings.cpu().numpy().astype(np.float32),
        )

    @torch.no_grad()
    def value(self, obs: tuple[np.ndarray, ...], critic: CriticInput) -> np.ndarray:
        """Critic values (float32 [B], reward units), e.g. to bootstrap truncated trajectories."""
        values = self.critic(self._obs_tensors(obs), self._critic_tensors(critic))
        return self._to_reward_units(values).cpu().numpy().astype(np.float32)

    @torch.no_grad()
    def embed(self, obs: tuple[np.ndarray, ...]) -> np.ndarray:
        """The critic's teammate embeddings (float32 [B, W]) of agents observing ``obs``: what the critics of
        their teammates of other policies pool (:class:`~unimarl.trainers.core.batch.CriticInput`)."""
        return self.critic.embed(self._obs_tensors(obs)).cpu().numpy().astype(np.float32)

    @property
    def embedding_width(self) -> int | None:
        """Width of :meth:`embed`, or None when the critic pools no teammates."""
        return None if self.critic.team_encoder is None else int(self.critic.team_width)

    @torch.no_grad()
    def update_obs_normalizer(self, obs: tuple[np.ndarray, ...]) -> None:
        """Merge observations [N, ...] into the input statistics of actor and critic (no-op if disabled)."""
        if not self.net.normalize_inputs:
            return
        obs_t = self._obs_tensors(obs)
        self.actor.update_normalizer(obs_t)  # vector sensors only: images are not normalised
        self.critic.update_normalizer(obs_t)

    # learning
    def _batch_tensors(self, batch: RolloutBatch) -> _BatchTensors:
        obs = self._obs_tensors(batch.obs)
        n = obs[0].shape[0]
        dev = self.device

        def vec(a: np.ndarray) -> Tensor:
            return torch.as_tensor(np.asarray(a, np.float32), device=dev).reshape(n)

        critic = self._critic_tensors(batch.critic)
        loss_mask = vec(batch.loss_mask)
        returns, values = vec(batch.returns), vec(batch.values)
        # the critic's outputs at collection, in its units: the statistics have not moved since then
        values_n = self._to_normalised(values)
        if self._seeds_value_norm():
            assert self.value_norm is not None
            self.value_norm.update(returns[loss_mask > 0])  # first statistics (module docstring)
        return _BatchTensors(
            obs=obs,
            critic=critic,
            continuous=torch.as_tensor(np.asarray(batch.continuous_actions, np.float32), device=dev),
            discrete=torch.as_tensor(np.asarray(batch.discrete_actions, np.int64), device=dev),
            action_mask=self._mask_tensor(batch.action_mask, n),
            logp=vec(batch.logp),
            advantages=vec(batch.advantages),
            returns_n=self._to_normalised(returns),
            values_n=values_n,
            loss_mask=loss_mask,
        )

    def _seeds_value_norm(self) -> bool:
        """Whether the value statistics are set before the epochs: a plain ValueNorm that has seen no data."""
        vn = self.value_norm
        return vn is not None and not isinstance(vn, PopArt) and not vn.initialised

    @torch.no_grad()
    def _update_normalizers(self, batch: RolloutBatch, b: _BatchTensors, seeded: bool) -> None:
        """After the epochs: merge the batch's counted steps into the input and value statistics."""
        counted = b.loss_mask > 0
        if self.value_norm is not None and not seeded:
            returns = torch.as_tensor(np.asarray(batch.returns, np.float32), device=self.device).reshape(-1)
            if isinstance(self.value_norm, PopArt):
                self.value_norm.update_preserving(returns[counted], self.critic.value_head)
            else:
                self.value_norm.update(returns[counted])
        state = b.critic.state
        if self.critic.state_norm is not None and state is not None and self.net.normalize_inputs:
            self.critic.state_norm.update(torch.flatten(state, start_dim=1)[counted])
        rows = counted.nonzero().squeeze(1).cpu().numpy()
        self.update_obs_normalizer(tuple(np.asarray(o)[rows] for o in batch.obs))

    def set_progress(self, progress: float) -> None:
        """Move the scheduled settings (learning rates, entropy weight, clip) to ``progress`` of the run."""
        self.lr, self.critic_lr, self.entropy_coef, self.clip = self.hp.scheduled(progress)
        for group in self.actor_optim.param_groups:
            group["lr"] = self.lr
        for group in self.critic_optim.param_groups:
            group["lr"] = self.critic_lr

    def update(self, batch: RolloutBatch, deadline: float | None = None) -> dict[str, float]:
        """Train on one batch: ``epochs`` x ``num_minibatches`` gradient steps; returns mean metrics.

        ``deadline`` (a ``time.perf_counter()`` value): stop starting minibatches once it has passed (at least
        one runs); the normalisers are updated either way.
        """
        n = len(batch)
        if n == 0:
            raise PolicyInputError(
                "update() got an empty RolloutBatch; collect at least one agent step first"
            )
        seeded = self._seeds_value_norm()
        b = self._batch_tensors(batch)
        minibatch_size = math.ceil(n / int(self.hp.num_minibatches))
        totals: dict[str, float] = {}
        steps = 0
        late = False
        for _ in range(int(self.hp.epochs)):
            if minibatch_size >= n:  # one minibatch: the whole batch, no shuffle and no gather needed
                parts: list[Tensor | None] = [None]
            else:
                perm = torch.randperm(n, generator=self._perm_gen).to(self.device)
                parts = [perm[start : start + minibatch_size] for start in range(0, n, minibatch_size)]
            for idx in parts:
                late = steps > 0 and deadline is not None and time.perf_counter() >= deadline
                if late:
                    break
                for key, val in self._minibatch_step(b, idx).items():
                    totals[key] = totals.get(key, 0.0) + val
                steps += 1
            if late:
                break
        self._update_normalizers(batch, b, seeded)
        metrics = {key: val / steps for key, val in totals.items()}
        metrics["Policy/Learning Rate"] = float(self.lr)
        metrics["Policy/Beta"] = float(self.entropy_coef)
        metrics["Policy/Epsilon"] = float(self.clip)
        metrics["Policy/Minibatch Steps"] = float(steps)
        return metrics

    def _minibatch_step(self, b: _BatchTensors, idx: Tensor | None) -> dict[str, float]:
        """One actor step and one critic step on the steps ``idx`` of the batch (None: all steps).

        Actor and critic share no parameters, so one backward pass of the summed losses gives each exactly
        the gradient of its own loss; each is then clipped and stepped separately.
        """
        hp = self.hp

        def rows(t: Tensor) -> Tensor:
            return t if idx is None else t[idx]

        mb_obs = [rows(o) for o in b.obs]
        mb_mask = rows(b.loss_mask)
        mb_adv = rows(b.advantages)
        if hp.normalize_advantages:
            adv_mean = masked_mean(mb_adv, mb_mask)
            adv_std = torch.sqrt(masked_mean((mb_adv - adv_mean).square(), mb_mask))
            mb_adv = (mb_adv - adv_mean) / (adv_std + 1e-8)

        out = self.actor(mb_obs, _take(b.action_mask, idx))
        mb_logp = log_prob(out, rows(b.continuous), rows(b.discrete))
        mb_logp_old = rows(b.logp)
        pg_loss = policy_loss(mb_logp, mb_logp_old, mb_adv, mb_mask, self.clip)
        mb_entropy = entropy_bonus(entropy(out), mb_mask)

        critic = critic_rows(b.critic, idx, b.obs)  # teammates may lie outside the minibatch
        mb_values = self.critic(mb_obs, critic)
        v_loss = value_loss(
            mb_values, rows(b.values_n), rows(b.returns_n), mb_mask, hp.value_clip, hp.huber_delta
        )
        self.actor_optim.zero_grad(set_to_none=True)
        self.critic_optim.zero_grad(set_to_none=True)
        (pg_loss - self.entropy_coef * mb_entropy + hp.value_coef * v_loss).backward()
        actor_grad_norm = self._clip_and_step(self.actor, self.actor_optim)
        critic_grad_norm = self._clip_and_step(self.critic, self.critic_optim)

        with torch.no_grad():
            log_ratio = mb_logp - mb_logp_old
            ratio = torch.exp(log_ratio)
            # k3 estimator of KL(old || new) (Schulman, "Approximating KL divergence", 2020)
            approx_kl = masked_mean((ratio - 1.0) - log_ratio, mb_mask)
            clip_fraction = masked_mean(((ratio - 1.0).abs() > self.clip).float(), mb_mask)
        return {
            "Losses/Policy Loss": pg_loss.detach().item(),
            "Losses/Value Loss": v_loss.detach().item(),
            "Policy/Entropy": mb_entropy.detach().item(),
            "Policy/Approx KL": approx_kl.item(),
            "Policy/Clip Fraction": clip_fraction.item(),
            "Losses/Grad Norm": actor_grad_norm,
            "Losses/Critic Grad Norm": critic_grad_norm,
        }

    def _clip_and_step(self, module: nn.Module, optim: torch.optim.Optimizer) -> float:
        """Clip the gradient norm of ``module``, step ``optim``; returns the norm before clipping."""
        max_norm = math.inf if self.hp.max_grad_norm is None else float(self.hp.max_grad_norm)
        norm = nn.utils.clip_grad_norm_(module.parameters(), max_norm, foreach=True)
        optim.step()
        return norm.item()

    # weights and state
    def _modules(self) -> dict[str, nn.Module]:
        modules: dict[str, nn.Module] = {"actor": self.actor, "critic": self.critic}
        if self.value_norm is not None:
            modules["value_norm"] = self.value_norm
        return modules

    def get_weights(self) -> dict[str, np.ndarray]:
        """Actor, critic and normaliser tensors as numpy copies, keyed ``<module>.<parameter name>``."""
        return {
            f"{prefix}.{key}": tensor.detach().cpu().numpy().copy()
            for prefix, module in self._modules().items()
            for key, tensor in module.state_dict().items()
        }

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Load weights produced by :meth:`get_weights` of a policy with the same spec and settings."""
        for prefix, module in self._modules().items():
            sub = {
                # a copy: arrays from Ray's object store are read-only, which torch.as_tensor warns about
                key[len(prefix) + 1 :]: torch.from_numpy(np.array(val, copy=True))
                for key, val in weights.items()
                if key.startswith(prefix + ".")
            }
            try:
                module.load_state_dict(sub, strict=True)
            except RuntimeError as e:
                raise PolicyInputError(
                    f"weights do not fit this policy's {prefix} ({e}); they must come from get_weights() "
                    "of a policy with the same PolicySpec, NetworkSettings and value normaliser"
                ) from e

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly; only tensors, primitives, dicts, lists (weights_only-safe)."""
        state: dict[str, Any] = {
            "format": STATE_DICT_FORMAT,
            "modules": {name: module.state_dict() for name, module in self._modules().items()},
            "actor_optim": self.actor_optim.state_dict(),
            "critic_optim": self.critic_optim.state_dict(),
            "rng": {"sample": self._sample_gen.get_state(), "permutation": self._perm_gen.get_state()},
            "spec": {
                "obs_shapes": [list(shape) for shape in self.spec.obs_shapes],
                "continuous_size": self.spec.action_spec.continuous_size,
                "discrete_branches": list(self.spec.action_spec.discrete_branches),
                "state_shape": None if self.spec.state_shape is None else list(self.spec.state_shape),
                "action_bounds": bounds_entry(self.spec.action_bounds),
            },
        }
        return state

    @staticmethod
    def spec_from_state(state: dict[str, Any]) -> PolicySpec:
        """The PolicySpec saved by :meth:`state_dict` (to rebuild a policy before loading its state)."""
        if "spec" not in state:
            raise TrainerError("policy state holds no spec; it was written before specs were saved")
        spec = state["spec"]
        return PolicySpec(
            obs_shapes=tuple(tuple(int(d) for d in shape) for shape in spec["obs_shapes"]),
            action_spec=ActionSpec(
                int(spec["continuous_size"]), tuple(int(b) for b in spec["discrete_branches"])
            ),
            state_shape=None if spec["state_shape"] is None else tuple(int(d) for d in spec["state_shape"]),
            action_bounds=ActionBounds.from_entry(spec.get("action_bounds")),
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (networks, normalisers, optimisers, random generators)."""
        if state.get("format") != STATE_DICT_FORMAT:
            raise TrainerError(
                f"policy state has format {state.get('format')!r}, this version reads {STATE_DICT_FORMAT}; "
                "resume with the version that wrote the checkpoint"
            )
        modules = self._modules()
        if set(state["modules"]) != set(modules):
            raise TrainerError(
                f"policy state holds modules {sorted(state['modules'])}, this policy has {sorted(modules)}; "
                "use the same value-normalisation settings as the run that wrote it"
            )
        try:
            for name, module in modules.items():
                module.load_state_dict(state["modules"][name], strict=True)
        except RuntimeError as e:
            raise TrainerError(f"policy state does not fit this policy's networks: {e}") from e
        self.actor_optim.load_state_dict(state["actor_optim"])
        self.critic_optim.load_state_dict(state["critic_optim"])
        self._sample_gen.set_state(state["rng"]["sample"].cpu())
        self._perm_gen.set_state(state["rng"]["permutation"].cpu())
