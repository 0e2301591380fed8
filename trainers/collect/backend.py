"""Where rollout workers run: one interface, two backends, two modes.

A backend holds ``num_workers`` workers of one class (any class built as ``cls(factory, num_envs,
worker_index=i, seed=seed)``: the MAPPO and the mean-field workers alike; this module never imports one) and
calls their methods by name:

- synchronous (on-policy): :meth:`Backend.call` calls a method on every worker and waits for all of them;
- streaming (off-policy): :meth:`Backend.submit` starts a call on one worker and :meth:`Backend.poll` returns
  the calls that have finished, so a learner takes what is ready and resubmits (:class:`Collector`).

:class:`SerialBackend` keeps the workers in this process and runs a call when its result is needed: ``call``
runs the workers one after the other, ``poll`` runs the oldest submitted call. :class:`RayBackend` wraps the
very same worker class in one Ray actor per worker, spread over the cluster's nodes; values that every worker
receives (weights) go into Ray's object store once (:meth:`Backend.share`). An argument wrapped in
:class:`Fresh` is evaluated when the call is dispatched: for the serial backend that is when the worker
starts, so the run's remaining time budget shrinks from one worker to the next and a queued streaming call
takes the newest weights, as a Ray actor that is free at once would. Ray is imported only by the Ray backend.

Local Ray runs on loopback (``127.0.0.1``) and always starts a fresh local instance (``address="local"``),
so a stale ``ray_current_cluster`` file left by a crashed run cannot make ``ray.init(num_cpus=...)`` fail as
if a cluster existed. ``address`` (e.g. ``"auto"`` or ``"HOST:6379"``) connects to a running cluster
instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from unimarl.trainers.core.errors import RayClusterError, TrainerError
from unimarl.trainers.envs.factory import EnvFactory

logger = logging.getLogger(__name__)


class WorkerLostError(TrainerError):
    """A worker's process or node was lost (a Ray backend replaces the worker, up to its limit)."""


@dataclass(frozen=True)
class Fresh:
    """An argument computed when the call is dispatched (see the module docstring); ``spread``: the value is
    a tuple of arguments."""

    value: Callable[[], Any]
    spread: bool = False


def _resolve(args: tuple[Any, ...]) -> tuple[Any, ...]:
    out: list[Any] = []
    for a in args:
        value = a.value() if isinstance(a, Fresh) else a
        if isinstance(a, Fresh) and a.spread:
            out.extend(value)
        else:
            out.append(value)
    return tuple(out)


def _shared(backend: Backend, value: Any) -> Any:
    """``value`` as workers receive it: large values (weights, models) shared once, scalars as they are."""
    return value if value is None or isinstance(value, int | float | str | bool) else backend.share(value)


class Backend(Protocol):
    """What the training loop needs from the place its workers run."""

    num_workers: int
    kind: str
    """"serial" or "ray"."""

    def share(self, value: Any) -> Any: ...
    def setup(self, method: str, *args: Any) -> list[Any]: ...
    def call(self, method: str, *args: Any) -> list[Any]: ...
    def call_first(self, method: str, *args: Any) -> Any: ...
    def submit(self, index: int, method: str, *args: Any) -> None: ...
    def poll(self, timeout: float) -> list[tuple[int, Any]]: ...
    def nodes(self) -> list[str]: ...
    def push_policy(self, behavior: str, version: int, model: bytes) -> int: ...
    def policy_status(self) -> list[dict[str, Any]]: ...
    def close(self) -> None: ...


class _Pushing:
    """Hot-swap through the workers: each pushes to the games it owns."""

    def call(self, method: str, *args: Any) -> list[Any]:
        raise NotImplementedError

    def share(self, value: Any) -> Any:
        raise NotImplementedError

    def push_policy(self, behavior: str, version: int, model: bytes) -> int:
        """Queue an ONNX model for ``behavior`` in every game; returns how many games get it."""
        return sum(self.call("push_policy", behavior, version, self.share(model)))

    def policy_status(self) -> list[dict[str, Any]]:
        """Per game, behaviour -> what the game acknowledged running."""
        return [status for worker in self.call("policy_status") for status in worker]


