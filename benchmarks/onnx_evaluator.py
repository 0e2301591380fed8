"""Time per decision of the plug-in's C# evaluator (Mono) vs onnxruntime, same model, same run.

Two models: ``mlp``, a typical exported actor (32 observations, two hidden layers of 64 with LayerNorm and
tanh, one discrete branch of 5); ``conv``, a battle-sized MF-Q self-play opponent (the battle sim's 13x13x5
local view plus its vectors, the mean-field learners' default ``encoder: conv``: two 3x3 convs of 32 channels,
256 dense units, head [128, 64], 21 actions, ``mean_action`` input). Both runtimes run the full contract graph
(sampled and deterministic outputs) at batch 1 and 64 on one thread. Needs ``mcs`` and ``mono``
(``apt-get install -y mono-mcs``).

    .venv/bin/python benchmarks/onnx_evaluator.py [--iterations 2000] [--models mlp,conv]
"""

from __future__ import annotations

import argparse
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from unimarl.bridge.spec import ActionSpec
from unimarl.trainers.algos.mappo.networks import Actor
from unimarl.trainers.algos.meanfield.learners import MeanFieldHyperparameters, make_learner
from unimarl.trainers.core.batch import PolicySpec
from unimarl.trainers.export.meanfield import policy_model
from unimarl.trainers.export.onnx import contract_obs_shape, export_actor
from unimarl.trainers.export.policies import infer_visual_layout

PLUGIN = Path(__file__).resolve().parents[1] / "unity_project" / "Packages" / "com.unimarl.plugin"
TIMEOUT_S = 300


def build(out: Path) -> Path:
    """Compile the core and the driver into ``out``; return the driver executable."""
    core, exe = out / "Unimarl.Core.dll", out / "driver.exe"
    sources = sorted(str(p) for p in (PLUGIN / "Runtime" / "Core").glob("*.cs"))
    for args in (
        ["-target:library", "-optimize+", f"-out:{core}", *sources],
        ["-optimize+", f"-out:{exe}", f"-r:{core}", str(PLUGIN / "Tests~" / "CoreTestDriver.cs")],
    ):
        subprocess.run(["mcs", *args], check=True, timeout=TIMEOUT_S)
    return exe


def write_inputs(path: Path, feed: dict[str, np.ndarray]) -> None:
    """The driver's tensor file format (see CoreTestDriver.cs); float32 tensors only."""
    out = [struct.pack("<i", len(feed))]
    for name, array in feed.items():
        encoded = name.encode()
        out.append(struct.pack(f"<i{len(encoded)}sii", len(encoded), encoded, 1, array.ndim))
        out.append(struct.pack(f"<{array.ndim}i", *array.shape) + array.astype("<f4").tobytes())
    path.write_bytes(b"".join(out))


def time_onnxruntime(model: Path, feed: dict[str, np.ndarray], iterations: int) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    for _ in range(min(iterations, 20)):
        session.run(None, feed)
    started = time.perf_counter()
    for _ in range(iterations):
        session.run(None, feed)
    return (time.perf_counter() - started) / iterations


def time_mono(exe: Path, model: Path, inputs: Path, iterations: int) -> float:
    done = subprocess.run(
        ["mono", str(exe), "bench", str(model), str(inputs), str(iterations)],
        capture_output=True,
        text=True,
        check=True,
        timeout=TIMEOUT_S,
    )
    return float(done.stdout.split()[-1])


def mlp_model(path: Path) -> tuple[PolicySpec, int, str]:
    """The MLP actor; returns its spec, mean-action width (0) and a description."""
    spec = PolicySpec(((32,),), ActionSpec(0, (5,)))
    torch.manual_seed(0)
    actor = Actor(spec, hidden_sizes=(64, 64), activation="tanh", layer_norm=True).eval()
    export_actor(actor, spec, path)
    return spec, 0, "mlp: obs 32, 2x64 LayerNorm+tanh, discrete 5"


def conv_model(path: Path) -> tuple[PolicySpec, int, str]:
    """The battle-sized MF-Q conv policy (default mean-field network sizes)."""
    spec = PolicySpec(((13, 13, 5), (4,), (2,)), ActionSpec(0, (21,)))
    torch.manual_seed(0)
    policy_model(make_learner("mfq", spec, MeanFieldHyperparameters(encoder="conv")), path)
    return (
        spec,
        21,
        "conv: view 13x13x5 + 4 + 2, Conv 3x3 x32 x2, 256, head [128, 64], 21 actions, mean_action",
    )


MODELS = {"mlp": mlp_model, "conv": conv_model}


def feed_for(spec: PolicySpec, mean_action: int, batch: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(batch)
    layout = infer_visual_layout(spec.obs_shapes)
    feed = {
        f"obs_{i}": rng.normal(size=(batch, *contract_obs_shape(s, layout))).astype(np.float32)
        for i, s in enumerate(spec.obs_shapes)
    }
    feed["action_masks"] = np.ones((batch, spec.mask_size), np.float32)
    if mean_action:
        feed["mean_action"] = np.full((batch, mean_action), 1.0 / mean_action, np.float32)
    return feed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--models", default="mlp,conv", help="comma-separated subset of " + ",".join(MODELS))
    args = parser.parse_args(argv)
    if shutil.which("mcs") is None or shutil.which("mono") is None:
        print("mcs/mono not found: apt-get install -y mono-mcs", file=sys.stderr)
        return 1
    names = args.models.split(",")
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        print(f"unknown --models {unknown}: choose from {sorted(MODELS)}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        exe = build(work)
        print(f"{args.iterations} runs each, 1 thread; baseline: onnxruntime on the same model in this run")
        print(f"{'model':>5} {'batch':>5} {'onnxruntime us':>15} {'C# (Mono) us':>13} {'C#/ort':>7}")
        for name in names:
            model = work / f"{name}.onnx"
            spec, mean_action, description = MODELS[name](model)
            print(description)
            for batch in (1, 64):
                feed = feed_for(spec, mean_action, batch)
                inputs = work / f"{name}_inputs_{batch}.bin"
                write_inputs(inputs, feed)
                ort_s = time_onnxruntime(model, feed, args.iterations)
                mono_s = time_mono(exe, model, inputs, args.iterations)
                print(
                    f"{name:>5} {batch:>5} {ort_s * 1e6:>15.1f} {mono_s * 1e6:>13.1f} {mono_s / ort_s:>7.1f}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
