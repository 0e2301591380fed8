"""Our compiled descriptors equal those of the official client (mlagents-envs 0.28.0) byte for byte.

A serialized ``FileDescriptorProto`` holds every message, field (name, number, type, label, json name),
enum, reserved range, nested type, option and service of a .proto file, so byte equality is the whole
comparison; on a difference the test prints a text diff of the two descriptors to show which of those differs.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from google.protobuf import descriptor_pb2, text_format

import unimarl.protos._generated as generated

WIRE_SAMPLES = Path(__file__).with_name("wire_samples.py")


@pytest.fixture(scope="module")
def official_descriptors(
    run_official: Callable[..., str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("official_descriptors")
    run_official([str(WIRE_SAMPLES), "descriptors", str(out), "official"], cwd=out)
    return {p.stem: p.read_bytes() for p in out.glob("*.pb")}


def _ours(stem: str) -> bytes:
    return _module(stem).DESCRIPTOR.serialized_pb


def _describe(serialized: bytes) -> list[str]:
    proto = descriptor_pb2.FileDescriptorProto.FromString(serialized)
    return text_format.MessageToString(proto).splitlines()


def test_same_set_of_files(official_descriptors: dict[str, bytes], wire_samples: ModuleType) -> None:
    assert set(official_descriptors) == set(wire_samples.MODULES) == set(OUR_STEMS)


OFFICIAL_PREFIX = "mlagents_envs/communicator_objects/"


def _our_official_stems() -> list[str]:
    """Our modules registered under the official file names (unimarl's own protos are not compared)."""
    stems = (p.name.removesuffix("_pb2.py") for p in Path(generated.__file__).parent.glob("*_pb2.py"))
    return sorted(s for s in stems if _module(s).DESCRIPTOR.name.startswith(OFFICIAL_PREFIX))


def _module(stem: str) -> ModuleType:
    return importlib.import_module(f"{generated.__name__}.{stem}_pb2")


OUR_STEMS = _our_official_stems()


@pytest.mark.parametrize("stem", OUR_STEMS)
def test_descriptor_identical(stem: str, official_descriptors: dict[str, bytes]) -> None:
    theirs, ours = official_descriptors[stem], _ours(stem)
    if theirs != ours:
        diff = difflib.unified_diff(_describe(theirs), _describe(ours), "official", "unimarl", lineterm="")
        pytest.fail(f"{stem}.proto descriptor differs from mlagents-envs 0.28.0:\n" + "\n".join(diff))
