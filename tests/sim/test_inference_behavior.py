"""Game-side inference: ``--inference-behavior`` (a hidden Heuristic Only team acting from pushed models) and
the optional ``mean_action`` model input, checked against the trainer's ``MeanActionTracker``."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from unimarl import sim
from unimarl.bridge.parallel_env import UnityParallelEnv
from unimarl.bridge.policy_channel import PolicyChannel
from unimarl.bridge.spec import ActionSpec
from unimarl.protos import UnityMessageProto
from unimarl.protos.policy_wire import RejectReason, decode_ack, encode_policy
from unimarl.protos.sidechannel import unframe
from unimarl.sim.client import Client, build_parser
from unimarl.sim.coop_nav import CoopNav
from unimarl.sim.game import BehaviorDef, ObsDef
from unimarl.sim.policy_runner import PolicyRunner
from unimarl.trainers.algos.meanfield.mean_action import MeanActionTracker, encode_actions

HIDDEN, VISIBLE = "Battle?team=1", "Battle?team=0"
BATTLE_FLAGS = ("--team-size", "3", "--grid", "12", "--view", "3", "--max-steps", "4")
COOP = "CoopNav?team=0"
UNKNOWN_FLAG = ("--inference-behavior", "Battle?team=7")


def _model(
    inputs: Mapping[str, list], nodes: list, outputs: Mapping[str, tuple[Any, list]], **weights: Any
) -> bytes:
    """A hand-made ONNX model (opset 15); ``weights`` become initializers."""
    graph = helper.make_graph(
        nodes,
        "policy",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, t, s) for n, (t, s) in outputs.items()],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def battle_model(action: int, extra_input: str | None = None) -> bytes:
    """Battle (view 3) policy that always picks ``action``; ``extra_input`` adds a [batch, 21] input.

    Inputs in ML-Agents' sensor order (SensorUtils.SortSensors, InvariantCulture; 3.0.0/4.0.1
    Runtime/Sensors/ISensor.cs:133-137): LocalView, position, Status.
    """
    inputs: dict[str, list] = {
        "obs_0": ["batch", 5, 3, 3],
        "obs_1": ["batch", 2],
        "obs_2": ["batch", 4],
        "action_masks": ["batch", 21],
    }
    nodes = [
        helper.make_node("MatMul", ["obs_2", "zeros"], ["h"]),
        helper.make_node("Add", ["h", "bias"], ["logits"]),
        helper.make_node("ArgMax", ["logits"], ["deterministic_discrete_actions"], axis=1, keepdims=1),
    ]
    if extra_input is not None:
        inputs[extra_input] = ["batch", 21]
    outputs: dict[str, tuple[Any, list]] = {
        "deterministic_discrete_actions": (TensorProto.INT64, ["batch", 1])
    }
    return _model(inputs, nodes, outputs, zeros=np.zeros((4, 21)), bias=np.eye(21)[action])


MEAN_BIAS = np.array([0.25, -0.125], np.float32)


def identity_model(obs_size: int, action_size: int, mean_width: int | str = "D", bias: bool = False) -> bytes:
    """Continuous policy whose action is its ``mean_action`` input (it shows exactly what was fed), plus
    :data:`MEAN_BIAS` with ``bias`` (so the actions change from decision to decision)."""
    inputs: dict[str, list] = {"obs_0": ["batch", obs_size], "mean_action": ["batch", mean_width]}
    outputs: dict[str, tuple[Any, list]] = {
        "deterministic_continuous_actions": (TensorProto.FLOAT, ["batch", action_size])
    }
    if not bias:
        nodes = [helper.make_node("Identity", ["mean_action"], ["deterministic_continuous_actions"])]
        return _model(inputs, nodes, outputs)
    nodes = [helper.make_node("Add", ["mean_action", "bias"], ["deterministic_continuous_actions"])]
    return _model(inputs, nodes, outputs, bias=MEAN_BIAS[:action_size])


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _acks(runner: PolicyRunner) -> list:
    return [decode_ack(payload) for _, payload in unframe(runner.pop_ack_frames())]


# --------------------------------------------------------------------------------- hidden behaviour


def test_hidden_team_is_not_reported_and_acts_from_the_pushed_model(tmp_path: Path) -> None:
    record = tmp_path / "record.jsonl"
    flags = [*BATTLE_FLAGS, "--inference-behavior", HIDDEN, "--record", str(record)]
    build = sim.make_build("battle", tmp_path / "build", extra_args=flags)
    channel = PolicyChannel(chunk_size=1024)
    env = UnityParallelEnv(build, seed=0, timeout=30, side_channels=[channel], log_dir=tmp_path / "logs")
    seen: set[str] = set()
    try:
        env.reset()
        stats = env.connection.stats
        seen.update(env.agent_behavior(a) for a in env.agents)
        for _ in range(2):
            env.step({a: 0 for a in env.agents})
        channel.push(HIDDEN, 1, battle_model(action=3))
        for _ in range(8):
            env.step({a: 0 for a in env.agents})
            seen.update(env.agent_behavior(a) for a in env.agents)
        assert set(env.behavior_specs) == {VISIBLE}
    finally:
        env.close()
    assert seen == {VISIBLE}
    status = channel.status()[HIDDEN]
    assert status.running_version == 1 and status.last_ack is not None and status.last_ack.ok
    assert "Battle/kills_team1" in stats.get_and_reset_stats()
    applied = [line["inferred"][HIDDEN] for line in _records(record) if HIDDEN in line.get("inferred", {})]
    assert all(HIDDEN not in line["sent"] and HIDDEN not in line["actions"] for line in _records(record))
    assert applied[0]["discrete"] == [[0]] * 3 and sorted(applied[0]["ids"]) == [3, 4, 5]
    assert applied[-1]["discrete"] == [[3]] * len(applied[-1]["ids"]) and applied[-1]["ids"]
    first_model = next(k for k, a in enumerate(applied) if a["discrete"] != [[0]] * len(a["ids"]))
    assert all(a["discrete"] == [[3]] * len(a["ids"]) for a in applied[first_model:])


def test_unknown_inference_behavior_is_a_usage_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "unimarl.sim", "battle", *("--mlagents-port", "1"), *UNKNOWN_FLAG],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "'Battle?team=7'" in done.stderr and "Battle?team=1" in done.stderr


# --------------------------------------------------------------------------------- mean_action


def _expected_means(tracker: MeanActionTracker, decisions: list[tuple[list, list, np.ndarray, list]]) -> list:
    """Replay (ids, ended ids, applied actions, Unity group ids) decisions through ``tracker``, keyed by
    (id, episode) and segmented by group as the trainer's mean-field worker segments them."""
    episode: dict[int, int] = defaultdict(int)
    means = []
    for ids, ended, applied, groups in decisions:
        for agent in ended:
            episode[agent] += 1
        keys = [(agent, episode[agent]) for agent in ids]
        means.append(tracker.mean_actions(keys, segment=np.asarray(groups, np.int64)))
        spec = tracker.action_spec
        tracker.record(keys, applied[:, spec.continuous_size :], applied[:, : spec.continuous_size])
    return means


