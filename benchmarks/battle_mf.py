"""MF-Q against IQL (and MF-AC against AC) on the battle sim game, trained with the same budget.

Baseline: the independent learner (IQL for MF-Q, plain actor-critic for MF-AC), the same code and settings
with the mean-action input removed. Each learner trains by self-play for the same number of env steps, on
both sides of the game (``self_play.sides: both``: learner and frozen snapshot trade teams after every
battle). Then ``--battles`` battles are played per orientation: the mean-field learner on team 0 against its
baseline on team 1, and sides swapped. Printed: the budget, training throughput in agent steps/s (ratio to
the baseline's), and the mean-field learner's win rate per orientation and combined, with a Wilson interval;
with ``--pairs mfq,mfac`` also MF-AC against MF-Q.
With ``--fairness-battles N``, first the game's own side balance: the scripted baseline against itself, team
0's win rate (0.50 when neither side is favoured; the game is mirror-symmetric, see
:mod:`unimarl.sim.battle`).

    .venv/bin/python benchmarks/battle_mf.py --train-steps 5000 --battles 50 --pairs mfq,mfac \
        --fairness-battles 100 --curve 4 --json results/battle_mf.json

``--baseline-from FILE`` reuses the baseline runs (IQL, AC) of an earlier result file instead of training them
again (every setting they depend on must match and their run folders must still exist); ``--mean-input
centred`` trains MF-Q with ``mean_action_input: centred``.

``--curve N`` also plays the checkpoints at every ``train-steps / N`` env steps against each other and, with
``--json``, draws the learning curve (win rate and kills per battle with 95% intervals) as a PNG beside it.
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
from unimarl.trainers.core.mf_settings import MEAN_INPUTS
from unimarl.trainers.envs.factory import EnvFactory, make_sim_build
from unimarl.trainers.run.evaluate import load_side, play_both_sides, play_match
from unimarl.trainers.run.train import train

PAIRS = {"mfq": (("MF-Q", True), ("IQL", False)), "mfac": (("MF-AC", True), ("AC", False))}


def battle_config(args: argparse.Namespace, trainer: str, mean: bool, run_id: str, results: str) -> dict:
    hp: dict[str, Any] = {"use_mean_action": mean, "learning_rate": args.lr, "tau": args.tau}
    if mean and args.radius is not None:  # the mean action over the neighbours within a radius
        hp.update(neighbourhood="radius", radius=args.radius)
    if mean and trainer == "mfq":
        hp["mean_action_input"] = args.mean_input
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
                # a checkpoint per point of the learning curve (the run keeps the newest 5)
                "checkpoint_interval": max(args.train_steps // args.curve, 1) if args.curve > 1 else 10**9,
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


def play(
    factory: EnvFactory, args: argparse.Namespace, a: Any, b: Any, battles: int | None = None, **kwargs: Any
) -> dict[str, Any]:
    """``battles`` (default ``--battles``) battles per orientation of side ``a`` against side ``b``."""
    return play_both_sides(
        factory,
        a,
        b,
        battles=args.battles if battles is None else battles,
        num_envs=max(args.num_envs, 2),
        seed=args.seed,
        **kwargs,
    )


def side_balance(factory: EnvFactory, args: argparse.Namespace) -> dict[str, Any]:
    """The scripted baseline against itself: team 0's win rate shows whether the game favours a side."""
    scripted = load_side("scripted")
    report = play_match(
        factory,
        scripted,
        scripted,
        battles=args.fairness_battles,
        num_envs=max(args.num_envs, 2),
        seed=args.seed,
    )
    team0 = report["sides"][report["labels"][0]]
    assert team0["behaviors"] == ["Battle?team=0"], team0["behaviors"]  # side A drives the first behaviour
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
    p.add_argument(
        "--tau",
        type=float,
        default=0.005,
        help="target network update rate after every gradient step (mlii/mfrl's battle code: 0.99)",
    )
    p.add_argument("--backend", default="serial", choices=("serial", "ray"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--fairness-battles", type=int, default=0, help="first play scripted vs scripted this often (0: skip)"
    )
    p.add_argument(
        "--curve",
        type=int,
        default=1,
        help="points of the learning curve (2-5): checkpoints at every train-steps/N, each pair played "
        "--curve-battles times per orientation; with --json a PNG is written next to it",
    )
    p.add_argument(
        "--curve-battles", type=int, default=20, help="battles per orientation at each curve point"
    )
    p.add_argument(
        "--radius",
        type=float,
        help="mean field over the agents within this distance instead of the whole team (battle's position "
        "sensor: cells / (grid - 1))",
    )
    p.add_argument(
        "--ablations",
        default="",
        help="comma-separated: zero, shuffle: also play the trained mean-field policy with its mean action "
        "zeroed or shuffled between agents at evaluation (--battles per orientation each)",
    )
    p.add_argument(
        "--mean-input",
        default="probabilities",
        choices=MEAN_INPUTS,
        help="MF-Q's mean_action_input: the mean action as it is (the reference) or n_actions * mean - 1",
    )
    p.add_argument(
        "--baseline-from",
        help="a JSON this script wrote: reuse its baseline runs (IQL, AC) instead of training them again; "
        "every setting the baselines depend on must match",
    )
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    if not 1 <= args.curve <= 5:
        p.error(f"--curve takes 1 to 5 points (the run keeps its newest 5 checkpoints), got {args.curve}")
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
        f"mean field over {'the team' if args.radius is None else f'radius {args.radius}'}; "
        f"{args.team_size} vs {args.team_size}, grid {args.grid}, view {args.view}, battles of <= "
        f"{args.battle_steps} steps, {args.num_envs} envs, {args.backend} backend); "
        f"{args.battles} battles per orientation"
    )
    out: dict[str, Any] = {"args": vars(args)}
    reused = baseline_results(args, p) if args.baseline_from else None
    if args.fairness_battles:
        out["fairness"] = side_balance(factory, args)
    for trainer in args.pairs.split(","):
        (mf, _), (base, _) = PAIRS[trainer]
        runs = {
            name: {**reused[trainer]["train"][name], "reused_from": args.baseline_from}
            if reused and not mean
            else train_one(args, trainer, name, mean, results)
            for name, mean in PAIRS[trainer]
        }
        for name, run in runs.items():
            ratio = run["agent_steps_per_s"] / runs[base]["agent_steps_per_s"]
            earlier = runs[base].get("reused_from")  # then the baseline's speed is not of this run
            print(
                f"train {name:5s}: {run['agent_steps']:,} agent steps in {run['wall_s']:.0f} s -> "
                f"{run['agent_steps_per_s']:.0f} agent steps/s ({ratio:.2f}x baseline {base}"
                + (f", trained in an earlier run: {earlier}" if earlier else "")
                + ")"
            )
        curve = []
        if args.curve > 1:
            for (steps, ckpt_mf), (_, ckpt_base) in list(
                zip(checkpoints(runs[mf]["run_dir"]), checkpoints(runs[base]["run_dir"]), strict=True)
            )[:-1]:
                point = play(
                    factory, args, load_side(str(ckpt_mf)), load_side(str(ckpt_base)), args.curve_battles
                )
                curve.append(curve_point(steps, point))
                print(
                    f"  curve at {steps} env steps: {mf} win rate {point['win_rate']:.2f} over "
                    f"{point['battles']} battles"
                )
        side_mf, side_base = load_side(runs[mf]["run_dir"]), load_side(runs[base]["run_dir"])
        both = play(factory, args, side_mf, side_base)
        curve.append(curve_point(runs[mf]["env_steps"], both))
        lo, hi = both["win_rate_ci"]
        as0, as1 = both["per_orientation"]
        print(
            f"{mf} vs baseline {base}: win rate {both['win_rate']:.2f} [{lo:.2f}, {hi:.2f}] over "
            f"{both['battles']} battles ({both['wins']} W / {both['draws']} D / {both['losses']} L); "
            f"as team 0 {as0:.2f}, as team 1 {as1:.2f}; eval {both['agent_steps_per_s']:.0f} agent steps/s"
        )
        ablations = {}
        for ablation in [a for a in args.ablations.split(",") if a]:
            ablated = play(factory, args, side_mf, side_base, mean_action_ablation=ablation)
            lo, hi = ablated["win_rate_ci"]
            print(
                f"  ablation, mean action {ablation} at evaluation: {mf} win rate {ablated['win_rate']:.2f} "
                f"[{lo:.2f}, {hi:.2f}] over {ablated['battles']} battles"
            )
            ablations[ablation] = ablated
        out[trainer] = {"train": runs, "eval": both, "curve": curve, "ablations": ablations}
        if args.json and len(curve) > 1:
            png = Path(args.json).with_name(f"{Path(args.json).stem}_{trainer}.png")
            if plot_curve(curve, mf, base, png):
                print(f"learning curve: {png}")
    if "mfq" in out and "mfac" in out:  # the two mean-field learners against each other
        mfac, mfq = (
            load_side(out[t]["train"][n]["run_dir"]) for t, n in (("mfac", "MF-AC"), ("mfq", "MF-Q"))
        )
        cross = play(factory, args, mfac, mfq)
        lo, hi = cross["win_rate_ci"]
        print(
            f"MF-AC vs MF-Q: win rate {cross['win_rate']:.2f} [{lo:.2f}, {hi:.2f}] over {cross['battles']} "
            f"battles ({cross['wins']} W / {cross['draws']} D / {cross['losses']} L)"
        )
        out["mfac_vs_mfq"] = cross
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))


