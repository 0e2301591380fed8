"""Soak: a MAPPO rollout worker through many episodes, killed and hung games and hot-swaps, checked for leaks.

One :class:`~unimarl.trainers.algos.mappo.rollout.RolloutWorker` steps 2 coop_nav sim games (3 agents,
25-step episodes, so episodes end and restart on their own) with small networks. Each round collects
``--horizon`` steps per game. Every ``--push-every`` rounds the policies' weights move a little and are
exported to ONNX (:func:`~unimarl.trainers.export.policies.export_policies`) and pushed to the games. Every
``--kill-every`` rounds game 1 gets SIGKILL; every ``--hang-every`` rounds it gets SIGSTOP instead, so it
stops answering for the env's ``timeout_s`` (``--hang-timeout``). The environment runner relaunches both
kinds. Game 0 is never touched: what grows with a game's age (names, stats kept per episode) shows in
the figures.

This process's resources are read at the start, after ``--warmup`` rounds, at ``--points`` points in between,
at the end and after ``worker.close()``: RSS and threads (``/proc/self/status``; Python's own threads from
``threading``), open file descriptors (``/proc/self/fd``), child processes (``/proc/*/stat`` whose parent is
this process) and the zombies among them, and the memory blocks Python's allocator holds
(``sys.getallocatedblocks``: a slow leak of small objects shows there long before it shows in RSS). Growth is
the end minus the after-warm-up figure. The run fails (exit 1, the metric named) when RSS grows by more than
``--rss-tolerance`` or Python's blocks by more than ``--blocks-tolerance``, when fds, threads or children grow
by more than ``--count-tolerance``, when a zombie is left, when a game that was killed or stopped was not
relaunched, or when ``close()`` leaves a child behind.

    .venv/bin/python benchmarks/soak_training.py [--rounds 600 | --minutes 3.5] [--json soak.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unimarl.trainers.algos.mappo.plan import PolicySetup, WorkerPlan
from unimarl.trainers.algos.mappo.policy import MAPPOHyperparameters, MAPPOPolicy, NetworkSettings
from unimarl.trainers.algos.mappo.rollout import RolloutWorker
from unimarl.trainers.core.config import EnvSettings
from unimarl.trainers.envs.factory import EnvFactory, make_sim_build
from unimarl.trainers.export.policies import export_policies

METRICS = ("rss_mib", "python_threads", "os_threads", "open_fds", "children", "zombies", "py_blocks")
COUNTED = ("python_threads", "os_threads", "open_fds", "children")
"""Metrics that may grow by at most the count tolerance."""


@dataclass(frozen=True)
class SoakPlan:
    """How long the soak runs and what it does to the games."""

    rounds: int = 600
    minutes: float | None = None
    """Run for this long instead (``rounds`` ignored; the points between are then spaced in time)."""
    warmup: int = 10
    horizon: int = 32
    push_every: int = 3
    kill_every: int = 5
    hang_every: int = 150
    """0: never stop a game."""
    hang_timeout_s: float = 5.0
    points: int = 4
    num_envs: int = 2
    """At least 2: game 0 lives through the run, game 1 is killed and stopped."""
    hidden: int = 16


@dataclass
class Soak:
    """What a soak run did and measured."""

    rounds: int = 0
    env_steps: int = 0
    episodes: int = 0
    pushes: int = 0
    kills: int = 0
    hangs: int = 0
    restarts: dict[str, int] = field(default_factory=dict)
    samples: list[tuple[str, dict[str, float]]] = field(default_factory=list)
    """(label, figures) in time order: start, warm-up, round N..., end, closed."""
    seconds: float = 0.0

    def figures(self, label: str) -> dict[str, float]:
        return next(f for name, f in self.samples if name == label)


# -- measuring --------------------------------------------------------------------------------------------
def _status_field(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {name} line (this script needs Linux)")


def children() -> dict[int, str]:
    """Child processes of this process: pid -> state letter (``Z`` for a zombie)."""
    me, found = str(os.getpid()), {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:  # gone meanwhile
                continue
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            if ppid == me:
                found[int(entry)] = state
    return found


def measure() -> dict[str, float]:
    """This process's resources now."""
    kids = children()
    return {
        "rss_mib": _status_field("VmRSS") / 1024,
        "python_threads": threading.active_count(),
        "os_threads": _status_field("Threads"),
        "open_fds": len(os.listdir("/proc/self/fd")),
        "children": len(kids),
        "zombies": sum(state == "Z" for state in kids.values()),
        "py_blocks": sys.getallocatedblocks(),
    }


