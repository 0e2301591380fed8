"""``unimarl eval A B``: compare two checkpoints, or a checkpoint and a baseline.

MAPPO runs: each side plays ``--episodes`` agent episodes per behaviour and the mean returns are compared, or,
with ``--match``, the sides play each other on a two-team game (A the first team, B the second) and their
win rates are compared (:mod:`unimarl.trainers.run.evaluate_returns`); the game is the run's own unless
``--config`` / ``--env`` say otherwise. Mean-field runs: battles between the two sides
(:mod:`unimarl.trainers.run.evaluate`). Heavy
modules are imported only when the command runs; the tables are printed here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from unimarl.trainers.cli.common import expected_errors, report_error, setup_logging


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "eval",
        help="compare two checkpoints (or a checkpoint and a baseline): returns or battle win rates",
        description="MAPPO runs: each side plays --episodes agent episodes per behaviour on the game; the "
        "mean returns are reported with bootstrap intervals, and their difference. With --match the sides "
        "play each other on a two-team game (A drives the first team, B the second) and each side's win "
        "rate is reported (an agent episode ending with reward > 0 is won, < 0 lost, 0 drawn: ML-Agents' "
        "self-play reading). Mean-field runs: play N "
        "battles, side A driving the first behaviour (sorted), side B the second. A side is a checkpoint "
        "file or run folder (mean-field: optionally #POLICY), or the baseline random (or scripted, for "
        "battles).",
    )
    p.add_argument("a", help="side A: checkpoint, run folder, random or scripted")
    p.add_argument("b", help="side B: checkpoint, run folder, random or scripted")
    p.add_argument(
        "--config",
        help="YAML config whose env and environment_parameters are used (a curriculum: its last lesson)",
    )
    p.add_argument(
        "--env",
        help="a Unity player build path, or sim:NAME (default: a MAPPO run's own env, else sim:battle)",
    )
    p.add_argument(
        "--episodes",
        type=int,
        default=100,
        help="MAPPO: agent episodes per behaviour and side (with --match: per team) (default 100)",
    )
    p.add_argument(
        "--match",
        action="store_true",
        help="MAPPO: the sides play each other on a two-team game instead of playing it alone",
    )
    p.add_argument("--battles", type=int, default=50, help="mean-field: battles to play (default 50)")
    p.add_argument("--num-envs", type=int, default=1, help="games played at once")
    p.add_argument("--greedy", action="store_true", help="argmax / mean actions instead of sampled ones")
    p.add_argument(
        "--both-sides",
        action="store_true",
        help="head to head (mean-field battles, MAPPO --match): play with A on each team (2x the games) "
        "and report A's combined win rate",
    )
    p.add_argument(
        "--mean-action-ablation",
        choices=("zero", "shuffle"),
        help="mean-field: what MF-Q sides see of their neighbours, zeroed or shuffled between agents (does "
        "the policy use its mean action?)",
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


def run_eval(args: argparse.Namespace) -> int:
    from unimarl.trainers.run.evaluate_returns import load_mappo_side

    setup_logging("WARNING")
    try:
        sides = [load_mappo_side(args.a), load_mappo_side(args.b)]
        if all(s is not None for s in sides) and any(s.state is not None for s in sides if s is not None):
            return _eval_returns(args, [s for s in sides if s is not None])
        return _eval_battles(args)
    except expected_errors() as e:
        return report_error(e)


def _eval_returns(args: argparse.Namespace, sides: list[Any]) -> int:
    """MAPPO: each side plays the game on its own; mean returns per behaviour and their difference."""
    import dataclasses

    from unimarl.trainers.core.config import apply_env_flag, load_config
    from unimarl.trainers.run.evaluate_returns import format_returns, play_episodes, returns_report

    trained = next(s for s in sides if s.state is not None)
    # the random side plays with the trained side's settings (group-reward weights, policy mapping)
    sides = [s if s.state is not None else dataclasses.replace(s, config=trained.config) for s in sides]
    config = load_config(args.config) if args.config else trained.config
    if args.env:
        apply_env_flag(config, args.env)
    factory = _factory(config, Path(args.out_dir))
    if args.match:
        return _eval_match(args, factory, sides)
    results: dict[str, dict[str, list[float]]] = {}
    for key, side in zip(("A", "B"), sides, strict=True):
        label = side.label if side.label not in results else f"{side.label} ({key})"
        results[label] = play_episodes(
            factory, side, episodes=args.episodes, num_envs=args.num_envs, seed=args.seed, greedy=args.greedy
        )
    report = returns_report(results)
    report.update(episodes=args.episodes, greedy=args.greedy)
    print(format_returns(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


def _eval_match(args: argparse.Namespace, factory: Any, sides: list[Any]) -> int:
    """MAPPO head to head: A on the first team, B on the second (both orientations with --both-sides)."""
    from unimarl.trainers.run.evaluate_returns import format_match, play_match, play_match_both_sides

    play = play_match_both_sides if args.both_sides else play_match
    report = play(
        factory,
        *sides,
        episodes=args.episodes,
        num_envs=args.num_envs,
        seed=args.seed,
        greedy=args.greedy,
    )
    print(format_match(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


def _eval_battles(args: argparse.Namespace) -> int:
    """Mean-field: battles between the two sides."""
    from unimarl.trainers.core.config import TrainConfig, apply_env_flag, load_config
    from unimarl.trainers.run.evaluate import (
        evaluate,
        evaluate_both_sides,
        format_both_sides,
        format_report,
        load_side,
    )

    config = load_config(args.config) if args.config else TrainConfig()
    if args.env or not args.config:
        apply_env_flag(config, args.env or "sim:battle")
    play = evaluate_both_sides if args.both_sides else evaluate
    report = play(
        _factory(config, Path(args.out_dir)),
        load_side(args.a),
        load_side(args.b),
        battles=args.battles,
        num_envs=args.num_envs,
        seed=args.seed,
        greedy=args.greedy,
        mean_action_ablation=args.mean_action_ablation or "",
    )
    print(format_both_sides(report) if args.both_sides else format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0
