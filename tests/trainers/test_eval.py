"""Evaluation: confidence intervals, baselines, the report, and `unimarl eval` on a small battle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from unimarl.trainers.algos.meanfield.worker import Outcome, baseline_actions
from unimarl.trainers.cli.main import main
from unimarl.trainers.envs.battles import FIRST_ATTACK
from unimarl.trainers.run.evaluate import EvaluationError, Side, kills_report, load_side, play_match
from unimarl.trainers.run.intervals import bootstrap_ci, wilson


def test_wilson_matches_hand_values() -> None:
    lo, hi = wilson(5, 10)  # p = 0.5, n = 10, z = 1.96
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    assert wilson(0, 20)[0] == 0.0 and wilson(0, 20)[1] == pytest.approx(0.1611, abs=1e-4)


def test_bootstrap_interval_contains_the_mean() -> None:
    values = np.arange(20, dtype=np.float64)
    lo, hi = bootstrap_ci(values)
    assert lo < values.mean() < hi and hi - lo < 10


def test_summary_counts_wins_draws_and_losses() -> None:
    outs = [
        Outcome({"A": 3.0, "B": 1.0}, {"A": 1.0, "B": 0.0}, 10),
        Outcome({"A": 2.0, "B": 2.0}, {"A": 0.5, "B": 0.5}, 10),
        Outcome({"A": 0.0, "B": 4.0}, {"A": -1.0, "B": 2.0}, 10),
    ]
    r = kills_report(outs, [["A"], ["B"]], ("a", "b"))
    a = r["sides"]["a"]
    assert (a["wins"], a["draws"], a["losses"]) == (1, 1, 1)
    assert a["win_rate"] == pytest.approx(0.5) and a["kills_mean"] == pytest.approx(5 / 3)
    assert r["sides"]["b"]["return_mean"] == pytest.approx(2.5 / 3)


def test_baselines_respect_masks_and_scripted_attacks() -> None:
    rng = np.random.default_rng(0)
    mask = np.zeros((200, 21))
    mask[:100, [0, 3]] = 1
    mask[100:, [0, 3, FIRST_ATTACK + 2]] = 1
    rand = baseline_actions("baseline:random", mask, 200, rng)
    assert set(rand[:100]) == {0, 3}
    scripted = baseline_actions("baseline:scripted", mask, 200, rng)
    assert set(scripted[100:]) == {FIRST_ATTACK + 2} and set(scripted[:100]) == {0, 3}


def test_bad_sides_are_named(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match="does not exist"):
        load_side(str(tmp_path / "nope.pt"))
    with pytest.raises(EvaluationError, match="no checkpoint"):
        load_side(str(tmp_path))
    (tmp_path / "checkpoint-best.pt").write_bytes(b"not a checkpoint")  # not a name RunDir writes
    with pytest.raises(EvaluationError, match="no checkpoint"):
        load_side(str(tmp_path))
    with pytest.raises(EvaluationError, match="not a readable checkpoint"):
        load_side(str(tmp_path / "checkpoint-best.pt"))
    rand = load_side("random")
    with pytest.raises(EvaluationError, match="battles=0"):
        play_match(None, rand, rand, battles=0)  # type: ignore[arg-type]  # checked before any game starts


def test_cli_eval_scripted_beats_random(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from unimarl.trainers.run import evaluate

    monkeypatch.setattr(evaluate, "PROGRESS_EVERY_S", 0.0)  # a progress line after every chunk
    cfg = tmp_path / "battle.yaml"
    cfg.write_text(
        "env: {sim: battle, args: ['--team-size', '8', '--grid', '14', '--view', '5']}\n"
        "environment_parameters: {max_steps: 40}\n"
    )
    out = tmp_path / "report.json"
    code = main(
        [
            "eval",
            "scripted",
            "random",
            "--config",
            str(cfg),
            "--battles",
            "6",
            "--num-envs",
            "2",
            "--json",
            str(out),
            "--out-dir",
            str(tmp_path / "eval"),
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert report["battles"] == 6
    assert report["sides"]["scripted"]["kills_mean"] > report["sides"]["random"]["kills_mean"]
    captured = capsys.readouterr()
    assert "win rate" in captured.out
    assert "scripted vs random: " in captured.err and " of 6 battles" in captured.err


def test_cli_eval_both_sides_combines_orientations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "battle.yaml"
    cfg.write_text(
        "env: {sim: battle, args: ['--team-size', '8', '--grid', '14', '--view', '5']}\n"
        "environment_parameters: {max_steps: 40}\n"
    )
    out = tmp_path / "report.json"
    args = ["eval", "scripted", "random", "--config", str(cfg), "--battles", "4", "--both-sides"]
    code = main([*args, "--json", str(out), "--out-dir", str(tmp_path / "eval")])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["side"] == "scripted" and report["battles"] == 8
    assert report["wins"] + report["draws"] + report["losses"] == 8
    first, second = report["orientations"]
    assert first["labels"] == ["scripted", "random"] and second["labels"] == ["random", "scripted"]
    assert "on the second" in capsys.readouterr().out


def test_cli_eval_compares_a_mappo_run_with_random_play(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.trainers.test_learning_check import RANDOM_RETURN, _train

    _train(tmp_path, max_steps=8 * 16 * 30)  # the learning check's run: about 8 of 8 right answers
    out = tmp_path / "report.json"
    args = [
        "eval",
        str(tmp_path / "cue"),
        "random",
        "--episodes",
        "48",
        "--num-envs",
        "4",
        "--json",
        str(out),
    ]
    assert main([*args, "--out-dir", str(tmp_path / "eval")]) == 0
    report = json.loads(out.read_text())
    trained, rand = (report["sides"][label]["cue"] for label in ("cue/checkpoint-3840.pt", "random"))
    assert trained["episodes"] == rand["episodes"] == 48
    # random answers: binomial(8, 1/3) per episode, mean 8/3, sd 1.33 (sd of the mean of 48: 0.19)
    assert rand["return_ci"][0] < RANDOM_RETURN + 0.6 and rand["return_ci"][1] > RANDOM_RETURN - 0.6
    assert abs(rand["return_mean"] - RANDOM_RETURN) < 0.8
    assert trained["return_mean"] > 6.5 and trained["return_ci"][0] > rand["return_ci"][1]
    low, high = report["difference"]["cue"]["ci"]
    assert 0 < low <= report["difference"]["cue"]["mean"] <= high
    assert "mean return" in capsys.readouterr().out


def _constant_q_checkpoint(path: Path, progress: float) -> Path:
    """An MF-Q checkpoint for the 4-vs-4 battle below whose Q is [1, 0, ..., 0] for every input (zero output
    weights), saved at ``progress`` on the default temperature schedule."""
    import dataclasses

    import torch

    from unimarl.bridge.spec import ActionSpec
    from unimarl.trainers.algos.meanfield.learners import MeanFieldHyperparameters, make_learner
    from unimarl.trainers.core.batch import PolicySpec

    hp = MeanFieldHyperparameters(encoder="mlp", visual_hidden=16, head_hidden=[16])
    spec = PolicySpec(((5, 5, 5), (2,), (4,)), ActionSpec(0, (21,)))  # LocalView, position, Status
    learner = make_learner("mfq", spec, hp)
    with torch.no_grad():
        learner.q_online.head[1].weight.zero_()
        learner.q_online.head[1].bias.copy_(torch.eye(21)[0])
    learner.set_progress(progress)
    state = {
        "format": 1,
        "policies": {"Battle?team=0": learner.state_dict()},
        "setups": {"Battle?team=0": {"trainer_type": "mfq", "hyperparameters": dataclasses.asdict(hp)}},
    }
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    return path


def test_eval_samples_at_the_temperature_the_checkpoint_reached(tmp_path: Path) -> None:
    """At progress 0 the default schedule's temperature is 1, so with Q = [1, 0, ...] the policy stays
    (action 0, never masked) with probability e / (e + n - 1) for n allowed actions: between e / (e + 20) =
    0.12 and, with most of a 10 x 10 map's moves free, well under 0.6. At T_end = 0.1 it would stay with
    probability >= e^10 / (e^10 + 20) > 0.999. Counted from the actions the game received (its --record)."""
    checkpoint = _constant_q_checkpoint(tmp_path / "run" / "checkpoints" / "checkpoint-100.pt", 0.0)
    side = load_side(str(checkpoint))
    assert side.temperature == pytest.approx(1.0)
    record = tmp_path / "record.jsonl"
    cfg = tmp_path / "battle.yaml"
    args = ["--team-size", "4", "--grid", "10", "--view", "5", "--record", str(record)]
    cfg.write_text(
        f"env: {{sim: battle, args: {json.dumps(args)}}}\nenvironment_parameters: {{max_steps: 12}}\n"
    )
    out = tmp_path / "report.json"
    flags = ["--config", str(cfg), "--battles", "4", "--json", str(out), "--out-dir", str(tmp_path / "eval")]
    code = main(["eval", str(checkpoint), "random", *flags])
    assert code == 0 and json.loads(out.read_text())["battles"] == 4
    team0 = [
        a[0]
        for line in (json.loads(x) for x in record.read_text().splitlines())
        for a in line["actions"].get("Battle?team=0", {}).get("discrete", [])
    ]
    stay = float(np.mean(np.asarray(team0) == 0))
    assert len(team0) >= 4 * 12 and 0.12 < stay < 0.6, (len(team0), stay)


def test_a_q_checkpoint_without_progress_is_refused(tmp_path: Path) -> None:
    import torch

    checkpoint = _constant_q_checkpoint(tmp_path / "run" / "checkpoints" / "checkpoint-7.pt", 0.5)
    assert load_side(str(checkpoint)).temperature == pytest.approx(1 + (0.2 - 1) * 0.5 / 0.8)
    state = torch.load(checkpoint, weights_only=True)
    del state["policies"]["Battle?team=0"]["counters"]
    torch.save(state, checkpoint)
    with pytest.raises(EvaluationError, match="records no training progress"):
        load_side(str(checkpoint))


def test_mean_action_ablations_change_what_a_policy_sees() -> None:
    """``zero`` hands the model a zero mean action, ``shuffle`` each agent another acting agent's; the
    benchmark's ablations (benchmarks/battle_mf.py --ablations) rest on it."""
    from unimarl.bridge.spec import ActionSpec
    from unimarl.trainers.algos.meanfield.mean_action import MeanActionTracker
    from unimarl.trainers.run.play import MeanFieldInput, ModelActor

    agents = [f"a{i}" for i in range(8)]
    seen = []
    for ablation in ("", "zero", "shuffle"):
        actor = ModelActor.__new__(ModelActor)  # no model: only the mean-action feed is exercised
        actor.tracker = MeanActionTracker(ActionSpec(0, (4,)))
        actor.tracker.record(agents, np.array([[0], [0], [0], [1], [2], [3], [3], [3]]))
        actor.mean_field = MeanFieldInput(ablation=ablation, rng=np.random.default_rng(0))
        seen.append(actor.mean_actions(agents, (np.zeros((8, 3), np.float32),), [1, 1, 1, 1, 2, 2, 2, 2]))
    plain, zero, shuffled = seen
    assert not np.allclose(plain[0], plain[4])  # the two groups' teams acted differently
    assert not zero.any()
    assert not np.array_equal(shuffled, plain)
    assert sorted(map(tuple, shuffled.tolist())) == sorted(map(tuple, plain.tolist()))  # the same rows
    rand = Side("random", baseline="random")
    with pytest.raises(EvaluationError, match="mean_action_ablation 'half'"):
        play_match(None, rand, rand, mean_action_ablation="half")  # type: ignore[arg-type]


