"""``train(config)``: MAPPO on any game behind the bridge or any PettingZoo ParallelEnv.

One iteration: the pool's workers each step their environments ``time_horizon`` times with the current
weights (sent once per iteration), returning one batch per policy with advantages computed per trajectory;
the learner (this process, on CUDA when available and ``device`` allows) updates each policy (its
normalisers move after its gradient steps). Every ``summary_freq`` env steps a metrics line goes to
metrics.jsonl, TensorBoard and the ``on_summary`` callback; every ``checkpoint_interval`` env steps, and when
the run ends (step budget, time budget, or SIGINT / :meth:`threading.Event.set` on ``stop``), a checkpoint is
written. The time budget (``max_seconds``) holds inside an iteration: collection stops stepping and the
update stops starting minibatches once it is spent, and that iteration still writes its metrics line and
checkpoint. Between metrics lines a progress line is logged at least every 10 s (:mod:`.progress`). ``resume``
restores step counters, policies, optimisers, normalisers and random generators from the latest checkpoint
(README, "Training", lists what is and is not restored). The iteration that ends the run always writes a
metrics line. Policies of behaviours that appear after reset are created when a worker first meets them
(``_adopt_late_policies``) and are checkpointed and resumed like the others.
"""

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

from unimarl.trainers.batch import PolicySpec
from unimarl.trainers.config import TrainConfig, config_to_dict, validate
from unimarl.trainers.envs import EnvFactory, make_sim_build
from unimarl.trainers.errors import ConfigError, ResumeError
from unimarl.trainers.hotswap import HotSwap
from unimarl.trainers.mappo import MAPPOPolicy
from unimarl.trainers.policy_export import export_policies
from unimarl.trainers.pool import make_pool
from unimarl.trainers.progress import Heartbeat
from unimarl.trainers.rollout_plan import (
    PolicySetup,
    RolloutResult,
    WorkerPlan,
    late_policy_seed,
    policy_setup,
)
from unimarl.trainers.run_dir import RunDir
from unimarl.trainers.teams import concat_batches

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
class _Counters:
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


def _plan(config: TrainConfig, specs: dict[str, PolicySpec]) -> WorkerPlan:
    """One policy per behaviour unless mapped; behaviours sharing a policy must share a spec."""
    behavior_policy = {b: config.policy_of(b) for b in specs}
    setups: dict[str, PolicySetup] = {}
    for behavior, policy in behavior_policy.items():
        settings = config.behaviors.get(policy) or config.behavior_settings(behavior)
        setup = PolicySetup(specs[behavior], settings.hyperparameters, settings.network_settings)
        if policy in setups and setups[policy].spec != setup.spec:
            raise ConfigError(
                f"policy_mapping maps behaviours with different observation/action specs to "
                f"policy '{policy}' ({setups[policy].spec} vs {setup.spec} for '{behavior}'); "
                "map them to separate policies"
            )
        setups.setdefault(policy, setup)
    weights = {b: config.behavior_settings(b).group_reward_weight for b in specs}
    return WorkerPlan(setups, behavior_policy, weights, config)  # config: for behaviours met later


def _late_policy(config: TrainConfig, name: str, setup: PolicySetup, device: str) -> MAPPOPolicy:
    logger.info("policy '%s' created for a behaviour that appeared after reset", name)
    seed = late_policy_seed(config.run.seed, name)  # the initial weights the workers act with
    return MAPPOPolicy(setup.spec, setup.hyperparameters, setup.network, device=device, seed=seed)


def _adopt_late_policies(
    results: list[RolloutResult],
    policies: dict[str, MAPPOPolicy],
    plan: WorkerPlan,
    config: TrainConfig,
    device: str,
) -> None:
    """The learner's copy of every policy that workers created for behaviours appearing after reset."""
    for r in results:
        plan.behavior_policy.update(r.new_behaviors)
        for name, setup in r.new_policies.items():
            if name not in policies:
                policies[name] = _late_policy(config, name, setup, device)


def _adopt_late_layouts(results: list[RolloutResult], plan: WorkerPlan, layouts: dict[str, str]) -> bool:
    """Add the visual layouts of behaviours that appeared after reset to ``layouts`` (policy -> layout);
    returns whether any was added."""
    found = {b: layout for r in results for b, layout in r.new_layouts.items()}
    per_policy = _policy_layouts(found, plan.behavior_policy)
    added = {policy: layout for policy, layout in per_policy.items() if policy not in layouts}
    layouts.update(added)
    return bool(added)


def _schedule(config: TrainConfig, behaviors: list[str]) -> dict[str, int]:
    settings = [config.behavior_settings(b) for b in behaviors]
    return {
        "max_steps": config.run.max_steps or max(s.max_steps for s in settings),
        "time_horizon": max(s.time_horizon for s in settings),
        "summary_freq": min(s.summary_freq for s in settings),
        "checkpoint_interval": min(s.checkpoint_interval for s in settings),
    }


