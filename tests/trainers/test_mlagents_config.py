"""Configs in ML-Agents' spelling (mlagents-learn's config.yaml, release 22/23) load with ML-Agents' meaning,
or are refused with one typed error naming every setting unimarl cannot honour.

The configs below are written for these tests from ML-Agents' documented schema; together they use every key
that ML-Agents' example configs (config/ppo, config/poca, config/sac, config/imitation) use.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from unimarl.trainers.core.config import (
    CompletionCriteria,
    CurriculumSettings,
    SamplerSettings,
    config_from_dict,
    config_to_dict,
    load_config,
)
from unimarl.trainers.core.errors import ConfigError
from unimarl.trainers.core.mappo_settings import GhostSettings
from unimarl.trainers.core.mlagents_schema import UnsupportedSettingError

# a cooperative team on one Unity group (as PushBlockCollab / DungeonEscape)
POCA_TEAM = """
behaviors:
  CoopNav:
    trainer_type: poca
    hyperparameters:
      batch_size: 512
      buffer_size: 8192
      learning_rate: 0.0002
      beta: 0.02
      epsilon: 0.15
      lambd: 0.9
      num_epoch: 4
      learning_rate_schedule: constant
    network_settings:
      normalize: false
      hidden_units: 192
      num_layers: 2
      vis_encode_type: simple
    reward_signals:
      extrinsic:
        gamma: 0.98
        strength: 1.0
    keep_checkpoints: 5
    max_steps: 12000000
    time_horizon: 48
    summary_freq: 40000
"""

# two ppo behaviours with a board encoder, updated in a thread by mlagents-learn (as Match3)
PPO_BOARD = """
behaviors:
  TilesVector:
    trainer_type: ppo
    hyperparameters: {batch_size: 32, buffer_size: 6400, learning_rate: 0.0005, beta: 0.002, epsilon: 0.25,
                      lambd: 0.97, num_epoch: 2, learning_rate_schedule: constant}
    network_settings: {normalize: true, hidden_units: 96, num_layers: 1, vis_encode_type: match3}
    reward_signals: {extrinsic: {gamma: 0.97, strength: 1.0}}
    keep_checkpoints: 5
    max_steps: 3000000
    time_horizon: 500
    summary_freq: 5000
    checkpoint_interval: 250000
    threaded: true
  TilesVisual:
    trainer_type: ppo
    hyperparameters: {batch_size: 32, buffer_size: 6400, learning_rate: 0.0005, beta: 0.002, epsilon: 0.25,
                      lambd: 0.97, num_epoch: 2, learning_rate_schedule: constant}
    network_settings: {normalize: true, hidden_units: 96, num_layers: 1, vis_encode_type: nature_cnn}
    reward_signals: {extrinsic: {gamma: 0.97, strength: 1.0}}
    max_steps: 3000000
    time_horizon: 500
    summary_freq: 5000
    threaded: true
"""


def _ppo(name: str, schedule: str, layers: int, gamma: float, horizon: int, normalize: bool) -> str:
    """A single-behaviour ppo config (as 3DBall, GridWorld, Crawler, PushBlock, Walker)."""
    return f"""
behaviors:
  {name}:
    trainer_type: ppo
    hyperparameters:
      batch_size: 256
      buffer_size: 4096
      learning_rate: 0.0004
      beta: 0.004
      epsilon: 0.2
      lambd: 0.93
      num_epoch: 3
      learning_rate_schedule: {schedule}
    network_settings: {{normalize: {str(normalize).lower()}, hidden_units: 64, num_layers: {layers},
                        vis_encode_type: simple}}
    reward_signals: {{extrinsic: {{gamma: {gamma}, strength: 1.0}}}}
    keep_checkpoints: 5
    max_steps: 800000
    time_horizon: {horizon}
    summary_freq: 16000
"""


BALANCE = _ppo("Balance", "linear", 2, 0.99, 1000, True)
GRID = _ppo("Grid", "linear", 1, 0.9, 5, False)
CRAWL = _ppo("Crawl", "linear", 3, 0.995, 1000, True)

# a symmetric two-team game trained by ghost self-play (as SoccerTwos)
SELF_PLAY = """
behaviors:
  Soccer:
    trainer_type: poca
    hyperparameters: {batch_size: 1024, buffer_size: 16384, learning_rate: 0.0003, beta: 0.006, epsilon: 0.2,
                      lambd: 0.95, num_epoch: 3, learning_rate_schedule: constant}
    network_settings: {normalize: false, hidden_units: 256, num_layers: 2, vis_encode_type: simple}
    reward_signals: {extrinsic: {gamma: 0.99, strength: 1.0}}
    keep_checkpoints: 5
    max_steps: 40000000
    time_horizon: 800
    summary_freq: 20000
    threaded: false
    self_play: {save_steps: 40000, team_change: 160000, swap_steps: 1500, window: 8,
                play_against_latest_model_ratio: 0.4, initial_elo: 1000.0}
