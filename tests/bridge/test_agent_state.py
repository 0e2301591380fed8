"""UnityParallelEnv.agent_state: each area's global state, and a terminal step's own state when the area
restarts in the same message."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest

import unimarl.bridge.parallel_env as penv
from unimarl.bridge.parallel_env import NoGlobalStateError, UnityParallelEnv
from unimarl.bridge.spec import (
    ActionSpec,
    ActionTuple,
    AgentBatch,
    BehaviorSpec,
    BehaviorSteps,
    GameOutput,
    ObservationSpec,
)

B = "Runner?team=0"
SPEC = BehaviorSpec(
    B,
    (ObservationSpec((2,), (1,), name="vec"), ObservationSpec((3,), (1,), name="global_state")),
    ActionSpec(0, (2,)),
)


def batch(ids: list[int], states: list[list[float]], interrupted: list[bool] | None = None) -> AgentBatch:
    n = len(ids)
    return AgentBatch(
        agent_id=np.asarray(ids, np.int32),
        obs=(np.zeros((n, 2), np.float32), np.asarray(states, np.float32).reshape(n, 3)),
        reward=np.zeros(n, np.float32),
        group_id=np.asarray([1 + i // 2 for i in ids], np.int32),
        group_reward=np.zeros(n, np.float32),
        interrupted=np.asarray(interrupted or [False] * n, bool),
    )


class Scripted:
    def __init__(self, *args: object, outputs: list[GameOutput], **kwargs: object) -> None:
        self.seed, self.outputs, self.behavior_specs = 3, outputs, {B: SPEC}

    def open(self) -> None:
        pass

    def reset(self) -> GameOutput:
        return self.outputs.pop(0)

    def step(self, actions: Mapping[str, ActionTuple]) -> GameOutput:
        return self.outputs.pop(0)

    def close(self) -> None:
        pass


def test_agent_state_is_per_area_and_terminal_steps_keep_theirs(monkeypatch: pytest.MonkeyPatch) -> None:
    # agents 0, 1 in area 0 (group 1), agents 2, 3 in area 1 (group 2)
    first = batch([0, 1, 2, 3], [[0, 0, 0], [0, 0, 0], [1, 0, 0], [1, 0, 0]])
    restart = batch([0, 1, 2, 3], [[0, 1, 0], [0, 1, 0], [1, 1, 0], [1, 1, 0]])  # area 0's new episode
    ended = batch([0, 1], [[0, 1, 9], [0, 1, 9]], interrupted=[True, True])  # area 0's terminal step
    outputs = [
        GameOutput(steps={B: BehaviorSteps(first, batch([], []))}),
        GameOutput(steps={B: BehaviorSteps(restart, ended)}),
    ]
    monkeypatch.setattr(penv, "UnityConnection", lambda *a, **k: Scripted(*a, outputs=outputs, **k))
    env = UnityParallelEnv("Game.x86_64", seed=3)
    env.reset()
    names = list(env.agents)
    assert [env.agent_state(a).tolist() for a in names] == [[0, 0, 0], [0, 0, 0], [1, 0, 0], [1, 0, 0]]
    env.step({a: 0 for a in names})
    # the ended names keep their terminal state; the restarted names carry the new episode's
    assert env.agent_state(names[0]).tolist() == [0, 1, 9]
    assert env.agent_state(names[2]).tolist() == [1, 1, 0]
    new = [a for a in env.agents if a not in names]
    assert [env.agent_state(a).tolist() for a in new] == [[0, 1, 0], [0, 1, 0]]
    with pytest.raises(NoGlobalStateError, match="reported no global state at the latest step"):
        env.agent_state("Runner?team=0?agent_id=7")
