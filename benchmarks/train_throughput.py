"""End-to-end training throughput (rollout + learning) of unimarl's core against baselines in the same run.

One table, every row measured in this process, one after the other, for ``--seconds`` of training each (set-up
excluded; the rate is steady state: from the end of the first iteration to the end of the last complete one,
so start-up and an iteration cut by the time budget do not count):

- ``spread`` (MPE simple_spread from ``mpe2``: 3 agents, 25-step episodes; MAPPO defaults, 64-step horizon,
  15 epochs): the raw env (1 env stepped with random actions), the compact single-file MAPPO
  (``benchmarks/mappo_compact.py``, ``--num-envs`` envs), unimarl with its defaults (nothing set: the env kind
  decides) and unimarl tuned (``--num-envs`` envs per worker, for each of ``--workers``). The ratio column
  of unimarl rows is unimarl / compact MAPPO: the core's overhead over a bare loop.
- ``nav`` (``tests/trainers/nav_env.py``: 3 agents, 25 steps, action masks) and ``sim`` (the ``coop_nav``
  stand-in game through the bridge, one area per game process) with the MAPPO navigation recipe (10 epochs,
  25-step fragments, lr 7e-4): the raw env, unimarl's defaults and each of ``--workers``; ratio: training /
  raw env, and the RLlib reference (PPO, about 750 env steps/s on a 3-agent 25-step navigation task on 2
  cores).
- ``battle`` (MF-Q self-play on the ``battle`` sim game, ``configs/battle_mfq.yaml``'s settings, 64 vs 64):
  agent steps/s of the raw game and of training (defaults, and ``--battle-envs`` games if given).

    .venv/bin/python benchmarks/train_throughput.py                      # every row, 20 s each (~8 min)
    .venv/bin/python benchmarks/train_throughput.py --seconds 10 --json out.json
    .venv/bin/python benchmarks/train_throughput.py --kinds spread --workers 1 --repeat 3

The machine's other load moves single figures by 30% or more: ``--repeat`` runs every row again in later
rounds and prints the medians, and a ratio is taken within a round (its rows ran minutes apart at most).

Before/after: the script also runs against a checkout of the flat ``unimarl.trainers`` layout (before the
subpackages), e.g. with ``PYTHONPATH`` pointing at a folder whose ``unimarl/{bridge,trainers,sim,protos}``
link to that checkout.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

try:
    from unimarl.trainers.core.config import config_from_dict
    from unimarl.trainers.envs.factory import EnvFactory, make_sim_build
    from unimarl.trainers.run.train import train
except ImportError:  # the flat layout of older checkouts (before/after comparisons)
    from unimarl.trainers.config import config_from_dict  # type: ignore[no-redef]
    from unimarl.trainers.envs import EnvFactory, make_sim_build  # type: ignore[no-redef]
    from unimarl.trainers.train import train  # type: ignore[no-redef]

HERE = Path(__file__).resolve().parent
NAV = str(HERE.parent / "tests" / "trainers" / "nav_env.py")
RLLIB_REFERENCE = 750.0
NAV_RECIPE = {"hyperparameters": {"epochs": 10, "lr": 7e-4, "critic_lr": 7e-4}, "time_horizon": 25}
BATTLE: dict[str, Any] = {  # configs/battle_mfq.yaml
    "behaviors": {
        "Battle?team=0": {
            "trainer_type": "mfq",
            "hyperparameters": {
                "neighbourhood": "team",
                "learning_rate": 1.0e-4,
                "gamma": 0.95,
                "batch_size": 64,
                "buffer_capacity": 80000,
                "update_every": 5,
                "gradient_steps": 4,
                "push_every": 16,
            },
            "self_play": {
                "opponent": "Battle?team=1",
                "update": "mix",
                "mix": 0.99,
                "pool_size": 10,
                "sample": "latest",
                "sides": "both",
            },
        }
    },
    "environment_parameters": {"max_steps": 400},
}


def env_section(kind: str, num_envs: int | None) -> dict[str, Any]:
    """The ``env:`` section of ``kind``; ``num_envs`` None leaves the default to unimarl."""
    sections: dict[str, dict[str, Any]] = {
        "spread": {"pettingzoo": "mpe2.simple_spread_v3:parallel_env", "kwargs": {"max_cycles": 25}},
        "nav": {"pettingzoo": f"{NAV}:make", "kwargs": {"masks": True}},
        "sim": {"sim": "coop_nav"},
        "battle": {"sim": "battle"},
    }
    section = sections[kind]
    return section if num_envs is None else {**section, "num_envs": num_envs}


def steady_rate(marks: list[tuple[float, float, float]]) -> tuple[float, float]:
    """(env steps/s, agent steps/s) between the first and the last of ``marks`` (wall s, env, agent steps);
    with fewer than two marks, from the start."""
    if len(marks) < 2:
        marks = [(0.0, 0.0, 0.0), *marks]
    (t0, e0, a0), (t1, e1, a1) = marks[0], marks[-1]
    dt = max(t1 - t0, 1e-9)
    return (e1 - e0) / dt, (a1 - a0) / dt


def raw_rate(kind: str, seconds: float, work: Path) -> dict[str, Any]:
    """One env stepped with random (allowed) actions in this process."""
    config = config_from_dict(
        {
            "env": env_section(kind, 1),
            **({"environment_parameters": BATTLE["environment_parameters"]} if kind == "battle" else {}),
        }
    )
    build = str(make_sim_build(config.env, work)) if config.env.sim else None
    env = EnvFactory(
        config.env, config.engine_settings, dict(config.environment_parameters), str(work), build
    )(0, 0, 0)
    try:
        obs, _ = env.reset(seed=0)
        steps = agent_steps = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            actions = {}
            for agent in env.agents:
                mask = obs[agent]["action_mask"] if isinstance(obs[agent], dict) else None
                actions[agent] = env.action_space(agent).sample(mask=mask)
            obs, *_ = env.step(actions)
            steps += 1
            agent_steps += len(actions)
            if not env.agents:
                obs, _ = env.reset()
        elapsed = time.perf_counter() - start
    finally:
        env.close()
    return {"env_steps_per_s": steps / elapsed, "agent_steps_per_s": agent_steps / elapsed}


def train_rate(
    kind: str, num_envs: int | None, workers: int | None, seconds: float, work: Path, tag: str
) -> dict[str, Any]:
    """unimarl's ``train()`` for ``seconds``; None leaves num_envs / num_workers to unimarl's defaults."""
    run: dict[str, Any] = {
        "run_id": f"{kind}-{tag}",
        "results_dir": str(work / "results"),
        "max_seconds": seconds,
        "device": "cpu",
    }
    if workers is not None:
        run["num_workers"] = workers
    budget = {"max_steps": 10**9, "summary_freq": 1, "checkpoint_interval": 10**9}  # a line per iteration
    if kind == "battle":
        data: dict[str, Any] = {
            **BATTLE,
            "behaviors": {n: {**b, **budget} for n, b in BATTLE["behaviors"].items()},
        }
    else:
        data = {"behaviors": {"default": {**budget, **(NAV_RECIPE if kind in ("nav", "sim") else {})}}}
    config = config_from_dict({**data, "env": env_section(kind, num_envs), "run": run})
    marks: list[tuple[float, float, float]] = []
    started = time.perf_counter()
    result = train(
        config, on_summary=lambda line: marks.append((line["wall_s"], line["env_steps"], line["agent_steps"]))
    )
    total_s = time.perf_counter() - started
    resolved = yaml.safe_load((Path(result.run_dir) / "config.yaml").read_text())
    env_rate, agent_rate = steady_rate(marks[:-1] if len(marks) > 3 else marks)
    return {
        "env_steps_per_s": env_rate,
        "agent_steps_per_s": agent_rate,
        "num_envs": resolved["env"]["num_envs"],
        "num_workers": resolved["run"]["num_workers"],
        "iterations": result.iterations,
        "setup_s": total_s - result.wall_s,
    }


def compact_rate(num_envs: int, seconds: float) -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    import mappo_compact

    marks: list[tuple[float, float, float]] = []
    mappo_compact.train(seconds, num_envs, on_iteration=lambda t, e, a: marks.append((t, e, a)))
    env_rate, agent_rate = steady_rate(marks)
    return {
        "env_steps_per_s": env_rate,
        "agent_steps_per_s": agent_rate,
        "num_envs": num_envs,
        "num_workers": 1,
    }


def measure(args: argparse.Namespace, work: Path, emit: Callable[[dict[str, Any]], None]) -> None:
    for kind in args.kinds:
        if kind == "spread" and importlib.util.find_spec("mpe2") is None:
            print("spread: skipped, MPE's package is not installed (pip install mpe2)", flush=True)
            continue
        raw = raw_rate(kind, args.seconds, work)
        emit({"kind": kind, "row": "raw env (1 env, random actions)", **raw, "num_envs": 1, "num_workers": 1})
        compact = None
        if kind == "spread":
            compact = compact_rate(args.num_envs, args.seconds)
            emit({"kind": kind, "row": "compact MAPPO (mappo_compact.py)", **compact})
        reference = compact if compact is not None else raw
        rows: list[tuple[str, int | None, int | None]] = [("unimarl defaults", None, None)]
        tuned = {
            "spread": args.num_envs,
            "nav": args.num_envs,
            "sim": args.sim_envs,
            "battle": args.battle_envs,
        }
        if tuned[kind] is not None:
            rows += [(f"unimarl {w} worker(s) x {tuned[kind]} envs", tuned[kind], w) for w in args.workers]
        for i, (name, num_envs, workers) in enumerate(rows):
            r = train_rate(kind, num_envs, workers, args.seconds, work, str(i))
            key = "agent_steps_per_s" if kind == "battle" else "env_steps_per_s"
            emit(
                {
                    "kind": kind,
                    "row": name,
                    **r,
                    "ratio": r[key] / reference[key],
                    "ratio_to": "compact MAPPO" if compact is not None else "raw env",
                }
            )


def medians(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (kind, row name): the median of each number over the rounds."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["kind"], row["row"]), []).append(row)
    out = []
    for same in groups.values():
        merged = dict(same[0])
        for key in ("env_steps_per_s", "agent_steps_per_s", "setup_s", "ratio"):
            if key in merged:
                merged[key] = statistics.median(r[key] for r in same)
        out.append(merged)
    return out


def print_row(row: dict[str, Any]) -> None:
    ratio = f"x{row['ratio']:5.2f} {row['ratio_to']}" if "ratio" in row else ""
    if row["kind"] in ("nav", "sim") and "ratio" in row:
        ratio += f", x{row['env_steps_per_s'] / RLLIB_REFERENCE:4.2f} RLlib (750)"
    setup = f"set-up {row['setup_s']:4.1f} s" if "setup_s" in row else ""
    print(
        f"{row['kind']:7s}{row['row']:36s}{row['num_workers']:>3} x{row['num_envs']:>3}"
        f"{row['env_steps_per_s']:10.0f}{row['agent_steps_per_s']:11.0f}  {setup:14s}{ratio}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of each measurement")
    parser.add_argument(
        "--kinds",
        nargs="+",
        default=["spread", "nav", "sim", "battle"],
        choices=["spread", "nav", "sim", "battle"],
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="workers of the tuned rows")
    parser.add_argument("--num-envs", type=int, default=32, help="envs per worker, tuned rows (spread, nav)")
    parser.add_argument("--sim-envs", type=int, default=8, help="game processes per worker, tuned rows (sim)")
    parser.add_argument("--battle-envs", type=int, help="games per worker of a tuned battle row (none: skip)")
    parser.add_argument(
        "--battle-replay-ratio",
        type=float,
        help="MF-Q replay_ratio of the battle rows (0: only the config's update_every/gradient_steps "
        "cadence, as before replay_ratio existed; unset: the default, which learns more per step)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of every row, one after the other; then their medians"
    )
    parser.add_argument("--json", help="also write the rows (and medians) to this file")
    args = parser.parse_args()
    if args.battle_replay_ratio is not None:
        for behavior in BATTLE["behaviors"].values():
            behavior["hyperparameters"]["replay_ratio"] = args.battle_replay_ratio
    logging.basicConfig(level=logging.WARNING)
    rows: list[dict[str, Any]] = []
    header = f"{'':43s}workers x envs  env st/s  agent st/s"
    print(f"{header}  ({args.seconds:.0f} s each, steady state)")
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.repeat):

            def emit(row: dict[str, Any], round_: int = round_) -> None:
                rows.append({**row, "round": round_})
                print_row(row)

            work = Path(tmp) / f"round{round_}"  # a run folder per row and round
            work.mkdir()
            measure(args, work, emit)
    result: dict[str, Any] = {"args": vars(args), "rows": rows}
    if args.repeat > 1:
        result["medians"] = medians(rows)
        print(f"\n{header}  (median of {args.repeat} rounds; ratio: median of each round's ratio)")
        for row in result["medians"]:
            print_row(row)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