"""

# an asymmetric game: two behaviours, different team sizes (as StrikersVsGoalie)
ASYMMETRIC = """
behaviors:
  Keeper:
    trainer_type: poca
    hyperparameters: {learning_rate_schedule: constant}
    self_play: {save_steps: 30000, team_change: 120000, swap_steps: 800, window: 6,
                play_against_latest_model_ratio: 0.5, initial_elo: 1200.0}
  Forward:
    trainer_type: poca
    hyperparameters: {learning_rate_schedule: constant}
    self_play: {save_steps: 30000, team_change: 120000, swap_steps: 3200, window: 6,
                play_against_latest_model_ratio: 0.5, initial_elo: 1200.0}
"""

# lessons moved on by progress, with sampled and constant lesson values (as WallJump_curriculum)
CURRICULUM = """
behaviors:
  HighHop:
    trainer_type: ppo
    hyperparameters: {batch_size: 64, buffer_size: 1024, learning_rate: 0.0003, beta: 0.005, epsilon: 0.2,
                      lambd: 0.95, num_epoch: 3, learning_rate_schedule: constant}
    reward_signals: {extrinsic: {gamma: 0.99, strength: 1.0}}
    max_steps: 4000000
    time_horizon: 96
    summary_freq: 10000
    threaded: true
environment_parameters:
  hop_height:
    curriculum:
      - name: Low
        completion_criteria: {measure: progress, behavior: HighHop, signal_smoothing: true,
                              min_lesson_length: 50, threshold: 0.2, require_reset: false}
        value: {sampler_type: uniform, sampler_parameters: {min_value: 0.5, max_value: 2.0}}
      - name: High
        completion_criteria: {measure: reward, behavior: HighHop, signal_smoothing: false,
                              min_lesson_length: 50, threshold: 0.8}
        value: {sampler_type: constant, sampler_parameters: {value: 3.0}}
      - name: Top
        value: 4.5
"""

# per-episode parameter randomisation (as 3DBall_randomize)
RANDOMIZED = """
behaviors:
  Balance:
    trainer_type: poca
    hyperparameters: {learning_rate_schedule: constant}
environment_parameters:
  mass: {sampler_type: uniform, sampler_parameters: {min_value: 0.5, max_value: 8.0}}
  gravity: {sampler_type: gaussian, sampler_parameters: {mean: 9.8, st_dev: 0.5}}
  scale: {sampler_type: multirangeuniform, sampler_parameters: {intervals: [[0.5, 1.0], [2.0, 3.0]]}}
  friction: {sampler_type: constant, sampler_parameters: {value: 0.4}}
  length: 12
"""

# intrinsic rewards, demonstrations, memory and SAC (as Pyramids, PyramidsRND, config/imitation, Hallway, sac)
INTRINSIC = """
behaviors:
  Seeker:
    trainer_type: ppo
    hyperparameters: {learning_rate_schedule: constant}
    reward_signals:
      extrinsic: {gamma: 0.99, strength: 1.0}
      curiosity: {gamma: 0.99, strength: 0.02, network_settings: {hidden_units: 128}, learning_rate: 0.0003}
      rnd: {gamma: 0.99, strength: 0.01, network_settings: {hidden_units: 64, num_layers: 3},
            learning_rate: 0.0001}
      gail: {gamma: 0.99, strength: 0.01, demo_path: demos/Seeker.demo, use_actions: false}
    behavioral_cloning: {demo_path: demos/Seeker.demo, steps: 50000, strength: 0.5}
  Corridor:
    trainer_type: ppo
    hyperparameters: {batch_size: 128, buffer_size: 1024, learning_rate_schedule: constant}
    network_settings: {hidden_units: 128, memory: {sequence_length: 32, memory_size: 64}}
  Reacher:
    trainer_type: sac
    hyperparameters: {learning_rate: 0.0003, learning_rate_schedule: constant, batch_size: 128,
                      buffer_size: 500000, buffer_init_steps: 0, tau: 0.005, steps_per_update: 20.0,
                      save_replay_buffer: false, init_entcoef: 1.0, reward_signal_steps_per_update: 20.0}
