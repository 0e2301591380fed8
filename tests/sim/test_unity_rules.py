"""The stand-in games against com.unity.ml-agents' C# rules (3.0.0 and 4.0.1; docs/unity-semantics.md).

Each test names the C# lines it holds the sim to; the flags that turn a rule on are documented in
``unimarl sim NAME --help``.
"""

from __future__ import annotations

import queue
import subprocess
import sys

import numpy as np
import pytest

from unimarl.protos import CommandProto
from unimarl.sim.battle import STEP_COST, Battle
from unimarl.sim.client import build_parser
from unimarl.sim.game import EnvParams
from unimarl.sim.sensors import sensor_order

BATTLE = ("--team-size", "3", "--grid", "10", "--view", "3")
TEAM0, TEAM1, COOP = "Battle?team=0", "Battle?team=1", "CoopNav?team=0"


# ----------------------------------------------------------------------------------------------- sensor order


@pytest.mark.parametrize(
    ("names", "invariant"),
    [
        # letters compare without case first: ordinal puts every upper-case letter before 'p'
        (["Status", "position", "LocalView"], ["LocalView", "position", "Status"]),
        (["VectorSensor_size14", "global_state"], ["global_state", "VectorSensor_size14"]),
        (["ABD", "abc"], ["abc", "ABD"]),
        # punctuation sorts before letters and digits ('_' is 95, after 'A'..'Z', in ordinal order)
        (["B", "_x", "7"], ["_x", "7", "B"]),
        # on a tie without case, lower case first at the first case difference; a prefix first
        (["A", "a"], ["a", "A"]),
        (["Ab", "aB"], ["aB", "Ab"]),
        (["Ab", "a"], ["a", "Ab"]),
    ],
)
def test_sensor_order_is_invariant_culture_not_ordinal(names: list[str], invariant: list[str]) -> None:
    """SensorUtils.SortSensors compares names with StringComparison.InvariantCulture (3.0.0 and 4.0.1
    Runtime/Sensors/ISensor.cs:133-137, called by Agent.InitializeSensors, Agent.cs:1036). Expected orders
    follow .NET's invariant collation (case-insensitive first, punctuation < digits < letters, lower case
    before upper case on a tie); every case differs from the ordinal order."""
    assert [names[i] for i in sensor_order(names)] == invariant
    assert sorted(names) != invariant


def test_battle_sends_its_sensors_in_ml_agents_order(trainer, launch, wire) -> None:
    """The Unity battle agent's sensors LocalView, Status, position travel as LocalView, position, Status."""
    launch("battle", trainer.port, *BATTLE)
    trainer.handshake()
    info = wire.agents(trainer.reset(), TEAM0)[0]
    assert [o.name for o in info.observations] == ["LocalView", "position", "Status"]
    assert [tuple(o.shape) for o in info.observations] == [(3, 3, 5), (2,), (4,)]


def test_default_position_sensor_names_battles_position() -> None:
    """The mean-field ``position_sensor`` default indexes the sensor named ``position`` in the wire order."""
    from unimarl.trainers.algos.meanfield.learners import MeanFieldHyperparameters

    behavior = Battle(build_parser(Battle).parse_args(list(BATTLE)), 0, 1).behaviors[0]
    names = [behavior.observations[i].name for i in sensor_order([o.name for o in behavior.observations])]
    assert names[MeanFieldHyperparameters().position_sensor] == "position"


# ------------------------------------------------------------------------------------------- behaviour types


@pytest.mark.parametrize(
    "flags",
    [("--behavior-type", "inference"), ("--behavior-type", "heuristic"), ("--inference-behavior", COOP)],
)
def test_no_default_agent_means_no_exchange_after_the_handshake(trainer, launch, flags) -> None:
    """Only BehaviorType.Default agents with a trainer get a RemotePolicy (Policies/BehaviorParameters.cs:
    229-263); only RemotePolicy calls PutObservations, which sets m_NeedCommunicateThisStep, without which
    DecideBatch never exchanges (Communicator/RpcCommunicator.cs:320-329, 337-362). The game keeps running."""
    game = launch("coop_nav", trainer.port, *flags)
    first, _ = trainer.handshake()
    assert first.unity_output.rl_initialization_output.name == "AcademySingleton"
    trainer.command(CommandProto.RESET)
    with pytest.raises(queue.Empty):
        trainer.receive(timeout=3.0)
    assert game.poll() is None, "the player keeps playing"
    assert "nothing is sent to the trainer" in game.log_path.read_text()


# ------------------------------------------------------------------------------------------------- actions


def test_fewer_actions_than_agents_is_an_error_and_none_means_zeros(trainer, launch, wire) -> None:
    """RpcCommunicator.cs:425-440 (3.0.0 and 4.0.1): an empty action list is skipped (agents keep empty, zero,
    actions); otherwise agentActions[i] is read for every agent: fewer throw ArgumentOutOfRangeException."""
    game = launch("coop_nav", trainer.port)
    trainer.handshake()
    assert len(wire.agents(trainer.reset(), COOP)) == 3
    assert len(wire.agents(trainer.step({}), COOP)) == 3  # no actions at all: zeros, no error
    trainer.command(CommandProto.STEP, {COOP: wire.discrete_actions([[1], [2]])})
    assert game.wait(timeout=20) == 1
    log = game.log_path.read_text()
    assert "ArgumentOutOfRangeException" in log and "received 2 actions for 3 agents" in log


