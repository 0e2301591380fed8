"""One mean-field policy read back from a run's checkpoint, as it acts at the point its training reached.

A mean-field checkpoint records, per policy, its learner's state and its setup (trainer type,
hyperparameters). An MF-Q / IQL policy samples from a Boltzmann distribution whose temperature follows a
schedule over training progress; the policy read here has its schedule pinned to the temperature its
training reached (the checkpoint's ``counters.progress``), which is the temperature its exported model bakes
in (:mod:`unimarl.trainers.export.meanfield`). Evaluation and the benchmarks read policies through
:func:`checkpoint_policy`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unimarl.trainers.algos.meanfield.learners import MeanFieldHyperparameters
from unimarl.trainers.algos.meanfield.mfq import scheduled
from unimarl.trainers.core.errors import TrainerError


class CheckpointPolicyError(TrainerError):
    """The checkpoint is not a mean-field run's, lacks the policy, or does not record its progress."""


@dataclass(frozen=True)
class CheckpointPolicy:
    """A mean-field policy of a checkpoint."""

    name: str
    trainer_type: str
    hyperparameters: MeanFieldHyperparameters
    """For a Q policy, its temperature schedule is pinned to :attr:`temperature`."""
    state: dict[str, Any]
    """Its learner's state (``load_state_dict`` of an acting-only learner of its trainer type)."""
    temperature: float | None
    """A Q policy's Boltzmann temperature: the one its training reached (None for actor policies)."""

    @property
    def weights(self) -> dict[str, np.ndarray]:
        """The acting network's weights (MF-Q / IQL: the online Q network; MF-AC / AC: the actor)."""
        net = self.state["q_online"] if "q_online" in self.state else self.state["actor"]
        return {k: v.numpy() for k, v in net.items()}


def is_mean_field_checkpoint(state: dict[str, Any]) -> bool:
    """Whether checkpoint contents are a mean-field run's (it records its policies' setups)."""
    return bool(state.get("setups"))


def checkpoint_policy(path: Path, state: dict[str, Any], policy: str = "") -> CheckpointPolicy:
    """Policy ``policy`` (default: the first in sorted order) of checkpoint contents ``state`` read from
    ``path``."""
    setups = state.get("setups")
    if not setups:
        raise CheckpointPolicyError(f"{path} is not a checkpoint of a mean-field (mfq/mfac) run")
    name = policy or sorted(setups)[0]
    if name not in setups:
        raise CheckpointPolicyError(f"{path} holds policies {sorted(setups)}, not '{name}'; use {path}#NAME")
    hp = MeanFieldHyperparameters(**setups[name]["hyperparameters"])
    pstate = state["policies"][name]
    temperature = None
    if "q_online" in pstate:
        progress = (pstate.get("counters") or {}).get("progress")
        if progress is None:
            raise CheckpointPolicyError(
                f"{path}: policy '{name}' records no training progress (counters.progress), so the "
                "temperature it reached is unknown; resume the run for one checkpoint and pass that one"
            )
        temperature = scheduled([(float(p), float(t)) for p, t in hp.temperature], float(progress))
        hp = dataclasses.replace(hp, temperature=[[0.0, temperature], [1.0, temperature]])
    return CheckpointPolicy(name, str(setups[name]["trainer_type"]), hp, pstate, temperature)
