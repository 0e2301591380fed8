"""A progress line at least every ``every_s`` seconds while an iteration runs, however long it takes.

The metrics line comes once per ``summary_freq`` env steps, which on a slow game (large images, many agents)
can be minutes away; :class:`Heartbeat` logs, from a daemon thread, what the loop is doing and how long it
has been at it, so a run is never silent for long (logger ``unimarl.trainers.run.progress`` at INFO, which the
``unimarl`` command shows by default).
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType

logger = logging.getLogger(__name__)

EVERY_S = 10.0
"""Default seconds between progress lines."""


class Heartbeat:
    """Logs ``iteration N: <phase> for S s (...)`` whenever ``every_s`` seconds pass without a line, until
    :meth:`close`.

    The loop calls :meth:`phase` when it starts collecting, updating, etc., and :meth:`reported` when it
    writes a metrics line itself. ``max_seconds`` (the run's time budget, counted from construction) adds the
    time left to each line.
    """

    def __init__(self, every_s: float | None = None, max_seconds: float | None = None) -> None:
        self.every_s = EVERY_S if every_s is None else every_s
        self.max_seconds = max_seconds
        self.start = time.perf_counter()
        self._lock = threading.Lock()
        self._what = ("starting", 0, 0, self.start)  # phase, iteration, env steps done, since
        self._last = self.start  # when the last progress or metrics line was written
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="unimarl-progress", daemon=True)
        self._thread.start()

    def phase(self, name: str, iteration: int, env_steps: int) -> None:
        """The loop is now ``name`` (e.g. "collecting") in ``iteration``; ``env_steps`` were done before."""
        with self._lock:
            self._what = (name, iteration, env_steps, time.perf_counter())

    def reported(self) -> None:
        """A metrics line was just written: the next progress line is due ``every_s`` from now."""
        with self._lock:
            self._last = time.perf_counter()

    def line(self) -> str:
        """The progress line as of now."""
        with self._lock:
            name, iteration, env_steps, since = self._what
        now = time.perf_counter()
        text = f"iteration {iteration}: {name} for {now - since:.0f} s ({env_steps:,} env steps done"
        if self.max_seconds is not None:
            left = max(self.max_seconds - (now - self.start), 0.0)
            text += f", {left:.0f} s of the {self.max_seconds:g} s budget left"
        return text + ")"

    def _run(self) -> None:
        while not self._done.wait(min(1.0, self.every_s / 4)):
            with self._lock:
                due = time.perf_counter() - self._last >= self.every_s
            if due:
                logger.info("%s", self.line())
                self.reported()

    def close(self) -> None:
        self._done.set()
        self._thread.join(timeout=2.0)

    def __enter__(self) -> Heartbeat:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
