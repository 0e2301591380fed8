"""Settings of a MAPPO policy: :class:`MAPPOHyperparameters` and :class:`NetworkSettings`.

Plain dataclasses that check their values on construction
(:class:`~unimarl.trainers.core.errors.ConfigError`); importing them does not import torch.
:mod:`unimarl.trainers.algos.mappo.policy` re-exports both.
"""

from __future__ import annotations

from dataclasses import dataclass

from unimarl.trainers.core.errors import ConfigError

VIS_ENCODE_TYPES = ("simple", "nature_cnn", "resnet", "match3", "fully_connected")
"""``network_settings.vis_encode_type`` values (ML-Agents' names; :mod:`unimarl.trainers.algos.encoders`)."""

TEAM_POOLINGS = ("mean_max", "attention")
"""``network_settings.team_pooling`` values (:mod:`unimarl.trainers.algos.mappo.networks`)."""


@dataclass
class MAPPOHyperparameters:
    """PPO/MAPPO settings; defaults: the "default" column of the MAPPO reference code (onpolicy/config.py)."""

    lr: float = 5e-4
    """Actor learning rate (Adam)."""
    critic_lr: float = 5e-4
    """Critic learning rate (Adam)."""
    epochs: int = 15
    """Passes over the batch per update."""
    num_minibatches: int = 1
    """Minibatches per pass; each holds about N / num_minibatches agent steps."""
    clip: float = 0.2
    """PPO ratio clip epsilon."""
    value_clip: float | None = 0.2
    """Clip of the value change around the behaviour-time value (normalised units); None disables it."""
    gamma: float = 0.99
    """Discount factor (used by the rollout side's GAE)."""
    lam: float = 0.95
    """GAE lambda (used by the rollout side's GAE)."""
    entropy_coef: float = 0.01
    """Weight of the entropy bonus in the actor loss."""
    value_coef: float = 1.0
    """Weight of the value loss in the critic loss."""
    max_grad_norm: float | None = 10.0
    """Gradient-norm clip, applied to actor and critic separately; None disables it."""
    huber_delta: float | None = 10.0
    """Huber threshold of the value loss; None uses 0.5 * squared error."""
    use_value_norm: bool = True
    """Critic regresses returns normalised by running statistics (ValueNorm)."""
    use_popart: bool = False
    """Use PopArt (which also rescales the value head on each statistics update) instead of ValueNorm."""
    adam_eps: float = 1e-5
    """Adam epsilon."""
    normalize_advantages: bool = True
    """Normalise advantages to mean 0, std 1 over the counted steps of each minibatch."""
    lr_schedule: str = "constant"
    """constant, or linear: ``lr`` and ``critic_lr`` fall linearly with the run's progress to 1e-10 at its
    end (ML-Agents' ``learning_rate_schedule``)."""
    entropy_schedule: str = "constant"
    """constant, or linear: ``entropy_coef`` falls linearly to 1e-5 (ML-Agents' ``beta_schedule``)."""
    clip_schedule: str = "constant"
    """constant, or linear: ``clip`` falls linearly to 0.1 (ML-Agents' ``epsilon_schedule``)."""

    def __post_init__(self) -> None:
        for name in ("lr", "critic_lr", "clip", "adam_eps"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"hyperparameters.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("epochs", "num_minibatches"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(
                    f"hyperparameters.{name} must be an integer >= 1, got {getattr(self, name)!r}"
                )
        for name in ("gamma", "lam"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"hyperparameters.{name} must lie in [0, 1], got {getattr(self, name)!r}")
        for name in ("lr_schedule", "entropy_schedule", "clip_schedule"):
            if getattr(self, name) not in SCHEDULES:
                raise ConfigError(
                    f"hyperparameters.{name} is {getattr(self, name)!r}; use one of {', '.join(SCHEDULES)}"
                )

    def scheduled(self, progress: float) -> tuple[float, float, float, float]:
        """(lr, critic_lr, entropy_coef, clip) at ``progress`` in [0, 1] of the run."""
        return (
            _linear(self.lr, LINEAR_FLOORS["lr"], progress, self.lr_schedule),
            _linear(self.critic_lr, LINEAR_FLOORS["lr"], progress, self.lr_schedule),
            _linear(self.entropy_coef, LINEAR_FLOORS["entropy_coef"], progress, self.entropy_schedule),
            _linear(self.clip, LINEAR_FLOORS["clip"], progress, self.clip_schedule),
        )


