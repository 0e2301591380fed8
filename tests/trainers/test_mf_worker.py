"""Mean-field rollout worker against games: episodes that reuse agent names, several battles (areas) in one
game, group rewards, independent random streams per actor, behaviours that appear late."""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gymnasium import spaces
from pettingzoo import ParallelEnv

from unimarl.trainers.algos.meanfield.learners import MeanFieldHyperparameters
from unimarl.trainers.algos.meanfield.worker import MFPlan, MFPolicySetup, MFRolloutWorker
from unimarl.trainers.core.config import EnvSettings
from unimarl.trainers.core.errors import ConfigError, EnvSetupError
from unimarl.trainers.envs.factory import EnvFactory, make_sim_build

NAV = Path(__file__).with_name("nav_env.py")
SMALL = {"encoder": "mlp", "visual_hidden": 16, "head_hidden": [16], "batch_size": 16, "learning_starts": 16}
TEAM = 4
BATTLE_ARGS = ["--team-size", str(TEAM), "--grid", "10", "--view", "3"]


def _sim_worker(tmp_path: Path, game: str, args: list[str], params: dict[str, float], **kw: Any) -> Any:
    settings = EnvSettings(sim=game, args=args, **kw)
    build = make_sim_build(settings, tmp_path)
    factory = EnvFactory(
        settings, environment_parameters=params, run_dir=str(tmp_path), build_path=str(build)
    )
    return MFRolloutWorker(factory, 1)


def _plan(spec: Any, behaviors: dict[str, str], **kw: Any) -> MFPlan:
    hp = MeanFieldHyperparameters(**SMALL)  # type: ignore[arg-type]
    policies = {
        p: MFPolicySetup(spec, "mfq", hp) for p in set(behaviors.values()) if not p.startswith("base")
    }
    return MFPlan(policies, behaviors, frozenset(policies), **kw)


# -- episodes that reuse agent names ------------------------------------------------------------------------
def test_a_new_episode_does_not_inherit_the_previous_episodes_actions() -> None:
    """TinyNav names its agents agent_0.. in every episode: the first decision of an episode has no neighbour
    that acted before it in that episode, so its mean action is zero (as the first decision of the run)."""
    worker = MFRolloutWorker(EnvFactory(EnvSettings(pettingzoo=f"{NAV}:make", kwargs={"max_cycles": 3})), 1)
    spec = worker.specs()["agent"]
    worker.configure(_plan(spec, {"agent": "p"}))
    chunk = worker.collect({}, 0.0, 10)
    worker.close()
    first_means: list[np.ndarray] = []
    later_means: list[np.ndarray] = []
    new_episode: dict[Any, bool] = defaultdict(lambda: True)
    for t in chunk.transitions["p"]:
        assert t.mean_action is not None and t.truncated is not None
        for k, key in enumerate(t.agent_keys or []):
            (first_means if new_episode[key] else later_means).append(t.mean_action[k])
            new_episode[key] = bool(t.truncated[k] or t.terminated[k])
    assert len(first_means) == 3 * 3  # 3 agents x episodes starting at steps 0, 3 and 6
    np.testing.assert_array_equal(np.array(first_means), 0.0)
    np.testing.assert_allclose(np.array(later_means).sum(axis=1), 1.0, rtol=1e-5)  # two neighbours acted


# -- several battles (areas) in one game ---------------------------------------------------------------------
def _area(agent: str) -> int:
    return int(agent.split("?agent_id=")[1].split("&")[0]) // (2 * TEAM)