def _env_factory(config: TrainConfig, run: RunDir) -> EnvFactory:
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
        env, config.engine_settings, dict(config.environment_parameters), str(run.path.resolve()), build
    )


class _Stop:
    """SIGINT (in the main thread) or an external event asks the loop to stop after the current iteration."""

    def __init__(self, event: threading.Event | None) -> None:
        self.event = event or threading.Event()
        self._previous: Any = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        logger.warning(
            "interrupt received: finishing the iteration and writing a checkpoint (again to abort)"
        )
        self.event.set()

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _ending(stopper: _Stop, max_seconds: float | None, session_s: float, steps_done: bool) -> str:
    """Why the run ends after this iteration ("interrupt", "max_seconds", "max_steps"), or "" to go on."""
    if stopper.event.is_set():
        return "interrupt"
    if max_seconds is not None and session_s >= max_seconds:
        return "max_seconds"
    return "max_steps" if steps_done else ""


def start_run(config: TrainConfig, stop: threading.Event | None) -> tuple[RunDir, str, _Stop]:
    """Checked config, run folder (config written), device and stop handling of a run."""
    validate(config)
    run = RunDir(config.run.results_dir, config.run.run_id, config.run.resume)
    run.write_config(config_to_dict(config))
    return run, resolve_device(config.run.device), _Stop(stop)


def pool_options(config: TrainConfig) -> dict[str, Any]:
    """Keyword arguments of ``make_pool`` / ``make_mf_pool`` besides the env factory."""
    r = config.run
    return dict(
        backend=r.backend,
        num_workers=r.num_workers,
        num_envs=config.env.envs_per_worker,
        seed=r.seed,
        address=r.address,
    )


