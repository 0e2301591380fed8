"""Asynchronous pools of :class:`~unimarl.trainers.mf_worker.MFRolloutWorker` s for the off-policy learners.

The learner never waits for a full synchronous round. :meth:`poll` returns the chunks of transitions that
have arrived; every worker is then immediately sent its next ``collect`` with the newest weights
(:meth:`set_weights` replaces them, and the models of behaviours the games drive, for the following
requests). Each refresh increments :attr:`version`; every chunk names the version it was collected with
(:attr:`~unimarl.trainers.mf_worker.MFChunk.weights_version`), so its age in refreshes is known.
``seconds_left`` (the run's remaining time budget, set by the training loop) bounds each new ``collect``, so a
long chunk ends near the budget.

- :class:`SerialMFPool`: workers in this process; ``poll`` runs one ``collect`` on the next worker in turn
  (round robin), so tests and single-core runs take the same code path.
- :class:`RayMFPool`: one Ray actor per worker, each always busy with one ``collect``; ``poll`` gathers the
  finished ones with ``ray.wait(timeout=0)`` and blocks (up to ``timeout``) only when none has finished and
  the learner has nothing else to do. Weights go into the object store once per refresh.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from unimarl.trainers.batch import PolicySpec
from unimarl.trainers.envs import EnvFactory
from unimarl.trainers.errors import TrainerError
from unimarl.trainers.mf_worker import MFChunk, MFPlan, MFRolloutWorker
from unimarl.trainers.pool import (
    RayPushing,
    SerialPushing,
    cpus_per_worker,
    init_ray,
    kill_actors,
    ray_get,
    start_ray_actors,
    start_workers,
    use_ray,
)

logger = logging.getLogger(__name__)

Weights = dict[str, dict[str, np.ndarray]]
Models = dict[str, tuple[int, bytes]]
"""Game-driven behaviour -> (version, ONNX bytes) (:class:`~unimarl.trainers.mf_worker.MFPlan`)."""
SecondsLeft = Callable[[], float | None]
"""The run's remaining time budget in seconds (None: no budget)."""


def _no_budget() -> float | None:
    return None


WORKERS = "mean-field rollout workers"


class SerialMFPool(SerialPushing):
    """Workers in this process, polled round robin."""

    def __init__(self, factory: EnvFactory, num_workers: int, num_envs: int, seed: int = 0) -> None:
        self._workers = start_workers(MFRolloutWorker, factory, num_workers, num_envs, seed)
        self._next = 0
        self.version = 0
        """Weight refreshes so far."""
        self._weights: Weights = {}
        self._models: Models = {}
        self._progress = 0.0
        self._steps = 1
        self.seconds_left: SecondsLeft = _no_budget

    def specs(self) -> dict[str, PolicySpec]:
        return self._workers[0].specs()

    def configure(self, plan: MFPlan) -> None:
        for worker in self._workers:
            worker.configure(plan)

    def start(self, weights: Weights, progress: float, steps: int, models: Models | None = None) -> None:
        self._steps = steps
        self.set_weights(weights, progress, models)

    def set_weights(self, weights: Weights, progress: float, models: Models | None = None) -> None:
        self._weights, self._progress, self._models = weights, progress, dict(models or {})
        self.version += 1

    def poll(self, timeout: float) -> list[MFChunk]:
        worker = self._workers[self._next]
        self._next = (self._next + 1) % len(self._workers)
        left = self.seconds_left()
        return [worker.collect(self._weights, self._progress, self._steps, self._models, self.version, left)]

    def close(self) -> None:
        for worker in self._workers:
            worker.close()
        self._workers = []


class RayMFPool(RayPushing):
    """One Ray actor per worker, each kept busy; see the module docstring."""

    def __init__(
        self,
        factory: EnvFactory,
        num_workers: int,
        num_envs: int,
        seed: int = 0,
        timeout_s: float = 600.0,
        cpus_per_worker: float = 1.0,
    ) -> None:
        self._timeout = timeout_s
        self._actors = start_ray_actors(
            MFRolloutWorker, factory, num_workers, num_envs, seed, cpus_per_worker
        )
        self._inflight: dict[Any, int] = {}
        self.version = 0
        """Weight refreshes so far."""
        self._weights_ref: Any = None
        self._models_ref: Any = None
        self._progress = 0.0
        self._steps = 1
        self._last_arrival = time.monotonic()
        self.seconds_left: SecondsLeft = _no_budget

    def _get(self, refs: list[Any], what: str) -> Any:
        return ray_get(refs, what, self._timeout, WORKERS)

    def specs(self) -> dict[str, PolicySpec]:
        return self._get([self._actors[0].specs.remote()], "specs")[0]

    def configure(self, plan: MFPlan) -> None:
        self._get([a.configure.remote(plan) for a in self._actors], "configure")

    def _submit(self, index: int) -> None:
        ref = self._actors[index].collect.remote(
            self._weights_ref,
            self._progress,
            self._steps,
            self._models_ref,
            self.version,
            self.seconds_left(),
        )
        self._inflight[ref] = index

    def start(self, weights: Weights, progress: float, steps: int, models: Models | None = None) -> None:
        self._steps = steps
        self.set_weights(weights, progress, models)
        for i in range(len(self._actors)):
            self._submit(i)

    def set_weights(self, weights: Weights, progress: float, models: Models | None = None) -> None:
        import ray

        self._weights_ref, self._progress = ray.put(weights), progress
        self._models_ref = ray.put(dict(models or {}))
        self.version += 1

    def poll(self, timeout: float) -> list[MFChunk]:
        """Chunks that have arrived (waiting up to ``timeout`` s for the first when none has)."""
        import ray

        refs = list(self._inflight)
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        if not ready:
            ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if not ready:
            if time.monotonic() - self._last_arrival > self._timeout:
                raise TrainerError(
                    f"no rollout worker delivered transitions for {self._timeout:.0f} s; the games may hang: "
                    "see the player logs under the run folder's logs/"
                )
            return []
        self._last_arrival = time.monotonic()
        chunks = self._get(ready, "collect")
        for ref in ready:
            self._submit(self._inflight.pop(ref))
        return list(chunks)

    def close(self) -> None:
        kill_actors(self._actors, self._timeout, WORKERS)
        self._actors = []
        self._inflight = {}


def make_mf_pool(
    factory: EnvFactory, *, backend: str, num_workers: int, num_envs: int, seed: int, address: str | None
) -> SerialMFPool | RayMFPool:
    """The pool for ``backend`` ("auto": serial for one worker, Ray otherwise)."""
    if not use_ray(backend, num_workers, address):
        return SerialMFPool(factory, num_workers, num_envs, seed)
    init_ray(address, num_cpus=max(num_workers + 1, os.cpu_count() or 1))
    return RayMFPool(factory, num_workers, num_envs, seed, cpus_per_worker=cpus_per_worker(num_workers))
