"""The ``unimarl`` command: ``unimarl train CONFIG.yaml [flags]``, ``unimarl sim NAME [flags]``, and
``unimarl export`` / ``unimarl play`` (:mod:`unimarl.trainers.cli_policies`).

A thin argparse layer: heavy modules (torch, ray, the trainer) are imported only by the sub-command that needs
them, so ``unimarl sim`` starts a stand-in game without importing torch or ray. The console progress line is
printed here; library code only logs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from unimarl.trainers import cli_eval, cli_policies
from unimarl.trainers.cli_common import (
    ENV_HELP,
    EXIT_ERROR,
    add_log_level,
    expected_errors,
    report_error,
    setup_logging,
)


def _train_parser(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train policies on a Unity build, the Unity Editor, a sim game or a PettingZoo env",
        description="Train the behaviours configured in CONFIG.yaml (trainer_type mappo, mfq or mfac); the "
        "flags override the file. Results go to RESULTS_DIR/RUN_ID.",
    )
    p.add_argument("config", help="YAML training config (examples in configs/)")
    p.add_argument("--env", help=ENV_HELP + " (replaces the config's env)")
    p.add_argument("--num-envs", type=int, help="environments per rollout worker (env.num_envs)")
    p.add_argument("--num-workers", type=int, help="rollout workers (run.num_workers); more than 1 uses Ray")
    p.add_argument("--run-id", help="run folder name under RESULTS_DIR (run.run_id, default run)")
    p.add_argument("--results-dir", help="folder holding run folders (run.results_dir, default results)")
    p.add_argument("--resume", action="store_true", help="continue the run from its latest checkpoint")
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        help="learner device (run.device, default auto: cuda when available)",
    )
    p.add_argument("--address", help="Ray cluster address (e.g. auto); default: local Ray on loopback")
    p.add_argument("--seed", type=int, help="seed of policies, samplers and games (run.seed, default 0)")
    p.add_argument(
        "--max-steps",
        type=int,
        help="stop after this many env steps, with a checkpoint (overrides max_steps)",
    )
    p.add_argument(
        "--max-seconds", type=float, help="stop after this many seconds, with a checkpoint (run.max_seconds)"
    )
    add_log_level(p, "INFO")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unimarl",
        description="Multi-agent RL for Unity ML-Agents games.",
        epilog="Run 'unimarl COMMAND --help' for a command's flags.",
    )
    sub = parser.add_subparsers(dest="command", metavar="{train,export,play,eval,sim}")
    _train_parser(sub)
    cli_policies.add_parsers(sub)
    cli_eval.add_parser(sub)
    sub.add_parser("sim", help="run a headless stand-in game (unimarl sim NAME --help)", add_help=False)
    return parser


def _apply_flags(config: Any, args: argparse.Namespace) -> None:
    from unimarl.trainers.config import apply_env_flag, validate

    if args.env:
        apply_env_flag(config, args.env)
    overrides = {
        ("env", "num_envs"): args.num_envs,
        ("run", "num_workers"): args.num_workers,
        ("run", "run_id"): args.run_id,
        ("run", "results_dir"): args.results_dir,
        ("run", "device"): args.device,
        ("run", "address"): args.address,
        ("run", "seed"): args.seed,
        ("run", "max_steps"): args.max_steps,
        ("run", "max_seconds"): args.max_seconds,
    }
    for (section, key), value in overrides.items():
        if value is not None:
            setattr(getattr(config, section), key, value)
    if args.resume:
        config.run.resume = True
    validate(config)


class _Progress:
    """One live console line: steps, steps/s, mean return, time left."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()

    def __call__(self, line: dict[str, Any]) -> None:
        returns = [v for k, v in line.items() if k.startswith("return/")]
        mean_return = f"{sum(returns) / len(returns):9.3f}" if returns else "        -"
        left = int(line["time_left_s"])
        text = (
            f"steps {line['env_steps']:>10,}/{line['max_steps']:,}  {line['env_steps_per_s']:8.0f} steps/s  "
            f"return {mean_return}  left {left // 3600:d}:{left // 60 % 60:02d}:{left % 60:02d}"
        )
        print(("\r" + text) if self.tty else text, end="" if self.tty else "\n", flush=True)


def _train(args: argparse.Namespace) -> int:
    from unimarl.trainers.config import load_config
    from unimarl.trainers.train import train

    setup_logging(args.log_level)
    try:
        config = load_config(args.config)
        _apply_flags(config, args)
        if config.env.kind == "editor":
            print(f"Press Play in the Unity Editor (listening on port {config.env.editor_port})", flush=True)
        progress = _Progress()
        result = train(config, on_summary=progress)
    except expected_errors() as e:
        return report_error(e, prefix="\n")
    except KeyboardInterrupt:
        print("\naborted without a final checkpoint", file=sys.stderr)
        return 130
    print(f"\n{result.stopped_by}: {result.env_steps:,} env steps; results in {result.run_dir}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "sim":
        import unimarl.sim

        return int(unimarl.sim.main(argv[1:]) or 0)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train":
        return _train(args)
    if args.command == "eval":
        return cli_eval.run_eval(args)
    if args.command == "export":
        return cli_policies.run_export(args)
    if args.command == "play":
        return cli_policies.run_play(args)
    parser.print_help()
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
