"""``train(config)``: the one training loop, for every algorithm of the registry (:mod:`.registry`).

The config picks the algorithm (MAPPO, or mean field for ``mfq`` / ``mfac`` behaviours; see
:mod:`unimarl.trainers.algos.base`). Its workers run in a backend (serial in this process, or Ray actors;
:mod:`unimarl.trainers.collect.backend`) and collect either synchronously (on-policy: every worker steps its
environments ``time_horizon`` times with the weights of this iteration, the loop waits for all, then the
algorithm learns) or streaming (off-policy: workers keep collecting chunks; the loop learns from whatever has
arrived and sends new weights when the algorithm says so). The learner runs in this process, on CUDA when
available and ``device`` allows.

Shared by every algorithm: every ``summary_freq`` env steps a metrics line goes to metrics.jsonl, TensorBoard
and the ``on_summary`` callback; every ``checkpoint_interval`` env steps, and when the run ends (step budget,
time budget, or SIGINT / SIGTERM / :meth:`threading.Event.set` on ``stop``), a checkpoint is written and the
policies are exported as ONNX (``results/RUN_ID/onnx/``). Every ``hotswap.every`` learning rounds, or on
request, the exported policies are pushed into the games (:mod:`unimarl.trainers.export.hotswap`). The time
budget (``max_seconds``) holds inside an iteration: collection stops stepping and learning stops starting
minibatches once it is spent, and that iteration still writes its metrics line and checkpoint. Training
progress (the share of whichever budget, ``max_steps`` or ``max_seconds``, is nearer its end) drives
schedules such as MF-Q's temperature. Between metrics lines a progress line is logged at least every 10 s
(:mod:`.progress`). ``resume`` restores step counters, the algorithm's state (policies, optimisers,
normalisers, replay positions, self-play pools) and the random generators from the latest checkpoint (README,
"Training", lists what is and is not restored). The iteration that ends the run always writes a metrics line.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from unimarl.trainers.collect.backend import Collector, make_backend
from unimarl.trainers.core.config import TrainConfig
from unimarl.trainers.core.errors import ResumeError, TrainerError
from unimarl.trainers.export.hotswap import HotSwap
from unimarl.trainers.run.curriculum import Curriculum
from unimarl.trainers.run.loop import (
    Cadence,
    Counters,
    TrainResult,
    ending_of,
    env_factory,
    schedule,
    start_run,
)
from unimarl.trainers.run.progress import Heartbeat
from unimarl.trainers.run.registry import ALGORITHMS, Entry, algorithm_of
from unimarl.trainers.run.run_dir import RunDir, copy_behavior_models, read_latest

logger = logging.getLogger(__name__)


def _save(run: RunDir, entry: Entry, algorithm: Any, c: Counters, curriculum: Curriculum) -> None:
    """A checkpoint of the algorithm and the loop, then the ONNX export of its policies, copied to
    ``<Behavior>.onnx`` in the run folder where ML-Agents users look for them."""
    trained = _pushed(algorithm)
    state = {
        **algorithm.state_dict(),
        "counters": dataclasses.asdict(c),
        "curriculum": curriculum.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "trained_behaviors": trained,  # for `unimarl export`'s <Behavior>.onnx copies
    }
    run.save_checkpoint(state, c.env_steps)
    exported = entry.export(run.path, algorithm, c.env_steps)
    copy_behavior_models(run.path, trained, {e.policy: e.path for e in exported})


def _resume(run: RunDir, algorithm: Any, curriculum: Curriculum) -> Counters:
    state = run.load_latest()
    algorithm.load_state_dict(state)
    curriculum.load_state_dict(state.get("curriculum"))
    torch.set_rng_state(state["torch_rng"])
    return Counters(**state["counters"])


def _next_lessons(
    backend: Any, curriculum: Curriculum, acc: dict[str, list[float]], seen: dict[str, int], progress: float
) -> None:
    """Give the curriculum the episode returns learned since ``seen`` (lengths of ``acc``'s ``return/...``
    lists), move its lessons on at ``progress``, and send the games the new values."""
    for key, values in acc.items():
        if key.startswith("return/"):
            curriculum.episodes_ended(key[len("return/") :], values[seen.get(key, 0) :])
    moved, reset = curriculum.update(progress)
    if moved:
        backend.setup("set_environment_parameters", curriculum.values(), reset)


def _initial_state(config: TrainConfig) -> dict[str, Any] | None:
    """The latest checkpoint of the run ``run.initialize_from`` names (None when unset or resuming); read
    before any game starts, so a wrong run id fails at once."""
    r = config.run
    if r.initialize_from is None:
        return None
    if r.resume:
        logger.warning("--initialize-from is ignored with --resume: run '%s' continues", r.run_id)
        return None
    source = Path(r.results_dir) / r.initialize_from
    try:
        return read_latest(source / "checkpoints")
    except ResumeError as e:
        raise ResumeError(f"cannot initialize from run '{r.initialize_from}' ({source}): {e}") from e


def _initialize(config: TrainConfig, algorithm: Any, state: dict[str, Any]) -> Counters:
    """mlagents-learn's ``--initialize-from``: the algorithm's state (weights, normalisers, optimisers) from
    another run's checkpoint ``state``, with step counters from 0."""
    try:
        algorithm.load_state_dict(state)
    except TrainerError as e:
        raise ResumeError(
            f"cannot initialize from run '{config.run.initialize_from}': {e}; initialize from a run of the "
            "same behaviours, policies and network settings"
        ) from e
    logger.info(
        "initialized the policies from run '%s'; step counters start at 0", config.run.initialize_from
    )
    return Counters()


