"""Builds the plug-in's engine-free C# core and its test driver with Mono's ``mcs``, and talks to the driver.

Tests here are skipped, with the reason, when ``mcs``/``mono`` are not installed
(``apt-get install -y mono-mcs`` provides both).
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

PLUGIN = Path(__file__).resolve().parents[2] / "unity_project" / "Packages" / "com.unimarl.plugin"
CORE_SOURCES = sorted((PLUGIN / "Runtime" / "Core").glob("*.cs"))
UNITY_SOURCES = sorted((PLUGIN / "Runtime" / "Unity").glob("*.cs"))
STUB_SOURCES = sorted((PLUGIN / "Tests~" / "Stubs").glob("*.cs"))
DRIVER_SOURCE = PLUGIN / "Tests~" / "CoreTestDriver.cs"
WORLD_SOURCE = PLUGIN / "Tests~" / "WorldTestDriver.cs"
ASSETS = PLUGIN.parents[1] / "Assets" / "Unimarl"
EXAMPLE_SOURCES = sorted((ASSETS / "Examples").glob("*.cs"))
TIMEOUT_S = 120

# Package sets the stubs model: versions Unity's versionDefines see, and the namespace of ModelAsset that the
# ML-Agents package's Agent.SetModel takes. 3.0.0 as published depends on com.unity.sentis 2.1.0 (its
# CHANGELOG.md: "Upgraded to Sentis 2.1.0 (#6153)"); 4.0.1's package.json depends on com.unity.ai.inference
# 2.4.1 and its Runtime/Agent.cs says "using Unity.InferenceEngine;"; the 3.0.0 copy under /work/csharp was
# patched to com.unity.ai.inference 2.6.1 (its package.json) and Unity.InferenceEngine (its Agent.cs).
PACKAGE_SETS: dict[str, tuple[dict[str, str], str]] = {
    "3.0.0": ({"com.unity.ml-agents": "3.0.0", "com.unity.sentis": "2.1.0"}, "Unity.Sentis"),
    "3.0.0-inference": (
        {"com.unity.ml-agents": "3.0.0", "com.unity.ai.inference": "2.6.1"},
        "Unity.InferenceEngine",
    ),
    "4.0.1": ({"com.unity.ml-agents": "4.0.1", "com.unity.ai.inference": "2.4.1"}, "Unity.InferenceEngine"),
}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("-")[0].split("."))


def version_matches(expression: str, version: str) -> bool:
    """Unity's versionDefines expression: "1.2.3" is ">= 1.2.3"; "[a,b)", "(a,b]", "[a]" are intervals."""
    v = _version(version)
    if expression[:1] not in "[(":
        return v >= _version(expression)
    low, _, high = (
        expression[1:-1].partition(",") if "," in expression else (expression[1:-1], "", expression[1:-1])
    )
    if low and not (v >= _version(low) if expression[0] == "[" else v > _version(low)):
        return False
    return not high or (v <= _version(high) if expression[-1] == "]" else v < _version(high))


def asmdef_defines(asmdef: dict, versions: dict[str, str]) -> list[str]:
    """The symbols Unity defines for ``asmdef`` in a project holding the packages ``versions``."""
    return [
        d["define"]
        for d in asmdef.get("versionDefines", [])
        if d["name"] in versions and version_matches(d["expression"], versions[d["name"]])
    ]


def mcs(args: list[str]) -> subprocess.CompletedProcess[str]:
    """Run ``mcs`` with ``args``; the result carries the compiler's messages."""
    return subprocess.run(["mcs", *args], capture_output=True, text=True, timeout=TIMEOUT_S, check=False)