BASELINE_SETTINGS = (
    "train_steps",
    "sides",
    "team_size",
    "grid",
    "view",
    "battle_steps",
    "num_envs",
    "gradient_steps",
    "lr",
    "tau",
    "backend",
    "seed",
    "curve",
)
"""The arguments a baseline run depends on (the others change only the mean-field learner or evaluation)."""


def baseline_results(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The earlier results whose baseline runs ``--baseline-from`` reuses, checked against ``args``."""
    try:
        earlier = json.loads(Path(args.baseline_from).read_text())
    except (OSError, json.JSONDecodeError) as e:
        parser.error(f"--baseline-from {args.baseline_from}: {e}")
    differ = [k for k in BASELINE_SETTINGS if earlier["args"].get(k) != getattr(args, k)]
    if differ:
        parser.error(
            f"--baseline-from {args.baseline_from} was run with other settings: "
            + ", ".join(f"{k}={earlier['args'].get(k)} (now {getattr(args, k)})" for k in differ)
        )
    for trainer in args.pairs.split(","):
        (_, _), (base, _) = PAIRS[trainer]
        run = (earlier.get(trainer) or {}).get("train", {}).get(base)
        if run is None or not Path(run["run_dir"], "checkpoints").is_dir():
            parser.error(
                f"--baseline-from {args.baseline_from}: no {base} run folder left for pair {trainer}"
            )
        print(f"reusing {base}: {run['run_dir']} ({run['env_steps']} env steps, {run['wall_s']:.0f} s)")
    return earlier


def checkpoints(run_dir: str) -> list[tuple[int, Path]]:
    """(env steps, file) of every checkpoint of a run, oldest first."""
    found = [(int(p.stem.split("-")[1]), p) for p in Path(run_dir, "checkpoints").glob("checkpoint-*.pt")]
    return sorted(found)


def curve_point(steps: int, both: dict[str, Any]) -> dict[str, Any]:
    """One point of the learning curve: the mean-field side's win rate and both sides' kills per battle,
    averaged over the two orientations (each orientation's 95% interval averaged likewise)."""
    first, second = both["orientations"]
    mf = [first["sides"][first["labels"][0]], second["sides"][second["labels"][1]]]
    base = [first["sides"][first["labels"][1]], second["sides"][second["labels"][0]]]

    def kills(sides: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "mean": sum(s["kills_mean"] for s in sides) / 2,
            "ci": [sum(s["kills_ci"][i] for s in sides) / 2 for i in (0, 1)],
        }

    return {
        "env_steps": steps,
        "battles": both["battles"],
        "win_rate": both["win_rate"],
        "win_rate_ci": list(both["win_rate_ci"]),
        "kills_mf": kills(mf),
        "kills_baseline": kills(base),
    }


def plot_curve(curve: list[dict[str, Any]], mf: str, base: str, path: Path) -> bool:
    """Win rate and kills per battle against training env steps, with 95% intervals, as a PNG (needs
    matplotlib: ``pip install -e ".[bench]"``); False when it is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print('learning curve not drawn: matplotlib is missing (pip install -e ".[bench]")')
        return False
    steps = [p["env_steps"] for p in curve]
    fig, (ax_win, ax_kills) = plt.subplots(1, 2, figsize=(10, 4))
    lo = [p["win_rate"] - p["win_rate_ci"][0] for p in curve]
    hi = [p["win_rate_ci"][1] - p["win_rate"] for p in curve]
    ax_win.errorbar(steps, [p["win_rate"] for p in curve], yerr=[lo, hi], marker="o", capsize=3, label=mf)
    ax_win.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="even")
    ax_win.set(xlabel="training env steps (each learner)", ylabel=f"{mf} win rate vs {base}", ylim=(0, 1))
    ax_win.legend()
    for key, label in (("kills_mf", mf), ("kills_baseline", base)):
        mean = [p[key]["mean"] for p in curve]
        err = [
            [m - p[key]["ci"][0] for m, p in zip(mean, curve, strict=True)],
            [p[key]["ci"][1] - m for m, p in zip(mean, curve, strict=True)],
        ]
        ax_kills.errorbar(steps, mean, yerr=err, marker="o", capsize=3, label=label)
    ax_kills.set(xlabel="training env steps (each learner)", ylabel="kills per battle")
    ax_kills.legend()
    fig.suptitle(f"{mf} vs {base} on the battle sim game ({curve[-1]['battles']} battles at the last point)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


if __name__ == "__main__":
    main()