class SerialBackend(_Pushing):
    """Workers in this process."""

    kind = "serial"

    def __init__(self, worker_cls: type, factory: EnvFactory, num_workers: int, num_envs: int, seed: int = 0):
        self.workers: list[Any] = []
        try:
            for i in range(num_workers):
                self.workers.append(worker_cls(factory, num_envs, worker_index=i, seed=seed))
        except BaseException:
            self.close()
            raise
        self.num_workers = num_workers
        self._queue: deque[tuple[int, str, tuple[Any, ...]]] = deque()

    def share(self, value: Any) -> Any:
        return value

    def call(self, method: str, *args: Any) -> list[Any]:
        """``method(*args)`` on each worker in turn."""
        return [getattr(w, method)(*_resolve(args)) for w in self.workers]

    def setup(self, method: str, *args: Any) -> list[Any]:
        """:meth:`call` (a Ray backend also replays it on a replacement worker)."""
        return self.call(method, *args)

    def call_first(self, method: str, *args: Any) -> Any:
        return getattr(self.workers[0], method)(*_resolve(args))

    def submit(self, index: int, method: str, *args: Any) -> None:
        self._queue.append((index, method, args))

    def poll(self, timeout: float) -> list[tuple[int, Any]]:
        """Run the oldest submitted call (``timeout`` unused: the call runs here)."""
        if not self._queue:
            return []
        index, method, args = self._queue.popleft()
        return [(index, getattr(self.workers[index], method)(*_resolve(args)))]

    def nodes(self) -> list[str]:
        return [w.node() for w in self.workers]

    def close(self) -> None:
        for worker in self.workers:
            worker.close()
        self.workers = []
        self._queue = deque()