SCHEDULES = ("constant", "linear")
LINEAR_FLOORS = {"lr": 1e-10, "entropy_coef": 1e-5, "clip": 0.1}
"""Where a linear schedule ends (ML-Agents' PPO: learning rate 1e-10, beta 1e-5, epsilon 0.1)."""


def _linear(start: float, end: float, progress: float, schedule: str) -> float:
    """``start`` (constant), or ``start`` falling linearly to ``end`` at progress 1 (linear)."""
    if schedule == "constant":
        return start
    return (start - end) * (1.0 - min(max(progress, 0.0), 1.0)) + end


@dataclass
class NetworkSettings:
    """Shape of the actor and critic MLPs (both get the same settings)."""

    hidden_units: int = 64
    """Width of every hidden layer."""
    num_layers: int = 2
    """Number of hidden layers (the reference's fc1 plus layer_N = 1)."""
    activation: str = "tanh"
    """Hidden activation: "tanh" or "relu"."""
    layer_norm: bool = True
    """LayerNorm after every hidden layer."""
    normalize_inputs: bool = True
    """Normalise observations (and global state) with running mean/std; otherwise they pass unchanged."""
    centralized_critic: bool = True
    """MAPPO's centralised critic (global state or teammates' observations); False: V(own observation) only,
    i.e. plain shared-policy PPO (the baseline of benchmarks/mappo_vs_ppo.py)."""
    vis_encode_type: str | None = None
    """Encoder of image (rank-3) observations, as in ML-Agents: "simple" (2 convs, images >= 20x20),
    "nature_cnn" (3 convs, >= 36x36), "resnet" (>= 15x15), "match3" (>= 5x5) or "fully_connected"; an image
    too small for the one named is refused. None: "simple" (ML-Agents' default) where the image fits it, else
    "fully_connected"."""
    team_pooling: str = "mean_max"
    """How the critic pools its teammates' embeddings: "mean_max" (masked mean and max) or "attention"
    (an attention read with the agent's own embedding as query, as in MA-POCA)."""

    def __post_init__(self) -> None:
        if self.vis_encode_type is not None and self.vis_encode_type not in VIS_ENCODE_TYPES:
            raise ConfigError(
                f"network_settings.vis_encode_type {self.vis_encode_type!r} is unknown; "
                f"use one of {list(VIS_ENCODE_TYPES)}"
            )
        if self.team_pooling not in TEAM_POOLINGS:
            raise ConfigError(
                f"network_settings.team_pooling {self.team_pooling!r} is unknown; "
                f"use one of {list(TEAM_POOLINGS)}"
            )
        if int(self.hidden_units) < 1 or int(self.num_layers) < 1:
            raise ConfigError(
                f"network_settings needs hidden_units >= 1 and num_layers >= 1, "
                f"got {self.hidden_units!r} and {self.num_layers!r}"
            )


@dataclass
class GhostSettings:
    """Self-play for MAPPO between teams, as ML-Agents' ghost trainer (``self_play`` of a ppo / poca
    behaviour in ML-Agents' spelling; :mod:`unimarl.trainers.selfplay.ghost`). Step counts are env steps
    (ML-Agents: the learning team's agent steps for ``save_steps`` and ``team_change``, the opponents' for
    ``swap_steps``)."""

    save_steps: int = 20_000
    """Env steps of learning between snapshots of the policy added to the opponents' window."""
    team_change: int = 100_000
    """Env steps before the next team learns (ML-Agents' default: 5 x save_steps)."""
    swap_steps: int = 10_000
    """Env steps between draws of a new opponent snapshot."""
    window: int = 10
    """Snapshots kept to draw opponents from."""
    play_against_latest_model_ratio: float = 0.5
    """Probability that an opponent draw is the learning policy itself rather than a window snapshot."""
    initial_elo: float = 1200.0

    def check(self, where: str) -> None:
        for key in ("save_steps", "team_change", "swap_steps", "window"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{where}.{key} must be >= 1, got {getattr(self, key)}")
        if not 0.0 <= self.play_against_latest_model_ratio <= 1.0:
            raise ConfigError(
                f"{where}.play_against_latest_model_ratio must be between 0 and 1, got "
                f"{self.play_against_latest_model_ratio}"
            )