class CoreDriver:
    """The compiled driver: ``eval`` runs a model on named tensors, ``codec`` feeds chunk payloads."""

    def __init__(self, build_dir: Path) -> None:
        self.build_dir = build_dir
        self.core = build_dir / "Unimarl.Core.dll"
        self.exe = build_dir / "driver.exe"
        self._count = 0
        self._worlds: dict[tuple[bool, str], Path] = {}

    def run(self, *args: str) -> str:
        return self.run_exe(self.exe, *args)

    def run_exe(self, exe: Path, *args: str) -> str:
        done = subprocess.run(
            ["mono", str(exe), *args], capture_output=True, text=True, timeout=TIMEOUT_S, check=False
        )
        if done.returncode != 0:
            raise AssertionError(
                f"driver {args[0]} failed ({done.returncode}): {done.stderr}{done.stdout[-2000:]}"
            )
        return done.stdout

    def eval(self, model: Path, inputs: dict[str, np.ndarray], seed: int = 0) -> dict[str, np.ndarray]:
        self._count += 1
        src, dst = self.build_dir / f"in{self._count}.bin", self.build_dir / f"out{self._count}.bin"
        write_tensors(src, inputs)
        self.run("eval", str(model), str(src), str(dst), str(seed))
        return read_tensors(dst)

    def policy(self, model: Path, inputs: dict[str, np.ndarray]) -> list[str]:
        """One deterministic OnnxPolicy decision on batch-1 ``inputs``; the driver's output lines."""
        self._count += 1
        src = self.build_dir / f"policy{self._count}.bin"
        write_tensors(src, inputs)
        return self.run("policy", str(model), str(src)).splitlines()

    def mean_action(self, continuous: int, branches: tuple[int, ...], script: list[str]) -> list[str]:
        """Run a MeanActionRecorder script (format in CoreTestDriver.cs); the printed ``mean`` lines."""
        self._count += 1
        path = self.build_dir / f"mean{self._count}.txt"
        path.write_text("\n".join(script) + "\n")
        sizes = ",".join(map(str, branches)) or "-"
        return self.run("meanaction", str(continuous), sizes, str(path)).splitlines()

    def compile_glue(
        self, editor: bool, examples: bool = False, packages: str = "3.0.0"
    ) -> subprocess.CompletedProcess[str]:
        """Compile the Unity-dependent glue (with ``examples``: also the example agents and, in the Editor,
        the scene builder) against the API stubs of the package set ``packages`` (a key of PACKAGE_SETS); the
        first failing compilation, else the last one."""
        return self.build(editor, packages, examples=examples, world=False)[0]

    def build(
        self, editor: bool, packages: str, examples: bool = True, world: bool = True
    ) -> tuple[subprocess.CompletedProcess[str], Path]:
        """Compile the stubs, then one assembly per asmdef (the defines Unity would set from its
        versionDefines for ``packages``, ``UNITY_EDITOR`` in the Editor, references limited to those the
        asmdef names), then the world driver; the last compilation (or the first failure) and the driver's
        path."""
        assert UNITY_SOURCES and STUB_SOURCES and EXAMPLE_SOURCES, "no glue, stub or example sources found"
        versions, namespace = PACKAGE_SETS[packages]
        out = self.build_dir / f"{packages}{'-editor' if editor else ''}"
        out.mkdir(exist_ok=True)
        stub_define = ["-define:STUB_INFERENCE_ENGINE"] if namespace == "Unity.InferenceEngine" else []
        built = {"Unimarl.Core": self.core}
        # C# 7.2 for `in` parameters (Agent.Heuristic(in ActionBuffers)); Unity compiles C# 9.
        flags = ["-langversion:7.2", "-warnaserror+"]
        done = mcs(
            ["-target:library", *flags, *stub_define, f"-out:{out / 'stubs.dll'}", *map(str, STUB_SOURCES)]
        )
        steps = [("Unimarl.Unity", PLUGIN / "Runtime" / "Unity", UNITY_SOURCES)]
        if examples:
            steps.append(("Unimarl.Examples", ASSETS / "Examples", EXAMPLE_SOURCES))
            if editor:
                steps.append(
                    ("Unimarl.Examples.Editor", ASSETS / "Editor", sorted((ASSETS / "Editor").glob("*.cs")))
                )
        for name, folder, sources in steps:
            if done.returncode != 0:
                return done, out / "world.exe"
            asmdef = json.loads((folder / f"{name}.asmdef").read_text())
            if (asmdef.get("includePlatforms") == ["Editor"] and not editor) or not sources:
                continue
            defines = asmdef_defines(asmdef, versions) + (["UNITY_EDITOR"] if editor else [])
            refs = [built[r] for r in asmdef["references"] if r in built]
            target = out / f"{name}.dll"
            done = mcs(
                [
                    "-target:library",
                    *flags,
                    *(f"-define:{d}" for d in defines),
                    f"-out:{target}",
                    f"-r:{out / 'stubs.dll'}",
                    *(f"-r:{r}" for r in refs),
                    *map(str, sources),
                ]
            )
            built[name] = target
        if world and done.returncode == 0:
            world_refs = [f"-r:{p}" for p in (out / "stubs.dll", *built.values())]
            define = ["-define:UNITY_EDITOR"] if editor else []
            done = mcs([*flags, *define, f"-out:{out / 'world.exe'}", *world_refs, str(WORLD_SOURCE)])
            for dll in built.values():  # mono resolves assemblies next to the executable
                if dll.parent != out:
                    shutil.copy(dll, out / dll.name)
        return done, out / "world.exe"

    def world(self, editor: bool, packages: str, *args: str) -> list[str]:
        """Build (once per variant) and run the world driver (Tests~/WorldTestDriver.cs); its output lines."""
        key = (editor, packages)
        if key not in self._worlds:
            done, exe = self.build(editor, packages)
            assert done.returncode == 0, done.stdout + done.stderr
            self._worlds[key] = exe
        return self.run_exe(self._worlds[key], *args).splitlines()

    def codec(self, max_model_size: int, payloads: list[bytes]) -> list[str]:
        paths = []
        for i, payload in enumerate(payloads):
            self._count += 1
            path = self.build_dir / f"chunk{self._count}_{i}.bin"
            path.write_bytes(payload)
            paths.append(str(path))
        return self.run("codec", str(max_model_size), *paths).splitlines()


