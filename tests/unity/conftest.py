"""Builds the plug-in's engine-free C# core and its test driver with Mono's ``mcs``, and talks to the driver.

Tests here are skipped, with the reason, when ``mcs``/``mono`` are not installed
(``apt-get install -y mono-mcs`` provides both).
"""

from __future__ import annotations

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
EXAMPLE_SOURCES = sorted((PLUGIN.parents[1] / "Assets" / "Unimarl" / "Examples").glob("*.cs"))
TIMEOUT_S = 120


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

    def run(self, *args: str) -> str:
        done = subprocess.run(
            ["mono", str(self.exe), *args], capture_output=True, text=True, timeout=TIMEOUT_S, check=False
        )
        if done.returncode != 0:
            raise AssertionError(f"driver {args[0]} failed ({done.returncode}): {done.stderr}")
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

    def compile_glue(self, editor: bool, examples: bool = False) -> subprocess.CompletedProcess[str]:
        """Compile the Unity-dependent glue (and the example agents) against the API stubs and the core
        (Editor or player variant)."""
        name = "Unimarl.Unity" + (".Editor" if editor else "") + (".Examples" if examples else "")
        out = self.build_dir / f"{name}.dll"
        assert UNITY_SOURCES and STUB_SOURCES and EXAMPLE_SOURCES, "no glue, stub or example sources found"
        define = ["-define:UNITY_EDITOR"] if editor else []
        # C# 7.2 for `in` parameters (Agent.Heuristic(in ActionBuffers)); Unity compiles C# 9.
        return mcs(
            [
                "-target:library",
                "-langversion:7.2",
                "-warnaserror+",
                *define,
                f"-out:{out}",
                f"-r:{self.core}",
                *map(str, STUB_SOURCES),
                *map(str, UNITY_SOURCES),
                *map(str, EXAMPLE_SOURCES if examples else []),
            ]
        )

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
