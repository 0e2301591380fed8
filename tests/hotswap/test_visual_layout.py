"""Visual observations across package versions: a model exported from a 3.x (CHW) or 2.x (HWC) visual game
records its layout in the manifest, takes NCHW input, and, driven by ``unimarl play``, acts in a visual sim
game of either version exactly as the trained actor does on the observations the game sent (the game's record
of the actions it received against the torch actor)."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from unimarl.bridge.parallel_env import parse_agent_name
from unimarl.bridge.spec import ActionSpec
from unimarl.trainers.algos.mappo.policy import MAPPOHyperparameters, MAPPOPolicy, NetworkSettings
from unimarl.trainers.core.batch import PolicySpec
from unimarl.trainers.envs.factory import visual_layout_of
from unimarl.trainers.export.policies import export_policies, read_manifest
from unimarl.trainers.run.play import play_game

BEHAVIOR = "Visual?team=0"
SIZE = 16
VERSIONS = {"3.0.0": "CHW", "2.2.1": "HWC"}


def _spec(layout: str) -> PolicySpec:
    image = (3, SIZE, SIZE) if layout == "CHW" else (SIZE, SIZE, 3)
    return PolicySpec((image, (4,)), ActionSpec(2, (3,)))


def _trained(run: Path, layout: str) -> tuple[MAPPOPolicy, Path]:
    """A policy with large random weights (so agents differ), exported with the layout left to the shapes."""
    policy = MAPPOPolicy(_spec(layout), MAPPOHyperparameters(), NetworkSettings(hidden_units=32), seed=4)
    with torch.no_grad():
        for parameter in policy.actor.parameters():
            parameter.normal_(0.0, 0.5)
    (exported,) = export_policies(run, {BEHAVIOR: policy}, env_steps=0)
    return policy, exported.path


def _play(
    tmp_path: Path, version: str, model: Path, hs: ModuleType
) -> tuple[list[dict[str, Any]], Path, Any]:
    record = tmp_path / "record.jsonl"
    extra = ["--package-version", version, "--agents", "3", "--size", str(SIZE), "--episode-length", "3"]
    env = hs.open_recording_game(tmp_path, "visual", *extra, "--record", str(record))
    try:
        result = play_game(env, model, episodes=6)
        game_spec = env.behavior_specs[BEHAVIOR]
    finally:
        env.close()
    assert result.models == {BEHAVIOR: model}
    return env.history, record, game_spec


def _applied_and_expected(
    record: Path, history: list[dict[str, Any]], policy: MAPPOPolicy, trained: str, game: str
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(applied, expected) continuous then discrete actions of every decision made from the pushed model."""
    applied: list[list[np.ndarray]] = [[], []]
    expected: list[list[np.ndarray]] = [[], []]
    for k, line in enumerate(json.loads(text) for text in record.read_text().splitlines()):
        if line["command"] != "STEP" or not line["actions"].get(BEHAVIOR):
            continue
        sent = line["sent"][BEHAVIOR]
        deciding = [i for i, done in zip(sent["ids"], sent["done"], strict=True) if not done]
        by_id = {parse_agent_name(name)[1]: o["observation"] for name, o in history[k - 1].items()}
        image = np.stack([by_id[i][0] for i in deciding])
        if trained != game:  # the trainer of the model saw the other layout
            image = image.transpose(0, 2, 3, 1) if trained == "HWC" else image.transpose(0, 3, 1, 2)
        vector = np.stack([by_id[i][1] for i in deciding])
        with torch.no_grad():
            out = policy.actor(
                [torch.as_tensor(image), torch.as_tensor(vector)], torch.ones(len(deciding), 3)
            )
        assert out.continuous_mean is not None
        expected[0].append(np.clip(out.continuous_mean.numpy(), -3, 3) / 3)
        expected[1].append(out.discrete_logits[0].argmax(1).numpy()[:, None])
        applied[0].append(np.asarray(line["actions"][BEHAVIOR]["continuous"]))
        applied[1].append(np.asarray(line["actions"][BEHAVIOR]["discrete"]))
    assert applied[0], f"no actions in {record}"
    return [np.concatenate(a) for a in applied], [np.concatenate(e) for e in expected]


@pytest.mark.parametrize(
    ("trained_on", "played_on"), [("3.0.0", "3.0.0"), ("2.2.1", "2.2.1"), ("3.0.0", "2.2.1")]
)
def test_visual_model_feeds_in_its_recorded_layout(
    tmp_path: Path, trained_on: str, played_on: str, hs: ModuleType
) -> None:
    trained, game = VERSIONS[trained_on], VERSIONS[played_on]
    policy, model = _trained(tmp_path / "run", trained)
    entry = read_manifest(tmp_path / "run")[BEHAVIOR]
    assert entry["visual_layout"] == trained and entry["input_shapes"] == [[3, SIZE, SIZE], [4]]
    history, record, game_spec = _play(tmp_path, played_on, model, hs)
    assert visual_layout_of(game_spec.observation_specs) == game
    assert game_spec.observation_specs[0].shape == _spec(game).obs_shapes[0]
    applied, expected = _applied_and_expected(record, history, policy, trained, game)
    assert len(applied[1]) >= 5 * 3
    np.testing.assert_allclose(applied[0], expected[0], atol=1e-5)
    np.testing.assert_array_equal(applied[1], expected[1])
    assert len(np.unique(applied[0].round(4), axis=0)) > 1  # agents act on what they see, not all alike