def test_team_mean_actions_stay_within_the_area(tmp_path: Path) -> None:
    """Two areas: the mean action an agent acts on is the mean of its own area's teammates' previous actions
    (reconstructed from the actions the game received), never the other area's."""
    worker = _sim_worker(tmp_path, "battle", BATTLE_ARGS, {"max_steps": 50}, num_areas=2)
    env = worker.runner.envs[0]
    specs = worker.specs()
    worker.configure(
        _plan(specs["Battle?team=0"], {"Battle?team=0": "p", "Battle?team=1": "baseline:random"})
    )
    sent: list[dict[str, int]] = []
    fed: list[tuple[list[str], np.ndarray]] = []
    step, act = env.step, worker._actors["p"].act

    def record_step(actions: dict[str, Any]) -> Any:
        sent.append({a: int(np.asarray(v).reshape(-1)[0]) for a, v in actions.items()})
        return step(actions)

    def record_act(obs: Any, mean: Any, mask: Any, **kw: Any) -> Any:
        fed.append(([a for a in env.agents if a.startswith("Battle?team=0?")], np.array(mean)))
        return act(obs, mean, mask, **kw)

    env.step, worker._actors["p"].act = record_step, record_act
    worker.collect({}, 0.0, 4)
    worker.close()
    checked = 0
    for t in range(1, 4):
        names, means = fed[t]
        prev = sent[t - 1]
        for k, agent in enumerate(names):
            mates = [a for a in names if a != agent and a in prev and _area(a) == _area(agent)]
            expected = np.zeros(21, np.float32)
            if mates:
                expected = np.eye(21, dtype=np.float32)[[prev[a] for a in mates]].mean(axis=0)
            np.testing.assert_allclose(means[k], expected, atol=1e-6, err_msg=f"{agent} at step {t}")
            checked += 1
    assert checked >= 3 * 2 * TEAM - 2


def test_battle_outcomes_are_counted_per_area(tmp_path: Path) -> None:
    """Two areas fight separate battles that end at the same steps: one outcome per area battle, whose kills
    (the game's kill stats) equal the enemies that died in that area and whose returns are the mean episode
    returns of that area's agents (both as seen on the wire)."""
    args = ["--team-size", str(TEAM), "--grid", "6", "--view", "3"]  # the teams start adjacent: kills
    worker = _sim_worker(tmp_path, "battle", args, {"max_steps": 5}, num_areas=2)
    env = worker.runner.envs[0]
    specs = worker.specs()
    worker.configure(
        _plan(specs["Battle?team=0"], {"Battle?team=0": "p", "Battle?team=1": "baseline:scripted"})
    )
    deaths: dict[tuple[int, int, str], int] = defaultdict(int)  # (battle, area, behaviour)
    returns: dict[str, float] = defaultdict(float)
    calls = [0]
    step = env.step

    def record_step(actions: dict[str, Any]) -> Any:
        result = step(actions)
        battle = calls[0] // 5
        calls[0] += 1
        for agent, reward in result[1].items():
            returns[agent] += float(reward)
        for agent, term in result[2].items():
            if term:  # a timeout truncates the survivors: terminated agents died
                deaths[(battle, _area(agent), agent.split("?agent_id=")[0])] += 1
        return result

    env.step = record_step
    chunk = worker.collect({}, 0.0, 11)  # battles end at steps 5 and 10 in both areas
    worker.close()
    assert len(chunk.outcomes) == 4
    seen: dict[int, int] = defaultdict(int)
    pairs = (("Battle?team=0", "Battle?team=1"), ("Battle?team=1", "Battle?team=0"))
    for o in chunk.outcomes:
        area = (o.groups["Battle?team=0"] - 1) // 2  # the sim's groups: 2 * area + team + 1
        assert o.groups == {"Battle?team=0": 2 * area + 1, "Battle?team=1": 2 * area + 2}
        battle = seen[area]
        seen[area] += 1
        assert o.steps == 5
        for b, enemy in pairs:
            assert o.kills[b] == deaths[(battle, area, enemy)], (o, battle)
            suffix = "" if battle == 0 else f"&episode={battle}"
            names = [f"{b}?agent_id={(2 * area + int(b[-1])) * TEAM + j}{suffix}" for j in range(TEAM)]
            assert o.returns[b] == pytest.approx(np.mean([returns[n] for n in names]), abs=1e-5)
    assert dict(seen) == {0: 2, 1: 2}
    assert sum(deaths.values()) > 0  # the check above compared some kills


# -- group rewards -------------------------------------------------------------------------------------------
def _coop_rewards(tmp_path: Path, weight: float) -> tuple[np.ndarray, list[float]]:
    worker = _sim_worker(tmp_path / str(weight), "coop_nav", [], {"episode_length": 6}, num_areas=2)
    specs = worker.specs()
    plan = _plan(
        specs["CoopNav?team=0"], {"CoopNav?team=0": "p"}, group_reward_weight={"CoopNav?team=0": weight}
    )
    worker.configure(plan)
    chunk = worker.collect({}, 0.0, 13)
    worker.close()
    rewards = np.concatenate([t.reward for t in chunk.transitions["p"]])
    return rewards, chunk.episode_returns["CoopNav?team=0"]


