"""The plug-in's C# Gemm and MatMul under Mono: hand-built graphs match onnxruntime for transpose, alpha, beta
and bias-shape combinations, sizes off the 4 x 4 blocking, constant and fed weights, and a fed value
overriding a weight initializer (which the evaluator pre-transposes at load)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper


def _run_both(core_driver: Any, path: Path, graph: onnx.GraphProto, feed: dict[str, np.ndarray]) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    onnx.save(model, str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (want,) = session.run(None, feed)
    got = core_driver.eval(path, feed)["y"]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-5)


def _tensor(name: str, array: np.ndarray) -> onnx.TensorProto:
    return helper.make_tensor(name, TensorProto.FLOAT, array.shape, array.ravel())


# (m, k, n, transA, transB, alpha, beta, C shape or None, B constant)
GEMM_CASES = [
    (1, 37, 9, 0, 1, 1.0, 1.0, "n", True),
    (7, 13, 6, 0, 1, 1.0, 1.0, "1n", True),
    (9, 20, 11, 0, 0, 1.0, 1.0, "n", True),
    (5, 8, 5, 1, 0, 0.5, 2.0, "mn", True),
    (6, 10, 7, 1, 1, 1.5, 1.0, "m1", False),
    (4, 16, 8, 0, 0, 1.0, 0.5, "scalar", False),
    (3, 5, 4, 0, 1, 1.0, 1.0, None, False),
]


@pytest.mark.parametrize(("m", "k", "n", "ta", "tb", "alpha", "beta", "c_shape", "const_b"), GEMM_CASES)
def test_gemm_matches_onnxruntime(
    core_driver: Any,
    tmp_path: Path,
    m: int,
    k: int,
    n: int,
    ta: int,
    tb: int,
    alpha: float,
    beta: float,
    c_shape: str | None,
    const_b: bool,
) -> None:
    rng = np.random.default_rng(m * 100 + k)
    a = rng.normal(size=(k, m) if ta else (m, k)).astype(np.float32)
    b = rng.normal(size=(n, k) if tb else (k, n)).astype(np.float32)
    shapes = {"n": (n,), "1n": (1, n), "mn": (m, n), "m1": (m, 1), "scalar": ()}
    inputs, initializers, feed = ["a", "b"], [], {"a": a}
    graph_inputs = [helper.make_tensor_value_info("a", TensorProto.FLOAT, a.shape)]
    if const_b:
        initializers.append(_tensor("b", b))
    else:
        feed["b"] = b
        graph_inputs.append(helper.make_tensor_value_info("b", TensorProto.FLOAT, b.shape))
    if c_shape is not None:
        inputs.append("c")
        initializers.append(_tensor("c", rng.normal(size=shapes[c_shape]).astype(np.float32)))
    node = helper.make_node("Gemm", inputs, ["y"], transA=ta, transB=tb, alpha=alpha, beta=beta)
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, (m, n))
    graph = helper.make_graph([node], "gemm", graph_inputs, [output], initializers)
    _run_both(core_driver, tmp_path / "gemm.onnx", graph, feed)


@pytest.mark.parametrize("const_b", [True, False])
def test_matmul_matches_onnxruntime(core_driver: Any, tmp_path: Path, const_b: bool) -> None:
    rng = np.random.default_rng(5)
    a = rng.normal(size=(2, 5, 19)).astype(np.float32)
    b = rng.normal(size=(19, 10)).astype(np.float32)
    graph_inputs = [helper.make_tensor_value_info("a", TensorProto.FLOAT, a.shape)]
    feed = {"a": a}
    if not const_b:
        graph_inputs.append(helper.make_tensor_value_info("b", TensorProto.FLOAT, b.shape))
        feed["b"] = b
    node = helper.make_node("MatMul", ["a", "b"], ["y"])
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, (2, 5, 10))
    initializers = [_tensor("b", b)] if const_b else []
    graph = helper.make_graph([node], "matmul", graph_inputs, [output], initializers)
    _run_both(core_driver, tmp_path / "matmul.onnx", graph, feed)


def test_fed_value_overrides_pretransposed_weight(core_driver: Any, tmp_path: Path) -> None:
    """B is an initializer and also a graph input: a fed B must win over the copy transposed at load."""
    rng = np.random.default_rng(9)
    a = rng.normal(size=(3, 6)).astype(np.float32)
    b_default = rng.normal(size=(6, 4)).astype(np.float32)
    b_fed = rng.normal(size=(6, 4)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["y"])],
        "override",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, a.shape),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, b_fed.shape),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, (3, 4))],
        [_tensor("b", b_default)],
    )
    _run_both(core_driver, tmp_path / "override.onnx", graph, {"a": a, "b": b_fed})
    np.testing.assert_allclose(
        core_driver.eval(tmp_path / "override.onnx", {"a": a})["y"], a @ b_default, atol=1e-4
    )
