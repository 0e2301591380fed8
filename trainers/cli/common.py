"""What the ``unimarl`` sub-commands share: the error exit code, logging setup, common flags, error reporting.

Imports nothing heavy: the modules holding the expected error types are imported only when a command runs.
"""

from __future__ import annotations

import argparse
import logging
import sys

#: Exit status of a command that failed with an expected (typed) error.
EXIT_ERROR = 2
#: Help of every ``--env`` flag.
ENV_HELP = "a Unity player build path, or sim:NAME for a stand-in game"


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def add_log_level(parser: argparse.ArgumentParser, default: str) -> None:
    """The ``--log-level`` flag, with its default named in the help."""
    parser.add_argument(
        "--log-level",
        default=default,
        type=str.upper,
        choices=LOG_LEVELS,
        help=f"logging level, one of {', '.join(LOG_LEVELS)} (default {default})",
    )


def setup_logging(level: str) -> None:
    """Log to stderr at ``level`` (a name such as INFO, any case)."""
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def expected_errors() -> tuple[type[Exception], ...]:
    """The errors a command reports as one ``error: ...`` line: the bridge's and the trainers' roots."""
    from unimarl.bridge.errors import BridgeError
    from unimarl.trainers.core.errors import TrainerError

    return (TrainerError, BridgeError)


def report_error(error: object, prefix: str = "") -> int:
    """Print ``error: ERROR`` to stderr and return :data:`EXIT_ERROR` (``prefix`` ends a progress line)."""
    print(f"{prefix}error: {error}", file=sys.stderr)
    return EXIT_ERROR
