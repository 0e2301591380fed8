"""The ``unimarl export`` and ``unimarl play`` sub-commands (parsers and handlers; see
``trainers/cli/main.py``).

``unimarl export RUN_DIR`` rewrites ``RUN_DIR/onnx/*.onnx`` (and the ``RUN_DIR/<Behavior>.onnx`` copies) from
the run's latest checkpoint and prints one row per policy. ``unimarl play MODEL.onnx|RUN_DIR --env
sim:NAME|BUILD [--episodes N] [--stochastic] [--group-reward-weight W]`` runs the models in Python
(onnxruntime), drives the game's Default agents with their actions and prints the episode returns per
behaviour, group rewards weighted as in the run (:mod:`unimarl.trainers.run.play`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from unimarl.trainers.cli.common import ENV_HELP, add_log_level, expected_errors, report_error, setup_logging


def add_parsers(sub: Any) -> None:
    """Add ``export`` and ``play`` to the ``unimarl`` sub-command parsers."""
    p = sub.add_parser(
        "export",
        help="write the ONNX models of a run from its latest checkpoint",
        description="Write RUN_DIR/onnx/<policy>.onnx (ML-Agents' contract) from the latest checkpoint.",
    )
    p.add_argument("run_dir", help="a run folder, e.g. results/RUN_ID")
    add_log_level(p, "WARNING")
    p = sub.add_parser(
        "play",
        help="drive a game's agents with ONNX policies and report episode returns",
        description="Run MODEL.onnx (or every policy of RUN_DIR) with onnxruntime on the observations of the "
        "game's Default agents, send its deterministic actions, and report the returns of the episodes: own "
        "rewards plus group_reward_weight times Unity group rewards (the run's weight per behaviour; 1.0 for "
        "a .onnx file).",
    )
    p.add_argument("model", help="a .onnx file or a run folder")
    p.add_argument("--env", required=True, help=ENV_HELP)
    p.add_argument("--episodes", type=int, default=10, help="agent episodes to play (default 10)")
    p.add_argument("--behavior", help="play only this behaviour; others act at random (default: all)")
    p.add_argument(
        "--stochastic",
        action="store_true",
        help="sample actions (the model's continuous_actions / discrete_actions)",
    )
    p.add_argument(
        "--group-reward-weight",
        type=float,
        help="weight of Unity group rewards in the returns, for every behaviour (default: the run's "
        "behaviors.<name>.group_reward_weight; 1.0 for a .onnx file)",
    )
    p.add_argument("--seed", type=int, default=0, help="game seed")
    p.add_argument("--max-steps", type=int, default=100_000, help="give up after this many steps")
    p.add_argument("--env-arg", action="append", default=[], help="extra game argument (repeatable)")
    add_log_level(p, "WARNING")


def run_export(args: argparse.Namespace) -> int:
    from unimarl.trainers.run.registry import export_run

    setup_logging(args.log_level)
    try:
        exported = export_run(args.run_dir)
        _copy_behavior_models(Path(args.run_dir), exported)
    except expected_errors() as e:
        return report_error(e)
    print(f"{'policy':<28} {'env steps':>10} {'bytes':>9} {'seconds':>8}  sha256        file")
    for row in exported:
        print(
            f"{row.policy:<28} {row.env_steps:>10,} {row.size_bytes:>9,} {row.export_seconds:>8.2f}  "
            f"{row.sha256[:12]}  {row.path}"
        )
    return 0


def _copy_behavior_models(run_path: Path, exported: list[Any]) -> None:
    """Refresh ``RUN_DIR/<Behavior>.onnx`` from the models just written, for the behaviours the latest
    checkpoint records as trained (checkpoints that record none get no copies)."""
    from unimarl.trainers.export.policies import load_latest_checkpoint
    from unimarl.trainers.run.run_dir import copy_behavior_models

    trained = load_latest_checkpoint(run_path)[1].get("trained_behaviors") or {}
    copy_behavior_models(run_path, trained, {e.policy: e.path for e in exported})


def run_play(args: argparse.Namespace) -> int:
    import numpy as np

    from unimarl.trainers.run.play import play

    setup_logging(args.log_level)
    if args.episodes < 1:
        return report_error(f"--episodes must be >= 1, got {args.episodes}")
    try:
        result = play(
            args.model,
            args.env,
            episodes=args.episodes,
            env_args=args.env_arg,
            behavior=args.behavior,
            seed=args.seed,
            max_steps=args.max_steps,
            stochastic=args.stochastic,
            group_reward_weight=args.group_reward_weight,
        )
    except expected_errors() as e:
        return report_error(e)
    print(f"{'behaviour':<28} {'episodes':>8} {'mean return':>12} {'std':>8} {'group w':>8}  model")
    for behavior, path in sorted(result.models.items()):
        returns = np.asarray(result.returns.get(behavior, []), np.float64)
        mean = f"{returns.mean():12.3f}" if len(returns) else f"{'-':>12}"
        std = f"{returns.std():8.3f}" if len(returns) else f"{'-':>8}"
        weight = result.group_reward_weights.get(behavior, 1.0)
        print(f"{behavior:<28} {len(returns):>8} {mean} {std} {weight:>8.3g}  {path}")
    return 0
