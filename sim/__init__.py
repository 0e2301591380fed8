"""unimarl.sim: headless stand-in games that behave on the wire like Unity ML-Agents player builds.

Each game runs as its own process and dials the trainer the way a Unity player does (see
:mod:`unimarl.sim.client`). Entry points: ``python -m unimarl.sim NAME [flags]``, :func:`main`, the
:data:`GAMES` registry, and :func:`make_build`, which writes a ``<Name>.x86_64`` launcher script so a sim
is started exactly like a player build.
"""

from __future__ import annotations

import shlex
import stat
import sys
from collections.abc import Sequence
from pathlib import Path

from unimarl.sim.battle import Battle
from unimarl.sim.bench import Bench
from unimarl.sim.client import EXIT_USAGE, run_client
from unimarl.sim.coop_nav import CoopNav
from unimarl.sim.game import Game
from unimarl.sim.visual import Visual

#: Stand-in games by name.
GAMES: dict[str, type[Game]] = {cls.name: cls for cls in (CoopNav, Battle, Visual, Bench)}


def main(argv: Sequence[str] | None = None, prog: str = "unimarl sim") -> int:
    """Run ``NAME [flags]`` (the game name, then a player command line); returns the exit code.

    ``prog`` is how the command was called, for the usage text (``python -m unimarl.sim`` passes its own).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        sys.stdout.write(_usage(prog))
        return 0
    if not args or args[0] not in GAMES:
        given = repr(args[0]) if args else "nothing"
        sys.stderr.write(f"unknown game {given}\n{_usage(prog)}")
        return EXIT_USAGE
    return run_client(GAMES[args[0]], args[1:], prog=f"{prog} {args[0]}")


def _usage(prog: str) -> str:
    lines = [
        f"usage: {prog} NAME --mlagents-port PORT [flags]",
        "",
        "Run a headless stand-in game that dials the trainer like a Unity player build.",
        f"'{prog} NAME --help' lists the game's flags; 'unimarl train --env sim:NAME' starts one for you.",
        "",
        "games:",
    ]
    for name, cls in sorted(GAMES.items()):
        summary = (cls.__doc__ or sys.modules[cls.__module__].__doc__ or "").strip().splitlines()
        first = summary[0].removeprefix(f"``{name}``: ") if summary else ""
        lines.append(f"  {name:<10} {first}")
    return "\n".join(lines) + "\n"


def make_build(
    name: str, directory: str | Path, *, extra_args: Sequence[str] = (), python: str = sys.executable
) -> Path:
    """Write an executable ``<Name>.x86_64`` script in ``directory`` that launches game ``name`` like a build.

    The script runs ``exec <python> -m unimarl.sim <name> <extra_args> "$@"``; the file name is the game
    name in CamelCase (``coop_nav`` -> ``CoopNav.x86_64``). Returns the script's path.
    """
    if name not in GAMES:
        raise ValueError(f"unknown sim game {name!r}; choose from {sorted(GAMES)}")
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ("".join(part.capitalize() for part in name.split("_")) + ".x86_64")
    command = " ".join(shlex.quote(str(a)) for a in (python, "-m", "unimarl.sim", name, *extra_args))
    path.write_text(f'#!/bin/sh\nexec {command} "$@"\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


__all__ = ["GAMES", "Game", "main", "make_build"]
