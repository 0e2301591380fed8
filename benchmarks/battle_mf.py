"""MF-Q against IQL (and MF-AC against AC) on the battle sim game, trained with the same budget.

Baseline: the independent learner (IQL for MF-Q, plain actor-critic for MF-AC), the same code and settings
with the mean-action input removed. Each learner trains by self-play for the same number of env steps, on
both sides of the game (``self_play.sides: both``: learner and frozen snapshot trade teams after every
battle). Then ``--battles`` battles are played per orientation: the mean-field learner on team 0 against its
baseline on team 1, and sides swapped. Printed: the budget, training throughput in agent steps/s (ratio to
the baseline's), and the mean-field learner's win rate per orientation and combined, with a Wilson interval.
With ``--fairness-battles N``, first the game's own side balance: the scripted baseline against itself, team
0's win rate (0.50 when neither side is favoured; the game is mirror-symmetric, see
:mod:`unimarl.sim.battle`).

    .venv/bin/python benchmarks/battle_mf.py --train-steps 5000 --battles 50 --pairs mfq,mfac \
        --fairness-battles 100
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from unimarl.trainers.core.config import EnvSettings, config_from_dict
from unimarl.trainers.envs.factory import EnvFactory, make_sim_build
from unimarl.trainers.run.evaluate import evaluate, evaluate_both_sides, load_side
from unimarl.trainers.run.train import train

PAIRS = {"mfq": (("MF-Q", True), ("IQL", False)), "mfac": (("MF-AC", True), ("AC", False))}


def battle_config(args: argparse.Namespace, trainer: str, mean: bool, run_id: str, results: str) -> dict:
    hp: dict[str, Any] = {"use_mean_action": mean, "learning_rate": args.lr}
    if trainer == "mfq":
        hp["gradient_steps"] = args.gradient_steps
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
                "trainer_type": trainer,
                "hyperparameters": hp,
                "self_play": {"opponent": "Battle?team=1", "sides": args.sides},
                "summary_freq": 500,
                "checkpoint_interval": 10**9,
            }
        },
        "environment_parameters": {"max_steps": args.battle_steps},
    }


def sim_args(args: argparse.Namespace) -> list[str]:
    return ["--team-size", str(args.team_size), "--grid", str(args.grid), "--view", str(args.view)]


def train_one(args: argparse.Namespace, trainer: str, name: str, mean: bool, results: str) -> dict[str, Any]:
    cfg = config_from_dict(battle_config(args, trainer, mean, name.lower().replace("-", ""), results))
    t0 = time.perf_counter()
    r = train(cfg)
    return {
        "env_steps": r.env_steps,
        "agent_steps": r.agent_steps,
        "wall_s": time.perf_counter() - t0,
        "agent_steps_per_s": r.agent_steps / max(r.wall_s, 1e-9),
        "run_dir": str(r.run_dir),
    }


def side_balance(factory: EnvFactory, args: argparse.Namespace) -> dict[str, Any]:
    """The scripted baseline against itself: team 0's win rate shows whether the game favours a side."""
    scripted = load_side("scripted")
    report = evaluate(
        factory,
        scripted,
        scripted,
        battles=args.fairness_battles,
        num_envs=max(args.num_envs, 2),
        seed=args.seed,
    )
    team0 = report["sides"][report["labels"][0]]
    assert team0["behavior"] == "Battle?team=0", team0["behavior"]  # side A drives the first behaviour
    lo, hi = team0["win_rate_ci"]
    print(
        f"side balance: scripted vs scripted, team 0 win rate {team0['win_rate']:.2f} [{lo:.2f}, {hi:.2f}] "
        f"over {report['battles']} battles ({team0['wins']} W / {team0['draws']} D / {team0['losses']} L; "
        "0.50 = no side favoured)"
    )
    return report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train-steps", type=int, default=2000, help="env steps of training per learner")
    p.add_argument("--battles", type=int, default=50, help="battles per orientation")
    p.add_argument("--pairs", default="mfq", help="comma-separated: mfq (MF-Q vs IQL), mfac (MF-AC vs AC)")
    p.add_argument("--sides", default="both", choices=("both", "own"), help="self_play.sides while training")
    p.add_argument("--team-size", type=int, default=64)
    p.add_argument("--grid", type=int, default=24)
    p.add_argument("--view", type=int, default=13)
    p.add_argument("--battle-steps", type=int, default=100, help="steps before a battle is interrupted")
    p.add_argument("--num-envs", type=int, default=2)
    p.add_argument("--gradient-steps", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--backend", default="serial", choices=("serial", "ray"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--fairness-battles", type=int, default=0, help="first play scripted vs scripted this often (0: skip)"
    )
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    results = tempfile.mkdtemp(prefix="battle_mf_")
    env = EnvSettings(sim="battle", args=sim_args(args))
    build = make_sim_build(env, Path(results) / "eval")
    factory = EnvFactory(
        env,
        environment_parameters={"max_steps": args.battle_steps},
        run_dir=str(Path(results) / "eval"),
        build_path=str(build),
    )
    print(
        f"budget: {args.train_steps} env steps of self-play training per learner (sides: {args.sides}; "
        f"{args.team_size} vs {args.team_size}, grid {args.grid}, view {args.view}, battles of <= "
        f"{args.battle_steps} steps, {args.num_envs} envs, {args.backend} backend); "
        f"{args.battles} battles per orientation"
    )
    out: dict[str, Any] = {"args": vars(args)}
    if args.fairness_battles:
        out["fairness"] = side_balance(factory, args)
    for trainer in args.pairs.split(","):
        (mf, _), (base, _) = PAIRS[trainer]
        runs = {name: train_one(args, trainer, name, mean, results) for name, mean in PAIRS[trainer]}
        for name, run in runs.items():
            ratio = run["agent_steps_per_s"] / runs[base]["agent_steps_per_s"]
            print(
                f"train {name:5s}: {run['agent_steps']:,} agent steps in {run['wall_s']:.0f} s -> "
                f"{run['agent_steps_per_s']:.0f} agent steps/s ({ratio:.2f}x baseline {base})"
            )
        side_mf, side_base = load_side(runs[mf]["run_dir"]), load_side(runs[base]["run_dir"])
        both = evaluate_both_sides(
            factory, side_mf, side_base, battles=args.battles, num_envs=max(args.num_envs, 2), seed=args.seed
        )
        lo, hi = both["win_rate_ci"]
        as0, as1 = both["per_orientation"]
        print(
            f"{mf} vs baseline {base}: win rate {both['win_rate']:.2f} [{lo:.2f}, {hi:.2f}] over "
            f"{both['battles']} battles ({both['wins']} W / {both['draws']} D / {both['losses']} L); "
            f"as team 0 {as0:.2f}, as team 1 {as1:.2f}; eval {both['agent_steps_per_s']:.0f} agent steps/s"
        )
        out[trainer] = {"train": runs, "eval": both}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
