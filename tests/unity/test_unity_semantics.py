"""The example games and the plug-in's glue on the stand-in engine (Tests~/Stubs, modelled on
com.unity.ml-agents' C# code, cited there per rule): decisions per episode, the order sensors feed a model in,
and hot-swap in the Editor. Each test runs Tests~/WorldTestDriver.cs under Mono."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from unimarl.bridge.spec import ActionSpec
from unimarl.protos.policy_wire import RejectReason, decode_ack, encode_policy
from unimarl.trainers.algos.mappo.networks import Actor
from unimarl.trainers.algos.meanfield.mean_action import MeanActionTracker
from unimarl.trainers.core.batch import PolicySpec
from unimarl.trainers.export.onnx import export_actor

VIEW = 3  # the battle worlds' view: LocalView holds VIEW * VIEW * 5 floats


@dataclass
class Info:
    """One AgentInfo the stand-in Agent handed to its policy (a ``info`` line and its ``mask``/``obs``
    lines)."""

    step: int
    agent: int
    episode: int
    policy: str
    behavior: str
    done: bool
    max_step: bool
    reward: float
    group: int = 0
    """AgentInfo.groupId: the agent's SimpleMultiAgentGroup id, 0 without one."""
    mask: np.ndarray | None = None
    obs: dict[str, np.ndarray] = field(default_factory=dict)


def parse(lines: list[str]) -> tuple[list[Info], list[str]]:
    """The infos and the other lines of a world run."""
    infos: list[Info] = []
    rest = []
    for line in lines:
        kind, _, tail = line.partition(" ")
        parts = tail.split()
        if kind == "info":
            step, agent, episode = map(int, parts[:3])
            infos.append(
                Info(
                    step,
                    agent,
                    episode,
                    parts[3],
                    parts[4],
                    parts[5] == "1",
                    parts[6] == "1",
                    float(parts[7]),
                    int(parts[9]),
                )
            )
        elif kind == "mask":
            infos[-1].mask = np.array(parts, np.float32)
        elif kind == "obs":
            infos[-1].obs[parts[0]] = np.array(parts[1:], np.float32)
        else:
            rest.append(line)
    return infos, rest


def decisions_per_episode(infos: list[Info]) -> list[int]:
    """Decisions (non-terminal infos) of every episode that ended. An agent keeps its id (AgentInfo.episodeId,
    Agent.cs:489) across episodes; a terminal info closes its episode."""
    counts: dict[int, int] = defaultdict(int)
    ended = []
    for info in infos:
        if info.done:
            ended.append(counts.pop(info.agent, 0))
        else:
            counts[info.agent] += 1
    return ended


def assert_a_decision_every_step(infos: list[Info], steps: int) -> None:
    by_agent: dict[int, list[int]] = defaultdict(list)
    for info in infos:
        if not info.done:
            by_agent[info.agent].append(info.step)
    for agent, decided in by_agent.items():
        assert decided == list(range(steps)), (
            f"agent {agent} skipped steps {sorted(set(range(steps)) - set(decided))}"
        )


def test_coop_nav_episodes_have_25_decisions(core_driver: Any) -> None:
    """sim/coop_nav.py's episodes last 25 steps, each a decision (--episode-length 25). In ML-Agents the
    DecisionRequester asks for the step's decision in Academy.AgentPreStep (DecisionRequester.cs:65-71,
    97-113, subscribed in Awake, so before the area's handler), and ending an episode drops that request
    (Agent.cs:641-642 in NotifyAgentDone); an area that restarts its agents in AgentPreStep without asking
    again loses the first decision of every later episode (24, not 25)."""
    infos, _ = parse(core_driver.world(False, "3.0.0", "coopnav", "80"))
    ended = decisions_per_episode(infos)
    assert len(ended) == 3 * 3  # 3 agents, episodes ending at steps 25, 50, 75
    assert ended == [25] * len(ended)
    assert_a_decision_every_step(infos, 80)
    assert {i.max_step for i in infos if i.done} == {True}  # GroupEpisodeInterrupted: max step reached


