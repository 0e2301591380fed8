"""The algorithm registry: trainer family -> its :class:`~unimarl.trainers.algos.base.Algorithm`, how its
policies become models (one manifest and one hot-swap for all, :mod:`unimarl.trainers.export.policies`), and
its self-play opponents. One line per algorithm."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unimarl.trainers.algos.mappo.algorithm import MAPPO
from unimarl.trainers.algos.meanfield.algorithm import MeanField
from unimarl.trainers.algos.meanfield.mfac import MFACLearner
from unimarl.trainers.algos.meanfield.mfq import MFQLearner
from unimarl.trainers.core.config import TrainConfig
from unimarl.trainers.core.mf_settings import MEAN_FIELD_TRAINERS
from unimarl.trainers.export.meanfield import export_mean_field, mean_field_sources
from unimarl.trainers.export.policies import (
    ExportedPolicy,
    Rebuild,
    RunExportError,
    export_checkpoint,
    export_policies,
    mappo_sources,
    read_manifest,
)
from unimarl.trainers.selfplay.ghost import ghost_play
from unimarl.trainers.selfplay.manager import mean_field_opponents


@dataclass(frozen=True)
class Entry:
    algorithm: type
    export: Callable[[Path, Any, int], list[ExportedPolicy]]
    """(run folder, algorithm, env steps): writes ``onnx/`` and its manifest; returns the models written."""
    rebuild: Rebuild
    """The run's models from a checkpoint (``unimarl export``)."""
    algorithms: frozenset[str]
    """The ``algorithm`` its manifest entries record."""
    opponents: Callable[[TrainConfig, Any, Path], Any] | None = None
    """(config, algorithm, run folder) -> the algorithm's self-play opponents."""


ALGORITHMS: dict[str, Entry] = {
    "mappo": Entry(
        MAPPO,
        lambda path, a, steps: export_policies(path, a.policies, steps, a.visual_layouts),
        mappo_sources,
        frozenset({"mappo"}),
        ghost_play,
    ),
    "meanfield": Entry(
        MeanField,
        lambda path, a, steps: export_mean_field(path, a.policies, steps),
        mean_field_sources,
        frozenset(MFQLearner.ALGORITHMS + MFACLearner.ALGORITHMS),
        mean_field_opponents,
    ),
}


def algorithm_of(config: TrainConfig) -> str:
    """The registry key of a config: one run trains one family, mean field when any behaviour uses mfq or
    mfac (every behaviour is then checked for it by the mean-field plan), else MAPPO."""
    if any(b.trainer_type in MEAN_FIELD_TRAINERS for b in config.behaviors.values()):
        return "meanfield"
    return "mappo"


def export_run(run_path: str | Path) -> list[ExportedPolicy]:
    """``unimarl export RUN_DIR``: rewrite the run's models from its latest checkpoint, with the rebuild of
    the algorithm family its manifest records (entries without an ``algorithm`` are MAPPO's)."""
    recorded = {entry.get("algorithm", "mappo") for entry in read_manifest(run_path).values()}
    for entry in ALGORITHMS.values():
        if recorded <= entry.algorithms:
            return export_checkpoint(run_path, entry.rebuild)
    raise RunExportError(
        f"{run_path}'s manifest records algorithms {sorted(recorded)}; unimarl exports one family per run "
        f"from {[sorted(e.algorithms) for e in ALGORITHMS.values()]}: export a folder written by one run"
    )
