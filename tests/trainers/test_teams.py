"""Centralised-critic inputs in Unity-like games: teams are Unity groups (across behaviours), ungrouped agents
are alone, and the global state is each agent's own (terminal steps keep theirs)."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from gymnasium import spaces
from pettingzoo import ParallelEnv

from unimarl.trainers.algos.mappo.plan import PolicySetup, WorkerPlan
from unimarl.trainers.algos.mappo.policy import MAPPOHyperparameters, MAPPOPolicy, NetworkSettings
from unimarl.trainers.algos.mappo.rollout import RolloutWorker
from unimarl.trainers.core.batch import CriticInput
from unimarl.trainers.core.config import EnvSettings
from unimarl.trainers.envs.factory import EnvFactory

# agent -> (behaviour, Unity group); two areas of a striker pair and a goalie, and two ungrouped strikers
AGENTS = {
    "s1": ("Striker", 1),
    "s2": ("Striker", 1),
    "g1": ("Goalie", 1),
    "s3": ("Striker", 2),
    "s4": ("Striker", 2),
    "g2": ("Goalie", 2),
    "lone5": ("Striker", 0),
    "lone6": ("Striker", 0),
}
OBS_SIZE = {"Striker": 2, "Goalie": 3}


class GroupedGame(ParallelEnv):
    """A Unity-like env (behaviour and group in infos): agent ``xN`` observes [N, t] (+ [N] for goalies)."""

    metadata = {"name": "grouped_v0"}  # noqa: RUF012

    def __init__(self) -> None:
        self.possible_agents = list(AGENTS)
        self.agents: list[str] = []
        self.behavior_specs = {
            b: SimpleNamespace(observation_specs=[SimpleNamespace(name="obs", shape=(n,))])
            for b, n in OBS_SIZE.items()
        }
        self._t = 0

    def agent_behavior(self, agent: str) -> str:
        return AGENTS[agent][0]

    def observation_space(self, agent: str) -> spaces.Space:
        return spaces.Box(-100, 100, (OBS_SIZE[AGENTS[agent][0]],), np.float32)

    def action_space(self, agent: str) -> spaces.Space:
        return spaces.Discrete(2)

    def _out(self) -> tuple[dict, dict]:
        obs, infos = {}, {}
        for a in self.agents:
            n = int(a[-1])
            obs[a] = np.array([n, self._t, n][: OBS_SIZE[AGENTS[a][0]]], np.float32)
            infos[a] = {"behavior": AGENTS[a][0], "group_id": AGENTS[a][1], "group_reward": 0.0}
        return obs, infos

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        self._t, self.agents = 0, list(AGENTS)
        return self._out()

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        self._t += 1
        obs, infos = self._out()
        zeros = {a: False for a in self.agents}
        return obs, {a: 0.0 for a in self.agents}, zeros, dict(zeros), infos


def make_grouped() -> GroupedGame:
    return GroupedGame()


def _worker(
    factory: EnvFactory, net: NetworkSettings | None = None
) -> tuple[RolloutWorker, dict[str, MAPPOPolicy]]:
    worker = RolloutWorker(factory, 1)
    specs = worker.specs()
    hp, net = MAPPOHyperparameters(gamma=1.0, lam=1.0), net or NetworkSettings(hidden_units=16)
    worker.configure(
        WorkerPlan({b: PolicySetup(s, hp, net) for b, s in specs.items()}, {b: b for b in specs})
    )
    policies = {b: MAPPOPolicy(s, hp, net, seed=5 + i) for i, (b, s) in enumerate(sorted(specs.items()))}
    return worker, policies


def test_teams_are_unity_groups_across_behaviours_and_ungrouped_agents_are_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker, policies = _worker(EnvFactory(EnvSettings(pettingzoo=f"{__file__}:make_grouped")))
    with caplog.at_level(logging.WARNING):
        result = worker.collect({b: p.get_weights() for b, p in policies.items()}, horizon=1)
    strikers = result.batches["Striker"]
    ids = [int(o[0]) for o in strikers.obs[0]]  # agent number of every row
    refs = strikers.critic.team_rows
    assert refs is not None and strikers.critic.team_embeddings is not None
    emb, emb_mask = strikers.critic.team_embeddings, strikers.critic.team_embedding_mask
    assert emb_mask is not None
    # hand-computed: each striker's same-behaviour teammate is the other striker of its group; the goalie of
    # its group comes as the goalie policy's embedding of the goalie's observation [g, 0, g]
    mates = {1: [2], 2: [1], 3: [4], 4: [3], 5: [], 6: []}
    goalie = {1: 1, 2: 1, 3: 2, 4: 2}
    for row, n in enumerate(ids):
        assert sorted(ids[r] for r in refs[row] if r >= 0) == mates[n]
        if n in goalie:
            g = goalie[n]
            expected = policies["Goalie"].embed((np.array([[g, 0, g]], np.float32),))[0]
            assert emb_mask[row].sum() == 1
            np.testing.assert_allclose(emb[row][emb_mask[row]][0], expected, rtol=1e-5, atol=1e-6)
        else:  # ungrouped: alone
            assert not emb_mask[row].any()
    goalies = result.batches["Goalie"]
    g_ids = [int(o[0]) for o in goalies.obs[0]]
    g_emb, g_mask = goalies.critic.team_embeddings, goalies.critic.team_embedding_mask
    assert g_emb is not None and g_mask is not None
    for row, g in enumerate(g_ids):
        expected = policies["Striker"].embed((np.array([[s, 0] for s in (2 * g - 1, 2 * g)], np.float32),))
        got = g_emb[row][g_mask[row]]
        np.testing.assert_allclose(np.sort(got, axis=0), np.sort(expected, axis=0), rtol=1e-5, atol=1e-6)
    assert sum("is in no Unity group" in r.getMessage() for r in caplog.records) == 1


def test_the_critic_of_a_striker_reads_its_goalies_observation() -> None:
    """The goalie's observation changes the striker's value (it is part of the striker's critic input)."""
    worker, policies = _worker(EnvFactory(EnvSettings(pettingzoo=f"{__file__}:make_grouped")))
    striker, goalie = policies["Striker"], policies["Goalie"]
    obs = (np.array([[1.0, 0.0]], np.float32),)
    values = [
        striker.value(
            obs,
            CriticInput(
                team_rows=np.zeros((1, 0), np.int32),
                team_embeddings=goalie.embed((np.array([[g, 0.0, g]], np.float32),))[None],
                team_embedding_mask=np.ones((1, 1), bool),
            ),
        )[0]
        for g in (1.0, 7.0)
    ]
    assert abs(values[0] - values[1]) > 1e-5
    worker.close()


# ---- global state per area, and the terminal step's state for bootstrapping -----------------------------


class AreaStateGame(ParallelEnv):
    """Two areas of two agents (groups 1 and 2); each area's global state is [area, t, terminal flag].

    After step 1, area 0 is cut at max steps and restarts in the same message (new names). ``state()``
    returns the latest state the game sent first (the restarted area's), as a single-state env would.
    """

    metadata = {"name": "area_state_v0"}  # noqa: RUF012

    def __init__(self) -> None:
        self.possible_agents = ["a0", "a1", "b0", "b1", "a0x", "a1x"]
        self.agents: list[str] = []
        spec = SimpleNamespace(
            observation_specs=[
                SimpleNamespace(name="obs", shape=(2,)),
                SimpleNamespace(name="global_state", shape=(3,)),
            ]
        )
        self.behavior_specs = {"Runner": spec}
        self._states: dict[str, np.ndarray] = {}
        self._t = 0

    def agent_behavior(self, agent: str) -> str:
        return "Runner"

    def observation_space(self, agent: str) -> spaces.Space:
        return spaces.Box(-100, 100, (2,), np.float32)

    def action_space(self, agent: str) -> spaces.Space:
        return spaces.Discrete(2)

    @staticmethod
    def area(agent: str) -> int:
        return 0 if agent.startswith("a") else 1

    def agent_state(self, agent: str) -> np.ndarray:
        return self._states[agent].copy()

    def state(self) -> np.ndarray:
        return next(iter(self._states.values())).copy()

    def _report(self, names: list[str], terminal: set[str]) -> tuple[dict, dict]:
        obs, infos = {}, {}
        self._states = {}
        for a in sorted(names, key=lambda a: a not in terminal):  # restarted agents first, like the bridge
            obs[a] = np.array([10 * self.area(a) + len(a), self._t], np.float32)
            infos[a] = {"behavior": "Runner", "group_id": self.area(a) + 1, "group_reward": 0.0}
            flag = 1.0 if a in terminal else 0.0
            self._states[a] = np.array([self.area(a), self._t, flag], np.float32)
        self._states = dict(sorted(self._states.items(), key=lambda kv: kv[0] in terminal))
        return obs, infos

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        self._t, self.agents = 0, ["a0", "a1", "b0", "b1"]
        return self._report(self.agents, set())

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        self._t += 1
        ended = {"a0", "a1"} if self._t == 1 else set()
        if ended:
            self.agents = ["a0x", "a1x", "b0", "b1"]
        reported = [*ended, *self.agents]
        obs, infos = self._report(reported, ended)
        rewards = {a: 1.0 for a in reported}
        truncations = {a: a in ended for a in reported}
        return obs, rewards, {a: False for a in reported}, truncations, infos


def make_area_state() -> AreaStateGame:
    return AreaStateGame()


def test_global_state_is_per_area_and_the_terminal_step_keeps_its_own() -> None:
    worker, policies = _worker(EnvFactory(EnvSettings(pettingzoo=f"{__file__}:make_area_state")))
    policy = policies["Runner"]
    assert policy.spec.state_shape == (3,)
    batch = worker.collect({"Runner": policy.get_weights()}, horizon=1).batches["Runner"]
    assert batch.critic.state is not None
    for row, o in enumerate(batch.obs[0]):
        area = int(o[0]) // 10
        np.testing.assert_array_equal(batch.critic.state[row], [area, 0, 0])  # its own area's state
    # area 0 was truncated at step 1 and restarted in the same message: its bootstrap value is the
    # critic's value of the terminal observation with the terminal state [0, 1, 1], hand-computed here
    for row, o in enumerate(batch.obs[0]):
        if int(o[0]) // 10 != 0:
            continue
        terminal_obs = np.array([[o[0], 1.0]], np.float32)
        v = policy.value((terminal_obs,), CriticInput(state=np.array([[0.0, 1.0, 1.0]], np.float32)))[0]
        assert batch.returns[row] == pytest.approx(1.0 + v, abs=1e-5)
    worker.close()
