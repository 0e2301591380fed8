"""Hot-swap round trip (push to acknowledgement) against a plain step, same game, same run.

A battle sim game is opened over real gRPC with a policy channel: team 0 is *Default* (reported, stepped by
this script with no-op actions), team 1 is ``--inference-behavior`` (as in Unity, not reported to the trainer;
the game runs it from pushed models). A game needs a Default agent that keeps stepping: without one it never
exchanges after the handshake, and a push would never travel. Baseline: one ``step()`` with no side-channel
payload. Measured: ``push()`` of an exported actor for team 1 followed by ``step()`` calls until the game's
acknowledgement is back (the model travels with the step input, is reassembled, hash-checked and loaded with
onnxruntime in the game, and the ack returns with the output). Model sizes: the default network (2 x 64) and a
large one (3 x 512, several 512 KiB chunks). A final series measures steps while team 1 acts from the pushed
model (its onnxruntime call per decision included).

    .venv/bin/python benchmarks/hotswap_roundtrip.py [--repeats 20] [--team-size 16]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from unimarl import sim
from unimarl.bridge.parallel_env import UnityParallelEnv
from unimarl.bridge.policy_channel import PolicyChannel
from unimarl.bridge.spec import ActionSpec
from unimarl.trainers.algos.mappo.networks import Actor
from unimarl.trainers.core.batch import PolicySpec
from unimarl.trainers.export.onnx import export_actor

BEHAVIOR = "Battle?team=1"  # pushed to; run by the game
VIEW = 5
SPEC = PolicySpec(((5, VIEW, VIEW), (2,), (4,)), ActionSpec(0, (21,)))
"""Battle's inputs in ML-Agents' sensor order (LocalView as CHW, position, Status); one 21-way branch."""


def model_bytes(folder: Path, hidden: int, layers: int) -> tuple[bytes, float]:
    actor = Actor(SPEC, [hidden] * layers, "tanh", True).eval()
    report = export_actor(actor, SPEC, folder / f"actor_{hidden}x{layers}.onnx")
    return report.path.read_bytes(), report.export_seconds


def _zero(env: UnityParallelEnv) -> dict[str, int]:
    return {agent: 0 for agent in env.agents}


def time_steps(env: UnityParallelEnv, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        env.step(_zero(env))
        times.append(time.perf_counter() - t0)
    return times


def time_round_trips(
    env: UnityParallelEnv, channel: PolicyChannel, model: bytes, repeats: int
) -> list[float]:
    times = []
    for _ in range(repeats):
        version = (channel.running_versions().get(BEHAVIOR) or 0) + 1
        t0 = time.perf_counter()
        channel.push(BEHAVIOR, version, model)
        for _ in range(10):
            env.step(_zero(env))
            if channel.status()[BEHAVIOR].running_version == version:
                break
        else:
            last = channel.status()[BEHAVIOR].last_ack
            raise RuntimeError(f"no acceptance of v{version} within 10 steps (last acknowledgement: {last})")
        times.append(time.perf_counter() - t0)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--team-size", type=int, default=16, help="agents per team")
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        models = {"2x64": model_bytes(folder, 64, 2), "3x512": model_bytes(folder, 512, 3)}
        channel = PolicyChannel()
        flags = ["--team-size", str(args.team_size), "--grid", "24", "--view", str(VIEW)]
        build = sim.make_build(
            "battle", folder / "build", extra_args=[*flags, "--inference-behavior", BEHAVIOR]
        )
        env = UnityParallelEnv(build, seed=0, timeout=60, side_channels=[channel], log_dir=folder / "logs")
        try:
            env.reset()
            if BEHAVIOR in env.behavior_specs or not env.agents:
                raise RuntimeError(f"expected only Default agents reported, got {sorted(env.behavior_specs)}")
            time_steps(env, 5)  # warm-up
            base = statistics.median(time_steps(env, args.repeats * 5))
            print(f"baseline: plain step (no side-channel payload), median {base * 1e3:.3f} ms")
            print(f"{'model':<8} {'bytes':>10} {'export s':>9} {'push->ack ms':>13} {'x baseline':>11}")
            for name, (model, export_s) in models.items():
                trips = statistics.median(time_round_trips(env, channel, model, args.repeats))
                print(
                    f"{name:<8} {len(model):>10,} {export_s:>9.3f} {trips * 1e3:>13.3f} {trips / base:>11.1f}"
                )
            acting = statistics.median(time_steps(env, args.repeats * 5))
            ratio = acting / base
            print(f"step, game acting from the 3x512 model: {acting * 1e3:.3f} ms ({ratio:.2f}x baseline)")
        finally:
            env.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