# ------------------------------------------------------------------------------------------------ quitting


def test_quitting_sends_a_bare_header_400(trainer, launch, wire) -> None:
    """Application.quitting -> Academy.Dispose (Academy.cs:253, 644-651) -> RpcCommunicator.Dispose sends
    WrapMessage(null, 400) and ignores the answer (RpcCommunicator.cs:269-285)."""
    game = launch("coop_nav", trainer.port, "--quit-after", "2")
    trainer.handshake()
    trainer.reset()
    trainer.step({COOP: wire.discrete_actions([[0]] * 3)})
    trainer.command(CommandProto.STEP, {COOP: wire.discrete_actions([[0]] * 3)})
    bye = trainer.receive()
    assert bye.header.status == 400 and not bye.HasField("unity_output")
    trainer.command(CommandProto.STEP)  # any answer ends the call
    assert game.wait(timeout=20) == 0


# -------------------------------------------------------------------------------------------------- resets


def _rewards(message, wire) -> list[float]:
    return [info.reward for name in (TEAM0, TEAM1) for info in wire.agents(message, name)]


@pytest.mark.parametrize("unity_reset", [False, True])
def test_reset_runs_one_zero_action_step_except_the_first(trainer, launch, wire, unity_reset) -> None:
    """The first input is applied inside RpcCommunicator.Initialize (RpcCommunicator.cs:192), before the
    Academy subscribes to ResetCommandReceived (Academy.cs:462 vs 490-491): the first EnvironmentStep
    resets instead (Academy.cs:572-575) and the agents are observed at once. A later RESET arrives inside
    DecideAction (RpcCommunicator.cs:416, 300-307 -> Academy.cs:520-523, 557-562); AgentAct of the same step
    then executes the cleared, zero, actions (Academy.cs:599-602, Agent.cs:1390-1396) before the next
    AgentSendState. In battle a zero action is 'stay': the first observation after such a RESET carries one
    step cost."""
    flags = ("--unity-reset",) if unity_reset else ()
    launch("battle", trainer.port, *BATTLE, *flags)
    trainer.handshake()
    first = _rewards(trainer.reset(), wire)
    assert first == [0.0] * 6
    trainer.step({name: wire.discrete_actions([[0]] * 3) for name in (TEAM0, TEAM1)})
    again = _rewards(trainer.reset(), wire)
    expected = float(np.float32(STEP_COST)) if unity_reset else 0.0
    assert again == [expected] * 6


# ------------------------------------------------------------------------------------------ ids and order


def _battle_with_deaths(reenable: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """(ids, done) per output of team 0 over a few short battles where agents attack whenever they can."""
    flags = [*BATTLE, "--grid", "7", "--max-steps", "12", "--obstacles", "0"]
    args = build_parser(Battle).parse_args([*flags, *(["--reenable-dead"] if reenable else [])])
    game, params, rng = Battle(args, 5, 2), EnvParams(), np.random.default_rng(0)
    game.reset(params)
    outputs = []
    for _ in range(60):
        batches = game.collect()
        for name, batch in batches.items():
            live = ~batch.done
            allowed = ~batch.mask[live]
            attack = np.where(allowed[:, 13:].any(1), 13 + allowed[:, 13:].argmax(1), -1)
            move = np.array([rng.choice(np.flatnonzero(row)) if row.any() else 0 for row in allowed])
            action = np.where(attack >= 0, attack, move)[:, None].astype(np.int32)
            game.set_actions(name, batch.ids[live], np.zeros((live.sum(), 0), np.float32), action)
        if TEAM0 in batches:
            outputs.append((batches[TEAM0].ids.copy(), batches[TEAM0].done.copy()))
        game.step(params)
    return outputs


def test_reenabled_agents_get_new_ids_at_the_end_of_the_order() -> None:
    """Agent.LazyInitialize (run by OnEnable) draws m_EpisodeId and subscribes the agent's SendInfo to
    Academy.AgentSendState (Agent.cs:480-499); OnDisable unsubscribes and clears m_Initialized (Agent.cs:
    574-593). A dead battle agent is switched off and on again at the next episode (the Unity example), so it
    comes back under a new id, after the agents that stayed enabled; ids of survivors never change."""
    outputs = _battle_with_deaths(reenable=True)
    seen_ids: set[int] = set()
    dead: set[int] = set()
    revivals = 0
    for ids, done in outputs:
        deciding = ids[~done].tolist()
        new = [i for i in deciding if i not in seen_ids]
        if seen_ids and new:
            revivals += 1
            assert deciding[-len(new) :] == new, "re-enabled agents come last"
            assert min(new) > max(seen_ids), "a re-enabled agent gets a new id"
            assert not set(deciding) & dead, "a dead agent never returns under its old id"
        dead.update(ids[done & ~np.isin(ids, deciding)].tolist())
        seen_ids.update(ids.tolist())
    assert revivals >= 2
    # without the rule, every agent keeps its id for ever
    plain = {i for ids, _ in _battle_with_deaths(reenable=False) for i in ids.tolist()}
    assert plain == set(range(3)) | set(range(6, 9))


def test_unity_rule_flags_are_documented() -> None:
    text = subprocess.run(
        [sys.executable, "-m", "unimarl.sim", "battle", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    for flag in ("--unity-reset", "--quit-after", "--reenable-dead", "--behavior-type", "--package-version"):
        assert flag in text