class Cadence:
    """What the MAPPO and mean-field loops share after each iteration: the wall clock, a metrics line every
    ``summary_freq`` env steps and on the iteration that ends the run, a checkpoint every
    ``checkpoint_interval`` env steps and at the end."""

    def __init__(
        self,
        run: RunDir,
        c: _Counters,
        sched: dict[str, int],
        max_seconds: float | None,
        on_summary: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        self.run, self.c, self.sched, self.max_seconds, self.on_summary = (
            run,
            c,
            sched,
            max_seconds,
            on_summary,
        )
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
        """The ``time.perf_counter()`` at which this session's time budget ends (None: no budget)."""
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
        line = _metrics_line(c, self.acc, self.since, self.sched, self.max_seconds, self.session_s)
        line.update(extra())
        self.run.append_metrics(line)
        _tensorboard(self.run, line, policy_of)
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


def _summarise(results: list[RolloutResult], acc: dict[str, list[float]]) -> None:
    for r in results:
        for behavior, returns in r.episode_returns.items():
            acc[f"return/{behavior}"].extend(returns)
            acc[f"episode_length/{behavior}"].extend(r.episode_lengths[behavior])
        for name, seconds in r.timers.items():
            acc[f"timers/{name}"].append(seconds)


def _checkpoint(
    run: RunDir,
    policies: dict[str, MAPPOPolicy],
    c: _Counters,
    layouts: dict[str, str] | None = None,
    behavior_policy: dict[str, str] | None = None,
) -> None:
    run.save_checkpoint(
        {
            "behavior_policy": dict(behavior_policy or {}),
            "counters": {
                "env_steps": c.env_steps,
                "agent_steps": c.agent_steps,
                "iterations": c.iterations,
                "wall_s": c.wall_s,
            },
            "policies": {name: p.state_dict() for name, p in policies.items()},
            "torch_rng": torch.get_rng_state(),
        },
        c.env_steps,
    )
    export_policies(run.path, policies, c.env_steps, layouts)  # results/RUN_ID/onnx/ (policy_export)


def _policy_layouts(behavior_layouts: dict[str, str], behavior_policy: dict[str, str]) -> dict[str, str]:
    """Visual layout per policy, from the layouts of the behaviours it drives."""
    return {behavior_policy[b]: layout for b, layout in behavior_layouts.items() if b in behavior_policy}


def _behavior_of(policy: str, config: TrainConfig, saved: dict[str, str]) -> str:
    """A behaviour that ``policy`` acts for: from the checkpoint's mapping, else from ``policy_mapping``, else
    the policy's own name (unmapped behaviours get a policy of their name)."""
    for mapping in (saved, config.policy_mapping):
        for behavior, name in sorted(mapping.items()):
            if name == policy:
                return behavior
    return policy


def _resume(run: RunDir, policies: dict[str, MAPPOPolicy], config: TrainConfig, device: str) -> _Counters:
    state = run.load_latest()
    saved = state.get("behavior_policy", {})  # absent in checkpoints written before it was recorded
    for name in set(state["policies"]) - set(policies):  # policies of behaviours that appeared late
        spec = MAPPOPolicy.spec_from_state(state["policies"][name])
        behavior = _behavior_of(name, config, saved)
        policies[name] = _late_policy(config, name, policy_setup(config, behavior, spec)[1], device)
    if set(state["policies"]) != set(policies):
        raise ResumeError(
            f"checkpoint holds policies {sorted(state['policies'])}, this config makes {sorted(policies)}; "
            "resume with the config of the original run"
        )
    for name, policy in policies.items():
        policy.load_state_dict(state["policies"][name])
    torch.set_rng_state(state["torch_rng"])
    return _Counters(**state["counters"])


def _metrics_line(
    c: _Counters,
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


def _tensorboard(run: RunDir, line: dict[str, Any], policy_of: dict[str, str]) -> None:
    step = line["env_steps"]
    per_policy: dict[str, dict[str, float]] = defaultdict(dict)
    for key, value in line.items():
        head, _, owner = key.rpartition("/")
        if key.startswith("return/") and owner in policy_of:
            per_policy[policy_of[owner]]["Environment/Cumulative Reward"] = value
        elif key.startswith("episode_length/") and owner in policy_of:
            per_policy[policy_of[owner]]["Environment/Episode Length"] = value
        elif head.startswith(("Losses/", "Policy/")):
            per_policy[owner][head] = value
    for policy, values in per_policy.items():
        run.scalars(policy, values, step)
    run.scalars(
        "run",
        {
            "Throughput/Env Steps per s": line["env_steps_per_s"],
            "Throughput/Agent Steps per s": line["agent_steps_per_s"],
            **{f"Timers/{k[7:]}": v for k, v in line.items() if k.startswith("timers/")},
        },
        step,
    )


def train(
    config: TrainConfig,
    on_summary: Callable[[dict[str, Any]], None] | None = None,
    stop: threading.Event | None = None,
) -> TrainResult:
    """Run training as configured; see the module docstring."""
    if any(b.trainer_type in ("mfq", "mfac") for b in config.behaviors.values()):
        from unimarl.trainers.mf_train import train_mean_field  # imports this module: import here

        return train_mean_field(config, on_summary, stop)
    run, device, stopper = start_run(config, stop)
    pool = None
    heartbeat: Heartbeat | None = None
    try:
        pool = make_pool(_env_factory(config, run), **pool_options(config))
        specs = pool.specs()
        plan = _plan(config, specs)
        pool.configure(plan)
        sched = _schedule(config, list(specs))
        policies = {
            name: MAPPOPolicy(s.spec, s.hyperparameters, s.network, device=device, seed=config.run.seed + i)
            for i, (name, s) in enumerate(sorted(plan.policies.items()))
        }
        c = _resume(run, policies, config, device) if config.run.resume else _Counters()
        layouts = _policy_layouts(pool.visual_layouts(), plan.behavior_policy)
        hotswap = HotSwap(pool, run.path, plan.behavior_policy, config.hotswap.every, layouts)
        logger.info(
            "training %s on %s (%s workers x %s envs, device %s): %s",
            sorted(policies),
            config.env.kind,
            config.run.num_workers,
            config.env.envs_per_worker,
            device,
            sched,
        )
        cadence = Cadence(run, c, sched, config.run.max_seconds, on_summary)
        heartbeat = cadence.heartbeat = Heartbeat(max_seconds=config.run.max_seconds)
        acc = cadence.acc
        stopped_by = "max_steps"
        while c.env_steps < sched["max_steps"]:
            heartbeat.phase("collecting", c.iterations + 1, c.env_steps)
            weights = {n: p.get_weights() for n, p in policies.items()}
            results = pool.collect(weights, sched["time_horizon"], cadence.seconds_left())
            heartbeat.phase("updating", c.iterations + 1, c.env_steps)
            _adopt_late_policies(results, policies, plan, config, device)
            hotswap.behavior_policy.update(plan.behavior_policy)  # late behaviours are pushed too
            if _adopt_late_layouts(results, plan, layouts):
                hotswap.visual_layouts.update(layouts)
            t_learn = time.perf_counter()
            for name, policy in policies.items():
                batches = [r.batches[name] for r in results if name in r.batches]
                if not batches:
                    continue
                batch = concat_batches(batches)
                for key, value in policy.update(batch, cadence.deadline()).items():
                    acc[f"{key}/{name}"].append(value)
            acc["timers/learn_s"].append(time.perf_counter() - t_learn)
            _summarise(results, acc)
            c.env_steps += sum(r.env_steps for r in results)
            c.agent_steps += sum(r.agent_steps for r in results)
            c.iterations += 1
            hotswap.after_iteration(c.iterations, policies, c.env_steps)
            session_s = cadence.clock()
            ending = _ending(stopper, config.run.max_seconds, session_s, c.env_steps >= sched["max_steps"])
            cadence.report(ending, plan.behavior_policy, hotswap.metrics)  # the last iteration always reports
            cadence.checkpoint(lambda: _checkpoint(run, policies, c, layouts, plan.behavior_policy))
            if ending:
                stopped_by = ending
                break
        return cadence.finish(
            stopped_by, lambda: _checkpoint(run, policies, c, layouts, plan.behavior_policy)
        )
    finally:
        if heartbeat is not None:
            heartbeat.close()
        stopper.restore()
        if pool is not None:
            pool.close()
        run.close()
