"""Visual MAPPO memory: peak RSS and bytes per agent step, new layout against today's, in one run.

A PettingZoo task with ``--agents`` agents on one team, each seeing a ``--height`` x ``--width`` x 3 camera
image (Unity's pixels: ``k / 255`` floats), collects ``--steps`` steps and takes one MAPPO update. Each layout
runs in a fresh process so its peak RSS (``resource.getrusage``) is its own; the figure printed is the peak
minus the process's RSS before collecting.

- baseline "today": what unimarl stored before: float32 images, and every agent's critic row holding a float32
  copy of each teammate's whole observation ([N, K, D]); the critic encodes those copies with a dense layer on
  the flattened image (no conv encoder), the actor flattens the image into its first dense layer.
- "new": the rollout worker and MAPPOPolicy with default settings: images stored as uint8 (lossless for
  ``k / 255``), teammates referenced by row, each observation encoded once by the ``simple`` conv encoder.

The issue's task is ``--height 457 --width 120 --agents 10`` (16 GB resident before, measured in a full
run); the defaults scale the image down 4x per side so the benchmark runs in about 15 s on 2 cores (the full
shape with ``--steps 32`` takes about 40 s and 5 GB for the baseline).

Run: .venv/bin/python benchmarks/visual_memory.py [--height 457 --width 120]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

import numpy as np


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class Cameras:
    """A PettingZoo ParallelEnv: n agents, one camera image each (float32 k / 255), reward 1 per step."""

    metadata = {"name": "cameras_v0"}  # noqa: RUF012

    def __init__(self, agents: int = 10, height: int = 114, width: int = 30) -> None:
        from gymnasium import spaces

        self.possible_agents = [f"cam_{i}" for i in range(agents)]
        self.agents: list[str] = []
        self._space = spaces.Box(0.0, 1.0, (height, width, 3), np.float32)
        self._action = spaces.Discrete(5)
        self._rng = np.random.default_rng(0)

    def observation_space(self, agent: str) -> Any:
        return self._space

    def action_space(self, agent: str) -> Any:
        return self._action

    def _obs(self) -> dict[str, np.ndarray]:
        shape = self._space.shape
        return {
            a: self._rng.integers(0, 256, shape, dtype=np.uint8).astype(np.float32) / np.float32(255)
            for a in self.agents
        }

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        self.agents = list(self.possible_agents)
        return self._obs(), {a: {} for a in self.agents}

    def step(self, actions: dict) -> tuple[dict, dict, dict, dict, dict]:
        no = {a: False for a in self.agents}
        return self._obs(), {a: 1.0 for a in self.agents}, no, dict(no), {a: {} for a in self.agents}

    def close(self) -> None:
        pass


def make(agents: int, height: int, width: int) -> Cameras:
    return Cameras(agents, height, width)


def _new(args: argparse.Namespace) -> dict[str, float]:
    import torch

    from unimarl.trainers.algos.mappo.plan import PolicySetup, WorkerPlan
    from unimarl.trainers.algos.mappo.policy import MAPPOHyperparameters, MAPPOPolicy, NetworkSettings
    from unimarl.trainers.algos.mappo.rollout import RolloutWorker
    from unimarl.trainers.core.config import EnvSettings
    from unimarl.trainers.envs.factory import EnvFactory

    torch.set_num_threads(2)
    kwargs = {"agents": args.agents, "height": args.height, "width": args.width}
    factory = EnvFactory(EnvSettings(pettingzoo=f"{__file__}:make", kwargs=kwargs))
    start = rss_mib()
    worker = RolloutWorker(factory, 1)
    specs = worker.specs()
    hp, net = MAPPOHyperparameters(epochs=1), NetworkSettings()
    worker.configure(WorkerPlan({"cam": PolicySetup(specs["cam"], hp, net)}, {"cam": "cam"}))
    policy = MAPPOPolicy(specs["cam"], hp, net)
    batch = worker.collect({"cam": policy.get_weights()}, args.steps).batches["cam"]
    stored = sum(o.nbytes for o in batch.obs) + sum(
        a.nbytes for a in (batch.critic.team_rows, batch.critic.team_embeddings) if a is not None
    )
    policy.update_obs_normalizer(batch.obs)
    policy.update(batch)
    return {"peak_mib": rss_mib() - start, "bytes_per_agent_step": stored / len(batch)}


def _baseline(args: argparse.Namespace) -> dict[str, float]:
    """Today's layout, rebuilt here: float32 images, teammates' raw observations copied per row, dense
    encoders on the flattened image (the critic: own obs + mean/max over encoded teammate copies)."""
    import torch
    from torch import nn

    torch.set_num_threads(2)
    n_agents, shape = args.agents, (args.height, args.width, 3)
    size = int(np.prod(shape))
    env = Cameras(n_agents, args.height, args.width)
    start = rss_mib()
    obs_steps, team_steps = [], []
    observations, _ = env.reset()
    others = np.array([[j for j in range(n_agents) if j != i] for i in range(n_agents)])
    for _ in range(args.steps):
        flat = np.stack([observations[a] for a in env.agents]).reshape(n_agents, size)
        obs_steps.append(flat)
        team_steps.append(flat[others])  # [agents, K, D]: every teammate's whole observation, copied
        observations = env.step({a: 0 for a in env.agents})[0]
    obs = np.concatenate(obs_steps)
    team = np.concatenate(team_steps)
    stored = obs.nbytes + team.nbytes
    actor = nn.Sequential(nn.Linear(size, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 5))
    team_encoder = nn.Sequential(nn.Linear(size, 64), nn.Tanh())
    trunk = nn.Sequential(nn.Linear(size + 2 * 64 + 1, 64), nn.Tanh(), nn.Linear(64, 1))
    params = [*actor.parameters(), *team_encoder.parameters(), *trunk.parameters()]
    optim = torch.optim.Adam(params)
    own_t, team_t = torch.from_numpy(obs), torch.from_numpy(team)
    encoded = team_encoder(team_t.reshape(-1, size)).reshape(len(obs), n_agents - 1, 64)
    features = torch.cat([own_t, encoded.mean(1), encoded.amax(1), torch.full((len(obs), 1), 2.3)], 1)
    loss = trunk(features).square().mean() + actor(own_t).logsumexp(1).mean()
    optim.zero_grad()
    loss.backward()
    optim.step()
    return {"peak_mib": rss_mib() - start, "bytes_per_agent_step": stored / len(obs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--height", type=int, default=114)
    parser.add_argument("--width", type=int, default=30)
    parser.add_argument("--steps", type=int, default=64, help="steps collected (one time_horizon)")
    parser.add_argument("--layout", choices=("new", "baseline"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.layout:
        started = time.perf_counter()
        result = (_new if args.layout == "new" else _baseline)(args)
        result["seconds"] = time.perf_counter() - started
        sys.stdout.write(json.dumps(result) + "\n")
        return
    shape = f"{args.agents} agents on one team, {args.height}x{args.width}x3 images, {args.steps} steps"
    sys.stdout.write(f"visual MAPPO memory: {shape}\n")
    results = {}
    for layout in ("baseline", "new"):
        argv = [sys.executable, __file__, "--layout", layout, *sys.argv[1:]]
        out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=600).stdout
        results[layout] = json.loads(out.strip().splitlines()[-1])
        r = results[layout]
        sys.stdout.write(
            f"  {layout:<8} peak RSS +{r['peak_mib']:8.1f} MiB   "
            f"{r['bytes_per_agent_step']:12,.0f} bytes/agent step   ({r['seconds']:.1f} s)\n"
        )
    base, new = results["baseline"], results["new"]
    sys.stdout.write(
        f"  ratio baseline/new: peak RSS {base['peak_mib'] / new['peak_mib']:.1f}x, "
        f"bytes per agent step {base['bytes_per_agent_step'] / new['bytes_per_agent_step']:.1f}x\n"
    )


if __name__ == "__main__":
    main()
