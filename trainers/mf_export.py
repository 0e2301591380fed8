"""ONNX models and hot-swap for mean-field runs.

The contract's inputs are the agent's observations (``obs_i``) and ``action_masks``. So:

* MF-AC and plain AC: the actor pi(a | s) sees the observation alone and is exported as it acts.
* IQL: the policy is Boltzmann over Q(s, .) at the temperature the schedule ends with (``T_end``), exported as
  logits ``Q / T_end`` (the contract's ``discrete_actions`` sample it, ``deterministic_discrete_actions`` is
  the greedy action, as in ``unimarl eval``).
* MF-Q: Q(s, a, mean_a) also needs the mean action of the agent's teammates at the previous decision. It is
  exported like IQL plus the extension input ``mean_action`` (:mod:`unimarl.trainers.onnx_export`), which the
  sim games and the plug-in's evaluator compute over the whole team (the ``team`` neighbourhood); Sentis'
  ML-Agents runner does not feed it, so such a model runs in player builds through ``PolicyHotSwap`` only.
  The manifest lists each model's ``inputs``.

Both encoders (``conv`` and ``mlp``) export with operators the plug-in's evaluator implements
(``onnx_export.SUPPORTED_OPERATORS``); a policy whose export fails anyway is recorded with ``exportable:
false`` and the reason.

Files: ``results/RUN_ID/onnx/<policy>.onnx`` (named as :func:`~unimarl.trainers.policy_export.model_file_name`
does) and the manifest ``onnx/mean_field.json`` (per policy: algorithm, env steps, spec, and file, SHA-256,
size, visual layout, inputs, or ``exportable: false`` and ``reason``), written at every checkpoint and when
the run ends; ``unimarl export RUN`` rewrites them from the latest checkpoint (:func:`export_checkpoint`).
``unimarl play RUN/onnx/<policy>.onnx`` plays such a file. :class:`MFHotSwap` pushes the exported models into
the running games like MAPPO's hot-swap (same config key ``hotswap.every``, same ``push_policy`` trigger file,
same metrics); behaviours of a policy that is not exportable are not pushed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from unimarl.bridge.spec import ActionSpec
from unimarl.trainers.batch import PolicySpec
from unimarl.trainers.hotswap import HotSwap
from unimarl.trainers.meanfield import MeanFieldError
from unimarl.trainers.mf_config import MeanFieldHyperparameters, MFLearner, make_learner
from unimarl.trainers.mfq import MFQLearner
from unimarl.trainers.onnx_export import ExportError, export_actor, input_names
from unimarl.trainers.policy_export import (
    ONNX_DIR,
    ExportedPolicy,
    RunExportError,
    infer_visual_layout,
    model_file_name,
)
from unimarl.trainers.run_dir import checkpoint_files

logger = logging.getLogger(__name__)

MANIFEST = "mean_field.json"


@dataclass(frozen=True)
class _Logits:
    """What :class:`~unimarl.trainers.onnx_export.ContractWrapper` reads from an actor's output."""

    discrete_logits: list[Tensor]


class ContractPolicy(nn.Module):
    """An acting network with the call the contract wrapper makes: ``(obs, mask)``, or ``(obs, mask,
    mean)`` for a network that takes the mean action (the mean-field extension of
    :mod:`unimarl.trainers.onnx_export`)."""

    def __init__(self, net: nn.Module, scale: float = 1.0, mean_action_size: int = 0) -> None:
        super().__init__()
        self.net = net
        self.scale = scale
        self.mean_action_size = mean_action_size

    def forward(
        self, obs: Sequence[Tensor], action_mask: Tensor | None, mean_action: Tensor | None = None
    ) -> _Logits:
        out = self.net(obs, mean_action) if self.mean_action_size else self.net(obs)
        return _Logits([out * self.scale])


def contract_policy(
    learner: MFLearner, *, with_mean_action: bool = False, temperature: float | None = None
) -> ContractPolicy | None:
    """A CPU copy of the learner's policy as a contract actor.

    MF-Q's policy needs the mean action: None unless ``with_mean_action`` (then the model takes the
    extension's ``mean_action`` input). Q policies are exported as logits ``Q / temperature`` (default: the
    schedule's last temperature, ``T_end``).
    """
    if isinstance(learner, MFQLearner):
        if learner.mean_dim and not with_mean_action:
            return None
        t = learner.config.temperature[-1][1] if temperature is None else temperature
        net = copy.deepcopy(learner.q_online).cpu().eval()
        return ContractPolicy(net, 1.0 / t, learner.mean_dim)
    return ContractPolicy(copy.deepcopy(learner.actor).cpu().eval())


def policy_model(
    learner: MFLearner, path: Path, *, temperature: float | None = None, visual_layout: str | None = None
) -> bytes:
    """Export ``learner``'s acting policy to ``path`` for a game to run and return the bytes.

    MF-Q with the mean action is exported with the ``mean_action`` input. Raises
    :class:`~unimarl.trainers.onnx_export.ExportError` when the network cannot be exported (an
    operator outside the evaluator's set).
    """
    actor = contract_policy(learner, with_mean_action=True, temperature=temperature)
    assert actor is not None
    layout = visual_layout or infer_visual_layout(learner.spec.obs_shapes)
    tmp = path.with_suffix(".onnx.tmp")
    try:
        with torch.random.fork_rng(devices=[]):  # tracing draws random inputs
            export_actor(
                actor,
                learner.spec,
                tmp,
                visual_layout=layout,  # type: ignore[arg-type]
                mean_action_size=actor.mean_action_size,
            )
        data = tmp.read_bytes()
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return data


