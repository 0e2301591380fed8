"""Export an actor network as an ONNX model that follows Unity ML-Agents' model contract.

The exported graph is what ``BehaviorParameters`` (Unity Sentis / Inference Engine) and the plug-in's own
evaluator in ``unity_project/`` load:

* inputs: ``obs_0 .. obs_{n-1}`` float32 ``[batch, *shape]`` (visual observations NCHW, see below), and
  ``action_masks`` float32 ``[batch, sum(branches)]`` (1 = allowed, 0 = masked) when there are discrete
  actions. Axis 0 of every input and action output is the dynamic axis ``batch``.
* outputs: ``version_number`` (float32 [1] = 3, ML-Agents' ``MLAgents2_0``), ``memory_size`` (float32 [1] =
  0); with continuous actions ``continuous_actions`` (sampled: ``map(mean + std * N(0, 1))``, the noise drawn
  by ``RandomNormalLike``), ``deterministic_continuous_actions`` (``map(mean)``) and
  ``continuous_action_output_shape`` (float32 [1]), where ``map`` is training's own mapping to the game's
  action (:mod:`unimarl.trainers.core.action_map`: ML-Agents' ``clip(a, -3, 3) / 3`` for Unity games, then the
  affine map onto ``spec.action_bounds`` for other Box ranges), so the outputs are the game's actions;
  with discrete actions ``discrete_actions`` (int64 [batch, branches], sampled by ``Multinomial`` on the
  log of the masked probabilities),
  ``deterministic_discrete_actions`` (int64, argmax of the masked probabilities) and
  ``discrete_action_output_shape`` (float32 [branches] = branch sizes). Hybrid action specs get both sets.

Masking: the wrapper lowers the logits of masked actions by :data:`MASKED_LOGIT` before the softmax (as the
trainers act; an actor that masked its logits already is unchanged), so a masked action has probability
exactly 0 and can be chosen neither by ``Multinomial`` nor by ``ArgMax``, and the allowed actions keep their
probabilities even when a masked action's logit is far above theirs (an MF-Q policy's ``Q / T`` at a low
temperature: masking the probabilities after the softmax left all-zero rows there, sampled out of range).

Visual layout: ML-Agents' contract feeds visual observations NCHW. Games on the C# 3.x package already send
CHW (``visual_layout="CHW"``, the default: no transpose). For C# 2.x games, which send HWC, pass
``visual_layout="HWC"``: the input is declared NCHW and the graph transposes it back to NHWC for the actor.

Operator set (opset <= 15, exported with the TorchScript exporter and constant folding). A typical MLP actor
(normaliser, Linear + LayerNorm + Tanh/ReLU layers, heads) uses only: Gemm, MatMul, Add, Sub, Mul, Div, Neg,
Tanh, Relu, Sigmoid, Exp, Log, Sqrt, Pow, Clip, Concat, Flatten, Reshape, Transpose, ReduceMean, Softmax,
ArgMax, Multinomial, RandomNormalLike, Constant, Identity, Cast, Slice and Split (per-branch views of the mask
and logits), and, for shape arithmetic the tracer sometimes emits, Shape, Gather, Unsqueeze, Squeeze. Conv
encoders (``nn.Conv2d``: 2-D, any kernel, strides, pads, dilations and groups) add Conv. The plug-in's runtime
evaluator implements exactly this list (:data:`SUPPORTED_OPERATORS`); :func:`export_actor`
refuses a graph that uses anything else, so a model that exports is a model the plug-in can run.

Mean-field extension (``mean_action_size > 0``, used for MF-Q self-play opponents run in the game): one more
input after the contract's, ``mean_action`` float32 ``[batch, D]``, the mean of the encoded actions
(:func:`unimarl.trainers.algos.meanfield.mean_action.encode_actions`) the agent's teammates took at the
previous decision. The actor is then called ``actor(obs, mask, mean_action)``. Such a model runs on the sim
games and the plug-in's evaluator, which compute that input (whole-team neighbourhood); Sentis' ML-Agents
runner does not feed it.
"""

from __future__ import annotations

import io
import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import onnx
import torch
from torch import Tensor, nn

from unimarl.trainers.core.action_map import to_env_torch
from unimarl.trainers.core.batch import PolicySpec
from unimarl.trainers.core.errors import TrainerError

logger = logging.getLogger(__name__)

MODEL_EXPORT_VERSION = 3.0
"""``version_number`` written into every model (ML-Agents ``ModelApiVersion.MLAgents2_0``)."""
MAX_OPSET = 15
"""Highest opset the exporter writes (Sentis and the plug-in evaluator both read it)."""

