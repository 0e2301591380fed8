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

Head to head (:func:`play_match`, ``unimarl eval --match``; a game of two teams, ``Name?team=T`` as
SoccerTwos or a ghost self-play run's game): side A drives the behaviours of the first team, side B those of
the second, in the same games. Each agent episode's final reward (with its group reward) is read as
ML-Agents' ghost trainer reads it for ELO: > 0 a win, < 0 a loss, 0 a draw (:func:`~unimarl.trainers.
selfplay.ghost.game_result`); a side's win rate (a draw counts one half) gets a Wilson interval, and the
games' own statistics (e.g. ``Battle/team0_win``) are averaged next to it. :func:`play_match_both_sides`
plays both orientations and combines A's results.
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from unimarl.trainers.algos.mappo.plan import PolicySetup, RolloutResult, WorkerPlan, policy_setup
from unimarl.trainers.algos.mappo.policy import MAPPOPolicy
from unimarl.trainers.algos.mappo.rollout import RolloutWorker
from unimarl.trainers.core.checkpoints import checkpoint_files
from unimarl.trainers.core.config import TrainConfig, config_from_dict
from unimarl.trainers.core.errors import ConfigError, TrainerError
from unimarl.trainers.core.names import team_of
from unimarl.trainers.envs.factory import EnvFactory
from unimarl.trainers.run.intervals import bootstrap_ci, record
from unimarl.trainers.selfplay.ghost import game_result

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


def _collect(
    worker: RolloutWorker,
    weights: dict[str, dict[str, np.ndarray]],
    counts: Callable[[], dict[Any, int]],
    episodes: int,
    timeout_s: float,
    unit: str,
) -> Iterator[RolloutResult]:
    """The worker's results until every count reaches ``episodes``; raises when ``timeout_s`` passes first."""
    start = time.perf_counter()
    while min(counts().values()) < episodes:
        if time.perf_counter() - start > timeout_s:
            raise ReturnEvaluationError(f"only {counts()} of {episodes} {unit} finished in {timeout_s:.0f} s")
        yield worker.collect(weights, 64)


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
        counts = lambda: {b: len(r) for b, r in returns.items()}  # noqa: E731
        for result in _collect(worker, weights, counts, episodes, timeout_s, "episodes per behaviour"):
            for behavior, finished in result.episode_returns.items():
                returns.setdefault(behavior, []).extend(finished)
        return {b: r[:episodes] for b, r in returns.items()}
    finally:
        worker.close()


def play_match(
    factory: EnvFactory,
    side_a: MAPPOSide,
    side_b: MAPPOSide,
    *,
    episodes: int,
    num_envs: int = 1,
    seed: int = 0,
    greedy: bool = False,
    timeout_s: float = 3600.0,
) -> dict[str, Any]:
    """Head to head (module docstring): A on the game's first team, B on the second, until ``episodes``
    agent episodes of each team ended. Returns the report (JSON-ready)."""
    if episodes < 1 or num_envs < 1:
        raise ReturnEvaluationError(
            f"episodes={episodes}, num_envs={num_envs}: pass --episodes and --num-envs >= 1"
        )
    worker = RolloutWorker(factory, num_envs, seed=seed)
    try:
        specs = worker.specs()
        teams = sorted({team_of(b) for b in specs})
        if len(teams) != 2:
            raise ReturnEvaluationError(
                f"a match needs a game of two teams (behaviour ids Name?team=T); this game's behaviours are "
                f"{sorted(specs)}: compare the sides' returns instead (unimarl eval without --match)"
            )
        setups: dict[str, PolicySetup] = {}
        mapping: dict[str, str] = {}
        group: dict[str, float] = {}
        weights: dict[str, dict[str, np.ndarray]] = {}
        for key, side, team in (("A", side_a, teams[0]), ("B", side_b, teams[1])):
            own = {b: spec for b, spec in specs.items() if team_of(b) == team}
            s_setups, s_mapping, s_group, s_weights = _policies(side, own)
            setups.update({f"{key}:{n}": setup for n, setup in s_setups.items()})
            mapping.update({b: f"{key}:{n}" for b, n in s_mapping.items()})
            group.update(s_group)
            weights.update({f"{key}:{n}": w for n, w in s_weights.items()})
        deterministic = greedy and side_a.state is not None and side_b.state is not None
        worker.configure(WorkerPlan(setups, mapping, group, None, deterministic=deterministic))
        finals: dict[int, list[float]] = {t: [] for t in teams}
        returns: dict[int, list[float]] = {t: [] for t in teams}
        stats: dict[str, list[float]] = {}
        counts = lambda: {t: len(f) for t, f in finals.items()}  # noqa: E731
        for result in _collect(worker, weights, counts, episodes, timeout_s, "agent episodes per team"):
            for behavior, rewards in result.final_rewards.items():
                finals[team_of(behavior)].extend(rewards)
            for behavior, rets in result.episode_returns.items():
                returns[team_of(behavior)].extend(rets)
            for key, values in result.game_stats.items():
                stats.setdefault(key, []).extend(values)
        report: dict[str, Any] = {"episodes": episodes, "greedy": deterministic, "sides": {}}
        labels = (side_a.label, side_b.label)
        if labels[0] == labels[1]:
            labels = (f"{labels[0]} (A)", f"{labels[1]} (B)")
        for label, team in zip(labels, teams, strict=True):
            results = [game_result(r) for r in finals[team][:episodes]]
            rets = np.asarray(returns[team][:episodes], np.float64)
            report["sides"][label] = {
                "team": team,
                **record(results.count(1.0), results.count(0.5), len(results)),
                "return_mean": float(rets.mean()),
                "return_ci": bootstrap_ci(rets),
            }
        report["game_stats"] = {key: float(np.mean(v)) for key, v in sorted(stats.items()) if v}
        return report
    finally:
        worker.close()


def play_match_both_sides(
    factory: EnvFactory, side_a: MAPPOSide, side_b: MAPPOSide, **kwargs: Any
) -> dict[str, Any]:
    """:func:`play_match` with A on the first team, then on the second; A's combined record (``episodes`` is
    per team and orientation)."""
    first = play_match(factory, side_a, side_b, **kwargs)
    second = play_match(factory, side_b, side_a, **kwargs)
    (a_first, _), (_, a_second) = first["sides"].values(), second["sides"].values()
    wins, draws = a_first["wins"] + a_second["wins"], a_first["draws"] + a_second["draws"]
    games = 2 * first["episodes"]
    return {"side": side_a.label, "orientations": [first, second], **record(wins, draws, games)}


def format_match(report: dict[str, Any]) -> str:
    """A plain-text table of :func:`play_match` or :func:`play_match_both_sides`."""
    lines = [f"{'side':<36} {'team':>4} {'episodes':>8}  win rate (95% CI)      W / D / L    mean return"]
    for match in report.get("orientations", [report]):
        for label, s in match["sides"].items():
            lo, hi = s["win_rate_ci"]
            lines.append(
                f"{label[:36]:<36} {s['team']:>4} {s['wins'] + s['draws'] + s['losses']:>8}  "
                f"{s['win_rate']:.3f} [{lo:.3f}, {hi:.3f}]  {s['wins']:>4} / {s['draws']} / {s['losses']}"
                f"  {s['return_mean']:.3f}"
            )
        for key, value in match["game_stats"].items():
            lines.append(f"  game statistic {key}: {value:.3f}")
    if "orientations" in report:
        lo, hi = report["win_rate_ci"]
        lines.append(
            f"{report['side']} over both orientations: win rate {report['win_rate']:.3f} "
            f"[{lo:.3f}, {hi:.3f}] ({report['wins']} won, {report['draws']} drawn, {report['losses']} lost)"
        )
    return "\n".join(lines)


def returns_report(results: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    """The report (JSON-ready) from each side's returns: ``{side label: {behaviour: returns}}``."""
    report: dict[str, Any] = {"sides": {}}
    for label, per_behavior in results.items():
        report["sides"][label] = {
            b: {
                "episodes": len(r),
                "return_mean": float(np.mean(r)),
                "return_ci": bootstrap_ci(np.asarray(r, np.float64)),
            }
            for b, r in sorted(per_behavior.items())
        }
    labels = list(results)
    if len(labels) == 2:
        a, b = (results[label] for label in labels)
        report["difference"] = {
            behavior: {
                "mean": float(np.mean(a[behavior]) - np.mean(b[behavior])),
                "ci": bootstrap_ci(np.asarray(a[behavior]), np.asarray(b[behavior]), seed=1),
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