"""

# every run-level section, default_settings merged into the behaviours (as results/<run>/configuration.yaml)
RUN_SECTIONS = """
default_settings:
  trainer_type: poca
  hyperparameters: {batch_size: 256, buffer_size: 2048, learning_rate: 0.001, beta: 0.01, epsilon: 0.3,
                    lambd: 0.9, num_epoch: 5, learning_rate_schedule: constant, beta_schedule: constant,
                    epsilon_schedule: constant}
  network_settings: {normalize: true, hidden_units: 32, num_layers: 3, vis_encode_type: resnet, memory: null,
                     goal_conditioning_type: none, deterministic: false}
  reward_signals: {extrinsic: {gamma: 0.95, strength: 1.0, network_settings: {hidden_units: 128}}}
  init_path: null
  keep_checkpoints: 5
  even_checkpoints: true
  max_steps: 1000000
  time_horizon: 32
  summary_freq: 5000
  threaded: false
  self_play: null
  behavioral_cloning: null
behaviors:
  Runner:
    trainer_type: ppo
    hyperparameters: {shared_critic: false, num_epoch: 2}
    network_settings: {hidden_units: 64}
  Walker: {}
env_settings:
  env_path: builds/Walker.x86_64
  env_args: [--walls, "3"]
  base_port: 5005
  num_envs: 3
  num_areas: 2
  timeout_wait: 90
  seed: 42
  max_lifetime_restarts: 4
  restarts_rate_limit_n: 2
  restarts_rate_limit_period_s: 30
engine_settings: {width: 96, height: 72, quality_level: 1, time_scale: 10, target_frame_rate: 30,
                  capture_frame_rate: 50, no_graphics: true}
environment_parameters: null
checkpoint_settings: {run_id: walker-1, initialize_from: null, load_model: false, resume: true, force: false,
                      train_model: false, inference: false, results_dir: runs}
torch_settings: {device: cpu}
debug: false
"""


def _load(text: str) -> object:
    return config_from_dict(yaml.safe_load(text))


def test_the_issue_config_loads_from_a_file(tmp_path: Path) -> None:
    """The report of the issue: a poca config renamed to a stand-in game's behaviour stopped at batch_size."""
    (tmp_path / "config.yaml").write_text(POCA_TEAM)
    config = load_config(tmp_path / "config.yaml")
    assert config.behaviors["CoopNav"].trainer_type == "mappo"


def test_poca_is_mappo_with_the_group_critic_and_ml_agents_numbers() -> None:
    config = config_from_dict(yaml.safe_load(POCA_TEAM))
    settings = config.behavior_settings("CoopNav?team=0")
    hp, net = settings.hyperparameters, settings.network_settings
    assert (hp.lr, hp.critic_lr, hp.entropy_coef, hp.clip, hp.lam, hp.epochs) == (
        2e-4,
        2e-4,
        0.02,
        0.15,
        0.9,
        4,
    )
    assert hp.num_minibatches == 16 and hp.gamma == 0.98  # buffer_size / batch_size; extrinsic gamma
    assert (net.hidden_units, net.num_layers, net.normalize_inputs) == (192, 2, False)
    assert net.centralized_critic and net.team_pooling == "attention" and net.vis_encode_type == "simple"
    assert (settings.max_steps, settings.time_horizon, settings.summary_freq) == (12_000_000, 48, 40_000)
    assert settings.checkpoint_interval == 500_000 and settings.group_reward_weight == 1.0
    assert config.policy_of("CoopNav?team=1") == "CoopNav"  # one policy per behaviour, as mlagents-learn


