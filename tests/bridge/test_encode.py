"""encode_actions: byte-identical to the official client's construction, zero fill, error paths."""

from __future__ import annotations

import numpy as np
import pytest

from unimarl.bridge.encode import encode_actions
from unimarl.bridge.errors import ActionError
from unimarl.bridge.spec import ActionSpec, ActionTuple, BehaviorSpec, ObservationSpec
from unimarl.protos import AgentActionProto, UnityRLInputProto


def spec(name: str, continuous: int = 0, branches: tuple[int, ...] = ()) -> BehaviorSpec:
    return BehaviorSpec(name, (ObservationSpec((3,), (1,)),), ActionSpec(continuous, branches))


def official(actions: dict[str, ActionTuple]) -> UnityRLInputProto:
    """What mlagents-envs 0.28 `_generate_step_input` builds: one message per agent, vector = cont + disc."""
    rl_in = UnityRLInputProto()
    for name, action in actions.items():
        for i in range(action.n_agents):
            proto = AgentActionProto()
            proto.vector_actions_deprecated.extend(action.continuous[i])
            proto.continuous_actions.extend(action.continuous[i])
            proto.vector_actions_deprecated.extend(action.discrete[i])
            proto.discrete_actions.extend(action.discrete[i])
            rl_in.agent_actions[name].value.extend([proto])
    return rl_in


@pytest.mark.parametrize(
    ("continuous", "branches"), [(2, ()), (0, (3,)), (3, (5, 2)), (40, (300, 4)), (0, ()), (1, (200,))]
)
def test_matches_official_construction(continuous: int, branches: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    n = 7
    action = ActionTuple(
        continuous=rng.uniform(-1, 1, (n, continuous)).astype(np.float32),
        discrete=np.stack([rng.integers(0, b, n) for b in branches], axis=1)
        if branches
        else np.zeros((n, 0), int),
    )
    specs = {"A": spec("A", continuous, branches)}
    encoded = encode_actions({"A": action}, specs, {"A": n})
    expected = official({"A": action})
    assert encoded == expected
    assert encoded.SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True)


def test_missing_behaviour_gets_zeros_and_idle_behaviours_no_entry() -> None:
    specs = {"A": spec("A", 2, (3,)), "B": spec("B", 1), "C": spec("C", 1)}
    encoded = encode_actions({}, specs, {"A": 2, "B": 0})
    assert set(encoded.agent_actions) == {"A"}
    first = encoded.agent_actions["A"].value[0]
    assert list(first.continuous_actions) == [0.0, 0.0] and list(first.discrete_actions) == [0]
    assert list(first.vector_actions_deprecated) == [0.0, 0.0, 0.0]
    assert encoded.command == 0 and encoded.side_channel == b""


def test_float64_continuous_is_cast_and_empty_discrete_accepted() -> None:
    action = ActionTuple(continuous=np.array([[0.5], [-0.25]]), discrete=np.zeros((0, 0)))
    encoded = encode_actions({"A": action}, {"A": spec("A", 1)}, {"A": 2})
    assert [list(a.continuous_actions) for a in encoded.agent_actions["A"].value] == [[0.5], [-0.25]]


def test_unknown_behaviour() -> None:
    with pytest.raises(
        ActionError, match=r"unknown behaviour\(s\) \['Nope'\]; the game's behaviours are \['A'\]"
    ):
        encode_actions({"Nope": ActionSpec(1).empty(1)}, {"A": spec("A", 1)}, {"A": 1})


def test_wrong_number_of_rows() -> None:
    with pytest.raises(
        ActionError, match=r"'A': continuous actions of shape \(3, 2\), expected \(2, 2\); pass one"
    ):
        encode_actions({"A": ActionSpec(2).empty(3)}, {"A": spec("A", 2)}, {"A": 2})
    with pytest.raises(ActionError, match=r"'A': discrete actions of shape \(1, 1\), expected \(2, 1\)"):
        encode_actions({"A": ActionSpec(0, (2,)).empty(1)}, {"A": spec("A", 0, (2,))}, {"A": 2})


def test_non_finite_continuous() -> None:
    action = ActionTuple(np.array([[0.0], [np.nan]], np.float32), np.zeros((2, 0), np.int32))
    with pytest.raises(ActionError, match=r"NaN or inf in row\(s\) \[1\]"):
        encode_actions({"A": action}, {"A": spec("A", 1)}, {"A": 2})


def test_discrete_out_of_range_and_wrong_dtype() -> None:
    specs = {"A": spec("A", 0, (3, 2))}
    high = ActionTuple(np.zeros((2, 0), np.float32), np.array([[0, 1], [2, 2]]))
    with pytest.raises(ActionError, match=r"discrete action 2 in row 1, branch 1 is outside \[0, 2\)"):
        encode_actions({"A": high}, specs, {"A": 2})
    negative = ActionTuple(np.zeros((1, 0), np.float32), np.array([[-1, 0]]))
    with pytest.raises(ActionError, match=r"discrete action -1 in row 0, branch 0"):
        encode_actions({"A": negative}, specs, {"A": 1})
    floats = ActionTuple(np.zeros((1, 0), np.float32), np.array([[1.0, 0.0]]))
    with pytest.raises(ActionError, match=r"discrete actions of dtype float64, expected integers"):
        encode_actions({"A": floats}, specs, {"A": 1})
    strings = ActionTuple(np.array([["a"]]), np.zeros((1, 0), np.int32))
    with pytest.raises(ActionError, match=r"continuous actions of dtype <U1; pass float32"):
        encode_actions({"B": strings}, {"B": spec("B", 1)}, {"B": 1})
