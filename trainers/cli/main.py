"""The ``unimarl`` command: ``unimarl train CONFIG.yaml [flags]``, ``unimarl sim NAME [flags]``, and
``unimarl export`` / ``unimarl play`` (:mod:`unimarl.trainers.cli.policies`).

A thin argparse layer: heavy modules (torch, ray, the trainer) are imported only by the sub-command that needs
them, so ``unimarl sim`` starts a stand-in game without importing torch or ray. The console progress line is
printed here; library code only logs.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Sequence
from typing import Any

from unimarl.trainers.cli import eval as cli_eval
from unimarl.trainers.cli import policies as cli_policies
from unimarl.trainers.cli.common import (
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
        description="Train the behaviours configured in CONFIG.yaml (unimarl's spelling, or an "
        "mlagents-learn config.yaml); the flags override the file. Results go to RESULTS_DIR/RUN_ID. "
        "mlagents-learn's flags are accepted with its meaning.",
    )
    p.add_argument("config", help="YAML training config (examples in configs/)")
    p.add_argument("--env", help=ENV_HELP + " (replaces the config's env)")
    p.add_argument(
        "--env-args",
        nargs=argparse.REMAINDER,
        help="every argument after this flag goes to the Unity player or sim game (env.args; replaces the "
        "config's); give it last",
    )
    p.add_argument(
        "--num-envs",
        type=int,
        help="environments per rollout worker (env.num_envs; default by env kind: 32 PettingZoo envs, "
        "4 sim or build games, 1 Editor)",
    )
    p.add_argument(
        "--num-areas", type=int, help="training areas per Unity/sim game (env.num_areas, default 1)"
    )
    p.add_argument(
        "--num-workers",
        type=int,
        help="rollout workers (run.num_workers, default 1); more than 1 uses Ray",
    )
    p.add_argument(
        "--base-port",
        type=int,
        help="accepted for mlagents-learn and ignored: unimarl serves each game on a free port "
        "(the Editor: env.editor_port)",
    )
    p.add_argument("--run-id", help="run folder name under RESULTS_DIR (run.run_id, default run)")
    p.add_argument("--results-dir", help="folder holding run folders (run.results_dir, default results)")
    p.add_argument("--resume", action="store_true", help="continue the run from its latest checkpoint")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace an existing run folder of RUN_ID: its checkpoints, models, metrics and logs are "
        "deleted (run.force; ignored with --resume)",
    )
    p.add_argument(
        "--initialize-from",
        metavar="RUN_ID",
        help="start from the latest checkpoint of run RUN_ID in RESULTS_DIR: its weights, normalisers and "
        "optimiser state, step counters from 0 (run.initialize_from; same behaviours and network settings "
        "needed; ignored with --resume)",
    )
    p.add_argument(
        "--inference",
        action="store_true",
        help="refused: `unimarl train` always trains; run trained policies with "
        "`unimarl play RUN_DIR --env ...`",
    )
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        help="learner device (run.device, default auto: cuda when available)",
    )
    p.add_argument(
        "--torch-device",
        metavar="DEVICE",
        help="mlagents-learn's name of --device: cpu, cuda or auto (cuda:N is refused: pick the GPU with "
        "CUDA_VISIBLE_DEVICES)",
    )
    p.add_argument("--address", help="Ray cluster address (e.g. auto); default: local Ray on loopback")
    p.add_argument(
        "--seed",
        type=int,
        help="seed of policies, samplers and games (run.seed, default 0); -1 draws one, as mlagents-learn "
        "does",
    )
    p.add_argument(
        "--max-steps",
        type=int,
        help="stop after this many env steps, with a checkpoint (overrides max_steps)",
    )
    p.add_argument(
        "--max-seconds", type=float, help="stop after this many seconds, with a checkpoint (run.max_seconds)"
    )
    p.add_argument(
        "--timeout-wait",
        type=float,
        metavar="S",
        help="seconds to wait for a game's next message before failing (env.timeout_s, default 60)",
    )
    p.add_argument(
        "--max-lifetime-restarts",
        type=int,
        metavar="N",
        help="times one game may be relaunched after it exited, crashed or hung (env.max_lifetime_restarts, "
        "default 10; -1: no limit)",
    )
    p.add_argument(
        "--restarts-rate-limit-n",
        type=int,
        metavar="N",
        help="relaunches of one game allowed within --restarts-rate-limit-period-s "
        "(env.restarts_rate_limit_n, default 1; -1: no limit)",
    )
    p.add_argument(
        "--restarts-rate-limit-period-s",
        type=float,
        metavar="S",
        help="the window of --restarts-rate-limit-n in seconds (env.restarts_rate_limit_period_s, "
        "default 60)",
    )
    engine = p.add_argument_group(
        "engine settings",
        "sent to Unity/sim games at start-up (engine_settings; ignored for PettingZoo envs)",
    )
    engine.add_argument("--width", type=int, help="window width in pixels (default 84)")
    engine.add_argument("--height", type=int, help="window height in pixels (default 84)")
    engine.add_argument("--quality-level", type=int, help="Unity quality level (default 5)")
    engine.add_argument("--time-scale", type=float, help="Time.timeScale of the games (default 20)")
    engine.add_argument(
        "--target-frame-rate", type=int, help="Application.targetFrameRate (default -1: unlimited)"
    )
    engine.add_argument("--capture-frame-rate", type=int, help="Time.captureFramerate (default 60)")
    engine.add_argument(
        "--no-graphics",
        action="store_true",
        help="launch builds with -nographics (unimarl's default already; overrides "
        "engine_settings.no_graphics: false)",
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
    """Apply the ``train`` flags over the config file, then check the result."""
    from unimarl.trainers.core.config import apply_env_flag, validate

    _refuse_or_note(args)
    if args.env:
        apply_env_flag(config, args.env)
    overrides = {
        ("env", "num_envs"): args.num_envs,
        ("env", "num_areas"): args.num_areas,
        ("env", "args"): args.env_args,
        ("env", "timeout_s"): args.timeout_wait,
        ("env", "max_lifetime_restarts"): args.max_lifetime_restarts,
        ("env", "restarts_rate_limit_n"): args.restarts_rate_limit_n,
        ("env", "restarts_rate_limit_period_s"): args.restarts_rate_limit_period_s,
        ("run", "num_workers"): args.num_workers,
        ("run", "run_id"): args.run_id,
        ("run", "results_dir"): args.results_dir,
        ("run", "device"): args.device or args.torch_device,
        ("run", "address"): args.address,
        ("run", "seed"): _seed(args.seed),
        ("run", "max_steps"): args.max_steps,
        ("run", "max_seconds"): args.max_seconds,
        ("run", "initialize_from"): args.initialize_from,
        ("engine_settings", "width"): args.width,
        ("engine_settings", "height"): args.height,
        ("engine_settings", "quality_level"): args.quality_level,
        ("engine_settings", "time_scale"): args.time_scale,
        ("engine_settings", "target_frame_rate"): args.target_frame_rate,
        ("engine_settings", "capture_frame_rate"): args.capture_frame_rate,
    }
    for (section, key), value in overrides.items():
        if value is not None:
            setattr(getattr(config, section), key, value)
    if args.resume:
        config.run.resume = True
    if args.force:
        config.run.force = True
    if args.no_graphics:
        config.engine_settings.no_graphics = True
    validate(config)


def _refuse_or_note(args: argparse.Namespace) -> None:
    """mlagents-learn flags unimarl cannot honour: refused with a :class:`ConfigError`, or noted."""
    from unimarl.trainers.core.errors import ConfigError

    if args.inference:
        raise ConfigError(
            "--inference: `unimarl train` always trains; run trained policies without training with "
            "`unimarl play RESULTS_DIR/RUN_ID --env BUILD|sim:NAME` (or a single MODEL.onnx)"
        )
    if args.torch_device is not None:
        if args.device is not None and args.device != args.torch_device:
            raise ConfigError(
                f"--device {args.device} and --torch-device {args.torch_device} disagree; give one of them"
            )
        if args.torch_device not in ("auto", "cpu", "cuda"):
            raise ConfigError(
                f"--torch-device {args.torch_device!r}: unimarl's learner takes cpu, cuda or auto; pick the "
                "GPU with CUDA_VISIBLE_DEVICES (e.g. CUDA_VISIBLE_DEVICES=1 for cuda:1) and pass "
                "--torch-device cuda"
            )
    checks = (
        ("--timeout-wait", args.timeout_wait, args.timeout_wait is None or args.timeout_wait > 0, "> 0"),
        ("--time-scale", args.time_scale, args.time_scale is None or args.time_scale > 0, "> 0"),
        ("--num-areas", args.num_areas, args.num_areas is None or args.num_areas >= 1, ">= 1"),
        (
            "--restarts-rate-limit-period-s",
            args.restarts_rate_limit_period_s,
            args.restarts_rate_limit_period_s is None or args.restarts_rate_limit_period_s > 0,
            "> 0",
        ),
    )
    for flag, value, ok, rule in checks:
        if not ok:
            raise ConfigError(f"{flag} must be {rule}, got {value}")
    for flag, value in (
        ("--max-lifetime-restarts", args.max_lifetime_restarts),
        ("--restarts-rate-limit-n", args.restarts_rate_limit_n),
    ):
        if value is not None and value < -1:
            raise ConfigError(f"{flag} must be >= 0, or -1 for no limit; got {value}")
    if args.base_port is not None:
        print(
            f"note: --base-port {args.base_port} is ignored: unimarl serves each game on a free port "
            "(the Editor: env.editor_port)",
            file=sys.stderr,
        )


def _seed(seed: int | None) -> int | None:
    """``--seed``; -1 draws one in [0, 10000) as mlagents-learn does (config.yaml records it)."""
    if seed != -1:
        return seed
    drawn = random.randrange(10_000)
    print(f"note: --seed -1 drew seed {drawn}", file=sys.stderr)
    return drawn


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
    from unimarl.trainers.core.config import load_config
    from unimarl.trainers.run.train import train

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