def test_ppo_is_mappo_without_the_centralised_critic(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        config = config_from_dict(yaml.safe_load(PPO_BOARD))
    for name, encoder in (("TilesVector", "match3"), ("TilesVisual", "nature_cnn")):
        settings = config.behaviors[name]
        assert not settings.network_settings.centralized_critic
        assert settings.network_settings.normalize_inputs and settings.network_settings.num_layers == 1
        assert settings.network_settings.vis_encode_type == encoder
        assert settings.hyperparameters.num_minibatches == 200 and settings.hyperparameters.lam == 0.97
    assert config.behaviors["TilesVector"].checkpoint_interval == 250_000
    assert "TilesVector.threaded true" in caplog.text and "counts max_steps" in caplog.text
    assert "6400 / batch_size 32 -> 200 minibatches" in caplog.text


@pytest.mark.parametrize(("text", "name"), [(BALANCE, "Balance"), (GRID, "Grid"), (CRAWL, "Crawl")])
def test_linear_and_constant_schedules_load(text: str, name: str) -> None:
    settings = _load(text).behaviors[name]
    hp = settings.hyperparameters
    assert (hp.lr_schedule, hp.entropy_schedule, hp.clip_schedule) == ("linear", "linear", "linear")
    assert hp.num_minibatches == 16 and hp.lr == 4e-4
    assert (
        settings.network_settings.num_layers
        == yaml.safe_load(text)["behaviors"][name]["network_settings"]["num_layers"]
    )
    constant = config_from_dict(yaml.safe_load(text.replace("linear", "constant"))).behaviors[name]
    assert constant.hyperparameters.lr_schedule == "constant"


def test_an_unset_schedule_is_ml_agents_linear_default() -> None:
    config = config_from_dict(
        {"behaviors": {"X": {"trainer_type": "ppo", "hyperparameters": {"beta": 0.01}}}}
    )
    hp = config.behaviors["X"].hyperparameters
    assert (hp.lr_schedule, hp.entropy_schedule, hp.clip_schedule) == ("linear", "linear", "linear")
    given = {"learning_rate_schedule": "constant", "beta_schedule": "linear"}  # beta set apart from the rate
    hp = (
        config_from_dict({"behaviors": {"X": {"trainer_type": "ppo", "hyperparameters": given}}})
        .behaviors["X"]
        .hyperparameters
    )
    assert (hp.lr_schedule, hp.entropy_schedule, hp.clip_schedule) == ("constant", "linear", "constant")
    with pytest.raises(ConfigError, match="learning_rate_schedule 'cosine': use constant or linear"):
        config_from_dict(
            {
                "behaviors": {
                    "X": {"trainer_type": "ppo", "hyperparameters": {"learning_rate_schedule": "cosine"}}
                }
            }
        )


def test_self_play_maps_to_the_ghost_settings_of_each_behaviour() -> None:
    config = _load(SELF_PLAY)
    assert config.behaviors["Soccer"].ghost == GhostSettings(
        save_steps=40000,
        team_change=160000,
        swap_steps=1500,
        window=8,
        play_against_latest_model_ratio=0.4,
        initial_elo=1000.0,
    )
    assert config.policy_of("Soccer?team=0") == config.policy_of("Soccer?team=1") == "Soccer"
    asymmetric = _load(ASYMMETRIC)
    assert asymmetric.behaviors["Keeper"].ghost == GhostSettings(30000, 120000, 800, 6, 0.5, 1200.0)
    assert asymmetric.behaviors["Forward"].ghost == GhostSettings(30000, 120000, 3200, 6, 0.5, 1200.0)
    defaults = yaml.safe_load(SELF_PLAY)
    defaults["behaviors"]["Soccer"]["self_play"] = {}
    assert _load(yaml.safe_dump(defaults)).behaviors["Soccer"].ghost == GhostSettings()  # ML-Agents' defaults


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"window": 0}, r"behaviors.Soccer.ghost.window must be >= 1, got 0 \(.*there: self_play\)"),
        (
            {"play_against_latest_model_ratio": 1.5},
            r"play_against_latest_model_ratio must be between 0 and 1",
        ),
        (
            {"swap_step": 10},
            r"unknown key 'swap_step' in section 'behaviors.Soccer.ghost': did you mean 'swap_steps'",
        ),
    ],
)
def test_wrong_self_play_settings_are_refused_naming_the_key(patch: dict, message: str) -> None:
    data = yaml.safe_load(SELF_PLAY)
    data["behaviors"]["Soccer"]["self_play"].update(patch)
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data)


