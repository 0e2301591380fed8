"""Visual encoders shared by the MAPPO networks and the mean-field networks.

:func:`visual_encoder` builds the encoders ML-Agents offers as ``vis_encode_type`` (architectures as in
``mlagents/trainers/torch_entities/encoders.py``): ``simple`` (conv 16@8x8/4, 32@4x4/2), ``nature_cnn`` (conv
32@8x8/4, 64@4x4/2, 64@3x3/1; Mnih et al. 2015), ``resnet`` (IMPALA-style stacks of 16, 32, 32 channels,
each conv 3x3 -> max pool 3x3/2 -> two residual blocks; Espeholt et al. 2018), ``match3`` (conv 35@3x3,
144@3x3, for small boards) and ``fully_connected`` (the image flattened into one dense layer); each ends in a
dense layer of ``out_size`` units. Like ML-Agents they use LeakyReLU (slope 0.01) and, in the residual
blocks, Swish; images smaller than :data:`MIN_RESOLUTION` are refused with :class:`EncoderError`. With no
type configured, :func:`default_encoder` picks one by image size.

Every encoder exports to operators the plug-in's ONNX evaluator implements
(``unimarl.trainers.export.onnx.SUPPORTED_OPERATORS``): in export, LeakyReLU is written ``relu(x) - 0.01 *
relu(-x)`` and the residual encoder's max pool is a maximum over nine strided slices with ``max(a, b) = b +
relu(a - b)``, so no LeakyRelu or MaxPool node reaches the graph; training uses torch's kernels of the same
functions (they keep far fewer tensors for the backward pass).

Inputs: one image tensor [B, *shape] in the game's layout (:func:`channels_last` tells which); uint8 tensors
hold ``k / 255`` (the rollout stores camera pixels as bytes, :mod:`unimarl.trainers.algos.mappo.records`) and
are converted here, float tensors pass unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from unimarl.trainers.core.errors import ConfigError
from unimarl.trainers.core.mappo_settings import VIS_ENCODE_TYPES

__all__ = ["MIN_RESOLUTION", "VIS_ENCODE_TYPES", "EncoderError", "VisualEncoder", "conv_stack"]

MIN_RESOLUTION = {"simple": 20, "nature_cnn": 36, "resnet": 15, "match3": 5, "fully_connected": 1}
"""Smallest image side each encoder accepts (ML-Agents' ``MIN_RESOLUTION_FOR_ENCODER``)."""

LEAKY_SLOPE = 0.01
"""Negative slope of LeakyReLU (torch's and ML-Agents' default)."""

ACTIVATION_CHUNK_BYTES = 256 * 2**20
"""About how much memory one chunk of images may take in a training forward pass (with its activations)."""


class EncoderError(ConfigError):
    """An encoder does not fit the observation (unknown type, image too small for it)."""


def leaky_relu_ops(x: Tensor) -> Tensor:
    """LeakyReLU from Relu, Neg, Mul and Sub (what the exported graph computes)."""
    return torch.relu(x) - LEAKY_SLOPE * torch.relu(-x)


def max_pool_ops(x: Tensor) -> Tensor:
    """``max_pool2d(x, 3, 2)`` from Slice, Sub, Relu and Add (what the exported graph computes)."""
    height, width = (x.shape[2] - 3) // 2 + 1, (x.shape[3] - 3) // 2 + 1
    out: Tensor | None = None
    for dy in range(3):
        for dx in range(3):
            window = x[:, :, dy : dy + 2 * height - 1 : 2, dx : dx + 2 * width - 1 : 2]
            out = window if out is None else out + torch.relu(window - out)
    assert out is not None
    return out


class LeakyReLU(nn.Module):
    """LeakyReLU; exported as :func:`leaky_relu_ops` (no LeakyRelu operator in the graph)."""

    def forward(self, x: Tensor) -> Tensor:
        if torch.onnx.is_in_onnx_export():
            return leaky_relu_ops(x)
        return nn.functional.leaky_relu(x, LEAKY_SLOPE)  # one saved tensor: the composite keeps four


class Swish(nn.Module):
    """x * sigmoid(x) (Ramachandran et al. 2017), as ML-Agents' residual blocks use."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(x)


class MaxPool3x3s2(nn.Module):
    """Max pool, kernel 3, stride 2, no padding (ML-Agents' resnet pool); exported as :func:`max_pool_ops`."""

    def forward(self, x: Tensor) -> Tensor:
        if torch.onnx.is_in_onnx_export():
            return max_pool_ops(x)
        return nn.functional.max_pool2d(x, 3, 2)


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            Swish(),
            nn.Conv2d(channels, channels, 3, 1, padding=1),
            Swish(),
            nn.Conv2d(channels, channels, 3, 1, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.layers(x)


def _conv_out(size: int, kernel: int, stride: int, padding: int = 0) -> int:
    """Output side of a convolution (torch.nn.Conv2d docs: floor((n + 2p - k) / s) + 1)."""
    return (size + 2 * padding - kernel) // stride + 1


def conv_stack(
    channels: int,
    height: int,
    width: int,
    layers: Sequence[tuple[int, int, int]],
    out_size: int,
    activation: Callable[[], nn.Module],
) -> nn.Sequential:
    """Conv2d(out, kernel, stride) layers, each followed by ``activation``, then Flatten -> Linear(out_size)
    -> ``activation``; input NCHW. Raises :class:`EncoderError` when the image is too small."""
    modules: list[nn.Module] = []
    c, h, w = channels, height, width
    for out, kernel, stride in layers:
        modules += [nn.Conv2d(c, out, kernel, stride), activation()]
        c, h, w = out, _conv_out(h, kernel, stride), _conv_out(w, kernel, stride)
        if h < 1 or w < 1:
            raise EncoderError(
                f"an image of {channels}x{height}x{width} (CxHxW) is too small for conv layers "
                f"{list(layers)}; use a larger image or a smaller encoder"
            )
    modules += [nn.Flatten(), nn.Linear(c * h * w, out_size), activation()]
    return nn.Sequential(*modules)


def _resnet(channels: int, height: int, width: int, out_size: int) -> nn.Sequential:
    modules: list[nn.Module] = []
    c, h, w = channels, height, width
    for stack in (16, 32, 32):
        modules += [nn.Conv2d(c, stack, 3, 1, padding=1), MaxPool3x3s2()]
        h, w = _conv_out(h, 3, 2), _conv_out(w, 3, 2)
        modules += [_ResidualBlock(stack), _ResidualBlock(stack)]
        c = stack
    modules += [Swish(), nn.Flatten(), nn.Linear(c * h * w, out_size), nn.ReLU()]
    return nn.Sequential(*modules)


_CONV_LAYERS = {
    "simple": [(16, 8, 4), (32, 4, 2)],
    "nature_cnn": [(32, 8, 4), (64, 4, 2), (64, 3, 1)],
    "match3": [(35, 3, 1), (144, 3, 1)],
    "fully_connected": [],
}


def default_encoder(height: int, width: int) -> str:
    """The encoder used when none is configured: ML-Agents' default "simple" where the image fits it, else
    "fully_connected" (the one without a minimum size)."""
    return "simple" if min(height, width) >= MIN_RESOLUTION["simple"] else "fully_connected"


def channels_last(shape: Sequence[int]) -> bool:
    """True when an image of ``shape`` is HWC: its last axis is strictly the smallest; CHW (the C# 3.x
    layout) otherwise, the rule :func:`unimarl.trainers.export.policies.infer_visual_layout` applies."""
    first, last = shape[0] < min(shape[1:]), shape[2] < min(shape[:2])
    return last and not first


class VisualEncoder(nn.Module):
    """One image sensor [B, *shape] (uint8 or float, layout by :func:`channels_last`) -> [B, out_size]."""

    def __init__(self, shape: Sequence[int], kind: str | None, out_size: int) -> None:
        super().__init__()
        if kind is not None and kind not in VIS_ENCODE_TYPES:
            raise EncoderError(
                f"unknown vis_encode_type {kind!r}; use one of {list(VIS_ENCODE_TYPES)} in network_settings"
            )
        if len(shape) != 3:
            raise EncoderError(f"a visual encoder needs a rank-3 image shape, got {tuple(shape)}")
        self.last = channels_last(shape)
        c, h, w = (shape[2], shape[0], shape[1]) if self.last else tuple(shape)
        kind = kind or default_encoder(h, w)
        self.kind = kind
        if min(h, w) < MIN_RESOLUTION[kind]:
            fits = [k for k in VIS_ENCODE_TYPES if MIN_RESOLUTION[k] <= min(h, w)]
            raise EncoderError(
                f"vis_encode_type {kind!r} needs images of at least {MIN_RESOLUTION[kind]}x"
                f"{MIN_RESOLUTION[kind]} pixels, the observation is {h}x{w}; use one of {fits}"
            )
        self.out_size = int(out_size)
        self.chunk_rows = max(16, ACTIVATION_CHUNK_BYTES // (4 * c * h * w * 8))
        """Images per chunk when training on a large batch (see forward)."""
        if kind == "resnet":
            self.net = _resnet(c, h, w, self.out_size)
        else:
            self.net = conv_stack(c, h, w, _CONV_LAYERS[kind], self.out_size, LeakyReLU)
        for module in self.net.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):  # ML-Agents: Kaiming normal, ReLU gain
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, image: Tensor) -> Tensor:
        rows = image.shape[0]
        if not torch.is_grad_enabled() or rows <= self.chunk_rows or torch.onnx.is_in_onnx_export():
            return self._encode(image)
        # training on a large batch: keep no activations, recompute them chunk by chunk in the backward pass
        # (gradient checkpointing, Chen et al. 2016, arXiv 1604.06174): memory grows with the chunk only
        chunks = [
            checkpoint(self._encode, image[start : start + self.chunk_rows], use_reentrant=False)
            for start in range(0, rows, self.chunk_rows)
        ]
        return torch.cat(chunks)  # type: ignore[arg-type]

    def _encode(self, image: Tensor) -> Tensor:
        if self.last:  # NHWC -> NCHW while still bytes: one float copy of the batch, not two
            image = image.permute(0, 3, 1, 2).contiguous()
        return self.net(to_float(image))


def to_float(x: Tensor) -> Tensor:
    """uint8 pixels k -> float32 k / 255 (the value the game sent; module docstring); floats unchanged."""
    return x.float() / 255.0 if x.dtype == torch.uint8 else x


def is_visual(shape: Sequence[int]) -> bool:
    """Rank-3 observations are images (ML-Agents' convention for camera and render-texture sensors)."""
    return len(shape) == 3


def visual_size(shapes: Sequence[Sequence[int]]) -> int:
    """Number of values in the image sensors among ``shapes``."""
    return sum(math.prod(s) for s in shapes if is_visual(s))
