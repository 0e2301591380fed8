"""Helpers for the hot-swap tests: a coop_nav model, a sim game with a policy channel, record parsing."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from unimarl import sim
from unimarl.bridge.parallel_env import UnityParallelEnv, parse_agent_name
from unimarl.bridge.policy_channel import PolicyChannel
from unimarl.bridge.spec import ActionSpec
from unimarl.trainers.algos.mappo.networks import Actor
from unimarl.trainers.core.batch import PolicySpec
from unimarl.trainers.export.onnx import export_actor

BEHAVIOR = "CoopNav?team=0"
COOP_NAV_SPEC = PolicySpec(((14,),), ActionSpec(0, (5,)))


def coop_nav_model(tmp_path: Path, seed: int) -> bytes:
    """An untrained coop_nav actor (3 agents) exported in the contract, as bytes."""
    torch.manual_seed(seed)
    actor = Actor(COOP_NAV_SPEC, (32, 32), "tanh", True).eval()
    with torch.no_grad():  # larger logits than the 0.01 init, so argmax differs between agents
        for parameter in actor.parameters():
            parameter.normal_(0.0, 1.0)
    path = tmp_path / f"coop_nav_{seed}.onnx"
    export_actor(actor, COOP_NAV_SPEC, path)
    return path.read_bytes()


def open_game(tmp_path: Path, channel: PolicyChannel, *extra: str) -> UnityParallelEnv:
    build = sim.make_build("coop_nav", tmp_path / "build", extra_args=extra)
    return UnityParallelEnv(build, seed=0, timeout=30, side_channels=[channel], log_dir=tmp_path / "logs")


class RecordingEnv(UnityParallelEnv):
    """The bridge env, keeping every observation dict the trainer received (``reset`` first)."""

    history: list[dict[str, Any]]

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        obs, infos = super().reset(seed, options)
        self.history = [obs]
        return obs, infos

    def step(self, actions: Any) -> Any:
        result = super().step(actions)
        self.history.append(result[0])
        return result


def open_recording_game(tmp_path: Path, game: str, *extra: str) -> RecordingEnv:
    build = sim.make_build(game, tmp_path / "build", extra_args=extra)
    return RecordingEnv(build, seed=0, timeout=30, log_dir=tmp_path / "logs")


def zero_actions(env: UnityParallelEnv) -> dict[str, Any]:
    return {agent: 0 for agent in env.agents}


def _vector(obs: Any) -> np.ndarray:
    """The one sensor of a coop_nav agent's observation (a Box, or the Dict/Tuple forms of the bridge)."""
    if isinstance(obs, dict):
        obs = obs["observation"]
    if isinstance(obs, tuple):
        obs = obs[0]
    return np.asarray(obs, np.float32)


def received_vs_model(
    record: Path, history: list[dict[str, Any]], model: bytes, behavior: str = BEHAVIOR
) -> tuple[np.ndarray, np.ndarray]:
    """The discrete actions the game received (its ``--record`` file), and the model's deterministic actions
    on the observations the trainer received for the same agents.

    Record line k (k >= 1) answers the output the trainer saw as ``history[k - 1]`` (the observations of
    ``reset()`` then of each ``step()``).
    """
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    applied, expected = [], []
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    for k, line in enumerate(lines):
        if line["command"] != "STEP" or not line["actions"].get(behavior):
            continue
        sent = line["sent"][behavior]
        deciding = [i for i, done in zip(sent["ids"], sent["done"], strict=True) if not done]
        by_id = {parse_agent_name(name)[1]: _vector(obs) for name, obs in history[k - 1].items()}
        obs = np.stack([by_id[i] for i in deciding]).astype(np.float32)
        out = session.run(
            ["deterministic_discrete_actions"],
            {"obs_0": obs, "action_masks": np.ones((len(obs), 5), np.float32)},
        )[0]
        applied.append(np.asarray(line["actions"][behavior]["discrete"]))
        expected.append(out)
    assert applied, f"no actions for {behavior} in {record}"
    return np.concatenate(applied), np.concatenate(expected)


@pytest.fixture
def hs() -> ModuleType:
    """These helpers, for the test modules (importlib mode does not put conftest on the import path)."""
    return sys.modules[__name__]
