"""The ONNX models of a run: written at every checkpoint and at the end, or from a checkpoint.

Layout under ``results/RUN_ID/onnx/``: one ``<policy>.onnx`` per policy (one per behaviour unless
``policy_mapping`` shares a policy; characters other than letters, digits, ``.``, ``_`` and ``-`` become
``_``, so ``CoopNav?team=0`` is written ``CoopNav_team_0.onnx``), and ``policies.json``, the manifest:
per policy the file, its SHA-256 and size, the env steps of the weights, the policy spec and the network
settings, which is all :func:`export_checkpoint` needs to rebuild the actor from a checkpoint. Files are
replaced atomically, so a reader (hot-swap, ``unimarl play``) never sees half a model.

Observation layout: ``spec.obs_shapes`` are the shapes the trainer saw, rank-3 (visual) ones in the game's
layout (``"CHW"`` from C# package 3.x, ``"HWC"`` from 2.x), recorded as ``visual_layout``; the model's inputs
are always NCHW as ML-Agents' contract wants, recorded as ``input_shapes`` (``obs_i`` without the batch
axis). The layout comes from the caller (:func:`~unimarl.trainers.envs.factory.visual_layout_of` reads it
from a game's observation specs) or, when not given, from the previous manifest, else from the shapes
(:func:`infer_visual_layout`).

Failures: during training (:func:`export_policies`) a policy whose export fails (exporter error, a full disk)
is logged with the path and the reason and recorded in its manifest entry (``export_error``: env steps,
path, reason; ``export_failures``: count over the run); its previous model, if any, stays in place and
training goes on (the checkpoint was written before). ``unimarl export`` (:func:`export_checkpoint`) raises
instead, since there the export is the whole point.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from unimarl.bridge.spec import ActionSpec
from unimarl.trainers.algos.mappo.networks import build_actor
from unimarl.trainers.algos.mappo.policy import MAPPOPolicy, NetworkSettings
from unimarl.trainers.core.action_map import ActionBounds, bounds_entry
from unimarl.trainers.core.batch import PolicySpec
from unimarl.trainers.core.checkpoints import checkpoint_files, read_checkpoint
from unimarl.trainers.core.errors import TrainerError
from unimarl.trainers.core.files import replace_durably
from unimarl.trainers.core.names import path_name
from unimarl.trainers.export.onnx import ExportReport, contract_obs_shape, export_actor

logger = logging.getLogger(__name__)

ONNX_DIR = "onnx"
MANIFEST = "policies.json"
VISUAL_LAYOUTS = ("CHW", "HWC")


class RunExportError(TrainerError):
    """A run folder holds nothing to export (no checkpoint, no manifest) or a policy cannot be rebuilt."""


@dataclass(frozen=True)
class ExportedPolicy:
    """One policy's model in a run folder."""

    policy: str
    path: Path
    sha256: str
    size_bytes: int
    env_steps: int
    export_seconds: float


def model_file_name(policy: str) -> str:
    """File name of ``policy``'s model (``CoopNav?team=0`` -> ``CoopNav_team_0.onnx``; :func:`path_name`)."""
    return path_name(policy) + ".onnx"


def infer_visual_layout(obs_shapes: Sequence[Sequence[int]]) -> str:
    """A layout guessed from shapes alone: channels are the smallest axis of an image ((3, 84, 84) is CHW,
    (84, 84, 3) HWC). "CHW" (the 3.x layout) when there is no rank-3 shape or the shapes do not tell."""
    votes = set()
    for shape in obs_shapes:
        if len(shape) != 3:
            continue
        first, last = shape[0] < min(shape[1:]), shape[2] < min(shape[:2])
        if first != last:
            votes.add("CHW" if first else "HWC")
    if len(votes) == 1:
        return votes.pop()
    if any(len(s) == 3 for s in obs_shapes):
        logger.warning(
            "cannot tell the layout of observations %s from their shapes; assuming CHW (C# 3.x): pass "
            "visual_layouts to export_policies if the game runs the 2.x package",
            [list(s) for s in obs_shapes],
        )
    return "CHW"


def export_policies(
    run_path: str | Path,
    policies: dict[str, MAPPOPolicy],
    env_steps: int,
    visual_layouts: Mapping[str, str] | None = None,
) -> list[ExportedPolicy]:
    """Export every policy's actor to ``run_path/onnx`` and refresh the manifest; returns what was written.

    ``visual_layouts``: policy -> layout of its rank-3 observations as the trainer sees them ("CHW" or
    "HWC"; see the module docstring for the default). A policy whose export fails is logged and recorded in
    the manifest, and left out of the result; this function raises for nothing but a bad layout name.
    """
    nets = {name: p.net for name, p in policies.items()}
    actors = {name: copy.deepcopy(p.actor).cpu().eval() for name, p in policies.items()}
    specs = {n: p.spec for n, p in policies.items()}
    layouts = _layouts(Path(run_path), specs, visual_layouts or {})
    with torch.random.fork_rng(devices=[]):  # tracing draws random inputs: leave training's RNG untouched
        return _export_all(Path(run_path), actors, specs, nets, env_steps, layouts, strict=False)


