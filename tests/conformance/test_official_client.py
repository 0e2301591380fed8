"""unimarl's bridge sees every sim game exactly as the official ML-Agents client (mlagents-envs 0.28.0) does.

For each stand-in game, launched as a player build (``unimarl.sim.make_build``, C# package 2.x announced so
visual observations are HWC), the official ``UnityEnvironment`` (in its own venv, see official_driver.py) and
unimarl's ``UnityConnection`` each play a few hundred steps with the same seed, the same side-channel
messages and the same deterministic action rule computed from what they decoded. Zero mismatches allowed in:

* what the clients saw, per step and behaviour: decision and terminal agent ids in order, observations
  (SHA-1 of the float32 bytes), rewards, group ids and rewards, interrupted flags, action masks, and the stats
  the game sent on the stats side channel;
* what the game received (its ``--record`` file): the command and the actions by position, every exchange;
* what the game applied from the side channels (engine configuration, environment parameter), from its log.

The Unity rules the sims model behind flags (docs/unity-semantics.md) get the same comparison, one case each
(:data:`RULES`); a client whose game closed its side or went silent writes an ``ended`` line instead.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from unimarl.bridge import (
    ActionTuple,
    AgentBatch,
    EngineConfigurationChannel,
    EnvironmentParametersChannel,
    UnityClosedError,
    UnityConnection,
    UnityTimeoutError,
)
from unimarl.sim import make_build

DRIVER = Path(__file__).with_name("official_driver.py")
#: Game, player flags. Sizes stay small because the official client parses protobuf in pure Python
#: (protobuf 3.20 has no C extension for this interpreter): the default battle (128 agents, 13x13x5 views)
#: takes ~1 s/step.
#: Episode limits are short so that terminal and interrupted agents occur within STEPS.
GAMES = {
    "coop_nav": ("coop_nav", ["--episode-length", "30"]),
    "coop_nav_continuous": ("coop_nav", ["--continuous", "--global-state", "--episode-length", "40"]),
    "battle": ("battle", ["--team-size", "6", "--grid", "14", "--view", "7", "--max-steps", "60"]),
    "visual": ("visual", ["--channels", "4", "--episode-length", "50"]),
}
STEPS = 200
SEED = 1234
PACKAGE_VERSION = "2.2.1-exp.1"
MAX_REPORTED = 12
_SIDE_CHANNEL_LOG = re.compile(r"(engine configuration: .*|environment parameter .*)$")


def _load_driver() -> ModuleType:
    spec = importlib.util.spec_from_file_location("unimarl_tests_official_driver", DRIVER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


driver = _load_driver()


def _summaries(name: str, connection: UnityConnection, steps: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    spec = connection.behavior_specs[name]
    branches = list(spec.action_spec.discrete_branches)
    part = steps.get(name)
    decision = part.decision if part is not None else AgentBatch.empty(spec)
    terminal = part.terminal if part is not None else AgentBatch.empty(spec)
    masks = driver.full_masks(decision.action_mask, len(decision), branches)
    entry = {
        "decision": driver.summarize_batch(
            decision.agent_id, decision.obs, decision.reward, decision.group_id, decision.group_reward, masks
        ),
        "terminal": driver.summarize_batch(
            terminal.agent_id,
            terminal.obs,
            terminal.reward,
            terminal.group_id,
            terminal.group_reward,
            interrupted=terminal.interrupted,
        ),
    }
    return entry, (decision, masks, spec.action_spec.continuous_size, branches)


def run_unimarl(
    build: Path,
    out: Path,
    record: Path,
    log_dir: Path,
    steps: int = STEPS,
    timeout: float = 30.0,
    reset_at: int = -1,
) -> None:
    """The same session as official_driver.run, through unimarl's UnityConnection."""
    engine, params = EngineConfigurationChannel(), EnvironmentParametersChannel()
    engine.set_configuration_parameters(**driver.ENGINE_SETTINGS)
    params.set_float_parameter(*driver.ENV_PARAMETER)
    connection = UnityConnection(
        build,
        seed=SEED,
        timeout=timeout,
        additional_args=["--record", str(record)],
        log_dir=log_dir,
        side_channels=[engine, params],
    )
    progress = [0]  # the step being played, for the ending line
    with connection, out.open("w") as trace:
        try:
            _play(connection, trace, steps, progress, reset_at)
        except (UnityClosedError, UnityTimeoutError) as e:
            ending = driver.ending_line(progress[0], type(e).__name__)
            trace.write(json.dumps(ending, sort_keys=True) + "\n")


