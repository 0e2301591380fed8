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

Files and manifest are every algorithm's (:mod:`unimarl.trainers.export.policies`):
``results/RUN_ID/onnx/<policy>.onnx`` and ``onnx/policies.json``, whose entries here record the ``algorithm``
(mfq, iql, mfac, ac) and, for Q policies, the ``temperature`` the logits are divided by. They are written at
every checkpoint and when the run ends, rewritten from the latest checkpoint by ``unimarl export RUN``
(:func:`mean_field_sources`), played by ``unimarl play RUN`` and pushed into running games by the one hot-swap
(:class:`~unimarl.trainers.export.hotswap.HotSwap`). A failed export is recorded and keeps the previous model,
as for MAPPO.
"""

from __future__ import annotations

import copy
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
from unimarl.trainers.export.policies import (
    ExportedPolicy,
    ModelSource,
    RunExportError,
    export_model,
    infer_visual_layout,
    spec_from_entry,
    write_models,
)

logger = logging.getLogger(__name__)


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


def mean_field_source(learner: MFLearner, *, temperature: float | None = None) -> ModelSource:
    """``learner``'s acting policy (:func:`contract_policy`) as a model to export."""
    actor = contract_policy(learner, temperature=temperature)
    described: dict[str, Any] = {"algorithm": learner.algorithm}
    if isinstance(learner, MFQLearner):
        described["temperature"] = 1.0 / actor.scale
    layout = infer_visual_layout(learner.spec.obs_shapes)
    return ModelSource(actor, learner.spec, layout, described, actor.mean_action_size)


def export_mean_field(
    run_path: str | Path, learners: dict[str, MFLearner], env_steps: int
) -> list[ExportedPolicy]:
    """Export every policy and rewrite the manifest (:func:`~unimarl.trainers.export.policies.write_models`:
    a failed export is logged and recorded, the previous model stays); returns the models written."""
    sources = {name: mean_field_source(learner) for name, learner in learners.items()}
    return write_models(run_path, sources, env_steps)


def mean_field_sources(manifest: dict[str, Any], state: dict[str, Any]) -> dict[str, ModelSource]:
    """The mean-field :data:`~unimarl.trainers.export.policies.Rebuild`: each learner's acting network from
    the checkpoint's setups (trainer type, hyperparameters) and its manifest entry's spec."""
    sources = {}
    for name, setup in sorted(state["setups"].items()):
        spec = spec_from_entry(manifest[name]["spec"])
        hp = MeanFieldHyperparameters(**setup["hyperparameters"])
        learner = make_learner(setup["trainer_type"], spec, hp, acting_only=True)
        try:
            learner.load_state_dict(state["policies"][name])
        except (MeanFieldError, KeyError) as e:
            raise RunExportError(f"policy {name!r}: the checkpoint does not fit its manifest: {e}") from e
        sources[name] = mean_field_source(learner)
    return sources
