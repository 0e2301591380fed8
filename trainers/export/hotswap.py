"""Hot-swap during training: push the newest policies into the running games, track what each game runs.

Every ``hotswap.every`` iterations (config, 0 = never), and on demand (:meth:`HotSwap.request` from any
thread, or ``touch results/RUN_ID/push_policy``), the learner exports its policies with its algorithm's
exporter (the same files and manifest a checkpoint writes; :mod:`unimarl.trainers.export.policies`) and pushes
each behaviour's model, with a version number counting pushes from 1, through the policy side channel of every
Unity/sim game of every rollout worker. The games acknowledge with the next step; the metrics line then holds,
per behaviour, ``counters/hotswap_pushed/<behaviour>`` (newest pushed version),
``counters/hotswap_running/<behaviour>`` (the oldest version any game runs: -1 while some game runs none of
them) and ``counters/hotswap_rejected/<behaviour>`` (games whose last acknowledgement was a rejection).
A policy whose export failed (logged and recorded in the manifest) is not pushed: its
games keep what they run; ``counters/export_failures/<policy>`` counts such failures (checkpoint exports
included) once there is one.

A game that receives a model keeps the trainer's actions unless its agents are of type *Inference Only*
(sim games: ``--behavior-type inference``), so pushing into the rollout games does not change what the
trainer learns from; it lets a developer watch the newest policy in the Editor or a spectator game.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from unimarl.trainers.export.policies import ExportedPolicy, export_failures

logger = logging.getLogger(__name__)

REQUEST_FILE = "push_policy"
"""Touch this file in the run folder to push the current policies after the running iteration."""


class PolicyPusher(Protocol):
    """What hot-swap needs from a rollout pool."""

    def push_policy(self, behavior: str, version: int, model: bytes) -> int: ...
    def policy_status(self) -> list[dict[str, Any]]: ...


class HotSwap:
    """Pushes policies into a pool's games every ``every`` iterations and on demand (module docstring).

    ``export(env_steps)`` writes the run's models and returns those written (the algorithm's exporter of
    :mod:`unimarl.trainers.run.registry`, bound to the run and its learner)."""

    def __init__(
        self,
        pool: PolicyPusher,
        run_path: str | Path,
        behavior_policy: dict[str, str],
        every: int,
        export: Callable[[int], Sequence[ExportedPolicy]],
    ):
        self.pool = pool
        self.run_path = Path(run_path)
        self.behavior_policy = dict(behavior_policy)
        self.every = every
        self.export = export
        self.version = 0
        self._requested = threading.Event()

    def request(self) -> None:
        """Push after the running iteration (thread-safe)."""
        self._requested.set()

    def _due(self, iteration: int) -> bool:
        trigger = self.run_path / REQUEST_FILE
        if trigger.exists():
            trigger.unlink(missing_ok=True)
            self._requested.set()
        if self._requested.is_set():
            self._requested.clear()
            return True
        return self.every > 0 and iteration % self.every == 0

    def after_iteration(self, iteration: int, env_steps: int) -> bool:
        """Push when due; returns whether it pushed."""
        if not self._due(iteration):
            return False
        self.push(env_steps)
        return True

    def push(self, env_steps: int) -> int:
        """Export and push every behaviour's policy now; returns the version pushed."""
        exported = {e.policy: e for e in self.export(env_steps)}
        self.version += 1
        for behavior, policy in sorted(self.behavior_policy.items()):
            if policy not in exported:
                logger.warning(
                    "hot-swap: not pushing %s v%d: the export of policy %s failed (see the error above)",
                    behavior,
                    self.version,
                    policy,
                )
                continue
            games = self.pool.push_policy(behavior, self.version, exported[policy].path.read_bytes())
            logger.info("hot-swap: %s v%d queued for %d games", behavior, self.version, games)
        return self.version

    def metrics(self) -> dict[str, float]:
        """Pushed / running / rejected counters per behaviour once something was pushed, and export failure
        counters per policy once an export failed (module docstring)."""
        line = {
            f"counters/export_failures/{p}": float(n) for p, n in export_failures(self.run_path).items() if n
        }
        if self.version == 0:
            return line
        return {**summarize(self.pool.policy_status(), self.behavior_policy), **line}


def summarize(statuses: Iterable[dict[str, Any]], behaviors: Iterable[str]) -> dict[str, float]:
    """Counters over games; each status maps behaviour -> ``unimarl.bridge.policy_channel.PolicyStatus``."""
    games = list(statuses)
    line: dict[str, float] = {}
    for behavior in sorted(behaviors):
        known = [g[behavior] for g in games if behavior in g]
        if not known:
            continue
        running = [s.running_version for s in known]
        pushed = [s.pushed_version for s in known if s.pushed_version is not None]
        line[f"counters/hotswap_pushed/{behavior}"] = float(max(pushed, default=-1))
        oldest = -1 if len(running) < len(games) or None in running else min(running)
        line[f"counters/hotswap_running/{behavior}"] = float(oldest)
        rejected = sum(1 for s in known if s.last_ack is not None and not s.last_ack.ok)
        line[f"counters/hotswap_rejected/{behavior}"] = float(rejected)
    return line
