"""The ONNX models of a run and their manifest, one format for every algorithm: written at every checkpoint
and at the end, or from a checkpoint.

Layout under ``results/RUN_ID/onnx/``: one ``<policy>.onnx`` per policy (one per behaviour unless
``policy_mapping`` shares a policy; characters other than letters, digits, ``.``, ``_`` and ``-`` become
``_``, so ``CoopNav?team=0`` is written ``CoopNav_team_0.onnx``), and ``policies.json``, the manifest: per
policy the file, its SHA-256 and size, the env steps of the weights, the ``algorithm`` that trained it, the
model's ``inputs`` (the contract's, plus ``mean_action`` for MF-Q), the policy spec and what the algorithm
needs to rebuild the actor from a checkpoint (MAPPO: ``network_settings``;
mean field: :mod:`unimarl.trainers.export.meanfield`). Each algorithm hands :func:`write_models` its contract
actors (:class:`ModelSource`); :func:`export_checkpoint` rebuilds them from the latest checkpoint. Files are
replaced atomically, so a reader (hot-swap, ``unimarl play``) never sees half a model. A run folder written
before mean-field runs shared this manifest holds ``onnx/mean_field.json`` instead; :func:`read_manifest`
reads it as this format.

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
from collections.abc import Callable, Mapping, Sequence
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
from unimarl.trainers.export.onnx import ExportReport, contract_obs_shape, export_actor, input_names

logger = logging.getLogger(__name__)

ONNX_DIR = "onnx"
MANIFEST = "policies.json"
LEGACY_MEAN_FIELD_MANIFEST = "mean_field.json"
"""The manifest mean-field runs wrote before they shared :data:`MANIFEST` (read by :func:`read_manifest`)."""
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


@dataclass(frozen=True)
class ModelSource:
    """One policy to export: its actor with the contract's call (``actor(obs, action_mask)``, plus the mean
    action when ``mean_action_size``), and what the manifest says about it beyond the common fields."""

    actor: torch.nn.Module
    spec: PolicySpec
    layout: str
    """The layout of its rank-3 observations as the trainer sees them ("CHW" or "HWC")."""
    described: dict[str, Any]
    """The algorithm's own manifest fields: at least ``algorithm``, and what it rebuilds the actor from."""
    mean_action_size: int = 0


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
    layouts = _layouts(Path(run_path), {n: p.spec for n, p in policies.items()}, visual_layouts or {})
    sources = {
        name: mappo_source(copy.deepcopy(p.actor).cpu().eval(), p.spec, p.net, layouts[name])
        for name, p in policies.items()
    }
    return write_models(run_path, sources, env_steps)


def mappo_source(actor: torch.nn.Module, spec: PolicySpec, net: NetworkSettings, layout: str) -> ModelSource:
    """A MAPPO actor as a model to export (its manifest entry records the network settings)."""
    return ModelSource(
        actor, spec, layout, {"algorithm": "mappo", "network_settings": dataclasses.asdict(net)}
    )


def _layouts(run_path: Path, specs: Mapping[str, PolicySpec], given: Mapping[str, str]) -> dict[str, str]:
    """Per policy: the layout given, else the one the previous manifest records, else the shapes' guess."""
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


def write_models(
    run_path: str | Path, sources: Mapping[str, ModelSource], env_steps: int, *, strict: bool = False
) -> list[ExportedPolicy]:
    """Export every source to ``run_path/onnx`` and rewrite the manifest; returns the models written.

    Not ``strict`` (training): a failed export is logged and recorded in the manifest (module docstring),
    the previous model stays. ``strict`` (``unimarl export``): the first failure raises."""
    folder = Path(run_path) / ONNX_DIR
    previous = _previous_manifest(Path(run_path))
    manifest: dict[str, Any] = {}
    exported = []
    with torch.random.fork_rng(devices=[]):  # tracing draws random inputs: leave training's RNG untouched
        for name, source in sorted(sources.items()):
            path = folder / model_file_name(name)
            described = {**_describe(source), **source.described}
            try:
                done = export_model(
                    name, source.actor, source.spec, path, env_steps, source.layout, source.mean_action_size
                )
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


def _describe(source: ModelSource) -> dict[str, Any]:
    """The common manifest fields that describe the model (the same whether its export worked or not)."""
    spec, layout = source.spec, source.layout
    return {
        "visual_layout": layout,
        "input_shapes": [list(contract_obs_shape(s, layout)) for s in spec.obs_shapes],
        "inputs": input_names(spec, source.mean_action_size),
        "spec": spec_entry(spec),
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
    legacy = path.parent / LEGACY_MEAN_FIELD_MANIFEST
    if not path.exists() and legacy.exists():
        path = legacy
    try:
        manifest = dict(json.loads(path.read_text()))
    except FileNotFoundError as e:
        raise RunExportError(
            f"{path} does not exist: {run_path} is not a run folder with exported policies "
            "(train first, or pass the run folder that `unimarl train` printed)"
        ) from e
    except json.JSONDecodeError as e:
        raise RunExportError(f"{path} is not valid JSON ({e}); run `unimarl export` to rewrite it") from e
    if path.name == LEGACY_MEAN_FIELD_MANIFEST:  # ``exportable: false`` entries had no model
        manifest = {name: {"file": None, **entry} for name, entry in manifest.items()}
    return manifest


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


Rebuild = Callable[[dict[str, Any], dict[str, Any]], dict[str, ModelSource]]
"""(manifest, checkpoint contents) -> the run's policies as models to export (one per algorithm family:
:func:`mappo_sources`, :func:`unimarl.trainers.export.meanfield.mean_field_sources`)."""


def export_checkpoint(run_path: str | Path, rebuild: Rebuild | None = None) -> list[ExportedPolicy]:
    """Rewrite the run's models from its latest checkpoint (``unimarl export RUN_DIR``); raises on failure.

    ``rebuild``: the algorithm's (default MAPPO's); :func:`unimarl.trainers.run.registry.export_run` picks
    it from the manifest."""
    run_path = Path(run_path)
    manifest = read_manifest(run_path)
    checkpoint, state = load_latest_checkpoint(run_path)
    if set(state["policies"]) != set(manifest):
        raise RunExportError(
            f"{checkpoint} holds policies {sorted(state['policies'])}, the manifest {sorted(manifest)}; "
            "the run folder mixes two runs: export from a folder written by one run"
        )
    try:
        sources = (rebuild or mappo_sources)(manifest, state)
    except RunExportError:
        raise
    except (RuntimeError, KeyError, TrainerError) as e:
        raise RunExportError(f"{checkpoint} does not fit the run's manifest: {e}") from e
    return write_models(run_path, sources, int(state["counters"]["env_steps"]), strict=True)


def mappo_sources(manifest: dict[str, Any], state: dict[str, Any]) -> dict[str, ModelSource]:
    """MAPPO's :data:`Rebuild`: each actor from its manifest entry's spec and network settings."""
    sources = {}
    for name, entry in manifest.items():
        spec = spec_from_entry(entry["spec"])
        net = NetworkSettings(**entry["network_settings"])
        actor = build_actor(spec, net)
        try:
            actor.load_state_dict(state["policies"][name]["modules"]["actor"])
        except RuntimeError as e:
            raise RunExportError(
                f"policy {name!r}: the checkpoint does not fit its manifest entry: {e}"
            ) from e
        layout = entry.get("visual_layout") or "CHW"  # manifests before layouts were recorded: CHW
        sources[name] = mappo_source(actor.eval(), spec, net, layout)
    return sources


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
