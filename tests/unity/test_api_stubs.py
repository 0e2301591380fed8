"""The API stubs (Tests~/Stubs) against com.unity.ml-agents' C# sources, 3.0.0 and 4.0.1: every public or
protected member a stub declares for an ML-Agents type must be declared the same way (modifiers, types,
parameters, defaults) in both versions, and enums must have the same members and values; otherwise the glue
could compile against the stubs and not against the package.

The facts read from the sources (per version: the public member headers of the types the stubs model, enum
members, the inference package and namespace Agent.cs uses) are kept in mlagents_api.json, so the check runs
without the sources; when they are present (/work/csharp, or UNIMARL_MLAGENTS_SOURCES: a folder holding
mlagents-3.0.0/ and mlagents-4.0.1/), a test re-reads them and fails on any difference (rewrite the file with
``python tests/unity/test_api_stubs.py``)."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

if __package__:
    from .conftest import PACKAGE_SETS, STUB_SOURCES, asmdef_defines, version_matches
else:  # run as a script to rewrite the facts file
    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import PACKAGE_SETS, STUB_SOURCES, asmdef_defines, version_matches  # type: ignore[no-redef]

SOURCES = Path(os.environ.get("UNIMARL_MLAGENTS_SOURCES", "/work/csharp"))
VERSIONS = ("3.0.0", "4.0.1")
PLUGIN_ASMDEF = STUB_SOURCES[0].parents[2] / "Runtime" / "Unity" / "Unimarl.Unity.asmdef"
FACTS = Path(__file__).with_name("mlagents_api.json")


def _runtime(version: str) -> Path:
    root = SOURCES / f"mlagents-{version}" / "Packages" / "com.unity.ml-agents" / "Runtime"
    if not root.is_dir():
        pytest.skip(
            f"com.unity.ml-agents {version} sources not found at {root} (set UNIMARL_MLAGENTS_SOURCES)"
        )
    return root


def _clean(source: str) -> str:
    """Source without comments, preprocessor lines and string contents, whitespace collapsed."""
    tokens = r"""//[^\n]*|/\*.*?\*/|\$?@"(?:[^"]|"")*"|\$?"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'"""
    source = re.sub(
        tokens,
        lambda m: '""' if m.group(0)[-1] == '"' else "' '" if m.group(0)[0] == "'" else " ",
        source,
        flags=re.S,
    )
    source = re.sub(r"^\s*#[^\n]*", " ", source, flags=re.M)
    return re.sub(r"\s+", " ", source)


def _type_bodies(source: str) -> dict[str, tuple[str, str]]:
    """Top-level-or-nested type name -> (kind, body text between its braces), for every type declared."""
    bodies: dict[str, tuple[str, str]] = {}
    for match in re.finditer(r"\b(class|struct|interface|enum) (\w+)\b[^{;()]*\{", source):
        depth, start = 1, match.end()
        i = start
        while depth:
            depth += {"{": 1, "}": -1}.get(source[i], 0)
            i += 1
        bodies.setdefault(match.group(2), (match.group(1), source[start : i - 1]))
    return bodies


def _declarations(body: str) -> set[str]:
    """Normalised member headers at the body's top level (text before a '{', ';' or '=>')."""
    headers: set[str] = set()
    current: list[str] = []
    depth = parens = 0
    for ch in body:
        if depth == 0 and parens == 0 and ch in "{;":
            header = "".join(current)
            header = re.split(r"=>", header)[0]
            header = re.sub(r"^(\s*\[[^\]]*\])+", "", header)  # attributes
            if "(" not in header:
                header = header.split("=")[0]  # field or property initialiser
            header = re.sub(r"\s+", " ", header).strip()
            header = re.sub(r"\( ", "(", re.sub(r" \)", ")", header))
            header = re.sub(r"\) : (this|base)\(.*$", ")", header)  # constructor initialiser
            if header:
                headers.add(header)
            current = []
        elif depth == 0:
            parens += {"(": 1, ")": -1}.get(ch, 0)
            current.append(ch)
        if ch == "{" and parens == 0:
            depth += 1
        elif ch == "}" and parens == 0:
            depth -= 1
    return headers


def _enum_members(body: str) -> list[tuple[str, int]]:
    members, value = [], -1
    for item in filter(None, (part.strip() for part in body.split(","))):
        name, _, explicit = item.partition("=")
        value = int(explicit) if explicit.strip() else value + 1
        members.append((name.strip(), value))
    return members


def _stub_types() -> dict[str, tuple[str, str]]:
    """The stubs' types in ML-Agents' namespaces."""
    types = {}
    for path in STUB_SOURCES:
        source = _clean(path.read_text())
        for match in re.finditer(r"namespace (Unity\.MLAgents[\w.]*) \{", source):
            depth, i = 1, match.end()
            while depth:
                depth += {"{": 1, "}": -1}.get(source[i], 0)
                i += 1
            block = source[match.end() : i - 1]
            for name, (kind, body) in _type_bodies(block).items():
                if re.search(
                    rf"public (?:\w+ )*{kind} {name}\b", block
                ):  # nested private helpers are not API
                    types[name] = (kind, body)
    return types


def _real_types(version: str) -> dict[str, tuple[str, str]]:
    types: dict[str, tuple[str, str]] = {}
    for path in sorted(_runtime(version).rglob("*.cs")):
        for name, value in _type_bodies(_clean(path.read_text(encoding="utf-8-sig"))).items():
            types.setdefault(name, value)
    return types