def test_group_rewards_are_credited_with_their_weight(tmp_path: Path, caplog: Any) -> None:
    """coop_nav gives its team reward only as the Unity group reward (its agents' own rewards are 0), so every
    transition's reward and every episode return scale with group_reward_weight (1 against 0.5, same seed);
    with weight 0 the group reward is ignored with one warning."""
    with caplog.at_level(logging.WARNING, logger="unimarl.trainers"):
        ignored, ignored_returns = _coop_rewards(tmp_path, 0.0)
    warnings = [r for r in caplog.records if "group reward" in r.getMessage()]
    assert len(warnings) == 1 and "group_reward_weight" in warnings[0].getMessage()
    assert len(ignored) > 0 and np.all(ignored == 0) and np.all(np.array(ignored_returns) == 0)
    half, half_returns = _coop_rewards(tmp_path, 0.5)
    full, full_returns = _coop_rewards(tmp_path, 1.0)
    assert len(half) == len(full) == len(ignored) and np.all(full < 0)
    np.testing.assert_allclose(full, 2 * half, rtol=1e-5)
    np.testing.assert_allclose(full_returns, 2 * np.array(half_returns), rtol=1e-5)


# -- random streams ------------------------------------------------------------------------------------------
def _battle_rows(worker: MFRolloutWorker, n: int) -> list[tuple]:
    spec = worker.specs()["Battle?team=0"]
    obs = [np.zeros((n, *s), np.float32) for s in spec.obs_shapes]
    mask = np.ones((n, 21), np.int8)
    return [
        (0, f"a{j}", "Battle?team=0", [o[j] for o in obs], mask[j], np.full(21, 1 / 21, np.float32))
        for j in range(n)
    ]


def test_one_actors_sampling_does_not_shift_anothers(tmp_path: Path) -> None:
    """Team 1's random draws are the same whether or not team 0 (another actor) drew before it."""
    worker = _sim_worker(tmp_path, "battle", BATTLE_ARGS, {"max_steps": 50})
    other = _sim_worker(tmp_path / "b", "battle", BATTLE_ARGS, {"max_steps": 50})
    try:
        actors = {"Battle?team=0": "baseline:random", "Battle?team=1": "baseline:scripted"}
        for w in (worker, other):
            w.configure(MFPlan({}, actors))
        rows = _battle_rows(worker, 8)
        mixed, alone = [], []
        for _ in range(20):
            worker._choose("baseline:random", rows)
            mixed.append(worker._choose("baseline:scripted", rows)[0])
            alone.append(other._choose("baseline:scripted", rows)[0])
        np.testing.assert_array_equal(np.array(mixed), np.array(alone))
    finally:
        worker.close()
        other.close()


def test_learner_and_baseline_draws_are_uncorrelated(tmp_path: Path) -> None:
    """A policy whose Q is flat samples uniformly, like the random baseline: their draws must not be
    mirror images of one generator's numbers (today's seeds coincided: correlation -1)."""
    worker = _sim_worker(tmp_path, "battle", BATTLE_ARGS, {"max_steps": 50})
    try:
        spec = worker.specs()["Battle?team=0"]
        worker.configure(_plan(spec, {"Battle?team=0": "a", "Battle?team=1": "baseline:random"}))
        flat = {k: np.zeros_like(v) for k, v in worker._actors["a"].get_weights().items()}
        worker._actors["a"].set_weights(flat)
        rows = _battle_rows(worker, 400)
        learner = worker._choose("a", rows)[0]
        baseline = worker._choose("baseline:random", rows)[0]
    finally:
        worker.close()
    assert len(set(learner.tolist())) > 15 and len(set(baseline.tolist())) > 15  # both near uniform
    assert abs(np.corrcoef(learner, baseline)[0, 1]) < 0.2


