"""benchmarks/mean_action_use.py measures what it says: a Q network blind to the mean action scores zero, one
whose value alone follows the mean action shows a value shift and no choice change, and one whose action
differences follow it changes its choices."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from unimarl.bridge.spec import ActionSpec
from unimarl.trainers.algos.meanfield.mfq import MFQConfig, MFQLearner
from unimarl.trainers.algos.meanfield.networks import NetworkConfig
from unimarl.trainers.core.batch import PolicySpec

N_ACTIONS = 4


def _module() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "mean_action_use.py"
    spec = importlib.util.spec_from_file_location("mean_action_use", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through it
    spec.loader.exec_module(module)
    return module


class _Q(torch.nn.Module):
    """Q(s, a, m) = s[a] + value_weight * m[0] + choice_weight * m[a]."""

    def __init__(self, value_weight: float, choice_weight: float) -> None:
        super().__init__()
        self.value_weight, self.choice_weight = value_weight, choice_weight

    def forward(self, obs: list[torch.Tensor], mean: torch.Tensor) -> torch.Tensor:
        return obs[0] + self.value_weight * mean[:, :1] + self.choice_weight * mean


@pytest.mark.parametrize(
    ("value_weight", "choice_weight", "uses_value", "uses_choice"),
    [(0.0, 0.0, False, False), (50.0, 0.0, True, False), (0.0, 50.0, False, True)],  # m sums to 1
)
def test_sensitivity_tells_value_use_from_choice_use(
    value_weight: float, choice_weight: float, uses_value: bool, uses_choice: bool
) -> None:
    use = _module()
    spec = PolicySpec(((N_ACTIONS,),), ActionSpec(0, (N_ACTIONS,)))
    learner = MFQLearner(spec, MFQConfig(network=NetworkConfig(encoder="mlp")), seed=0)
    learner.q_online = _Q(value_weight, choice_weight)  # type: ignore[assignment]
    rng = np.random.default_rng(0)
    mean = rng.dirichlet(np.ones(N_ACTIONS), size=500).astype(np.float32)
    data = use.Recorded(
        (rng.normal(size=(500, N_ACTIONS)).astype(np.float32),), np.ones((500, N_ACTIONS), bool), mean
    )
    report = use.sensitivity(learner, data, temperature=0.1, seed=0)
    shuffle = report["shuffle"]
    assert (shuffle["value_shift_over_spread"] > 0.2) == uses_value
    assert (shuffle["relative_change_over_spread"] > 0.2) == uses_choice
    assert (shuffle["greedy_changed"] > 0.2) == uses_choice
    assert (shuffle["policy_tv"] > 0.2) == uses_choice
