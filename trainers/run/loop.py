"""What every training run shares: the run folder and device, stop handling (Ctrl-C, an event), budgets and
cadence (metrics lines, TensorBoard, checkpoints), the step counters and the env factory of a config."""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unimarl.trainers.core.config import TrainConfig, config_to_dict, validate
from unimarl.trainers.core.errors import ConfigError
from unimarl.trainers.envs.factory import EnvFactory, make_sim_build
from unimarl.trainers.run.curriculum import current_values
from unimarl.trainers.run.progress import Heartbeat
from unimarl.trainers.run.run_dir import RunDir

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """How a run ended."""

    run_dir: Path
    env_steps: int
    agent_steps: int
    iterations: int
    stopped_by: str
    """"max_steps", "max_seconds" or "interrupt"."""
    wall_s: float = 0.0
    """Seconds spent in the training loop (all sessions of the run), set-up excluded."""
    last_metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class Counters:
    env_steps: int = 0
    agent_steps: int = 0
    iterations: int = 0
    wall_s: float = 0.0


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but torch sees no CUDA device; use --device cpu or auto")
    return device


def schedule(config: TrainConfig, behaviors: list[str]) -> dict[str, int]:
    settings = [config.behavior_settings(b) for b in behaviors]
    return {
        "max_steps": config.run.max_steps or max(s.max_steps for s in settings),
        "time_horizon": max(s.time_horizon for s in settings),
        "summary_freq": min(s.summary_freq for s in settings),
        "checkpoint_interval": min(s.checkpoint_interval for s in settings),
    }


def env_factory(config: TrainConfig, run: RunDir) -> EnvFactory:
    """The run's env recipe; games start with each curriculum in its first lesson (a resumed run then moves
    them to the lesson it reached)."""
    env = config.env
    env.kind  # noqa: B018 - validates that at most one env kind is set
    if env.pettingzoo and env.pettingzoo.partition(":")[0].endswith(".py"):
        module, _, attr = env.pettingzoo.rpartition(":")
        # absolute for Ray workers that may run elsewhere; a copy, so the caller's config stays as given
        env = dataclasses.replace(env, pettingzoo=f"{Path(module).resolve()}:{attr}")
    if env.pettingzoo and config.environment_parameters:
        logger.warning("environment_parameters are sent to Unity/sim games only; ignored for PettingZoo envs")
    build = str(make_sim_build(env, run.path)) if env.sim else None
    return EnvFactory(
        env,
        config.engine_settings,
        current_values(config.environment_parameters),
        str(run.path.resolve()),
        build,
    )


class Stop:
    """SIGINT (Ctrl-C) or SIGTERM (a cluster scheduler's stop), in the main thread, or an external event asks
    the loop to stop: collection stops stepping, learning stops starting minibatches, and the run ends with a
    checkpoint and exported models. The same signal again aborts at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, event: threading.Event | None) -> None:
        self.event = event or threading.Event()
        self._previous: dict[int, Any] = {}
        self.install()

    def install(self) -> None:
        """Take the signals (again: ``ray.init`` installs its own SIGTERM handler in the driver)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in self.SIGNALS:
            previous = signal.signal(signum, self._handle)
            self._previous.setdefault(signum, previous)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        logger.warning(
            "%s received: stopping; a checkpoint and the exported models are written before exit "
            "(send it again to abort)",
            signal.Signals(signum).name,
        )
        self.event.set()

    def restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}


def ending_of(stopper: Stop, max_seconds: float | None, session_s: float, steps_done: bool) -> str:
    """Why the run ends after this iteration ("interrupt", "max_seconds", "max_steps"), or "" to go on."""
    if stopper.event.is_set():
        return "interrupt"
    if max_seconds is not None and session_s >= max_seconds:
        return "max_seconds"
    return "max_steps" if steps_done else ""


