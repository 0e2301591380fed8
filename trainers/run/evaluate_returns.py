"""Evaluation of MAPPO runs: N agent episodes per behaviour, mean return with a bootstrap interval.

A side is a MAPPO checkpoint (``path/to/checkpoint-N.pt`` or a run folder, whose latest checkpoint is used)
or ``random``. Each side plays the game on its own, through the training rollout worker, so returns are
counted exactly as the ``return/<behaviour>`` metrics of training (group rewards weighted by the run's
``group_reward_weight``). Policies act by sampling as in training (``greedy``: the mean / argmax, which is
what the exported model's ``deterministic_*`` outputs give). ``random`` is the untrained actor of the same
network shape: its policy heads are initialised near zero (gain 0.01), so discrete actions are close to
uniform and continuous ones close to N(0, 1) before the action mapping; it always samples.

Reported per side and behaviour: agent episodes, mean return and its 95% percentile-bootstrap interval; for
two sides the difference of means (A - B) with a bootstrap interval from resampling both sides. Episodes of
agents that share a game episode are not independent (teammates share rewards), so with team rewards the
intervals are narrower than the truth; use ``--num-envs`` and many episodes for a fair comparison.
"""

from __future__ import annotations

import logging
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from unimarl.trainers.algos.mappo.plan import PolicySetup, WorkerPlan, policy_setup
from unimarl.trainers.algos.mappo.policy import MAPPOPolicy
from unimarl.trainers.algos.mappo.rollout import RolloutWorker
from unimarl.trainers.core.checkpoints import checkpoint_files
from unimarl.trainers.core.config import TrainConfig, config_from_dict
from unimarl.trainers.core.errors import ConfigError, TrainerError
from unimarl.trainers.envs.factory import EnvFactory

logger = logging.getLogger(__name__)

RANDOM = "random"


class ReturnEvaluationError(TrainerError):
    """A MAPPO side cannot be loaded, does not fit the game, or too few episodes finished in time."""


@dataclass(frozen=True)
class MAPPOSide:
    """One contestant: a MAPPO checkpoint with its run's config, or the random policy (``state`` None)."""

    label: str
    state: dict[str, Any] | None = None
    config: TrainConfig = field(default_factory=TrainConfig)


def _checkpoint_path(path: Path) -> Path | None:
    if path.is_dir():
        found = checkpoint_files(path / "checkpoints") or checkpoint_files(path)
        return found[-1] if found else None
    return path if path.suffix == ".pt" and path.exists() else None


def load_mappo_side(text: str) -> MAPPOSide | None:
    """``random``, or a MAPPO checkpoint or run folder; None when ``text`` is neither (a mean-field run)."""
    if text == RANDOM:
        return MAPPOSide(RANDOM)
    checkpoint = _checkpoint_path(Path(text))
    if checkpoint is None:
        return None
    try:
        state = torch.load(checkpoint, weights_only=True, map_location="cpu")
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError):
        return None
    if not isinstance(state, dict) or "setups" in state or "policies" not in state:
        return None  # a mean-field checkpoint (it records its setups) or something else
    run = checkpoint.parent.parent
    config_path = run / "config.yaml"
    try:
        config = config_from_dict(yaml.safe_load(config_path.read_text()))
    except (OSError, yaml.YAMLError, ConfigError) as e:
        raise ReturnEvaluationError(
            f"{checkpoint} is a MAPPO checkpoint but its run's {config_path} cannot be read ({e}); "
            "evaluate a checkpoint inside the run folder that wrote it"
        ) from e
    return MAPPOSide(f"{run.name}/{checkpoint.name}", state, config)


def _policies(
    side: MAPPOSide, specs: dict[str, Any]
) -> tuple[dict[str, PolicySetup], dict[str, str], dict[str, float], dict[str, dict[str, np.ndarray]]]:
    """Setups, behaviour -> policy, group-reward weights and weights of ``side`` for the game's behaviours."""
    setups: dict[str, PolicySetup] = {}
    mapping: dict[str, str] = {}
    group: dict[str, float] = {}
    for behavior, spec in sorted(specs.items()):
        name, setup, weight = policy_setup(side.config, behavior, spec)
        mapping[behavior], group[behavior] = name, weight
        setups.setdefault(name, setup)
    weights: dict[str, dict[str, np.ndarray]] = {}
    for i, (name, setup) in enumerate(sorted(setups.items())):
        policy = MAPPOPolicy(setup.spec, setup.hyperparameters, setup.network, seed=i)
        if side.state is not None:
            saved = side.state["policies"].get(name)
            if saved is None:
                raise ReturnEvaluationError(
                    f"{side.label} holds policies {sorted(side.state['policies'])}, none for '{name}' "
                    f"(the game's behaviours: {sorted(specs)}); evaluate it on the game it was trained on"
                )
            try:
                policy.load_state_dict(saved)
            except TrainerError as e:
                raise ReturnEvaluationError(f"{side.label}, policy '{name}': {e}") from e
        weights[name] = policy.get_weights()
    return setups, mapping, group, weights