@pytest.mark.parametrize("num_areas", [1, 3])
def test_runner_mean_actions_match_the_tracker(num_areas: int) -> None:
    """Agents of ``num_areas`` areas (Unity groups as the battle numbers them, one team: ``2 * area + 1``;
    ids in shuffled order): each agent's mean action counts its own group only."""
    behavior = BehaviorDef("Hybrid?team=0", (ObsDef("v", (3,)),), num_continuous=2, discrete_branches=(3, 4))
    spec = ActionSpec(2, (3, 4))
    rng = np.random.default_rng(7)
    area_of = rng.integers(0, num_areas, 24)
    runner, decisions, got = PolicyRunner(chw=False), [], []
    for step in range(12):  # agents come, go, and restart (reported done and deciding in one output)
        ids = rng.choice(24, size=int(rng.integers(6, 20)), replace=False).astype(np.int32)
        ended = ids[rng.random(len(ids)) < 0.2] if step % 3 else ids[:0]
        groups = (2 * area_of[ids] + 1).astype(np.int32)
        continuous = rng.normal(size=(len(ids), 2)).astype(np.float32)
        discrete = np.stack([rng.integers(0, 3, len(ids)), rng.integers(0, 4, len(ids))], 1).astype(np.int32)
        got.append(runner.mean_actions(behavior, ids, ended, groups))
        runner.record(behavior.name, ids, continuous, discrete)
        decisions.append((ids.tolist(), ended.tolist(), np.hstack([continuous, discrete]), groups.tolist()))
    want = _expected_means(MeanActionTracker(spec, "team"), decisions)
    for step, (g, w) in enumerate(zip(got, want, strict=True)):
        np.testing.assert_allclose(g, w, atol=1e-6, err_msg=f"decision {step}")
    assert sum(np.abs(w).sum() > 0 for w in want) >= 8  # most decisions have neighbours
    row = np.array([[0.5, -1.0, 0, 2, 3], [0.0, 0.25, 1, 0, 0]], np.float32)
    np.testing.assert_array_equal(
        np.hstack([row[:, :2], np.eye(3)[row[:, 2].astype(int)], np.eye(4)[row[:, 3].astype(int)]]),
        encode_actions(spec, row[:, 2:4].astype(int), row[:, :2]),
    )


