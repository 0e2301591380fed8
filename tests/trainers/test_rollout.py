"""Rollout workers: trajectory assembly with agents appearing, dying and restarting; team inputs; backends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gymnasium import spaces
from pettingzoo import ParallelEnv

from unimarl.trainers.algos.mappo.plan import PolicySetup, WorkerPlan
from unimarl.trainers.algos.mappo.policy import MAPPOHyperparameters, MAPPOPolicy, NetworkSettings
from unimarl.trainers.algos.mappo.rollout import RolloutWorker
from unimarl.trainers.algos.mappo.teams import concat_batches, team_rows
from unimarl.trainers.collect.backend import Collector, RayBackend, SerialBackend, cpus_per_worker, init_ray
from unimarl.trainers.core.batch import CriticInput
from unimarl.trainers.core.config import EnvSettings
from unimarl.trainers.core.errors import EnvSetupError
from unimarl.trainers.envs.factory import EnvFactory

NAV = str(Path(__file__).with_name("nav_env.py"))

# step k (1-based) -> (rewards, terminations, truncations, agents alive after the step)
SCRIPT: dict[int, tuple[dict[str, float], set[str], set[str], list[str]]] = {
    1: ({"a_0": 1.0, "a_1": 2.0}, set(), set(), ["a_0", "a_1"]),
    2: ({"a_0": 1.0, "a_1": 3.0}, {"a_1"}, set(), ["a_0", "a_2"]),  # a_1 dies, restarts as a_2
    3: ({"a_0": 1.0, "a_2": 5.0}, set(), {"a_0"}, ["a_2"]),  # a_0 truncated
    4: ({"a_2": 6.0}, set(), set(), ["a_2"]),
}


class ScriptedEnv(ParallelEnv):
    """Obs of agent a_i at step t: [i, t]. Agents follow SCRIPT; never resets after the first."""

    metadata = {"name": "scripted_v0"}  # noqa: RUF012

    def __init__(self) -> None:
        self.possible_agents = ["a_0", "a_1", "a_2"]
        self.agents: list[str] = []
        self._t = 0

    def observation_space(self, agent: str) -> spaces.Space:
        return spaces.Box(-10, 10, (2,), np.float32)

    def action_space(self, agent: str) -> spaces.Space:
        return spaces.Discrete(2)

    def _obs(self, agents: list[str]) -> dict[str, np.ndarray]:
        return {a: np.array([int(a[-1]), self._t], np.float32) for a in agents}

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        self._t = 0
        self.agents = ["a_0", "a_1"]
        return self._obs(self.agents), {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        assert set(actions) == set(self.agents)
        self._t += 1
        rewards, terms, truncs, alive = SCRIPT[self._t]
        reported = sorted(set(self.agents) | set(alive))
        self.agents = list(alive)
        return (
            self._obs(reported),
            rewards,
            {a: a in terms for a in reported},
            {a: a in truncs for a in reported},
            {a: {} for a in reported},
        )


def make_scripted() -> ScriptedEnv:
    return ScriptedEnv()


def _worker(factory: EnvFactory, num_envs: int = 1, gamma: float = 1.0, lam: float = 1.0):
    worker = RolloutWorker(factory, num_envs)
    specs = worker.specs()
    hp = MAPPOHyperparameters(gamma=gamma, lam=lam)
    setups = {b: PolicySetup(s, hp, NetworkSettings()) for b, s in specs.items()}
    worker.configure(WorkerPlan(setups, {b: b for b in specs}))
    policy = MAPPOPolicy(specs[next(iter(specs))], hp, NetworkSettings(), seed=3)
    return worker, policy


def test_trajectories_with_deaths_restarts_and_truncation_are_hand_checked() -> None:
    factory = EnvFactory(EnvSettings(pettingzoo=f"{__file__}:make_scripted"))
    worker, policy = _worker(factory)
    result = worker.collect({"a": policy.get_weights()}, horizon=4)
    batch = result.batches["a"]
    rows = {(int(o[0]), int(o[1])): k for k, o in enumerate(batch.obs[0])}
    # a_0 acts at t=0,1,2; a_1 at t=0,1; a_2 at t=2,3
    assert sorted(rows) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 2), (2, 3)]
    ret = {key: float(batch.returns[k]) for key, k in rows.items()}
    # a_1 terminated: no bootstrap, gamma = lam = 1 -> returns are reward sums
    assert ret[(1, 0)] == pytest.approx(5.0) and ret[(1, 1)] == pytest.approx(3.0)
    # a_0 truncated after t=2: bootstrapped from V(final obs [0, 3]) with no teammate ending beside it
    v_final = policy.value(
        (np.array([[0.0, 3.0]], np.float32),), CriticInput(team_rows=np.zeros((1, 0), np.int32))
    )
    assert ret[(0, 2)] == pytest.approx(1.0 + float(v_final[0]), abs=1e-4)
    assert ret[(0, 0)] - ret[(0, 1)] == pytest.approx(1.0, abs=1e-4)
    # a_2 is a fragment cut at the horizon: bootstrapped from V([2, 4]) (alone)
    v_cut = policy.value(
        (np.array([[2.0, 4.0]], np.float32),), CriticInput(team_rows=np.zeros((1, 0), np.int32))
    )
    assert ret[(2, 3)] == pytest.approx(6.0 + float(v_cut[0]), abs=1e-4)
    assert ret[(2, 2)] == pytest.approx(11.0 + float(v_cut[0]), abs=1e-4)
    np.testing.assert_allclose(batch.advantages, batch.returns - batch.values, atol=1e-5)
    # critic: at t=0 a_0's teammate is a_1; at t=2 a_0 and a_2 are teammates
    k = rows[(0, 0)]
    refs = batch.critic.team_rows
    assert refs is not None
    assert (refs[k] >= 0).sum() == 1
    np.testing.assert_array_equal(batch.obs[0][refs[k][refs[k] >= 0][0]], [1.0, 0.0])
    k2 = rows[(2, 2)]
    np.testing.assert_array_equal(batch.obs[0][refs[k2][refs[k2] >= 0][0]], [0.0, 2.0])
    assert not (refs[rows[(2, 3)]] >= 0).any()  # alone at t=3
    assert result.episode_returns == {"a": [5.0, 3.0]} and result.episode_lengths == {"a": [2, 3]}
    assert result.env_steps == 4 and result.agent_steps == 7 and batch.loss_mask.sum() == 7


def test_team_rows_pad_and_exclude_self() -> None:
    rows = team_rows(np.array([0, 1, 0, 0, 2]))
    np.testing.assert_array_equal(rows, [[2, 3], [-1, -1], [0, 3], [0, 2], [-1, -1]])


def test_concat_pads_teammate_axis() -> None:
    factory = EnvFactory(EnvSettings(pettingzoo=f"{NAV}:make", kwargs={"n_agents": 2}))
    worker2, policy2 = _worker(factory)
    small = worker2.collect({"agent": policy2.get_weights()}, 5).batches["agent"]
    both = concat_batches([small, small])
    assert both.critic.team_rows is not None and both.critic.team_rows.shape == (20, 1)
    # the second copy's references point into the second copy
    np.testing.assert_array_equal(
        both.critic.team_rows[10:], np.where(small.critic.team_rows >= 0, small.critic.team_rows + 10, -1)
    )


def _shapes(batch: Any) -> dict[str, tuple]:
    return {
        "obs": batch.obs[0].shape[1:],
        "disc": batch.discrete_actions.shape[1:],
        "mask": None if batch.action_mask is None else batch.action_mask.shape[1:],
        "team": batch.critic.team_rows.shape[1:],
        "n": len(batch),
    }


def test_masks_are_respected_and_serial_and_ray_backends_give_same_shapes() -> None:
    factory = EnvFactory(EnvSettings(pettingzoo=f"{NAV}:make", kwargs={"masks": True}))
    serial = SerialBackend(RolloutWorker, factory, num_workers=2, num_envs=2, seed=1)
    try:
        specs = serial.call_first("specs")
        plan = WorkerPlan(
            {"agent": PolicySetup(specs["agent"], MAPPOHyperparameters(), NetworkSettings())},
            {"agent": "agent"},
        )
        serial.call("configure", plan)
        weights = {
            "agent": MAPPOPolicy(specs["agent"], MAPPOHyperparameters(), NetworkSettings()).get_weights()
        }
        s_results = Collector(serial).gather(weights, 30)
    finally:
        serial.close()
    batch = s_results[0].batches["agent"]
    assert batch.action_mask is not None
    taken = batch.action_mask[np.arange(len(batch)), batch.discrete_actions[:, 0]]
    assert taken.all(), "a masked action was taken"
    init_ray(None, num_cpus=2)
    import ray

    assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1")
    # more workers than Ray CPUs (e.g. Ray started earlier with fewer): each asks for a share, so all fit
    total = int(ray.cluster_resources()["CPU"])
    assert (cpus_per_worker(total), cpus_per_worker(2 * total)) == (1.0, 0.5)
    pool = RayBackend(RolloutWorker, factory, num_workers=2, num_envs=2, seed=1, timeout_s=120)
    try:
        pool.call("configure", plan)
        r_results = Collector(pool).gather(weights, 30)
    finally:
        pool.close()
    assert [_shapes(r.batches["agent"]) for r in r_results] == [
        _shapes(r.batches["agent"]) for r in s_results
    ]
    assert [r.env_steps for r in r_results] == [60, 60]


class LateTeamEnv(ParallelEnv):
    """Two 'red' agents from reset; two 'blue' agents (other spaces) join at step 3; 8-step episodes."""

    metadata = {"name": "late_team_v0"}  # noqa: RUF012

    def __init__(self) -> None:
        self.possible_agents = ["red_0", "red_1", "blue_0", "blue_1"]
        self.agents: list[str] = []
        self._t = 0

    def observation_space(self, agent: str) -> spaces.Space:
        return spaces.Box(-10, 10, (2,) if agent.startswith("red") else (3,), np.float32)

    def action_space(self, agent: str) -> spaces.Space:
        return spaces.Discrete(2 if agent.startswith("red") else 3)

    def _obs(self) -> dict[str, np.ndarray]:
        return {a: np.full(2 if a.startswith("red") else 3, self._t, np.float32) for a in self.agents}

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        self._t = 0
        self.agents = ["red_0", "red_1"]
        return self._obs(), {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        assert set(actions) == set(self.agents)
        self._t += 1
        if self._t == 3:
            self.agents = list(self.possible_agents)
        done = self._t >= 8
        obs = self._obs()
        rewards = {a: 1.0 for a in obs}
        flags = {a: done for a in obs}
        if done:
            self.agents = []
        return obs, rewards, {a: False for a in obs}, flags, {a: {} for a in obs}


def make_late() -> LateTeamEnv:
    return LateTeamEnv()


def test_behaviour_appearing_after_reset_gets_its_own_policy() -> None:
    from unimarl.trainers.algos.mappo.plan import late_policy_seed
    from unimarl.trainers.core.config import config_from_dict

    config = config_from_dict({"env": {"pettingzoo": f"{__file__}:make_late"}})
    worker = RolloutWorker(EnvFactory(config.env), 2, seed=5)
    specs = worker.specs()
    assert set(specs) == {"red"}
    hp, net = MAPPOHyperparameters(gamma=1.0, lam=1.0), NetworkSettings()
    worker.configure(WorkerPlan({"red": PolicySetup(specs["red"], hp, net)}, {"red": "red"}, {}, config))
    red = MAPPOPolicy(specs["red"], hp, net)
    first = worker.collect({"red": red.get_weights()}, horizon=8)
    assert first.new_behaviors == {"blue": "blue"} and set(first.new_policies) == {"blue"}
    blue_spec = first.new_policies["blue"].spec
    assert blue_spec.obs_shapes == ((3,),) and blue_spec.action_spec.discrete_branches == (3,)
    blue = first.batches["blue"]
    assert len(blue) == 2 * 2 * 5 and blue.critic.team_rows is not None  # 2 envs x 2 agents x steps 3..7
    assert blue.critic.team_rows.shape[1:] == (1,)
    # the learner rebuilds the policy from the same seed: the workers acted with these very weights
    learner = MAPPOPolicy(blue_spec, hp, net, seed=late_policy_seed(5, "blue"))
    value = learner.value(blue.obs, blue.critic)
    np.testing.assert_allclose(value, blue.values, atol=1e-5)
    assert first.episode_returns["blue"] == [5.0] * 4 and first.episode_returns["red"] == [8.0] * 4
    second = worker.collect({"red": red.get_weights(), "blue": learner.get_weights()}, horizon=8)
    assert second.new_policies == {} and set(second.batches) == {"red", "blue"}
    worker.close()


def test_late_behaviour_without_config_names_the_fix() -> None:
    worker = RolloutWorker(EnvFactory(EnvSettings(pettingzoo=f"{__file__}:make_late")), 1)
    specs = worker.specs()
    worker.configure(
        WorkerPlan(
            {"red": PolicySetup(specs["red"], MAPPOHyperparameters(), NetworkSettings())}, {"red": "red"}
        )
    )
    weights = {"red": MAPPOPolicy(specs["red"], MAPPOHyperparameters(), NetworkSettings()).get_weights()}
    with pytest.raises(EnvSetupError, match=r"behaviour 'blue'.*WorkerPlan\(config=\.\.\.\)"):
        worker.collect(weights, horizon=5)
    worker.close()


def test_batched_gae_matches_per_trajectory_gae() -> None:
    from unimarl.trainers.algos.mappo.gae import gae
    from unimarl.trainers.algos.mappo.trajectories import batched_gae

    rng = np.random.default_rng(0)
    lengths = [1, 4, 7, 2, 5]
    traj = np.concatenate([np.full(n, k) for k, n in enumerate(lengths)])
    traj = traj[rng.permutation(len(traj))]  # trajectories interleave; each one's rows are its time order
    rewards = rng.normal(size=len(traj)).astype(np.float32)
    values = rng.normal(size=len(traj)).astype(np.float32)
    terminated = np.array([True, False, True, False, False])
    next_value = rng.normal(size=len(lengths))
    adv, ret = batched_gae(rewards, values, traj, terminated, next_value, 0.97, 0.9)
    for k in range(len(lengths)):
        rows = np.flatnonzero(traj == k)
        want_adv, want_ret = gae(
            rewards[rows], values[rows], next_value[k], bool(terminated[k]), False, 0.97, 0.9
        )
        np.testing.assert_allclose(adv[rows], want_adv, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ret[rows], want_ret, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("package", "layout"), [("2.2.1-exp.1", "HWC"), ("3.0.0", "CHW")])
def test_worker_reports_the_games_visual_layout(tmp_path: Path, package: str, layout: str) -> None:
    from unimarl.trainers.algos.mappo.algorithm import policy_layouts as _policy_layouts
    from unimarl.trainers.envs.factory import make_sim_build

    settings = EnvSettings(sim="visual", args=["--package-version", package])
    build = make_sim_build(settings, tmp_path)
    worker = RolloutWorker(EnvFactory(settings, run_dir=str(tmp_path), build_path=str(build)), 1)
    try:
        layouts = worker.visual_layouts()
    finally:
        worker.close()
    assert layouts == {"Visual?team=0": layout}
    assert _policy_layouts(layouts, {"Visual?team=0": "visual"}) == {"visual": layout}


# agent -> (per-step reward, decides at t when (t + shift) % period == 0 or t == 0, terminates at step)
PERIODIC: dict[str, tuple[float, int, int, int | None]] = {
    "a_0": (1.0, 3, 0, 5),  # decides at t = 0, 3; between decisions at the first cut (t = 4); ends at step 5
    "a_1": (0.5, 1, 0, None),  # decides every step
    "a_2": (2.0, 3, 1, None),  # decides at t = 0, 2, 5, 8; between decisions at the first cut
}


class DecisionPeriodEnv(ParallelEnv):
    """Unity decision periods as the bridge presents them: an agent between decisions stays in ``agents``
    with its last observation, reward 0 and ``requested_decision`` False; at its next decision (or its end)
    it gets the reward summed since its last one. Obs of a_i: [i, t of its last decision]."""

    metadata = {"name": "decision_period_v0"}  # noqa: RUF012

    def __init__(self) -> None:
        self.possible_agents = list(PERIODIC)
        self.agents: list[str] = []
        self._t = 0
        self._acc: dict[str, float] = {}
        self._last: dict[str, np.ndarray] = {}

    def observation_space(self, agent: str) -> spaces.Space:
        return spaces.Box(-100, 100, (2,), np.float32)

    def action_space(self, agent: str) -> spaces.Space:
        return spaces.Discrete(2)

    def _decides(self, agent: str) -> bool:
        _, period, shift, _ = PERIODIC[agent]
        return self._t == 0 or (self._t + shift) % period == 0

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        self._t = 0
        self.agents = list(PERIODIC)
        self._acc = dict.fromkeys(self.agents, 0.0)
        self._last = {a: np.array([int(a[-1]), 0], np.float32) for a in self.agents}
        return dict(self._last), {a: {"requested_decision": True} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        self._t += 1
        obs, rewards, terms, truncs, infos = {}, {}, {}, {}, {}
        for agent in list(self.agents):
            reward, _, _, end = PERIODIC[agent]
            self._acc[agent] += reward
            ends, decides = end == self._t, self._decides(agent)
            if ends or decides:
                self._last[agent] = np.array([int(agent[-1]), self._t], np.float32)
                rewards[agent], self._acc[agent] = self._acc[agent], 0.0
            else:
                rewards[agent] = 0.0
            obs[agent], terms[agent], truncs[agent] = self._last[agent], ends, False
            infos[agent] = {"requested_decision": decides and not ends}
            if ends:
                self.agents.remove(agent)
        return obs, rewards, terms, truncs, infos


def make_periodic() -> DecisionPeriodEnv:
    return DecisionPeriodEnv()


def test_decision_period_rewards_accrue_to_the_last_action_across_fragment_cuts() -> None:
    factory = EnvFactory(EnvSettings(pettingzoo=f"{__file__}:make_periodic"))
    worker, policy = _worker(factory)
    weights = {"a": policy.get_weights()}
    first, second = worker.collect(weights, horizon=4), worker.collect(weights, horizon=4)
    b1, b2 = first.batches["a"], second.batches["a"]
    rows1 = {(int(o[0]), int(o[1])): k for k, o in enumerate(b1.obs[0])}
    rows2 = {(int(o[0]), int(o[1])): k for k, o in enumerate(b2.obs[0])}
    # a_0's action at t=3 and a_2's at t=2 were still collecting rewards at the first cut: next batch
    assert sorted(rows1) == [(0, 0), (1, 0), (1, 1), (1, 2), (1, 3), (2, 0)]
    assert sorted(rows2) == [(0, 3), (1, 4), (1, 5), (1, 6), (1, 7), (2, 2), (2, 5)]
    ret1 = {key: float(b1.returns[k]) for key, k in rows1.items()}
    ret2 = {key: float(b2.returns[k]) for key, k in rows2.items()}
    value2 = {key: float(b2.values[k]) for key, k in rows2.items()}
    # gamma = lam = 1: a fragment's returns are its rewards plus the bootstrap value
    assert ret1[(0, 0)] == pytest.approx(3.0 + value2[(0, 3)], abs=1e-4)  # cut before the held action
    assert ret1[(2, 0)] == pytest.approx(4.0 + value2[(2, 2)], abs=1e-4)
    assert ret2[(0, 3)] == pytest.approx(2.0)  # the terminal reward, no bootstrap
    assert ret2[(2, 2)] - ret2[(2, 5)] == pytest.approx(6.0, abs=1e-4)  # steps 3..5 reach the t=2 action
    np.testing.assert_allclose(b2.advantages, b2.returns - b2.values, atol=1e-5)
    assert first.episode_returns == {} and second.episode_returns == {"a": [5.0]}
    assert second.episode_lengths == {"a": [2]}
    assert (first.agent_steps, second.agent_steps) == (8, 5)
    # nothing of the ended agent is left behind
    assert set(worker.runner.open_episodes(0)) == set(worker._meta[0]) == {"a_1", "a_2"}
    third = worker.collect(weights, horizon=4)
    rows3 = sorted((int(o[0]), int(o[1])) for o in third.batches["a"].obs[0])
    assert rows3 == [(1, 8), (1, 9), (1, 10), (1, 11), (2, 8)]  # a_2's action at t = 11 is held again
    worker.close()


def test_coop_nav_with_a_decision_period_credits_every_reward(tmp_path: Path) -> None:
    """coop_nav gives each agent the team reward summed since its last decision, so with nothing lost every
    agent of an area ends its episode with the same return, however the fragments cut the periods."""
    from unimarl.trainers.envs.factory import make_sim_build

    args = ["--decision-period", "3", "--episode-length", "10"]
    settings = EnvSettings(sim="coop_nav", args=args)
    build = make_sim_build(settings, tmp_path)
    worker, policy = _worker(EnvFactory(settings, run_dir=str(tmp_path), build_path=str(build)))
    try:
        returns: list[float] = []
        for _ in range(5):  # 35 steps, cut every 7: agents are mid-period at most cuts
            returns += worker.collect(
                {"CoopNav?team=0": policy.get_weights()}, horizon=7
            ).episode_returns.get("CoopNav?team=0", [])
    finally:
        worker.close()
    assert len(returns) == 3 * 3  # three 10-step episodes of 3 agents ended
    for k in range(0, len(returns), 3):
        assert returns[k : k + 3] == pytest.approx([returns[k]] * 3, abs=1e-4), returns