def test_curricula_load_with_their_lessons_and_samplers_and_constants_are_sent() -> None:
    hop = _load(CURRICULUM).environment_parameters["hop_height"]
    assert isinstance(hop, CurriculumSettings)
    low, high, top = hop.curriculum
    assert (low.name, high.name, top.name) == ("Low", "High", "Top")
    assert low.value == SamplerSettings("uniform", {"min_value": 0.5, "max_value": 2.0})
    assert (high.value, top.value) == (3.0, 4.5)  # a constant sampler is its value, in a lesson too
    assert low.completion_criteria == CompletionCriteria(
        behavior="HighHop", measure="progress", threshold=0.2, min_lesson_length=50, signal_smoothing=True
    )
    assert high.completion_criteria is not None and high.completion_criteria.measure == "reward"
    assert not high.completion_criteria.signal_smoothing and top.completion_criteria is None
    params = _load(RANDOMIZED).environment_parameters
    assert {k: v for k, v in params.items() if not isinstance(v, SamplerSettings)} == {
        "friction": 0.4,
        "length": 12.0,
    }
    assert params["mass"] == SamplerSettings("uniform", {"min_value": 0.5, "max_value": 8.0})
    assert params["gravity"] == SamplerSettings("gaussian", {"mean": 9.8, "st_dev": 0.5})
    assert params["scale"] == SamplerSettings("multirangeuniform", {"intervals": [[0.5, 1.0], [2.0, 3.0]]})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda c: c[0].pop("completion_criteria"),
            r"curriculum\[0\] \(lesson 'Low'\) has no completion_criteria",
        ),
        (
            lambda c: c[0]["completion_criteria"].update(threshold=1.5),
            r"curriculum\[0\].completion_criteria.threshold 1.5 is not a fraction",
        ),
        (
            lambda c: c[1]["completion_criteria"].update(measure="score"),
            r"measure must be progress or reward, got 'score'",
        ),
        (
            lambda c: c[1]["completion_criteria"].pop("behavior"),
            r"curriculum\[1\].completion_criteria.behavior is required",
        ),
        (lambda c: c[2].pop("name"), r"curriculum\[2\].name is required"),
        (lambda c: c.clear(), r"hop_height.curriculum has no lessons"),
        (
            lambda c: c[2].update(value={"sampler_type": "uniform", "sampler_parameters": {"min_value": 1}}),
            r"uniform: sampler_parameters needs min_value, max_value",
        ),
        (
            lambda c: c[0].update(Low={}),
            r"unknown key 'Low' in section 'environment_parameters.hop_height.curriculum\[0\]'",
        ),
    ],
)
def test_a_wrong_curriculum_is_refused_naming_the_lesson_and_key(change: object, message: str) -> None:
    data = yaml.safe_load(CURRICULUM)
    change(data["environment_parameters"]["hop_height"]["curriculum"])  # type: ignore[operator]
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data)


def test_intrinsic_rewards_demonstrations_memory_and_sac_are_refused() -> None:
    with pytest.raises(UnsupportedSettingError, match="SAC trainer is not implemented") as info:
        _load(INTRINSIC)
    assert info.value.keys == [
        "behaviors.Seeker.reward_signals.curiosity",
        "behaviors.Seeker.reward_signals.gail",
        "behaviors.Seeker.reward_signals.rnd",
        "behaviors.Seeker.behavioral_cloning",
        "behaviors.Corridor.network_settings.memory",
        "behaviors.Reacher.trainer_type",
    ]


def test_run_level_sections_and_default_settings_map() -> None:
    config = config_from_dict(yaml.safe_load(RUN_SECTIONS))
    env, run, engine = config.env, config.run, config.engine_settings
    assert (env.build, env.args, env.num_envs, env.num_areas, env.timeout_s) == (
        "builds/Walker.x86_64",
        ["--walls", "3"],
        3,
        2,
        90.0,
    )
    assert (env.max_lifetime_restarts, env.restarts_rate_limit_n, env.restarts_rate_limit_period_s) == (
        4,
        2,
        30.0,
    )
    assert (run.seed, run.run_id, run.results_dir, run.resume, run.device) == (
        42,
        "walker-1",
        "runs",
        True,
        "cpu",
    )
    assert (engine.width, engine.height, engine.quality_level, engine.time_scale) == (96, 72, 1, 10.0)
    assert (engine.target_frame_rate, engine.capture_frame_rate, engine.no_graphics) == (30, 50, True)
    assert config.environment_parameters == {}
    runner, walker = config.behaviors["Runner"], config.behaviors["Walker"]
    assert not runner.network_settings.centralized_critic and walker.network_settings.centralized_critic
    assert (runner.hyperparameters.epochs, walker.hyperparameters.epochs) == (2, 5)
    assert (runner.network_settings.hidden_units, walker.network_settings.hidden_units) == (64, 32)
    assert runner.network_settings.num_layers == 3 and runner.hyperparameters.lr == 1e-3  # merged defaults
    assert runner.hyperparameters.num_minibatches == 8 and runner.hyperparameters.gamma == 0.95
    assert walker.network_settings.vis_encode_type == "resnet"
    assert walker.checkpoint_interval == 200_000  # even_checkpoints: max_steps / keep_checkpoints
    assert config.behavior_settings("Unnamed") == config.behaviors["default"] == walker
    again = config_from_dict(yaml.safe_load(yaml.safe_dump(config_to_dict(config))))
    assert again == config  # the run folder's resolved config.yaml reads back in unimarl's spelling


