"""Drive a game with the official ML-Agents client and write down everything it saw, one JSON line per step.

Runs as a script inside the official client's venv (mlagents-envs 0.28.0, numpy 1.23)::

    python official_driver.py --build PATH --seed S --steps N --out trace.jsonl [--log-folder DIR]
        [--reset-at K] [-- ARGS]

and is imported by tests/conformance/test_official_client.py, which drives the same game with unimarl's bridge
using the same :func:`choose_actions` rule and the same :func:`summarize_steps` normalisation, so the two
traces can be compared line by line. Standard library and numpy only at import time.

The action rule is deterministic and depends only on the seed, the step index, the agent id, the observation
bytes and the mask: a client that decoded anything differently sends different actions, and the game's own
record (``--record``) shows it too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: Side-channel values both clients send before the first reset.
ENGINE_SETTINGS = {"width": 96, "height": 72, "quality_level": 3, "time_scale": 7.0, "target_frame_rate": 40}
ENV_PARAMETER = ("conformance_probe", 0.625)


def _digest(array: np.ndarray) -> list[Any]:
    """Shape, dtype kind and SHA-1 of the C-order bytes (float32 for floats, uint8 for bools)."""
    if array.dtype == bool:
        data = np.ascontiguousarray(array, dtype=np.uint8)
    else:
        data = np.ascontiguousarray(array, dtype=np.float32)
    return [list(array.shape), hashlib.sha1(data.tobytes()).hexdigest()]


def agent_key(seed: int, step: int, agent_id: int, obs: Sequence[np.ndarray], mask: np.ndarray | None) -> int:
    """A 32-bit key derived from everything the client decoded for one agent."""
    key = zlib.crc32(np.array([seed, step, agent_id], dtype="<i8").tobytes())
    for o in obs:
        key = zlib.crc32(np.ascontiguousarray(o, dtype="<f4").tobytes(), key)
    if mask is not None:
        key = zlib.crc32(np.ascontiguousarray(mask, dtype=np.uint8).tobytes(), key)
    return key


def choose_actions(
    seed: int,
    step: int,
    agent_ids: Sequence[int],
    obs: Sequence[np.ndarray],
    masks: Sequence[np.ndarray] | None,
    continuous_size: int,
    branches: Sequence[int],
) -> tuple[np.ndarray, np.ndarray]:
    """Actions for the decision agents in order: continuous [n, c] in [-1, 1], discrete [n, b] unmasked.

    ``obs[k]`` is [n, *shape]; ``masks[b]`` is bool [n, branches[b]] with True = disabled (or None).
    """
    n = len(agent_ids)
    continuous = np.zeros((n, continuous_size), np.float32)
    discrete = np.zeros((n, len(branches)), np.int32)
    for i, agent_id in enumerate(agent_ids):
        mask_row = None if masks is None else np.concatenate([m[i] for m in masks]) if len(masks) else None
        key = agent_key(seed, step, int(agent_id), [o[i] for o in obs], mask_row)
        rng = np.random.RandomState(key)  # same stream in numpy 1.23 and 2.x (legacy MT19937)
        if continuous_size:
            continuous[i] = (rng.randint(0, 2001, size=continuous_size) - 1000) / 1000.0
        for b, size in enumerate(branches):
            allowed = np.arange(size) if masks is None else np.flatnonzero(~masks[b][i])
            discrete[i, b] = int(allowed[rng.randint(0, len(allowed))]) if len(allowed) else 0
    return continuous, discrete


def full_masks(
    masks: Sequence[np.ndarray] | None, n: int, branches: Sequence[int]
) -> list[np.ndarray] | None:
    """Masks with "no mask sent" made explicit (all enabled): the official client reports it that way."""
    if not branches:
        return None
    if masks is None:
        return [np.zeros((n, size), bool) for size in branches]
    return [np.asarray(m, bool) for m in masks]


def summarize_batch(
    agent_id: np.ndarray,
    obs: Sequence[np.ndarray],
    reward: np.ndarray,
    group_id: np.ndarray,
    group_reward: np.ndarray,
    masks: Sequence[np.ndarray] | None = None,
    interrupted: np.ndarray | None = None,
) -> dict[str, Any]:
    """One decision or terminal batch as JSON-able values (exact floats, digests for observations)."""
    summary: dict[str, Any] = {
        "agent_id": [int(a) for a in agent_id],
        "reward": [float(r) for r in np.asarray(reward, np.float32)],
        "group_id": [int(g) for g in group_id],
        "group_reward": [float(r) for r in np.asarray(group_reward, np.float32)],
        "obs": [_digest(np.asarray(o)) for o in obs],
    }
    if masks is not None:
        summary["mask"] = [_digest(m) for m in masks]
    if interrupted is not None:
        summary["interrupted"] = [bool(x) for x in interrupted]
    return summary


def summarize_stats(received: dict[str, list[tuple[float, Any]]]) -> dict[str, list[list[float]]]:
    """Stats per key as [value, aggregation code] (0.28's aggregation is a plain Enum, ours an IntEnum)."""
    return {k: [[float(v), int(getattr(a, "value", a))] for v, a in vs] for k, vs in sorted(received.items())}


#: How each client reports the game closing its side (header 400) or going silent, in both traces.
ENDINGS = {
    "UnityCommunicatorStoppedException": "closed",
    "UnityClosedError": "closed",
    "UnityTimeOutException": "timeout",
    "UnityTimeoutError": "timeout",
}


def ending_line(step: int, error: str) -> dict[str, Any]:
    """The trace line written when a client's reset/step raised ``error`` (a class name) at ``step``."""
    return {"step": step, "ended": ENDINGS.get(error, error)}


def free_port() -> int:
    """A port free right now on every interface (the official client binds [::]:port itself)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def _official_steps(env: Any, name: str, seed: int, step: int) -> tuple[dict[str, Any], Any]:
    spec = env.behavior_specs[name]
    branches = list(spec.action_spec.discrete_branches)
    decision, terminal = env.get_steps(name)
    masks = full_masks(decision.action_mask, len(decision), branches)
    entry = {
        "decision": summarize_batch(
            decision.agent_id, decision.obs, decision.reward, decision.group_id, decision.group_reward, masks
        ),
        "terminal": summarize_batch(
            terminal.agent_id,
            terminal.obs,
            terminal.reward,
            terminal.group_id,
            terminal.group_reward,
            interrupted=terminal.interrupted,
        ),
    }
    action = None
    if len(decision):
        continuous, discrete = choose_actions(
            seed, step, decision.agent_id, decision.obs, masks, spec.action_spec.continuous_size, branches
        )
        from mlagents_envs.base_env import ActionTuple

        action = ActionTuple(continuous=continuous, discrete=discrete)
    return entry, action


def run(
    build: str,
    seed: int,
    steps: int,
    out: Path,
    extra_args: list[str],
    timeout: int,
    log_folder: str | None,
    reset_at: int = -1,
) -> None:
    from mlagents_envs.environment import UnityEnvironment
    from mlagents_envs.side_channel.engine_configuration_channel import EngineConfigurationChannel
    from mlagents_envs.side_channel.environment_parameters_channel import EnvironmentParametersChannel
    from mlagents_envs.side_channel.stats_side_channel import StatsSideChannel

    engine, params, stats = EngineConfigurationChannel(), EnvironmentParametersChannel(), StatsSideChannel()
    engine.set_configuration_parameters(**ENGINE_SETTINGS)
    params.set_float_parameter(*ENV_PARAMETER)
    env = UnityEnvironment(
        file_name=build,
        base_port=free_port(),
        seed=seed,
        no_graphics=True,
        timeout_wait=timeout,
        additional_args=extra_args,
        side_channels=[engine, params, stats],
        log_folder=log_folder,
    )
    from mlagents_envs.exception import UnityCommunicatorStoppedException, UnityTimeOutException

    step = 0
    with out.open("w") as trace:
        try:
            env.reset()
            for step in range(steps + 1):
                line: dict[str, Any] = {"step": step, "behaviors": {}}
                for name in sorted(env.behavior_specs):
                    entry, action = _official_steps(env, name, seed, step)
                    line["behaviors"][name] = entry
                    if action is not None:
                        env.set_actions(name, action)
                line["stats"] = summarize_stats(stats.get_and_reset_stats())
                trace.write(json.dumps(line, sort_keys=True) + "\n")
                if step == reset_at:
                    env.reset()
                elif step < steps:
                    env.step()
        except (UnityCommunicatorStoppedException, UnityTimeOutException) as e:
            trace.write(json.dumps(ending_line(step, type(e).__name__), sort_keys=True) + "\n")
        finally:
            env.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", required=True, help="game executable (as made by unimarl.sim.make_build)")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True, help="JSON-lines trace to write")
    parser.add_argument("--timeout", type=int, default=30, help="seconds to wait for the game")
    parser.add_argument("--log-folder", default=None, help="folder for the game's Player-0.log")
    parser.add_argument("--reset-at", type=int, default=-1, help="reset instead of stepping after this step")
    parser.add_argument("extra", nargs="*", help="further player arguments (after --)")
    args = parser.parse_args(argv)
    run(args.build, args.seed, args.steps, args.out, args.extra, args.timeout, args.log_folder, args.reset_at)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
