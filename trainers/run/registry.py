"""The algorithm registry: trainer family -> its :class:`~unimarl.trainers.algos.base.Algorithm`, how its
policies are exported and hot-swapped, and its self-play opponents. One line per algorithm."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unimarl.trainers.algos.mappo.algorithm import MAPPO
from unimarl.trainers.algos.meanfield.algorithm import MeanField
from unimarl.trainers.core.config import TrainConfig
from unimarl.trainers.core.mf_settings import MEAN_FIELD_TRAINERS
from unimarl.trainers.export.hotswap import HotSwap
from unimarl.trainers.export.meanfield import MFHotSwap, export_mean_field
from unimarl.trainers.export.policies import ExportedPolicy, export_policies
from unimarl.trainers.selfplay.ghost import ghost_play
from unimarl.trainers.selfplay.manager import SelfPlay


@dataclass(frozen=True)
class Entry:
    algorithm: type
    export: Callable[[Path, Any, int], list[ExportedPolicy]]
    """(run folder, algorithm, env steps): writes ``onnx/`` and its manifest; returns the models written."""
    hotswap: type[HotSwap]
    opponents: Callable[[TrainConfig, Any, Path], Any] | None = None
    """(config, algorithm, run folder) -> the algorithm's self-play opponents."""


ALGORITHMS: dict[str, Entry] = {
    "mappo": Entry(
        MAPPO,
        lambda path, a, steps: export_policies(path, a.policies, steps, a.visual_layouts),
        HotSwap,
        ghost_play,
    ),
    "meanfield": Entry(
        MeanField,
        lambda path, a, steps: list(export_mean_field(path, a.policies, steps).values()),
        MFHotSwap,
        SelfPlay,
    ),
}


def algorithm_of(config: TrainConfig) -> str:
    """The registry key of a config: one run trains one family, mean field when any behaviour uses mfq or
    mfac (every behaviour is then checked for it by the mean-field plan), else MAPPO."""
    if any(b.trainer_type in MEAN_FIELD_TRAINERS for b in config.behaviors.values()):
        return "meanfield"
    return "mappo"
