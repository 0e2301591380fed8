"""The run folder ``results/RUN_ID/``: what a user inspects, resumes and ships from.

Layout: ``config.yaml`` (the resolved config), ``metrics.jsonl`` (one JSON object per summary),
``tensorboard/<policy>/`` and ``tensorboard/run/`` (TensorBoard event files; folder names made safe on every
OS by :func:`~unimarl.trainers.names.path_name`, e.g. ``CoopNav_team_0``), ``checkpoints/checkpoint-<env
steps>.pt`` (``torch.save`` of plain dicts and tensors, loadable with ``torch.load(weights_only=True)``),
``logs/`` (player logs of Unity/sim games) and ``build/`` (sim game wrappers).
"""

from __future__ import annotations

import json
import logging
import pickle
import re
from pathlib import Path
from typing import Any

import torch
import yaml

from unimarl.trainers.config import check_run_id
from unimarl.trainers.errors import ResumeError, TrainerError
from unimarl.trainers.names import path_name

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)\.pt$")


def checkpoint_files(folder: Path) -> list[Path]:
    """The ``checkpoint-<env steps>.pt`` files in ``folder``, oldest (fewest env steps) first."""
    if not folder.exists():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _CHECKPOINT.match(p.name))]
    return [p for _, p in sorted(found)]


def read_checkpoint(
    path: Path, error: type[TrainerError] = ResumeError, map_location: str | None = None
) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``; a file that is unreadable or holds anything but tensors and
    plain data (a pickled object, whose unpickling could run code) raises ``error`` naming it."""
    try:
        state = torch.load(path, weights_only=True, map_location=map_location)
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise error(
            f"{path} cannot be read as a checkpoint with torch.load(weights_only=True) ({first_line}); "
            "only checkpoints of tensors and plain data written by unimarl are loaded: use another checkpoint"
        ) from e
    if not isinstance(state, dict):
        raise error(f"{path} holds a {type(state).__name__}, not a checkpoint dict; use another checkpoint")
    return state


class RunDir:
    """Creates and writes one run folder; ``resume`` reuses an existing one."""

    def __init__(self, results_dir: str | Path, run_id: str, resume: bool = False, keep_checkpoints: int = 5):
        check_run_id(run_id)
        self.path = Path(results_dir) / run_id
        self.checkpoints = self.path / "checkpoints"
        self.logs = self.path / "logs"
        self.keep_checkpoints = keep_checkpoints
        if resume and not self.path.exists():
            raise ResumeError(f"cannot resume run '{run_id}': {self.path} does not exist; drop --resume")
        if not resume and self.latest_checkpoint() is not None:
            raise ResumeError(
                f"run folder {self.path} already holds checkpoints; pass --resume to continue it, "
                "or choose another --run-id"
            )
        for folder in (self.path, self.checkpoints, self.logs):
            folder.mkdir(parents=True, exist_ok=True)
        self._writers: dict[str, Any] = {}
        self._folders: dict[str, str] = {}  # group -> its folder name under tensorboard/

    def write_config(self, data: dict[str, Any]) -> None:
        (self.path / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))

    def append_metrics(self, line: dict[str, Any]) -> None:
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")

    def scalars(self, group: str, values: dict[str, float], step: int) -> None:
        """Write scalars to TensorBoard under ``tensorboard/<group>/``."""
        writer = self._writers.get(group)
        if writer is None:
            from torch.utils.tensorboard import SummaryWriter

            writer = self._writers[group] = SummaryWriter(
                str(self.path / "tensorboard" / self._folder(group))
            )
        for tag, value in values.items():
            writer.add_scalar(tag, value, step)
        writer.flush()

    def _folder(self, group: str) -> str:
        """A safe folder name for ``group``, distinct from those of the other groups of this run."""
        folder = base = path_name(group)
        taken = set(self._folders.values())
        k = 2
        while folder in taken:
            folder, k = f"{base}-{k}", k + 1
        if folder != base:
            logger.warning(
                "TensorBoard folder of '%s' is %s (%s is taken by another name)", group, folder, base
            )
        self._folders[group] = folder
        return folder

    def save_checkpoint(self, state: dict[str, Any], env_steps: int) -> Path:
        """Write ``state`` atomically; keeps the newest ``keep_checkpoints`` files."""
        path = self.checkpoints / f"checkpoint-{env_steps}.pt"
        tmp = path.with_suffix(".tmp")
        torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)
        tmp.replace(path)
        for old in checkpoint_files(self.checkpoints)[: -self.keep_checkpoints]:
            old.unlink()
        logger.info("checkpoint written: %s", path)
        return path

    def latest_checkpoint(self) -> Path | None:
        files = checkpoint_files(self.checkpoints)
        return files[-1] if files else None

    def load_latest(self) -> dict[str, Any]:
        path = self.latest_checkpoint()
        if path is None:
            raise ResumeError(f"cannot resume: no checkpoint in {self.checkpoints}; start without --resume")
        state = read_checkpoint(path)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ResumeError(
                f"{path} has checkpoint format {state.get('format')!r}, expected {CHECKPOINT_FORMAT}"
            )
        logger.info("resuming from %s", path)
        return state

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}