def _backend_metrics(backend: Any) -> dict[str, float]:
    """``counters/worker_restarts`` once a Ray worker was replaced."""
    restarts = sum(getattr(backend, "restarts", ()))
    return {"counters/worker_restarts": float(restarts)} if restarts else {}


def _pushed(algorithm: Any) -> dict[str, str]:
    """Behaviour -> policy for the behaviours whose policy this run trains (hot-swap pushes those)."""
    return {b: n for b, n in algorithm.behavior_policy.items() if n in algorithm.policies}


def train(
    config: TrainConfig,
    on_summary: Callable[[dict[str, Any]], None] | None = None,
    stop: threading.Event | None = None,
) -> TrainResult:
    """Run training as configured; see the module docstring."""
    run, device, stopper = start_run(config, stop)
    entry = ALGORITHMS[algorithm_of(config)]
    threads = torch.get_num_threads()
    algo_cls: Any = entry.algorithm
    backend = None
    heartbeat: Heartbeat | None = None
    try:
        r = config.run
        initial = _initial_state(config)
        backend = make_backend(
            algo_cls.worker_cls,
            env_factory(config, run),
            backend=r.backend,
            num_workers=r.num_workers,
            num_envs=config.env.envs_per_worker,
            seed=r.seed,
            address=r.address,
            learner_cpus=1 if algo_cls.streaming else 0,
            workers="mean-field rollout workers" if algo_cls.name == "meanfield" else "rollout workers",
        )
        stopper.install()  # after ray.init, which takes SIGTERM in the driver
        if backend.kind == "ray" and r.address is None:
            # the local workers keep their cores busy: a learner with more threads than the cores they
            # leave free slows everything down (measured 10x fewer samples/s with 2 threads on 2 busy cores)
            torch.set_num_threads(max(1, (os.cpu_count() or 1) - r.num_workers))
        specs = backend.call_first("specs")
        layouts = backend.call_first("visual_layouts")
        algorithm = algo_cls(config, specs, layouts, device)
        backend.setup("configure", algorithm.plan())
        if entry.opponents is not None:
            algorithm.opponents = entry.opponents(config, algorithm, run.path)
        sched = schedule(config, algorithm.schedule_behaviors())
        curriculum = Curriculum(config.environment_parameters)
        if r.resume:
            c = _resume(run, algorithm, curriculum)
            if any(curriculum.lessons.values()):  # the games started in the first lessons
                backend.setup("set_environment_parameters", curriculum.values(), True)
        else:
            c = _initialize(config, algorithm, initial) if initial is not None else Counters()
        hotswap = HotSwap(
            backend,
            run.path,
            _pushed(algorithm),
            config.hotswap.every,
            lambda steps: entry.export(run.path, algorithm, steps),
        )
        logger.info(
            "training %s (%s) on %s, %d workers x %d envs (%s), device %s: %s",
            sorted(algorithm.policies),
            algorithm.describe(),
            config.env.kind,
            r.num_workers,
            config.env.envs_per_worker,
            backend.kind,
            device,
            sched,
        )
        cadence = Cadence(run, c, sched, r.max_seconds, on_summary, stopper.event)
        heartbeat = cadence.heartbeat = Heartbeat(max_seconds=r.max_seconds)
        collector = Collector(backend, cadence.seconds_left)  # each collect stops stepping at the budget

        def progress() -> float:
            by_time = (time.perf_counter() - cadence.start) / r.max_seconds if r.max_seconds else 0.0
            return min(max(c.env_steps / sched["max_steps"], by_time), 1.0)

        algorithm.set_progress(progress())
        if algo_cls.streaming:
            collector.stream(*algorithm.collect_args())
        acc = cadence.acc
        stopped_by = "max_steps"
        rounds = 0 if algo_cls.streaming else c.iterations  # learning rounds, for hot-swap's cadence
        game_restarts: dict[str, int] = {}  # games relaunched this session, per reason
        waiting = False  # an empty poll continues the wait (and the progress line's "for S s")
        learning = "learning" if algo_cls.streaming else "updating"
        while c.env_steps < sched["max_steps"]:
            if not waiting:
                heartbeat.phase("collecting", c.iterations + 1, c.env_steps)
            if algo_cls.streaming:
                results = collector.poll(timeout=1.0)
            else:
                results = collector.gather(*algorithm.collect_args())
            waiting = not results
            if results:
                heartbeat.phase(learning, c.iterations + 1, c.env_steps)
            t_learn = time.perf_counter()
            seen = {k: len(v) for k, v in acc.items() if k.startswith("return/")}
            learned = algorithm.learn(results, acc, cadence.deadline())
            c.env_steps += learned.env_steps
            c.agent_steps += learned.agent_steps
            c.iterations += learned.rounds
            for reason, count in learned.game_restarts.items():
                game_restarts[reason] = game_restarts.get(reason, 0) + count
            algorithm.set_progress(progress())
            if curriculum:
                _next_lessons(backend, curriculum, acc, seen, progress())
            if algo_cls.streaming and algorithm.refresh_due(learned):
                collector.stream(*algorithm.collect_args())
            if results:
                rounds += 1
                hotswap.behavior_policy.update(_pushed(algorithm))  # behaviours met after reset too
                hotswap.after_iteration(rounds, c.env_steps)
            acc["timers/learn_s"].append(time.perf_counter() - t_learn)
            session_s = cadence.clock()
            ending = ending_of(stopper, r.max_seconds, session_s, c.env_steps >= sched["max_steps"])
            metrics = lambda: {  # noqa: E731
                **hotswap.metrics(),
                **algorithm.metrics(),
                **curriculum.metrics(),
                **_backend_metrics(backend),
                **{f"counters/game_restarts/{k}": float(v) for k, v in game_restarts.items()},
            }
            cadence.report(ending, algorithm.behavior_policy, metrics)  # the last iteration always reports
            cadence.checkpoint(lambda: _save(run, entry, algorithm, c, curriculum))
            if ending:
                stopped_by = ending
                break
        return cadence.finish(stopped_by, lambda: _save(run, entry, algorithm, c, curriculum))
    finally:
        torch.set_num_threads(threads)
        if heartbeat is not None:
            heartbeat.close()
        stopper.restore()
        if backend is not None:
            backend.close()
        run.close()
