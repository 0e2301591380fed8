"""PNG-compressed visual observations: splitting, decoding, channel mapping.

A compressed observation's ``compressed_data`` holds one or more PNG images back to back (Unity packs more
than three channels into several 3-channel PNGs). The images are split by walking the PNG chunk structure up
to each ``IEND`` chunk (exact, unlike searching for the signature, whose bytes may occur inside compressed
data), decoded with Pillow, scaled to [0, 1] float32 and concatenated along channels (HWC).

``compressed_channel_mapping`` maps each decoded channel to an output channel: -1 drops it, several decoded
channels mapped to one output channel are averaged. Without a mapping: one expected channel -> grayscale mean
of the first image, otherwise the first N decoded channels.

Errors are :class:`~unimarl.bridge.errors.ObservationError` with a message that says what disagreed; the
caller adds the behaviour, agent and observation index.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence

import numpy as np

from unimarl.bridge.errors import ObservationError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHUNK_HEADER = struct.Struct(">I4s")


def split_pngs(data: bytes) -> list[bytes]:
    """Split concatenated PNG images into one ``bytes`` per image."""
    images: list[bytes] = []
    start = 0
    while start < len(data):
        if data[start : start + len(PNG_SIGNATURE)] != PNG_SIGNATURE:
            raise ObservationError(
                f"compressed observation is not a PNG at byte {start} of {len(data)}: "
                "expected the PNG signature; "
                "the game must send PNG-compressed data or uncompressed floats"
            )
        pos = start + len(PNG_SIGNATURE)
        while True:
            if pos + _CHUNK_HEADER.size > len(data):
                raise ObservationError(
                    f"truncated PNG in compressed observation (image starting at byte {start}, "
                    f"{len(data)} bytes in all): no IEND chunk"
                )
            length, kind = _CHUNK_HEADER.unpack_from(data, pos)
            pos += _CHUNK_HEADER.size + length + 4  # data and CRC
            if kind == b"IEND":
                break
        if pos > len(data):
            raise ObservationError(
                f"truncated PNG in compressed observation ({len(data)} bytes, needs {pos})"
            )
        images.append(data[start:pos])
        start = pos
    if not images:
        raise ObservationError("compressed observation holds no data; expected at least one PNG image")
    return images


def _decode_one(png: bytes, size: tuple[int, int] | None = None) -> np.ndarray:
    from PIL import Image  # imported lazily: only games with compressed observations need Pillow

    try:
        with Image.open(io.BytesIO(png)) as image:
            # the header's size is checked before decoding: a few bytes can claim a huge image (smaller
            # images are decoded and reported by the caller's shape check)
            if size is not None and image.height * image.width > size[0] * size[1]:
                raise ObservationError(
                    f"a PNG in a compressed observation is {image.height} x {image.width} pixels, "
                    f"expected {size[0]} x {size[1]} as the observation's shape declares"
                )
            image.load()
            array = np.asarray(image)
    except (OSError, Image.DecompressionBombError) as e:
        raise ObservationError(f"a PNG in a compressed observation could not be decoded: {e}") from e
    if array.dtype != np.uint8:
        raise ObservationError(f"PNG observations must be 8-bit per channel, got pixel type {array.dtype}")
    if array.ndim == 2:
        array = array[:, :, None]
    return array.astype(np.float32) / np.float32(255.0)


def decode_png_observation(
    data: bytes, expected_channels: int, mapping: Sequence[int] = (), size: tuple[int, int] | None = None
) -> np.ndarray:
    """Decode ``compressed_data`` to a float32 HWC array with values in [0, 1].

    ``size``: the expected (height, width); each image's header is checked against it before decoding.
    """
    images = [_decode_one(png, size) for png in split_pngs(data)]
    if len({img.shape[:2] for img in images}) != 1:
        sizes = [img.shape[:2] for img in images]
        raise ObservationError(f"concatenated PNGs of one observation differ in size: {sizes}")
    stacked = np.concatenate(images, axis=2)
    if len(mapping) > 0:
        return _apply_mapping(stacked, list(mapping))
    if expected_channels == 1:
        return images[0].mean(axis=2, keepdims=True, dtype=np.float32)
    if stacked.shape[2] < expected_channels:
        raise ObservationError(
            f"PNG observation decodes to {stacked.shape[2]} channels but the spec expects {expected_channels}"
        )
    return stacked[:, :, :expected_channels]


def _apply_mapping(stacked: np.ndarray, mapping: list[int]) -> np.ndarray:
    n_in = stacked.shape[2]
    if len(mapping) != n_in:
        raise ObservationError(
            f"compressed_channel_mapping has {len(mapping)} entries but the PNGs decode to {n_in} channels; "
            "the mapping needs one entry per decoded channel"
        )
    n_out = max(mapping) + 1
    # n_out <= n_in first: a gap-free cover of 0..N-1 needs N entries, and range(n_out) is built next
    if not 0 < n_out <= n_in or {m for m in mapping if m >= 0} != set(range(n_out)) or min(mapping) < -1:
        raise ObservationError(
            f"invalid compressed_channel_mapping {mapping}: "
            "entries must be -1 (drop) or cover 0..N-1 without gaps"
        )
    out = np.empty((*stacked.shape[:2], n_out), np.float32)
    for channel in range(n_out):
        sources = [i for i, m in enumerate(mapping) if m == channel]
        out[:, :, channel] = stacked[:, :, sources].mean(axis=2)
    return out
