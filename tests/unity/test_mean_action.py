"""The plug-in's mean-action support under Mono: MeanActionRecorder against the trainer's
MeanActionTracker, and OnnxPolicy running a model with a ``mean_action`` input as onnxruntime does."""

from __future__ import annotations

import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import Tensor, nn

from unimarl.bridge.spec import ActionSpec
from unimarl.trainers.algos.mappo.networks import Actor
from unimarl.trainers.algos.meanfield.mean_action import MeanActionTracker
from unimarl.trainers.core.batch import PolicySpec
from unimarl.trainers.export.onnx import ContractWrapper, input_names, output_names

SPEC = PolicySpec(((6,),), ActionSpec(2, (3, 2)))
D = 2 + 3 + 2
EDGE = ("mean 3", "forget 2", "mean 1", "mean 3")
WRONG_WIDTH = "input 'mean_action' has 8 values but the model's actions encode to 7"


def _segment(agent: int, grouped: bool) -> tuple[int, int]:
    """(group, team) of ``agent``: with ``grouped``, 3 areas of 2 teams numbered as the battle numbers its
    groups (``2 * area + team + 1``), and every fifth agent without a group (0: its Team Id alone counts)."""
    team = agent % 2
    if not grouped or agent % 5 == 4:
        return 0, team if grouped else 0
    return 2 * (agent // 2 % 3) + team + 1, team


def _script(
    rng: np.random.Generator, spec: ActionSpec, steps: int, grouped: bool = False
) -> tuple[list[str], list[Any]]:
    """A Unity-like run: agents die (forgotten, gone), restart (forgotten, deciding again) and arrive; some
    steps have no decision. Returns the driver script and, per ``mean`` query, (agent, step) to compare."""
    script, queries, alive = [], [], list(range(16 if grouped else 8))
    next_id = len(alive)
    tracker_steps: list[tuple[list[int], list[int], np.ndarray]] = []

    def token(agent: int) -> str:
        group, team = _segment(agent, grouped)
        return f"{agent}:{group}:{team}" if grouped else str(agent)

    for step in range(steps):
        script.append("roll")
        if step % 4 == 3:  # a step without decisions keeps the previous decision
            continue
        dead = [a for a in alive if rng.random() < 0.08]
        restarted = [a for a in alive if a not in dead and rng.random() < 0.15]
        alive = [a for a in alive if a not in dead] + [next_id] * (rng.random() < 0.3)
        next_id += 1
        script += [f"forget {a}" for a in dead + restarted]
        actions = np.hstack(
            [
                rng.normal(size=(len(alive), spec.continuous_size)).round(3),
                np.stack([rng.integers(0, b, len(alive)) for b in spec.discrete_branches], 1),
            ]
        )
        for agent in alive:
            script.append(f"mean {token(agent)}")
            queries.append((agent, len(tracker_steps)))
        for agent, row in zip(alive, actions, strict=True):
            values = [f"{v:.3f}" for v in row[: spec.continuous_size]]
            values += [str(int(v)) for v in row[spec.continuous_size :]]
            script.append(f"record {token(agent)} " + " ".join(values))
        tracker_steps.append((list(alive), restarted, actions))
    return script, [queries, tracker_steps]


@pytest.mark.parametrize("grouped", [False, True], ids=["one_group", "groups_and_teams"])
def test_recorder_matches_the_tracker(core_driver: Any, grouped: bool) -> None:
    """The trainer keeps one tracker per behaviour ("Battle?team=N") and segments it by Unity group (the
    mean-field worker's ``segment``); the recorder, one per PolicyHotSwap, must give the same means."""
    spec = ActionSpec(2, (3, 2))
    script, (queries, steps) = _script(np.random.default_rng(2), spec, steps=16, grouped=grouped)
    lines = core_driver.mean_action(2, (3, 2), script)
    got = [np.array(line.split()[2:], np.float32) for line in lines]
    trackers = {team: MeanActionTracker(spec, "team") for team in (0, 1)}
    episode = defaultdict[int, int](int)
    want: dict[tuple[int, int], np.ndarray] = {}
    for k, (alive, restarted, actions) in enumerate(steps):
        for agent in restarted:
            episode[agent] += 1
        for team, tracker in trackers.items():
            rows = [i for i, agent in enumerate(alive) if _segment(agent, grouped)[1] == team]
            members = [alive[i] for i in rows]
            keys = [(agent, episode[agent]) for agent in members]
            groups = np.array([_segment(agent, grouped)[0] for agent in members], np.int64)
            for agent, mean in zip(members, tracker.mean_actions(keys, segment=groups), strict=True):
                want[(agent, k)] = mean
            chosen = actions[rows]
            tracker.record(keys, chosen[:, 2:].astype(int), chosen[:, :2].astype(np.float32))
    assert len(got) == len(queries) and len(got) > 30
    for (agent, k), row in zip(queries, got, strict=True):
        np.testing.assert_allclose(row, want[(agent, k)], atol=1e-6, err_msg=f"agent {agent}, decision {k}")
    assert sum(np.abs(row).sum() > 0 for row in got) > len(got) // 2


def test_recorder_edge_cases(core_driver: Any) -> None:
    lines = core_driver.mean_action(
        1,
        (3,),
        [*("mean 1", "record 1 0.5 7", "record 2 -1 0", "mean 1", "roll", "mean 1", "mean 3", "roll"), *EDGE],
    )
    assert lines == [
        "mean 1 0 0 0 0",  # nothing recorded yet
        "mean 1 0 0 0 0",  # actions of this step only count after the roll-over
        "mean 1 -1 1 0 0",  # agent 2's action; agent 1's own does not count
        "mean 3 -0.25 0.5 0 0.5",  # both, the discrete 7 clipped into the branch (one-hot of 2)
        "mean 3 -0.25 0.5 0 0.5",  # a step without records keeps the previous decision
        "mean 1 0 0 0 0",  # agent 2 restarted: only agent 1 is left, and it is excluded for itself
        "mean 3 0.5 0 0 1",
    ]


class _WithMeanAction(nn.Module):
    """Contract inputs then ``mean_action``; the actor sees the mean action as one more observation."""

    def __init__(self, spec: PolicySpec, width: int) -> None:
        super().__init__()
        extended = PolicySpec((*spec.obs_shapes, (width,)), spec.action_spec)
        self.n_obs = len(spec.obs_shapes)
        self.inner = ContractWrapper(Actor(extended, (32, 32), "tanh", True), extended)

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        obs, mask, mean = inputs[: self.n_obs], inputs[self.n_obs], inputs[self.n_obs + 1]
        return self.inner(*obs, mean, mask)


def _export(tmp_path: Path, width: int = D) -> Path:
    torch.manual_seed(0)
    module = _WithMeanAction(SPEC, width).eval()
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(0.0, 1.0)
    names = [*input_names(SPEC), "mean_action"]
    example = (torch.randn(2, 6), torch.ones(2, 5), torch.randn(2, width))
    path = tmp_path / f"mean_action_{width}.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(
            module,
            example,
            str(path),
            input_names=names,
            output_names=output_names(SPEC),
            dynamic_axes={n: {0: "batch"} for n in names},
            opset_version=15,
            dynamo=False,
        )
    return path


