"""The network-output -> game-action mapping against hand-computed values, in numpy and in the exported graph,
and the action bounds surviving the manifest and the checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from unimarl.bridge.spec import ActionSpec
from unimarl.trainers.algos.mappo.networks import Actor
from unimarl.trainers.algos.mappo.policy import MAPPOHyperparameters, MAPPOPolicy, NetworkSettings
from unimarl.trainers.core.action_map import ActionBounds, bounds_of, to_env
from unimarl.trainers.core.batch import PolicySpec
from unimarl.trainers.export.onnx import export_actor
from unimarl.trainers.export.policies import spec_entry, spec_from_entry

INF = float("inf")
RAW = np.array([-4.0, -1.5, 0.0, 1.5, 4.0], np.float32)
# (low, high) -> the game's action for each RAW value, by hand: y = clip(raw, -3, 3) / 3 = [-1, -.5, 0, .5, 1]
CASES = {
    "unity [-1, 1]": ((-1.0, 1.0), [-1.0, -0.5, 0.0, 0.5, 1.0]),
    "[-2, 6]": ((-2.0, 6.0), [-2.0, 0.0, 2.0, 4.0, 6.0]),  # 2 + 4 y
    "[0, 0.5]": ((0.0, 0.5), [0.0, 0.125, 0.25, 0.375, 0.5]),  # 0.25 + 0.25 y
    "[0.5, inf)": ((0.5, INF), [0.5, 1.0, 1.5, 2.0, 2.5]),  # width 2 from the finite bound
    "(-inf, 10]": ((-INF, 10.0), [8.0, 8.5, 9.0, 9.5, 10.0]),
    "(-inf, inf)": ((-INF, INF), [-1.0, -0.5, 0.0, 0.5, 1.0]),  # no map: ML-Agents' range
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_numpy_mapping_matches_hand_computed_actions(case: str) -> None:
    (low, high), expected = CASES[case]
    bounds = bounds_of([low] * len(RAW), [high] * len(RAW))
    assert (bounds is None) == (case == "unity [-1, 1]")
    np.testing.assert_allclose(to_env(RAW[None, :], bounds)[0], expected, rtol=0, atol=1e-6)


def test_exported_graph_matches_hand_computed_actions(tmp_path: Path) -> None:
    """One continuous dimension per case; the mean is forced to RAW[k] through the mean head's bias."""
    names = sorted(CASES)
    bounds = ActionBounds(tuple(CASES[n][0][0] for n in names), tuple(CASES[n][0][1] for n in names))
    spec = PolicySpec(((3,),), ActionSpec(len(names), ()), action_bounds=bounds)
    actor = Actor(spec, (8,), "tanh", False).eval()
    path = tmp_path / "bounded.onnx"
    session = None
    for k, value in enumerate(RAW):
        with torch.no_grad():
            actor.mean_head.weight.zero_()
            actor.mean_head.bias.fill_(float(value))
        export_actor(actor, spec, path)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        out = session.run(["deterministic_continuous_actions"], {"obs_0": np.zeros((2, 3), np.float32)})[0]
        expected = [CASES[n][1][k] for n in names]
        np.testing.assert_allclose(out, [expected, expected], rtol=0, atol=1e-6)
    assert session is not None


def test_bounds_survive_manifest_and_checkpoint() -> None:
    bounds = ActionBounds((-2.0, 0.5, -INF), (6.0, INF, INF))
    spec = PolicySpec(((4,),), ActionSpec(3, (2,)), action_bounds=bounds)
    assert spec_from_entry(spec_entry(spec)) == spec
    policy = MAPPOPolicy(spec, MAPPOHyperparameters(), NetworkSettings(hidden_units=8))
    assert MAPPOPolicy.spec_from_state(policy.state_dict()) == spec
    unity = PolicySpec(((4,),), ActionSpec(2, ()))
    assert spec_from_entry(spec_entry(unity)) == unity and unity.action_bounds is None
