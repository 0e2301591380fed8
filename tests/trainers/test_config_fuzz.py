"""Fuzzing the config loader with hypothesis: valid configs with values replaced by wrong types, huge or
negative numbers, unknown keys and missing keys, and random YAML text.

The only outcomes allowed are a :class:`TrainConfig` or a :class:`ConfigError` whose message names the bad
key or value; anything else (TypeError, ValueError, AttributeError, OverflowError, RecursionError) fails.
``UNIMARL_FUZZ_EXAMPLES=N`` runs more examples.
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unimarl.trainers.core.config import TrainConfig, config_from_dict, load_config
from unimarl.trainers.core.errors import ConfigError

EXAMPLES = int(os.environ.get("UNIMARL_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)

BASES: list[dict[str, Any]] = [
    {
        "env": {"sim": "coop_nav", "num_envs": 2, "num_areas": 4, "args": ["--continuous"]},
        "run": {"run_id": "fuzz", "num_workers": 1, "seed": 3, "max_seconds": 60.0, "device": "cpu"},
        "engine_settings": {"time_scale": 20.0, "no_graphics": True},
        "environment_parameters": {"speed": 1.5},
        "behaviors": {
            "CoopNav": {
                "hyperparameters": {"epochs": 3, "lr": 3e-4, "num_minibatches": 2},
                "network_settings": {"hidden_units": 64, "num_layers": 2},
                "time_horizon": 64,
                "max_steps": 10_000,
                "group_reward_weight": 0.5,
            }
        },
        "policy_mapping": {"CoopNav?team=0": "CoopNav"},
        "hotswap": {"every": 3},
    },
    {
        "env": {"sim": "battle", "args": ["--team-size", "8"]},
        "behaviors": {
            "Battle?team=0": {
                "trainer_type": "mfq",
                "hyperparameters": {"batch_size": 32, "temperature": [[0.0, 1.0], [1.0, 0.1]]},
                "self_play": {"opponent": "Battle?team=1", "sides": "own"},
            }
        },
    },
    {
        "env": {"pettingzoo": "pkg.mod:make", "kwargs": {"n": 3}},
        "behaviors": {"agent": {"trainer_type": "mfac", "hyperparameters": {"neighbourhood": "team"}}},
    },
]

weird = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(min_value=-5, max_value=5), max_size=3),
    st.dictionaries(st.text(max_size=6), st.integers(), max_size=2),
)


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path in ``data`` (mappings and lists)."""
    out = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            out.extend(_paths(value, (*prefix, key)))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out.extend(_paths(value, (*prefix, i)))
    return out


def _parent(data: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        data = data[key]
    return data


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    data = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = _paths(data)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = _parent(data, path), path[-1]
        action = draw(st.sampled_from(["replace", "delete", "unknown"]))
        if action == "replace":
            parent[key] = draw(weird)
        elif action == "delete" and isinstance(parent, dict):
            del parent[key]
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=10))] = draw(weird)
    return data


def _load(data: Any) -> TrainConfig | None:
    try:
        return config_from_dict(data)
    except ConfigError as e:
        assert str(e).strip(), "a ConfigError must say what was wrong"
        return None


@FUZZ
@given(mutated())
def test_mutated_configs_load_or_raise_config_error(data: dict[str, Any]) -> None:
    _load(data)


@FUZZ
@given(st.one_of(weird, st.lists(weird, max_size=3), st.dictionaries(st.text(max_size=8), weird, max_size=4)))
def test_any_top_level_value_loads_or_raises_config_error(data: Any) -> None:
    _load(data)


@FUZZ
@given(st.text(max_size=200))
def test_random_yaml_text_loads_or_raises_config_error(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    path: Path = tmp_path_factory.mktemp("yaml") / "config.yaml"
    path.write_text(text)
    try:
        load_config(path)
    except ConfigError as e:
        assert str(e).strip()


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        (("behaviors", "CoopNav", "max_steps"), 10**30, "max_steps"),
        (("behaviors", "CoopNav", "time_horizon"), -5, "time_horizon"),
        (("env", "num_envs"), 0, "num_envs"),
        (("behaviors", "CoopNav", "hyperparameters", "lr"), math.inf, "lr"),
        (("behaviors", "CoopNav", "hyperparameters", "lr"), math.nan, "lr"),
        (("run", "seed"), "three", "seed"),
    ],
)
def test_out_of_range_values_are_refused_naming_the_key(key: tuple[str, ...], value: Any, named: str) -> None:
    data = copy.deepcopy(BASES[0])
    _parent(data, key)[key[-1]] = value
    with pytest.raises(ConfigError, match=named):
        config_from_dict(data)


def test_the_base_configs_are_valid() -> None:
    """The fuzzer starts from configs that load (so mutations test the loader, not a broken seed)."""
    for base in BASES:
        assert isinstance(config_from_dict(yaml.safe_load(yaml.safe_dump(base))), TrainConfig)
