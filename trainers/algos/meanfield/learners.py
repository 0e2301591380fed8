"""Mean-field learner construction from the config sections of :mod:`unimarl.trainers.core.mf_settings`."""

from __future__ import annotations

import dataclasses
from typing import TypeAlias

from unimarl.trainers.algos.meanfield.mfac import MFACConfig, MFACLearner
from unimarl.trainers.algos.meanfield.mfq import MFQConfig, MFQLearner
from unimarl.trainers.algos.meanfield.networks import NetworkConfig
from unimarl.trainers.core.batch import PolicySpec
from unimarl.trainers.core.errors import ConfigError
from unimarl.trainers.core.mf_settings import (
    MEAN_FIELD_TRAINERS,
    MeanFieldHyperparameters,
    SelfPlaySettings,
    check_position_sensor,
    check_settings,
    fixed_cadence,
)

__all__ = [
    "MEAN_FIELD_TRAINERS",
    "MFLearner",
    "MeanFieldHyperparameters",
    "SelfPlaySettings",
    "check_position_sensor",
    "check_settings",
    "learner_config",
    "make_learner",
    "network_config",
]

MFLearner: TypeAlias = MFQLearner | MFACLearner


def network_config(hp: MeanFieldHyperparameters) -> NetworkConfig:
    """The learner network's config from the YAML section."""
    return NetworkConfig(
        encoder=hp.encoder,
        conv_channels=tuple(hp.conv_channels),
        visual_hidden=hp.visual_hidden,
        head_hidden=tuple(hp.head_hidden),
        mean_input=hp.mean_action_input,
    )


def learner_config(trainer_type: str, hp: MeanFieldHyperparameters) -> MFQConfig | MFACConfig:
    """The learner's own config from the YAML section."""
    common = dict(
        use_mean_action=hp.use_mean_action,
        network=network_config(hp),
        learning_rate=hp.learning_rate,
        gamma=hp.gamma,
        batch_size=hp.batch_size,
        tau=hp.tau,
    )
    if trainer_type == "mfq":
        update_every, gradient_steps = fixed_cadence(hp)
        return MFQConfig(
            **common,  # type: ignore[arg-type]
            buffer_capacity=hp.buffer_capacity,
            replay_ratio=hp.replay_ratio,
            update_every=update_every,
            gradient_steps=gradient_steps,
            learning_starts=hp.learning_starts,
            double_q=hp.double_q,
            temperature=tuple((float(p), float(v)) for p, v in hp.temperature),
        )
    if trainer_type == "mfac":
        return MFACConfig(
            **common,  # type: ignore[arg-type]
            rollout_capacity=hp.buffer_capacity,
            value_coef=hp.value_coef,
            entropy_coef=hp.entropy_coef,
        )
    raise ConfigError(f"trainer_type '{trainer_type}' is not a mean-field trainer; use mfq or mfac")


def make_learner(
    trainer_type: str,
    spec: PolicySpec,
    hp: MeanFieldHyperparameters,
    *,
    device: str = "cpu",
    seed: int | None = None,
    acting_only: bool = False,
) -> MFLearner:
    """An MF-Q or MF-AC learner; ``acting_only`` (rollout workers) keeps only a token replay buffer."""
    check_position_sensor(spec, hp)
    cfg = learner_config(trainer_type, hp)
    if isinstance(cfg, MFQConfig):
        if acting_only:
            cfg = dataclasses.replace(cfg, buffer_capacity=1)
        return MFQLearner(spec, cfg, device=device, seed=seed)
    if acting_only:
        cfg = dataclasses.replace(cfg, rollout_capacity=1)
    return MFACLearner(spec, cfg, device=device, seed=seed)