class RayBackend(_Pushing):
    """One Ray actor per worker, spread over the cluster's nodes; ``timeout_s`` bounds every wait.

    A worker whose actor dies (its process killed, its node lost) is replaced: a new actor with the same
    index and seed starts its games, and the set-up calls made so far (:meth:`setup`) are replayed on it. A
    synchronous call goes on with the workers that answered (the dead one's result is missing from the
    list); a streaming call is resubmitted to the new actor. At most ``max_restarts`` replacements per worker
    over the run; one more death ends the run with a TrainerError. :attr:`restarts` counts them.
    """

    kind = "ray"

    def __init__(
        self,
        worker_cls: type,
        factory: EnvFactory,
        num_workers: int,
        num_envs: int,
        seed: int = 0,
        timeout_s: float = 600.0,
        cpus_per_worker: float = 1.0,
        workers: str = "rollout workers",
        max_restarts: int = 3,
    ) -> None:
        import ray

        if not ray.is_initialized():
            raise RayClusterError("RayBackend needs Ray started first: call init_ray(address, num_cpus)")
        self.num_workers = num_workers
        self._timeout = timeout_s
        self._what = workers
        self._actor_cls: Any = ray.remote(worker_cls).options(
            num_cpus=cpus_per_worker, scheduling_strategy="SPREAD"
        )
        self._make: Callable[[int], Any] = lambda i: self._actor_cls.remote(
            factory, num_envs, worker_index=i, seed=seed
        )
        self._actors: list[Any] = [self._make(i) for i in range(num_workers)]
        self._inflight: dict[Any, tuple[int, str, tuple[Any, ...]]] = {}
        self._setup: list[tuple[str, tuple[Any, ...]]] = []
        self._last_arrival = time.monotonic()
        self.max_restarts = max_restarts
        self.restarts = [0] * num_workers
        """Replacements per worker so far."""
        try:
            # every worker answers once it has started its games
            self._nodes: list[str] = self._get([a.node.remote() for a in self._actors], "start")
        except BaseException:
            self.close()
            raise

    def _get(self, refs: list[Any], what: str) -> Any:
        return ray_get(refs, what, self._timeout, self._what)

    def share(self, value: Any) -> Any:
        import ray

        return ray.put(value)

    def setup(self, method: str, *args: Any) -> list[Any]:
        """:meth:`call`, remembered: a replacement worker gets the same calls before its first task."""
        self._setup.append((method, args))
        return self.call(method, *args)

    def call(self, method: str, *args: Any) -> list[Any]:
        """``method(*args)`` on every worker; the results of the workers that answered, in worker order (a
        worker that died is replaced and left out of this call)."""
        refs = [getattr(a, method).remote(*_resolve(args)) for a in self._actors]
        results = []
        for index, ref in enumerate(refs):
            try:
                results.append(self._get([ref], method.replace("_", " "))[0])
            except WorkerLostError as e:
                self._replace(index, e)
        return results

    def call_first(self, method: str, *args: Any) -> Any:
        try:
            return self._get([getattr(self._actors[0], method).remote(*_resolve(args))], method)[0]
        except WorkerLostError as e:
            self._replace(0, e)
            return self._get([getattr(self._actors[0], method).remote(*_resolve(args))], method)[0]

    def submit(self, index: int, method: str, *args: Any) -> None:
        ref = getattr(self._actors[index], method).remote(*_resolve(args))
        self._inflight[ref] = (index, method, args)

    def poll(self, timeout: float) -> list[tuple[int, Any]]:
        """Calls that have finished (waiting up to ``timeout`` s for the first when none has); a
        TrainerError when none has finished for the backend's ``timeout_s``. A call whose worker died is
        resubmitted to its replacement."""
        import ray

        refs = list(self._inflight)
        if not refs:
            return []
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        if not ready:
            ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if not ready:
            if time.monotonic() - self._last_arrival > self._timeout:
                raise TrainerError(
                    f"no {self._what[:-1]} delivered for {self._timeout:.0f} s; the games may hang: "
                    "see the player logs under the run folder's logs/"
                )
            return []
        done = []
        for ref in ready:
            index, method, args = self._inflight.pop(ref)
            try:
                done.append((index, self._get([ref], method)[0]))
            except WorkerLostError as e:
                self._replace(index, e)
                self.submit(index, method, *args)
        if done:
            self._last_arrival = time.monotonic()
        return done

    def _replace(self, index: int, error: Exception) -> None:
        """A new actor for worker ``index``, set up like the others (see the class docstring)."""
        import ray

        if self.restarts[index] >= self.max_restarts:
            raise TrainerError(
                f"{self._what[:-1]} {index} died {self.restarts[index] + 1} times (limit {self.max_restarts} "
                f"replacements): {error}. Check the node's memory and the player logs under the run folder's "
                "logs/"
            ) from error
        self.restarts[index] += 1
        logger.warning(
            "%s %d died (%s); replacing it (%d of %d replacements)",
            self._what[:-1],
            index,
            str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__,
            self.restarts[index],
            self.max_restarts,
        )
        with contextlib.suppress(Exception):  # already gone
            ray.kill(self._actors[index])
        self._actors[index] = self._make(index)
        self._nodes[index] = self._get([self._actors[index].node.remote()], "start")[0]
        for method, args in self._setup:
            self._get([getattr(self._actors[index], method).remote(*_resolve(args))], method)

    def nodes(self) -> list[str]:
        return list(self._nodes)

    def close(self) -> None:
        kill_actors(self._actors, self._timeout, self._what)
        self._actors = []
        self._inflight = {}


