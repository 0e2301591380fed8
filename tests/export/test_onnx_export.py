"""Export round trips: onnx.checker, the contract checker, torch vs onnxruntime parity, masks, opset."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from unimarl.bridge.spec import ActionSpec
from unimarl.trainers.core.batch import PolicySpec
from unimarl.trainers.export.contract import assert_contract, check_model
from unimarl.trainers.export.onnx import (
    SUPPORTED_OPERATORS,
    ExportError,
    contract_obs_shape,
    export_actor,
)

MakeActor = Callable[[PolicySpec], nn.Module]


def _export(
    make_actor: MakeActor, spec: PolicySpec, tmp_path: Path, **kwargs: object
) -> tuple[nn.Module, Path]:
    torch.manual_seed(0)
    actor = make_actor(spec)
    path = tmp_path / "policy.onnx"
    report = export_actor(actor, spec, path, **kwargs)
    assert report.path == path and report.size_bytes == path.stat().st_size > 0
    assert set(report.operators) <= SUPPORTED_OPERATORS
    return actor, path


def _feed(
    spec: PolicySpec, batch: int, rng: np.random.Generator, layout: str = "CHW"
) -> dict[str, np.ndarray]:
    feed = {
        f"obs_{i}": rng.normal(size=(batch, *contract_obs_shape(s, layout))).astype(np.float32)
        for i, s in enumerate(spec.obs_shapes)
    }
    if spec.action_spec.discrete_size:
        mask = (rng.random((batch, spec.mask_size)) < 0.6).astype(np.float32)
        start = 0
        for size in spec.action_spec.discrete_branches:  # at least one allowed action per branch
            mask[:, start + rng.integers(size)] = 1.0
            start += size
        feed["action_masks"] = mask
    return feed


def test_export_passes_checker_and_contract(make_actor: MakeActor, spec: PolicySpec, tmp_path: Path) -> None:
    _, path = _export(make_actor, spec, tmp_path)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert check_model(path, spec) == []
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) <= 15


@pytest.mark.parametrize("batch", [1, 7])
def test_torch_and_onnxruntime_agree(
    make_actor: MakeActor, spec: PolicySpec, batch: int, tmp_path: Path
) -> None:
    actor, path = _export(make_actor, spec, tmp_path)
    feed = _feed(spec, batch, np.random.default_rng(batch))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed), strict=True))
    obs = [torch.from_numpy(feed[f"obs_{i}"]) for i in range(len(spec.obs_shapes))]
    mask = torch.from_numpy(feed["action_masks"]) if "action_masks" in feed else None
    with torch.no_grad():
        out = actor(obs, mask)
    if spec.action_spec.continuous_size:
        want = torch.clamp(out.continuous_mean, -3, 3).numpy() / 3
        np.testing.assert_allclose(got["deterministic_continuous_actions"], want, atol=1e-5, rtol=0)
        assert got["continuous_actions"].shape == want.shape
        assert np.all(np.abs(got["continuous_actions"]) <= 1.0)
    if spec.action_spec.discrete_size:
        want = np.stack([logits.argmax(dim=1).numpy() for logits in out.discrete_logits], axis=1)
        assert got["deterministic_discrete_actions"].dtype == np.int64
        np.testing.assert_array_equal(got["deterministic_discrete_actions"], want)
        assert got["discrete_actions"].shape == want.shape


def test_masked_actions_are_never_chosen(make_actor: MakeActor, tmp_path: Path) -> None:
    spec = PolicySpec(((8,),), ActionSpec(0, (4, 3)))
    _, path = _export(make_actor, spec, tmp_path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(3)
    batch = 512
    obs = rng.normal(size=(batch, 8)).astype(np.float32) * 3
    # Branch 0: only actions 1 and 3 allowed; branch 1: only action 0 allowed.
    mask = np.tile(np.array([0, 1, 0, 1, 1, 0, 0], np.float32), (batch, 1))
    sampled, deterministic = [], []
    for _ in range(8):
        out = dict(
            zip(
                [o.name for o in session.get_outputs()],
                session.run(None, {"obs_0": obs, "action_masks": mask}),
                strict=True,
            )
        )
        sampled.append(out["discrete_actions"])
        deterministic.append(out["deterministic_discrete_actions"])
    sampled_all, det_all = np.concatenate(sampled), np.concatenate(deterministic)
    for actions in (sampled_all, det_all):
        assert set(np.unique(actions[:, 0])) <= {1, 3}
        assert set(np.unique(actions[:, 1])) == {0}
    assert set(np.unique(sampled_all[:, 0])) == {1, 3}  # sampling does explore both allowed actions


def test_a_masked_favourite_never_starves_the_allowed_actions(tmp_path: Path) -> None:
    """A policy can prefer a masked action by far (an MF-Q policy at a low temperature: logits Q / T, battle's
    attacks masked with no enemy in reach). The allowed actions' probabilities must come from the masked
    logits, as the trainers act (``masked_logits``): masking after a softmax left rows of zeros once the
    favourite took all the mass, and the sampled action then fell outside the branch."""
    from unimarl.trainers.export.meanfield import ContractPolicy

    class Favourite(nn.Module):
        def forward(self, obs: list[torch.Tensor]) -> torch.Tensor:
            return obs[0][:, :1] * torch.tensor([[-0.5, 1.0, 0.2, 0.0, 0.1]]) * 400.0  # action 1 by ~400

    spec = PolicySpec(((3,),), ActionSpec(0, (5,)))
    path = tmp_path / "favourite.onnx"
    report = export_actor(ContractPolicy(Favourite()), spec, path)
    assert set(report.operators) <= SUPPORTED_OPERATORS
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = 256
    obs = np.ones((batch, 3), np.float32)
    mask = np.tile(np.array([1, 0, 1, 0, 1], np.float32), (batch, 1))  # the favourite is masked
    out = dict(
        zip(
            [o.name for o in session.get_outputs()],
            session.run(None, {"obs_0": obs, "action_masks": mask}),
            strict=True,
        )
    )
    assert set(np.unique(out["discrete_actions"])) == {2}  # logits 80 vs 40 and -200: action 2, always
    assert set(np.unique(out["deterministic_discrete_actions"])) == {2}


def test_visual_hwc_is_exported_nchw(make_actor: MakeActor, tmp_path: Path) -> None:
    spec = PolicySpec(((6, 5, 3),), ActionSpec(0, (3,)))
    actor, path = _export(make_actor, spec, tmp_path, visual_layout="HWC")
    model = onnx.load(str(path))
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]]
    assert dims == [3, 6, 5]
    assert check_model(model, spec, visual_layout="HWC") == []
    feed = _feed(spec, 4, np.random.default_rng(0), layout="HWC")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["deterministic_discrete_actions"], feed)[0]
    with torch.no_grad():
        hwc = torch.from_numpy(feed["obs_0"]).permute(0, 2, 3, 1)
        want = actor([hwc], torch.from_numpy(feed["action_masks"])).discrete_logits[0].argmax(dim=1)
    np.testing.assert_array_equal(got[:, 0], want.numpy())


def _drop_output(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    edited = onnx.ModelProto()
    edited.CopyFrom(model)
    kept = [o for o in edited.graph.output if o.name != name]
    del edited.graph.output[:]
    edited.graph.output.extend(kept)
    return edited


@pytest.mark.parametrize(
    "name",
    [
        "version_number",
        "memory_size",
        "discrete_actions",
        "deterministic_discrete_actions",
        "discrete_action_output_shape",
        "continuous_actions",
        "deterministic_continuous_actions",
        "continuous_action_output_shape",
    ],
)
def test_contract_rejects_a_missing_output(
    make_actor: MakeActor, specs: dict[str, PolicySpec], name: str, tmp_path: Path
) -> None:
    spec = specs["hybrid"]
    _, path = _export(make_actor, spec, tmp_path)
    edited = _drop_output(onnx.load(str(path)), name)
    assert check_model(edited, spec) == [f"missing output {name!r}: ML-Agents needs it for this action spec"]
    with pytest.raises(ExportError, match=f"missing output '{name}'"):
        assert_contract(edited, spec)


def test_contract_rejects_wrong_version_constant(
    make_actor: MakeActor, specs: dict[str, PolicySpec], tmp_path: Path
) -> None:
    spec = specs["discrete"]
    _, path = _export(make_actor, spec, tmp_path)
    model = onnx.load(str(path))
    source = next(n.input[0] for n in model.graph.node if n.output[0] == "version_number")
    tensor = next(t for t in model.graph.initializer if t.name == source)
    tensor.CopyFrom(onnx.numpy_helper.from_array(np.array([2.0], np.float32), source))
    with pytest.raises(ExportError, match=r"constant 'version_number' is \[2.0\], expected \[3.0\]"):
        assert_contract(model, spec)


def test_contract_rejects_wrong_spec(
    make_actor: MakeActor, specs: dict[str, PolicySpec], tmp_path: Path
) -> None:
    _, path = _export(make_actor, specs["discrete"], tmp_path)
    other = PolicySpec(((9,),), ActionSpec(0, (5, 2)))
    problems = check_model(path, other)
    assert problems == [
        "input 'obs_0' has shape ['batch', 8], expected [batch, 9]",
        "input 'action_masks' has shape ['batch', 5], expected [batch, 7]",
    ]


def test_export_rejects_bad_arguments(
    make_actor: MakeActor, specs: dict[str, PolicySpec], tmp_path: Path
) -> None:
    spec = specs["discrete"]
    actor = make_actor(spec)
    with pytest.raises(ExportError, match="opset 17 is not supported"):
        export_actor(actor, spec, tmp_path / "a.onnx", opset=17)
    with pytest.raises(ExportError, match="visual_layout 'NHWC' is unknown"):
        export_actor(actor, spec, tmp_path / "a.onnx", visual_layout="NHWC")  # type: ignore[arg-type]
