"""The ONNX models of a run: written at every checkpoint and at the end, or from a checkpoint.

Layout under ``results/RUN_ID/onnx/``: one ``<policy>.onnx`` per policy (one per behaviour unless
``policy_mapping`` shares a policy; characters other than letters, digits, ``.``, ``_`` and ``-`` become
``_``, so ``CoopNav?team=0`` is written ``CoopNav_team_0.onnx``), and ``policies.json``, the manifest:
per policy the file, its SHA-256 and size, the env steps of the weights, the policy spec and the network
settings, which is all :func:`export_checkpoint` needs to rebuild the actor from a checkpoint. Files are
replaced atomically, so a reader (hot-swap, ``unimarl play``) never sees half a model.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from unimarl.bridge.spec import ActionSpec
from unimarl.trainers.batch import PolicySpec
from unimarl.trainers.errors import TrainerError
from unimarl.trainers.mappo import MAPPOPolicy, NetworkSettings
from unimarl.trainers.networks import Actor
from unimarl.trainers.onnx_export import ExportReport, export_actor

logger = logging.getLogger(__name__)

ONNX_DIR = "onnx"
MANIFEST = "policies.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


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
    """File name of ``policy``'s model (``CoopNav?team=0`` -> ``CoopNav_team_0.onnx``)."""
    return _UNSAFE.sub("_", policy) + ".onnx"


def export_policies(
    run_path: str | Path, policies: dict[str, MAPPOPolicy], env_steps: int
) -> list[ExportedPolicy]:
    """Export every policy's actor to ``run_path/onnx`` and refresh the manifest; returns what was written."""
    nets = {name: p.net for name, p in policies.items()}
    actors = {name: copy.deepcopy(p.actor).cpu().eval() for name, p in policies.items()}
    with torch.random.fork_rng(devices=[]):  # tracing draws random inputs: leave training's RNG untouched
        return _export_all(Path(run_path), actors, {n: p.spec for n, p in policies.items()}, nets, env_steps)


def _export_all(
    run_path: Path,
    actors: dict[str, torch.nn.Module],
    specs: dict[str, PolicySpec],
    nets: dict[str, NetworkSettings],
    env_steps: int,
) -> list[ExportedPolicy]:
    folder = run_path / ONNX_DIR
    manifest: dict[str, Any] = {}
    exported = []
    for name, actor in sorted(actors.items()):
        path = folder / model_file_name(name)
        tmp = path.with_suffix(".onnx.tmp")
        report: ExportReport = export_actor(actor, specs[name], tmp)
        data = tmp.read_bytes()
        tmp.replace(path)
        digest = hashlib.sha256(data).hexdigest()
        exported.append(ExportedPolicy(name, path, digest, len(data), env_steps, report.export_seconds))
        manifest[name] = {
            "file": path.name,
            "sha256": digest,
            "size_bytes": len(data),
            "env_steps": env_steps,
            "spec": {
                "obs_shapes": [list(s) for s in specs[name].obs_shapes],
                "continuous_size": specs[name].action_spec.continuous_size,
                "discrete_branches": list(specs[name].action_spec.discrete_branches),
                "state_shape": None if specs[name].state_shape is None else list(specs[name].state_shape),
            },
            "network_settings": dataclasses.asdict(nets[name]),
        }
    tmp_manifest = folder / (MANIFEST + ".tmp")
    tmp_manifest.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp_manifest.replace(folder / MANIFEST)
    logger.info("exported %s to %s at %d env steps", sorted(actors), folder, env_steps)
    return exported


def read_manifest(run_path: str | Path) -> dict[str, Any]:
    """The manifest of a run folder; raises :class:`RunExportError` when there is none."""
    path = Path(run_path) / ONNX_DIR / MANIFEST
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError as e:
        raise RunExportError(
            f"{path} does not exist: {run_path} is not a run folder with exported policies "
            "(train first, or pass the run folder that `unimarl train` printed)"
        ) from e
    except json.JSONDecodeError as e:
        raise RunExportError(f"{path} is not valid JSON ({e}); run `unimarl export` to rewrite it") from e


def _spec_of(entry: dict[str, Any]) -> PolicySpec:
    spec = entry["spec"]
    state = spec["state_shape"]
    return PolicySpec(
        tuple(tuple(int(d) for d in s) for s in spec["obs_shapes"]),
        ActionSpec(int(spec["continuous_size"]), tuple(int(b) for b in spec["discrete_branches"])),
        None if state is None else tuple(int(d) for d in state),
    )


def export_checkpoint(run_path: str | Path) -> list[ExportedPolicy]:
    """Rewrite the run's models from its latest checkpoint (``unimarl export RUN_DIR``)."""
    run_path = Path(run_path)
    manifest = read_manifest(run_path)
    checkpoints = sorted(
        (run_path / "checkpoints").glob("checkpoint-*.pt"), key=lambda p: int(p.stem.split("-")[1])
    )
    if not checkpoints:
        raise RunExportError(f"no checkpoint in {run_path / 'checkpoints'}: train (or resume) the run first")
    state = torch.load(checkpoints[-1], weights_only=True, map_location="cpu")
    if set(state["policies"]) != set(manifest):
        raise RunExportError(
            f"{checkpoints[-1]} holds policies {sorted(state['policies'])}, the manifest {sorted(manifest)}; "
            "the run folder mixes two runs: export from a folder written by one run"
        )
    actors, specs, nets = {}, {}, {}
    for name, entry in manifest.items():
        specs[name] = _spec_of(entry)
        nets[name] = NetworkSettings(**entry["network_settings"])
        net = nets[name]
        actor = Actor(
            specs[name], [int(net.hidden_units)] * int(net.num_layers), net.activation, net.layer_norm
        )
        try:
            actor.load_state_dict(state["policies"][name]["modules"]["actor"])
        except RuntimeError as e:
            raise RunExportError(
                f"policy {name!r}: the checkpoint does not fit its manifest entry: {e}"
            ) from e
        actors[name] = actor.eval()
    return _export_all(run_path, actors, specs, nets, int(state["counters"]["env_steps"]))


def policy_for(behavior: str, manifest: dict[str, Any], mapping: dict[str, str] | None = None) -> str | None:
    """The manifest policy acting for ``behavior``: mapped, exact name, or name without ``?team=``."""
    mapping = mapping or {}
    for key in (behavior, behavior.split("?", 1)[0]):
        if key in mapping and mapping[key] in manifest:
            return mapping[key]
    for key in (behavior, behavior.split("?", 1)[0]):
        if key in manifest:
            return key
    return None