def _play(
    connection: UnityConnection, trace: Any, steps: int, progress: list[int], reset_at: int = -1
) -> None:
    output = connection.reset()
    for step in range(steps + 1):
        progress[0] = step
        line: dict[str, Any] = {"step": step, "behaviors": {}}
        actions = {}
        for name in sorted(connection.behavior_specs):
            entry, (decision, masks, continuous_size, branches) = _summaries(name, connection, output.steps)
            line["behaviors"][name] = entry
            if len(decision):
                continuous, discrete = driver.choose_actions(
                    SEED, step, decision.agent_id, decision.obs, masks, continuous_size, branches
                )
                actions[name] = ActionTuple(continuous=continuous, discrete=discrete)
        line["stats"] = driver.summarize_stats(connection.stats.get_and_reset_stats())
        trace.write(json.dumps(line, sort_keys=True) + "\n")
        if step == reset_at:
            output = connection.reset()
        elif step < steps:
            output = connection.step(actions)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _diff(expected: Any, actual: Any, where: str, out: list[str]) -> None:
    """Append one line per differing leaf (path, official value, unimarl value)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(expected.keys() | actual.keys()):
            _diff(expected.get(key, "<missing>"), actual.get(key, "<missing>"), f"{where}.{key}", out)
    elif isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            _diff(e, a, f"{where}[{i}]", out)
    elif expected != actual:
        out.append(f"{where}: official {str(expected)[:160]} vs unimarl {str(actual)[:160]}")


def _compare_lines(official: list[dict[str, Any]], ours: list[dict[str, Any]], what: str) -> list[str]:
    problems: list[str] = []
    if len(official) != len(ours):
        problems.append(f"{what}: {len(official)} lines from the official client, {len(ours)} from unimarl")
    for i, (o, u) in enumerate(zip(official, ours, strict=False)):
        _diff(o, u, f"{what} line {i}", problems)
    return problems


def _side_channel_log(log_dir: Path) -> list[str]:
    lines = []
    for log in sorted(log_dir.glob("*.log")):
        for text in log.read_text(errors="replace").splitlines():
            match = _SIDE_CHANNEL_LOG.search(text)
            if match:
                lines.append(match[1])
    return lines


def _run_both(
    case: str,
    tmp_path: Path,
    run_official: Callable[..., str],
    cases: dict[str, tuple[str, list[str]]] = GAMES,
    steps: int = STEPS,
    timeout: int = 30,
    unimarl_flags: tuple[str, ...] = (),
    reset_at: int = -1,
) -> dict[str, Path]:
    """Play ``case`` with both clients; ``unimarl_flags`` are added to unimarl's player arguments only."""
    game, flags = cases[case]
    base = ["--package-version", PACKAGE_VERSION, *flags]
    build = make_build(game, tmp_path / "build", extra_args=base)
    ours = make_build(game, tmp_path / "build_unimarl", extra_args=[*base, *unimarl_flags])
    paths = {
        f"{who}_{kind}": tmp_path / f"{who}_{kind}.jsonl"
        for who in ("official", "unimarl")
        for kind in ("trace", "record")
    }
    for who in ("official", "unimarl"):
        (tmp_path / f"{who}_logs").mkdir()
    run_official(
        [
            str(DRIVER),
            *("--build", str(build), "--seed", str(SEED), "--steps", str(steps), "--timeout", str(timeout)),
            *("--out", str(paths["official_trace"]), "--log-folder", str(tmp_path / "official_logs")),
            *("--reset-at", str(reset_at)),
            "--",
            "--record",
            str(paths["official_record"]),
        ],
        cwd=tmp_path,
        timeout_s=120,
    )
    logs = tmp_path / "unimarl_logs"
    run_unimarl(ours, paths["unimarl_trace"], paths["unimarl_record"], logs, steps, timeout, reset_at)
    return paths


