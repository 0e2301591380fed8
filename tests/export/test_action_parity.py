"""What is trained is what ships: the action a game receives during training from a deterministic policy
equals the exported model's deterministic output (onnxruntime) for the same observation.

Sides compared: the actions recorded where the env receives them (the sim game's ``--record`` file, written
by the game process from the wire; a PettingZoo env's ``step`` argument) against onnxruntime running the ONNX
file that training's own export path (``export_policies``) wrote, fed the observations the trainer saw.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from gymnasium import spaces
from pettingzoo import ParallelEnv

from unimarl import sim
from unimarl.bridge.parallel_env import UnityParallelEnv, parse_agent_name
from unimarl.trainers.algos.mappo.plan import PolicySetup, WorkerPlan
from unimarl.trainers.algos.mappo.policy import MAPPOHyperparameters, MAPPOPolicy, NetworkSettings
from unimarl.trainers.algos.mappo.rollout import RolloutWorker
from unimarl.trainers.export.policies import export_policies, read_manifest

TOLERANCE = 1e-5
LOW = np.array([-2.0, 0.0, 0.5], np.float32)
HIGH = np.array([6.0, 0.5, np.inf], np.float32)
"""Non-unit bounds: a wide range, a narrow one and a half-bounded one ([0.5, inf) maps to [0.5, 2.5])."""


class RecordingUnityEnv(UnityParallelEnv):
    """The bridge env, keeping every observation dict the trainer received (reset first)."""

    history: list[dict[str, Any]]

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        obs, infos = super().reset(seed, options)
        self.history = [obs]
        return obs, infos

    def step(self, actions: Any) -> Any:
        result = super().step(actions)
        self.history.append(result[0])
        return result


class BoundedEnv(ParallelEnv):
    """Two agents, random observations, continuous actions in ``Box(LOW, HIGH)``; records what it receives."""

    metadata = {"name": "bounded_v0"}  # noqa: RUF012 - PettingZoo's class attribute convention

    def __init__(self) -> None:
        self.possible_agents = ["agent_0", "agent_1"]
        self.agents: list[str] = []
        self.received: list[tuple[np.ndarray, np.ndarray]] = []  # (observation shown, action received)
        self._rng = np.random.default_rng(0)
        self._obs: dict[str, np.ndarray] = {}
        self._t = 0

    def observation_space(self, agent: str) -> spaces.Space:
        return spaces.Box(-np.inf, np.inf, (5,), np.float32)

    def action_space(self, agent: str) -> spaces.Space:
        return spaces.Box(LOW, HIGH, dtype=np.float32)

    def _observe(self) -> dict[str, np.ndarray]:
        self._obs = {a: self._rng.normal(0, 2, 5).astype(np.float32) for a in self.agents}
        return dict(self._obs)

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        self.agents, self._t = list(self.possible_agents), 0
        return self._observe(), {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        for agent in self.agents:
            self.received.append((self._obs[agent], np.asarray(actions[agent], np.float32)))
        self._t += 1
        done = self._t >= 10
        obs = self._observe()
        agents = list(self.agents)
        if done:
            self.agents = []
        return (
            obs,
            dict.fromkeys(agents, 0.0),
            dict.fromkeys(agents, False),
            dict.fromkeys(agents, done),
            {a: {} for a in agents},
        )


def _train_deterministic(
    factory: Any, run_dir: Path, horizon: int
) -> tuple[RolloutWorker, dict[str, Any], dict[str, Path]]:
    """Collect ``horizon`` steps acting deterministically with a policy whose means reach beyond [-3, 3],
    then export it with training's export path; returns the worker, the manifest and the model per policy."""
    worker = RolloutWorker(factory, 1)
    try:  # a failing step must not leave the game running (and holding the trainer's exit)
        specs = worker.specs()
        hp, net = MAPPOHyperparameters(), NetworkSettings(hidden_units=32, normalize_inputs=False)
        worker.configure(
            WorkerPlan(
                {b: PolicySetup(s, hp, net) for b, s in specs.items()},
                {b: b for b in specs},
                deterministic=True,
            )
        )
        policies = {b: MAPPOPolicy(s, hp, net, seed=3) for b, s in specs.items()}
        torch.manual_seed(5)
        for policy in policies.values():
            heads = [p for n, p in policy.actor.named_parameters() if "head" in n and n.endswith("weight")]
            assert heads  # the mean / logits heads (initialised near zero: every action would be ~0)
            with torch.no_grad():  # means spread well beyond [-1, 1], some beyond the clip at 3
                for parameter in heads:
                    parameter.normal_(0.0, 0.7)
        worker.collect({b: p.get_weights() for b, p in policies.items()}, horizon)
        layouts = worker.visual_layouts()
        written = export_policies(run_dir, policies, horizon, layouts)
    finally:
        worker.close()
    return worker, read_manifest(run_dir), {e.policy: e.path for e in written}


