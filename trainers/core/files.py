"""Files that survive a crash: written to a temporary file, flushed to disk, then renamed over the target.

A reader sees the old file or the new one, never a cut one, even when the process is killed (kill -9, power
loss) in the middle of a write; the rename itself is made durable by syncing the folder.
"""

from __future__ import annotations

import os
from pathlib import Path


def replace_durably(tmp: Path, path: Path) -> None:
    """Flush ``tmp`` to disk and rename it to ``path`` (atomic on POSIX and Windows), then sync the folder."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _sync_folder(path.parent)


def write_durably(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder (see the module docstring)."""
    tmp = path.with_name(path.name + ".tmp")
    if isinstance(data, str):
        tmp.write_text(data)
    else:
        tmp.write_bytes(data)
    replace_durably(tmp, path)


def _sync_folder(folder: Path) -> None:
    if os.name != "posix":  # Windows cannot open a folder; its rename is durable once it returns
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
