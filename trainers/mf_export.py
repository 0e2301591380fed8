"""ONNX models and hot-swap for mean-field runs: what ML-Agents' model contract can carry, and what it cannot.

The contract's inputs are the agent's observations (``obs_i``) and ``action_masks``; nothing else. So:

* MF-AC and plain AC: the actor pi(a | s) sees the observation alone and is exported as it acts.
* IQL: the policy is Boltzmann over Q(s, .) at the temperature the schedule ends with (``T_end``), exported as
  logits ``Q / T_end`` (the contract's ``discrete_actions`` sample it, ``deterministic_discrete_actions`` is
  the greedy action, as in ``unimarl eval``).
* MF-Q: Q(s, a, mean_a) needs the mean action of the agent's neighbours at the previous step, an input the
  contract lacks (a game would have to compute it per agent and feed it). Nothing is exported; the manifest
  entry says so (``exportable: false`` with the reason).

The plug-in's runtime evaluator implements no convolution (``onnx_export.SUPPORTED_OPERATORS``), so a policy
with ``encoder: conv`` is refused by the exporter and recorded the same way; train with ``encoder: mlp`` for
policies meant to run in the game.

Files: ``results/RUN_ID/onnx/<policy>.onnx`` (named as :func:`~unimarl.trainers.policy_export.model_file_name`
does) and the manifest ``onnx/mean_field.json`` (per policy: algorithm, env steps, and file, SHA-256, size,
visual layout, or ``exportable: false`` and ``reason``), written at every checkpoint and when the run ends.
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

from unimarl.trainers.hotswap import HotSwap
from unimarl.trainers.mf_config import MFLearner
from unimarl.trainers.mfq import MFQLearner
from unimarl.trainers.onnx_export import ExportError, export_actor
from unimarl.trainers.policy_export import ONNX_DIR, infer_visual_layout, model_file_name

logger = logging.getLogger(__name__)

MANIFEST = "mean_field.json"


@dataclass(frozen=True)
class _Logits:
    """What :class:`~unimarl.trainers.onnx_export.ContractWrapper` reads from an actor's output."""

    discrete_logits: list[Tensor]


class ContractPolicy(nn.Module):
    """An observation-only acting network with the call the contract wrapper makes: ``(obs, mask)``."""

    def __init__(self, net: nn.Module, scale: float = 1.0) -> None:
        super().__init__()
        self.net = net
        self.scale = scale

    def forward(self, obs: Sequence[Tensor], action_mask: Tensor | None) -> _Logits:
        return _Logits([self.net(obs) * self.scale])


def contract_policy(learner: MFLearner) -> ContractPolicy | None:
    """A CPU copy of the learner's policy as a contract actor, or None when it needs the mean action."""
    if isinstance(learner, MFQLearner):
        if learner.mean_dim:
            return None
        t_end = learner.config.temperature[-1][1]
        return ContractPolicy(copy.deepcopy(learner.q_online).cpu().eval(), 1.0 / t_end)
    return ContractPolicy(copy.deepcopy(learner.actor).cpu().eval())


NOT_IN_CONTRACT = (
    "MF-Q's policy takes the neighbours' mean action, an input ML-Agents' model contract (obs_i, "
    "action_masks) lacks; export MF-AC's actor or an IQL policy instead"
)


def export_mean_field(
    run_path: str | Path, learners: dict[str, MFLearner], env_steps: int
) -> dict[str, Path]:
    """Export every exportable policy and rewrite the manifest (module docstring); returns the files written.

    A failed export is logged and recorded in the manifest, never raised: the checkpoint is already written.
    """
    folder = Path(run_path) / ONNX_DIR
    folder.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {}
    written: dict[str, Path] = {}
    for name, learner in sorted(learners.items()):
        entry: dict[str, Any] = {"algorithm": learner.algorithm, "env_steps": env_steps}
        manifest[name] = entry
        actor = contract_policy(learner)
        if actor is None:
            entry.update(exportable=False, reason=NOT_IN_CONTRACT)
            continue
        path = folder / model_file_name(name)
        tmp = path.with_suffix(".onnx.tmp")
        layout = infer_visual_layout(learner.spec.obs_shapes)
        try:
            with torch.random.fork_rng(devices=[]):  # tracing draws random inputs
                export_actor(actor, learner.spec, tmp, visual_layout=layout)  # type: ignore[arg-type]
            data = tmp.read_bytes()
            tmp.replace(path)
        except (ExportError, OSError) as e:
            logger.warning("policy %s not exported at %d env steps: %s", name, env_steps, e)
            entry.update(exportable=False, reason=str(e))
            continue
        finally:
            tmp.unlink(missing_ok=True)
        written[name] = path
        sha = hashlib.sha256(data).hexdigest()
        entry.update(exportable=True, file=path.name, sha256=sha, size_bytes=len(data), visual_layout=layout)
    tmp_manifest = folder / (MANIFEST + ".tmp")
    tmp_manifest.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp_manifest.replace(folder / MANIFEST)
    return written


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