def _feed(obs: Any, entry: dict[str, Any]) -> dict[str, np.ndarray]:
    """Contract inputs for a batch of bridge observations (rank-3 ones transposed to NCHW when HWC)."""
    plain = [o["observation"] if isinstance(o, dict) else o for o in obs]
    sensors = [p if isinstance(p, tuple) else (p,) for p in plain]
    feed = {}
    for i in range(len(sensors[0])):
        batch = np.stack([s[i] for s in sensors]).astype(np.float32)
        if batch.ndim == 4 and entry["visual_layout"] == "HWC":
            batch = batch.transpose(0, 3, 1, 2)
        feed[f"obs_{i}"] = batch
    if isinstance(obs[0], dict):
        feed["action_masks"] = np.stack([np.asarray(o["action_mask"], np.float32).ravel() for o in obs])
    return feed


def _unity_pairs(
    record: Path, history: list[dict[str, Any]], behavior: str
) -> tuple[list, np.ndarray, np.ndarray]:
    """Observations the trainer saw and the actions the game received for them, per deciding agent."""
    obs, continuous, discrete = [], [], []
    for k, line in enumerate(json.loads(x) for x in record.read_text().splitlines()):
        received = line["actions"].get(behavior)
        if line["command"] != "STEP" or not received:
            continue
        sent = line["sent"][behavior]
        deciding = [i for i, done in zip(sent["ids"], sent["done"], strict=True) if not done]
        by_id = {parse_agent_name(name)[1]: o for name, o in history[k - 1].items()}
        obs += [by_id[i] for i in deciding]
        continuous += received["continuous"]
        discrete += received["discrete"]
    return obs, np.asarray(continuous, np.float32), np.asarray(discrete, np.int64)


def _model_outputs(path: Path, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feed), strict=True))


@pytest.mark.parametrize(
    ("game", "args", "behavior"),
    [
        ("coop_nav", ("--continuous",), "CoopNav?team=0"),
        ("visual", ("--size", "20", "--agents", "3"), "Visual?team=0"),
    ],
    ids=["coop_nav-continuous", "visual-hybrid"],
)
def test_unity_game_receives_the_exported_models_actions(
    tmp_path: Path, game: str, args: tuple[str, ...], behavior: str
) -> None:
    record = tmp_path / "record.jsonl"
    build = sim.make_build(game, tmp_path / "build", extra_args=(*args, "--record", str(record)))

    holder: list[RecordingUnityEnv] = []

    def factory(worker_index: int, env_index: int, seed: int) -> RecordingUnityEnv:
        holder.append(RecordingUnityEnv(build, seed=seed, timeout=30, log_dir=tmp_path / "logs"))
        return holder[-1]

    _, manifest, models = _train_deterministic(factory, tmp_path / "run", horizon=30)
    obs, continuous, discrete = _unity_pairs(record, holder[0].history, behavior)
    assert len(obs) >= 29 * 3
    out = _model_outputs(models[behavior], _feed(obs, manifest[behavior]))
    expected = out["deterministic_continuous_actions"]
    # means beyond the clip at 3 (actions at +-1) and inside it: both branches of the mapping are exercised
    assert (np.abs(expected) == 1.0).any() and (np.abs(expected) < 0.9).mean() > 0.2
    np.testing.assert_allclose(continuous, expected, rtol=0, atol=TOLERANCE)
    if "deterministic_discrete_actions" in out:
        np.testing.assert_array_equal(discrete, out["deterministic_discrete_actions"])


def test_pettingzoo_box_receives_the_exported_models_actions(tmp_path: Path) -> None:
    env = BoundedEnv()
    _, _, models = _train_deterministic(lambda w, i, s: env, tmp_path / "run", horizon=25)
    obs = np.stack([o for o, _ in env.received])
    received = np.stack([a for _, a in env.received])
    assert len(received) == 50
    expected = _model_outputs(models["agent"], {"obs_0": obs})["deterministic_continuous_actions"]
    assert np.ptp(expected[:, 0]) > 2.0  # the wide dimension is used well beyond [-1, 1]
    np.testing.assert_allclose(received, expected, rtol=0, atol=TOLERANCE)
    assert np.all(received >= LOW) and np.all(received <= HIGH)
