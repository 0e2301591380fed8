"""``position_sensor`` (radius neighbourhood) is checked against the behaviour's observations."""

from __future__ import annotations

import pytest

from unimarl.bridge.spec import ActionSpec
from unimarl.trainers.algos.meanfield.learners import (
    MeanFieldHyperparameters,
    check_position_sensor,
    make_learner,
)
from unimarl.trainers.core.batch import PolicySpec
from unimarl.trainers.core.errors import ConfigError

# battle-like: local view, features, position
SPEC = PolicySpec(obs_shapes=((5, 5, 2), (4,), (2,)), action_spec=ActionSpec(discrete_branches=(3,)))
SMALL = {"encoder": "mlp", "head_hidden": [8], "visual_hidden": 8, "buffer_capacity": 64}


def _hp(**kw: object) -> MeanFieldHyperparameters:
    return MeanFieldHyperparameters(**SMALL, neighbourhood="radius", radius=1.0, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("index", [-1, 2, 1, -2])
def test_vector_sensors_in_range_are_accepted(index: int) -> None:
    check_position_sensor(SPEC, _hp(position_sensor=index), "Battle?team=0")


def test_out_of_range_index_names_the_key_value_and_range() -> None:
    with pytest.raises(
        ConfigError,
        match=r"behaviors\.Battle\?team=0\.hyperparameters\.position_sensor is 3, .*3 observation.*-3\.\.2",
    ):
        check_position_sensor(SPEC, _hp(position_sensor=3), "Battle?team=0")
    with pytest.raises(ConfigError, match=r"position_sensor is -4.*-3\.\.2"):
        make_learner("mfq", SPEC, _hp(position_sensor=-4))  # the learner construction checks it too


def test_visual_sensor_is_not_a_position() -> None:
    with pytest.raises(ConfigError, match=r"position_sensor 0 names an observation of shape \(5, 5, 2\)"):
        make_learner("mfac", SPEC, _hp(position_sensor=0))


def test_unused_position_sensor_is_not_checked() -> None:
    team = MeanFieldHyperparameters(**SMALL, position_sensor=7)  # type: ignore[arg-type]
    make_learner("mfq", SPEC, team)
    check_position_sensor(SPEC, _hp(position_sensor=7, use_mean_action=False))
