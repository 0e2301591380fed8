"""The plug-in's C# Conv operator under Mono: torch-exported and hand-built Conv graphs match onnxruntime,
mean-field conv policies export and decide as onnxruntime does, and unsupported Conv attributes are refused
when the model is loaded."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from unimarl.bridge.spec import ActionSpec
from unimarl.trainers.algos.meanfield.learners import MeanFieldHyperparameters, make_learner
from unimarl.trainers.core.batch import PolicySpec
from unimarl.trainers.export.meanfield import policy_model
from unimarl.trainers.export.onnx import contract_obs_shape
from unimarl.trainers.export.policies import infer_visual_layout

# (in channels, out channels, kernel, stride, padding, dilation, groups, bias) per layer.
CONV_STACKS: dict[str, list[tuple[Any, ...]]] = {
    "plain": [(3, 8, 3, 1, 0, 1, 1, True), (8, 4, 3, 1, 0, 1, 1, True)],
    "strided_padded": [(3, 6, 3, 2, 1, 1, 1, True), (6, 5, (2, 3), (1, 2), (2, 1), 1, 1, False)],
    "dilated": [(3, 4, 3, 1, 2, 2, 1, False), (4, 4, (3, 2), 2, 0, (1, 3), 1, True)],
    "grouped": [(4, 8, 3, 1, 1, 1, 2, False), (8, 8, 3, 2, 0, 1, 8, True), (8, 6, 1, 1, 0, 1, 2, True)],
}
IN_SHAPE = {"plain": (3, 9, 8), "strided_padded": (3, 11, 10), "dilated": (3, 12, 13), "grouped": (4, 9, 9)}


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8  # what opset 15 shipped with; onnxruntime may not read the newest IR
    onnx.save(model, str(path))
    return path


def _onnxruntime(path: Path, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feed), strict=True))


def _export_stack(name: str, path: Path) -> Path:
    torch.manual_seed(3)
    layers: list[nn.Module] = []
    for c_in, c_out, kernel, stride, padding, dilation, groups, bias in CONV_STACKS[name]:
        layers += [nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation, groups, bias), nn.ReLU()]
    model = nn.Sequential(*layers[:-1]).eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(
            model,
            (torch.randn(2, *IN_SHAPE[name]),),
            str(path),
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
            opset_version=15,
            dynamo=False,
        )
    return path


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("name", sorted(CONV_STACKS))
def test_torch_conv_stacks_match_onnxruntime(core_driver: Any, tmp_path: Path, name: str, batch: int) -> None:
    path = _export_stack(name, tmp_path / f"{name}.onnx")
    assert "Conv" in {n.op_type for n in onnx.load(str(path)).graph.node}
    feed = {"x": np.random.default_rng(batch).normal(size=(batch, *IN_SHAPE[name])).astype(np.float32)}
    want = _onnxruntime(path, feed)["y"]
    got = core_driver.eval(path, feed)["y"]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def _conv_graph(weight: np.ndarray, bias: bool, **attributes: Any) -> onnx.GraphProto:
    inputs = ["x", "w", "b"] if bias else ["x", "w"]
    initializers = [helper.make_tensor("w", TensorProto.FLOAT, weight.shape, weight.ravel())]
    if bias:
        initializers.append(
            helper.make_tensor("b", TensorProto.FLOAT, [weight.shape[0]], np.arange(weight.shape[0]))
        )
    node = helper.make_node("Conv", inputs, ["y"], name="conv0", **attributes)
    return helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", None, None, None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializers,
    )


@pytest.mark.parametrize(
    "attributes",
    [
        {"auto_pad": "SAME_UPPER", "strides": [2, 3]},
        {"auto_pad": "SAME_LOWER", "strides": [2, 2], "kernel_shape": [2, 4]},
        {"auto_pad": "SAME_UPPER", "kernel_shape": [2, 4]},
        {"auto_pad": "VALID", "strides": [1, 2], "group": 2},
        {"pads": [0, 2, 1, 3], "strides": [3, 1]},  # asymmetric explicit pads, beyond the kernel's reach
    ],
    ids=["same_upper", "same_lower_even_kernel", "same_even_kernel", "valid_grouped", "asymmetric_pads"],
)
def test_padding_modes_match_onnxruntime(
    core_driver: Any, tmp_path: Path, attributes: dict[str, Any]
) -> None:
    rng = np.random.default_rng(5)
    group = attributes.get("group", 1)
    kernel = attributes.get("kernel_shape", [3, 3])
    weight = rng.normal(size=(6, 4 // group, *kernel)).astype(np.float32)
    path = _save(_conv_graph(weight, bias=group == 1, **attributes), tmp_path / "conv.onnx")
    feed = {"x": rng.normal(size=(2, 4, 7, 10)).astype(np.float32)}
    want = _onnxruntime(path, feed)["y"]
    got = core_driver.eval(path, feed)["y"]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("weight_shape", "attributes", "message"),
    [
        ((4, 2, 3), {}, r"has a weight of shape \[4, 2, 3\].*2-D convolutions only"),
        ((4, 2, 3, 3), {"kernel_shape": [3, 3, 3]}, "has kernel_shape of length 3"),
        ((4, 2, 3, 3), {"group": 0}, "has group 0; group must be at least 1"),
        ((3, 1, 3, 3), {"group": 2}, "has 3 output channels, not a multiple of group 2"),
        ((4, 2, 3, 3), {"strides": [0, 1]}, "has strides value 0; each must be at least 1"),
        ((4, 2, 3, 3), {"auto_pad": "SAME"}, "has auto_pad 'SAME'; the evaluator supports NOTSET"),
        ((4, 2, 3, 3), {"auto_pad": "VALID", "pads": [1, 1, 1, 1]}, "gives both pads and auto_pad VALID"),
    ],
    ids=["conv1d", "conv3d_kernel", "group_0", "group_mismatch", "stride_0", "auto_pad", "pads_and_auto_pad"],
)
def test_unsupported_conv_attributes_are_refused_at_load(
    core_driver: Any, tmp_path: Path, weight_shape: tuple[int, ...], attributes: dict[str, Any], message: str
) -> None:
    weight = np.zeros(weight_shape, np.float32)
    graph = _conv_graph(weight, bias=False, **attributes)
    path = _save(graph, tmp_path / "bad.onnx")
    with pytest.raises(AssertionError, match=f"model error: Conv node 'conv0' {message}"):
        core_driver.eval(path, {"x": np.zeros((1, 2, 5, 5), np.float32)})


def _policy_feed(rng: np.random.Generator, spec: PolicySpec, batch: int, mean: bool) -> dict[str, np.ndarray]:
    layout = infer_visual_layout(spec.obs_shapes)
    feed = {
        f"obs_{i}": rng.normal(size=(batch, *contract_obs_shape(s, layout))).astype(np.float32) * 3
        for i, s in enumerate(spec.obs_shapes)
    }
    feed["action_masks"] = (rng.random((batch, spec.mask_size)) < 0.8).astype(np.float32)
    feed["action_masks"][:, 0] = 1.0  # one allowed action at least
    if mean:
        feed["mean_action"] = rng.dirichlet(np.ones(spec.mask_size), size=batch).astype(np.float32)
    return feed


@pytest.mark.parametrize("obs_shape", [(7, 7, 3), (3, 7, 6)], ids=["hwc", "chw"])
@pytest.mark.parametrize("kind", ["mfq", "mfac"])
def test_conv_policy_acts_like_onnxruntime(
    core_driver: Any, tmp_path: Path, kind: str, obs_shape: tuple[int, ...]
) -> None:
    spec = PolicySpec(obs_shapes=(obs_shape, (3,)), action_spec=ActionSpec(discrete_branches=(5,)))
    hp = MeanFieldHyperparameters(encoder="conv", conv_channels=[6, 4], visual_hidden=16, head_hidden=[16])
    torch.manual_seed(0)
    path = tmp_path / f"{kind}.onnx"
    policy_model(make_learner(kind, spec, hp), path)  # raised ExportError before the evaluator had Conv
    assert sum(n.op_type == "Conv" for n in onnx.load(str(path)).graph.node) == 2
    rng = np.random.default_rng(7)
    feed = _policy_feed(rng, spec, batch=16, mean=kind == "mfq")
    want = _onnxruntime(path, feed)
    got = core_driver.eval(path, feed)
    np.testing.assert_array_equal(
        got["deterministic_discrete_actions"], want["deterministic_discrete_actions"]
    )
    assert len(np.unique(want["deterministic_discrete_actions"])) > 1  # the decision depends on the inputs
    # OnnxPolicy reads the action layout (and so returns discrete actions) only for models with mean_action.
    if kind == "mfq":
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for _ in range(3):
            one = _policy_feed(rng, spec, batch=1, mean=True)
            expected = session.run(["deterministic_discrete_actions"], one)[0]
            layout, _, discrete = core_driver.policy(path, one)
            assert layout == "layout 5 0 5"
            assert [int(v) for v in discrete.split()[1:]] == expected[0].tolist()
