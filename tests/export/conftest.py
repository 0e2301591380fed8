"""Fixtures for the export tests: the project's actor and a set of policy specs covering every action kind."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from torch import nn

from unimarl.bridge.spec import ActionSpec
from unimarl.trainers.algos.mappo.networks import Actor
from unimarl.trainers.core.batch import PolicySpec

SPECS = {
    "discrete": PolicySpec(((8,),), ActionSpec(0, (5,))),
    "multi_discrete": PolicySpec(((8,),), ActionSpec(0, (3, 4, 2))),
    "continuous": PolicySpec(((6,),), ActionSpec(2, ())),
    "hybrid": PolicySpec(((6,),), ActionSpec(2, (3, 2))),
    "multi_obs": PolicySpec(((4,), (3, 5), (2, 6, 6)), ActionSpec(1, (4,))),
}


@pytest.fixture
def specs() -> dict[str, PolicySpec]:
    return SPECS


@pytest.fixture(params=sorted(SPECS))
def spec(request: pytest.FixtureRequest) -> PolicySpec:
    return SPECS[request.param]


@pytest.fixture
def make_actor() -> Callable[[PolicySpec], nn.Module]:
    def build(spec: PolicySpec) -> nn.Module:
        return Actor(spec, hidden_sizes=(64, 64), activation="tanh", layer_norm=True).eval()

    return build