def _public(header: str, kind: str) -> bool:
    return kind == "interface" or header.startswith(("public ", "protected "))


def read_facts(version: str) -> dict[str, Any]:
    """The facts of one version, read from its sources."""
    root = _runtime(version)
    real = _real_types(version)
    types: dict[str, Any] = {}
    for name in sorted(_stub_types()):
        if name not in real:
            types[name] = None
            continue
        real_kind, body = real[name]
        if real_kind == "enum":
            types[name] = {"kind": real_kind, "members": _enum_members(body)}
        else:
            members = sorted(h for h in _declarations(body) if _public(h, real_kind))
            types[name] = {"kind": real_kind, "members": members}
    package = json.loads((root.parent / "package.json").read_text(encoding="utf-8-sig"))
    agent = (root / "Agent.cs").read_text(encoding="utf-8-sig")
    return {
        "types": types,
        "dependencies": package["dependencies"],
        "agent_usings": sorted(set(re.findall(r"^using (Unity\.\w+);", agent, flags=re.M))),
    }


def _facts(version: str) -> dict[str, Any]:
    facts: dict[str, Any] = json.loads(FACTS.read_text())[version]
    return facts


@pytest.mark.parametrize("version", VERSIONS)
def test_facts_file_matches_the_sources(version: str) -> None:
    assert json.loads(json.dumps(read_facts(version))) == _facts(version), (
        f"{FACTS.name} differs from the {version} sources (or from the stubs' type list): rewrite it with "
        "`python tests/unity/test_api_stubs.py`"
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_stub_members_are_declared_as_in_the_package(version: str) -> None:
    real = _facts(version)["types"]
    stubs = _stub_types()
    assert {"Agent", "Academy", "BehaviorParameters", "InferenceDevice", "VectorSensorComponent"} <= set(
        stubs
    )
    wrong = []
    for name, (kind, body) in sorted(stubs.items()):
        assert real.get(name), f"stub type {name} is not in com.unity.ml-agents {version} ({FACTS.name})"
        assert kind == real[name]["kind"], f"{name} is a {real[name]['kind']} in {version}, the stub a {kind}"
        if kind == "enum":
            members = [tuple(m) for m in real[name]["members"]]
            assert _enum_members(body) == members, f"enum {name} differs from {version}"
            continue
        declared = set(real[name]["members"])
        wrong += [
            f"{name}: {h}" for h in sorted(_declarations(body)) if _public(h, kind) and h not in declared
        ]
    assert not wrong, f"not declared so in com.unity.ml-agents {version}:\n" + "\n".join(wrong)


@pytest.mark.parametrize("version", VERSIONS)
def test_inference_device_members(version: str) -> None:
    """InferenceDevice is {Default, ComputeShader, Burst, PixelShader} in both versions
    (Runtime/Policies/SentisPolicy.cs:13-35); the stub follows it."""
    real = [tuple(m) for m in _facts(version)["types"]["InferenceDevice"]["members"]]
    assert real == [("Default", 0), ("ComputeShader", 1), ("Burst", 2), ("PixelShader", 3)]
    assert _enum_members(_stub_types()["InferenceDevice"][1]) == real


def test_model_asset_namespace_per_version() -> None:
    """4.0.1's Agent.SetModel takes Unity.InferenceEngine's ModelAsset (Runtime/Agent.cs's usings,
    package.json depending on com.unity.ai.inference), so the stubs model it for that package set and the glue
    must name it there. The 3.0.0 copy read here was patched the same way (com.unity.ai.inference in its
    package.json), the package set "3.0.0-inference"; 3.0.0 as published used Sentis (its CHANGELOG.md), the
    set "3.0.0"."""
    for version, packages in (("4.0.1", "4.0.1"), ("3.0.0", "3.0.0-inference")):
        facts = _facts(version)
        assert "com.unity.ai.inference" in facts["dependencies"]
        assert PACKAGE_SETS[packages][1] in facts["agent_usings"]
        assert "Unity.Sentis" not in facts["agent_usings"]
        assert (
            PACKAGE_SETS[packages][0]["com.unity.ai.inference"]
            == facts["dependencies"]["com.unity.ai.inference"]
        )


@pytest.mark.parametrize("packages", sorted(PACKAGE_SETS))
def test_plugin_defines_pick_the_packages_model_asset(packages: str) -> None:
    """The plug-in's versionDefines, evaluated as Unity does for each package set, select the ModelAsset the
    package's SetModel takes (PolicyHotSwap.cs: UNIMARL_MLAGENTS_4 or UNIMARL_INFERENCE_ENGINE without
    UNIMARL_SENTIS -> Unity.InferenceEngine, else Unity.Sentis)."""
    versions, namespace = PACKAGE_SETS[packages]
    defines = set(asmdef_defines(json.loads(PLUGIN_ASMDEF.read_text()), versions))
    engine = "UNIMARL_MLAGENTS_4" in defines or (
        "UNIMARL_INFERENCE_ENGINE" in defines and "UNIMARL_SENTIS" not in defines
    )
    assert ("Unity.InferenceEngine" if engine else "Unity.Sentis") == namespace


def test_version_expressions() -> None:
    assert version_matches("4.0.0", "4.0.1") and not version_matches("4.0.0", "3.0.0")
    assert version_matches("[2.0,3.0)", "2.6.1") and not version_matches("[2.0,3.0)", "3.0.0")


if __name__ == "__main__":
    FACTS.write_text(json.dumps({v: read_facts(v) for v in VERSIONS}, indent=1) + "\n")
    print(f"wrote {FACTS}")