def start_run(config: TrainConfig, stop: threading.Event | None) -> tuple[RunDir, str, Stop]:
    """Checked config, run folder (config written), device and stop handling of a run."""
    validate(config)
    keep = max((b.keep_checkpoints for b in config.behaviors.values()), default=5)
    run = RunDir(config.run.results_dir, config.run.run_id, config.run.resume, keep, force=config.run.force)
    run.write_config(config_to_dict(config))
    return run, resolve_device(config.run.device), Stop(stop)


class Cadence:
    """The loop's bookkeeping after each learning round: the wall clock, a metrics line every
    ``summary_freq`` env steps and on the iteration that ends the run, a checkpoint every
    ``checkpoint_interval`` env steps and at the end."""

    def __init__(
        self,
        run: RunDir,
        c: Counters,
        sched: dict[str, int],
        max_seconds: float | None,
        on_summary: Callable[[dict[str, Any]], None] | None,
        stop: threading.Event | None = None,
    ) -> None:
        self.run, self.c, self.sched, self.max_seconds, self.on_summary = (
            run,
            c,
            sched,
            max_seconds,
            on_summary,
        )
        self.stop = stop
        self.start, self.base_wall = time.perf_counter(), c.wall_s
        self.since = (c.env_steps, c.agent_steps, c.wall_s)
        self.next_summary = _next_multiple(c.env_steps, sched["summary_freq"])
        self.next_ckpt = _next_multiple(c.env_steps, sched["checkpoint_interval"])
        self.acc: dict[str, list[float]] = defaultdict(list)
        self.line: dict[str, Any] = {}
        self.session_s = 0.0
        self.heartbeat: Heartbeat | None = None
        """Told when a metrics line is written, so progress lines come only between them."""

    def deadline(self) -> float | None:
        """The ``time.perf_counter()`` at which this session's time budget ends (None: no budget); now, once a
        stop was asked for."""
        if self.stop is not None and self.stop.is_set():
            return time.perf_counter()
        return None if self.max_seconds is None else self.start + self.max_seconds

    def seconds_left(self) -> float | None:
        """Seconds left of this session's time budget (None: no budget; at least 0)."""
        deadline = self.deadline()
        return None if deadline is None else max(deadline - time.perf_counter(), 0.0)

    def clock(self) -> float:
        """Seconds of this session; updates the run's wall time."""
        self.session_s = time.perf_counter() - self.start
        self.c.wall_s = self.base_wall + self.session_s
        return self.session_s

    def report(self, ending: str, policy_of: dict[str, str], extra: Callable[[], dict[str, float]]) -> None:
        """Write the metrics line when due (``extra()`` adds to it)."""
        c = self.c
        if c.env_steps < self.next_summary and not ending:
            return
        line = metrics_line(c, self.acc, self.since, self.sched, self.max_seconds, self.session_s)
        line.update(extra())
        self.run.append_metrics(line)
        tensorboard(self.run, line, policy_of)
        if self.on_summary is not None:
            self.on_summary(line)
        if self.heartbeat is not None:
            self.heartbeat.reported()
        self.acc.clear()
        self.line = line
        self.since = (c.env_steps, c.agent_steps, c.wall_s)
        self.next_summary = _next_multiple(c.env_steps, self.sched["summary_freq"])

    def checkpoint(self, save: Callable[[], None]) -> None:
        """``save()`` when a checkpoint is due."""
        if self.c.env_steps >= self.next_ckpt:
            save()
            self.next_ckpt = _next_multiple(self.c.env_steps, self.sched["checkpoint_interval"])

    def finish(self, stopped_by: str, save: Callable[[], None]) -> TrainResult:
        """The final checkpoint (unless this step has one) and the run's result."""
        c, run = self.c, self.run
        if run.latest_checkpoint() != run.checkpoints / f"checkpoint-{c.env_steps}.pt":
            save()
        logger.info("run ended (%s) at %d env steps; results in %s", stopped_by, c.env_steps, run.path)
        return TrainResult(
            run.path, c.env_steps, c.agent_steps, c.iterations, stopped_by, c.wall_s, self.line
        )


