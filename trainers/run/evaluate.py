"""Evaluation of mean-field policies: N battles between two sides, with confidence intervals.

A side is a policy from a checkpoint of a mean-field run (``path/to/checkpoint-N.pt`` or a run folder, whose
latest checkpoint is used; ``path#POLICY`` picks one policy of several) or a baseline (``random``,
``scripted``). Side A drives the game's first behaviour in sorted order (battle: ``Battle?team=0``), side B
the second. Policies act by sampling as the run's exported models do: an MF-Q / IQL side at the temperature
its training reached (the checkpoint's progress on the schedule, :mod:`unimarl.trainers.export.meanfield`),
not at the schedule's end (``greedy`` takes the argmax).

Reported per side: win rate (a battle is won with more kills than the other side - the reference rule - and
a draw counts one half) with a Wilson score interval; mean kills and mean agent return with bootstrap
percentile intervals. Battles are counted as environments finish them (several environments play at once).
:func:`evaluate_both_sides` plays both orientations (A on either team) and reports A's combined result, which
removes any advantage of one team's side from the comparison.
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unimarl.trainers.algos.meanfield.learners import MeanFieldHyperparameters
from unimarl.trainers.algos.meanfield.mfq import scheduled
from unimarl.trainers.algos.meanfield.worker import MFPlan, MFPolicySetup, MFRolloutWorker, Outcome
from unimarl.trainers.core.errors import TrainerError
from unimarl.trainers.envs.factory import EnvFactory
from unimarl.trainers.run.intervals import bootstrap_ci, record

logger = logging.getLogger(__name__)

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)\.pt$")  # the names RunDir.save_checkpoint writes


class EvaluationError(TrainerError):
    """A side cannot be loaded or the evaluation cannot run (bad checkpoint, unknown policy, no battles)."""


@dataclass(frozen=True)
class Side:
    """One contestant: a baseline name, or a checkpointed policy."""

    label: str
    baseline: str | None = None
    trainer_type: str = ""
    hyperparameters: MeanFieldHyperparameters | None = None
    """For a Q policy, its temperature schedule is pinned to :attr:`temperature`."""
    weights: dict[str, np.ndarray] | None = None
    temperature: float | None = None
    """A Q policy's Boltzmann temperature: the one its training reached (None for actor policies)."""


def load_side(text: str) -> Side:
    """``random`` / ``scripted`` / ``CHECKPOINT_OR_RUN_DIR[#POLICY]``."""
    if text in ("random", "scripted"):
        return Side(text, baseline=f"baseline:{text}")
    path_text, _, policy = text.partition("#")
    path = Path(path_text)
    if path.is_dir():
        found = sorted(
            (int(m[1]), p) for p in path.glob("**/checkpoint-*.pt") if (m := _CHECKPOINT.match(p.name))
        )
        if not found:
            raise EvaluationError(f"no checkpoint-*.pt under {path}; pass a checkpoint file or a run folder")
        path = found[-1][1]
    if not path.exists():
        raise EvaluationError(f"side '{text}': {path} does not exist; pass random, scripted or a checkpoint")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError) as e:
        raise EvaluationError(f"{path} is not a readable checkpoint ({e}); pass a checkpoint-*.pt") from e
    setups = state.get("setups") if isinstance(state, dict) else None
    if not setups:
        raise EvaluationError(f"{path} is not a checkpoint of a mean-field (mfq/mfac) run")
    name = policy or sorted(setups)[0]
    if name not in setups:
        raise EvaluationError(f"{path} holds policies {sorted(setups)}, not '{name}'; use {path}#NAME")
    hp = MeanFieldHyperparameters(**setups[name]["hyperparameters"])
    pstate = state["policies"][name]
    net = pstate.get("q_online", pstate.get("actor"))
    weights = {k: v.numpy() for k, v in net.items()}
    label = f"{path.parent.parent.name}/{path.name}#{name}"  # run folder / checkpoint
    temperature = None
    if "q_online" in pstate:
        progress = (pstate.get("counters") or {}).get("progress")
        if progress is None:
            raise EvaluationError(
                f"{path}: policy '{name}' records no training progress (counters.progress), so the "
                "temperature it reached is unknown; resume the run for one checkpoint and pass that one"
            )
        # the temperature the run reached, as the export uses it (contract_policy); the worker sets
        # one progress for every actor, so the schedule is pinned to that temperature
        temperature = scheduled([(float(p), float(t)) for p, t in hp.temperature], float(progress))
        hp = dataclasses.replace(hp, temperature=[[0.0, temperature], [1.0, temperature]])
    return Side(label, None, str(setups[name]["trainer_type"]), hp, weights, temperature)


def summarise(outcomes: list[Outcome], behaviors: tuple[str, str], labels: tuple[str, str]) -> dict[str, Any]:
    """The report (plain data, JSON-ready) from finished battles."""
    n = len(outcomes)
    if labels[0] == labels[1]:
        labels = (f"{labels[0]} (A)", f"{labels[1]} (B)")
    report: dict[str, Any] = {"battles": n, "sides": {}}
    for me, other, label in (
        (behaviors[0], behaviors[1], labels[0]),
        (behaviors[1], behaviors[0], labels[1]),
    ):
        kills = np.array([o.kills[me] for o in outcomes], np.float64)
        theirs = np.array([o.kills[other] for o in outcomes], np.float64)
        rets = np.array([o.returns.get(me, 0.0) for o in outcomes], np.float64)
        report["sides"][label] = {
            "behavior": me,
            **record(int((kills > theirs).sum()), int((kills == theirs).sum()), n),
            "kills_mean": float(kills.mean()) if n else float("nan"),
            "kills_ci": bootstrap_ci(kills),
            "return_mean": float(rets.mean()) if n else float("nan"),
            "return_ci": bootstrap_ci(rets, seed=1),
        }
    return report