def test_battle_episodes_have_max_steps_decisions(core_driver: Any) -> None:
    """Battle episodes interrupted after MAX_STEPS steps hold MAX_STEPS decisions, as sim/battle.py's
    (--max-steps), for the same reason as CoopNav's."""
    infos, _ = parse(core_driver.world(False, "3.0.0", "battle", "23", "5"))
    ended = decisions_per_episode(infos)
    assert len(ended) == 4 * 4
    assert ended == [5] * len(ended)
    assert_a_decision_every_step(infos, 23)


def test_battle_arenas_report_one_group_per_team_in_the_sims_order(core_driver: Any) -> None:
    """Three battle arenas in one scene: every AgentInfo (decisions and terminal ones) carries the id of its
    arena's team group, ``2 * arena + team + 1`` as sim/battle.py numbers them (Unity numbers
    SimpleMultiAgentGroups 1, 2, ... in creation order: MultiAgentGroupIdCounter.cs:5-12,
    SimpleMultiAgentGroup.cs:12; an agent reports its group's id, Agent.cs:608, 1133), so the trainer sees
    three battles, not one. The groups end their episodes together (GroupEpisodeInterrupted after MAX_STEPS
    steps)."""
    infos, rest = parse(core_driver.world(False, "3.0.0", "arenas", "3", "23", "5"))
    member = {int(agent): (int(arena), int(team)) for _, arena, team, agent in map(str.split, rest[:12])}
    assert [line.split()[0] for line in rest[:12]] == ["member"] * 12 and len(member) == 12
    assert {arena for arena, _ in member.values()} == {0, 1, 2}
    for info in infos:
        arena, team = member[info.agent]
        assert info.group == 2 * arena + team + 1, (info.agent, info.step, info.group)
    assert {i.behavior for i in infos} == {"Battle?team=0", "Battle?team=1"}
    assert decisions_per_episode(infos) == [5] * (12 * 4)
    assert {i.max_step for i in infos if i.done} == {True}
    assert_a_decision_every_step(infos, 23)


def _battle_model(tmp_path: Path) -> Path:
    # obs_i in ML-Agents' sensor order for the battle agent: LocalView, position, Status
    spec = PolicySpec(((VIEW * VIEW * 5,), (2,), (4,)), ActionSpec(0, (21,)))
    torch.manual_seed(3)
    actor = Actor(spec, hidden_sizes=(32,), activation="tanh", layer_norm=False).eval()
    path = tmp_path / "battle.onnx"
    export_actor(actor, spec, path, visual_layout="CHW")
    return path


def _chunks(tmp_path: Path, behavior: str, version: int, model: bytes) -> list[str]:
    paths = []
    for i, payload in enumerate(encode_policy(behavior, version, model, chunk_size=4096)):
        path = tmp_path / f"{behavior.replace('?', '_')}_{version}_{i}.bin"
        path.write_bytes(payload)
        paths.append(str(path))
    return paths


def test_self_play_feeds_the_model_in_mlagents_sensor_order(core_driver: Any, tmp_path: Path) -> None:
    """ML-Agents orders an agent's sensors by name with InvariantCulture (Sensors/ISensor.cs:133-137, called
    from Agent.cs:1036): the battle agent's sensors LocalView, Status, position feed obs_0..2 as LocalView,
    position, Status. The team-1 agents (Heuristic Only) run the pushed model through PolicyHotSwap; each
    action they take must be the one onnxruntime picks from the observations ML-Agents sent, in ML-Agents'
    order."""
    model = _battle_model(tmp_path)
    lines = core_driver.world(
        False, "3.0.0", "selfplay", "4", str(VIEW), *_chunks(tmp_path, "Battle?team=1", 1, model.read_bytes())
    )
    infos, rest = parse(lines)
    acks = [decode_ack(bytes.fromhex(line.split()[1])) for line in rest if line.startswith("ack ")]
    assert [(a.version, a.ok) for a in acks] == [(1, True)]
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    actions = defaultdict(list)
    for line in rest:
        if line.startswith("action "):
            _, agent, action = line.split()
            actions[int(agent)].append(int(action))
    heuristic = [i for i in infos if i.policy == "Heuristic" and not i.done]
    assert len(heuristic) == 2 * 4
    for info in heuristic:
        assert list(info.obs) == ["LocalView", "position", "Status"]
        assert info.mask is not None
        feed = {f"obs_{k}": values[None, :] for k, values in enumerate(info.obs.values())}
        feed["action_masks"] = info.mask[None, :]
        (want,) = session.run(["deterministic_discrete_actions"], feed)
        assert actions[info.agent][info.step] == int(want[0, 0]), f"agent {info.agent} at step {info.step}"


