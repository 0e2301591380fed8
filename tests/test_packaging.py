"""The wheel works on its own: built, installed into a fresh venv, imported from outside the source tree.

The fresh venv gets unimarl from the wheel only (``--no-deps``); the third-party dependencies are borrowed
from the running venv through a ``.pth`` line pointing at its site-packages. A bare path line does not
execute the ``.pth`` files found there, so the editable install's import finder (which would map
``unimarl.*`` back to the source tree) stays inactive: every module's ``__file__`` must lie in the fresh venv.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "protos", "bridge", "sim", "trainers")
SUBPACKAGES = ("unimarl.protos", "unimarl.bridge", "unimarl.sim", "unimarl.trainers")
TIMEOUT_S = 240


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert result.returncode == 0, (
        f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    )
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("build", reason="the `build` package (dev extra) builds the wheel")
    # Build from a copy so parallel runs and stale build/ folders in the checkout never interfere.
    tree = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, tree / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, tree / name)
    dist = tmp_path_factory.mktemp("dist")
    # --skip-dependency-check: setuptools >= 70.1 builds wheels itself; `wheel` is only needed by older ones.
    build = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--skip-dependency-check"]
    _run([*build, "--outdir", str(dist), str(tree)], cwd=tree)
    (built,) = dist.glob("unimarl-*.whl")
    return built


@pytest.fixture(scope="module")
def fresh_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fresh") / "venv"
    venv.create(root, with_pip=False)
    python = root / "bin" / "python"
    _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
        cwd=root,
    )
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=root)
    dev_site = sysconfig.get_path("purelib")
    (Path(purelib.stdout.strip()) / "_unimarl_dev_dependencies.pth").write_text(dev_site + "\n")
    return root


def test_wheel_ships_protos_and_generated_code(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    protos = {n for n in names if n.endswith(".proto")}
    expected = {
        f"unimarl/protos/{p.relative_to(REPO / 'protos')}" for p in (REPO / "protos").rglob("*.proto")
    }
    assert len(expected) >= 21
    assert expected <= protos, f"missing .proto files: {sorted(expected - protos)}"
    generated = {f"unimarl/protos/_generated/{p.name}" for p in (REPO / "protos" / "_generated").glob("*.py")}
    assert generated <= names, f"missing generated modules: {sorted(generated - names)}"
    for package in SUBPACKAGES:
        assert f"{package.replace('.', '/')}/__init__.py" in names


def test_installed_wheel_imports_from_the_venv(fresh_venv: Path, tmp_path: Path) -> None:
    probe = "import importlib, sys\nfor n in sys.argv[1:]:\n    print(importlib.import_module(n).__file__)\n"
    result = _run([str(fresh_venv / "bin" / "python"), "-c", probe, *SUBPACKAGES], cwd=tmp_path)
    files = [Path(line) for line in result.stdout.split()]
    assert len(files) == len(SUBPACKAGES)
    for name, file in zip(SUBPACKAGES, files, strict=True):
        assert file.resolve().is_relative_to(fresh_venv.resolve()), (
            f"{name} imported from {file}, not the wheel"
        )


def test_console_script_runs(fresh_venv: Path, tmp_path: Path) -> None:
    result = _run([str(fresh_venv / "bin" / "unimarl"), "--help"], cwd=tmp_path)
    assert "usage" in result.stdout.lower()


@pytest.mark.parametrize("package", ["unimarl.bridge", "unimarl.sim"])
def test_bridge_and_sim_never_import_torch_or_ray(package: str, tmp_path: Path) -> None:
    probe = (
        "import importlib, pkgutil, sys\n"
        f"package = importlib.import_module({package!r})\n"
        "for info in pkgutil.iter_modules(package.__path__, package.__name__ + '.'):\n"
        "    if not info.name.endswith('.__main__'):  # a command line, not a module to import\n"
        "        importlib.import_module(info.name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'ray'}))\n"
    )
    result = _run([sys.executable, "-c", probe], cwd=tmp_path)
    assert result.stdout.strip() == "[]", f"{package} (and its modules) pulled in: {result.stdout.strip()}"