@pytest.mark.parametrize("game", sorted(GAMES))
def test_bridge_matches_official_client(game: str, tmp_path: Path, run_official: Callable[..., str]) -> None:
    paths = _run_both(game, tmp_path, run_official)
    official, ours = _lines(paths["official_trace"]), _lines(paths["unimarl_trace"])
    assert len(official) == STEPS + 1
    # The traces must not be trivially equal: agents decided, some episodes ended, a few were interrupted.
    decisions = sum(len(b["decision"]["agent_id"]) for line in official for b in line["behaviors"].values())
    terminals = sum(len(b["terminal"]["agent_id"]) for line in official for b in line["behaviors"].values())
    interrupted = sum(
        sum(b["terminal"]["interrupted"]) for line in official for b in line["behaviors"].values()
    )
    assert decisions >= STEPS and terminals > 0, f"{game}: {decisions} decisions, {terminals} terminal steps"
    assert interrupted > 0, f"{game}: no episode reached its step limit within {STEPS} steps"

    problems = _compare_lines(official, ours, "trace")
    # What the game received: the final close message differs by design (0.28 sends status 400 with a STEP
    # command, unimarl adds QUIT), so every exchange but the closes is compared. unimarl's close must reach
    # the game; 0.28's may not (see _without_closes).
    official_record, our_record = _lines(paths["official_record"]), _lines(paths["unimarl_record"])
    assert our_record[-1]["status"] == 400
    problems += _compare_lines(*_without_closes(official_record, our_record), "game record")
    assert len(our_record) >= STEPS + 1  # the rest equals the official record, line by line

    official_side, our_side = (
        _side_channel_log(paths["official_trace"].parent / f"{who}_logs") for who in ("official", "unimarl")
    )
    # Resolution, quality, time scale, frame rate: four engine messages; then the environment parameter.
    engine_lines = [line for line in official_side if line.startswith("engine configuration")]
    assert len(engine_lines) == 4, f"game log lacks the engine configuration: {official_side}"
    assert any(driver.ENV_PARAMETER[0] in line for line in official_side), official_side
    if official_side != our_side:
        problems.append(f"side channels applied by the game: official {official_side} vs unimarl {our_side}")
    if problems:
        pytest.fail(
            f"{game}: {len(problems)} mismatches between the official client and unimarl, first ones:\n"
            + "\n".join(problems[:MAX_REPORTED]),
            pytrace=False,
        )


# ------------------------------------------------------------------------------------------------ Unity rules
# Rules of com.unity.ml-agents' C# runtime that the sims model behind flags (docs/unity-semantics.md): both
# clients against the same sim with the rule on must agree, as they would against a Unity player.
RULE_STEPS = 120
BATTLE_SMALL = ["--team-size", "6", "--grid", "12", "--view", "5", "--max-steps", "40", "--obstacles", "0"]
RULES: dict[str, tuple[str, list[str]]] = {
    # Agent.cs:480-499, 574-593: a re-enabled agent gets a new id and is reported after the others
    "reenable_dead": ("battle", [*BATTLE_SMALL, "--reenable-dead"]),
    # DecisionRequester: only deciding agents are reported; rewards accumulate in between
    "decision_period": ("coop_nav", ["--decision-period", "3", "--episode-length", "20"]),
    # 4.0.1 writes rank-3 floats C, H, W (TensorExtensions.cs:60-62)
    "package_4_0_1": ("battle", [*BATTLE_SMALL, "--package-version", "4.0.1"]),
    # Academy.Dispose -> header 400 (RpcCommunicator.cs:269-285): both clients stop at the same step
    "quit": ("coop_nav", ["--quit-after", "30", "--episode-length", "12"]),
    # no Default agent: no exchange after the handshake (RpcCommunicator.cs:320-329): both time out
    "inference_only": ("coop_nav", ["--behavior-type", "inference"]),
    # a RESET after the first: one zero-action step before the first observations (Academy.cs:599-602)
    "unity_reset": ("battle", [*BATTLE_SMALL, "--unity-reset"]),
}
#: Cases whose clients reset again (instead of stepping) after this step.
RESET_AT = {"unity_reset": 50}