@pytest.mark.parametrize(
    ("path", "value", "key"),
    [
        ("checkpoint_settings.inference", True, "checkpoint_settings.inference"),
        ("checkpoint_settings.train_model", True, "checkpoint_settings.train_model"),
        ("torch_settings.device", "cuda:1", "torch_settings.device"),
        ("debug", True, "debug"),
        ("behaviors.Runner.init_path", "old/Runner", "behaviors.Runner.init_path"),
        (
            "behaviors.Runner.hyperparameters.shared_critic",
            True,
            "behaviors.Runner.hyperparameters.shared_critic",
        ),
        (
            "behaviors.Runner.network_settings.deterministic",
            True,
            "behaviors.Runner.network_settings.deterministic",
        ),
        (
            "behaviors.Runner.network_settings.goal_conditioning_type",
            "hyper",
            "behaviors.Runner.network_settings.goal_conditioning_type",
        ),
        (
            "behaviors.Runner.reward_signals",
            {"extrinsic": {"strength": 0.5}},
            "behaviors.Runner.reward_signals.extrinsic.strength",
        ),
        ("default_settings.reward_signals", {"curiosity": {}}, "default_settings.reward_signals.extrinsic"),
    ],
)
def test_settings_unimarl_cannot_honour_are_refused_by_name(path: str, value: object, key: str) -> None:
    data = yaml.safe_load(RUN_SECTIONS)
    *parents, leaf = path.split(".")
    section = data
    for part in parents:
        section = section.setdefault(part, {})
    section[leaf] = value
    with pytest.raises(UnsupportedSettingError, match="everything else in the file maps") as info:
        config_from_dict(data)
    assert key in info.value.keys and isinstance(info.value, ConfigError)


@pytest.mark.parametrize(
    ("patch", "pattern"),
    [
        (
            {"hyperparameters": {"batch_sise": 64}},
            r"'batch_sise' .*hyperparameters'.*did you mean 'batch_size'",
        ),
        (
            {"hyperparameters": {"batch_size": 4096, "buffer_size": 1024}},
            r"batch_size 4096 must lie in 1..buffer_size",
        ),
        ({"hyperparameters": {"learning_rate": -1}}, r"lr must be > 0.*there: learning_rate"),
        ({"network_settings": {"hidden_units": 0}}, r"hidden_units >= 1"),
        (
            {"reward_signals": {"extrinsic": {"gamma": 2}}},
            r"gamma must lie in .*reward_signals.extrinsic.gamma",
        ),
        ({"reward_signals": {"intrinsic": {}}}, r"unknown key 'intrinsic'.*did you mean 'extrinsic'"),
        ({"threaded": "yes"}, r"behaviors.CoopNav.threaded: expected true or false"),
    ],
)
def test_invalid_ml_agents_values_name_the_ml_agents_key(patch: dict, pattern: str) -> None:
    data = yaml.safe_load(POCA_TEAM)
    section = data["behaviors"]["CoopNav"]
    for key, value in patch.items():
        section[key] = {**section[key], **value} if isinstance(value, dict) and key in section else value
    with pytest.raises(ConfigError, match=pattern):
        config_from_dict(data)


def test_an_invalid_value_is_reported_before_the_refusals() -> None:
    data = yaml.safe_load(SELF_PLAY)
    data["behaviors"]["Soccer"]["hyperparameters"]["epsilon"] = 0
    data["behaviors"]["Soccer"]["behavioral_cloning"] = {"demo_path": "x.demo", "strength": 0.5}
    with pytest.raises(
        ConfigError, match=r"clip must be > 0.*not supported either: behaviors.Soccer.behavioral_cloning"
    ) as info:
        config_from_dict(data)
    assert not isinstance(info.value, UnsupportedSettingError)


