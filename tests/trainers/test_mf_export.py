"""Mean-field export: IQL / AC policies become contract models that act like the learner, MF-Q models take the
extension input ``mean_action``, conv encoders export too, and ``unimarl export`` rebuilds them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from unimarl.bridge.spec import ActionSpec
from unimarl.trainers.algos.meanfield.mfac import MFACConfig, MFACLearner
from unimarl.trainers.algos.meanfield.mfq import MFQConfig, MFQLearner
from unimarl.trainers.algos.meanfield.networks import NetworkConfig
from unimarl.trainers.core.batch import PolicySpec
from unimarl.trainers.core.config import config_from_dict
from unimarl.trainers.export import policies as policy_export
from unimarl.trainers.export.meanfield import export_mean_field
from unimarl.trainers.export.onnx import ExportError
from unimarl.trainers.export.policies import LEGACY_MEAN_FIELD_MANIFEST, MANIFEST, read_manifest
from unimarl.trainers.run.train import train

SPEC = PolicySpec(obs_shapes=((5, 5, 2), (3,)), action_spec=ActionSpec(discrete_branches=(4,)))
MLP = NetworkConfig(encoder="mlp", visual_hidden=16, head_hidden=(16,))


def _greedy_onnx(path: Path, obs: list[np.ndarray], mask: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {"obs_0": obs[0].transpose(0, 3, 1, 2), "obs_1": obs[1], "action_masks": mask.astype(np.float32)}
    return session.run(["deterministic_discrete_actions"], feed)[0][:, 0]


@pytest.mark.parametrize("kind", ["iql", "ac"])
def test_exported_policy_acts_like_the_learner(tmp_path: Path, kind: str) -> None:
    learner: Any = (
        MFQLearner(SPEC, MFQConfig(use_mean_action=False, network=MLP), seed=0)
        if kind == "iql"
        else MFACLearner(SPEC, MFACConfig(use_mean_action=False, network=MLP), seed=0)
    )
    written = {e.policy: e for e in export_mean_field(tmp_path, {"p": learner}, 7)}
    rng = np.random.default_rng(0)
    obs = [rng.normal(size=(6, 5, 5, 2)).astype(np.float32), rng.normal(size=(6, 3)).astype(np.float32)]
    mask = rng.random((6, 4)) < 0.6
    mask[:, 1] = True
    expected = learner.act(obs, None, mask, deterministic=True).discrete_actions[:, 0]
    np.testing.assert_array_equal(_greedy_onnx(written["p"].path, obs, mask), expected)
    entry = json.loads((tmp_path / "onnx" / MANIFEST).read_text())["p"]
    assert entry["file"] == "p.onnx" and entry["algorithm"] == kind and entry["env_steps"] == 7
    assert entry["inputs"] == ["obs_0", "obs_1", "action_masks"] and entry["export_failures"] == 0
    assert ("temperature" in entry) == (kind == "iql")  # Q policies record what their logits are divided by


def test_mfq_is_exported_with_mean_action_and_conv_acts_like_the_learner(tmp_path: Path) -> None:
    conv = MFACLearner(SPEC, MFACConfig(network=NetworkConfig(conv_channels=(4,), visual_hidden=8)), seed=0)
    learners: dict[str, Any] = {"mfq": MFQLearner(SPEC, MFQConfig(network=MLP), seed=0), "conv": conv}
    written = {e.policy: e for e in export_mean_field(tmp_path, learners, 1)}
    assert set(written) == {"mfq", "conv"}
    manifest = json.loads((tmp_path / "onnx" / MANIFEST).read_text())
    assert manifest["mfq"]["file"] == "mfq.onnx" and manifest["mfq"]["inputs"][-1] == "mean_action"
    assert manifest["mfq"]["spec"] == {
        "obs_shapes": [[5, 5, 2], [3]],
        "continuous_size": 0,
        "discrete_branches": [4],
        "state_shape": None,  # the same spec record as MAPPO's policies.json
        "action_bounds": None,  # discrete actions only
    }
    assert manifest["conv"]["file"] == "conv.onnx" and manifest["conv"]["visual_layout"] == "HWC"
    assert manifest["conv"]["input_shapes"][0] == [2, 5, 5]  # NCHW, as for MAPPO's models
    rng = np.random.default_rng(1)
    obs = [rng.normal(size=(6, 5, 5, 2)).astype(np.float32) * 3, rng.normal(size=(6, 3)).astype(np.float32)]
    mask = rng.random((6, 4)) < 0.7
    mask[:, 2] = True
    expected = conv.act(obs, None, mask, deterministic=True).discrete_actions[:, 0]
    np.testing.assert_array_equal(_greedy_onnx(written["conv"].path, obs, mask), expected)


def test_mfq_with_a_centred_mean_input_is_fed_the_mean_action_as_it_is(tmp_path: Path) -> None:
    """The centring (n_actions * mean - 1) is inside the exported graph: the game and ``unimarl play`` feed
    the raw mean action, and the model picks what the learner picks (which centres inside its network)."""
    cfg = MFQConfig(
        network=NetworkConfig(encoder="mlp", visual_hidden=16, head_hidden=(16,), mean_input="centred")
    )
    learner = MFQLearner(SPEC, cfg, seed=0)
    with torch.no_grad():  # a mean-action branch that matters, so a missing centring changes the choices
        for layer in learner.q_online.mean_branch:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.mul_(30.0)
    path = next(e.path for e in export_mean_field(tmp_path, {"mfq": learner}, 1))
    rng = np.random.default_rng(2)
    obs = [rng.normal(size=(64, 5, 5, 2)).astype(np.float32), rng.normal(size=(64, 3)).astype(np.float32)]
    mean = rng.dirichlet(np.full(4, 0.3), size=64).astype(np.float32)
    mask = np.ones((64, 4), bool)
    expected = learner.act(obs, mean, mask, deterministic=True).discrete_actions[:, 0]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {"obs_0": obs[0].transpose(0, 3, 1, 2), "obs_1": obs[1], "action_masks": mask.astype(np.float32)}
    got = session.run(["deterministic_discrete_actions"], {**feed, "mean_action": mean})[0][:, 0]
    np.testing.assert_array_equal(got, expected)
    centred = session.run(["deterministic_discrete_actions"], {**feed, "mean_action": 4 * mean - 1})[0][:, 0]
    assert (centred != expected).any()  # the input is read, and centring it twice is not the same model


def _small_battle(tmp_path: Path, trainer: str, max_steps: int, **settings: Any) -> dict[str, Any]:
    """A short self-play run on a 4-vs-4 battle with a small mlp network."""
    return {
        "env": {"sim": "battle", "num_envs": 1, "args": ["--team-size", "4", "--grid", "10", "--view", "5"]},
        "run": {"run_id": trainer, "results_dir": str(tmp_path), "device": "cpu", "max_steps": max_steps},
        "behaviors": {
            "Battle?team=0": {
                "trainer_type": trainer,
                "hyperparameters": {
                    "encoder": "mlp",
                    "visual_hidden": 16,
                    "head_hidden": [16],
                    "push_every": 8,
                },
                "self_play": {"opponent": "Battle?team=1"},
                **settings,
            }
        },
        "environment_parameters": {"max_steps": 10},
    }


def test_training_exports_and_hot_swaps_mfac(tmp_path: Path) -> None:
    data = {**_small_battle(tmp_path, "mfac", 48, summary_freq=24), "hotswap": {"every": 2}}
    result = train(config_from_dict(data))
    assert (result.run_dir / "onnx" / "Battle_team_0.onnx").exists()
    assert json.loads((result.run_dir / "onnx" / MANIFEST).read_text())["Battle?team=0"]["env_steps"] == 48
    assert result.last_metrics["counters/hotswap_pushed/Battle?team=0"] >= 1
    assert result.last_metrics["counters/hotswap_rejected/Battle?team=0"] == 0


def test_unimarl_export_rebuilds_a_mean_field_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from unimarl.trainers.cli.main import main
    from unimarl.trainers.export.policies import RunExportError, export_checkpoint
    from unimarl.trainers.run.play import models_for

    data = _small_battle(tmp_path, "mfq", 24)
    run = train(config_from_dict(data)).run_dir
    model = run / "onnx" / "Battle_team_0.onnx"
    before = model.read_bytes()
    model.unlink()
    assert main(["export", str(run)]) == 0
    assert model.read_bytes() == before  # same checkpoint, same bytes
    assert "Battle?team=0" in capsys.readouterr().out
    with pytest.raises(RunExportError, match="does not fit the run's manifest"):
        export_checkpoint(run)  # MAPPO's rebuild on a mean-field run: refused, not a crash
    assert models_for(run, ["Battle?team=0"]) == {"Battle?team=0": model}  # `unimarl play RUN` finds it
    # a run folder written before mean field shared the manifest: mean_field.json, exportable flags
    legacy = {
        name: {k: v for k, v in entry.items() if k not in ("inputs", "export_failures")}
        | {"exportable": True}
        for name, entry in read_manifest(run).items()
    }
    (run / "onnx" / MANIFEST).unlink()
    (run / "onnx" / LEGACY_MEAN_FIELD_MANIFEST).write_text(json.dumps(legacy))
    assert models_for(run, ["Battle?team=0"]) == {"Battle?team=0": model}
    model.unlink()
    assert main(["export", str(run)]) == 0
    assert model.read_bytes() == before and read_manifest(run)["Battle?team=0"]["algorithm"] == "mfq"
    assert (run / "onnx" / MANIFEST).exists()


def test_export_samples_at_the_temperature_the_training_reached(tmp_path: Path) -> None:
    """Halfway through the schedule (T = 0.5) the exported model samples softmax(Q / 0.5), as the workers
    act, not softmax(Q / T_end)."""
    import torch

    learner = MFQLearner(SPEC, MFQConfig(use_mean_action=False, network=MLP), seed=0)
    learner.set_progress(0.5)
    assert learner.temperature == pytest.approx(0.5)
    (exported,) = export_mean_field(tmp_path, {"p": learner}, 1)
    path = exported.path
    rng = np.random.default_rng(2)
    obs = [rng.normal(size=(1, 5, 5, 2)).astype(np.float32) * 10, rng.normal(size=(1, 3)).astype(np.float32)]
    with torch.no_grad():
        q = learner.q_online([torch.as_tensor(o) for o in obs])[0].double()
    reached, end = torch.softmax(q / 0.5, 0).numpy(), torch.softmax(q / 0.1, 0).numpy()
    assert np.abs(reached - end).sum() > 0.2  # the two temperatures are told apart
    n = 20_000
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {
        "obs_0": np.repeat(obs[0].transpose(0, 3, 1, 2), n, axis=0),
        "obs_1": np.repeat(obs[1], n, axis=0),
        "action_masks": np.ones((n, 4), np.float32),
    }
    sampled = session.run(["discrete_actions"], feed)[0][:, 0]
    np.testing.assert_allclose(np.bincount(sampled, minlength=4) / n, reached, atol=0.015)


def test_failed_mean_field_export_keeps_the_previous_model_and_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mean-field exports go through the one manifest writer: a failure mid-run is recorded, the previous
    model stays and plays on (as for MAPPO, tests/export/test_policy_export.py)."""

    def fail(*args: object, **kwargs: object) -> None:
        raise ExportError("no luck")

    learner = MFQLearner(SPEC, MFQConfig(network=MLP), seed=0)
    (first,) = export_mean_field(tmp_path, {"p": learner}, 3)
    before = first.path.read_bytes()
    monkeypatch.setattr(policy_export, "export_actor", fail)
    assert export_mean_field(tmp_path, {"p": learner}, 9) == []
    entry = read_manifest(tmp_path)["p"]
    assert (entry["file"], entry["env_steps"], entry["export_failures"]) == ("p.onnx", 3, 1)
    assert entry["export_error"]["reason"] == "ExportError: no luck" and entry["algorithm"] == "mfq"
    assert first.path.read_bytes() == before
