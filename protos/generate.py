"""Regenerate the Python protobuf modules in ``protos/_generated/`` from the ``.proto`` sources.

Run ``python -m unimarl.protos.generate`` (or ``python protos/generate.py``) after editing a ``.proto``; a
test regenerates into a temporary folder and fails on any difference, so the committed code never drifts.

Two deterministic edits are applied to protoc's output:

* imports are rewritten from the registration path (``mlagents_envs/communicator_objects/...``, kept identical
  to the official package so the wire descriptors match byte for byte) to ``unimarl.protos._generated``;
* protoc's runtime-version guard is dropped: the descriptors use nothing newer than protobuf 5, and the guard
  would otherwise pin users to the exact protobuf release the code was generated with.

Needs ``grpcio-tools`` (the ``dev`` extra pins the version the committed code was generated with).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
GENERATED_PACKAGE = "unimarl.protos._generated"

_IMPORT_RE = re.compile(r"^from (mlagents_envs\.communicator_objects|unimarl) import (\w+_pb2) as", re.M)
_GUARD_RE = re.compile(r"^_runtime_version\.ValidateProtobufRuntimeVersion\(\n(?:.*\n)*?\)\n", re.M)


def proto_sources(root: Path = PROTO_ROOT) -> list[Path]:
    """Every ``.proto`` file under ``root``, as paths relative to it, sorted."""
    return sorted(p.relative_to(root) for p in root.rglob("*.proto"))


def _postprocess(source: str) -> str:
    source = _GUARD_RE.sub("", source)
    source = source.replace("from google.protobuf import runtime_version as _runtime_version\n", "")
    source = source.replace(
        "# NO CHECKED-IN PROTOBUF GENCODE\n",
        "# Post-processed by protos/generate.py: package imports, no runtime-version guard.\n",
    )
    source = _IMPORT_RE.sub(rf"from {GENERATED_PACKAGE} import \2 as", source)
    return re.sub(
        r"_builder\.BuildTopDescriptorsAndMessages\(DESCRIPTOR, '[\w.]*?(\w+_pb2)'",
        rf"_builder.BuildTopDescriptorsAndMessages(DESCRIPTOR, '{GENERATED_PACKAGE}.\1'",
        source,
    )


def generate(out_dir: Path, root: Path = PROTO_ROOT) -> list[Path]:
    """Compile every ``.proto`` under ``root`` into flat, post-processed modules in ``out_dir``."""
    try:
        from grpc_tools import protoc
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise SystemExit("grpcio-tools is needed to regenerate: pip install -e '.[dev]'") from e

    sources = proto_sources(root)
    with tempfile.TemporaryDirectory() as raw:
        include = str(Path(protoc.__file__).parent / "_proto")
        args = ["protoc", f"-I{root}", f"-I{include}", f"--python_out={raw}", *map(str, sources)]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {root}")
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for module in sorted(Path(raw).rglob("*_pb2.py")):
            target = out_dir / module.name
            target.write_text(_postprocess(module.read_text()))
            written.append(target)
    init = out_dir / "__init__.py"
    init.write_text('"""Generated protobuf modules: never edit by hand, run protos/generate.py."""\n')
    return [init, *written]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PROTO_ROOT / "_generated", help="output folder")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