class Collector:
    """Runs the workers' ``collect``: once on every worker (:meth:`gather`, on-policy) or streaming
    (:meth:`stream` then :meth:`poll`, off-policy).

    Streaming: every worker always has one ``collect(*args, version, seconds_left)`` in flight; :meth:`poll`
    returns the results that have arrived and resubmits those workers with the newest arguments. Each
    :meth:`stream` call replaces the arguments (shared once) and increments :attr:`version`, so every result
    can name the version it was collected with and its age in refreshes is known.
    """

    def __init__(self, backend: Backend, seconds_left: Callable[[], float | None] | None = None) -> None:
        self.backend = backend
        self.seconds_left: Callable[[], float | None] = seconds_left or (lambda: None)
        """The run's remaining time budget in seconds (None: no budget), read when a call is dispatched."""
        self.version = 0
        self._args: tuple[Any, ...] = ()
        self._started = False

    def gather(self, *args: Any) -> list[Any]:
        """``collect(*args, seconds_left)`` on every worker; arguments are shared once."""
        shared = tuple(_shared(self.backend, a) for a in args)
        return self.backend.call("collect", *shared, Fresh(self.seconds_left))

    def stream(self, *args: Any) -> None:
        """Newest arguments for the following streaming calls; the first call starts every worker."""
        self._args = tuple(_shared(self.backend, a) for a in args)
        self.version += 1
        if not self._started:
            self._started = True
            for index in range(self.backend.num_workers):
                self._submit(index)

    def _submit(self, index: int) -> None:
        self.backend.submit(
            index,
            "collect",
            Fresh(lambda: self._args, spread=True),
            Fresh(lambda: self.version),
            Fresh(self.seconds_left),
        )

    def poll(self, timeout: float) -> list[Any]:
        """Results that have arrived, each worker resubmitted (see the class docstring)."""
        done = self.backend.poll(timeout)
        for index, _ in done:
            self._submit(index)
        return [result for _, result in done]


def ray_get(refs: list[Any], what: str, timeout: float, workers: str = "rollout workers") -> Any:
    """``ray.get`` with the backend's errors: a timeout or a dead actor is a TrainerError naming ``what``; a
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
        raise WorkerLostError(f"a {workers[:-1]} died during '{what}': {e}") from e


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


LOCAL_START_ATTEMPTS = 2
"""Tries to start a local Ray instance: its node's start-up can time out on a loaded machine."""


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
            for attempt in range(LOCAL_START_ATTEMPTS):
                try:
                    ray.init(
                        address="local",
                        num_cpus=num_cpus,
                        include_dashboard=False,
                        _node_ip_address="127.0.0.1",
                        log_to_driver=True,
                        configure_logging=False,
                    )
                    break
                except Exception as e:  # Ray raises a bare Exception when its node times out starting
                    ray.shutdown()
                    if attempt + 1 == LOCAL_START_ATTEMPTS:
                        raise RuntimeError(str(e)) from e
                    logger.warning("local Ray did not start (%s); starting it again", e)
        else:
            ray.init(address=address, include_dashboard=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"cluster at '{address}'" if address else "a local Ray instance"
        raise RayClusterError(
            f"could not start or reach {where}: {e}. For a cluster check `ray status` on its head node; "
            "locally, `ray stop` clears leftovers of a crashed run"
        ) from e


def cpus_per_worker(num_workers: int) -> float:
    """CPUs each worker actor asks for: 1, or a share of the cluster when it has fewer CPUs than workers.

    Without this, a Ray instance started earlier in the process with fewer CPUs (``init_ray`` is a no-op
    then), or a small cluster, could never place every actor and the backend would wait until its timeout.
    """
    import ray

    total = float(ray.cluster_resources().get("CPU", 0.0))
    return 1.0 if total >= num_workers or total <= 0 else total / num_workers


def make_backend(
    worker_cls: type,
    factory: EnvFactory,
    *,
    backend: str,
    num_workers: int,
    num_envs: int,
    seed: int,
    address: str | None,
    learner_cpus: int = 0,
    workers: str = "rollout workers",
) -> SerialBackend | RayBackend:
    """The backend for ``backend`` ("auto": serial for one local worker, Ray otherwise).

    ``learner_cpus``: CPUs a local Ray instance keeps for the learner besides one per worker (a streaming
    learner runs while every worker collects)."""
    if not use_ray(backend, num_workers, address):
        return SerialBackend(worker_cls, factory, num_workers, num_envs, seed)
    init_ray(address, num_cpus=max(num_workers + learner_cpus, os.cpu_count() or 1))
    return RayBackend(
        worker_cls,
        factory,
        num_workers,
        num_envs,
        seed,
        cpus_per_worker=cpus_per_worker(num_workers),
        workers=workers,
    )
