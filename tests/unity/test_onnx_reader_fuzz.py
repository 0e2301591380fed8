"""Fuzzing the plug-in's ONNX reader (and one evaluation on zeros) under Mono with hypothesis.

Inputs are models exported by unimarl (MLP discrete, continuous, Conv, mean-field) mutated at the byte level
(flipped, cut, inserted, deleted bytes) or in their fields (dims, element types, attribute ints and the opset
set to huge or negative values), plus random bytes. Each hypothesis example is a batch seed: the batch's
files are made by ``random.Random(seed)``, every mutation kind in every batch, and run through one Mono
process (tests/unity/OnnxFuzzHarness.cs) under a memory limit and a timeout. Every file must end as ``OK``
or ``TYPED`` (OnnxModelException / ProtoFormatException). ``UNIMARL_FUZZ_EXAMPLES=N`` runs about N files
instead of 200. Inputs that escaped before the reader's fixes are pinned in ``test_regression``.
"""

from __future__ import annotations

import os
import random
import resource
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from unimarl.bridge.spec import ActionSpec
from unimarl.trainers.algos.mappo.networks import Actor
from unimarl.trainers.core.batch import PolicySpec
from unimarl.trainers.export.onnx import export_actor

from .conftest import CORE_SOURCES, mcs
from .test_mean_action import _export as export_mean_action