def play_episodes(
    factory: EnvFactory,
    side: MAPPOSide,
    *,
    episodes: int,
    num_envs: int = 1,
    seed: int = 0,
    greedy: bool = False,
    timeout_s: float = 3600.0,
) -> dict[str, list[float]]:
    """The returns of the first ``episodes`` agent episodes of every behaviour that ``side`` plays."""
    if episodes < 1 or num_envs < 1:
        raise ReturnEvaluationError(
            f"episodes={episodes}, num_envs={num_envs}: pass --episodes and --num-envs >= 1"
        )
    worker = RolloutWorker(factory, num_envs, seed=seed)
    try:
        specs = worker.specs()
        setups, mapping, group, weights = _policies(side, specs)
        deterministic = greedy and side.state is not None
        worker.configure(WorkerPlan(setups, mapping, group, side.config, deterministic=deterministic))
        returns: dict[str, list[float]] = {b: [] for b in specs}
        start = time.perf_counter()
        while min(len(r) for r in returns.values()) < episodes:
            if time.perf_counter() - start > timeout_s:
                counts = {b: len(r) for b, r in returns.items()}
                raise ReturnEvaluationError(
                    f"only {counts} of {episodes} episodes per behaviour finished in {timeout_s:.0f} s"
                )
            result = worker.collect(weights, 64)
            for behavior, finished in result.episode_returns.items():
                returns.setdefault(behavior, []).extend(finished)
        return {b: r[:episodes] for b, r in returns.items()}
    finally:
        worker.close()


def bootstrap_mean_ci(
    values: np.ndarray, other: np.ndarray | None = None, seed: int = 0, resamples: int = 2000
) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean of ``values`` (minus the mean of ``other``, resampled
    independently, when given)."""
    rng = np.random.default_rng(seed)
    means = rng.choice(values, size=(resamples, len(values)), replace=True).mean(axis=1)
    if other is not None:
        means = means - rng.choice(other, size=(resamples, len(other)), replace=True).mean(axis=1)
    return (float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5)))


def returns_report(results: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    """The report (JSON-ready) from each side's returns: ``{side label: {behaviour: returns}}``."""
    report: dict[str, Any] = {"sides": {}}
    for label, per_behavior in results.items():
        report["sides"][label] = {
            b: {
                "episodes": len(r),
                "return_mean": float(np.mean(r)),
                "return_ci": bootstrap_mean_ci(np.asarray(r, np.float64)),
            }
            for b, r in sorted(per_behavior.items())
        }
    labels = list(results)
    if len(labels) == 2:
        a, b = (results[label] for label in labels)
        report["difference"] = {
            behavior: {
                "mean": float(np.mean(a[behavior]) - np.mean(b[behavior])),
                "ci": bootstrap_mean_ci(np.asarray(a[behavior]), np.asarray(b[behavior]), seed=1),
            }
            for behavior in sorted(set(a) & set(b))
        }
    return report


def format_returns(report: dict[str, Any]) -> str:
    """A plain-text table of :func:`returns_report`'s report."""
    lines = [f"{'side':<36} {'behaviour':<28} {'episodes':>8}  mean return (95% CI)"]
    for label, per_behavior in report["sides"].items():
        for behavior, s in per_behavior.items():
            lo, hi = s["return_ci"]
            lines.append(
                f"{label[:36]:<36} {behavior[:28]:<28} {s['episodes']:>8}  "
                f"{s['return_mean']:.3f} [{lo:.3f}, {hi:.3f}]"
            )
    if "difference" in report:
        first, second = list(report["sides"])
        for behavior, d in report["difference"].items():
            lo, hi = d["ci"]
            lines.append(f"{first} - {second}, {behavior}: {d['mean']:+.3f} [{lo:+.3f}, {hi:+.3f}]")
    return "\n".join(lines)
