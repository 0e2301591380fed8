"""The rollout backend: one interface for serial and Ray workers, synchronous and streaming collection."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from unimarl.trainers.collect.backend import Collector, Fresh, RayBackend, SerialBackend, init_ray
from unimarl.trainers.core.errors import TrainerError


class Echo:
    """A worker without games: ``collect`` echoes its arguments and who ran it."""

    def __init__(self, factory: Any, num_envs: int, worker_index: int = 0, seed: int = 0) -> None:
        self.index, self.calls = worker_index, 0
        self.closed = False
        self.plan: Any = None

    def configure(self, plan: Any) -> None:
        self.plan = plan

    def collect(self, *args: Any) -> tuple[int, int, tuple[Any, ...]]:
        self.calls += 1
        if args and args[0] == "sleep":
            time.sleep(float(args[1]))
        if args and args[0] == "die" and self.index in args[1]:
            os._exit(1)  # the worker's process is killed
        return self.index, self.calls, args

    def configured(self) -> Any:
        return self.plan

    def push_policy(self, behavior: str, version: int, model: bytes) -> int:
        return 2  # two games

    def policy_status(self) -> list[dict[str, Any]]:
        return [{"b": self.index}]

    def node(self) -> str:
        return "here"

    def close(self) -> None:
        self.closed = True


def test_serial_gather_evaluates_fresh_arguments_per_worker() -> None:
    backend = SerialBackend(Echo, None, num_workers=3, num_envs=1)
    left = iter([3.0, 2.0, 1.0])
    results = Collector(backend, seconds_left=lambda: next(left)).gather({"w": 1}, 8)
    # the time budget is read as each worker starts, so it shrinks from one worker to the next
    assert results == [(0, 1, ({"w": 1}, 8, 3.0)), (1, 1, ({"w": 1}, 8, 2.0)), (2, 1, ({"w": 1}, 8, 1.0))]
    assert backend.push_policy("b", 1, b"onnx") == 6
    assert backend.policy_status() == [{"b": 0}, {"b": 1}, {"b": 2}]
    workers = list(backend.workers)
    backend.close()
    assert all(w.closed for w in workers)


def test_serial_streaming_runs_one_worker_per_poll_with_the_newest_arguments() -> None:
    backend = SerialBackend(Echo, None, num_workers=2, num_envs=1)
    collector = Collector(backend)
    collector.stream("weights-1")
    assert collector.version == 1
    assert collector.poll(1.0) == [(0, 1, ("weights-1", 1, None))]
    collector.stream("weights-2")  # worker 1's queued call has not started: it takes the newest arguments
    assert collector.poll(1.0) == [(1, 1, ("weights-2", 2, None))]
    assert collector.poll(1.0) == [(0, 2, ("weights-2", 2, None))]  # each finished worker was resubmitted
    backend.close()


def test_fresh_arguments_can_spread() -> None:
    backend = SerialBackend(Echo, None, num_workers=1, num_envs=1)
    assert backend.call("collect", Fresh(lambda: (1, 2), spread=True), Fresh(lambda: 3)) == [
        (0, 1, (1, 2, 3))
    ]


def test_a_worker_that_fails_to_start_closes_those_started() -> None:
    made: list[Any] = []

    class Fails(Echo):
        def __init__(self, factory: Any, num_envs: int, worker_index: int = 0, seed: int = 0) -> None:
            if worker_index == 1:
                raise RuntimeError("no game")
            super().__init__(factory, num_envs, worker_index, seed)
            made.append(self)

    with pytest.raises(RuntimeError, match="no game"):
        SerialBackend(Fails, None, num_workers=2, num_envs=1)
    assert [w.closed for w in made] == [True]


def test_ray_streaming_takes_what_is_ready_and_names_a_stall() -> None:
    init_ray(None, num_cpus=2)
    backend = RayBackend(Echo, None, num_workers=2, num_envs=1, timeout_s=3.0, cpus_per_worker=0.5)
    try:
        assert backend.nodes() == ["here", "here"]
        backend.submit(0, "collect", "sleep", 0.0)
        backend.submit(1, "collect", "sleep", 30.0)
        first = backend.poll(timeout=20.0)
        assert [index for index, _ in first] == [0]  # the slow worker is still collecting
        with pytest.raises(TrainerError, match="no rollout worker delivered for 3 s"):
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                assert backend.poll(timeout=0.5) == []
    finally:
        backend.close()


def test_ray_replaces_a_dead_worker_and_goes_on_with_those_that_answered() -> None:
    init_ray(None, num_cpus=2)
    backend = RayBackend(Echo, None, num_workers=2, num_envs=1, timeout_s=60.0, cpus_per_worker=0.5)
    try:
        backend.setup("configure", "plan-1")
        assert backend.call("collect", "die", [1]) == [(0, 1, ("die", [1]))]  # worker 1 lost this round
        assert backend.restarts == [0, 1]
        assert backend.call("configured") == ["plan-1", "plan-1"]  # the replacement was set up again
        assert [r[:2] for r in backend.call("collect", "ok")] == [(0, 2), (1, 1)]
        # streaming: the dead worker's call is resubmitted to its replacement, which dies again; the limit
        backend.max_restarts = 2
        backend.submit(0, "collect", "ok")
        backend.submit(1, "collect", "die", [1])
        got: list[Any] = []
        with pytest.raises(TrainerError, match="worker 1 died 3 times"):
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                got.extend(backend.poll(timeout=1.0))
        assert [index for index, _ in got] == [0]
        assert backend.restarts == [0, 2]
    finally:
        backend.close()


def test_a_local_ray_that_times_out_starting_is_started_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray raises a bare Exception when its node times out during start-up (seen on a loaded 2-core machine):
    one more try, then a RayClusterError that says what to do."""
    import ray

    from unimarl.trainers.collect import backend as backend_module

    calls: list[str] = []

    def flaky_init(**kwargs: Any) -> None:
        calls.append("init")
        if len(calls) == 1:
            raise Exception("The current node timed out during startup.")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", flaky_init)
    monkeypatch.setattr(ray, "shutdown", lambda: calls.append("shutdown"))
    backend_module.init_ray(None, num_cpus=1)
    assert calls == ["init", "shutdown", "init"]
    calls.clear()
    monkeypatch.setattr(ray, "init", lambda **kwargs: (_ for _ in ()).throw(Exception("timed out")))
    with pytest.raises(backend_module.RayClusterError, match=r"timed out.*ray stop"):
        backend_module.init_ray(None, num_cpus=1)
