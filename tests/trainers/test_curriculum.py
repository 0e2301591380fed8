"""Curriculum lessons (ML-Agents' ``environment_parameters.<name>.curriculum``).

The rules are mlagents-learn's (ml-agents/mlagents/trainers/settings.py ``CompletionCriteriaSettings.
need_increment`` and environment_parameter_manager.py ``update_lessons``, release 22): a lesson ends once its
behaviour has ``min_lesson_length`` episodes in its reward buffer and progress (or the smoothed mean reward)
passes the threshold; the smoothed value carries over from one check to the next; every reward buffer is
emptied when a lesson moves on. The run test trains on the coop_nav sim game, whose episodes last
``episode_length`` steps as read from the EnvironmentParameters channel at each episode start, so the episode
lengths the run measures show which lesson's value the game received.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from unimarl.trainers.core.config import (
    CompletionCriteria,
    CurriculumSettings,
    Lesson,
    SamplerSettings,
    config_from_dict,
)
from unimarl.trainers.core.errors import ResumeError
from unimarl.trainers.run.curriculum import Curriculum, current_values, last_lessons


def _curriculum(*criteria: CompletionCriteria, values: tuple[float, ...] = (1.0, 2.0, 3.0)) -> Curriculum:
    lessons = [Lesson(f"L{i}", v, c) for i, (v, c) in enumerate(zip(values, [*criteria, None], strict=True))]
    return Curriculum({"size": CurriculumSettings(lessons), "speed": 4.0})


def test_progress_lessons_wait_for_min_lesson_length_and_pass_strictly_above_the_threshold() -> None:
    cur = _curriculum(
        CompletionCriteria("Walker", "progress", threshold=0.25, min_lesson_length=2),
        CompletionCriteria("Walker", "progress", threshold=0.5),
    )
    assert cur.values() == {"size": 1.0, "speed": 4.0}
    assert cur.update(0.9) == (False, False)  # no episode yet: the buffer holds fewer than 2
    cur.episodes_ended("Walker?team=0", [1.0])  # a team's behaviour counts for its name
    cur.episodes_ended("Other", [1.0, 1.0])
    assert cur.update(0.9) == (False, False)
    cur.episodes_ended("Walker?team=0", [0.0])
    assert cur.update(0.25) == (False, False)  # ML-Agents: progress > threshold
    assert cur.update(0.26) == (True, False)
    assert cur.values() == {"size": 2.0, "speed": 4.0} and cur.metrics() == {"lesson/size": 1.0}
    assert cur.update(0.26) == (False, False)  # one lesson per update
    assert cur.update(0.6) == (True, False)
    assert cur.update(1.0) == (False, False) and cur.lessons == {"size": 2}  # the last lesson stays


def test_reward_lessons_smooth_over_checks_as_ml_agents_does() -> None:
    cur = _curriculum(
        CompletionCriteria("Walker", "reward", threshold=0.8, min_lesson_length=2, require_reset=True),
        CompletionCriteria("Walker", "reward", threshold=0.8, min_lesson_length=2, signal_smoothing=False),
    )
    cur.episodes_ended("Walker", [3.0, 1.0, 1.0])  # the buffer keeps the last 2
    assert cur.update(0.0) == (False, False)  # smoothed 0.25 * 0 + 0.75 * 1 = 0.75
    assert cur.smoothed["size"] == pytest.approx(0.75)
    assert cur.update(0.0) == (True, True)  # 0.25 * 0.75 + 0.75 * 1 = 0.9375; require_reset
    assert len(cur.rewards["Walker"]) == 0  # emptied: those rewards were earned in the old lesson
    cur.episodes_ended("Walker", [0.9])
    assert cur.update(0.0) == (False, False)  # one episode of the 2 needed
    cur.episodes_ended("Walker", [0.7])
    assert cur.update(0.0) == (False, False)  # unsmoothed mean 0.8 is not above 0.8
    cur.episodes_ended("Walker", [1.0])
    assert cur.update(0.0) == (True, False)  # the last 2: mean 0.85
    assert cur.values()["size"] == 3.0


def test_lessons_are_saved_and_resumed_and_a_changed_curriculum_is_refused() -> None:
    criteria = CompletionCriteria("Walker", "progress", threshold=0.1)
    cur = _curriculum(criteria, criteria)
    cur.episodes_ended("Walker", [1.0])
    cur.update(0.5)
    state = cur.state_dict()
    again = _curriculum(criteria, criteria)
    again.load_state_dict(state)
    assert again.lessons == {"size": 1} and again.values()["size"] == 2.0
    renamed = Curriculum(
        {
            "size": CurriculumSettings(
                [Lesson("A", 1.0, criteria), Lesson("B", 2.0, criteria), Lesson("C", 3.0)]
            )
        }
    )
    with pytest.raises(ResumeError, match=r"lesson 1 \('L1'\) of environment parameter 'size'"):
        renamed.load_state_dict(state)
    fresh = _curriculum(criteria, criteria)
    fresh.load_state_dict(None)  # a checkpoint written before curricula: first lessons
    assert fresh.lessons == {"size": 0}


def test_current_values_resolve_curricula_and_keep_numbers_and_samplers() -> None:
    uniform = SamplerSettings("uniform", {"min_value": 0.0, "max_value": 1.0})
    params = {"a": 2.0, "b": uniform, "c": CurriculumSettings([Lesson("x", uniform, None)])}
    assert current_values(params) == {"a": 2.0, "b": uniform, "c": uniform}
    assert last_lessons(
        {"d": _curriculum(CompletionCriteria("W"), CompletionCriteria("W")).curricula["size"]}
    ) == {"d": 3.0}


CONFIG = """
behaviors:
  CoopNav:
    trainer_type: ppo
    hyperparameters: {batch_size: 64, buffer_size: 128, learning_rate_schedule: constant}
    network_settings: {hidden_units: 16, num_layers: 1}
    max_steps: 150
    time_horizon: 10
    summary_freq: 10
    checkpoint_interval: 1000