class _MeanFieldActor(torch.nn.Module):
    """A battle policy with a ``mean_action`` input (21 wide), seen as one more observation, weighted so the
    mean action changes the decisions."""

    def __init__(self, spec: PolicySpec) -> None:
        super().__init__()
        extended = PolicySpec((*spec.obs_shapes, (21,)), spec.action_spec)
        self.actor = Actor(extended, hidden_sizes=(32,), activation="tanh", layer_norm=False)

    def forward(self, obs: list[torch.Tensor], mask: torch.Tensor, mean_action: torch.Tensor) -> Any:
        return self.actor([*obs, 10.0 * mean_action], mask)


def _fight(core_driver: Any, tmp_path: Path, steps: int) -> tuple[list[Info], list[str], Path]:
    spec = PolicySpec(((VIEW * VIEW * 5,), (2,), (4,)), ActionSpec(0, (21,)))
    torch.manual_seed(5)
    module = _MeanFieldActor(spec).eval()
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(0.0, 1.0)
    path = tmp_path / "mean_field.onnx"
    export_actor(module, spec, path, visual_layout="CHW", mean_action_size=21)
    chunks = [*_chunks(tmp_path, "Battle?team=0", 1, path.read_bytes())]
    chunks += _chunks(tmp_path, "Battle?team=1", 1, path.read_bytes())
    infos, rest = parse(core_driver.world(False, "3.0.0", "fight", "2", str(steps), str(VIEW), *chunks))
    return infos, rest, path


def test_plugin_feeds_each_arenas_team_its_own_mean_action(core_driver: Any, tmp_path: Path) -> None:
    """Two arenas, both teams Heuristic Only running a pushed MF-Q-like model through PolicyHotSwap.TryDecide
    with their group ids: every action is the one onnxruntime picks when the mean action is the trainer's
    (MeanActionTracker per behaviour, segmented by the reported Unity group, as the mean-field worker does),
    and mixing the arenas would have changed some of them. Agents die (switched off: they leave their group),
    and after the episodes end (GroupEpisodeInterrupted at 50 steps) they come back in their group."""
    steps = 56
    infos, rest, model = _fight(core_driver, tmp_path, steps)
    member = {int(p[3]): (int(p[1]), int(p[2])) for p in map(str.split, rest) if p[0] == "member"}
    assert len(member) == 8
    acks = [decode_ack(bytes.fromhex(line.split()[1])) for line in rest if line.startswith("ack ")]
    assert [a.ok for a in acks] == [True, True]
    actions: dict[int, dict[int, int]] = defaultdict(dict)
    step = -1
    for line in rest:
        if line.startswith("step "):
            step = int(line.split()[1])
        elif line.startswith("action "):
            _, agent, action = line.split()
            actions[step][int(agent)] = int(action)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    trackers = {team: MeanActionTracker(ActionSpec(0, (21,)), "team") for team in (0, 1)}
    episode: dict[int, int] = defaultdict(int)
    checked = differ = 0
    for t in range(steps):
        at_t = [i for i in infos if i.step == t]
        for info in at_t:
            arena, team = member[info.agent]
            assert info.group == 2 * arena + team + 1 and info.policy == "Heuristic"
            episode[info.agent] += info.done  # a restarted agent is a new agent to the trainer
        for team, tracker in trackers.items():
            rows = [i for i in at_t if not i.done and member[i.agent][1] == team]
            keys = [(i.agent, episode[i.agent]) for i in rows]
            groups = np.array([i.group for i in rows], np.int64)
            for info, mean, mixed in zip(
                rows, tracker.mean_actions(keys, segment=groups), tracker.mean_actions(keys), strict=True
            ):
                feed = {f"obs_{k}": v[None, :] for k, v in enumerate(info.obs.values())}
                feed["action_masks"] = info.mask[None, :]
                want = session.run(["deterministic_discrete_actions"], {**feed, "mean_action": mean[None, :]})
                assert actions[t][info.agent] == int(want[0][0, 0]), f"agent {info.agent} at step {t}"
                alt = session.run(["deterministic_discrete_actions"], {**feed, "mean_action": mixed[None, :]})
                differ += int(alt[0][0, 0]) != int(want[0][0, 0])
                checked += 1
            tracker.record(keys, np.array([[actions[t][i.agent]] for i in rows], np.int64))
    assert checked >= 8 * steps // 2 and differ > 0, (checked, differ)
    ended = [i for i in infos if i.done]
    assert any(not i.max_step for i in ended) and any(i.max_step for i in ended)
    dead = {i.agent for i in ended if not i.max_step}
    assert any(i.agent in dead and i.step >= 50 and not i.done for i in infos)  # back, in its group