def evaluate(
    factory: EnvFactory,
    side_a: Side,
    side_b: Side,
    *,
    battles: int = 50,
    num_envs: int = 1,
    seed: int = 0,
    greedy: bool = False,
    timeout_s: float = 3600.0,
    mean_action_ablation: str = "",
) -> dict[str, Any]:
    """Play until ``battles`` battles have finished; returns :func:`summarise`'s report (+ throughput).
    ``mean_action_ablation``: ``zero`` or ``shuffle`` what mean-field sides see of their neighbours
    (:attr:`~unimarl.trainers.algos.meanfield.worker.MFPlan.mean_action_ablation`)."""
    if mean_action_ablation not in ("", "zero", "shuffle"):
        raise EvaluationError(f"mean_action_ablation {mean_action_ablation!r}: use zero or shuffle")
    if battles < 1 or num_envs < 1:
        raise EvaluationError(f"battles={battles}, num_envs={num_envs}: pass --battles and --num-envs >= 1")
    worker = MFRolloutWorker(factory, num_envs, seed=seed)
    try:
        specs = worker.specs()
        if len(specs) != 2:
            raise EvaluationError(
                f"evaluation needs a two-team game, this one has behaviours {sorted(specs)}"
            )
        behaviors = tuple(sorted(specs))
        policies: dict[str, MFPolicySetup] = {}
        actor: dict[str, str] = {}
        weights: dict[str, dict[str, np.ndarray]] = {}
        for key, side, behavior in (("a", side_a, behaviors[0]), ("b", side_b, behaviors[1])):
            if side.baseline:
                actor[behavior] = side.baseline
                continue
            assert side.hyperparameters is not None and side.weights is not None
            policies[key] = MFPolicySetup(specs[behavior], side.trainer_type, side.hyperparameters)
            actor[behavior] = key
            weights[key] = side.weights
        worker.configure(
            MFPlan(
                policies, actor, frozenset(), deterministic=greedy, mean_action_ablation=mean_action_ablation
            )
        )
        outcomes: list[Outcome] = []
        start = time.perf_counter()
        agent_steps = env_steps = 0
        while len(outcomes) < battles:
            if time.perf_counter() - start > timeout_s:
                raise EvaluationError(
                    f"only {len(outcomes)} of {battles} battles finished in {timeout_s:.0f} s"
                )
            chunk = worker.collect(weights, 1.0, 16)
            outcomes.extend(chunk.outcomes)
            agent_steps += chunk.agent_steps
            env_steps += chunk.env_steps
        labels = (side_a.label, side_b.label)
        report = summarise(outcomes[:battles], behaviors, labels)  # type: ignore[arg-type]
        report["labels"] = list(report["sides"])
        wall = time.perf_counter() - start
        report.update(
            agent_steps_per_s=agent_steps / wall,
            env_steps=env_steps,
            wall_s=wall,
            greedy=greedy,
            mean_action_ablation=mean_action_ablation,
        )
        return report
    finally:
        worker.close()


def evaluate_both_sides(factory: EnvFactory, side_a: Side, side_b: Side, **kwargs: Any) -> dict[str, Any]:
    """:func:`evaluate` twice, A on the first behaviour then on the second; A's combined result.

    ``kwargs`` go to :func:`evaluate` (``battles`` is per orientation). Returned: both reports under
    ``orientations`` and, over all battles, A's wins, draws, losses, win rate with its Wilson interval and the
    mean evaluation throughput.
    """
    first = evaluate(factory, side_a, side_b, **kwargs)
    second = evaluate(factory, side_b, side_a, **kwargs)
    mine = [first["sides"][first["labels"][0]], second["sides"][second["labels"][1]]]
    n = first["battles"] + second["battles"]
    return {
        "side": side_a.label,
        "battles": n,
        **record(sum(s["wins"] for s in mine), sum(s["draws"] for s in mine), n),
        "per_orientation": [s["win_rate"] for s in mine],
        "agent_steps_per_s": (first["agent_steps_per_s"] + second["agent_steps_per_s"]) / 2,
        "orientations": [first, second],
    }


def format_report(report: dict[str, Any]) -> str:
    """A plain-text table of the report."""
    lines = [f"{report['battles']} battles", f"{'side':<40} {'win rate (95% CI)':<24} {'kills':<22} return"]
    for label, s in report["sides"].items():
        lo, hi = s["win_rate_ci"]
        klo, khi = s["kills_ci"]
        rlo, rhi = s["return_ci"]
        lines.append(
            f"{label[:40]:<40} {s['win_rate']:.2f} [{lo:.2f}, {hi:.2f}]{'':<7} "
            f"{s['kills_mean']:6.2f} [{klo:.2f}, {khi:.2f}]  {s['return_mean']:.3f} [{rlo:.3f}, {rhi:.3f}]"
        )
    return "\n".join(lines)


def format_both_sides(report: dict[str, Any]) -> str:
    """Both orientations' tables, then A's combined result (the report of :func:`evaluate_both_sides`)."""
    lo, hi = report["win_rate_ci"]
    as_first, as_second = report["per_orientation"]
    return "\n\n".join(
        [
            *(format_report(r) for r in report["orientations"]),
            f"{report['side']}: win rate {report['win_rate']:.2f} [{lo:.2f}, {hi:.2f}] over "
            f"{report['battles']} battles ({report['wins']} W / {report['draws']} D / {report['losses']} L); "
            f"on the first team {as_first:.2f}, on the second {as_second:.2f}",
        ]
    )


def side_asdict(side: Side) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(side).items() if k != "weights"}
