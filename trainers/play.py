"""``unimarl play``: run a game in inference mode with pushed ONNX policies and measure episode returns.

The trainer opens the game as usual (a Unity build, or ``sim:NAME``, started with ``--behavior-type
inference`` so its agents act from received models), pushes one model per behaviour through the policy side
channel and waits for the game's acknowledgements; a rejection ends the run with the game's reason. From
then on the trainer's actions do not matter (it sends samples of the action space to keep the protocol
going): the game's agents act from the pushed model. Episodes are counted per agent, and only those that
start after every acknowledgement, so no episode mixes the game's previous policy with the pushed one.

Models: a single ``.onnx`` file (pushed to every behaviour of the game, or to ``behavior``), or a run folder
(each behaviour gets its policy from ``onnx/policies.json``, following the run's ``policy_mapping``).
A Unity build needs its agents set to *Inference Only* (or *Heuristic Only* driving ``PolicyHotSwap``), see
``unity_project/README.md``.
"""

from __future__ import annotations

import logging
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from unimarl.bridge.parallel_env import UnityParallelEnv
from unimarl.bridge.policy_channel import PolicyChannel
from unimarl.trainers.envs import agent_behavior
from unimarl.trainers.errors import TrainerError
from unimarl.trainers.policy_export import ONNX_DIR, policy_for, read_manifest

logger = logging.getLogger(__name__)


class PlayError(TrainerError):
    """The game rejected a pushed model, never acknowledged it, or no model fits one of its behaviours."""


@dataclass
class PlayResult:
    """Episode returns per behaviour, and the model each behaviour ran (behaviour -> file)."""

    returns: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    models: dict[str, Path] = field(default_factory=dict)
    env_steps: int = 0


def models_for(source: str | Path, behaviors: list[str], only: str | None = None) -> dict[str, Path]:
    """The model file each behaviour runs, from a ``.onnx`` file or a run folder."""
    source = Path(source)
    targets = [b for b in behaviors if only is None or b == only or b.split("?", 1)[0] == only]
    if not targets:
        raise PlayError(f"the game has no behaviour {only!r}; it has {behaviors}")
    if source.is_file():
        return {b: source for b in targets}
    manifest = read_manifest(source)
    config_path = source / "config.yaml"
    mapping = {}
    if config_path.exists():
        mapping = dict((yaml.safe_load(config_path.read_text()) or {}).get("policy_mapping") or {})
    chosen = {}
    for behavior in targets:
        policy = policy_for(behavior, manifest, mapping)
        if policy is None:
            raise PlayError(
                f"{source} has no policy for behaviour {behavior!r} (it has {sorted(manifest)}); "
                "pass a .onnx file, or --behavior to play only some behaviours"
            )
        chosen[behavior] = source / ONNX_DIR / manifest[policy]["file"]
    return chosen


def open_game(
    env: str, args: list[str], log_dir: Path, seed: int, timeout: float
) -> tuple[UnityParallelEnv, PolicyChannel]:
    """A game whose agents act from pushed models (``sim:NAME`` or a build path), and its policy channel."""
    from unimarl import sim

    file_name = env
    if env.startswith("sim:"):
        extra = [*args, "--behavior-type", "inference"]
        file_name = str(sim.make_build(env[4:], log_dir / "build", extra_args=extra))
    channel = PolicyChannel()
    game = UnityParallelEnv(
        file_name,
        seed=seed,
        timeout=timeout,
        side_channels=[channel],
        additional_args=() if env.startswith("sim:") else tuple(args),
        log_dir=log_dir / "logs",
    )
    return game, channel


def _any_actions(game: UnityParallelEnv, rng: np.random.Generator) -> dict[str, Any]:
    actions = {}
    for agent in game.agents:
        space = game.action_space(agent)
        space.seed(int(rng.integers(2**31)))
        actions[agent] = space.sample()
    return actions


def play(
    source: str | Path,
    env: str,
    *,
    episodes: int = 10,
    env_args: list[str] | None = None,
    behavior: str | None = None,
    seed: int = 0,
    timeout: float = 60.0,
    max_steps: int = 100_000,
    work_dir: str | Path | None = None,
) -> PlayResult:
    """Push the models into the game and play until ``episodes`` agent episodes ended after the swap."""
    with tempfile.TemporaryDirectory(prefix="unimarl-play-") as tmp:
        game, channel = open_game(env, list(env_args or []), Path(work_dir or tmp), seed, timeout)
        try:
            return _play(game, channel, source, episodes, behavior, seed, max_steps)
        finally:
            game.close()


def _play(
    game: UnityParallelEnv,
    channel: PolicyChannel,
    source: str | Path,
    episodes: int,
    behavior: str | None,
    seed: int,
    max_steps: int,
) -> PlayResult:
    rng = np.random.default_rng(seed)
    game.reset(seed=seed)
    result = PlayResult(models=models_for(source, sorted(game.behavior_specs), behavior))
    for name, path in result.models.items():
        channel.push(name, 1, path.read_bytes())
    excluded: set[str] = set()
    running: dict[str, float] = {}
    finished = 0
    swapped = False
    while finished < episodes:
        if result.env_steps >= max_steps:
            raise PlayError(f"{finished} of {episodes} episodes ended in {max_steps} steps: raise max_steps")
        _, rewards, terminations, truncations, infos = game.step(_any_actions(game, rng))
        result.env_steps += 1
        if not swapped:
            swapped = _check_acks(channel, result.models, result.env_steps)
            excluded.update(game.agents)  # episodes under way at the swap began under the old policy
            continue
        for agent, reward in rewards.items():
            name = agent_behavior(game, agent, infos.get(agent))
            if agent in excluded or name not in result.models:  # only agents acting from a pushed model
                continue
            running[agent] = running.get(agent, 0.0) + float(reward)
            if terminations.get(agent) or truncations.get(agent):
                result.returns[name].append(running.pop(agent))
                finished += 1
    return result


def _check_acks(channel: PolicyChannel, models: dict[str, Path], steps: int) -> bool:
    """True once every behaviour acknowledged its model; raises on a rejection or after 100 steps."""
    status = channel.status()
    for name in models:
        ack = status[name].last_ack
        if ack is not None and not ack.ok:
            raise PlayError(f"the game rejected the model for {name} ({ack.reason.name}): {ack.error}")
    if all(status[name].running_version == 1 for name in models):
        logger.info("the game runs the pushed models after %d steps", steps)
        return True
    if steps >= 100:
        missing = sorted(n for n in models if status[n].running_version != 1)
        raise PlayError(
            f"no acknowledgement for {missing} after {steps} steps: does the game register the policy "
            "side channel (unity_project/README.md, PolicyHotSwap)?"
        )
    return False