environment_parameters:
  episode_length:
    curriculum:
      - name: Short
        completion_criteria: {measure: progress, behavior: CoopNav, threshold: 0.25}
        value: 4
      - name: Longer
        completion_criteria: {measure: reward, behavior: CoopNav, threshold: -1.0e9, min_lesson_length: 16,
                              require_reset: true}
        value: {sampler_type: constant, sampler_parameters: {value: 9}}
      - name: Longest
        value: 13
env_settings: {env_path: "sim:coop_nav", num_envs: 1, seed: 3}
torch_settings: {device: cpu}
"""


def _lines(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_run_moves_through_the_lessons_and_the_game_plays_each_lessons_value(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from unimarl.trainers.run.train import train

    data = yaml.safe_load(CONFIG)
    data["checkpoint_settings"] = {"run_id": "lessons", "results_dir": str(tmp_path)}
    result = train(config_from_dict(data))
    lines = _lines(result.run_dir)
    lessons = [line["lesson/episode_length"] for line in lines]
    assert lessons == sorted(lessons) and lessons[0] == 0 and lessons[-1] == 2, lessons
    # progress 0.25 of 150 env steps: lesson 1 from the first check past 37 steps
    first_long = next(line["env_steps"] for line in lines if line["lesson/episode_length"] >= 1)
    assert 37 < first_long <= 50, first_long
    # the episodes the game played: 4 steps in the first lesson, 9 in the second, 13 in the last
    lengths = {
        line["lesson/episode_length"]: line["episode_length/CoopNav?team=0"]
        for line in lines
        if "episode_length/CoopNav?team=0" in line
    }
    assert lengths[0] == 4.0 and lengths[2] == 13.0, lengths
    played = {
        line["episode_length/CoopNav?team=0"] for line in lines if "episode_length/CoopNav?team=0" in line
    }
    assert 9.0 in played, played
    log = next((result.run_dir / "logs").glob("worker0-env0/*.log")).read_text()
    for value in ("4.0", "9.0", "13.0"):  # what the game's EnvironmentParameters channel received
        assert f"environment parameter episode_length = {value}" in log
    # TensorBoard: ML-Agents' tag, per policy
    events = EventAccumulator(str(result.run_dir / "tensorboard" / "CoopNav")).Reload()
    tag = "Environment/Lesson Number/episode_length"
    assert tag in events.Tags()["scalars"]
    assert events.Scalars(tag)[-1].value == 2.0
    state = torch.load(sorted((result.run_dir / "checkpoints").glob("*.pt"))[-1], weights_only=True)
    assert state["curriculum"]["lessons"] == {"episode_length": (2, "Longest")}


def test_resume_continues_in_the_lesson_reached(tmp_path: Path) -> None:
    from unimarl.trainers.run.train import train

    data = yaml.safe_load(CONFIG)
    data["checkpoint_settings"] = {"run_id": "lessons", "results_dir": str(tmp_path)}
    data["behaviors"]["CoopNav"]["max_steps"] = 60  # past the first lesson, in the second
    first = train(config_from_dict(data))
    before = _lines(first.run_dir)
    reached = before[-1]["lesson/episode_length"]
    assert reached >= 1
    data["behaviors"]["CoopNav"]["max_steps"] = 80
    data["checkpoint_settings"]["resume"] = True
    second = train(config_from_dict(data))
    resumed = _lines(second.run_dir)[len(before) :]
    assert resumed and resumed[0]["lesson/episode_length"] >= reached
    assert all(line.get("episode_length/CoopNav?team=0", 9.0) != 4.0 for line in resumed)
