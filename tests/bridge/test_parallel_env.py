"""UnityParallelEnv against a scripted connection: naming, terminal+restart, decision periods, spaces."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np
import pytest
from gymnasium import spaces

import unimarl.bridge.parallel_env as penv
from unimarl.bridge.errors import ActionError, BridgeError
from unimarl.bridge.parallel_env import NoGlobalStateError, UnityParallelEnv, parse_agent_name
from unimarl.bridge.spec import (
    ActionSpec,
    ActionTuple,
    AgentBatch,
    BehaviorSpec,
    BehaviorSteps,
    GameOutput,
    ObservationSpec,
)

B = "Nav?team=0"
SPEC = BehaviorSpec(
    B,
    (ObservationSpec((2,), (1,), name="vec"), ObservationSpec((3,), (1,), name="global_state")),
    ActionSpec(0, (3,)),
)


def batch(ids, rewards=None, obs=None, interrupted=None, mask=None, group=1) -> AgentBatch:
    n = len(ids)
    vec = np.asarray(obs if obs is not None else np.arange(2 * n).reshape(n, 2), np.float32).reshape(n, 2)
    return AgentBatch(
        agent_id=np.asarray(ids, np.int32),
        obs=(vec, np.tile(np.float32([7, 8, 9]), (n, 1))),
        reward=np.asarray(rewards if rewards is not None else [0.0] * n, np.float32),
        group_id=np.full(n, group, np.int32),
        group_reward=np.full(n, 0.5, np.float32),
        interrupted=np.asarray(interrupted if interrupted is not None else [False] * n, bool),
        action_mask=mask,
    )


def out(decision: AgentBatch, terminal: AgentBatch | None = None) -> GameOutput:
    return GameOutput(steps={B: BehaviorSteps(decision, terminal or batch([]))})


class ScriptedConnection:
    """Stands in for UnityConnection: returns scripted outputs and records the actions it gets."""

    instances: ClassVar[list[ScriptedConnection]] = []

    def __init__(self, file_name=None, *, seed: int = 0, outputs=(), **kwargs) -> None:
        self.seed = seed
        self.outputs = list(outputs)
        self.actions: list[Mapping[str, ActionTuple]] = []
        self.behavior_specs = {B: SPEC}
        self.closed = False
        ScriptedConnection.instances.append(self)

    def open(self) -> None:
        pass

    def reset(self) -> GameOutput:
        return self.outputs.pop(0)

    def step(self, actions: Mapping[str, ActionTuple]) -> GameOutput:
        self.actions.append(actions)
        return self.outputs.pop(0)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def make_env(monkeypatch: pytest.MonkeyPatch):
    ScriptedConnection.instances.clear()

    def make(outputs) -> UnityParallelEnv:
        monkeypatch.setattr(
            penv, "UnityConnection", lambda *a, **k: ScriptedConnection(*a, outputs=outputs, **k)
        )
        return UnityParallelEnv("Game.x86_64", seed=3)

    return make


def test_parse_agent_name() -> None:
    assert parse_agent_name("Soccer?team=1?agent_id=12") == ("Soccer?team=1", 12, 0)
    assert parse_agent_name("Soccer?team=1?agent_id=12&episode=4") == ("Soccer?team=1", 12, 4)
    with pytest.raises(ValueError, match="'Soccer' is not an agent name of this env"):
        parse_agent_name("Soccer")


def test_terminal_and_restart_in_one_step_keeps_reward_and_obs(make_env) -> None:
    env = make_env(
        [
            out(batch([1, 2])),
            # agent 1 ends (reward 5, final obs) and restarts in the same message; agent 2 is cut at max steps
            out(
                batch([1], obs=[[10, 11]]),
                batch([1, 2], rewards=[5.0, -1.0], obs=[[8, 9], [6, 6]], interrupted=[0, 1]),
            ),
        ]
    )
    obs, infos = env.reset()
    a1, a2 = f"{B}?agent_id=1", f"{B}?agent_id=2"
    assert env.agents == [a1, a2] and set(obs) == {a1, a2}
    assert obs[a1]["observation"].tolist() == [0, 1]  # global_state removed from the agents' observations
    assert infos[a1] == {
        "behavior": B,
        "agent_id": 1,
        "group_id": 1,
        "group_reward": 0.5,
        "requested_decision": True,
    }
    obs, rewards, terms, truncs, infos = env.step({a1: 2, a2: 0})
    new = f"{B}?agent_id=1&episode=1"
    assert env.agents == [new]
    assert set(obs) == set(rewards) == set(terms) == set(truncs) == set(infos) == {a1, a2, new}
    assert rewards[a1] == 5.0 and terms[a1] and not truncs[a1] and obs[a1]["observation"].tolist() == [8, 9]
    assert rewards[a2] == -1.0 and truncs[a2] and not terms[a2] and infos[a2]["interrupted"] is True
    assert obs[new]["observation"].tolist() == [10, 11] and not terms[new] and rewards[new] == 0.0
    assert env.possible_agents == [a1, a2, new]
    sent = ScriptedConnection.instances[0].actions[0][B]
    assert sent.discrete.tolist() == [[2], [0]]  # by position of the previous decision agents
    np.testing.assert_array_equal(env.state(), [7, 8, 9])
    assert env.state_space.shape == (3,)


def test_agents_without_decision_keep_last_obs(make_env) -> None:
    env = make_env([out(batch([1, 2], obs=[[1, 1], [2, 2]])), out(batch([2], rewards=[3.0], obs=[[4, 4]]))])
    env.reset()
    a1, a2 = f"{B}?agent_id=1", f"{B}?agent_id=2"
    obs, rewards, terms, truncs, infos = env.step({a1: 1, a2: 1})
    assert env.agents == [a1, a2]
    assert obs[a1]["observation"].tolist() == [1, 1] and rewards[a1] == 0.0
    assert infos[a1]["requested_decision"] is False and infos[a2]["requested_decision"] is True
    assert rewards[a2] == 3.0 and not terms[a1] and not truncs[a1]


def test_masks_and_spaces(make_env) -> None:
    mask = (np.array([[True, False, False], [False, False, False]]),)
    env = make_env([out(batch([1, 2], mask=mask))])
    obs, _ = env.reset()
    a1 = f"{B}?agent_id=1"
    assert obs[a1]["action_mask"].tolist() == [0, 1, 1] and obs[a1]["action_mask"].dtype == np.int8
    space = env.observation_space(a1)
    assert space is env.observation_space(a1) and space.contains(obs[a1])
    assert env.action_space(a1) == spaces.Discrete(3)
    for _ in range(20):
        assert env.action_space(a1).sample(mask=obs[a1]["action_mask"]) != 0
    assert env.behavior_specs == {B: SPEC} and env.agent_behavior(a1) == B


def test_action_spaces_per_kind() -> None:
    assert penv.action_space_for(ActionSpec(2)) == spaces.Box(-1, 1, (2,), np.float32)
    assert penv.action_space_for(ActionSpec(0, (3, 4))) == spaces.MultiDiscrete([3, 4])
    hybrid = penv.action_space_for(ActionSpec(2, (3,)))
    sample = hybrid.sample(mask=np.int8([0, 0, 1]))
    assert sample["discrete"] == 2 and sample["continuous"].shape == (2,)
    several = BehaviorSpec(
        "X", (ObservationSpec((2,), (1,)), ObservationSpec((4, 4, 3), (1, 2, 2))), ActionSpec(1)
    )
    assert isinstance(penv.observation_space_for(several), spaces.Tuple)


def test_missing_and_unknown_actions(make_env) -> None:
    env = make_env([out(batch([1, 2])), out(batch([1, 2]))])
    env.reset()
    a1 = f"{B}?agent_id=1"
    with pytest.raises(ActionError, match=r"no action for agent 'Nav\?team=0\?agent_id=2', which requested"):
        env.step({a1: 0})
    with pytest.raises(ActionError, match=r"not live: \['ghost'\]"):
        env.step({"ghost": 0})
    with pytest.raises(ActionError, match=r"out of range for agent\(s\) \['Nav\?team=0\?agent_id=1'\]"):
        env.step({a1: 3, f"{B}?agent_id=2": 0})
    with pytest.raises(ActionError, match="does not fit its action space Discrete"):
        env.step({a1: [0, 1], f"{B}?agent_id=2": 0})
    with pytest.raises(ActionError, match=r"action 1\.7 for agent .*agent_id=1'.*must be integers"):
        env.step({a1: 1.7, f"{B}?agent_id=2": 0})


def test_reset_with_new_seed_reopens_and_names_move_on(make_env) -> None:
    env = make_env([out(batch([1])), out(batch([1]))])
    env.reset(seed=3)
    assert len(ScriptedConnection.instances) == 1
    ScriptedConnection.instances[0].outputs.append(out(batch([1])))
    env.reset()  # same seed: same game
    assert env.agents == [f"{B}?agent_id=1&episode=1"] and len(ScriptedConnection.instances) == 1
    env.reset(seed=4)
    assert len(ScriptedConnection.instances) == 2 and ScriptedConnection.instances[0].closed
    assert ScriptedConnection.instances[1].seed == 4 and env.agents == [f"{B}?agent_id=1&episode=2"]
    env.close()
    assert ScriptedConnection.instances[1].closed


def test_no_global_state_and_not_open() -> None:
    env = UnityParallelEnv("Game.x86_64")
    with pytest.raises(BridgeError, match=r"call reset\(\) first"):
        env.step({})
    with pytest.raises(NoGlobalStateError, match=r"call reset\(\) first"):
        env.state()
    env._connection = ScriptedConnection()  # type: ignore[assignment]
    env._connection.behavior_specs = {"X": BehaviorSpec("X", (ObservationSpec((2,), (1,)),), ActionSpec(1))}
    with pytest.raises(NoGlobalStateError, match=r"provides no global state .*\['X'\]"):
        _ = env.state_space


def test_actions_in_any_array_form_and_a_misfit_named(make_env) -> None:
    env = make_env([out(batch([1, 2, 3])) for _ in range(4)])
    env.reset()
    names = [f"{B}?agent_id={i}" for i in (1, 2, 3)]
    env.step({names[0]: 2, names[1]: np.int64(1), names[2]: np.array([0])})
    sent = ScriptedConnection.instances[0].actions[-1][B]
    assert sent.discrete.tolist() == [[2], [1], [0]] and sent.continuous.shape == (3, 0)
    with pytest.raises(
        ActionError, match=r"action \[1, 2\] for agent 'Nav\?team=0\?agent_id=3' does not fit"
    ):
        env.step({names[0]: 0, names[1]: 0, names[2]: [1, 2]})
    with pytest.raises(ActionError, match=r"action 'x' for agent 'Nav\?team=0\?agent_id=2' does not fit"):
        env.step({names[0]: 0, names[1]: "x", names[2]: 0})
