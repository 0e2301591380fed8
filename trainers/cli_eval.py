"""``unimarl eval A B``: battles between two mean-field checkpoints, or a checkpoint and a baseline.

Heavy modules are imported only when the command runs; the table is printed here (see
:mod:`unimarl.trainers.evaluate` for what is measured).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from unimarl.trainers.cli_common import expected_errors, report_error, setup_logging


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "eval",
        help="play battles between two mean-field checkpoints (or a checkpoint and a baseline)",
        description="Play N battles: side A drives the first behaviour (sorted), side B the second. A side "
        "is a checkpoint file or run folder (optionally #POLICY), or the baseline random or scripted.",
    )
    p.add_argument("a", help="side A: checkpoint, run folder, random or scripted")
    p.add_argument("b", help="side B: checkpoint, run folder, random or scripted")
    p.add_argument("--config", help="YAML config whose env and environment_parameters are used")
    p.add_argument("--env", help="a Unity player build path, or sim:NAME (default sim:battle)")
    p.add_argument("--battles", type=int, default=50, help="battles to play (default 50)")
    p.add_argument("--num-envs", type=int, default=1, help="games played at once")
    p.add_argument("--greedy", action="store_true", help="argmax actions instead of sampled ones")
    p.add_argument(
        "--both-sides",
        action="store_true",
        help="play --battles with A on each team (2x battles) and report A's combined win rate",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--json", help="also write the report as JSON to this file")
    p.add_argument("--out-dir", default="results/eval", help="folder for game logs (default results/eval)")


def run_eval(args: argparse.Namespace) -> int:
    from unimarl.trainers.config import TrainConfig, apply_env_flag, load_config
    from unimarl.trainers.envs import EnvFactory, make_sim_build
    from unimarl.trainers.evaluate import (
        evaluate,
        evaluate_both_sides,
        format_both_sides,
        format_report,
        load_side,
    )

    setup_logging("WARNING")
    try:
        config = load_config(args.config) if args.config else TrainConfig()
        if args.env or not args.config:
            apply_env_flag(config, args.env or "sim:battle")
        out = Path(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        env = config.env
        build = str(make_sim_build(env, out)) if env.kind == "sim" else None
        factory = EnvFactory(
            env, config.engine_settings, dict(config.environment_parameters), str(out.resolve()), build
        )
        play = evaluate_both_sides if args.both_sides else evaluate
        report = play(
            factory,
            load_side(args.a),
            load_side(args.b),
            battles=args.battles,
            num_envs=args.num_envs,
            seed=args.seed,
            greedy=args.greedy,
        )
    except expected_errors() as e:
        return report_error(e)
    print(format_both_sides(report) if args.both_sides else format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0
