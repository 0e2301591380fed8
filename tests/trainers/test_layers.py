"""The training core's layering (ARCHITECTURE.md, "Training core"): imports point down, no cycles.

Floors, bottom to top: core -> envs -> collect -> algos -> export -> selfplay -> run -> cli. A module may
import its own floor and those below; inside algos/, mappo/ and meanfield/ never import each other (what
both need sits in algos/ itself). Every import counts, including those inside functions and under
``TYPE_CHECKING``: a lazy import up is still a dependency up. Config parsing (core/) never imports torch.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

TRAINERS = Path(__file__).resolve().parents[2] / "trainers"
FLOORS = ["core", "envs", "collect", "algos", "export", "selfplay", "run", "cli"]
SIBLINGS = {"algos.mappo", "algos.meanfield"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(TRAINERS).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Modules of unimarl.trainers that ``path`` imports (relative to the package), anywhere in the file."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import; use the absolute unimarl.trainers path"
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            if name.startswith("unimarl.trainers."):
                found.add(name.removeprefix("unimarl.trainers."))
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in TRAINERS.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for m in _imports(path) if m in modules and m != name}
    return graph


def _floor(module: str) -> int:
    return FLOORS.index(module.split(".")[0]) if module.split(".")[0] in FLOORS else -1


def _sibling(module: str) -> str | None:
    return next((s for s in SIBLINGS if module == s or module.startswith(s + ".")), None)


def test_every_module_lives_on_a_floor() -> None:
    loose = [m for m in _graph() if m and _floor(m) < 0]
    assert not loose, f"modules outside the floors {FLOORS}: {loose}"


def test_imports_point_down() -> None:
    up = []
    for module, imported in sorted(_graph().items()):
        for target in sorted(imported):
            if _floor(target) > _floor(module):
                up.append(f"{module} -> {target}")
            mine, theirs = _sibling(module), _sibling(target)
            if mine and theirs and mine != theirs:
                up.append(f"{module} -> {target} (sibling algorithms)")
    assert not up, "imports pointing up or sideways:\n" + "\n".join(up)


def test_no_import_cycles() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_layer_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The scanner finds imports inside functions and under TYPE_CHECKING (so the rules above can fail)."""
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from unimarl.trainers.run.train import train\n"
        "def f():\n    import unimarl.trainers.cli.main\n"
    )
    assert {"run.train", "run.train.train", "cli.main"} <= _imports(source)


@pytest.mark.parametrize("module", ["unimarl.trainers.core.config", "unimarl.trainers.cli.main"])
def test_config_parsing_does_not_import_torch(module: str, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("env:\n  sim: coop_nav\nbehaviors:\n  CoopNav:\n    trainer_type: mfq\n")
    code = (
        f"import sys, {module}\n"
        "from unimarl.trainers.core.config import load_config\n"
        f"load_config({str(config)!r})\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
