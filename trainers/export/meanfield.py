"""ONNX models and hot-swap for mean-field runs.

The contract's inputs are the agent's observations (``obs_i``) and ``action_masks``. So:

* MF-AC and plain AC: the actor pi(a | s) sees the observation alone and is exported as it acts.
* IQL: the policy is Boltzmann over Q(s, .) at the temperature the training has reached (the schedule follows
  whichever budget ends the run, so a finished run exports ``T_end``), exported as logits ``Q / T`` (the
  contract's ``discrete_actions`` sample it, ``deterministic_discrete_actions`` is the greedy action, as in
  ``unimarl eval``).
* MF-Q: Q(s, a, mean_a) also needs the mean action of the agent's teammates at the previous decision. It is
  exported like IQL plus the extension input ``mean_action`` (:mod:`unimarl.trainers.export.onnx`), which the
  sim games and the plug-in's evaluator compute over the team within each Unity group (the ``team``
  neighbourhood segmented by group, as in training); Sentis'
  ML-Agents runner does not feed it, so such a model runs in player builds through ``PolicyHotSwap`` only.
  The manifest lists each model's ``inputs``.

Both encoders (``conv`` and ``mlp``) export with operators the plug-in's evaluator implements
(``onnx_export.SUPPORTED_OPERATORS``); a policy whose export fails anyway is recorded with ``exportable:
false`` and the reason.

Files: ``results/RUN_ID/onnx/<policy>.onnx`` (named as
:func:`~unimarl.trainers.export.policies.model_file_name` does) and the manifest ``onnx/mean_field.json``
(per policy: algorithm, env steps, spec, and file, SHA-256, size, visual layout, inputs, or ``exportable:
false`` and ``reason``), written at every checkpoint and when the run ends; ``unimarl export RUN`` rewrites
them from the latest checkpoint (:func:`export_checkpoint`). ``unimarl play RUN/onnx/<policy>.onnx`` plays
such a file. :class:`MFHotSwap` pushes the exported models into the running games like MAPPO's hot-swap (same
config key ``hotswap.every``, same ``push_policy`` trigger file, same metrics); behaviours of a policy that
is not exportable are not pushed.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from unimarl.trainers.algos.meanfield.learners import MeanFieldHyperparameters, MFLearner, make_learner
from unimarl.trainers.algos.meanfield.mean_action import MeanFieldError
from unimarl.trainers.algos.meanfield.mfq import MFQLearner
from unimarl.trainers.core.files import replace_durably
from unimarl.trainers.export.hotswap import HotSwap
from unimarl.trainers.export.onnx import ExportError, input_names
from unimarl.trainers.export.policies import (
    ONNX_DIR,
    ExportedPolicy,
    RunExportError,
    export_model,
    infer_visual_layout,
    load_latest_checkpoint,
    model_file_name,
    spec_entry,
    spec_from_entry,
)

logger = logging.getLogger(__name__)

MANIFEST = "mean_field.json"


@dataclass(frozen=True)
class _Logits:
    """What :class:`~unimarl.trainers.export.onnx.ContractWrapper` reads from an actor's output."""

    discrete_logits: list[Tensor]


class ContractPolicy(nn.Module):
    """An acting network with the call the contract wrapper makes: ``(obs, mask)``, or ``(obs, mask,
    mean)`` for a network that takes the mean action (the mean-field extension of
    :mod:`unimarl.trainers.export.onnx`)."""

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


def acting_mean_size(learner: MFLearner) -> int:
    """Width of the mean action the learner's *policy* takes: MF-Q's (its Q network's), else 0 (an actor or
    IQL sees the observation alone)."""
    return learner.mean_dim if isinstance(learner, MFQLearner) else 0


def contract_policy(learner: MFLearner, *, temperature: float | None = None) -> ContractPolicy:
    """A CPU copy of the learner's policy as a contract actor (MF-Q's takes the ``mean_action`` input).

    Q policies are exported as logits ``Q / temperature`` (default: the temperature the learner acts with
    now, i.e. the one its training reached).
    """
    if isinstance(learner, MFQLearner):
        t = learner.temperature if temperature is None else temperature
        net = copy.deepcopy(learner.q_online).cpu().eval()
        return ContractPolicy(net, 1.0 / t, acting_mean_size(learner))
    return ContractPolicy(copy.deepcopy(learner.actor).cpu().eval())