# -- the run ----------------------------------------------------------------------------------------------
def make_worker(run_dir: Path, plan: SoakPlan) -> tuple[RolloutWorker, dict[str, MAPPOPolicy]]:
    """A configured worker on coop_nav sim games with unbounded relaunches, and one policy per behaviour."""
    settings = EnvSettings(
        sim="coop_nav", max_lifetime_restarts=-1, restarts_rate_limit_n=-1, timeout_s=plan.hang_timeout_s
    )
    factory = EnvFactory(settings, run_dir=str(run_dir), build_path=str(make_sim_build(settings, run_dir)))
    worker = RolloutWorker(factory, num_envs=plan.num_envs)
    try:
        specs = worker.specs()
        network = NetworkSettings(hidden_units=plan.hidden, num_layers=1)
        setups = {b: PolicySetup(s, MAPPOHyperparameters(), network) for b, s in specs.items()}
        worker.configure(WorkerPlan(setups, {b: b for b in specs}, {b: 1.0 for b in specs}))
    except BaseException:
        worker.close()
        raise
    return worker, {b: MAPPOPolicy(s.spec, s.hyperparameters, s.network) for b, s in setups.items()}


def _inject(worker: RolloutWorker, plan: SoakPlan, r: int, done: Soak) -> None:
    """Before round ``r``: SIGSTOP or SIGKILL game 1 when one is due."""
    if r <= plan.warmup:
        return
    if plan.hang_every and r % plan.hang_every == plan.hang_every // 2:
        sig = signal.SIGSTOP
        done.hangs += 1
    elif r % plan.kill_every == 0:
        sig = signal.SIGKILL
        done.kills += 1
    else:
        return
    os.kill(worker.runner.envs[1].connection.process.pid, sig)


def _push(
    worker: RolloutWorker, policies: dict[str, MAPPOPolicy], run_dir: Path, version: int, done: Soak
) -> dict[str, dict[str, np.ndarray]]:
    """Move every actor's weights a little (a stand-in for learning), export and push them; returns the new
    weights."""
    rng = np.random.default_rng(version)
    for policy in policies.values():
        for parameter in policy.actor.parameters():
            parameter.data.add_(0.01 * float(rng.standard_normal()))
    for exported in export_policies(run_dir, policies, done.env_steps):
        worker.push_policy(exported.policy, version, exported.path.read_bytes())
        done.pushes += 1
    return {b: p.get_weights() for b, p in policies.items()}


def soak(run_dir: Path, plan: SoakPlan, progress: Callable[[str], None] = lambda line: None) -> Soak:
    """Run the soak (see the module docstring)."""
    done = Soak()
    done.samples.append(("start", measure()))
    started = time.monotonic()
    worker, policies = make_worker(run_dir, plan)
    try:
        weights = {b: p.get_weights() for b, p in policies.items()}
        next_point, gap = float("inf"), 0.0
        while not _finished(plan, done.rounds, time.monotonic() - started):
            r = done.rounds
            _inject(worker, plan, r, done)
            result = worker.collect(weights, plan.horizon)
            done.env_steps += result.env_steps
            done.episodes += sum(len(v) for v in result.episode_returns.values())
            for reason, n in result.game_restarts.items():
                done.restarts[reason] = done.restarts.get(reason, 0) + n
            if r % plan.push_every == 0:
                weights = _push(worker, policies, run_dir, r + 1, done)
            done.rounds = r = r + 1
            clock = r if plan.minutes is None else time.monotonic() - started
            if r == plan.warmup:
                done.samples.append(("warm-up", measure()))
                length = plan.rounds if plan.minutes is None else 60 * plan.minutes
                gap = max(1.0, length - clock) / (plan.points + 1)
                next_point = clock + gap
                progress(f"warm-up done after {r} rounds ({time.monotonic() - started:.0f} s)")
            elif clock >= next_point and not _finished(plan, r, time.monotonic() - started):
                done.samples.append((f"round {r}", measure()))
                next_point += gap
                progress(
                    f"round {r}: {done.kills} kills, {done.hangs} hangs, {done.pushes} pushes; " + _row(done)
                )
        done.samples.append(("end", measure()))
    finally:
        worker.close()
    done.seconds = time.monotonic() - started
    deadline = time.monotonic() + 5.0  # close() reaps its games; give the kernel a moment to drop them
    while children() and time.monotonic() < deadline:
        time.sleep(0.1)
    done.samples.append(("closed", measure()))
    return done


def _finished(plan: SoakPlan, rounds: int, seconds: float) -> bool:
    if plan.minutes is None:
        return rounds >= plan.rounds
    return rounds > plan.warmup and seconds >= 60 * plan.minutes


def _row(done: Soak) -> str:
    figures = done.samples[-1][1]
    return ", ".join(f"{k} {v:.1f}" if k == "rss_mib" else f"{k} {v:.0f}" for k, v in figures.items())