def _without_closes(
    official: list[dict[str, Any]], ours: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Both records without a final close (status 400; 0.28 sends it with STEP, unimarl with QUIT).

    0.28's ``RpcCommunicator.close`` queues its 400 and at once calls ``server.stop(False)`` (no grace), which
    can cancel the game's waiting call before the 400 is returned, so the official record may lack its close.
    """
    if official and official[-1]["status"] == 400:
        official = official[:-1]
    if ours and ours[-1]["status"] == 400:
        ours = ours[:-1]
    return official, ours


def _compare_records(paths: dict[str, Path]) -> list[str]:
    """The games' records compared without their final closes (:func:`_without_closes`)."""
    official, ours = (_lines(paths[f"{who}_record"]) for who in ("official", "unimarl"))
    return _compare_lines(*_without_closes(official, ours), "game record")


def _ids(lines: list[dict[str, Any]]) -> set[int]:
    return {
        i
        for line in lines
        for b in line.get("behaviors", {}).values()
        for part in ("decision", "terminal")
        for i in b[part]["agent_id"]
    }


@pytest.mark.parametrize("rule", sorted(RULES))
def test_unity_rules_match_official_client(
    rule: str, tmp_path: Path, run_official: Callable[..., str]
) -> None:
    timeout = 4 if rule == "inference_only" else 30
    reset_at = RESET_AT.get(rule, -1)
    paths = _run_both(rule, tmp_path, run_official, RULES, RULE_STEPS, timeout, reset_at=reset_at)
    official, ours = _lines(paths["official_trace"]), _lines(paths["unimarl_trace"])
    problems = _compare_lines(official, ours, "trace")
    problems += _compare_records(paths)
    assert not problems, f"{rule}: " + "\n".join(problems[:MAX_REPORTED])
    if rule == "reenable_dead":  # some agent died and came back under a new id (ids 0..11 at the start)
        assert max(_ids(official)) >= 12
    elif rule == "quit":
        assert official[-1] == {"step": 29, "ended": "closed"} and len(official) == 31  # the 30th step
    elif rule == "inference_only":
        assert official == [{"step": 0, "ended": "timeout"}]
    elif rule == "unity_reset":  # the first observations after the RESET carry one step's cost (stay)
        after = official[RESET_AT[rule] + 1]["behaviors"]
        rewards = [r for b in after.values() for r in b["decision"]["reward"]]
        assert rewards == [float(np.float32(-0.005))] * 12 and len(official) == RULE_STEPS + 1
    else:
        assert len(official) == RULE_STEPS + 1


def test_3_0_0_floats_decode_as_the_official_client_decodes_4_0_1(
    tmp_path: Path, run_official: Callable[..., str]
) -> None:
    """3.0.0 writes rank-3 floats H, W, C under a [C, H, W] shape (3.0.0 TensorExtensions.cs:56-63), which the
    official 0.28 client does not undo; unimarl does, so unimarl on a 3.0.0 game sees what the official client
    sees on the same game built with 4.0.1 (same observations, hence the same actions)."""
    paths = _run_both(
        "package_4_0_1",
        tmp_path,
        run_official,
        RULES,
        RULE_STEPS,
        unimarl_flags=("--package-version", "3.0.0"),
    )
    official, ours = _lines(paths["official_trace"]), _lines(paths["unimarl_trace"])
    problems = _compare_lines(official, ours, "trace")
    problems += _compare_records(paths)
    assert not problems, "\n".join(problems[:MAX_REPORTED])
    assert len(official) == RULE_STEPS + 1