def test_model_with_mean_action_is_fed_the_team_mean() -> None:
    behavior = BehaviorDef(COOP, (ObsDef("v", (4,)),), num_continuous=2)
    runner = PolicyRunner(chw=False, hidden={COOP})
    for payload in encode_policy(COOP, 1, identity_model(4, 2), 512):
        runner.receive(payload, {COOP: behavior})
    assert [a.reason for a in _acks(runner)] == [RejectReason.ACCEPTED]
    runner.record(COOP, np.array([1, 2, 3]), np.array([[1, 0], [0, 1], [1, 1]], np.float32), np.zeros((3, 0)))
    ids = np.array([3, 1, 9])
    continuous, discrete = runner.act(behavior, [np.zeros((3, 4), np.float32)], None, ids, np.array([2]))
    np.testing.assert_allclose(continuous, np.array([[1, 0], [1, 1], [1, 0.5]]))
    assert discrete.shape == (3, 0)


@pytest.mark.parametrize(
    ("model", "behavior", "match"),
    [
        (battle_model(1, extra_input="temperature"), HIDDEN, "optionally followed by 'mean_action'"),
        (identity_model(4, 2, mean_width=5), COOP, "needs \\[batch, 2\\]"),
    ],
    ids=["unknown_extra_input", "mean_action_wrong_width"],
)
def test_model_with_bad_extra_input_fails_to_load(model: bytes, behavior: str, match: str) -> None:
    behaviors = {
        HIDDEN: BehaviorDef(
            HIDDEN,
            (ObsDef("LocalView", (3, 3, 5)), ObsDef("position", (2,)), ObsDef("Status", (4,))),
            discrete_branches=(21,),
        ),
        COOP: BehaviorDef(COOP, (ObsDef("v", (4,)),), num_continuous=2),
    }
    runner = PolicyRunner(chw=True, hidden=set(behaviors))
    for payload in encode_policy(behavior, 4, model, 4096):
        runner.receive(payload, behaviors)
    (ack,) = _acks(runner)
    assert ack.reason == RejectReason.LOAD_FAILED and not runner.acts_for(behavior)
    assert re.search(match, ack.error), ack.error


def test_game_feeds_mean_action_as_the_tracker_does() -> None:
    """Two areas of 3 Inference Only agents (never reported: the game plays without exchanging), episodes
    of 4 steps (restarts), decisions every 2 steps: every model action is the tracker's mean + the bias, the
    mean taken per Unity group (coop_nav: ``area + 1``) as the trainer takes it, never across areas."""
    flags = [
        "--continuous",
        "--episode-length",
        "4",
        "--decision-period",
        "2",
        "--behavior-type",
        "inference",
    ]
    args = build_parser(CoopNav).parse_args(["--mlagents-port", "1", *flags])
    client = Client(CoopNav, args)
    client.game = CoopNav(args, 0, 2)
    client.record = io.StringIO()  # keeps the applied actions in client._hidden_applied
    first = UnityMessageProto()
    first.header.status = 200
    client.apply(first)
    assert client.hidden == {COOP}
    client._collect()  # the first decisions, before any model: zeros
    decisions, inferred = [], []
    for step in range(12):
        line = client._hidden_applied.pop(COOP, None)
        if line is not None:
            applied = np.asarray(line["continuous"], np.float32)
            decisions.append((line["ids"], line["ended"], applied, line["groups"]))
            inferred.append(client.policies.acts_for(COOP))
        if step == 1:
            for payload in encode_policy(COOP, 1, identity_model(14, 2, bias=True), 4096):
                client._receive_policy(payload)
            assert [ack.ok for ack in _acks(client.policies)] == [True]
        client.quiet_step()
    want = _expected_means(MeanActionTracker(ActionSpec(2, ()), "team"), decisions)
    assert sum(inferred) >= 7 and any(ended for _, ended, _, _ in decisions)
    assert len({tuple(a.ravel().round(4)) for _, _, a, _ in decisions}) > 3  # the actions vary
    for ids, _, _, groups in decisions:  # coop_nav: ids area * 3 + i, group area + 1
        assert groups == [agent // 3 + 1 for agent in ids] and set(groups) == {1, 2}
    rows = zip(inferred, decisions, want, strict=True)
    for step, (is_model, (_, _, applied, _), expected) in enumerate(rows):
        if is_model:
            np.testing.assert_allclose(applied, expected + MEAN_BIAS, atol=1e-6, err_msg=f"decision {step}")
        else:
            assert not applied.any()