@pytest.mark.parametrize("packages", ["3.0.0", "4.0.1"])
def test_editor_hot_swap_spares_trained_agents_and_respects_teams(
    core_driver: Any, tmp_path: Path, packages: str
) -> None:
    """Agent.SetModel ends the agent's episode when the model changes (Agent.cs:664-681:
    NotifyAgentDone(DoneReason.Disabled)). In the Editor, PolicyHotSwap gives a model pushed for Battle?team=1
    to the team-1 agents that run models (Inference Only) only, and never to the Default agents a connected
    trainer drives (BehaviorParameters.cs:247-250: they use RemotePolicy): no spurious episode ends for
    them."""
    model = _battle_model(tmp_path).read_bytes()
    pushes = _chunks(tmp_path, "Battle?team=1", 1, model) + _chunks(tmp_path, "Battle?team=0", 2, model)
    infos, rest = parse(core_driver.world(True, packages, "hotswap", *pushes))
    acks = [decode_ack(bytes.fromhex(line.split()[1])) for line in rest if line.startswith("ack ")]
    assert [(a.behavior, a.version, a.ok) for a in acks] == [
        ("Battle?team=1", 1, True),
        ("Battle?team=0", 2, True),
    ]
    models = {
        int(p[1]): (int(p[2]), int(p[3]))
        for p in (line.split() for line in rest if line.startswith("models "))
    }
    assert sorted(models.values()) == [(0, 0), (0, 0), (1, 1), (1, 1)]  # (team, model changes)
    team_of = {agent: team for agent, (team, _) in models.items()}
    ends = [(team_of[i.agent], i.max_step) for i in infos if i.done]
    assert sorted(ends) == [(1, False), (1, False)]  # each team-1 agent's episode ended once, by SetModel


def test_editor_hot_swap_goes_to_the_pushed_team_only(core_driver: Any, tmp_path: Path) -> None:
    """With both teams Inference Only, a model pushed for Battle?team=N is set on team N's agents only
    (BehaviorParameters.FullyQualifiedBehaviorName is "Name?team=" + TeamId, BehaviorParameters.cs:219-222),
    so each agent's episode ends once per model of its own team."""
    model = _battle_model(tmp_path).read_bytes()
    pushes = _chunks(tmp_path, "Battle?team=1", 1, model) + _chunks(tmp_path, "Battle?team=0", 2, model)
    infos, rest = parse(core_driver.world(True, "3.0.0", "hotswap", "inference0", *pushes))
    models = [tuple(map(int, line.split()[2:])) for line in rest if line.startswith("models ")]
    assert sorted(models) == [(0, 1), (0, 1), (1, 1), (1, 1)]  # (team, model changes)
    ends = [i.behavior for i in infos if i.done]  # in order: the team-1 model arrives first
    assert ends == ["Battle?team=1"] * 2 + ["Battle?team=0"] * 2


@pytest.mark.parametrize("packages", ["3.0.0", "4.0.1"])
def test_editor_hot_swap_failure_is_acknowledged(core_driver: Any, tmp_path: Path, packages: str) -> None:
    """An exception while the Editor applies a model (here the inference package failing to load it in
    SetModel) must reach the trainer as a rejection: ML-Agents' SideChannel.ProcessMessage would otherwise
    swallow it (SideChannel.cs:36-51) and the trainer would wait for an answer that never comes."""
    model = _battle_model(tmp_path).read_bytes()
    pushes = _chunks(tmp_path, "Battle?team=1", 1, model) + _chunks(tmp_path, "Battle?team=1", 2, model)
    _, rest = parse(core_driver.world(True, packages, "hotswap", "fail=1", *pushes))
    acks = [decode_ack(bytes.fromhex(line.split()[1])) for line in rest if line.startswith("ack ")]
    assert [(a.version, a.ok, a.reason) for a in acks] == [
        (1, False, RejectReason.LOAD_FAILED),
        (2, True, RejectReason.ACCEPTED),
    ]
    assert "cannot create a worker" in acks[0].error