def _layouts(run_path: Path, specs: Mapping[str, PolicySpec], given: Mapping[str, str]) -> dict[str, str]:
    bad = {name: layout for name, layout in given.items() if layout not in VISUAL_LAYOUTS}
    if bad:
        raise RunExportError(f"visual layouts {bad} are unknown: use one of {VISUAL_LAYOUTS} per policy")
    previous = _previous_manifest(run_path)
    layouts = {}
    for name, spec in specs.items():
        recorded = previous.get(name, {}).get("visual_layout")
        layouts[name] = given.get(name) or recorded or infer_visual_layout(spec.obs_shapes)
    return layouts


def _previous_manifest(run_path: Path) -> dict[str, Any]:
    try:
        return read_manifest(run_path)
    except RunExportError:  # first export of the run, or a manifest this export replaces
        return {}


def _export_all(
    run_path: Path,
    actors: dict[str, torch.nn.Module],
    specs: dict[str, PolicySpec],
    nets: dict[str, NetworkSettings],
    env_steps: int,
    layouts: dict[str, str],
    strict: bool,
) -> list[ExportedPolicy]:
    folder = run_path / ONNX_DIR
    previous = _previous_manifest(run_path)
    manifest: dict[str, Any] = {}
    exported = []
    for name, actor in sorted(actors.items()):
        path = folder / model_file_name(name)
        described = _describe(specs[name], nets[name], layouts[name])
        try:
            done = export_model(name, actor, specs[name], path, env_steps, layouts[name])
        except Exception as e:  # any failure of this optional artefact must not end a training run
            if strict:
                raise
            manifest[name] = _failed_entry(previous.get(name), described, path, env_steps, e)
            continue
        exported.append(done)
        manifest[name] = {
            "file": path.name,
            "sha256": done.sha256,
            "size_bytes": done.size_bytes,
            "env_steps": env_steps,
            **described,
            "export_failures": int(previous.get(name, {}).get("export_failures", 0)),
        }
    try:
        tmp_manifest = folder / (MANIFEST + ".tmp")
        folder.mkdir(parents=True, exist_ok=True)
        tmp_manifest.write_text(json.dumps(manifest, indent=2) + "\n")
        replace_durably(tmp_manifest, folder / MANIFEST)
    except OSError as e:
        if strict:
            raise
        logger.error("cannot write %s (%s); the models above are written, the manifest is stale", folder, e)
    logger.info("exported %s to %s at %d env steps", [e.policy for e in exported], folder, env_steps)
    return exported


