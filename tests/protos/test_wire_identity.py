"""Messages cross between the official client's classes and unimarl's without a single byte changing.

Every message type of the protocol is built with the same field values under both code generators (see
wire_samples.py): the two serializations must be equal, and bytes made by one side, parsed by the other and
re-serialized must come back identical. Unknown fields are discarded before re-serializing, so a field missing
from one side's descriptors shows up as a difference instead of travelling through untouched. Maps are
serialized deterministically (sorted keys) on both sides, the only order either runtime guarantees.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

WIRE_SAMPLES = Path(__file__).with_name("wire_samples.py")


@pytest.fixture(scope="module")
def official_bytes(
    run_official: Callable[..., str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("official_samples")
    run_official([str(WIRE_SAMPLES), "build", str(out), "official"], cwd=out)
    return {p.stem: p.read_bytes() for p in out.glob("*.bin")}


@pytest.fixture(scope="module")
def our_samples(wire_samples: ModuleType) -> dict[str, Any]:
    return wire_samples.build_samples(wire_samples.loader("unimarl"))


def _first_difference(a: bytes, b: bytes) -> str:
    at = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    excerpt = f"{a[at : at + 16]!r} vs {b[at : at + 16]!r}"
    return f"lengths {len(a)} vs {len(b)}, first difference at byte {at}: {excerpt}"


def _mismatches(expected: dict[str, bytes], actual: dict[str, bytes]) -> list[str]:
    problems = [f"{name}: missing" for name in sorted(expected.keys() - actual.keys())]
    problems += [
        f"{name}: {_first_difference(expected[name], actual[name])}"
        for name in sorted(expected.keys() & actual.keys())
        if expected[name] != actual[name]
    ]
    return problems


def _message_types(message: Any, seen: set[str]) -> set[str]:
    """Full names of the message types present (set) in ``message``, nested ones included."""
    seen.add(message.DESCRIPTOR.full_name)
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            values = list(value.values())
        elif field.is_repeated:
            values = list(value)
        else:
            values = [value]
        if values and not hasattr(values[0], "DESCRIPTOR"):
            continue  # map of scalars
        for item in values:
            _message_types(item, seen)
    return seen


def test_samples_cover_every_message_type(our_samples: dict[str, Any], wire_samples: ModuleType) -> None:
    covered: set[str] = set()
    for message in our_samples.values():
        _message_types(message, covered)
    declared: set[str] = set()
    load = wire_samples.loader("unimarl")

    def walk(descriptor: Any) -> None:
        if not descriptor.GetOptions().map_entry:
            declared.add(descriptor.full_name)
        for nested in descriptor.nested_types:
            walk(nested)

    for stem in wire_samples.MODULES:
        for descriptor in load(stem).DESCRIPTOR.message_types_by_name.values():
            walk(descriptor)
    assert len(declared) >= 20, f"walked too few message types: {sorted(declared)}"
    assert declared - covered == set(), "message types without a wire sample"
    assert len(our_samples) >= 20


def test_same_values_serialize_identically(
    official_bytes: dict[str, bytes], our_samples: dict[str, Any]
) -> None:
    ours = {name: message.SerializeToString(deterministic=True) for name, message in our_samples.items()}
    assert _mismatches(official_bytes, ours) == []
    assert set(ours) == set(official_bytes)


def test_official_bytes_roundtrip_through_unimarl(
    official_bytes: dict[str, bytes], our_samples: dict[str, Any]
) -> None:
    reserialized = {}
    for name, data in official_bytes.items():
        parsed = type(our_samples[name]).FromString(data)
        parsed.DiscardUnknownFields()
        reserialized[name] = parsed.SerializeToString(deterministic=True)
    assert _mismatches(official_bytes, reserialized) == []


def test_unimarl_bytes_roundtrip_through_official(
    run_official: Callable[..., str], our_samples: dict[str, Any], tmp_path: Path
) -> None:
    ours = {name: message.SerializeToString(deterministic=True) for name, message in our_samples.items()}
    source, out = tmp_path / "unimarl", tmp_path / "official"
    source.mkdir()
    out.mkdir()
    for name, data in ours.items():
        (source / f"{name}.bin").write_bytes(data)
    run_official([str(WIRE_SAMPLES), "roundtrip", str(source), str(out), "official"], cwd=tmp_path)
    back = {p.stem: p.read_bytes() for p in out.glob("*.bin")}
    assert _mismatches(ours, back) == []


def test_parsed_values_survive(official_bytes: dict[str, bytes], our_samples: dict[str, Any]) -> None:
    # Byte identity could hide a field parsed into the wrong slot by both sides alike; compare values too.
    for name, data in official_bytes.items():
        assert type(our_samples[name]).FromString(data) == our_samples[name], name
