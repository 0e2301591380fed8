"""Rollout pools: several :class:`~unimarl.trainers.rollout.RolloutWorker` s behind one interface.

:class:`SerialPool` runs its workers in the calling process, one after the other. :class:`RayPool` runs each
worker in a Ray actor (the actor wraps the very same class) spread over the cluster's nodes; weights go into
Ray's object store once per iteration (``ray.put``) and every actor receives the reference. Ray is imported
only here, and only when a Ray pool is made.

Local Ray runs on loopback (``127.0.0.1``) and always starts a fresh local instance (``address="local"``),
so a stale ``ray_current_cluster`` file left by a crashed run cannot make ``ray.init(num_cpus=...)`` fail as
if a cluster existed. ``address`` (e.g. ``"auto"`` or ``"HOST:6379"``) connects to a running cluster
instead.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from unimarl.trainers.batch import PolicySpec
from unimarl.trainers.envs import EnvFactory
from unimarl.trainers.errors import RayClusterError, TrainerError
from unimarl.trainers.rollout import RolloutWorker
from unimarl.trainers.rollout_plan import RolloutResult, WorkerPlan

logger = logging.getLogger(__name__)

Weights = dict[str, dict[str, np.ndarray]]
W = TypeVar("W")


class RolloutPool(Protocol):
    """What the train loop needs from a pool."""

    def specs(self) -> dict[str, PolicySpec]: ...
    def visual_layouts(self) -> dict[str, str]: ...
    def configure(self, plan: WorkerPlan) -> None: ...
    def collect(
        self, weights: Weights, horizon: int, max_seconds: float | None = None
    ) -> list[RolloutResult]: ...
    def nodes(self) -> list[str]: ...
    def close(self) -> None: ...


class SerialPushing:
    """Hot-swap pushes of a pool whose workers run in this process (``self._workers``)."""

    _workers: list[Any]

    def push_policy(self, behavior: str, version: int, model: bytes) -> int:
        return sum(worker.push_policy(behavior, version, model) for worker in self._workers)

    def policy_status(self) -> list[dict[str, Any]]:
        return [status for worker in self._workers for status in worker.policy_status()]


class RayPushing:
    """Hot-swap pushes of a pool of Ray actors (``self._actors``, ``self._get``); an actor busy collecting
    answers when its running task ends."""

    _actors: list[Any]

    _get: Callable[[list[Any], str], Any]

    def push_policy(self, behavior: str, version: int, model: bytes) -> int:
        import ray

        ref = ray.put(model)
        return sum(self._get([a.push_policy.remote(behavior, version, ref) for a in self._actors], "push"))

    def policy_status(self) -> list[dict[str, Any]]:
        statuses = self._get([a.policy_status.remote() for a in self._actors], "policy status")
        return [status for worker in statuses for status in worker]


class SerialPool(SerialPushing):
    """Workers in this process."""

    def __init__(self, factory: EnvFactory, num_workers: int, num_envs: int, seed: int = 0) -> None:
        self._workers = start_workers(RolloutWorker, factory, num_workers, num_envs, seed)

    def specs(self) -> dict[str, PolicySpec]:
        return self._workers[0].specs()

    def visual_layouts(self) -> dict[str, str]:
        return self._workers[0].visual_layouts()

    def configure(self, plan: WorkerPlan) -> None:
        for worker in self._workers:
            worker.configure(plan)

    def collect(
        self, weights: Weights, horizon: int, max_seconds: float | None = None
    ) -> list[RolloutResult]:
        """Each worker in turn; ``max_seconds`` bounds the whole call."""
        start, results = time.perf_counter(), []
        for worker in self._workers:
            left = None if max_seconds is None else max_seconds - (time.perf_counter() - start)
            results.append(worker.collect(weights, horizon, left))
        return results

    def nodes(self) -> list[str]:
        return [worker.node() for worker in self._workers]

    def close(self) -> None:
        for worker in self._workers:
            worker.close()
        self._workers = []


def start_workers(
    worker_cls: Callable[..., W], factory: EnvFactory, num_workers: int, num_envs: int, seed: int
) -> list[W]:
    """``num_workers`` workers in this process; those already started are closed if one fails."""
    workers: list[W] = []
    try:
        for i in range(num_workers):
            workers.append(worker_cls(factory, num_envs, worker_index=i, seed=seed))
    except BaseException:
        for worker in workers:
            worker.close()  # type: ignore[attr-defined]
        raise
    return workers


def start_ray_actors(
    worker_cls: type, factory: EnvFactory, num_workers: int, num_envs: int, seed: int, cpus_per_worker: float
) -> list[Any]:
    """One Ray actor per worker, wrapping ``worker_cls``, spread over the cluster's nodes."""
    import ray

    actor_cls: Any = ray.remote(worker_cls).options(num_cpus=cpus_per_worker, scheduling_strategy="SPREAD")
    return [actor_cls.remote(factory, num_envs, worker_index=i, seed=seed) for i in range(num_workers)]