def _next_multiple(steps: int, every: int) -> int:
    return (steps // every + 1) * every


def metrics_line(
    c: Counters,
    acc: dict[str, list[float]],
    since: tuple[int, int, float],
    sched: dict[str, int],
    max_seconds: float | None,
    session_s: float,
) -> dict[str, Any]:
    steps0, agent0, t0 = since
    dt = max(c.wall_s - t0, 1e-9)
    line: dict[str, Any] = {
        "iteration": c.iterations,
        "env_steps": c.env_steps,
        "agent_steps": c.agent_steps,
        "wall_s": round(c.wall_s, 3),
        "env_steps_per_s": (c.env_steps - steps0) / dt,
        "agent_steps_per_s": (c.agent_steps - agent0) / dt,
        "max_steps": sched["max_steps"],
    }
    remaining = (sched["max_steps"] - c.env_steps) / max(line["env_steps_per_s"], 1e-9)
    if max_seconds is not None:
        remaining = min(remaining, max_seconds - session_s)
    line["time_left_s"] = max(remaining, 0.0)
    for key, values in sorted(acc.items()):
        line[key] = float(np.mean(values))
    return line


MLAGENTS_TAGS = {
    "Losses/pg_loss": "Losses/Policy Loss",
    "Losses/critic_loss": "Losses/Value Loss",
    "Losses/q_loss": "Losses/Value Loss",
    "Losses/entropy": "Policy/Entropy",
}
"""Mean-field metrics also written under the TensorBoard tag ML-Agents' tooling reads (MAPPO's metrics carry
those names already): MF-AC's policy-gradient and critic losses and entropy, MF-Q's Q-value (TD) loss."""


def tensorboard(run: RunDir, line: dict[str, Any], policy_of: dict[str, str]) -> None:
    """A metrics line as TensorBoard scalars: per policy under ML-Agents' tags (Environment/Cumulative Reward,
    Environment/Episode Length, Losses/..., Policy/...), throughput, timers and counters under ``run``.
    ``selfplay/elo/<policy>`` is the policy's ``Self-play/ELO``; ``lesson/<parameter>`` (a curriculum's
    lesson) goes to every policy as ``Environment/Lesson Number/<parameter>``, as mlagents-learn writes it."""
    step = line["env_steps"]
    per_policy: dict[str, dict[str, float]] = defaultdict(dict)
    for key, value in line.items():
        head, _, owner = key.rpartition("/")
        if key.startswith("return/") and owner in policy_of:
            per_policy[policy_of[owner]]["Environment/Cumulative Reward"] = value
        elif key.startswith("episode_length/") and owner in policy_of:
            per_policy[policy_of[owner]]["Environment/Episode Length"] = value
        elif head == "selfplay/elo":  # self-play between teams (the ghost trainer's tag)
            per_policy[owner]["Self-play/ELO"] = value
        elif head.startswith(("Losses/", "Policy/")):
            per_policy[owner][head] = value
            if head in MLAGENTS_TAGS:
                per_policy[owner][MLAGENTS_TAGS[head]] = value
    lessons = {f"Environment/Lesson Number/{k[7:]}": v for k, v in line.items() if k.startswith("lesson/")}
    for policy in set(policy_of.values()) if lessons else ():
        per_policy[policy].update(lessons)
    for policy, values in per_policy.items():
        run.scalars(policy, values, step)
    run.scalars(
        "run",
        {
            "Throughput/Env Steps per s": line["env_steps_per_s"],
            "Throughput/Agent Steps per s": line["agent_steps_per_s"],
            **{f"Timers/{k[7:]}": v for k, v in line.items() if k.startswith("timers/")},
            # game relaunches, replaced workers, dropped transitions, replay ratio, ...
            **{f"Counters/{k[9:]}": v for k, v in line.items() if k.startswith("counters/")},
        },
        step,
    )
