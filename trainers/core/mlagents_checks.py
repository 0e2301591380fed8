"""Checks and refusals for reading ML-Agents configs (:mod:`unimarl.trainers.core.mlagents_schema`).

:data:`REFUSED` lists the ML-Agents settings unimarl cannot honour, each with why and what to do instead;
:class:`UnsupportedSettingError` reports every refused key of a file at once. The helpers check the keys and
the values the translation itself computes with; everything else is checked by unimarl's own validation.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from unimarl.trainers.core.errors import ConfigError

REFUSED = {
    "trainer_type": ("trainer_type {value!r} is not a trainer unimarl reads", "use ppo or poca"),
    "sac": (
        "ML-Agents' SAC trainer is not implemented",
        "use trainer_type: ppo (poca for Unity groups) with PPO's hyperparameters (batch_size, "
        "buffer_size, learning_rate, beta, epsilon, lambd, num_epoch); unimarl's off-policy learner is mfq, "
        "in its own spelling",
    ),
    "shared_critic": (
        "a policy and value network sharing one body is not implemented",
        "unimarl's actor and critic are separate networks (ML-Agents' default): set shared_critic: false",
    ),
    "memory": (
        "recurrent (LSTM) policies are not implemented",
        "unimarl's policies are feed-forward: remove memory, or stack observations in the game (Behavior "
        "Parameters > Stacked Vectors)",
    ),
    "goal_conditioning_type": (
        "hyper-network goal conditioning is not implemented",
        "unimarl feeds goal-signal observations like any other: set goal_conditioning_type: none",
    ),
    "deterministic": (
        "acting with the most probable action while training is not implemented",
        "unimarl samples while training; exported models carry deterministic outputs for the game's "
        "Deterministic Inference, `unimarl eval --greedy` evaluates greedily: set deterministic: false",
    ),
    "signal": (
        "the {value} reward signal is not implemented",
        "unimarl learns from the extrinsic reward (the game's rewards plus group rewards): remove it",
    ),
    "extrinsic": (
        "without the extrinsic signal a behaviour learns from intrinsic rewards only (not implemented)",
        "add extrinsic: {{gamma: 0.99, strength: 1.0}}",
    ),
    "strength": (
        "scaling the game's rewards by {value} is not implemented",
        "unimarl learns from the rewards as the game gives them: set strength: 1.0 or scale them in the game",
    ),
    "init_path": (
        "starting from another run's weights is not implemented",
        "unimarl continues its own runs with run.resume (--resume): remove it",
    ),
    "behavioral_cloning": (
        "imitation from demonstrations is not implemented",
        "remove behavioral_cloning; the behaviour then learns from its rewards only",
    ),
    "inference": ("running a policy without training is not what `unimarl train` does", "use `unimarl play`"),
    "train_model": ("train_model is deprecated in ML-Agents (training is the default)", "remove it"),
    "device": (
        "device {value!r} is not one unimarl's learner takes",
        "use cpu or cuda (unset: auto) and pick the GPU with CUDA_VISIBLE_DEVICES (e.g. =1 for cuda:1)",
    ),
    "debug": ("debug logging is not set from the config file", "pass --log-level DEBUG"),
}
"""What unimarl refuses, by key: (why, what to do instead), formatted with the values met."""


@dataclass(frozen=True)
class Refusal:
    """One setting unimarl cannot honour: where it is, why, and what to do instead."""

    key: str
    reason: str
    instead: str

    def __str__(self) -> str:
        return f"{self.key}: {self.reason}; {self.instead}"


class UnsupportedSettingError(ConfigError):
    """An ML-Agents config uses settings unimarl cannot honour (every other key of the file maps)."""

    def __init__(self, refusals: list[Refusal]) -> None:
        self.refusals = tuple(refusals)
        lines = "\n".join(f"  - {r}" for r in refusals)
        super().__init__(
            f"this ML-Agents config uses {len(refusals)} setting(s) unimarl does not support; everything "
            f"else in the file maps to unimarl and is valid:\n{lines}"
        )

    @property
    def keys(self) -> list[str]:
        """Dotted paths of the refused keys, e.g. ``behaviors.Goalie.self_play``."""
        return [r.key for r in self.refusals]


def refuse(refusals: list[Refusal], key: str, what: str, **values: Any) -> None:
    """Add the refusal of ``key`` (:data:`REFUSED` entry ``what``, formatted with ``values``)."""
    reason, instead = REFUSED[what]
    refusals.append(Refusal(key, reason.format(**values), instead.format(**values)))


def check_keys(section: Any, where: str, valid: tuple[str, ...]) -> None:
    """ConfigError unless ``section`` maps ``valid`` keys (an unknown key is named with the nearest one)."""
    if not isinstance(section, dict):
        raise ConfigError(f"section '{where}' must be a mapping of keys to values, got {section!r}")
    for key in section:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.0)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigError(
                f"unknown key '{key}' in section '{where}' (ML-Agents' spelling): {hint}"
                f"valid keys: {', '.join(valid)}"
            )


def as_float(value: Any, where: str) -> float:
    """A number the translation computes with (YAML may give ``1e-3`` as a string)."""
    try:
        if isinstance(value, bool):
            raise ValueError
        return float(value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: expected a number, got {value!r}") from e


def as_int(value: Any, where: str) -> int:
    """A whole number the translation computes with."""
    number = as_float(value, where)
    if not number.is_integer():
        raise ConfigError(f"{where}: expected a whole number, got {value!r}")
    return int(number)


def as_flag(value: Any, where: str) -> bool:
    """A true/false setting the translation acts on."""
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    return value