def test_cli_eval_plays_a_mean_action_ablation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = _constant_q_checkpoint(tmp_path / "run" / "checkpoints" / "checkpoint-100.pt", 1.0)
    cfg = tmp_path / "battle.yaml"
    args = ["--team-size", "4", "--grid", "10", "--view", "5"]
    cfg.write_text(
        f"env: {{sim: battle, args: {json.dumps(args)}}}\nenvironment_parameters: {{max_steps: 8}}\n"
    )
    out = tmp_path / "report.json"
    flags = ["--config", str(cfg), "--battles", "2", "--json", str(out), "--out-dir", str(tmp_path / "eval")]
    assert main(["eval", str(checkpoint), "random", *flags, "--mean-action-ablation", "shuffle"]) == 0
    assert json.loads(out.read_text())["mean_action_ablation"] == "shuffle"
    with pytest.raises(SystemExit):  # argparse names the choices
        main(["eval", str(checkpoint), "random", *flags, "--mean-action-ablation", "half"])
    assert "invalid choice: 'half'" in capsys.readouterr().err


SMALL_PPO = {
    "trainer_type": "ppo",
    "hyperparameters": {"batch_size": 16, "buffer_size": 32},
    "network_settings": {"hidden_units": 8, "num_layers": 1},
    "time_horizon": 4,
}


