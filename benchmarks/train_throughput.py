"""End-to-end MAPPO training throughput (rollout + learning) against the raw env stepping rate.

For a sim game (through the bridge, launched as a build) and a PettingZoo env, measured in the same run: the
raw rate of ONE env stepped in this process with random actions, then `train()` with 1, 2 and 4 rollout
workers (1 = serial backend, more = Ray actors) for a fixed time each. Prints env steps/s, agent steps/s and
the ratio training / raw. Reference point: RLlib PPO did about 750 env steps/s on a 3-agent, 25-step
navigation task on a 2-core machine; the target here is >= 2,500 env steps/s end to end.

    .venv/bin/python benchmarks/train_throughput.py [--seconds 20] [--workers 1 2 4] [--num-envs 32] [--quick]

Training uses the MAPPO navigation recipe (10 epochs, 1 minibatch, 25-step fragments, lr 7e-4). The
PettingZoo env is ``tests/trainers/nav_env.py`` (3 agents, 25 steps, action masks); the sim game is
``coop_nav`` (3 agents, 25 steps, one area per game process, stepped through the bridge).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from unimarl.trainers.config import config_from_dict
from unimarl.trainers.envs import EnvFactory
from unimarl.trainers.train import train

NAV = str(Path(__file__).resolve().parents[1] / "tests" / "trainers" / "nav_env.py")
RLLIB_REFERENCE = 750.0
TARGET = 2500.0


def _env_section(kind: str, num_envs: int) -> dict[str, Any]:
    if kind == "sim":
        return {"sim": "coop_nav", "num_envs": num_envs}
    return {"pettingzoo": f"{NAV}:make", "kwargs": {"masks": True}, "num_envs": num_envs}


def raw_rate(kind: str, seconds: float, work: Path) -> tuple[float, float]:
    """(env steps/s, agent steps/s) of one env stepped with random actions in this process."""
    config = config_from_dict({"env": _env_section(kind, 1)})
    build = None
    if kind == "sim":
        from unimarl.trainers.envs import make_sim_build

        build = str(make_sim_build(config.env, work))
    env = EnvFactory(config.env, config.engine_settings, {}, str(work), build)(0, 0, 0)
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
    return steps / elapsed, agent_steps / elapsed


def train_rate(kind: str, workers: int, num_envs: int, seconds: float, work: Path) -> tuple[float, float]:
    config = config_from_dict(
        {
            "env": _env_section(kind, num_envs),
            "run": {
                "run_id": f"{kind}-{workers}",
                "results_dir": str(work / "results"),
                "num_workers": workers,
                "max_seconds": seconds,
                "device": "cpu",
            },
            "behaviors": {
                "default": {
                    "hyperparameters": {"epochs": 10, "lr": 7e-4, "critic_lr": 7e-4},
                    "time_horizon": 25,
                    "max_steps": 10**9,
                    "summary_freq": 10**9,
                    "checkpoint_interval": 10**9,
                }
            },
        }
    )
    result = train(config)
    return result.env_steps / result.wall_s, result.agent_steps / result.wall_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per measurement")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--num-envs", type=int, default=32, help="envs per worker (pettingzoo)")
    parser.add_argument("--sim-envs", type=int, default=8, help="game processes per worker (sim)")
    parser.add_argument("--kinds", nargs="+", default=["sim", "pettingzoo"], choices=["sim", "pettingzoo"])
    parser.add_argument("--quick", action="store_true", help="3 s per measurement, 1 and 2 workers")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.workers = 3.0, [1, 2]
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for kind in args.kinds:
            raw_env, raw_agent = raw_rate(kind, args.seconds, work)
            print(
                f"\n{kind}: raw env (1 env, random actions, this process): {raw_env:8.0f} env steps/s "
                f"{raw_agent:8.0f} agent steps/s"
            )
            num_envs = args.sim_envs if kind == "sim" else args.num_envs
            for workers in args.workers:
                env_rate, agent_rate = train_rate(kind, workers, num_envs, args.seconds, work)
                print(
                    f"{kind}: train {workers} worker(s) x {num_envs} envs: {env_rate:8.0f} env steps/s "
                    f"{agent_rate:8.0f} agent steps/s | x{env_rate / raw_env:5.2f} raw, "
                    f"x{env_rate / RLLIB_REFERENCE:5.2f} RLlib reference (750), "
                    f"{'meets' if env_rate >= TARGET else 'below'} target {TARGET:.0f}"
                )


if __name__ == "__main__":
    main()
