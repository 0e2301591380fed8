"""``unimarl eval A B``: two sides (runs of any algorithm, models, baselines) compared on a game.

One evaluator (:mod:`unimarl.trainers.run.evaluate`): the sides' exported models play head to head on a
game of two teams (win rates: by kills on games that report them, else by each agent episode's final reward),
or each side plays the game alone (``--alone``, and any game without two teams: mean returns). The game is
``--config``'s or ``--env``'s, else the first run side's own, else ``sim:battle``. Heavy modules are imported
only when the command runs; the tables are printed here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from unimarl.trainers.cli.common import expected_errors, report_error, setup_logging


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "eval",
        help="compare two runs, models or baselines on a game: head-to-head win rates or returns",
        description="Each side acts through its exported ONNX model (a checkpoint is exported first), as "
        "the game would run it. On a game of two teams (behaviour ids Name?team=T, or two behaviours) the "
        "sides play each other, A driving the first team and B the second: a game that reports kills "
        "(<Game>/kills_team<k> statistics, as the battle game) is scored per battle, more kills winning; "
        "any other game per agent episode by the sign of its final reward (ML-Agents' self-play reading). "
        "On other games, or with --alone, each side plays the game by itself and the mean returns are "
        "compared. A side is random, scripted (the battle game's baseline), a .onnx model, a run folder "
        "(its latest checkpoint) or a checkpoint-N.pt, optionally #POLICY.",
    )
    p.add_argument("a", help="side A: run folder, checkpoint[#POLICY], .onnx model, random or scripted")
    p.add_argument("b", help="side B: run folder, checkpoint[#POLICY], .onnx model, random or scripted")
    p.add_argument(
        "--config",
        help="YAML config whose env and environment_parameters are used (a curriculum: its last lesson)",
    )
    p.add_argument(
        "--env",
        help="a Unity player build path, or sim:NAME (default: the first run side's env, else sim:battle)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--match",
        action="store_true",
        help="the sides must play each other (an error on a game without two teams)",
    )
    mode.add_argument(
        "--alone",
        action="store_true",
        help="each side plays the game by itself; compare mean returns (also a two-team game's)",
    )
    p.add_argument(
        "--battles",
        type=int,
        default=50,
        help="head to head on a game that reports kills: battles per orientation (default 50)",
    )
    p.add_argument(
        "--episodes",
        type=int,
        default=100,
        help="agent episodes per team (head to head) or per behaviour and side (--alone) (default 100)",
    )
    p.add_argument("--num-envs", type=int, default=1, help="games played at once")
    p.add_argument(
        "--greedy", action="store_true", help="the models' deterministic outputs instead of sampled actions"
    )
    p.add_argument(
        "--both-sides",
        action="store_true",
        help="head to head: play with A on each team (2x the games) and report A's combined win rate",
    )
    p.add_argument(
        "--mean-action-ablation",
        choices=("zero", "shuffle"),
        help="what mean-field models see of their neighbours, zeroed or shuffled between agents (does the "
        "policy use its mean action?)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--json", help="also write the report as JSON to this file")
    p.add_argument("--out-dir", default="results/eval", help="folder for game logs (default results/eval)")


def _factory(config: Any, out: Path) -> Any:
    """The env factory of ``config``'s game, logging into ``out``."""
    from unimarl.trainers.envs.factory import EnvFactory, make_sim_build
    from unimarl.trainers.run.curriculum import last_lessons

    out.mkdir(parents=True, exist_ok=True)
    env = config.env
    build = str(make_sim_build(env, out)) if env.kind == "sim" else None
    # a curriculum's last lesson: the task its lessons lead to
    parameters = last_lessons(config.environment_parameters)
    return EnvFactory(env, config.engine_settings, parameters, str(out.resolve()), build)


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _game_config(args: argparse.Namespace, sides: list[Any]) -> Any:
    """The config whose game is played (class docstring: --config, --env, a run side's, sim:battle)."""
    from unimarl.trainers.core.config import TrainConfig, apply_env_flag, load_config

    if args.config:
        config = load_config(args.config)
    else:
        config = next((s.config for s in sides if s.config is not None and s.run is not None), None)
        if config is None:  # no run side (baselines, models): the battle game unless --env says otherwise
            config = TrainConfig()
            apply_env_flag(config, "sim:battle")
    if args.env:
        apply_env_flag(config, args.env)
    return config


def run_eval(args: argparse.Namespace) -> int:
    from unimarl.trainers.run.evaluate import NotAMatchError, load_side

    setup_logging("WARNING")
    try:
        sides = [load_side(args.a), load_side(args.b)]
        factory = _factory(_game_config(args, sides), Path(args.out_dir))
        if not args.alone:
            try:
                return _eval_match(args, factory, sides)
            except NotAMatchError:
                if args.match:
                    raise
        return _eval_alone(args, factory, sides)
    except expected_errors() as e:
        return report_error(e)


def _eval_match(args: argparse.Namespace, factory: Any, sides: list[Any]) -> int:
    """Head to head: A on the first team, B on the second (both orientations with --both-sides)."""
    from unimarl.trainers.run.evaluate import format_match, play_both_sides, play_match

    play = play_both_sides if args.both_sides else play_match
    report = play(
        factory,
        *sides,
        battles=args.battles,
        episodes=args.episodes,
        num_envs=args.num_envs,
        seed=args.seed,
        greedy=args.greedy,
        mean_action_ablation=args.mean_action_ablation or "",
        progress=_progress,
    )
    print(format_match(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


def _eval_alone(args: argparse.Namespace, factory: Any, sides: list[Any]) -> int:
    """Each side plays the game on its own; mean returns per behaviour and their difference."""
    from unimarl.trainers.run.evaluate import format_returns, play_returns, returns_report

    results: dict[str, dict[str, list[float]]] = {}
    for key, side, other in (("A", sides[0], sides[1]), ("B", sides[1], sides[0])):
        label = side.label if side.label not in results else f"{side.label} ({key})"
        results[label] = play_returns(
            factory,
            side,
            episodes=args.episodes,
            num_envs=args.num_envs,
            seed=args.seed,
            greedy=args.greedy,
            group_weights_from=other,
            progress=_progress,
        )
    report = returns_report(results)
    report.update(episodes=args.episodes, greedy=args.greedy)
    print(format_returns(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0