def _strikers_run(tmp_path: Path) -> Path:
    """A short MAPPO run on the Strikers-vs-Goalie game of test_ghost.py (two behaviours, two teams)."""
    from unimarl.trainers.core.config import config_from_dict
    from unimarl.trainers.run.train import train

    data = {
        "default_settings": {**SMALL_PPO, "max_steps": 16},
        "behaviors": {"Striker": {}, "Goalie": {}},
        "env": {"pettingzoo": f"{Path(__file__).parent / 'test_ghost.py'}:make_strikers_vs_goalie"},
        "checkpoint_settings": {"run_id": "svg", "results_dir": str(tmp_path / "results")},
        "torch_settings": {"device": "cpu"},
    }
    return train(config_from_dict(data)).run_dir


def _always(run: Path, folder: Path, corner: int) -> Path:
    """A copy of ``run`` whose strikers and goalie always pick ``corner`` (greedy)."""
    import shutil

    import torch

    shutil.copytree(run, folder)
    (checkpoint,) = sorted((folder / "checkpoints").glob("checkpoint-*.pt"))[-1:]
    state = torch.load(checkpoint, weights_only=True)
    for policy in ("Striker", "Goalie"):
        actor = state["policies"][policy]["modules"]["actor"]
        actor["logits_head.weight"].zero_()
        actor["logits_head.bias"].copy_(torch.eye(3)[corner] * 10.0)
    torch.save(state, checkpoint)
    return folder


