"""MAPPO actors with each of ML-Agents' visual encoders, exported, run by the plug-in's C# evaluator under
Mono as onnxruntime runs them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from unimarl.bridge.spec import ActionSpec
from unimarl.trainers.algos.mappo.networks import build_actor
from unimarl.trainers.algos.mappo.policy import NetworkSettings
from unimarl.trainers.core.batch import PolicySpec
from unimarl.trainers.core.mappo_settings import VIS_ENCODE_TYPES
from unimarl.trainers.export.onnx import export_actor


@pytest.mark.parametrize("kind", VIS_ENCODE_TYPES)
def test_visual_encoder_policy_acts_in_the_evaluator_as_in_onnxruntime(
    core_driver: Any, tmp_path: Path, kind: str
) -> None:
    image = (36, 38, 3)  # HWC, as a C# 2.x game sends it (the model takes NCHW and transposes back)
    spec = PolicySpec(obs_shapes=(image, (4,)), action_spec=ActionSpec(2, (5,)))
    torch.manual_seed(0)
    actor = build_actor(spec, NetworkSettings(hidden_units=16, vis_encode_type=kind)).eval()
    with torch.no_grad():  # spread the heads so the decision depends on the inputs
        for name, parameter in actor.named_parameters():
            if "head" in name:
                parameter.normal_(0.0, 1.0)
    path = export_actor(actor, spec, tmp_path / f"{kind}.onnx", visual_layout="HWC").path
    rng = np.random.default_rng(3)
    feed = {
        "obs_0": (rng.integers(0, 256, (6, 3, 36, 38)) / 255).astype(np.float32),
        "obs_1": rng.normal(size=(6, 4)).astype(np.float32),
        "action_masks": np.ones((6, 5), np.float32),
    }
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed), strict=True))
    got = core_driver.eval(path, feed)
    np.testing.assert_allclose(
        got["deterministic_continuous_actions"], want["deterministic_continuous_actions"], atol=1e-4
    )
    np.testing.assert_array_equal(
        got["deterministic_discrete_actions"], want["deterministic_discrete_actions"]
    )