def policy_model(
    learner: MFLearner,
    path: Path,
    *,
    name: str = "",
    env_steps: int = 0,
    temperature: float | None = None,
    visual_layout: str | None = None,
) -> ExportedPolicy:
    """Export ``learner``'s acting policy (:func:`contract_policy`) to ``path`` for a game to run.

    Raises :class:`~unimarl.trainers.export.onnx.ExportError` when the network cannot be exported (an
    operator outside the evaluator's set).
    """
    actor = contract_policy(learner, temperature=temperature)
    layout = visual_layout or infer_visual_layout(learner.spec.obs_shapes)
    with torch.random.fork_rng(devices=[]):  # tracing draws random inputs
        return export_model(
            name or path.stem, actor, learner.spec, path, env_steps, layout, actor.mean_action_size
        )


def export_mean_field(
    run_path: str | Path, learners: dict[str, MFLearner], env_steps: int, *, strict: bool = False
) -> dict[str, ExportedPolicy]:
    """Export every exportable policy and rewrite the manifest (module docstring); returns what was written.

    A failed export is logged and recorded in the manifest, not raised (the checkpoint is already written),
    unless ``strict`` (``unimarl export``), which raises :class:`RunExportError` naming the policy.
    """
    folder = Path(run_path) / ONNX_DIR
    folder.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {}
    written: dict[str, ExportedPolicy] = {}
    for name, learner in sorted(learners.items()):
        entry: dict[str, Any] = {
            "algorithm": learner.algorithm,
            "env_steps": env_steps,
            "spec": spec_entry(learner.spec),
        }
        manifest[name] = entry
        path = folder / model_file_name(name)
        layout = infer_visual_layout(learner.spec.obs_shapes)
        try:
            done = policy_model(learner, path, name=name, env_steps=env_steps, visual_layout=layout)
        except (ExportError, OSError) as e:
            if strict:
                raise RunExportError(f"policy {name!r} cannot be exported: {e}") from e
            logger.warning("policy %s not exported at %d env steps: %s", name, env_steps, e)
            entry.update(exportable=False, reason=str(e))
            continue
        written[name] = done
        entry.update(
            exportable=True,
            file=path.name,
            sha256=done.sha256,
            size_bytes=done.size_bytes,
            visual_layout=layout,
            inputs=input_names(learner.spec, acting_mean_size(learner)),
        )
    tmp_manifest = folder / (MANIFEST + ".tmp")
    tmp_manifest.write_text(json.dumps(manifest, indent=2) + "\n")
    replace_durably(tmp_manifest, folder / MANIFEST)
    return written


def export_checkpoint(run_path: str | Path) -> list[ExportedPolicy]:
    """Rewrite a mean-field run's models from its latest checkpoint (``unimarl export RUN_DIR``)."""
    run_path = Path(run_path)
    try:
        manifest = json.loads((run_path / ONNX_DIR / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise RunExportError(f"cannot read {run_path / ONNX_DIR / MANIFEST}: {e}") from e
    checkpoint, state = load_latest_checkpoint(run_path)
    learners: dict[str, MFLearner] = {}
    for name, setup in sorted(state["setups"].items()):
        entry = manifest.get(name, {})
        if "spec" not in entry:
            raise RunExportError(
                f"{MANIFEST} has no spec for policy {name!r} (written by an older unimarl): resume the run "
                "for one checkpoint to rewrite it, then export"
            )
        spec = spec_from_entry(entry["spec"])
        hp = MeanFieldHyperparameters(**setup["hyperparameters"])
        learner = make_learner(setup["trainer_type"], spec, hp, acting_only=True)
        try:
            learner.load_state_dict(state["policies"][name])
        except (MeanFieldError, KeyError) as e:
            raise RunExportError(f"policy {name!r}: {checkpoint} does not fit its manifest: {e}") from e
        learners[name] = learner
    env_steps = int(state["counters"]["env_steps"])
    return list(export_mean_field(run_path, learners, env_steps, strict=True).values())


class MFHotSwap(HotSwap):
    """:class:`~unimarl.trainers.export.hotswap.HotSwap` for mean-field learners (exportable policies
    only)."""

    def push(self, policies: dict[str, Any], env_steps: int) -> int:
        """Export and push the learners' exportable policies now; returns the version pushed."""
        written = export_mean_field(self.run_path, policies, env_steps)
        self.version += 1
        for behavior, policy in sorted(self.behavior_policy.items()):
            if policy not in written:
                continue
            games = self.pool.push_policy(behavior, self.version, written[policy].path.read_bytes())
            logger.info("hot-swap: %s v%d queued for %d games", behavior, self.version, games)
        return self.version