def test_cli_eval_match_scores_each_side_by_the_games_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Strikers score when their corner is not the goalie's; two goals win (+1), else the goalie wins. P's
    players always pick corner 1, Q's corner 0: whoever strikes wins every game, in either orientation, so
    A's combined record is exactly half won, half lost."""
    run = _strikers_run(tmp_path)
    p, q = _always(run, tmp_path / "p", 1), _always(run, tmp_path / "q", 0)
    out = tmp_path / "match.json"
    args = ["eval", str(p), str(q), "--match", "--both-sides", "--greedy", "--episodes", "12"]
    assert main([*args, "--num-envs", "2", "--json", str(out), "--out-dir", str(tmp_path / "eval")]) == 0
    report = json.loads(out.read_text())
    first, second = report["orientations"]
    assert [s["team"] for s in first["sides"].values()] == [0, 1]
    (p_strikes, q_keeps), (q_strikes, p_keeps) = first["sides"].values(), second["sides"].values()
    assert (p_strikes["wins"], p_strikes["losses"], q_keeps["losses"]) == (12, 0, 12)
    assert (q_strikes["wins"], p_keeps["losses"], p_keeps["wins"]) == (12, 12, 0)
    assert (report["wins"], report["losses"], report["win_rate"]) == (12, 12, 0.5)
    assert "over both orientations: win rate 0.500" in capsys.readouterr().out


def test_a_match_needs_a_game_of_two_teams(tmp_path: Path) -> None:
    from unimarl.trainers.core.config import config_from_dict
    from unimarl.trainers.envs.factory import EnvFactory
    from unimarl.trainers.run.evaluate import NotAMatchError

    config = config_from_dict({"env": {"pettingzoo": f"{Path(__file__).parent / 'nav_env.py'}:make"}})
    factory = EnvFactory(config.env, config.engine_settings, {}, str(tmp_path), None)
    rand = load_side("random")
    with pytest.raises(NotAMatchError, match=r"a match needs a game of two teams.*--alone"):
        play_match(factory, rand, rand, episodes=2)


