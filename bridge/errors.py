"""Errors raised by the bridge.

Every error a user can cause derives from :class:`BridgeError` and says what was wrong and what to do
about it.
Errors about a game process name the process and its log file, so a failure can be traced without guessing.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Root of every error raised by ``unimarl.bridge``."""


class LaunchError(BridgeError):
    """A player build could not be found or started (missing file, not executable, unsupported platform)."""


class PortInUseError(BridgeError):
    """The port the trainer must listen on is taken by another process."""


class UnityTimeoutError(BridgeError):
    """The game did not send its next message within the timeout."""


class UnityProcessExitedError(BridgeError):
    """The game process exited while the trainer was waiting for it."""


class UnityClosedError(BridgeError):
    """The game closed its side with a header-400 exchange (it quit, or Play was stopped in the Editor)."""


class IncompatibleVersionError(BridgeError):
    """The game speaks a communication API version this trainer cannot talk to."""


class ProtocolError(BridgeError):
    """The game sent a message that is malformed, truncated, or out of order."""


class ObservationError(BridgeError):
    """An observation disagrees with its spec (shape, size) or holds NaN/inf under the ``raise`` policy."""


class ActionError(BridgeError):
    """Actions passed by the caller have the wrong agents, shape, dtype or range."""


class SideChannelError(BridgeError):
    """A side-channel message could not be framed, parsed or routed."""
