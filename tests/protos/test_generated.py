"""The committed ``protos/_generated/`` is exactly what ``protos/generate.py`` makes of the .proto files."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

import unimarl.protos
from unimarl.protos.generate import generate

pytest.importorskip("grpc_tools", reason="grpcio-tools (dev extra) is needed to regenerate the protos")

COMMITTED = Path(unimarl.protos.__file__).parent / "_generated"


def _diff_excerpt(name: str, committed: str, fresh: str, lines: int = 40) -> str:
    diff = difflib.unified_diff(
        committed.splitlines(), fresh.splitlines(), f"committed/{name}", f"regenerated/{name}", lineterm=""
    )
    return "\n".join(list(diff)[:lines])


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    generate(tmp_path)
    fresh = {p.name: p.read_text() for p in tmp_path.glob("*.py")}
    committed = {p.name: p.read_text() for p in COMMITTED.glob("*.py")}
    problems = [
        f"{name}: committed but not generated (delete it)" for name in sorted(committed.keys() - fresh)
    ]
    problems += [f"{name}: generated but not committed" for name in sorted(fresh.keys() - committed)]
    for name in sorted(fresh.keys() & committed.keys()):
        if fresh[name] != committed[name]:
            problems.append(f"{name} differs:\n{_diff_excerpt(name, committed[name], fresh[name])}")
    assert not problems, "protos/_generated is stale; run `python -m unimarl.protos.generate`:\n" + "\n".join(
        problems
    )


def test_every_proto_source_is_compiled() -> None:
    sources = {p.stem for p in COMMITTED.parent.rglob("*.proto")}
    modules = {p.name.removesuffix("_pb2.py") for p in COMMITTED.glob("*_pb2.py")}
    assert sources == modules, (
        f"sources without a module: {sources - modules}; modules without a source: {modules - sources}"
    )
