"""Visual encoders (ML-Agents' vis_encode_type): torch reference ops, ONNX export within the plug-in's
operator set, byte storage of images, and minibatch teammate references against the whole batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from gymnasium import spaces
from pettingzoo import ParallelEnv

from unimarl.bridge.spec import ActionSpec
from unimarl.trainers.algos.encoders import (
    MIN_RESOLUTION,
    VIS_ENCODE_TYPES,
    EncoderError,
    LeakyReLU,
    MaxPool3x3s2,
    VisualEncoder,
    leaky_relu_ops,
    max_pool_ops,
)
from unimarl.trainers.algos.mappo.networks import Critic, CriticInputTensors, build_actor, critic_rows
from unimarl.trainers.algos.mappo.plan import PolicySetup, WorkerPlan
from unimarl.trainers.algos.mappo.policy import MAPPOHyperparameters, MAPPOPolicy, NetworkSettings
from unimarl.trainers.algos.mappo.records import compact_images, images_as_float
from unimarl.trainers.algos.mappo.rollout import RolloutWorker
from unimarl.trainers.core.batch import CriticInput, PolicySpec
from unimarl.trainers.core.config import EnvSettings
from unimarl.trainers.core.errors import ConfigError
from unimarl.trainers.envs.factory import EnvFactory
from unimarl.trainers.export.contract import check_model
from unimarl.trainers.export.onnx import SUPPORTED_OPERATORS, export_actor


def test_exported_leaky_relu_and_max_pool_match_torch() -> None:
    x = torch.randn(2, 3, 11, 8)
    torch.testing.assert_close(leaky_relu_ops(x), torch.nn.functional.leaky_relu(x, 0.01))
    torch.testing.assert_close(max_pool_ops(x), torch.nn.functional.max_pool2d(x, 3, 2))
    torch.testing.assert_close(LeakyReLU()(x), leaky_relu_ops(x))
    torch.testing.assert_close(MaxPool3x3s2()(x), max_pool_ops(x))


def test_chunked_training_forward_gives_the_same_values_and_gradients() -> None:
    torch.manual_seed(0)
    encoder = VisualEncoder((20, 24, 3), "simple", 8)
    images = torch.randint(0, 256, (10, 20, 24, 3), dtype=torch.uint8)
    grads = []
    for chunk in (100, 3):  # one pass, then chunks of 3 with recomputation
        encoder.chunk_rows = chunk
        encoder.zero_grad()
        out = encoder(images)
        out.square().sum().backward()
        grads.append((out.detach(), [p.grad.clone() for p in encoder.parameters()]))
    torch.testing.assert_close(grads[1][0], grads[0][0])
    for a, b in zip(grads[1][1], grads[0][1], strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("kind", VIS_ENCODE_TYPES)
@pytest.mark.parametrize("layout", ["CHW", "HWC"])
def test_every_encoder_exports_within_the_evaluators_operators(
    kind: str, layout: str, tmp_path: Path
) -> None:
    image = (3, 36, 40) if layout == "CHW" else (36, 40, 3)
    spec = PolicySpec(obs_shapes=(image, (4,)), action_spec=ActionSpec(2, (3,)))
    torch.manual_seed(0)
    actor = build_actor(spec, NetworkSettings(hidden_units=16, vis_encode_type=kind)).eval()
    path = tmp_path / f"{kind}.onnx"
    report = export_actor(actor, spec, path, visual_layout=layout)  # raises on an unsupported operator
    assert set(report.operators) <= SUPPORTED_OPERATORS
    assert check_model(path, spec, visual_layout=layout) == []
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, size=(5, *image)).astype(np.float32) / np.float32(255)
    vector = rng.normal(size=(5, 4)).astype(np.float32)
    fed = pixels if layout == "CHW" else pixels.transpose(0, 3, 1, 2)  # the contract feeds NCHW
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = dict(
        zip(
            [o.name for o in session.get_outputs()],
            session.run(None, {"obs_0": fed, "obs_1": vector, "action_masks": np.ones((5, 3), np.float32)}),
            strict=True,
        )
    )
    with torch.no_grad():
        got = actor([torch.from_numpy(pixels), torch.from_numpy(vector)])
    assert got.continuous_mean is not None
    expected = torch.clamp(got.continuous_mean, -3, 3) / 3
    np.testing.assert_allclose(out["deterministic_continuous_actions"], expected.numpy(), atol=1e-5)
    np.testing.assert_array_equal(
        out["deterministic_discrete_actions"][:, 0], got.discrete_logits[0].argmax(1).numpy()
    )


def test_an_image_too_small_for_the_encoder_is_refused_with_the_fitting_ones() -> None:
    spec = PolicySpec(obs_shapes=((12, 12, 3),), action_spec=ActionSpec(0, (2,)))
    assert MIN_RESOLUTION["simple"] > 12
    with pytest.raises(EncoderError, match=r"'simple' needs images of at least 20x20.*'match3'"):
        build_actor(spec, NetworkSettings(vis_encode_type="simple"))
    # unset: ML-Agents' default where it fits, else the encoder without a minimum
    assert build_actor(spec, NetworkSettings()).visual[0].kind == "fully_connected"
    big = PolicySpec(obs_shapes=((3, 20, 30),), action_spec=ActionSpec(0, (2,)))
    assert build_actor(big, NetworkSettings()).visual[0].kind == "simple"


def test_unknown_encoder_and_pooling_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"vis_encode_type 'conv' is unknown; use one of \['simple'"):
        NetworkSettings(vis_encode_type="conv")
    with pytest.raises(ConfigError, match=r"team_pooling 'sum' is unknown"):
        NetworkSettings(team_pooling="sum")


def test_camera_pixels_are_stored_as_bytes_without_loss() -> None:
    rng = np.random.default_rng(0)
    k = rng.integers(0, 256, size=(4, 6, 5, 3))
    camera = k.astype(np.float32) / np.float32(255)  # what the bridge's PNG decoder returns
    noisy = camera + np.float32(1e-3)
    vector = rng.normal(size=(4, 3)).astype(np.float32)
    stored = compact_images((camera, noisy, vector, k.astype(np.float32)), (False, False, False, True))
    assert [s.dtype for s in stored] == [np.uint8, np.float32, np.float32, np.uint8]
    np.testing.assert_array_equal(images_as_float(stored[0]), camera)  # bit-exact round trip
    assert stored[0].nbytes * 4 == camera.nbytes
    np.testing.assert_array_equal(images_as_float(stored[3]), camera)  # a uint8 space is read as k / 255
    # the networks see the same values from bytes as from the float images
    torch.manual_seed(0)
    spec = PolicySpec(obs_shapes=((6, 5, 3),), action_spec=ActionSpec(0, (2,)))
    policy = MAPPOPolicy(spec, MAPPOHyperparameters(), NetworkSettings(vis_encode_type="match3"))
    team = CriticInput(team_rows=np.array([[1], [0], [3], [2]], np.int32))
    np.testing.assert_array_equal(policy.value((stored[0],), team), policy.value((camera,), team))


class CameraEnv(ParallelEnv):
    """Three agents with uint8 camera images (a PettingZoo image env)."""

    metadata = {"name": "camera_v0"}  # noqa: RUF012

    def __init__(self) -> None:
        self.possible_agents = ["cam_0", "cam_1", "cam_2"]
        self.agents: list[str] = []
        self._rng = np.random.default_rng(0)

    def observation_space(self, agent: str) -> spaces.Space:
        return spaces.Box(0, 255, (24, 24, 3), np.uint8)

    def action_space(self, agent: str) -> spaces.Space:
        return spaces.Discrete(2)

    def _obs(self) -> dict[str, np.ndarray]:
        return {a: self._rng.integers(0, 256, (24, 24, 3)).astype(np.uint8) for a in self.agents}

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        self.agents = list(self.possible_agents)
        return self._obs(), {a: {} for a in self.agents}

    def step(self, actions: dict) -> tuple[dict, dict, dict, dict, dict]:
        no = {a: False for a in self.agents}
        return self._obs(), {a: 1.0 for a in self.agents}, no, dict(no), {a: {} for a in self.agents}


def make_camera() -> CameraEnv:
    return CameraEnv()


def test_rollout_stores_uint8_images_once_and_references_teammates() -> None:
    worker = RolloutWorker(EnvFactory(EnvSettings(pettingzoo=f"{__file__}:make_camera")), 1)
    specs = worker.specs()
    setup = PolicySetup(specs["cam"], MAPPOHyperparameters(), NetworkSettings(hidden_units=16))
    worker.configure(WorkerPlan({"cam": setup}, {"cam": "cam"}))
    policy = MAPPOPolicy(specs["cam"], MAPPOHyperparameters(), NetworkSettings(hidden_units=16))
    batch = worker.collect({"cam": policy.get_weights()}, horizon=4).batches["cam"]
    assert batch.obs[0].dtype == np.uint8 and batch.obs[0].shape == (12, 24, 24, 3)
    assert batch.critic.team_rows is not None and batch.critic.team_rows.shape == (12, 2)
    metrics = policy.update(batch)
    assert np.isfinite(metrics["Losses/Value Loss"])
    worker.close()


def test_minibatch_teammate_references_match_the_whole_batch() -> None:
    """Values of a minibatch whose teammates lie outside it equal the whole batch's values of those rows."""
    spec = PolicySpec(obs_shapes=((8, 8, 3), (2,)), action_spec=ActionSpec(0, (2,)))
    torch.manual_seed(0)
    critic = Critic(spec, (16,), vis_encode_type="match3", team_pooling="attention")
    obs = [torch.rand(6, 8, 8, 3), torch.randn(6, 2)]
    rows = torch.tensor([[1, 2], [0, 2], [0, 1], [4, -1], [3, -1], [-1, -1]])
    whole = critic(obs, CriticInputTensors(team_rows=rows))
    idx = torch.tensor([0, 3, 5])
    part = critic_rows(CriticInputTensors(team_rows=rows), idx, obs)
    torch.testing.assert_close(critic([o[idx] for o in obs], part), whole[idx])