# -- judging and reporting --------------------------------------------------------------------------------
def verdict(
    done: Soak, rss_tolerance: float = 0.10, blocks_tolerance: float = 0.01, count_tolerance: int = 2
) -> list[str]:
    """What grew or was left behind (empty when nothing did)."""
    warm, end, closed = done.figures("warm-up"), done.figures("end"), done.figures("closed")
    problems = []
    for metric, tolerance in (("rss_mib", rss_tolerance), ("py_blocks", blocks_tolerance)):
        if end[metric] > warm[metric] * (1 + tolerance):
            problems.append(
                f"{metric} grew from {warm[metric]:.1f} to {end[metric]:.1f} (over {100 * tolerance:g}%)"
            )
    for metric in COUNTED:
        if end[metric] > warm[metric] + count_tolerance:
            problems.append(f"{metric} grew from {warm[metric]:.0f} to {end[metric]:.0f}")
    left = [f"{label}: {f['zombies']:.0f}" for label, f in done.samples if f["zombies"]]
    if left:
        problems.append("zombie children (" + ", ".join(left) + ")")
    if closed["children"]:
        problems.append(f"{closed['children']:.0f} child processes left after close()")
    relaunched = sum(done.restarts.values())
    if relaunched < done.kills + done.hangs:
        problems.append(f"{done.kills} games killed and {done.hangs} stopped, but {relaunched} relaunched")
    return problems


def table(done: Soak) -> str:
    """The figures, one row per metric, one column per measurement, and the growth after warm-up."""
    warm, end = done.figures("warm-up"), done.figures("end")
    width = max(10, *(len(label) for label, _ in done.samples)) + 2
    lines = [
        f"{'metric':<16}" + "".join(f"{label:>{width}}" for label, _ in done.samples) + f"{'growth':>18}"
    ]
    for metric in METRICS:
        fmt = "{:.1f}" if metric == "rss_mib" else "{:.0f}"
        growth = end[metric] - warm[metric]
        change = ("{:+.1f}" if metric == "rss_mib" else "{:+.0f}").format(growth)
        if metric in ("rss_mib", "py_blocks") and warm[metric]:
            change += f" ({100 * growth / warm[metric]:+.1f}%)"
        cells = "".join(f"{fmt.format(f[metric]):>{width}}" for _, f in done.samples)
        lines.append(f"{metric:<16}{cells}{change:>18}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = SoakPlan()
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--rounds", type=int, default=default.rounds, help="collect rounds (~3.5 min)")
    length.add_argument("--minutes", type=float, help="run for this long instead of a number of rounds")
    parser.add_argument("--warmup", type=int, default=default.warmup, help="rounds before the baseline")
    parser.add_argument("--horizon", type=int, default=default.horizon, help="steps per game per round")
    parser.add_argument("--push-every", type=int, default=default.push_every, help="rounds between pushes")
    parser.add_argument("--kill-every", type=int, default=default.kill_every, help="rounds between SIGKILLs")
    parser.add_argument("--hang-every", type=int, default=default.hang_every, help="rounds between SIGSTOPs")
    parser.add_argument("--hang-timeout", type=float, default=default.hang_timeout_s, help="env timeout_s")
    parser.add_argument("--points", type=int, default=default.points, help="measurements between warm-up/end")
    parser.add_argument("--rss-tolerance", type=float, default=0.10, help="allowed RSS growth (fraction)")
    parser.add_argument("--blocks-tolerance", type=float, default=0.01, help="allowed py_blocks growth")
    parser.add_argument("--count-tolerance", type=int, default=2, help="allowed fd/thread/child growth")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--verbose", action="store_true", help="log every relaunch")
    args = parser.parse_args()
    if args.minutes is None and args.rounds <= args.warmup:
        parser.error(f"--rounds ({args.rounds}) must exceed --warmup ({args.warmup})")
    if min(args.push_every, args.kill_every, args.points) < 1 or args.hang_every < 0:
        parser.error("--push-every, --kill-every and --points must be >= 1, --hang-every >= 0")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # a relaunch per kill is expected; they are counted below
        for name in ("unimarl.trainers.collect.runner", "unimarl.bridge.launcher"):
            logging.getLogger(name).setLevel(logging.ERROR)
    plan = SoakPlan(
        args.rounds,
        args.minutes,
        args.warmup,
        args.horizon,
        args.push_every,
        args.kill_every,
        args.hang_every,
        args.hang_timeout,
        args.points,
    )
    with tempfile.TemporaryDirectory(prefix="unimarl-soak-") as folder:
        done = soak(Path(folder), plan, progress=lambda line: print(line, flush=True))
    problems = verdict(done, args.rss_tolerance, args.blocks_tolerance, args.count_tolerance)
    print(
        f"\n{done.rounds} rounds in {done.seconds:.0f} s: {done.env_steps} env steps, "
        f"{done.episodes} episodes ended, {done.kills} games killed, {done.hangs} stopped, "
        f"relaunches {done.restarts}, "
        f"{done.pushes} models exported and pushed\n"
    )
    print(table(done))
    print()
    print("\n".join(f"GROWTH: {p}" for p in problems) if problems else "no growth beyond the tolerances")
    if args.json is not None:
        record: dict[str, Any] = {
            "plan": asdict(plan),
            **{k: v for k, v in asdict(done).items() if k != "samples"},
            "samples": [{"label": label, **figures} for label, figures in done.samples],
            "problems": problems,
        }
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
