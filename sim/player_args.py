"""The command line of a stand-in game, as a Unity player build takes it, plus the sim's own flags.

Unity's flags: ``--mlagents-port N``, ``-batchmode``, ``-nographics``, ``-logFile PATH`` (``-`` = stderr).
The sim's: ``--package-version``, ``--timeout``, ``--record``, ``--misbehave MODE[:N]``, ``--behavior-type``,
``--inference-behavior NAME`` (repeatable), the Unity rules a test can turn on (``--unity-reset``,
``--quit-after N``; battle's ``--reenable-dead``), then each game's own flags
(:meth:`unimarl.sim.game.Game.add_arguments`). :mod:`unimarl.sim.client` says what they do on the wire.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from unimarl.sim.game import Game

#: Unity's BehaviorType values the sim models (Policies/BehaviorType in Policies/BehaviorParameters.cs).
BEHAVIOR_TYPES = ("default", "inference", "heuristic")

DEFAULT_PACKAGE_VERSION = "2.2.1-exp.1"
MISBEHAVE_MODES = ("die", "hang", "malformed", "bad-version", "bad-shape", "nan", "mute")


@dataclass(frozen=True)
class Misbehave:
    """A fault to inject: ``mode`` once ``after`` STEP commands were applied."""

    mode: str
    after: int = 0

    @staticmethod
    def parse(text: str) -> Misbehave:
        mode, _, count = text.partition(":")
        if mode not in MISBEHAVE_MODES:
            raise argparse.ArgumentTypeError(
                f"unknown misbehave mode {mode!r}; choose from {MISBEHAVE_MODES}"
            )
        try:
            return Misbehave(mode, int(count) if count else 0)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"misbehave step count {count!r} is not an integer") from e


class _DefaultsFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to a flag's help unless the default is None or False (or already named)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS:
            return text
        return text if "default" in text else f"{text} (default: %(default)s)"


def build_parser(game_cls: type[Game], prog: str | None = None) -> argparse.ArgumentParser:
    """The player command line of ``game_cls``; ``prog`` names the command in the usage line."""
    parser = argparse.ArgumentParser(
        prog=prog or f"python -m unimarl.sim {game_cls.name}",
        allow_abbrev=False,
        formatter_class=_DefaultsFormatter,
        description=f"Headless stand-in game {game_cls.name!r}; dials the trainer on localhost like a Unity "
        "player build. Unknown Unity flags are ignored.",
    )
    add = parser.add_argument
    add("--mlagents-port", type=int, default=None, help="trainer port on localhost (required)")
    add("-logFile", "-logfile", dest="log_file", default=None, help="game log file (default or '-': stderr)")
    add("-batchmode", action="store_true", help="accepted for Unity compatibility")
    add("-nographics", action="store_true", help="accepted for Unity compatibility")
    add(
        "--package-version",
        default=DEFAULT_PACKAGE_VERSION,
        help="C# package version to announce; < 3: rank-3 observations HWC; 3.0.0 to 4.0.0: declared CHW, "
        "uncompressed floats written HWC (the bug fixed in 4.0.1, #6239); >= 4.0.1: CHW",
    )
    add("--timeout", type=float, default=60.0, help="seconds to wait for each answer, 0: forever")
    add("--record", type=Path, default=None, help="append one JSON line per input received to this file")
    add(
        "--misbehave",
        type=Misbehave.parse,
        default=None,
        metavar="MODE[:N]",
        help=f"inject a fault after N steps; MODE: {', '.join(MISBEHAVE_MODES)}",
    )
    add(
        "--behavior-type",
        choices=BEHAVIOR_TYPES,
        default="default",
        help="Unity's Behavior Type of every agent: default (reported to the trainer); inference "
        "(Inference Only: acts from the newest pushed model, zeros before one) and heuristic (Heuristic "
        "Only: zeros) are never reported; with no default agent nothing is sent after the handshake",
    )
    add(
        "--inference-behavior",
        action="append",
        default=[],
        metavar="NAME",
        help="full behaviour name (e.g. 'Battle?team=1') run as Unity's Heuristic Only + PolicyHotSwap: "
        "not reported to the trainer, acts from the newest pushed model (zeros before one); repeatable",
    )
    unity = parser.add_argument_group(
        "Unity rules a test can turn on (docs/unity-semantics.md cites the C# source of each)"
    )
    unity.add_argument(
        "--unity-reset",
        action="store_true",
        help="after a RESET (not the first input's, which Unity ignores) agents execute one zero action "
        "before their first new observation",
    )
    unity.add_argument(
        "--quit-after",
        type=int,
        default=None,
        metavar="N",
        help="quit on its own after N steps, sending a bare header-400 exchange as Academy.Dispose does",
    )
    game_cls.add_arguments(parser)
    return parser


def usage_problem(game_cls: type[Game], args: argparse.Namespace) -> str:
    """Why the command line cannot run ('' when it can)."""
    if args.mlagents_port is None:
        return (
            "no --mlagents-port given: a player build would run inference without a trainer; "
            "the headless sim needs one: pass --mlagents-port N"
        )
    if not args.inference_behavior:
        return ""
    try:  # behaviours follow from the flags; a throw-away instance lists them before dialing the trainer
        known = [b.name for b in game_cls(args, 0, 1).behaviors]
    except ValueError as e:
        return f"invalid flags for {game_cls.name}: {e}"
    unknown = [name for name in args.inference_behavior if name not in known]
    if not unknown:
        return ""
    return (
        f"--inference-behavior {', '.join(map(repr, unknown))}: no such behaviour in {game_cls.name}; "
        f"pass a full name, one of {known}"
    )


def configure_logging(log_file: str | None) -> None:
    """Send the process's log to ``log_file`` (``-`` or none: stderr), like Unity's ``-logFile``."""
    handler: logging.Handler
    if log_file and log_file != "-":
        handler = logging.FileHandler(log_file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