def test_cli_eval_plays_a_mappo_run_against_a_mean_field_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One evaluator for every algorithm: a MAPPO run (its checkpoint, its exported models, one of its .onnx
    files) plays battles against an MF-Q checkpoint, which the two evaluators of before could not pair."""
    import shutil

    from unimarl.trainers.core.config import config_from_dict
    from unimarl.trainers.run.train import train

    sim = ["--team-size", "4", "--grid", "10", "--view", "5"]
    data = {
        "default_settings": {**SMALL_PPO, "max_steps": 32},
        "env": {"sim": "battle", "args": sim, "num_envs": 1},
        "environment_parameters": {"max_steps": 8},
        "checkpoint_settings": {"run_id": "ppo", "results_dir": str(tmp_path / "results")},
        "torch_settings": {"device": "cpu"},
    }
    run = train(config_from_dict(data)).run_dir
    mfq = _constant_q_checkpoint(tmp_path / "mf" / "checkpoints" / "checkpoint-100.pt", 1.0)
    models = tmp_path / "models"  # the run's exported models alone: no checkpoint
    shutil.copytree(run / "onnx", models / "onnx")
    shutil.copy(run / "config.yaml", models / "config.yaml")
    one_model = sorted((run / "onnx").glob("*.onnx"))[0]
    cfg = tmp_path / "battle.yaml"  # a bare model has no game of its own: the run's is named
    cfg.write_text(
        f"env: {{sim: battle, args: {json.dumps(sim)}}}\nenvironment_parameters: {{max_steps: 8}}\n"
    )
    for side, game in ((run, []), (models, []), (one_model, ["--config", str(cfg)])):
        out = tmp_path / f"{side.name}.json"
        flags = ["--battles", "2", "--num-envs", "2", "--json", str(out), "--out-dir", str(tmp_path / "eval")]
        assert main(["eval", str(side), str(mfq), *game, *flags]) == 0, side
        report = json.loads(out.read_text())
        assert report["rule"] == "kills" and report["battles"] == 2
        first, second = (report["sides"][label] for label in report["labels"])
        assert (first["team"], second["team"]) == (0, 1)
        assert first["wins"] + first["draws"] + first["losses"] == 2
        assert first["wins"] == second["losses"] and first["draws"] == second["draws"]
    assert "scored by kills" in capsys.readouterr().out


def test_a_side_with_no_policy_for_a_behaviour_is_named(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match="does not exist"):
        load_side(str(tmp_path / "run#Nope"))
    mfq = _constant_q_checkpoint(tmp_path / "mf" / "checkpoints" / "checkpoint-100.pt", 1.0)
    with pytest.raises(EvaluationError, match=r"holds policies \['Battle\?team=0'\], not 'Nope'"):
        load_side(f"{mfq}#Nope")
    assert load_side(f"{tmp_path / 'mf'}#Battle?team=0").policy == "Battle?team=0"


def test_a_battle_is_scored_by_kills_though_agents_die_before_it_ends(tmp_path: Path) -> None:
    """Agents of the battle game end their episodes when they die: a team can end ``episodes`` agent episodes
    before the first battle ends, and the game is still scored per battle by kills (the first ended battle
    decides the rule)."""
    from unimarl.trainers.core.config import config_from_dict
    from unimarl.trainers.envs.factory import EnvFactory, make_sim_build

    sim = ["--team-size", "8", "--grid", "8", "--view", "5"]
    config = config_from_dict({"env": {"sim": "battle", "args": sim}})
    build = str(make_sim_build(config.env, tmp_path))
    factory = EnvFactory(config.env, config.engine_settings, {"max_steps": 60}, str(tmp_path), build)
    scripted = load_side("scripted")
    report = play_match(factory, scripted, scripted, battles=2, episodes=1, num_envs=2)
    assert report["rule"] == "kills" and report["battles"] == 2
    assert sum(s["kills_mean"] for s in report["sides"].values()) > 0  # agents died before the battles ended
