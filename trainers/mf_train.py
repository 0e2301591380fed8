"""``train_mean_field(config)``: MF-Q / MF-AC (and IQL / AC) with asynchronous collection and self-play.

Reached through :func:`unimarl.trainers.train.train` when the behaviours' ``trainer_type`` is ``mfq`` or
``mfac``; writes the same run folder as MAPPO (config.yaml, metrics.jsonl, TensorBoard, checkpoints loadable
with ``torch.load(weights_only=True)``, resume).

Loop: the pool's workers stream chunks of ``push_every`` worker steps (:mod:`unimarl.trainers.mf_pool`).
Whatever has arrived is added to the learners (one ``add`` per worker step) and each learner runs the updates
due (MF-Q: ``gradient_steps`` per ``update_every`` adds; MF-AC: one pass over the chunk; a Ray worker's chunk
may have been collected some weight refreshes ago, ``counters/chunk_age_refreshes``, and MF-AC weights its
policy gradient by truncated importance ratios, :mod:`unimarl.trainers.mfac`). Every ``sync_every`` learner
updates the workers get new weights and the training progress (MF-Q's temperature: the share of whichever
budget, ``max_steps`` or ``max_seconds``, is nearer its end). Self-play (:mod:`unimarl.trainers.selfplay`):
each finished battle is recorded for the learning policy against its opponent (whichever teams they drove:
with ``self_play.sides: both`` they trade teams after every battle); a win refreshes the frozen opponent. With
``self_play.opponent_runs: game`` the games drive the opponent from pushed ONNX snapshots
(:mod:`unimarl.trainers.selfplay_game`) instead of the workers. Every checkpoint (and the
end) also exports the policies the model contract can carry, and every ``hotswap.every`` learner rounds they
are pushed into the games (:mod:`unimarl.trainers.mf_export`). The loop's bookkeeping (run folder, metrics
lines, checkpoint cadence, stop handling) is MAPPO's (:class:`unimarl.trainers.train.Cadence`), and so are the
time budget inside a chunk (each ``collect`` stops stepping at ``max_seconds``) and the progress line at least
every 10 s (:class:`unimarl.trainers.progress.Heartbeat`).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

from unimarl.trainers.batch import PolicySpec
from unimarl.trainers.config import TrainConfig
from unimarl.trainers.errors import ConfigError, ResumeError
from unimarl.trainers.mf_battles import Outcome
from unimarl.trainers.mf_config import (
    MEAN_FIELD_TRAINERS,
    MFLearner,
    check_position_sensor,
    make_learner,
)
from unimarl.trainers.mf_export import MFHotSwap, export_mean_field
from unimarl.trainers.mf_pool import make_mf_pool
from unimarl.trainers.mf_worker import MFChunk, MFPlan, MFPolicySetup
from unimarl.trainers.mfq import MFQLearner
from unimarl.trainers.progress import Heartbeat
from unimarl.trainers.run_dir import RunDir
from unimarl.trainers.selfplay import SnapshotPool
from unimarl.trainers.selfplay_game import GameOpponents, SelfPlayError
from unimarl.trainers.train import (
    Cadence,
    TrainResult,
    _Counters,
    _ending,
    _env_factory,
    _schedule,
    pool_options,
    start_run,
)

logger = logging.getLogger(__name__)

OPPONENT_PREFIX = "opponent:"


@dataclasses.dataclass
class MFSetup:
    """Policies, their acting plan and the self-play pairings of one run."""

    plan: MFPlan
    behavior_policy: dict[str, str]
    self_play: dict[str, tuple[str, str]]
    """Learner policy -> (its behaviour, the opponent behaviour) for self-play policies."""
    in_game: frozenset[str] = frozenset()
    """Self-play policies whose opponent the games run (``opponent_runs: game``)."""


def plan_mean_field(config: TrainConfig, specs: dict[str, PolicySpec]) -> MFSetup:
    """Map behaviours to learning policies and self-play opponents; checks that the mapping is consistent."""
    policies: dict[str, MFPolicySetup] = {}
    actor: dict[str, str] = {}
    self_play: dict[str, tuple[str, str]] = {}
    swap: list[tuple[str, str]] = []
    opponents, in_game = {}, {}
    for behavior in specs:
        sp = config.behavior_settings(behavior).self_play
        if sp is not None and sp.opponent_runs == "game":
            if sp.opponent in specs:
                raise ConfigError(
                    f"self_play.opponent_runs game for '{behavior}': the game reports '{sp.opponent}' to the "
                    "trainer, so its agents take the trainer's actions. Make that team run pushed models in "
                    "the game (Unity: Behavior Type Heuristic Only calling PolicyHotSwap.TryDecide; sim: "
                    f"--inference-behavior '{sp.opponent}') or use opponent_runs: trainer"
                )
            in_game[sp.opponent] = behavior
        elif sp is not None:
            if sp.opponent not in specs:
                raise ConfigError(
                    f"self_play.opponent '{sp.opponent}' of '{behavior}' is not a behaviour of the game; "
                    f"known: {sorted(specs)}"
                )
            opponents[sp.opponent] = behavior
    for behavior, spec in sorted(specs.items()):
        if behavior in opponents:
            continue
        settings = config.behavior_settings(behavior)
        if settings.trainer_type not in MEAN_FIELD_TRAINERS:
            raise ConfigError(
                f"behaviour '{behavior}' uses trainer_type '{settings.trainer_type}', others mfq/mfac; one "
                "run trains one family: give every behaviour mfq or mfac (or make it a self-play opponent)"
            )
        name = config.policy_of(behavior)
        check_position_sensor(spec, settings.mean_field, behavior)
        setup = MFPolicySetup(spec, settings.trainer_type, settings.mean_field)
        if name in policies and policies[name] != setup:
            raise ConfigError(
                f"policy_mapping maps behaviours with different specs or settings to policy '{name}'; "
                "map them to separate policies"
            )
        policies[name] = setup
        actor[behavior] = name
    for opponent, learner_behavior in opponents.items():
        name = actor[learner_behavior]
        if specs[opponent] != specs[learner_behavior]:
            raise ConfigError(f"self-play needs equal specs for '{learner_behavior}' and '{opponent}'")
        policies[OPPONENT_PREFIX + name] = policies[name]
        actor[opponent] = OPPONENT_PREFIX + name
        self_play[name] = (learner_behavior, opponent)
        sp = config.behavior_settings(learner_behavior).self_play
        if sp is not None and sp.sides == "both":
            swap.append((learner_behavior, opponent))
    for opponent, learner_behavior in in_game.items():
        self_play[actor[learner_behavior]] = (learner_behavior, opponent)
    learning = frozenset(n for n in policies if not n.startswith(OPPONENT_PREFIX))
    # behaviours met after reset act with the policy policy_mapping gives them, if it exists (same spec)
    late = {b: n for b, n in config.policy_mapping.items() if b not in specs and n in policies}
    weights = {b: config.behavior_settings(b).group_reward_weight for b in [*specs, *late]}
    plan = MFPlan(
        policies,
        actor,
        learning,
        swap_sides=tuple(swap),
        game_driven=tuple(sorted(in_game)),
        group_reward_weight=weights,
        late_policy=late,
    )
    in_game_policies = frozenset(actor[b] for b in in_game.values())
    return MFSetup(plan, dict(actor), self_play, in_game_policies)


def _weights(
    learners: dict[str, MFLearner], pools: dict[str, SnapshotPool], setup: MFSetup
) -> dict[str, Any]:
    out: dict[str, Any] = {n: lr.get_weights() for n, lr in learners.items()}
    out.update({OPPONENT_PREFIX + n: p.current() for n, p in pools.items() if n not in setup.in_game})
    return out


def _account_outcome(
    o: Outcome,
    setup: MFSetup,
    pools: dict[str, SnapshotPool],
    learners: dict[str, MFLearner],
    acc: dict[str, list[float]],
    game: GameOpponents | None = None,
) -> bool:
    """Battle metrics; self-play refreshes. True when an opponent changed."""
    changed = False
    for b, kills in o.kills.items():
        acc[f"battle/kills/{b}"].append(kills)
        others = [k for ob, k in o.kills.items() if ob != b]
        if others:
            acc[f"battle/win/{b}"].append(
                1.0 if kills > max(others) else 0.5 if kills == max(others) else 0.0
            )
    for name, (mine, theirs) in setup.self_play.items():
        if o.actors:  # the teams learner and opponent drove in this battle (they swap with sides: both)
            side = {actor: b for b, actor in o.actors.items()}
            mine, theirs = side.get(name, mine), side.get(OPPONENT_PREFIX + name, theirs)
        if name in setup.in_game:
            if mine not in o.kills or theirs not in o.kills:
                raise SelfPlayError(
                    f"self_play.opponent_runs game needs the game to report each team's kills as stats "
                    f"(<Game>/kills_team<k>, e.g. via StatsRecorder) for '{mine}' and '{theirs}'; this "
                    f"battle reported kills for {sorted(o.kills)}"
                )
            assert game is not None
            if not game.credited(name, o):
                continue
        if mine in o.kills and theirs in o.kills:
            won = o.kills[mine] > o.kills[theirs]
            acc[f"selfplay/win/{name}"].append(
                1.0 if won else 0.5 if o.kills[mine] == o.kills[theirs] else 0.0
            )
            changed |= pools[name].record(won, learners[name].get_weights())
            acc[f"selfplay/refreshes/{name}"].append(float(pools[name].refreshes))
    return changed


def _ingest(
    chunk: MFChunk, learners: dict[str, MFLearner], acc: dict[str, list[float]], version: int
) -> None:
    """Add a chunk to the learners and run the updates due (``version``: the pool's refreshes so far)."""
    # refreshes between the weights that chose these actions and now (MF-AC corrects for them)
    acc["counters/chunk_age_refreshes"].append(float(version - chunk.weights_version))
    for name, batches in chunk.transitions.items():
        for t in batches:
            learners[name].add(t)
    for name, learner in learners.items():
        for key, value in learner.update().items():
            acc[f"Losses/{key}/{name}"].append(value)
    for behavior, returns in chunk.episode_returns.items():
        acc[f"return/{behavior}"].extend(returns)
    for name, seconds in chunk.timers.items():
        acc[f"timers/{name}"].append(seconds)
    if chunk.dropped:
        acc["counters/dropped_transitions"].append(float(chunk.dropped))


def _checkpoint(
    run: RunDir, learners: dict[str, MFLearner], pools: dict[str, SnapshotPool], setup: MFSetup, c: _Counters
) -> None:
    run.save_checkpoint(
        {
            "counters": dataclasses.asdict(c),
            "policies": {n: lr.state_dict() for n, lr in learners.items()},
            "setups": {
                n: {"trainer_type": s.trainer_type, "hyperparameters": dataclasses.asdict(s.hyperparameters)}
                for n, s in setup.plan.policies.items()
                if n in learners
            },
            "self_play": {n: p.state_dict() for n, p in pools.items()},
            "torch_rng": torch.get_rng_state(),
        },
        c.env_steps,
    )
    export_mean_field(run.path, learners, c.env_steps)  # results/RUN_ID/onnx/ (unimarl.trainers.mf_export)


def _resume(run: RunDir, learners: dict[str, MFLearner], pools: dict[str, SnapshotPool]) -> _Counters:
    state = run.load_latest()
    if set(state["policies"]) != set(learners) or set(state.get("self_play", {})) != set(pools):
        raise ResumeError(
            f"checkpoint holds policies {sorted(state['policies'])}, this config makes {sorted(learners)}; "
            "resume with the config of the original run"
        )
    for name, learner in learners.items():
        learner.load_state_dict(state["policies"][name])
    for name, pool in pools.items():
        pool.load_state_dict(state["self_play"][name])
    torch.set_rng_state(state["torch_rng"])
    return _Counters(**state["counters"])


def train_mean_field(
    config: TrainConfig,
    on_summary: Callable[[dict[str, Any]], None] | None = None,
    stop: threading.Event | None = None,
) -> TrainResult:
    """Run mean-field training as configured; see the module docstring."""
    run, device, stopper = start_run(config, stop)
    pool = None
    heartbeat: Heartbeat | None = None
    try:
        pool = make_mf_pool(_env_factory(config, run), **pool_options(config))
        specs = pool.specs()
        setup = plan_mean_field(config, specs)
        pool.configure(setup.plan)
        sched = _schedule(
            config, [b for b, a in setup.plan.behavior_actor.items() if a in setup.plan.learning]
        )
        learners = {
            n: make_learner(
                s.trainer_type, s.spec, s.hyperparameters, device=device, seed=config.run.seed + i
            )
            for i, (n, s) in enumerate(sorted(setup.plan.policies.items()))
            if n in setup.plan.learning
        }
        pools = {
            n: SnapshotPool(config.behavior_settings(b).self_play, learners[n].get_weights(), config.run.seed)  # type: ignore[arg-type]
            for n, (b, _) in setup.self_play.items()
        }
        c = _resume(run, learners, pools) if config.run.resume else _Counters()
        game = GameOpponents(
            run.path,
            {n: pair for n, pair in setup.self_play.items() if n in setup.in_game},
            setup.plan.policies,
            pools,
            config.run.num_workers,
        )
        hps = [s.hyperparameters for n, s in setup.plan.policies.items() if n in learners]
        push_every = min(hp.push_every for hp in hps)
        sync_every = min(hp.sync_every for hp in hps)
        logger.info(
            "training %s (%s) on %s, %d workers x %d envs, device %s: %s",
            sorted(learners),
            {n: s.trainer_type for n, s in setup.plan.policies.items() if n in learners},
            config.env.kind,
            config.run.num_workers,
            config.env.envs_per_worker,
            device,
            sched,
        )

        started, budget_s = time.perf_counter(), config.run.max_seconds
        reached = max((lr.progress for lr in learners.values() if isinstance(lr, MFQLearner)), default=0.0)

        def progress() -> float:
            """Training progress (MF-Q's temperature schedule): the share of whichever budget, max_steps or
            max_seconds, is nearer its end; it never goes back (a resumed run keeps what it reached)."""
            nonlocal reached
            by_time = (time.perf_counter() - started) / budget_s if budget_s else 0.0
            reached = min(max(reached, c.env_steps / sched["max_steps"], by_time), 1.0)
            return reached

        for learner in learners.values():
            if hasattr(learner, "set_progress"):
                learner.set_progress(progress())
        game.refresh(progress())
        cadence = Cadence(run, c, sched, config.run.max_seconds, on_summary)
        heartbeat = cadence.heartbeat = Heartbeat(max_seconds=config.run.max_seconds)
        pool.seconds_left = cadence.seconds_left  # each chunk stops stepping at the budget
        pool.start(_weights(learners, pools, setup), progress(), push_every, game.models())
        own = {b: n for b, n in setup.behavior_policy.items() if n in learners}
        hotswap = MFHotSwap(pool, run.path, own, config.hotswap.every)
        acc = cadence.acc
        stopped_by = "max_steps"
        updates_since_sync = rounds = 0
        waiting = False  # an empty poll continues the wait (and the progress line's "for S s")
        while c.env_steps < sched["max_steps"]:
            if not waiting:
                heartbeat.phase("collecting", c.iterations + 1, c.env_steps)
            chunks = pool.poll(timeout=1.0)
            waiting = not chunks
            if chunks:
                heartbeat.phase("learning", c.iterations + 1, c.env_steps)
            t_learn = time.perf_counter()
            changed = False
            for chunk in chunks:
                _ingest(chunk, learners, acc, pool.version)
                game.observe(chunk.worker_index, chunk.game_status)
                for o in chunk.outcomes:
                    changed |= _account_outcome(o, setup, pools, learners, acc, game)
                c.env_steps += chunk.env_steps
                c.agent_steps += chunk.agent_steps
                c.iterations += 1
                updates_since_sync += 1
            for learner in learners.values():
                if hasattr(learner, "set_progress"):
                    learner.set_progress(progress())
            game.check()
            if changed:
                game.refresh(progress())
            if chunks and (changed or updates_since_sync >= sync_every):
                pool.set_weights(_weights(learners, pools, setup), progress(), game.models())
                updates_since_sync = 0
            if chunks:
                rounds += 1
                hotswap.after_iteration(rounds, learners, c.env_steps)
            acc["timers/learn_s"].append(time.perf_counter() - t_learn)
            session_s = cadence.clock()
            ending = _ending(stopper, config.run.max_seconds, session_s, c.env_steps >= sched["max_steps"])
            cadence.report(ending, setup.behavior_policy, lambda: {**hotswap.metrics(), **game.metrics()})
            cadence.checkpoint(lambda: _checkpoint(run, learners, pools, setup, c))
            if ending:
                stopped_by = ending
                break
        return cadence.finish(stopped_by, lambda: _checkpoint(run, learners, pools, setup, c))
    finally:
        if heartbeat is not None:
            heartbeat.close()
        stopper.restore()
        if pool is not None:
            pool.close()
        run.close()