def _spec_entry(spec: PolicySpec) -> dict[str, Any]:
    act = spec.action_spec
    return {
        "obs_shapes": [list(s) for s in spec.obs_shapes],
        "continuous_size": act.continuous_size,
        "discrete_branches": list(act.discrete_branches),
    }


def export_mean_field(
    run_path: str | Path, learners: dict[str, MFLearner], env_steps: int, *, strict: bool = False
) -> dict[str, Path]:
    """Export every exportable policy and rewrite the manifest (module docstring); returns the files written.

    A failed export is logged and recorded in the manifest, not raised (the checkpoint is already written),
    unless ``strict`` (``unimarl export``), which raises :class:`RunExportError` naming the policy.
    """
    folder = Path(run_path) / ONNX_DIR
    folder.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {}
    written: dict[str, Path] = {}
    for name, learner in sorted(learners.items()):
        entry: dict[str, Any] = {
            "algorithm": learner.algorithm,
            "env_steps": env_steps,
            "spec": _spec_entry(learner.spec),
        }
        manifest[name] = entry
        path = folder / model_file_name(name)
        layout = infer_visual_layout(learner.spec.obs_shapes)
        try:
            data = policy_model(learner, path, visual_layout=layout)
        except (ExportError, OSError) as e:
            if strict:
                raise RunExportError(f"policy {name!r} cannot be exported: {e}") from e
            logger.warning("policy %s not exported at %d env steps: %s", name, env_steps, e)
            entry.update(exportable=False, reason=str(e))
            continue
        written[name] = path
        sha = hashlib.sha256(data).hexdigest()
        mean = bool(getattr(learner, "mean_dim", 0)) and isinstance(learner, MFQLearner)
        entry.update(
            exportable=True,
            file=path.name,
            sha256=sha,
            size_bytes=len(data),
            visual_layout=layout,
            inputs=input_names(learner.spec, learner.mean_dim if mean else 0),
        )
    tmp_manifest = folder / (MANIFEST + ".tmp")
    tmp_manifest.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp_manifest.replace(folder / MANIFEST)
    return written


def export_checkpoint(run_path: str | Path) -> list[ExportedPolicy]:
    """Rewrite a mean-field run's models from its latest checkpoint (``unimarl export RUN_DIR``)."""
    run_path = Path(run_path)
    try:
        manifest = json.loads((run_path / ONNX_DIR / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise RunExportError(f"cannot read {run_path / ONNX_DIR / MANIFEST}: {e}") from e
    checkpoints = checkpoint_files(run_path / "checkpoints")
    if not checkpoints:
        raise RunExportError(f"no checkpoint in {run_path / 'checkpoints'}: train (or resume) the run first")
    state = torch.load(checkpoints[-1], weights_only=True, map_location="cpu")
    learners: dict[str, MFLearner] = {}
    for name, setup in sorted(state["setups"].items()):
        entry = manifest.get(name, {})
        if "spec" not in entry:
            raise RunExportError(
                f"{MANIFEST} has no spec for policy {name!r} (written by an older unimarl): resume the run "
                "for one checkpoint to rewrite it, then export"
            )
        spec = PolicySpec(
            tuple(tuple(int(d) for d in s) for s in entry["spec"]["obs_shapes"]),
            ActionSpec(int(entry["spec"]["continuous_size"]), tuple(entry["spec"]["discrete_branches"])),
        )
        hp = MeanFieldHyperparameters(**setup["hyperparameters"])
        learner = make_learner(setup["trainer_type"], spec, hp, acting_only=True)
        try:
            learner.load_state_dict(state["policies"][name])
        except (MeanFieldError, KeyError) as e:
            raise RunExportError(f"policy {name!r}: {checkpoints[-1]} does not fit its manifest: {e}") from e
        learners[name] = learner
    env_steps = int(state["counters"]["env_steps"])
    rows = []
    for name, path in export_mean_field(run_path, learners, env_steps, strict=True).items():
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        rows.append(ExportedPolicy(name, path, sha, len(data), env_steps, 0.0))
    return rows


class MFHotSwap(HotSwap):
    """:class:`~unimarl.trainers.hotswap.HotSwap` for mean-field learners (exportable policies only)."""

    def push(self, policies: dict[str, Any], env_steps: int) -> int:
        """Export and push the learners' exportable policies now; returns the version pushed."""
        written = export_mean_field(self.run_path, policies, env_steps)
        self.version += 1
        for behavior, policy in sorted(self.behavior_policy.items()):
            if policy not in written:
                continue
            games = self.pool.push_policy(behavior, self.version, written[policy].read_bytes())
            logger.info("hot-swap: %s v%d queued for %d games", behavior, self.version, games)
        return self.version
