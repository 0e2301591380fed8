"""The environment runner: decisions, reward crediting, episodes, resets and the one step path, on small
scripted PettingZoo envs (and a stand-in for a game in another process)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gymnasium import spaces
from pettingzoo import ParallelEnv

from unimarl.trainers.collect.runner import Decision, EnvRunner, EnvStep
from unimarl.trainers.core.config import EnvSettings
from unimarl.trainers.envs.factory import EnvFactory

HERE = Path(__file__)
NAV = HERE.with_name("nav_env.py")

# step k (1-based) -> (rewards, terminated, truncated, agents after the step, agents that skip the next
# decision, group rewards)
Script = dict[int, tuple[dict[str, float], set[str], set[str], list[str], set[str], dict[str, float]]]

PERIOD: Script = {
    1: ({"a_0": 1.0, "a_1": 1.0}, set(), set(), ["a_0", "a_1"], {"a_0"}, {}),  # a_0 waits at step 2
    2: ({"a_0": 2.0, "a_1": 1.0}, set(), set(), ["a_0", "a_1"], {"a_0"}, {}),  # ... and at step 3
    3: ({"a_0": 4.0, "a_1": 1.0}, {"a_0"}, set(), ["a_1", "b_0"], set(), {"a_1": 10.0}),
    4: ({"a_1": 1.0, "b_0": 3.0}, set(), {"a_1"}, ["b_0"], set(), {}),
    5: ({"b_0": 1.0}, set(), set(), [], set(), {}),  # b_0 vanishes: every agent is gone
}


class ScriptEnv(ParallelEnv):
    """Agents follow a script; observation of agent x_i at step t: [i, t]. Counts its resets."""

    metadata = {"name": "runner_script_v0"}  # noqa: RUF012

    def __init__(self, script: Script) -> None:
        self.script = script
        self.possible_agents = ["a_0", "a_1", "b_0"]
        self.agents: list[str] = []
        self.resets: list[int | None] = []
        self.received: list[dict[str, Any]] = []
        self._t = 0

    def observation_space(self, agent: str) -> spaces.Space:
        return spaces.Box(-10, 10, (2,), np.float32)

    def action_space(self, agent: str) -> spaces.Space:
        return spaces.Discrete(3)

    def _obs(self, agents: list[str]) -> dict[str, np.ndarray]:
        return {a: np.array([int(a[-1]), self._t], np.float32) for a in agents}

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        self.resets.append(seed)
        self._t, self.agents = 0, ["a_0", "a_1"]
        return self._obs(self.agents), {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        self.received.append(dict(actions))
        self._t += 1
        rewards, terms, truncs, after, waiting, group = self.script[self._t]
        reported = [a for a in self.possible_agents if a in set(self.agents) | set(after)]
        self.agents = list(after)
        infos = {
            a: {"requested_decision": a not in waiting, "group_reward": group.get(a, 0.0)} for a in reported
        }
        shown = [a for a in reported if a in self.agents or a in terms or a in truncs]
        return (
            self._obs(shown),
            rewards,
            {a: a in terms for a in reported},
            {a: a in truncs for a in reported},
            infos,
        )


def make_period() -> ScriptEnv:
    return ScriptEnv(PERIOD)


class Recorder:
    """An actor that gives every deciding agent action (step number mod 3) and records what it saw."""

    def __init__(self, num_envs: int = 1) -> None:
        self.num_envs = num_envs
        self.decisions: list[list[Decision]] = []
        self.steps: list[list[EnvStep]] = []
        self.restarts: list[int] = []

    def act(self, decisions: list[Decision]) -> list[dict[str, Any]]:
        self.decisions.append(decisions)
        actions: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for d in decisions:
            actions[d.env][d.agent] = len(self.decisions) % 3
        return actions

    def observe(self, steps: list[EnvStep]) -> None:
        self.steps.append(steps)

    def restarted(self, env: int) -> None:
        self.restarts.append(env)


def _runner(target: str, num_envs: int = 1, **kw: Any) -> EnvRunner:
    return EnvRunner(EnvFactory(EnvSettings(pettingzoo=f"{HERE}:{target}")), num_envs, **kw)


def test_only_deciding_agents_act_and_rewards_reach_their_last_action() -> None:
    runner = _runner("make_period")
    actor = Recorder()
    done = runner.run(actor, 3, start=0.0)
    acting = [[d.agent for d in step] for step in actor.decisions]
    assert acting == [["a_0", "a_1"], ["a_1"], ["a_1"]]  # a_0 waits at steps 2 and 3
    assert [d.behavior for d in actor.decisions[0]] == ["a", "a"]
    env = runner.envs[0]
    assert [sorted(r) for r in env.received] == [["a_0", "a_1"], ["a_1"], ["a_1"]]
    # a_0's rewards at steps 2 and 3 belong to the action it was given at step 1
    assert [s[0].rewards["a_0"] for s in actor.steps] == [1.0, 2.0, 4.0]
    assert [[e.agent for e in s[0].ended] for s in actor.steps] == [[], [], ["a_0"]]
    end = actor.steps[-1][0].ended[0]
    assert (end.action, end.reward, end.ret, end.length) == (1, 4.0, 7.0, 1)
    assert end.terminated and not end.truncated and end.observation is not None
    assert done.episode_returns == {"a": [7.0]} and done.episode_lengths == {"a": [1]}
    assert (done.env_steps, done.agent_steps) == (3, 4)
    runner.close()


def test_group_rewards_are_credited_with_the_behaviours_weight(caplog: pytest.LogCaptureFixture) -> None:
    runner = _runner("make_period")
    runner.group_weight = {"a": 0.5}
    actor = Recorder()
    runner.run(actor, 3, start=0.0)
    assert actor.steps[2][0].rewards["a_1"] == pytest.approx(1.0 + 0.5 * 10.0)
    ignored = _runner("make_period")  # no weight: the group reward is ignored, with one warning
    with caplog.at_level(logging.WARNING):
        ignored.run(Recorder(), 5, start=0.0)
    assert len([r for r in caplog.records if "group_reward_weight is 0" in r.getMessage()]) == 1
    assert ignored.warned == {"a"}
    runner.close()
    ignored.close()


def test_episodes_end_on_termination_truncation_and_disappearance_and_finished_envs_reset() -> None:
    runner = _runner("make_period")
    actor = Recorder()
    done = runner.run(actor, 5, start=0.0)
    ended = [[(s.agent, s.terminated, s.truncated) for s in step[0].ended] for step in actor.steps]
    assert ended == [[], [], [("a_0", True, False)], [("a_1", False, True)], [("b_0", False, False)]]
    # b_0 appeared after step 3 and acted at steps 4 and 5 (rewards 3.0 and 1.0)
    assert done.episode_returns == {"a": [7.0, 4.0], "b": [4.0]}
    assert [step[0].started for step in actor.steps] == [[], [], ["b_0"], [], []]  # not those of a reset
    assert done.episode_lengths == {"a": [1, 4], "b": [2]}
    # every agent gone: the PettingZoo env is reset (no seed) and its agents start new episodes
    env = runner.envs[0]
    assert env.resets == [0, None] and actor.restarts == [0]
    assert runner.open_episodes(0) == ["a_0", "a_1"] and runner.obs[0]["a_0"][1] == 0.0
    runner.close()


class LateRewardEnv(ScriptEnv):
    """b_0 appears after step 1 with a reward before it has acted."""

    def __init__(self) -> None:
        late: Script = {
            1: ({"a_0": 1.0, "a_1": 1.0, "b_0": 5.0}, set(), set(), ["a_0", "a_1", "b_0"], set(), {}),
            2: ({"a_0": 1.0, "a_1": 1.0, "b_0": 1.0}, set(), {"a_0", "a_1", "b_0"}, [], set(), {}),
        }
        super().__init__(late)


def make_late_reward() -> LateRewardEnv:
    return LateRewardEnv()


def test_returns_count_from_the_first_action() -> None:
    """b_0 appears with reward 5 before it ever acted: that reward reaches no action and is not counted."""
    b_return = 1.0
    runner = _runner("make_late_reward")
    actor = Recorder()
    done = runner.run(actor, 2, start=0.0)
    assert done.episode_returns == {"a": [2.0, 2.0], "b": [b_return]}
    assert [s[0].started for s in actor.steps] == [["b_0"], []]  # started by its reward
    assert [(e.agent, e.ret) for e in actor.steps[1][0].ended] == [
        ("a_0", 2.0),
        ("a_1", 2.0),
        ("b_0", b_return),
    ]
    assert done.episode_lengths == {"a": [2, 2], "b": [1]}
    runner.close()


def test_every_env_gets_its_own_seed_and_a_view_per_behaviour() -> None:
    factory = EnvFactory(EnvSettings(pettingzoo=f"{NAV}:make", kwargs={"with_state": True}))
    runner = EnvRunner(factory, 2, worker_index=3, seed=7, global_state=True)
    specs = runner.specs()
    assert set(specs) == {"agent"} and specs["agent"].state_shape == (12,)
    assert runner.byte_sensors == {"agent": (False,)}
    plain = EnvRunner(factory, 1)
    assert plain.specs()["agent"].state_shape is None
    # nav_env draws its landmarks from the reset seed: 7 + 1000 * 3 + i
    again = EnvRunner(factory, 1, worker_index=0, seed=3008)
    np.testing.assert_array_equal(runner.obs[1]["agent_0"], again.obs[0]["agent_0"])
    assert not np.array_equal(runner.obs[0]["agent_0"], runner.obs[1]["agent_0"])
    for r in (runner, plain, again):
        r.close()


class Channel:
    def __init__(self) -> None:
        self.pushed: list[tuple[str, int, bytes]] = []

    def push(self, behavior: str, version: int, model: bytes) -> None:
        self.pushed.append((behavior, version, model))

    def status(self) -> dict[str, Any]:
        return {b: v for b, v, _ in self.pushed}


class GameEnv(ScriptEnv):
    """A stand-in for a game in another process: the bridge's attributes, a policy channel, and a record of
    the thread that stepped it."""

    def __init__(self) -> None:
        super().__init__(PERIOD)
        self.behavior_specs: dict[str, Any] = {}
        self.policy_channel = Channel()
        self.threads: list[str] = []
        self.closed = False

    def agent_behavior(self, agent: str) -> str:
        return agent.split("_")[0]

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        self.threads.append(threading.current_thread().name)
        return super().step(actions)

    def close(self) -> None:
        self.closed = True


def make_game() -> GameEnv:
    return GameEnv()


def test_games_are_stepped_concurrently_through_the_same_step_and_never_reset() -> None:
    games = _runner("make_game", 2)
    envs = _runner("make_period", 2)
    game_actor, env_actor = Recorder(2), Recorder(2)
    game_done = games.run(game_actor, 5, start=0.0)
    env_done = envs.run(env_actor, 5, start=0.0)
    main = threading.current_thread().name
    assert all(name != main for env in games.envs for name in env.threads)  # Unity/sim: from threads
    # the same stream either way (behaviours from the game's agent_behavior here)
    assert game_done.episode_returns == env_done.episode_returns
    assert [[d.agent for d in s] for s in game_actor.decisions] == [
        [d.agent for d in s] for s in env_actor.decisions
    ]
    # a game restarts its own agents: the runner never resets it, a PettingZoo env it does
    assert [env.resets for env in games.envs] == [[0], [1]] and game_actor.restarts == []
    assert [env.resets for env in envs.envs] == [[0, None], [1, None]] and env_actor.restarts == [0, 1]
    assert games.push_policy("a", 4, b"onnx") == 2 and envs.push_policy("a", 4, b"onnx") == 0
    assert games.policy_status() == [{"a": 4}, {"a": 4}] and envs.policy_status() == []
    games.close()
    envs.close()
    assert all(env.closed for env in games.envs)


def test_a_time_budget_stops_after_at_least_one_step() -> None:
    runner = _runner("make_period")
    done = runner.run(Recorder(), 4, start=0.0, max_seconds=1e-9)  # start long ago: over budget at once
    assert done.env_steps == 1
    runner.close()