def ray_get(refs: list[Any], what: str, timeout: float, workers: str = "rollout workers") -> Any:
    """``ray.get`` with the pool's errors: a timeout or a dead actor is a TrainerError naming ``what``; a
    worker's own exception is re-raised as itself."""
    import ray
    from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

    try:
        return ray.get(refs, timeout=timeout)
    except GetTimeoutError as e:
        raise TrainerError(
            f"{workers} did not finish '{what}' within {timeout:.0f} s; the games may hang: "
            "see the player logs under the run folder's logs/"
        ) from e
    except RayTaskError as e:
        cause = e.as_instanceof_cause()
        if isinstance(cause, Exception):
            raise cause from e
        raise
    except RayActorError as e:
        raise TrainerError(f"a {workers[:-1]} died during '{what}': {e}") from e


def kill_actors(actors: list[Any], timeout: float, workers: str = "rollout workers") -> None:
    """Close every worker actor (logging a failure) and kill it."""
    import ray

    if not actors:
        return
    try:
        ray_get([a.close.remote() for a in actors], "close", timeout, workers)
    except TrainerError as e:
        logger.warning("closing %s failed: %s", workers, e)
    for actor in actors:
        ray.kill(actor)


def use_ray(backend: str, num_workers: int, address: str | None) -> bool:
    """Whether ``backend`` means Ray ("auto": serial for one local worker, Ray otherwise)."""
    return backend == "ray" or (backend == "auto" and (num_workers > 1 or address is not None))


def _stale_cluster_file() -> Path | None:
    path = Path(os.environ.get("RAY_TMPDIR", tempfile.gettempdir())) / "ray" / "ray_current_cluster"
    return path if path.exists() else None


def init_ray(address: str | None, num_cpus: int) -> None:
    """Start local Ray on loopback (``address=None``) or connect to a cluster; no-op when already started."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        if address is None:
            stale = _stale_cluster_file()
            if stale is not None:
                logger.info("ignoring %s (a previous Ray instance); starting a fresh local one", stale)
            ray.init(
                address="local",
                num_cpus=num_cpus,
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
                log_to_driver=True,
                configure_logging=False,
            )
        else:
            ray.init(address=address, include_dashboard=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"cluster at '{address}'" if address else "a local Ray instance"
        raise RayClusterError(
            f"could not start or reach {where}: {e}. For a cluster check `ray status` on its head node; "
            "locally, `ray stop` clears leftovers of a crashed run"
        ) from e


class RayPool(RayPushing):
    """One Ray actor per worker, spread over the cluster's nodes."""

    def __init__(
        self,
        factory: EnvFactory,
        num_workers: int,
        num_envs: int,
        seed: int = 0,
        timeout_s: float = 600.0,
        cpus_per_worker: float = 1.0,
    ) -> None:
        import ray

        if not ray.is_initialized():
            raise RayClusterError("RayPool needs Ray started first: call init_ray(address, num_cpus)")
        self._timeout = timeout_s
        self._actors = start_ray_actors(RolloutWorker, factory, num_workers, num_envs, seed, cpus_per_worker)
        try:
            self._nodes: list[str] = self._get([a.node.remote() for a in self._actors], "start")
        except BaseException:
            self.close()
            raise

    def _get(self, refs: list[Any], what: str) -> Any:
        return ray_get(refs, what, self._timeout)

    def specs(self) -> dict[str, PolicySpec]:
        return self._get([self._actors[0].specs.remote()], "specs")[0]

    def visual_layouts(self) -> dict[str, str]:
        return self._get([self._actors[0].visual_layouts.remote()], "visual layouts")[0]

    def configure(self, plan: WorkerPlan) -> None:
        self._get([a.configure.remote(plan) for a in self._actors], "configure")

    def collect(
        self, weights: Weights, horizon: int, max_seconds: float | None = None
    ) -> list[RolloutResult]:
        import ray

        ref = ray.put(weights)
        return self._get([a.collect.remote(ref, horizon, max_seconds) for a in self._actors], "collect")

    def nodes(self) -> list[str]:
        return list(self._nodes)

    def close(self) -> None:
        kill_actors(self._actors, self._timeout)
        self._actors = []


def make_pool(
    factory: EnvFactory, *, backend: str, num_workers: int, num_envs: int, seed: int, address: str | None
) -> SerialPool | RayPool:
    """The pool for ``backend`` ("auto": serial for one worker, Ray otherwise)."""
    if not use_ray(backend, num_workers, address):
        return SerialPool(factory, num_workers, num_envs, seed)
    init_ray(address, num_cpus=max(num_workers, os.cpu_count() or 1))
    return RayPool(factory, num_workers, num_envs, seed, cpus_per_worker=cpus_per_worker(num_workers))


def cpus_per_worker(num_workers: int) -> float:
    """CPUs each worker actor asks for: 1, or a share of the cluster when it has fewer CPUs than workers.

    Without this, a Ray instance started earlier in the process with fewer CPUs (``init_ray`` is a no-op
    then), or a small cluster, could never place every actor and the pool would wait until its timeout.
    """
    import ray

    total = float(ray.cluster_resources().get("CPU", 0.0))
    return 1.0 if total >= num_workers or total <= 0 else total / num_workers