HARNESS = Path(__file__).resolve().parent / "OnnxFuzzHarness.cs"
#: Files per Mono run; hypothesis examples are batches of this many.
BATCH = 50
#: Files in the default tier; raise it for a longer search (UNIMARL_FUZZ_EXAMPLES=20000).
EXAMPLES = int(os.environ.get("UNIMARL_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=max(1, EXAMPLES // BATCH),
    deadline=None,  # one example is a whole Mono run
    derandomize=True,  # the default tier stays reproducible
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
#: Address space of one Mono run; a model that makes the reader allocate past it fails the run.
MEMORY_LIMIT = 3 << 30
TIMEOUT_S = 120
INTERESTING = [-(2**63), -(2**31), -2, -1, 0, 1, 7, 2**16, 2**31 - 1, 2**31, 2**32 + 3, 2**40, 2**62]
#: Seeds exported by unimarl's exporter; the mean-field seed comes from test_mean_action.
SEEDS = {
    "discrete": PolicySpec(((8,),), ActionSpec(0, (5,))),
    "continuous": PolicySpec(((6,),), ActionSpec(3, ())),
    "conv": PolicySpec(((4,), (3, 12, 12)), ActionSpec(1, (4,))),
}


@pytest.fixture(scope="module")
def harness(core_driver: object, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The harness compiled with the core's sources (core_driver skips the module without Mono)."""
    out = tmp_path_factory.mktemp("onnx_fuzz") / "fuzz.exe"
    built = mcs(["-warnaserror+", f"-out:{out}", *map(str, CORE_SOURCES), str(HARNESS)])
    assert built.returncode == 0, built.stdout + built.stderr
    return out


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("onnx_seeds")
    models = {}
    for name, spec in SEEDS.items():
        torch.manual_seed(1)
        actor = Actor(spec, hidden_sizes=(8, 8), activation="tanh", layer_norm=True).eval()
        export_actor(actor, spec, folder / f"{name}.onnx")
        models[name] = (folder / f"{name}.onnx").read_bytes()
    models["mean_field"] = export_mean_action(folder).read_bytes()
    return models


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_harness(exe: Path, folder: Path, models: list[bytes]) -> list[str]:
    """One Mono run over ``models``; its line per model (OK, TYPED ..., UNTYPED ...)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, model in enumerate(models):
        paths.append(folder / f"{i}.onnx")
        paths[-1].write_bytes(model)
    try:
        done = subprocess.run(
            ["mono", str(exe)],
            input="".join(f"{p}\n" for p in paths),
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
            preexec_fn=_limit_memory,
        )
    except subprocess.TimeoutExpired as e:
        out = e.stdout or b""
        stopped = (out.decode(errors="replace") if isinstance(out, bytes) else out).count("\n")
        raise AssertionError(f"the harness hung on {paths[min(stopped, len(paths) - 1)]}") from e
    # "\n" only: messages quote names from the model, which may hold other characters splitlines() splits on
    lines = done.stdout.split("\n")[:-1]
    if done.returncode != 0 or len(lines) != len(models):
        culprit = paths[min(len(lines), len(paths) - 1)]
        raise AssertionError(f"the harness died ({done.returncode}) on {culprit}: {done.stderr[-2000:]}")
    return lines


def assert_typed(lines: list[str], folder: Path) -> None:
    escapes = [
        f"{folder / f'{i}.onnx'}: {line}"
        for i, line in enumerate(lines)
        if not line.startswith(("OK", "TYPED "))
    ]
    assert not escapes, "\n".join(escapes)
    for line in lines:
        if line.startswith("TYPED"):
            assert len(line.split(": ", 1)[-1]) > 10, line  # the message says something


# ---- mutations -------------------------------------------------------------------------------------------


#: Field mutations: which field of a real model is set to an interesting (huge, negative) value.
FIELDS = (
    "initializer_dim",
    "input_dim",
    "output_dim",
    "data_type",
    "attribute_int",
    "opset",
    "small_constant",
)
#: Values written into small float constants (shape outputs, version numbers, action layouts).
FLOATS = [float("nan"), float("inf"), -1.0, 0.0, 0.5, 1.0, 3.0, 1e9, -1e30]
#: Mutation kinds, taken in turn through a batch so that every kind is in every batch.
KINDS = (*FIELDS, *(f"{field}+bytes" for field in FIELDS), "bytes", "bytes", "random")


def _value(rng: random.Random) -> int:
    return rng.choice(INTERESTING) if rng.random() < 0.7 else rng.randint(-(2**63), 2**63 - 1)


def _field_mutation(rng: random.Random, raw: bytes, field: str) -> bytes:
    model = onnx.load_from_string(raw)
    graph = model.graph
    value = _value(rng)
    if field == "initializer_dim":
        tensor = rng.choice(graph.initializer)
        if tensor.dims and rng.random() < 0.8:
            tensor.dims[rng.randrange(len(tensor.dims))] = value
        else:
            tensor.dims.append(value)
    elif field in ("input_dim", "output_dim"):
        info = rng.choice(graph.input if field == "input_dim" else graph.output)
        dims = info.type.tensor_type.shape.dim
        if dims:
            dims[rng.randrange(len(dims))].dim_value = value
    elif field == "data_type":
        rng.choice(graph.initializer).data_type = max(-(2**31), min(value, 2**31 - 1))
    elif field == "attribute_int":
        ints = (onnx.AttributeProto.INT, onnx.AttributeProto.INTS)
        attribute = rng.choice([a for n in graph.node for a in n.attribute if a.type in ints])
        if attribute.ints:
            attribute.ints[rng.randrange(len(attribute.ints))] = value
        else:
            attribute.i = value
    elif field == "small_constant":
        small = [
            i for i in graph.initializer if i.data_type == TensorProto.FLOAT and 0 < np.prod(i.dims) <= 4
        ]
        tensor = rng.choice(small)
        values = numpy_helper.to_array(tensor).copy()
        values.flat[rng.randrange(values.size)] = rng.choice(FLOATS)
        tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))
    else:
        model.opset_import[0].version = value
    return model.SerializeToString()


def _byte_mutation(rng: random.Random, raw: bytes) -> bytes:
    buf = bytearray(raw)
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice(["flip", "cut", "insert", "delete"] if rng.random() < 0.9 else ["cut"])
        at = rng.randrange(max(len(buf), 1))
        if kind == "flip" and buf:
            buf[at] ^= rng.randint(1, 255)
        elif kind == "cut":
            del buf[at:]
        elif kind == "insert":
            buf[at:at] = rng.randbytes(rng.randint(1, 12))
        else:
            del buf[at : at + rng.randint(1, 16)]
    return bytes(buf)


def _mutant(rng: random.Random, seeds: dict[str, bytes], kind: str) -> bytes:
    if kind == "random":
        return rng.randbytes(rng.randint(0, 512))
    raw = seeds[rng.choice(sorted(seeds))]
    field = kind.split("+")[0]
    if field in FIELDS:
        raw = _field_mutation(rng, raw, field)
    return _byte_mutation(rng, raw) if kind.endswith("bytes") else raw


# ---- escapes found by fuzzing, pinned ---------------------------------------------------------------------


def _graph(
    nodes: list, inputs: dict[str, list], outputs: dict[str, list], inits: tuple = ()
) -> onnx.ModelProto:
    value = helper.make_tensor_value_info
    graph = helper.make_graph(
        nodes,
        "g",
        [value(n, TensorProto.FLOAT, d) for n, d in inputs.items()],
        [value(n, TensorProto.FLOAT, d) for n, d in outputs.items()],
        list(inits),
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])


def _identity(dims: list) -> onnx.ModelProto:
    return _graph([helper.make_node("Identity", ["obs_0"], ["y"])], {"obs_0": dims}, {"y": ["batch", 3]})


def _add(tensor: onnx.TensorProto) -> onnx.ModelProto:
    add = helper.make_node("Add", ["obs_0", tensor.name], ["y"])
    return _graph([add], {"obs_0": ["batch", 3]}, {"y": ["batch", 3]}, (tensor,))


def _initializer(dims: list[int], raw: bytes = b"", floats: tuple[float, ...] = ()) -> onnx.TensorProto:
    tensor = helper.make_tensor("w", TensorProto.FLOAT, [len(floats)], list(floats))
    tensor.dims[:] = dims
    if raw or not floats:
        tensor.raw_data = raw
    return tensor


def _constant(dims: list[int]) -> onnx.ModelProto:
    constant = helper.make_node("Constant", [], ["y"], value=_initializer(dims))
    return _graph([constant], {"obs_0": ["batch", 3]}, {"y": ["batch", 3]})


def _mean_field(input_name: str, dim: int | str) -> Callable[[Path], onnx.ModelProto]:
    """The mean-field seed with one declared dim changed (built lazily: the export needs a folder)."""

    def build(folder: Path) -> onnx.ModelProto:
        model = onnx.load(str(export_mean_action(folder)))
        info = next(i for i in model.graph.input if i.name == input_name)
        if isinstance(dim, str):
            info.type.tensor_type.shape.dim[1].dim_param = dim
        else:
            info.type.tensor_type.shape.dim[1].dim_value = dim
        return model

    return build


def _mean_field_layout(initializer: str, values: list[float]) -> Callable[[Path], onnx.ModelProto]:
    """The mean-field seed with one *_action_output_shape constant replaced by ``values``."""

    def build(folder: Path) -> onnx.ModelProto:
        model = onnx.load(str(export_mean_action(folder)))
        tensor = next(i for i in model.graph.initializer if i.name == initializer)
        tensor.CopyFrom(numpy_helper.from_array(np.array(values, np.float32), initializer))
        return model

    return build


def _multinomial(samples: int) -> onnx.ModelProto:
    node = helper.make_node("Multinomial", ["obs_0"], ["y"], sample_size=samples)
    return _graph([node], {"obs_0": ["batch", 3]}, {"y": ["batch", 3]})


#: name -> (model, a part of the refusal); each ended UNTYPED, or OK with a wrong shape, before the fixes.
REGRESSIONS: dict[str, tuple[bytes | onnx.ModelProto | Callable[[Path], onnx.ModelProto], str]] = {
    # ArgumentException from the Tensor constructor escaped Parse
    "float_data_short": (
        _add(_initializer([3], floats=(1.0, 2.0))),
        "tensor 'w' of dims [3] holds 2 values, expected 3",
    ),
    # dims cast to int wrapped to 0 elements: accepted, an empty [65536, 65536] weight
    "initializer_dims_overflow": (
        _add(_initializer([65536, 65536])),
        "tensor 'w' has dims [65536, 65536], more than",
    ),
    # a negative dim was accepted ([-1, -1] holds "1" element)
    "initializer_dim_negative": (_add(_initializer([-1, -1], raw=bytes(4))), "tensor 'w' has dim 0 = -1"),
    "constant_dims_overflow": (_constant([2**31, 2**31]), "tensor 'w' has dim 0 = 2147483648"),
    # declared input dims: OutOfMemoryException making zeros of that shape, or a negative size accepted
    "input_dim_huge": (_identity(["batch", 2**31 - 1]), "value 'obs_0' has dim 1 = 2147483647"),
    "input_dim_negative": (_identity(["batch", -5]), "value 'obs_0' has dim 1 = -5"),
    # OnnxPolicy ran the mean-field model on zeros of the declared sizes: OutOfMemoryException
    "mean_action_dim_huge": (
        _mean_field("mean_action", 2**31 - 1),
        "value 'mean_action' has dim 1 = 2147483647",
    ),
    "mean_field_obs_dim_huge": (_mean_field("obs_0", 2**30), "value 'obs_0' has dim 1 = 1073741824"),
    # ArgumentException from OnnxPolicy.Batch1: zeros sized with max(1, dim), the feed with the dim itself
    "mean_field_obs_dim_symbolic": (
        _mean_field("obs_0", "width"),
        "input 'obs_0' is declared [?, ?]; a policy input needs",
    ),
    # StackOverflowException: groups nested a million deep, skipped by recursion
    "nested_groups": (b"\x0b" * 1_000_000, "groups nested deeper than 100"),
    # IndexOutOfRangeException reading the continuous size; a negative branch accepted (D = 7 = 2 + 6 - 1)
    "mean_field_continuous_shape_empty": (
        _mean_field_layout("inner.continuous_shape", []),
        "output 'continuous_action_output_shape' holds 0 values",
    ),
    "mean_field_branch_negative": (
        _mean_field_layout("inner.discrete_shape", [6.0, -1.0]),
        "output 'discrete_action_output_shape' holds -1",
    ),
    # KeyNotFoundException from Run
    "output_never_produced": (
        _graph(
            [helper.make_node("Identity", ["obs_0"], ["y"])], {"obs_0": ["batch", 3]}, {"z": ["batch", 3]}
        ),
        "output 'z' is produced by no node, input or initializer",
    ),
    # FormatException from int.Parse while sorting observations
    "observation_name_not_a_number": (
        _graph(
            [helper.make_node("Add", ["obs_0", "obs_x"], ["y"])],
            {"obs_0": ["batch", 3], "obs_x": ["batch", 3]},
            {"y": ["batch", 3]},
        ),
        "input 'obs_x' is not part of ML-Agents' model contract",
    ),
    # a broadcast whose element count wrapped to 0: an empty [65536, 65536] output
    "broadcast_overflow": (
        _graph(
            [helper.make_node("Add", ["a", "b"], ["y"])],
            {"obs_0": ["batch", 3]},
            {"y": ["batch", 3]},
            (
                numpy_helper.from_array(np.zeros((65536, 1), np.float32), "a"),
                numpy_helper.from_array(np.zeros((1, 65536), np.float32), "b"),
            ),
        ),
        "shape [65536, 65536] holds more than",
    ),
    # batch * sample_size allocated unchecked: OutOfMemoryException, for a negative size as for a huge one
    "multinomial_samples_negative": (_multinomial(-3), "has a negative dim"),
    "multinomial_samples_huge": (_multinomial(2**30), "holds more than"),
}


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_regression(harness: Path, tmp_path: Path, name: str) -> None:
    model, refusal = REGRESSIONS[name]
    if callable(model):
        model = model(tmp_path)
    raw = model if isinstance(model, bytes) else model.SerializeToString()
    (line,) = run_harness(harness, tmp_path / "model", [raw])
    assert line.startswith("TYPED OnnxModelException: ") and refusal in line, line


def test_mean_field_observation_of_zero_width_loads(harness: Path, tmp_path: Path) -> None:
    """ArgumentException from OnnxPolicy.Batch1 before: one zero was made for a declared width of 0."""
    model = _mean_field("obs_0", 0)(tmp_path)
    (line,) = run_harness(harness, tmp_path / "model", [model.SerializeToString()])
    assert line.startswith(("OK", "TYPED OnnxModelException: ")), line


def test_seeds_load_and_run(harness: Path, seeds: dict[str, bytes], tmp_path: Path) -> None:
    assert run_harness(harness, tmp_path, list(seeds.values())) == ["OK"] * len(seeds)


@FUZZ
@given(batch_seed=st.integers(0, 2**32 - 1))
def test_mutated_models_load_or_fail_typed(
    harness: Path, seeds: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory, batch_seed: int
) -> None:
    folder = tmp_path_factory.mktemp("fuzz_batch")
    rng = random.Random(batch_seed)
    models = [_mutant(rng, seeds, KINDS[i % len(KINDS)]) for i in range(BATCH)]
    assert_typed(run_harness(harness, folder, models), folder)