def write_tensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """Tensor file of the driver (format in CoreTestDriver.cs)."""
    out = [struct.pack("<i", len(tensors))]
    for name, array in tensors.items():
        is_int = np.issubdtype(array.dtype, np.integer)
        data = np.ascontiguousarray(array, np.int64 if is_int else np.float32)
        encoded = name.encode()
        out.append(struct.pack(f"<i{len(encoded)}sii", len(encoded), encoded, 7 if is_int else 1, data.ndim))
        out.append(
            struct.pack(f"<{data.ndim}i", *data.shape) + data.astype(data.dtype.newbyteorder("<")).tobytes()
        )
    path.write_bytes(b"".join(out))


def read_tensors(path: Path) -> dict[str, np.ndarray]:
    """Inverse of :func:`write_tensors`."""
    raw, offset, result = path.read_bytes(), 4, {}
    for _ in range(struct.unpack_from("<i", raw, 0)[0]):
        (length,) = struct.unpack_from("<i", raw, offset)
        name = raw[offset + 4 : offset + 4 + length].decode()
        offset += 4 + length
        kind, rank = struct.unpack_from("<ii", raw, offset)
        shape = struct.unpack_from(f"<{rank}i", raw, offset + 8)
        offset += 8 + 4 * rank
        dtype = np.dtype("<i8") if kind == 7 else np.dtype("<f4")
        count = int(np.prod(shape)) if rank else 1
        result[name] = np.frombuffer(raw, dtype, count, offset).reshape(shape)
        offset += count * dtype.itemsize
    return result


@pytest.fixture(scope="session")
def core_driver(tmp_path_factory: pytest.TempPathFactory) -> CoreDriver:
    if shutil.which("mcs") is None or shutil.which("mono") is None:
        pytest.skip("Mono is not installed (mcs/mono missing): apt-get install -y mono-mcs")
    driver = CoreDriver(tmp_path_factory.mktemp("unimarl_core"))
    built = mcs(["-target:library", "-warnaserror+", f"-out:{driver.core}", *map(str, CORE_SOURCES)])
    assert built.returncode == 0, built.stdout + built.stderr
    built = mcs([f"-out:{driver.exe}", f"-r:{driver.core}", str(DRIVER_SOURCE)])
    assert built.returncode == 0, built.stdout + built.stderr
    return driver