def test_policy_feeds_mean_action_like_onnxruntime(core_driver: Any, tmp_path: Path) -> None:
    path = _export(tmp_path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(4)
    decisions = set()
    for _ in range(4):
        feed = {
            "obs_0": rng.normal(size=(1, 6)).astype(np.float32),
            "action_masks": np.ones((1, 5), np.float32),
            "mean_action": rng.normal(size=(1, D)).astype(np.float32) * 3,
        }
        want = session.run(["deterministic_continuous_actions", "deterministic_discrete_actions"], feed)
        layout, continuous, discrete = core_driver.policy(path, feed)
        assert layout == f"layout {D} 2 3,2"
        np.testing.assert_allclose(np.array(continuous.split()[1:], np.float32), want[0][0], atol=1e-4)
        assert [int(v) for v in discrete.split()[1:]] == want[1][0].tolist()
        decisions.add((continuous, discrete))
    assert len(decisions) > 1  # the decision depends on the inputs


def test_policy_refuses_mean_action_of_the_wrong_width(core_driver: Any, tmp_path: Path) -> None:
    path = _export(tmp_path, width=D + 1)
    feed = {"obs_0": np.zeros((1, 6), np.float32), "action_masks": np.ones((1, 5), np.float32)}
    with pytest.raises(AssertionError, match=WRONG_WIDTH):
        core_driver.policy(path, feed)