# -- behaviours that appear late -----------------------------------------------------------------------------
class LateEnv(ParallelEnv):
    """'red_0', 'red_1' from reset; 'blue_0' (``blue_obs`` values per observation) joins at step 2 of 6."""

    metadata = {"name": "late_mf_v0"}  # noqa: RUF012

    def __init__(self, blue_obs: int = 2) -> None:
        self.blue_obs = blue_obs
        self.possible_agents = ["red_0", "red_1", "blue_0"]
        self.agents: list[str] = []
        self._t = 0

    def observation_space(self, agent: str) -> spaces.Space:
        return spaces.Box(-10, 10, (2 if agent.startswith("red") else self.blue_obs,), np.float32)

    def action_space(self, agent: str) -> spaces.Space:
        return spaces.Discrete(3)

    def _obs(self) -> dict[str, np.ndarray]:
        return {a: np.full(self.observation_space(a).shape, self._t, np.float32) for a in self.agents}

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        self._t, self.agents = 0, ["red_0", "red_1"]
        return self._obs(), {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        self._t += 1
        if self._t == 2:
            self.agents = list(self.possible_agents)
        done = self._t >= 6
        obs = self._obs()
        flags = {a: done for a in obs}
        if done:
            self.agents = []
        return obs, {a: 1.0 for a in obs}, {a: False for a in obs}, flags, {a: {} for a in obs}


def make_late(**kwargs: Any) -> LateEnv:
    return LateEnv(**kwargs)


def _late_worker(**kwargs: Any) -> MFRolloutWorker:
    return MFRolloutWorker(EnvFactory(EnvSettings(pettingzoo=f"{__file__}:make_late", kwargs=kwargs)), 1)


def test_a_late_behaviour_mapped_to_a_policy_acts_with_it() -> None:
    worker = _late_worker()
    spec = worker.specs()["red"]
    worker.configure(_plan(spec, {"red": "p"}, late_policy={"blue": "p"}))
    chunk = worker.collect({}, 0.0, 8)
    worker.close()
    teams = {key[2].split("_")[0] for t in chunk.transitions["p"] for key in t.agent_keys or []}
    assert teams == {"red", "blue"}
    # joined at step 2 of 6, first acted at step 3: the return counts the rewards of its actions (steps 3..6),
    # not the reward it appeared with (as MAPPO counts; the runner's one accounting)
    assert chunk.episode_returns["blue"] == [4.0]


def test_a_late_behaviour_without_a_policy_is_a_typed_error() -> None:
    worker = _late_worker()
    worker.configure(_plan(worker.specs()["red"], {"red": "p"}))
    with pytest.raises(EnvSetupError, match=r"'blue' .*appeared after training started.*policy_mapping"):
        worker.collect({}, 0.0, 8)
    worker.close()
    worker = _late_worker(blue_obs=3)
    worker.configure(_plan(worker.specs()["red"], {"red": "p"}, late_policy={"blue": "p"}))
    with pytest.raises(ConfigError, match="'blue' maps to policy 'p' whose spec differs"):
        worker.collect({}, 0.0, 8)
    worker.close()


def test_training_maps_a_late_behaviour_through_policy_mapping(tmp_path: Path) -> None:
    from unimarl.trainers.core.config import config_from_dict
    from unimarl.trainers.run.train import train

    hp = {**SMALL, "push_every": 4}
    data: dict[str, Any] = {
        "env": {"pettingzoo": f"{__file__}:make_late", "num_envs": 1},
        "run": {"run_id": "late", "results_dir": str(tmp_path), "device": "cpu", "max_steps": 24},
        "behaviors": {"red": {"trainer_type": "mfq", "hyperparameters": hp, "summary_freq": 12}},
        "policy_mapping": {"blue": "red"},
    }
    result = train(config_from_dict(data))
    assert result.env_steps >= 24 and result.last_metrics["return/blue"] == 4.0  # from its first action
    del data["policy_mapping"]
    data["run"]["run_id"] = "unmapped"
    with pytest.raises(EnvSetupError, match=r"'blue' .*policy_mapping"):
        train(config_from_dict(data))


def test_game_stats_of_a_game_without_battles_are_drained_every_chunk(tmp_path: Path) -> None:
    """What a game records with StatsRecorder reaches the metrics (``game/<key>``) and leaves the game's stats
    channel at every chunk, battles or not (coop_nav records its team reward at each episode end)."""
    worker = _sim_worker(tmp_path, "coop_nav", [], {"episode_length": 4}, num_areas=2)
    try:
        specs = worker.specs()
        worker.configure(_plan(specs["CoopNav?team=0"], {"CoopNav?team=0": "p"}))
        chunk = worker.collect({}, 0.0, 8)  # two episodes in each of the 2 areas
        assert len(chunk.game_stats["CoopNav/episode_team_reward"]) == 4
        assert chunk.episode_lengths["CoopNav?team=0"]
        assert worker.runner.envs[0].connection.stats.get_and_reset_stats() == {}
    finally:
        worker.close()