SUPPORTED_OPERATORS: frozenset[str] = frozenset(
    {
        "Add", "ArgMax", "Cast", "Clip", "Concat", "Constant", "Conv", "Div", "Exp", "Flatten", "Gather",
        "Gemm", "Identity", "Log", "MatMul", "Mul", "Multinomial", "Neg", "Pow", "RandomNormalLike",
        "ReduceMean", "Relu", "Reshape", "Shape", "Sigmoid", "Slice", "Softmax", "Split", "Sqrt", "Squeeze",
        "Sub", "Tanh", "Transpose", "Unsqueeze",
    }
)  # fmt: skip
"""Operators the plug-in's runtime evaluator implements (``unity_project/.../Core/OnnxEvaluator.cs``)."""


class ExportError(TrainerError):
    """An actor could not be exported, or an exported model breaks ML-Agents' model contract."""


class ActorLike(Protocol):
    """What :func:`export_actor` needs from an actor (``unimarl.trainers.algos.mappo.networks.Actor``)."""

    def __call__(self, obs: list[Tensor], action_mask: Tensor | None) -> object: ...


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_actor` wrote: file, size, time taken, opset and the operators the graph uses."""

    path: Path
    size_bytes: int
    export_seconds: float
    opset: int
    operators: tuple[str, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


MASKED_LOGIT = 1e9
"""Subtracted from the logits of masked actions before the softmax (their probability becomes exactly 0)."""

MEAN_ACTION_INPUT = "mean_action"
"""Name of the mean-field extension's input (module docstring)."""


def input_names(spec: PolicySpec, mean_action_size: int = 0) -> list[str]:
    """Contract input names for ``spec``, in order (plus ``mean_action`` for the mean-field extension)."""
    names = [f"obs_{i}" for i in range(len(spec.obs_shapes))]
    if spec.action_spec.discrete_size:
        names.append("action_masks")
    if mean_action_size:
        names.append(MEAN_ACTION_INPUT)
    return names


def output_names(spec: PolicySpec) -> list[str]:
    """Contract output names for ``spec``, in the order the wrapper returns them."""
    names = ["version_number", "memory_size"]
    if spec.action_spec.continuous_size:
        names += ["continuous_actions", "continuous_action_output_shape", "deterministic_continuous_actions"]
    if spec.action_spec.discrete_size:
        names += ["discrete_actions", "discrete_action_output_shape", "deterministic_discrete_actions"]
    return names


def contract_obs_shape(shape: Sequence[int], visual_layout: str) -> tuple[int, ...]:
    """Shape (without batch) of the ONNX input for an observation of the game's ``shape``."""
    if len(shape) == 3 and visual_layout == "HWC":
        height, width, channels = shape
        return (channels, height, width)
    return tuple(shape)


class ContractWrapper(nn.Module):
    """Wraps an actor so its forward takes the contract inputs and returns the contract outputs."""

    version_number: Tensor
    memory_size: Tensor
    continuous_shape: Tensor
    discrete_shape: Tensor

    def __init__(
        self, actor: nn.Module, spec: PolicySpec, visual_layout: str = "CHW", mean_action_size: int = 0
    ) -> None:
        super().__init__()
        self.actor = actor
        self.spec = spec
        self.mean_action_size = mean_action_size
        self.transpose = [len(s) == 3 and visual_layout == "HWC" for s in spec.obs_shapes]
        act = spec.action_spec
        self.register_buffer("version_number", torch.tensor([MODEL_EXPORT_VERSION]))
        self.register_buffer("memory_size", torch.tensor([0.0]))
        self.register_buffer("continuous_shape", torch.tensor([float(act.continuous_size)]))
        self.register_buffer("discrete_shape", torch.tensor([float(b) for b in act.discrete_branches]))

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        n_obs = len(self.spec.obs_shapes)
        obs = [x.permute(0, 2, 3, 1) if t else x for x, t in zip(inputs[:n_obs], self.transpose, strict=True)]
        has_mask = bool(self.spec.action_spec.discrete_size)
        mask = inputs[n_obs] if has_mask else None
        extra = inputs[n_obs + has_mask :] if self.mean_action_size else ()
        out = self.actor(obs, mask, *extra)
        outputs: list[Tensor] = [self.version_number, self.memory_size]
        if self.spec.action_spec.continuous_size:
            outputs += self._continuous(out.continuous_mean, out.continuous_log_std)
        if self.spec.action_spec.discrete_size:
            assert mask is not None
            outputs += self._discrete(out.discrete_logits, mask)
        return tuple(outputs)

    def _continuous(self, mean: Tensor, log_std: Tensor) -> list[Tensor]:
        # exp(log_std) of a parameter is constant-folded into an initializer at export.
        sampled = mean + torch.exp(log_std) * torch.randn_like(mean)
        bounds = self.spec.action_bounds
        return [to_env_torch(sampled, bounds), self.continuous_shape, to_env_torch(mean, bounds)]

    def _discrete(self, logits: Sequence[Tensor], mask: Tensor) -> list[Tensor]:
        sampled, deterministic = [], []
        start = 0
        for branch_logits, size in zip(logits, self.spec.action_spec.discrete_branches, strict=True):
            # mask the logits, then normalise (as the trainers act): a softmax masked afterwards leaves a row
            # of zeros when a masked action takes all the mass (logits far apart, e.g. Q / T at a low
            # temperature), and Multinomial then samples outside the branch
            allowed = mask[:, start : start + size]
            probs = torch.softmax(branch_logits + (allowed - 1.0) * MASKED_LOGIT, dim=1)
            start += size
            sampled.append(torch.multinomial(probs, 1))
            deterministic.append(torch.argmax(probs, dim=1, keepdim=True))
        return [torch.cat(sampled, dim=1), self.discrete_shape, torch.cat(deterministic, dim=1)]


def example_inputs(
    spec: PolicySpec, batch: int = 2, visual_layout: str = "CHW", mean_action_size: int = 0
) -> tuple[Tensor, ...]:
    """Random contract inputs for ``spec`` (all actions allowed), e.g. for tracing or parity checks."""
    tensors = [torch.randn(batch, *contract_obs_shape(s, visual_layout)) for s in spec.obs_shapes]
    if spec.action_spec.discrete_size:
        tensors.append(torch.ones(batch, spec.mask_size))
    if mean_action_size:
        tensors.append(torch.softmax(torch.randn(batch, mean_action_size), dim=1))
    return tuple(tensors)


def export_actor(
    actor: nn.Module,
    spec: PolicySpec,
    path: str | Path,
    *,
    opset: int = MAX_OPSET,
    visual_layout: Literal["CHW", "HWC"] = "CHW",
    mean_action_size: int = 0,
) -> ExportReport:
    """Write ``actor`` to ``path`` as an ML-Agents-contract ONNX model and return what was written.

    ``mean_action_size > 0`` adds the mean-field extension's ``mean_action`` input (module docstring).

    Raises :class:`ExportError` for an opset above 15, a spec without actions, an unknown visual layout, a
    failure of the exporter, or a graph that uses an operator outside :data:`SUPPORTED_OPERATORS`.
    """
    if not 9 <= opset <= MAX_OPSET:
        raise ExportError(f"opset {opset} is not supported: pass an opset between 9 and {MAX_OPSET}")
    if visual_layout not in ("CHW", "HWC"):
        raise ExportError(
            f"visual_layout {visual_layout!r} is unknown: pass 'CHW' (C# 3.x) or 'HWC' (C# 2.x)"
        )
    act = spec.action_spec
    if not act.continuous_size and not act.discrete_size:
        raise ExportError("the policy spec has no actions: export needs continuous or discrete actions")
    path = Path(path)
    if mean_action_size < 0:
        raise ExportError(
            f"mean_action_size {mean_action_size} is negative: pass 0 (none) or the encoded size"
        )
    wrapper = ContractWrapper(actor, spec, visual_layout, mean_action_size).eval()
    inputs, outputs = input_names(spec, mean_action_size), output_names(spec)
    batch_outputs = [n for n in outputs if n in _BATCH_OUTPUTS]
    dynamic_axes = {name: {0: "batch"} for name in [*inputs, *batch_outputs]}
    started = time.perf_counter()
    buffer = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(
                wrapper,
                example_inputs(spec, visual_layout=visual_layout, mean_action_size=mean_action_size),
                buffer,  # type: ignore[arg-type]  # a file object is documented and works; the stub says path
                input_names=inputs,
                output_names=outputs,
                dynamic_axes=dynamic_axes,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
    except Exception as e:  # the exporter raises many unrelated types; all mean the same thing here
        raise ExportError(f"torch.onnx.export failed for {type(actor).__name__}: {e}") from e
    model = onnx.load_from_string(buffer.getvalue())
    operators = tuple(sorted({node.op_type for node in model.graph.node}))
    unsupported = sorted(set(operators) - SUPPORTED_OPERATORS)
    if unsupported:
        raise ExportError(
            f"the exported graph uses {unsupported}, which the plug-in's evaluator does not implement; "
            f"use layers built from {sorted(SUPPORTED_OPERATORS)}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    seconds = time.perf_counter() - started
    report = ExportReport(
        path=path,
        size_bytes=path.stat().st_size,
        export_seconds=seconds,
        opset=opset,
        operators=operators,
        inputs=tuple(inputs),
        outputs=tuple(outputs),
    )
    logger.info("exported %s (%d bytes, opset %d) in %.2fs", path, report.size_bytes, opset, seconds)
    return report


_BATCH_OUTPUTS = frozenset(
    {
        "continuous_actions",
        "deterministic_continuous_actions",
        "discrete_actions",
        "deterministic_discrete_actions",
    }
)
