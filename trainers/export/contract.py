"""Check an ONNX model against Unity ML-Agents' model contract for a given policy spec.

The checks mirror what ML-Agents' loaders look at (runtime ``CheckModelVersion`` and the Editor's
``CheckModel``) plus what the plug-in's evaluator needs:

* the default-domain opset is at most 15;
* inputs are exactly ``obs_0 .. obs_{n-1}`` (float32, ``[batch, *shape]``, visual NCHW) and ``action_masks``
  (float32 ``[batch, sum(branches)]``) when there are discrete actions;
* every required output exists with the right element type: ``version_number``, ``memory_size``, the
  continuous trio and/or the discrete trio (discrete actions int64);
* the constants, read by running the model once with onnxruntime on zero observations and an all-ones mask (as
  Sentis does): ``version_number`` = 3, ``memory_size`` = 0, ``continuous_action_output_shape`` = [c],
  ``discrete_action_output_shape`` = branch sizes; and the action outputs have shape ``[batch, n]`` at batch 1
  and 3.

:func:`check_model` returns the list of problems (empty when the model is fine); :func:`assert_contract`
raises :class:`~unimarl.trainers.export.onnx.ExportError` listing all of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from unimarl.trainers.core.batch import PolicySpec
from unimarl.trainers.export.onnx import (
    MAX_OPSET,
    MODEL_EXPORT_VERSION,
    ExportError,
    contract_obs_shape,
    input_names,
    output_names,
)

_INT64 = onnx.TensorProto.INT64
_FLOAT = onnx.TensorProto.FLOAT
_INT_OUTPUTS = frozenset({"discrete_actions", "deterministic_discrete_actions"})


def _load(model: str | Path | bytes | onnx.ModelProto) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, bytes):
        return onnx.load_from_string(model)
    return onnx.load(str(model))


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    shape = value.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in shape.dim]


def _check_opset(model: onnx.ModelProto) -> list[str]:
    problems = []
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx") and entry.version > MAX_OPSET:
            problems.append(
                f"opset {entry.version} is above {MAX_OPSET}: re-export with opset_version<={MAX_OPSET}"
            )
    return problems


def _check_inputs(model: onnx.ModelProto, spec: PolicySpec, visual_layout: str) -> list[str]:
    problems = []
    expected = input_names(spec)
    actual = {i.name: i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}}
    for name in sorted(set(actual) - set(expected)):
        problems.append(f"unexpected input {name!r}: the contract inputs are {expected}")
    shapes = [contract_obs_shape(s, visual_layout) for s in spec.obs_shapes]
    if spec.action_spec.discrete_size:
        shapes.append((spec.mask_size,))
    for name, shape in zip(expected, shapes, strict=True):
        value = actual.get(name)
        if value is None:
            problems.append(f"missing input {name!r} (float32 [batch, {', '.join(map(str, shape))}])")
            continue
        if value.type.tensor_type.elem_type != _FLOAT:
            problems.append(
                f"input {name!r} has element type {value.type.tensor_type.elem_type}, expected float32"
            )
        dims = _dims(value)
        if len(dims) != len(shape) + 1 or [int(d) for d in dims[1:] if isinstance(d, int)] != list(shape):
            problems.append(
                f"input {name!r} has shape {dims}, expected [batch, {', '.join(map(str, shape))}]"
            )
        elif isinstance(dims[0], int) and dims[0] > 0:
            problems.append(f"input {name!r} has a fixed batch size {dims[0]}: export with a dynamic axis 0")
    return problems


def _check_outputs(model: onnx.ModelProto, spec: PolicySpec) -> list[str]:
    problems = []
    actual = {o.name: o for o in model.graph.output}
    for name in output_names(spec):
        value = actual.get(name)
        if value is None:
            problems.append(f"missing output {name!r}: ML-Agents needs it for this action spec")
            continue
        want = _INT64 if name in _INT_OUTPUTS else _FLOAT
        got = value.type.tensor_type.elem_type
        if got != want:
            problems.append(f"output {name!r} has element type {got}, expected {want} (onnx.TensorProto)")
    return problems


def _zero_feed(spec: PolicySpec, batch: int, visual_layout: str) -> dict[str, np.ndarray]:
    feed = {
        f"obs_{i}": np.zeros((batch, *contract_obs_shape(s, visual_layout)), np.float32)
        for i, s in enumerate(spec.obs_shapes)
    }
    if spec.action_spec.discrete_size:
        feed["action_masks"] = np.ones((batch, spec.mask_size), np.float32)
    return feed


def _check_values(model: onnx.ModelProto, spec: PolicySpec, visual_layout: str) -> list[str]:
    import onnxruntime as ort

    act = spec.action_spec
    expected_constants = {
        "version_number": [MODEL_EXPORT_VERSION],
        "memory_size": [0.0],
        "continuous_action_output_shape": [float(act.continuous_size)],
        "discrete_action_output_shape": [float(b) for b in act.discrete_branches],
    }
    widths = {
        "continuous_actions": act.continuous_size,
        "deterministic_continuous_actions": act.continuous_size,
        "discrete_actions": act.discrete_size,
        "deterministic_discrete_actions": act.discrete_size,
    }
    try:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own unexported exception types
        return [f"onnxruntime cannot load the model: {e}"]
    names = [o.name for o in session.get_outputs()]
    problems: list[str] = []
    for batch in (1, 3):
        try:
            values = dict(zip(names, session.run(None, _zero_feed(spec, batch, visual_layout)), strict=True))
        except Exception as e:  # same as above
            return [f"onnxruntime cannot run the model on zero observations (batch {batch}): {e}"]
        for name, want in expected_constants.items():
            if name in values and name in output_names(spec) and values[name].ravel().tolist() != want:
                problems.append(f"constant {name!r} is {values[name].ravel().tolist()}, expected {want}")
        for name, width in widths.items():
            if name in values and name in output_names(spec) and values[name].shape != (batch, width):
                problems.append(
                    f"output {name!r} has shape {values[name].shape} at batch {batch}, "
                    f"expected ({batch}, {width})"
                )
    return sorted(set(problems), key=problems.index)


def check_model(
    model: str | Path | bytes | onnx.ModelProto, spec: PolicySpec, *, visual_layout: str = "CHW"
) -> list[str]:
    """Every way ``model`` breaks the contract for ``spec``; an empty list means it is fine."""
    proto = _load(model)
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as e:
        return [f"onnx.checker rejects the model: {e}"]
    problems = _check_opset(proto) + _check_inputs(proto, spec, visual_layout) + _check_outputs(proto, spec)
    if not problems:
        problems += _check_values(proto, spec, visual_layout)
    return problems


def assert_contract(
    model: str | Path | bytes | onnx.ModelProto, spec: PolicySpec, *, visual_layout: str = "CHW"
) -> None:
    """Raise :class:`ExportError` naming every contract problem of ``model`` (see :func:`check_model`)."""
    problems = check_model(model, spec, visual_layout=visual_layout)
    if problems:
        listing = "\n  - ".join(problems)
        raise ExportError(f"the model breaks ML-Agents' model contract:\n  - {listing}")
