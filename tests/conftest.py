"""Shared test settings: Ray stays on loopback, and no test depends on the source tree's location."""

from __future__ import annotations

import os

# Ray binds the machine's address unless told otherwise; tests keep it on 127.0.0.1.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
