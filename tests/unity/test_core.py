"""The plug-in's engine-free C# core under Mono: ONNX evaluator parity with onnxruntime, policy codec parity
with the Python codec, and compilation of the Unity glue against the API stubs."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from unimarl.bridge.spec import ActionSpec
from unimarl.protos._generated.policy_channel_pb2 import PolicyChunkProto
from unimarl.protos.policy_wire import (
    PolicyAssembler,
    PolicyRejectedError,
    RejectReason,
    decode_ack,
    encode_policy,
)
from unimarl.trainers.algos.mappo.networks import Actor
from unimarl.trainers.core.batch import PolicySpec
from unimarl.trainers.export.onnx import SUPPORTED_OPERATORS, contract_obs_shape, export_actor

from .conftest import PACKAGE_SETS

PLUGIN_CORE = Path(__file__).resolve().parents[2] / "unity_project/Packages/com.unimarl.plugin/Runtime/Core"
SPECS = {
    "discrete": (PolicySpec(((32,),), ActionSpec(0, (5,))), "CHW"),
    "multi_discrete": (PolicySpec(((8,),), ActionSpec(0, (3, 4, 2))), "CHW"),
    "continuous": (PolicySpec(((6,),), ActionSpec(3, ())), "CHW"),
    "hybrid": (PolicySpec(((6,), (2, 5)), ActionSpec(2, (3, 2))), "CHW"),
    "visual_hwc": (PolicySpec(((4,), (5, 6, 2)), ActionSpec(1, (4,))), "HWC"),
}


def _export(name: str, tmp_path: Path) -> tuple[PolicySpec, str, Path]:
    spec, layout = SPECS[name]
    torch.manual_seed(1)
    actor = Actor(spec, hidden_sizes=(64, 64), activation="tanh", layer_norm=True).eval()
    path = tmp_path / f"{name}.onnx"
    export_actor(actor, spec, path, visual_layout=layout)  # type: ignore[arg-type]
    return spec, layout, path


def _feed(spec: PolicySpec, layout: str, batch: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feed = {
        f"obs_{i}": rng.normal(size=(batch, *contract_obs_shape(s, layout))).astype(np.float32) * 2
        for i, s in enumerate(spec.obs_shapes)
    }
    if spec.action_spec.discrete_size:
        mask = (rng.random((batch, spec.mask_size)) < 0.7).astype(np.float32)
        start = 0
        for size in spec.action_spec.discrete_branches:
            mask[:, start] = 1.0  # keep one action allowed per branch
            start += size
        feed["action_masks"] = mask
    return feed


@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("name", sorted(SPECS))
def test_evaluator_matches_onnxruntime(core_driver: Any, tmp_path: Path, name: str, batch: int) -> None:
    spec, layout, path = _export(name, tmp_path)
    feed = _feed(spec, layout, batch, seed=batch)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed), strict=True))
    got = core_driver.eval(path, feed)
    assert sorted(got) == sorted(want)
    for key, expected in want.items():
        assert got[key].shape == expected.shape, key
        if key.startswith("deterministic") or key.endswith(("_shape", "version_number", "memory_size")):
            if expected.dtype == np.int64:
                np.testing.assert_array_equal(got[key], expected, err_msg=key)
            else:
                np.testing.assert_allclose(got[key], expected, atol=1e-4, rtol=0, err_msg=key)
    if spec.action_spec.continuous_size:
        assert np.all(np.abs(got["continuous_actions"]) <= 1.0)
    if spec.action_spec.discrete_size:
        _assert_allowed(spec, got["discrete_actions"], feed["action_masks"])


def _assert_allowed(spec: PolicySpec, actions: np.ndarray, mask: np.ndarray) -> None:
    offsets = np.cumsum((0, *spec.action_spec.discrete_branches[:-1]))
    chosen = mask[np.arange(actions.shape[0])[:, None], offsets[None, :] + actions]
    assert np.all(chosen == 1.0), "a masked action was sampled"


def test_sampling_honours_masks_and_seed(core_driver: Any, tmp_path: Path) -> None:
    spec, layout, path = _export("multi_discrete", tmp_path)
    feed = _feed(spec, layout, 256, seed=5)
    first = core_driver.eval(path, feed, seed=11)
    _assert_allowed(spec, first["discrete_actions"], feed["action_masks"])
    np.testing.assert_array_equal(
        core_driver.eval(path, feed, seed=11)["discrete_actions"], first["discrete_actions"]
    )
    assert (
        len(np.unique(first["discrete_actions"][:, 1])) > 1
    )  # it samples, it does not always pick the argmax


def test_evaluator_refuses_unsupported_operator(core_driver: Any, tmp_path: Path) -> None:
    node = onnx.helper.make_node("Erf", ["obs_0"], ["y"], name="erf0")
    graph = onnx.helper.make_graph(
        [node],
        "g",
        [onnx.helper.make_tensor_value_info("obs_0", onnx.TensorProto.FLOAT, ["batch", 2])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 2])],
    )
    path = tmp_path / "erf.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 15)]), str(path))
    with pytest.raises(
        AssertionError, match="operator 'Erf' \\(node 'erf0'\\) is not in the evaluator's operator set"
    ):
        core_driver.eval(path, {"obs_0": np.zeros((1, 2), np.float32)})


def _with(payload: bytes, **changes: object) -> bytes:
    proto = PolicyChunkProto()
    proto.ParseFromString(payload)
    for key, value in changes.items():
        setattr(proto, key, value)
    return proto.SerializeToString()


MODEL = bytes(range(251)) * 40
SCENARIOS = {
    "whole": lambda p: p,
    "interleaved_newer": lambda p: [p[0], *encode_policy("Runner", 4, MODEL[:3000], 2048), p[1]],
    "bad_wire_type": lambda p: [p[0] + b"\x0f"],
    "bad_utf8_name": lambda p: [b"\x0a\x02\xc3\x28" + p[0]],
    "cut_inside_field": lambda p: [p[0][: len(p[0]) // 2]],
    "cut_between_fields": lambda p: [p[0], p[1], p[2], p[3], _with(p[4], data=b"")],
    "short_hash": lambda p: [_with(p[0], sha256=b"\x01" * 31)],
    "index_outside_count": lambda p: [_with(p[0], chunk_index=9)],
    "more_than_declared": lambda p: [_with(p[0], total_size=100)],
    "count_changes": lambda p: [p[0], _with(p[1], chunk_count=9)],
    "truncated": lambda p: [*p[:4], _with(p[4], data=p[4][:10])],
    "oversized": lambda p: [_with(p[0], total_size=1 << 30), p[1]],
    "hash_mismatch": lambda p: [*p[:4], _with(p[4], data=bytes(len(PolicyChunkProto.FromString(p[4]).data)))],
    "skipped_chunk": lambda p: [p[0], p[2], p[3], p[4]],
    "no_first_chunk": lambda p: [p[1]],
    "duplicate_chunk": lambda p: [p[0], p[1], p[1], p[2]],
    "duplicate_first": lambda p: [p[0], p[0]],
}


def _python_outcomes(max_size: int, payloads: list[bytes]) -> list[str]:
    assembler, outcomes = PolicyAssembler(max_size), []
    for payload in payloads:
        try:
            got = assembler.feed(payload)
        except PolicyRejectedError as e:
            outcomes.append(f"reject {e.reason.name}")
            continue
        outcomes.append("none" if got is None else f"model {got.behavior} {got.version} {got.sha256.hex()}")
    return outcomes


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_codec_agrees_with_python(core_driver: Any, scenario: str) -> None:
    payloads = SCENARIOS[scenario](encode_policy("Runner", 3, MODEL, chunk_size=2048))
    max_size = 1 << 20
    want = _python_outcomes(max_size, payloads)
    lines = core_driver.codec(max_size, payloads)
    names = {r.name.replace("_", "").lower(): r for r in RejectReason}
    got = []
    for line in lines:
        parts = line.split()
        if parts[0] == "reject":
            reason = names[parts[1].lower()]
            ack = decode_ack(bytes.fromhex(parts[2]))
            assert (ack.ok, ack.reason) == (False, reason)
            got.append(f"reject {reason.name}")
        elif parts[0] == "model":
            ack = decode_ack(bytes.fromhex(parts[4]))
            assert ack.ok and ack.reason == RejectReason.ACCEPTED and ack.sha256.hex() == parts[3]
            got.append(" ".join(parts[:4]))
        else:
            got.append(line)
    assert got == want
    assert any(w != "none" for w in want)


def test_codec_reassembles_exported_model(core_driver: Any, tmp_path: Path) -> None:
    _, _, path = _export("discrete", tmp_path)
    model = path.read_bytes()
    lines = core_driver.codec(1 << 26, encode_policy("Striker?team=0", 12, model, chunk_size=4096))
    assert lines[-1].split()[:4] == ["model", "Striker?team=0", "12", hashlib.sha256(model).hexdigest()]
    assert set(lines[:-1]) == {"none"}


@pytest.mark.parametrize("packages", sorted(PACKAGE_SETS))
@pytest.mark.parametrize("editor", [False, True], ids=["player", "editor"])
def test_unity_glue_compiles_against_stubs(core_driver: Any, editor: bool, packages: str) -> None:
    """The glue compiles against ML-Agents 3.0.0 with Sentis, 4.x with the Inference Engine (ModelAsset moved
    to Unity.InferenceEngine) and 3.0.0 patched to the Inference Engine, with the defines Unity sets from the
    asmdef's versionDefines for each."""
    built = core_driver.compile_glue(editor, packages=packages)
    assert built.returncode == 0, built.stdout + built.stderr


@pytest.mark.parametrize("packages", sorted(PACKAGE_SETS))
@pytest.mark.parametrize("editor", [False, True], ids=["player", "editor"])
def test_example_agents_compile_with_the_glue(core_driver: Any, editor: bool, packages: str) -> None:
    """The example agents, and in the Editor the scene builder (Tools > Unimarl > Create Example Scenes),
    compile as their own assemblies with only the references their asmdefs name."""
    built = core_driver.compile_glue(editor=editor, examples=True, packages=packages)
    assert built.returncode == 0, built.stdout + built.stderr


def test_evaluator_operator_set_matches_exporter() -> None:
    source = (PLUGIN_CORE / "OnnxEvaluator.cs").read_text()
    block = source[source.index("Supported = new HashSet<string>") : source.index("};")]
    assert set(re.findall(r'"(\w+)"', block)) == set(SUPPORTED_OPERATORS)