def test_seed_minus_one_draws_a_seed_and_env_path_names_a_sim_game() -> None:
    config = config_from_dict({"env_settings": {"seed": -1, "env_path": "sim:coop_nav", "num_envs": 2}})
    assert 0 <= config.run.seed < 10_000 and config.env.sim == "coop_nav" and config.env.num_envs == 2


def test_unimarl_sections_and_behaviours_sit_beside_ml_agents_ones() -> None:
    data = yaml.safe_load(POCA_TEAM)
    data["behaviors"]["Battle"] = {"trainer_type": "mfq", "hyperparameters": {"learning_rate": 5e-4}}
    data["run"] = {"num_workers": 2, "seed": 3}
    data["env"] = {"sim": "coop_nav"}
    data["checkpoint_settings"] = {"run_id": "both"}
    config = config_from_dict(data)
    assert (
        config.behaviors["Battle"].mean_field.learning_rate == 5e-4 and "Battle" not in config.policy_mapping
    )
    assert (config.run.num_workers, config.run.seed, config.run.run_id) == (2, 3, "both")
    data["env_settings"] = {"seed": 4}
    with pytest.raises(ConfigError, match=r"run.seed is set twice"):
        config_from_dict(data)


def test_hyperparameters_need_a_trainer_type_as_in_ml_agents() -> None:
    with pytest.raises(ConfigError, match=r"behaviors.X: hyperparameters given without a trainer_type"):
        config_from_dict({"behaviors": {"X": {"hyperparameters": {"batch_size": 64}, "threaded": False}}})


def test_curricula_load_in_unimarl_spelling_too() -> None:
    data = {
        "env": {"sim": "coop_nav"},
        "environment_parameters": yaml.safe_load(CURRICULUM)["environment_parameters"],
    }
    config = config_from_dict(data)
    assert config.environment_parameters == _load(CURRICULUM).environment_parameters
    again = config_from_dict(yaml.safe_load(yaml.safe_dump(config_to_dict(config))))
    assert again.environment_parameters == config.environment_parameters  # results/RUN_ID/config.yaml


@pytest.mark.parametrize("trainer", ["ppo", "poca"])
def test_an_ml_agents_config_trains_briefly_on_a_stand_in_game(tmp_path: Path, trainer: str) -> None:
    from unimarl.trainers.run.train import train

    data = yaml.safe_load(POCA_TEAM)
    behavior = data["behaviors"]["CoopNav"]
    behavior.update(trainer_type=trainer, max_steps=50, time_horizon=25, summary_freq=25)
    behavior.update(checkpoint_interval=25, keep_checkpoints=1)
    behavior["hyperparameters"].update(batch_size=64, buffer_size=128)
    behavior["network_settings"]["hidden_units"] = 16
    data["env_settings"] = {"env_path": "sim:coop_nav", "num_envs": 1, "seed": 1}
    data["checkpoint_settings"] = {"run_id": trainer, "results_dir": str(tmp_path)}
    data["torch_settings"] = {"device": "cpu"}
    result = train(config_from_dict(data))
    assert result.stopped_by == "max_steps" and result.env_steps >= 50
    assert (tmp_path / trainer / "onnx" / "CoopNav.onnx").exists()
    # checkpoints at 25 and 50 env steps, the newest kept (keep_checkpoints: 1)
    assert [p.name for p in (tmp_path / trainer / "checkpoints").glob("*.pt")] == ["checkpoint-50.pt"]


def test_force_and_initialize_from_map_to_the_run() -> None:
    data = yaml.safe_load(RUN_SECTIONS)
    data["checkpoint_settings"].update(force=True, initialize_from="walker-0", resume=False)
    run = config_from_dict(data).run
    assert (run.force, run.initialize_from) == (True, "walker-0")


def test_a_bare_ml_agents_trainer_type_reads_the_file_in_ml_agents_spelling() -> None:
    config = config_from_dict({"behaviors": {"Walker": {"trainer_type": "ppo"}}})
    walker = config.behaviors["Walker"]
    assert walker.trainer_type == "mappo" and not walker.network_settings.centralized_critic
    assert walker.max_steps == 500_000 and walker.time_horizon == 64  # ML-Agents' defaults
    with pytest.raises(UnsupportedSettingError, match="SAC trainer is not implemented"):
        config_from_dict({"behaviors": {"Walker": {"trainer_type": "sac"}}})
