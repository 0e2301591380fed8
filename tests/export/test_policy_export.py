"""The run's model folder: a failed export keeps the previous model and is recorded, never raised during
training; the manifest records the observation layout and the model's input shapes."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from unimarl.bridge.spec import ActionSpec, DimensionProperty, ObservationSpec
from unimarl.trainers.algos.mappo.policy import MAPPOHyperparameters, MAPPOPolicy, NetworkSettings
from unimarl.trainers.core.batch import PolicySpec
from unimarl.trainers.envs.factory import visual_layout_of
from unimarl.trainers.export import policies as policy_export
from unimarl.trainers.export.contract import assert_contract
from unimarl.trainers.export.onnx import ExportError
from unimarl.trainers.export.policies import (
    RunExportError,
    export_checkpoint,
    export_policies,
    infer_visual_layout,
    policy_for,
    read_manifest,
)

VECTOR = PolicySpec(((6,),), ActionSpec(0, (3,)))
NAME = "Runner?team=0"


def _policy(spec: PolicySpec, seed: int = 0) -> MAPPOPolicy:
    return MAPPOPolicy(spec, MAPPOHyperparameters(), NetworkSettings(hidden_units=16), seed=seed)


def _fail(*args: object, **kwargs: object) -> None:
    raise ExportError("the exporter ran out of luck")


def test_failed_export_keeps_the_previous_model_and_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    policies = {NAME: _policy(VECTOR)}
    (first,) = export_policies(tmp_path, policies, env_steps=10)
    before = first.path.read_bytes()
    monkeypatch.setattr(policy_export, "export_actor", _fail)
    with caplog.at_level(logging.ERROR, logger=policy_export.__name__):
        assert export_policies(tmp_path, policies, env_steps=20) == []
    assert str(first.path) in caplog.text and "the exporter ran out of luck" in caplog.text
    assert first.path.read_bytes() == before and not list((tmp_path / "onnx").glob("*.tmp"))
    entry = read_manifest(tmp_path)[NAME]
    assert (entry["file"], entry["env_steps"], entry["sha256"]) == (first.path.name, 10, first.sha256)
    assert entry["export_failures"] == 1
    assert entry["export_error"] == {
        "env_steps": 20,
        "path": str(first.path),
        "reason": "ExportError: the exporter ran out of luck",
    }
    assert policy_for(NAME, read_manifest(tmp_path)) == NAME  # the previous model still plays
    monkeypatch.undo()
    assert len(export_policies(tmp_path, policies, env_steps=30)) == 1
    entry = read_manifest(tmp_path)[NAME]
    assert entry["env_steps"] == 30 and "export_error" not in entry and entry["export_failures"] == 1


def test_failed_first_export_records_the_policy_without_a_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(actor: object, spec: object, path: Path, **kwargs: object) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(b"half a mo")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(policy_export, "export_actor", disk_full)
    assert export_policies(tmp_path, {NAME: _policy(VECTOR)}, env_steps=5) == []
    manifest = read_manifest(tmp_path)
    assert manifest[NAME]["file"] is None and "No space left" in manifest[NAME]["export_error"]["reason"]
    assert sorted(p.name for p in (tmp_path / "onnx").iterdir()) == ["policies.json"]
    assert policy_for(NAME, manifest) is None  # nothing to play


def test_unimarl_export_raises_instead(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    policy = _policy(VECTOR)
    export_policies(tmp_path, {NAME: policy}, env_steps=7)
    (tmp_path / "checkpoints").mkdir()
    state = {"policies": {NAME: policy.state_dict()}, "counters": {"env_steps": 7}}
    torch.save(state, tmp_path / "checkpoints" / "checkpoint-7.pt")
    monkeypatch.setattr(policy_export, "export_actor", _fail)
    with pytest.raises(ExportError, match="ran out of luck"):
        export_checkpoint(tmp_path)


def test_bad_layout_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RunExportError, match=r"visual layouts \{'Runner\?team=0': 'NHWC'\} are unknown"):
        export_policies(tmp_path, {NAME: _policy(VECTOR)}, 0, visual_layouts={NAME: "NHWC"})


@pytest.mark.parametrize("layout", ["CHW", "HWC"])
def test_manifest_records_layout_and_model_takes_nchw(tmp_path: Path, layout: str) -> None:
    image = (3, 8, 10) if layout == "CHW" else (8, 10, 3)
    spec = PolicySpec((image, (4,)), ActionSpec(2, (3,)))
    policy = _policy(spec, seed=3)
    with torch.no_grad():
        for parameter in policy.actor.parameters():
            parameter.normal_(0.0, 0.5)
    (exported,) = export_policies(tmp_path, {NAME: policy}, env_steps=1)  # layout inferred from shapes
    entry = read_manifest(tmp_path)[NAME]
    assert entry["visual_layout"] == layout and entry["spec"]["obs_shapes"] == [list(image), [4]]
    assert entry["input_shapes"] == [[3, 8, 10], [4]]
    assert_contract(exported.path.read_bytes(), spec, visual_layout=layout)
    rng = np.random.default_rng(0)
    obs = [rng.normal(size=(5, *image)).astype(np.float32), rng.normal(size=(5, 4)).astype(np.float32)]
    nchw = obs[0] if layout == "CHW" else obs[0].transpose(0, 3, 1, 2)
    session = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    feed = {"obs_0": nchw, "obs_1": obs[1], "action_masks": np.ones((5, 3), np.float32)}
    got = session.run(["deterministic_continuous_actions", "deterministic_discrete_actions"], feed)
    with torch.no_grad():
        out = policy.actor([torch.as_tensor(o) for o in obs], torch.ones(5, 3))
    np.testing.assert_allclose(got[0], np.clip(out.continuous_mean.numpy(), -3, 3) / 3, atol=1e-5)
    np.testing.assert_array_equal(got[1][:, 0], out.discrete_logits[0].argmax(1).numpy())
    # a later export without a layout keeps the recorded one, even for shapes that do not tell
    export_policies(tmp_path, {NAME: policy}, env_steps=2)
    assert read_manifest(tmp_path)[NAME]["visual_layout"] == layout


def test_layout_from_dimension_properties_and_shapes() -> None:
    te, none = DimensionProperty.TRANSLATIONAL_EQUIVARIANCE, DimensionProperty.NONE
    vector = ObservationSpec((4,), (none,))
    assert visual_layout_of([vector, ObservationSpec((3, 5, 5), (none, te, te))]) == "CHW"
    assert visual_layout_of([ObservationSpec((5, 5, 3), (te, te, none)), vector]) == "HWC"
    assert visual_layout_of([vector]) is None
    assert infer_visual_layout([(84, 84, 3), (4,)]) == "HWC"
    assert infer_visual_layout([(3, 84, 84)]) == "CHW"
    assert infer_visual_layout([(4,)]) == "CHW"
    assert infer_visual_layout([(5, 5, 5)]) == "CHW"  # undecidable: the 3.x layout