def test_scene_menu_saves_both_example_scenes(core_driver: Any) -> None:
    """Tools > Unimarl > Create Example Scenes saves the two scenes under Assets/Unimarl/Scenes, lists them in
    the build settings and opens CoopNav, so a fresh clone is two clicks from Play."""
    lines = core_driver.world(True, "3.0.0", "scenes")
    folder = "Assets/Unimarl/Scenes"
    assert [line for line in lines if line.startswith("saved ")] == [
        f"saved {folder}/CoopNav.unity",
        f"saved {folder}/Battle.unity",
    ]
    assert [line for line in lines if line.startswith("build ")] == [
        f"build {folder}/CoopNav.unity",
        f"build {folder}/Battle.unity",
    ]
    assert [line for line in lines if line.startswith("opened ")] == [f"opened {folder}/CoopNav.unity"]


@pytest.mark.parametrize("packages", ["3.0.0", "4.0.1"])
def test_built_coop_nav_scene_plays_like_the_sim(core_driver: Any, packages: str) -> None:
    """The built CoopNav scene, played with a connected trainer: 3 agents of CoopNav?team=0, each observing 4
    + 2N + 2(N - 1) = 14 floats (sim/coop_nav.py with --agents 3) through the CollectObservations sensor, one
    branch of 5 actions, 25 decisions an episode."""
    infos, _ = parse(core_driver.world(True, packages, "scene", "coopnav", "60"))
    decided = [i for i in infos if not i.done]
    assert {i.behavior for i in infos} == {"CoopNav?team=0"} and {i.policy for i in infos} == {"Remote"}
    assert len({i.agent for i in infos}) == 3
    assert {tuple((k, len(v)) for k, v in i.obs.items()) for i in decided} == {(("VectorSensor_size14", 14),)}
    assert {len(i.mask) for i in decided if i.mask is not None} == {5}
    assert decisions_per_episode(infos) == [25] * 6
    assert_a_decision_every_step(infos, 60)


def test_built_battle_scene_plays_like_the_sim(core_driver: Any) -> None:
    """The built Battle scene: 64 agents a team (sim/battle.py's --team-size), behaviours Battle?team=0 and 1,
    sensors in ML-Agents' order LocalView (13 * 13 * 5, --view 13), position (2), Status (4), 21 actions."""
    infos, _ = parse(core_driver.world(True, "3.0.0", "scene", "battle", "2"))
    decided = [i for i in infos if not i.done]
    assert len(decided) == 2 * 128
    assert sorted(
        {(b, sum(i.behavior == b for i in decided)) for b in ("Battle?team=0", "Battle?team=1")}
    ) == [
        ("Battle?team=0", 128),
        ("Battle?team=1", 128),
    ]
    assert {tuple((k, len(v)) for k, v in i.obs.items()) for i in decided} == {
        (("LocalView", 13 * 13 * 5), ("position", 2), ("Status", 4))
    }
    assert {len(i.mask) for i in decided if i.mask is not None} == {21}


def test_a_model_no_component_takes_is_rejected(core_driver: Any, tmp_path: Path) -> None:
    """A model for a team no PolicyHotSwap handles (here Battle?team=0 with only a team-1 component) is
    answered with a rejection, not left without an answer."""
    model = _battle_model(tmp_path).read_bytes()
    lines = core_driver.world(
        False, "3.0.0", "selfplay", "1", str(VIEW), *_chunks(tmp_path, "Battle?team=0", 4, model)
    )
    acks = [decode_ack(bytes.fromhex(line.split()[1])) for line in lines if line.startswith("ack ")]
    assert [(a.behavior, a.version, a.ok, a.reason) for a in acks] == [
        ("Battle?team=0", 4, False, RejectReason.LOAD_FAILED)
    ]
    assert "no PolicyHotSwap component handles Battle?team=0" in acks[0].error
