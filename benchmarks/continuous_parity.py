"""Continuous-action parity: what the env receives during deterministic training vs the exported model.

For each case of ``tests/export/test_action_parity.py`` (sim coop_nav ``--continuous``, sim visual with hybrid
actions, a PettingZoo env with ``Box([-2, 0, 0.5], [6, 0.5, inf])``) it collects a short deterministic
rollout, exports the policy with training's export path, runs the ONNX model with onnxruntime on the
observations the trainer saw and prints max / mean ``|received - model|`` per action value. ``--before``
reproduces the rules this project used until the mapping was shared (training: ``clip(a, low, high)``;
export: ``clip(a, -3, 3) / 3`` whatever the Box), by patching the two functions that now hold the rule.

    .venv/bin/python benchmarks/continuous_parity.py [--before]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from unimarl import sim
from unimarl.trainers.core.action_map import ActionBounds
from unimarl.trainers.envs import factory as envs
from unimarl.trainers.export import onnx as onnx_export

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "export"))
import test_action_parity as cases

Pair = tuple[np.ndarray, np.ndarray]


def _old_rules() -> None:
    """Patch in the rules before the shared mapping (training clipped to the Box, export divided by 3)."""

    def old_env(raw: np.ndarray, bounds: ActionBounds | None = None) -> np.ndarray:
        low, high = (-1.0, 1.0) if bounds is None else (np.asarray(bounds.low), np.asarray(bounds.high))
        return np.clip(np.asarray(raw, np.float32), low, high).astype(np.float32)

    def old_torch(raw: torch.Tensor, bounds: ActionBounds | None = None) -> torch.Tensor:
        return torch.clamp(raw, -3.0, 3.0) / 3.0

    envs.to_env = old_env  # type: ignore[assignment]
    onnx_export.to_env_torch = old_torch  # type: ignore[assignment]


def _unity(game: str, args: tuple[str, ...], behavior: str) -> Pair:
    tmp = Path(tempfile.mkdtemp(prefix="parity-"))
    record = tmp / "record.jsonl"
    build = sim.make_build(game, tmp / "build", extra_args=(*args, "--record", str(record)))
    holder: list[cases.RecordingUnityEnv] = []

    def factory(worker_index: int, env_index: int, seed: int) -> cases.RecordingUnityEnv:
        holder.append(cases.RecordingUnityEnv(build, seed=seed, timeout=30, log_dir=tmp / "logs"))
        return holder[-1]

    _, manifest, models = cases._train_deterministic(factory, tmp / "run", horizon=30)
    obs, continuous, _ = cases._unity_pairs(record, holder[0].history, behavior)
    out = cases._model_outputs(models[behavior], cases._feed(obs, manifest[behavior]))
    return continuous, out["deterministic_continuous_actions"]


def _pettingzoo() -> Pair:
    env = cases.BoundedEnv()
    _, _, models = cases._train_deterministic(
        lambda w, i, s: env, Path(tempfile.mkdtemp(prefix="parity-")), horizon=25
    )
    obs = np.stack([o for o, _ in env.received])
    received = np.stack([a for _, a in env.received])
    return received, cases._model_outputs(models["agent"], {"obs_0": obs})["deterministic_continuous_actions"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", action="store_true", help="reproduce the rules before the shared mapping")
    args = parser.parse_args()
    if args.before:
        _old_rules()
    runs: list[tuple[str, Callable[[], Pair]]] = [
        ("sim coop_nav --continuous", lambda: _unity("coop_nav", ("--continuous",), "CoopNav?team=0")),
        ("sim visual (hybrid)", lambda: _unity("visual", ("--size", "20", "--agents", "3"), "Visual?team=0")),
        ("PettingZoo Box[-2,6]x[0,0.5]x[0.5,inf)", _pettingzoo),
    ]
    print(f"rules: {'before (clip to Box / export /3)' if args.before else 'shared mapping'}")
    for name, run in runs:
        received, model = run()
        error = np.abs(received - model)
        print(
            f"{name:<40} values {error.size:4d}  max |env - onnx| {error.max():.3g}  mean {error.mean():.3g}"
        )


if __name__ == "__main__":
    main()
