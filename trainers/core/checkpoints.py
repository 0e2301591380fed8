"""Checkpoint files on disk: which ones a folder holds and how one is read (torch is imported on first read).

A checkpoint is ``checkpoints/checkpoint-<env steps>.pt``, a ``torch.save`` of plain dicts and tensors, read
only with ``torch.load(weights_only=True)``; the run folder (:mod:`unimarl.trainers.run.run_dir`) writes them.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

from unimarl.trainers.core.errors import ResumeError, TrainerError

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
    import torch

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
