"""File and folder names made from behaviour and policy names, valid on Windows, macOS and Linux.

Unity behaviour names carry ``?team=N`` and may hold any character; a run folder must open on Windows, where
most Unity developers work and ``<>:"/\\|?*`` and control characters are illegal in names, as are the device
names (``CON``, ``NUL``, ``COM1``, ...) and names ending in a dot or a space.
"""

from __future__ import annotations

import re

from unimarl.trainers.core.errors import ConfigError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_WINDOWS_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))]
)


def path_name(name: str) -> str:
    """``name`` as one path component: every character outside ``[A-Za-z0-9._-]`` becomes ``_``
    (``CoopNav?team=0`` -> ``CoopNav_team_0``); a Windows device name or a trailing dot gets a ``_`` appended.

    Raises :class:`ConfigError` for a name made only of dots (or empty), which would leave its folder.
    """
    if not name.strip("."):
        raise ConfigError(
            f"the behaviour or policy name {name!r} cannot name a file or folder; map it to another name "
            "in the config's policy_mapping"
        )
    safe = _UNSAFE.sub("_", name)
    if safe.endswith(".") or safe.split(".", 1)[0].upper() in _WINDOWS_DEVICES:
        safe += "_"
    return safe


def team_of(behavior: str) -> int:
    """The team of an ML-Agents behaviour id ``Name?team=T`` (0 without one)."""
    _, _, query = behavior.partition("?")
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key == "team" and value.lstrip("-").isdigit():
            return int(value)
    return 0
