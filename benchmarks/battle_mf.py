"""MF-Q against IQL on the battle sim game, trained with the same budget; baseline: IQL.

Both learners train on team 0 by self-play (team 1 driven by a frozen snapshot refreshed after each won
battle) for the same number of env steps, with the same settings except the mean-action input. Then
``--battles`` battles are played MF-Q (team 0) against IQL (team 1). Printed: the budget, training throughput
in agent steps/s (and its ratio to IQL's), and the win rate of MF-Q over IQL with a Wilson interval.

    .venv/bin/python benchmarks/battle_mf.py --train-steps 2000 --battles 50
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

from unimarl.trainers.config import config_from_dict
from unimarl.trainers.envs import EnvFactory, make_sim_build
from unimarl.trainers.evaluate import evaluate, format_report, load_side
from unimarl.trainers.train import train


def battle_config(args: argparse.Namespace, mean: bool, run_id: str, results: str) -> dict:
    return {
        "env": {"sim": "battle", "num_envs": args.num_envs, "args": sim_args(args)},
        "run": {
            "run_id": run_id,
            "results_dir": results,
            "device": "cpu",
            "seed": args.seed,
            "backend": args.backend,
            "max_steps": args.train_steps,
        },
        "behaviors": {
            "Battle?team=0": {
                "trainer_type": "mfq",
                "hyperparameters": {
                    "use_mean_action": mean,
                    "gradient_steps": args.gradient_steps,
                    "learning_rate": args.lr,
                },
                "self_play": {"opponent": "Battle?team=1"},
                "summary_freq": 500,
                "checkpoint_interval": 10**9,
            }
        },
        "environment_parameters": {"max_steps": args.battle_steps},
    }


def sim_args(args: argparse.Namespace) -> list[str]:
    return ["--team-size", str(args.team_size), "--grid", str(args.grid), "--view", str(args.view)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train-steps", type=int, default=2000, help="env steps of training per learner")
    p.add_argument("--battles", type=int, default=50)
    p.add_argument("--team-size", type=int, default=64)
    p.add_argument("--grid", type=int, default=24)
    p.add_argument("--view", type=int, default=13)
    p.add_argument("--battle-steps", type=int, default=100, help="steps before a battle is interrupted")
    p.add_argument("--num-envs", type=int, default=1)
    p.add_argument("--gradient-steps", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--backend", default="serial", choices=("serial", "ray"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    results = tempfile.mkdtemp(prefix="battle_mf_")
    runs = {}
    for name, mean in (("IQL", False), ("MF-Q", True)):
        cfg = config_from_dict(battle_config(args, mean, name.lower().replace("-", ""), results))
        t0 = time.perf_counter()
        r = train(cfg)
        runs[name] = {
            "env_steps": r.env_steps,
            "agent_steps": r.agent_steps,
            "wall_s": time.perf_counter() - t0,
            "agent_steps_per_s": r.agent_steps / max(r.wall_s, 1e-9),
            "run_dir": str(r.run_dir),
        }
    settings = battle_config(args, True, "eval", results)
    from unimarl.trainers.config import EnvSettings

    env = EnvSettings(sim="battle", args=sim_args(args))
    build = make_sim_build(env, Path(results) / "eval")
    factory = EnvFactory(
        env,
        environment_parameters=settings["environment_parameters"],
        run_dir=str(Path(results) / "eval"),
        build_path=str(build),
    )
    side_a, side_b = load_side(runs["MF-Q"]["run_dir"]), load_side(runs["IQL"]["run_dir"])
    report = evaluate(factory, side_a, side_b, battles=args.battles, num_envs=max(args.num_envs, 2))
    mfq = report["sides"][report["labels"][0]]  # side A
    print(
        f"budget: {args.train_steps} env steps of training per learner "
        f"({args.team_size} vs {args.team_size}, grid {args.grid}, view {args.view}, "
        f"battles of <= {args.battle_steps} steps, {args.backend} backend)"
    )
    for name, run in runs.items():
        ratio = run["agent_steps_per_s"] / runs["IQL"]["agent_steps_per_s"]
        print(
            f"train {name:5s}: {run['agent_steps']:,} agent steps in {run['wall_s']:.0f} s -> "
            f"{run['agent_steps_per_s']:.0f} agent steps/s ({ratio:.2f}x baseline IQL)"
        )
    lo, hi = mfq["win_rate_ci"]
    print(
        f"MF-Q (team 0) vs baseline IQL (team 1) over {report['battles']} battles: "
        f"win rate {mfq['win_rate']:.2f} "
        f"[{lo:.2f}, {hi:.2f}] ({mfq['wins']} W / {mfq['draws']} D / {mfq['losses']} L); "
        f"eval {report['agent_steps_per_s']:.0f} agent steps/s"
    )
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "train": runs, "eval": report}, indent=1))


if __name__ == "__main__":
    main()