def export_model(
    name: str,
    actor: torch.nn.Module,
    spec: PolicySpec,
    path: Path,
    env_steps: int,
    layout: str,
    mean_action_size: int = 0,
) -> ExportedPolicy:
    """Export ``actor`` to ``path`` through a temporary file (a failed export leaves the old model)."""
    tmp = path.with_suffix(".onnx.tmp")
    try:
        report: ExportReport = export_actor(
            actor,
            spec,
            tmp,
            visual_layout=layout,  # type: ignore[arg-type]
            mean_action_size=mean_action_size,
        )
        data = tmp.read_bytes()
        replace_durably(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    digest = hashlib.sha256(data).hexdigest()
    return ExportedPolicy(name, path, digest, len(data), env_steps, report.export_seconds)


def _describe(spec: PolicySpec, net: NetworkSettings, layout: str) -> dict[str, Any]:
    """The manifest fields that describe the policy itself (the same whether its export worked or not)."""
    return {
        "visual_layout": layout,
        "input_shapes": [list(contract_obs_shape(s, layout)) for s in spec.obs_shapes],
        "spec": spec_entry(spec),
        "network_settings": dataclasses.asdict(net),
    }


def spec_entry(spec: PolicySpec) -> dict[str, Any]:
    """A policy spec as the manifests record it (JSON types); :func:`spec_from_entry` reads it back."""
    return {
        "obs_shapes": [list(s) for s in spec.obs_shapes],
        "continuous_size": spec.action_spec.continuous_size,
        "discrete_branches": list(spec.action_spec.discrete_branches),
        "state_shape": None if spec.state_shape is None else list(spec.state_shape),
        "action_bounds": bounds_entry(spec.action_bounds),
    }


def _failed_entry(
    previous: dict[str, Any] | None, described: dict[str, Any], path: Path, env_steps: int, error: Exception
) -> dict[str, Any]:
    """The manifest entry after a failed export: the previous model's fields (file None when there is no
    model yet), this export's description and the error."""
    reason = f"{type(error).__name__}: {error}"
    entry: dict[str, Any] = {"file": None, "sha256": None, "size_bytes": 0, "env_steps": None}
    if previous is not None and previous.get("file") == path.name and path.exists():
        entry = {key: previous[key] for key in ("file", "sha256", "size_bytes", "env_steps")}
    kept = f"the model of env step {entry['env_steps']} stays in place" if entry["file"] else "no model yet"
    logger.error(
        "ONNX export of %s to %s failed at %d env steps (%s); %s; training goes on",
        path.stem,
        path,
        env_steps,
        reason,
        kept,
    )
    failures = int((previous or {}).get("export_failures", 0)) + 1
    error_info = {"env_steps": env_steps, "path": str(path), "reason": reason}
    return {**entry, **described, "export_failures": failures, "export_error": error_info}


def export_failures(run_path: str | Path) -> dict[str, int]:
    """Failed exports so far per policy, from the manifest (empty when there is none)."""
    manifest = _previous_manifest(Path(run_path))
    return {name: int(entry.get("export_failures", 0)) for name, entry in manifest.items()}


def read_manifest(run_path: str | Path) -> dict[str, Any]:
    """The manifest of a run folder; raises :class:`RunExportError` when there is none."""
    path = Path(run_path) / ONNX_DIR / MANIFEST
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError as e:
        if (path.parent / "mean_field.json").exists():
            raise RunExportError(
                f"{run_path} is a mean-field run: its exportable policies are written at every checkpoint to "
                f"{path.parent}/<policy>.onnx (listed in mean_field.json); pass a model file to "
                "`unimarl play`"
            ) from e
        raise RunExportError(
            f"{path} does not exist: {run_path} is not a run folder with exported policies "
            "(train first, or pass the run folder that `unimarl train` printed)"
        ) from e
    except json.JSONDecodeError as e:
        raise RunExportError(f"{path} is not valid JSON ({e}); run `unimarl export` to rewrite it") from e


def spec_from_entry(spec: dict[str, Any]) -> PolicySpec:
    """The :class:`PolicySpec` a manifest's ``spec`` field records (:func:`spec_entry`)."""
    state = spec["state_shape"]
    return PolicySpec(
        tuple(tuple(int(d) for d in s) for s in spec["obs_shapes"]),
        ActionSpec(int(spec["continuous_size"]), tuple(int(b) for b in spec["discrete_branches"])),
        None if state is None else tuple(int(d) for d in state),
        ActionBounds.from_entry(spec.get("action_bounds")),
    )


def load_latest_checkpoint(run_path: Path) -> tuple[Path, dict[str, Any]]:
    """The run's newest checkpoint file and its contents (on the CPU); RunExportError when there is none."""
    checkpoints = checkpoint_files(run_path / "checkpoints")
    if not checkpoints:
        raise RunExportError(f"no checkpoint in {run_path / 'checkpoints'}: train (or resume) the run first")
    return checkpoints[-1], read_checkpoint(checkpoints[-1], RunExportError, map_location="cpu")


def export_checkpoint(run_path: str | Path) -> list[ExportedPolicy]:
    """Rewrite the run's models from its latest checkpoint (``unimarl export RUN_DIR``); raises on failure."""
    run_path = Path(run_path)
    manifest = read_manifest(run_path)
    checkpoint, state = load_latest_checkpoint(run_path)
    if set(state["policies"]) != set(manifest):
        raise RunExportError(
            f"{checkpoint} holds policies {sorted(state['policies'])}, the manifest {sorted(manifest)}; "
            "the run folder mixes two runs: export from a folder written by one run"
        )
    actors, specs, nets, layouts = {}, {}, {}, {}
    for name, entry in manifest.items():
        specs[name] = spec_from_entry(entry["spec"])
        nets[name] = NetworkSettings(**entry["network_settings"])
        layouts[name] = entry.get("visual_layout") or "CHW"  # manifests before layouts were recorded: CHW
        net = nets[name]
        actor = build_actor(specs[name], net)
        try:
            actor.load_state_dict(state["policies"][name]["modules"]["actor"])
        except RuntimeError as e:
            raise RunExportError(
                f"policy {name!r}: the checkpoint does not fit its manifest entry: {e}"
            ) from e
        actors[name] = actor.eval()
    env_steps = int(state["counters"]["env_steps"])
    return _export_all(run_path, actors, specs, nets, env_steps, layouts, strict=True)


def policy_for(behavior: str, manifest: dict[str, Any], mapping: dict[str, str] | None = None) -> str | None:
    """The manifest policy acting for ``behavior``: mapped, exact name, or name without ``?team=``; None
    when there is none, or when that policy has no model (every export of it failed)."""
    mapping = mapping or {}
    chosen = None
    for key in (behavior, behavior.split("?", 1)[0]):
        if key in mapping and mapping[key] in manifest:
            chosen = mapping[key]
            break
    else:
        chosen = next((k for k in (behavior, behavior.split("?", 1)[0]) if k in manifest), None)
    if chosen is None or not manifest[chosen].get("file"):
        return None
    return chosen
