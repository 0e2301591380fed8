"""The run folder ``results/RUN_ID/``: what a user inspects, resumes and ships from.

Layout: ``config.yaml`` (the resolved config), ``metrics.jsonl`` (one JSON object per summary),
``tensorboard/<policy>/`` and ``tensorboard/run/`` (TensorBoard event files; folder names made safe on every
OS by :func:`~unimarl.trainers.core.names.path_name`, e.g. ``CoopNav_team_0``), ``checkpoints/checkpoint-<env
steps>.pt`` (``torch.save`` of plain dicts and tensors, loadable with ``torch.load(weights_only=True)``),
``logs/`` (player logs of Unity/sim games), ``build/`` (sim game wrappers), ``onnx/`` (the exported models and
their manifest) and, where ML-Agents users look for them, ``<Behavior>.onnx``: a copy of the model of each
behaviour (:func:`behavior_model_names`), rewritten at every export.

``force`` replaces an existing run folder of the same run id: the old folder is renamed to a hidden
``.<run id>.replaced-*`` folder beside it, inside the results folder, and then deleted, so a crash leaves the
old run or nothing, never half of it under the run id.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from unimarl.trainers.core.checkpoints import CHECKPOINT_FORMAT, checkpoint_files, read_checkpoint
from unimarl.trainers.core.config import check_run_id
from unimarl.trainers.core.errors import ResumeError
from unimarl.trainers.core.files import replace_durably, write_durably
from unimarl.trainers.core.names import path_name

logger = logging.getLogger(__name__)


class RunDir:
    """Creates and writes one run folder; ``resume`` reuses an existing one."""

    def __init__(
        self,
        results_dir: str | Path,
        run_id: str,
        resume: bool = False,
        keep_checkpoints: int = 5,
        force: bool = False,
    ):
        check_run_id(run_id)
        self.path = Path(results_dir) / run_id
        self.checkpoints = self.path / "checkpoints"
        self.logs = self.path / "logs"
        self.keep_checkpoints = keep_checkpoints
        if resume and not self.path.exists():
            raise ResumeError(f"cannot resume run '{run_id}': {self.path} does not exist; drop --resume")
        if force and resume:
            logger.warning("--force is ignored with --resume: run '%s' continues", run_id)
        elif force:
            _delete_replaced(Path(results_dir), run_id)
            if self.path.exists() or self.path.is_symlink():
                _replace_run_folder(self.path)
        if not resume and self.latest_checkpoint() is not None:
            raise ResumeError(
                f"run folder {self.path} already holds checkpoints; pass --resume to continue it, "
                "--force to replace it, or choose another --run-id"
            )
        for folder in (self.path, self.checkpoints, self.logs):
            folder.mkdir(parents=True, exist_ok=True)
        for partial in self.checkpoints.glob("*.tmp"):  # a write cut by a crash; never renamed into place
            logger.warning("removing %s, a checkpoint write that did not finish", partial)
            partial.unlink()
        self._writers: dict[str, Any] = {}
        self._folders: dict[str, str] = {}  # group -> its folder name under tensorboard/

    def write_config(self, data: dict[str, Any]) -> None:
        write_durably(self.path / "config.yaml", yaml.safe_dump(data, sort_keys=False))

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
        replace_durably(tmp, path)
        for old in checkpoint_files(self.checkpoints)[: -self.keep_checkpoints]:
            old.unlink()
        logger.info("checkpoint written: %s", path)
        return path

    def latest_checkpoint(self) -> Path | None:
        files = checkpoint_files(self.checkpoints)
        return files[-1] if files else None

    def load_latest(self) -> dict[str, Any]:
        """The newest checkpoint that can be read (:func:`read_latest`)."""
        if not checkpoint_files(self.checkpoints):
            raise ResumeError(f"cannot resume: no checkpoint in {self.checkpoints}; start without --resume")
        return read_latest(self.checkpoints)

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


def read_latest(checkpoints: Path) -> dict[str, Any]:
    """The newest checkpoint in ``checkpoints`` that can be read; a newer one that cannot (cut by a crash or a
    full disk) is skipped with a warning. A checkpoint of another format is an error, not skipped."""
    first_error: ResumeError | None = None
    for path in reversed(checkpoint_files(checkpoints)):
        try:
            state = read_checkpoint(path)
        except ResumeError as e:
            logger.warning("skipping unreadable checkpoint %s: %s", path, e)
            first_error = first_error or e
            continue
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ResumeError(
                f"{path} has checkpoint format {state.get('format')!r}, expected {CHECKPOINT_FORMAT}"
            )
        logger.info("loading %s", path)
        return state
    if first_error is None:
        raise ResumeError(f"no checkpoint in {checkpoints}")
    raise first_error


def copy_behavior_models(
    run_path: Path, behavior_policy: Mapping[str, str], models: Mapping[str, Path]
) -> None:
    """Copy the model of each behaviour of ``behavior_policy`` (those whose policy the run trains) to
    ``<Behavior>.onnx`` in the run folder ``run_path``, durably, when ``models`` (policy -> its file under
    ``onnx/``) holds one from this export; a copy that fails is logged, not raised."""
    names = behavior_model_names(behavior_policy)
    for behavior, file_name in sorted(names.items()):
        if behavior_policy[behavior] not in models:  # its export failed: the previous copy stays
            continue
        target = run_path / file_name
        try:
            write_durably(target, models[behavior_policy[behavior]].read_bytes())
        except OSError as e:  # an optional copy: the model itself is in onnx/
            logger.error("cannot copy the model of %s to %s: %s", behavior, target, e)


def behavior_model_names(behavior_policy: Mapping[str, str]) -> dict[str, str]:
    """Behaviour -> the file name of its model copy in the run folder, ``<Behavior>.onnx`` as mlagents-learn
    writes it: the name without ``?team=N`` (ML-Agents' brain name) when every team of the behaviour plays
    one policy, else the whole name; made safe for every OS (:func:`path_name`). Behaviours of different
    policies whose names still meet (``A?team=0`` and ``A_team_0``) get no copy, with a warning."""
    policies_of = defaultdict(set)
    for behavior, policy in behavior_policy.items():
        policies_of[behavior.split("?", 1)[0]].add(policy)
    names = {}
    for behavior in behavior_policy:
        brain = behavior.split("?", 1)[0]
        names[behavior] = path_name(brain if len(policies_of[brain]) == 1 else behavior) + ".onnx"
    policies_in: dict[str, set[str]] = defaultdict(set)
    for behavior, name in names.items():
        policies_in[name].add(behavior_policy[behavior])
    clashes = sorted(name for name, policies in policies_in.items() if len(policies) > 1)
    if clashes:
        logger.warning(
            "no <Behavior>.onnx copy for %s: behaviours of different policies share the name", clashes
        )
    return {b: name for b, name in names.items() if name not in clashes}


def _delete_replaced(results_dir: Path, run_id: str) -> None:
    """Delete what an earlier ``force`` left of replaced folders of ``run_id`` (a crash mid-delete)."""
    if results_dir.is_dir():
        for old in results_dir.iterdir():
            if old.name.startswith(f".{run_id}.replaced-") and old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)


def _replace_run_folder(path: Path) -> None:
    """Rename the run folder ``path`` aside (inside its results folder) and delete it (module docstring).
    Only a real folder is touched: a link is refused, so nothing outside the results folder is deleted."""
    if path.is_symlink() or not path.is_dir():
        raise ResumeError(
            f"--force replaces only a run folder, and {path} is a link or not a folder; remove it "
            "yourself or choose another --run-id"
        )
    aside = path.with_name(f".{path.name}.replaced-{os.getpid()}-{time.time_ns()}")
    try:
        os.replace(path, aside)
    except OSError as e:
        raise ResumeError(
            f"--force cannot replace {path}: {e}; close programs using files in it (TensorBoard, a player) "
            "and try again, or choose another --run-id"
        ) from e
    logger.warning("--force: replaced the run folder %s (its checkpoints, models, metrics and logs)", path)
    shutil.rmtree(aside, ignore_errors=True)
