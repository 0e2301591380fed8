"""Learning per env step: MAPPO (centralised critic) against plain shared-policy PPO, same code and budget.

Both runs use the trainer end to end on the same task, seeds and env-step budget; the only difference is the
critic: MAPPO's sees the agent's own observation plus its teammates' (``network_settings.centralized_critic:
true``, the default), the baseline's sees only the agent's own observation (``false``), which is plain PPO
with one policy shared by all agents. Prints the mean episode return per agent against env steps for both,
and the random-policy return measured with the same metric in the same run (the floor).

    .venv/bin/python benchmarks/mappo_vs_ppo.py [--task pettingzoo|sim] [--steps 60000] [--seeds 0 1]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from unimarl.trainers.core.config import config_from_dict
from unimarl.trainers.envs.factory import EnvFactory, make_sim_build
from unimarl.trainers.run.train import train

NAV = str(Path(__file__).resolve().parents[1] / "tests" / "trainers" / "nav_env.py")


def _env(task: str) -> dict[str, Any]:
    if task == "sim":
        return {"sim": "coop_nav", "num_envs": 4, "num_areas": 8}
    return {"pettingzoo": f"{NAV}:make", "kwargs": {"masks": True}, "num_envs": 32}


def random_return(task: str, episodes: int, work: Path) -> float:
    """Mean episode return per agent of uniformly random (masked) actions: the metric ``return/...``."""
    config = config_from_dict({"env": {**_env(task), "num_envs": 1}})
    build = str(make_sim_build(config.env, work)) if task == "sim" else None
    env = EnvFactory(config.env, config.engine_settings, {}, str(work), build)(0, 0, 0)
    finished: list[float] = []
    running: dict[str, float] = {}
    try:
        obs, _ = env.reset(seed=123)
        while len(finished) < episodes:
            actions = {}
            for agent in env.agents:
                mask = obs[agent]["action_mask"] if isinstance(obs[agent], dict) else None
                actions[agent] = env.action_space(agent).sample(mask=mask)
            obs, rewards, terminations, truncations, infos = env.step(actions)
            for agent, reward in rewards.items():
                # as return/...: own reward + group_reward_weight (default 1.0) x the Unity group reward
                group = float((infos.get(agent) or {}).get("group_reward", 0.0))
                running[agent] = running.get(agent, 0.0) + float(reward) + group
            for agent in [a for a in running if terminations.get(a) or truncations.get(a)]:
                finished.append(running.pop(agent))
            if not env.agents:
                obs, _ = env.reset()
    finally:
        env.close()
    return float(np.mean(finished))


def run(task: str, centralized: bool, seed: int, steps: int, work: Path) -> list[tuple[int, float]]:
    """(env steps, mean return per agent) at every summary of one training run."""
    run_id = f"{task}-{'mappo' if centralized else 'ppo'}-{seed}"
    config = config_from_dict(
        {
            "env": _env(task),
            "run": {"run_id": run_id, "results_dir": str(work), "device": "cpu", "seed": seed},
            "behaviors": {
                "default": {
                    "hyperparameters": {"lr": 7e-4, "critic_lr": 7e-4, "epochs": 10, "num_minibatches": 1},
                    "network_settings": {"centralized_critic": centralized},
                    "time_horizon": 25,
                    "max_steps": steps,
                    "summary_freq": max(steps // 10, 1),
                    "checkpoint_interval": 10 * steps,
                }
            },
        }
    )
    train(config)
    lines = [json.loads(line) for line in (work / run_id / "metrics.jsonl").read_text().splitlines()]
    key = next(k for k in lines[-1] if k.startswith("return/"))
    return [(int(line["env_steps"]), float(line[key])) for line in lines if key in line]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["pettingzoo", "sim"], default="pettingzoo")
    parser.add_argument("--steps", type=int, default=60_000, help="env-step budget per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        floor = random_return(args.task, 300, work)
        curves = {
            name: [run(args.task, centralized, seed, args.steps, work) for seed in args.seeds]
            for name, centralized in (("MAPPO", True), ("PPO", False))
        }
    print(f"\n{args.task}: random policy return per agent: {floor:.2f} (the floor)")
    print(f"mean return per agent over seeds {args.seeds} (higher is better)")
    print(f"{'env steps':>10} {'MAPPO':>9} {'PPO':>9} {'MAPPO-PPO':>10}")
    for k, (step, _) in enumerate(curves["MAPPO"][0]):
        mappo = float(np.mean([c[k][1] for c in curves["MAPPO"]]))
        ppo = float(np.mean([c[k][1] for c in curves["PPO"]]))
        print(f"{step:>10} {mappo:>9.2f} {ppo:>9.2f} {mappo - ppo:>+10.2f}")
    final = {name: float(np.mean([c[-1][1] for c in runs])) for name, runs in curves.items()}
    gain = {name: value - floor for name, value in final.items()}
    ratio = gain["MAPPO"] / gain["PPO"] if gain["PPO"] > 0 else float("inf")
    print(
        f"final: MAPPO {final['MAPPO']:.2f}, PPO {final['PPO']:.2f}; improvement over random: "
        f"MAPPO {gain['MAPPO']:.2f}, PPO {gain['PPO']:.2f} (x{ratio:.2f} of PPO)"
    )


if __name__ == "__main__":
    main()
