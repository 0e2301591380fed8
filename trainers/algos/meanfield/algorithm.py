"""Mean-field learners (MF-Q, MF-AC and their baselines IQL and AC) on the one training loop, streaming.

The workers stream chunks of ``push_every`` worker steps (:mod:`~unimarl.trainers.algos.meanfield.worker`).
Whatever has arrived is added to the learners (one ``add`` per worker step) and each learner runs the updates
it owes before the loop takes the next chunk, so collection waits for learning (MF-Q: the gradient steps
that keep its ``replay_ratio``, and the fixed cadence if set; MF-AC: one pass over the chunk; a Ray worker's
chunk may have been collected some weight refreshes ago, ``counters/chunk_age_refreshes``, and MF-AC weights
its policy gradient by truncated importance ratios, :mod:`~unimarl.trainers.algos.meanfield.mfac`). Only the
time budget's end cuts the updates short; ``counters/replay_ratio/<policy>`` logs the samples learned per
transition added so far (0 until the learner's ``learning_starts`` transitions are stored). Every
``sync_every`` learner updates, or when a self-play opponent changed, the workers get new weights and the
training progress (MF-Q's temperature follows it). Self-play opponents (``opponent:<policy>`` actors, or
models the games run) are managed by :mod:`unimarl.trainers.selfplay` through :class:`MeanFieldOpponents`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

from unimarl.trainers.algos.base import Learned
from unimarl.trainers.algos.ghost import ghost_slots
from unimarl.trainers.algos.meanfield.learners import (
    MEAN_FIELD_TRAINERS,
    MFLearner,
    check_position_sensor,
    make_learner,
)
from unimarl.trainers.algos.meanfield.mfq import MFQLearner
from unimarl.trainers.algos.meanfield.worker import MFChunk, MFPlan, MFPolicySetup, MFRolloutWorker
from unimarl.trainers.core.batch import PolicySpec
from unimarl.trainers.core.config import TrainConfig
from unimarl.trainers.core.errors import ConfigError, ResumeError
from unimarl.trainers.core.names import team_of
from unimarl.trainers.envs.battles import outcome_metrics

logger = logging.getLogger(__name__)

OPPONENT_PREFIX = "opponent:"
GHOST_STATE = "ghost"
"""The key of ghost self-play's state among a checkpoint's ``self_play`` entries."""


@dataclasses.dataclass
class MFSetup:
    """Policies, their acting plan and the self-play pairings of one run."""

    plan: MFPlan
    behavior_policy: dict[str, str]
    self_play: dict[str, tuple[str, str]]
    """Learner policy -> (its behaviour, the opponent behaviour) for self-play policies."""
    in_game: frozenset[str] = frozenset()
    """Self-play policies whose opponent the games run (``opponent_runs: game``)."""
    ghost_slots: dict[str, dict[int, str]] = dataclasses.field(default_factory=dict)
    """Self-play between teams (``ghost``): policy -> team -> its acting slot there
    (:func:`~unimarl.trainers.algos.ghost.ghost_slots`)."""


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
    behavior_policy = dict(actor)
    slots = ghost_slots(config, {b: n for b, n in actor.items() if not n.startswith(OPPONENT_PREFIX)})
    for name, by_team in slots.items():  # each team of a ghost policy acts through its own slot
        for slot in by_team.values():
            policies[slot] = policies[name]
        for behavior, acting in behavior_policy.items():
            if acting == name:
                actor[behavior] = by_team[team_of(behavior)]
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
    if slots and self_play:
        raise ConfigError(
            f"ghost self-play for {sorted(slots)} and self_play opponents for {sorted(self_play)}: one run "
            "plays one self-play rule; give every behaviour ghost, or every one self_play"
        )
    in_game_policies = frozenset(actor[b] for b in in_game.values())
    return MFSetup(plan, behavior_policy, self_play, in_game_policies, slots)


def _ingest(
    chunk: MFChunk,
    learners: dict[str, MFLearner],
    acc: dict[str, list[float]],
    version: int,
    deadline: float | None = None,
) -> None:
    """Add a chunk to the learners and run the updates they owe, up to ``deadline`` (``version``: the
    pool's refreshes so far)."""
    # refreshes between the weights that chose these actions and now (MF-AC corrects for them)
    acc["counters/chunk_age_refreshes"].append(float(version - chunk.weights_version))
    for name, batches in chunk.transitions.items():
        for t in batches:
            learners[name].add(t)
    for name, learner in learners.items():
        metrics = learner.update(deadline)
        for key, value in metrics.items():
            acc[f"Losses/{key}/{name}"].append(value)
        if metrics:  # ML-Agents' tag; the mean-field learners keep their learning rate
            acc[f"Policy/Learning Rate/{name}"].append(float(learner.config.learning_rate))
        if learner.transitions_added:
            acc[f"counters/replay_ratio/{name}"].append(learner.achieved_replay_ratio)
    for behavior, returns in chunk.episode_returns.items():
        acc[f"return/{behavior}"].extend(returns)
    for behavior, lengths in chunk.episode_lengths.items():
        acc[f"episode_length/{behavior}"].extend(lengths)
    for key, values in chunk.game_stats.items():  # averaged over the metrics line, as MAPPO's
        acc[f"game/{key}"].extend(values)
    for name, seconds in chunk.timers.items():
        acc[f"timers/{name}"].append(seconds)
    if chunk.dropped:
        acc["counters/dropped_transitions"].append(float(chunk.dropped))


class MeanFieldOpponents(Protocol):
    """Self-play opponents of the learning policies (built by :mod:`unimarl.trainers.selfplay.manager`)."""

    def start(self, progress: float) -> None: ...
    def weights(self) -> dict[str, Any]: ...
    def learning_slot(self, policy: str) -> str | None:
        """The acting slot whose transitions train ``policy`` now (None: none now)."""
        ...

    def models(self) -> dict[str, tuple[int, bytes]]: ...
    def after_chunk(
        self, chunk: MFChunk, learners: dict[str, MFLearner], acc: dict[str, list[float]]
    ) -> bool: ...
    def after_round(self, progress: float, changed: bool) -> None: ...
    def metrics(self) -> dict[str, float]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class MeanField:
    """The mean-field learners' side; see the module docstring."""

    name: ClassVar[str] = "meanfield"
    worker_cls: ClassVar[type] = MFRolloutWorker
    streaming: ClassVar[bool] = True

    def __init__(
        self, config: TrainConfig, specs: dict[str, PolicySpec], layouts: dict[str, str], device: str
    ) -> None:
        self.config = config
        self.setup = plan_mean_field(config, specs)
        plan = self.setup.plan
        slots = self.setup.ghost_slots
        self.slots = {s for name, by_team in slots.items() for s in by_team.values() if s != name}
        """Acting slots of ghost policies (the learner of each is its policy's)."""
        self.policies: dict[str, MFLearner] = {
            n: make_learner(
                s.trainer_type, s.spec, s.hyperparameters, device=device, seed=config.run.seed + i
            )
            for i, (n, s) in enumerate(sorted(plan.policies.items()))
            if n in plan.learning and n not in self.slots
        }
        self.behavior_policy = self.setup.behavior_policy
        hps = [s.hyperparameters for n, s in plan.policies.items() if n in self.policies]
        self.push_every = min(hp.push_every for hp in hps)
        self.sync_every = min(hp.sync_every for hp in hps)
        self.opponents: MeanFieldOpponents | None = None
        self.progress = 0.0
        self._reached()
        self._refreshes = 0
        self._since_sync = 0
        self._changed = False

    def _reached(self) -> None:
        """Training progress the learners have reached (a resumed run keeps it: it never goes back)."""
        learners = self.policies.values()
        self.progress = max((lr.progress for lr in learners if isinstance(lr, MFQLearner)), default=0.0)

    def plan(self) -> MFPlan:
        return self.setup.plan

    def schedule_behaviors(self) -> list[str]:
        plan = self.setup.plan
        return [b for b, a in plan.behavior_actor.items() if a in plan.learning]

    def describe(self) -> str:
        return str({n: s.trainer_type for n, s in self.setup.plan.policies.items() if n in self.policies})

    def set_progress(self, progress: float) -> None:
        """Training progress (MF-Q's temperature schedule): the share of whichever budget is nearer its end;
        it never goes back."""
        self.progress = min(max(self.progress, progress), 1.0)
        for learner in self.policies.values():
            if hasattr(learner, "set_progress"):
                learner.set_progress(self.progress)

    def collect_args(self) -> tuple[Any, ...]:
        """(weights incl. the trainer-run opponents', progress, worker steps per chunk, the models of the
        opponents the games run)."""
        if self._refreshes == 0 and self.opponents is not None:
            self.opponents.start(self.progress)
        self._refreshes += 1
        weights: dict[str, Any] = {n: lr.get_weights() for n, lr in self.policies.items()}
        models: dict[str, tuple[int, bytes]] = {}
        if self.opponents is not None:
            weights.update(self.opponents.weights())
            models = self.opponents.models()
        return weights, self.progress, self.push_every, models

    def learn(self, results: Sequence[Any], acc: dict[str, list[float]], deadline: float | None) -> Learned:
        """Add the chunks to the learners and run the updates due; battle metrics; self-play records."""
        changed = False
        env_steps = agent_steps = 0
        for chunk in results:
            chunk = self._training_data(chunk)
            _ingest(chunk, self.policies, acc, self._refreshes, deadline)
            for outcome in chunk.outcomes:
                outcome_metrics(outcome, acc)
            if self.opponents is not None:
                changed |= self.opponents.after_chunk(chunk, self.policies, acc)
            env_steps += chunk.env_steps
            agent_steps += chunk.agent_steps
        self._changed = changed
        self._since_sync += len(results)
        restarts: Counter[str] = Counter()
        for chunk in results:
            restarts.update(chunk.game_restarts)
        return Learned(env_steps, agent_steps, len(results), dict(restarts))

    def _training_data(self, chunk: MFChunk) -> MFChunk:
        """The chunk with, for each ghost policy, only its learning slot's transitions (under its name), and
        those of its own name (behaviours met after reset act with it)."""
        ghost = self.setup.ghost_slots
        if not ghost or self.opponents is None:
            return chunk
        transitions: dict[str, list[Any]] = {}
        for name in self.policies:
            if name not in ghost:
                transitions[name] = chunk.transitions.get(name, [])
                continue
            slot = self.opponents.learning_slot(name)
            own = [] if name in ghost[name].values() else chunk.transitions.get(name, [])
            transitions[name] = [*(chunk.transitions.get(slot, []) if slot else []), *own]
        return dataclasses.replace(chunk, transitions=transitions)

    def refresh_due(self, learned: Learned) -> bool:
        """Whether the workers get new weights now: every ``sync_every`` chunks, or when an opponent
        changed."""
        if self.opponents is not None:
            self.opponents.after_round(self.progress, self._changed)
        due = learned.rounds > 0 and (self._changed or self._since_sync >= self.sync_every)
        if due:
            self._since_sync = 0
        return due

    def metrics(self) -> dict[str, float]:
        return self.opponents.metrics() if self.opponents is not None else {}

    def state_dict(self) -> dict[str, Any]:
        return {
            "policies": {n: lr.state_dict() for n, lr in self.policies.items()},
            "setups": {
                n: {"trainer_type": s.trainer_type, "hyperparameters": dataclasses.asdict(s.hyperparameters)}
                for n, s in self.setup.plan.policies.items()
                if n in self.policies
            },
            "self_play": self.opponents.state_dict() if self.opponents is not None else {},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pairs = set(self.setup.self_play)
        saved_play = set(state.get("self_play") or {})
        if set(state["policies"]) != set(self.policies) or saved_play - {GHOST_STATE} != pairs:
            raise ResumeError(
                f"checkpoint holds policies {sorted(state['policies'])}, this config makes "
                f"{sorted(self.policies)}; resume with the config of the original run"
            )
        if (GHOST_STATE in saved_play) != bool(self.setup.ghost_slots):
            had = "with" if GHOST_STATE in saved_play else "without"
            raise ResumeError(
                f"the checkpoint was trained {had} ghost self-play between teams, this config "
                f"{'sets' if self.setup.ghost_slots else 'does not set'} ghost; resume with the config of "
                "the original run"
            )
        for name, saved in (state.get("setups") or {}).items():
            setup = self.setup.plan.policies.get(name)
            # a setting that changes what the weights mean without changing their shapes
            was = (saved.get("hyperparameters") or {}).get("mean_action_input", "probabilities")
            if setup is not None and setup.hyperparameters.mean_action_input != was:
                now = setup.hyperparameters.mean_action_input
                raise ResumeError(
                    f"behaviors.{name}.hyperparameters.mean_action_input is {now!r}, the checkpoint's "
                    f"network was trained with {was!r}; resume with {was!r} (or start a new run)"
                )
        for name, learner in self.policies.items():
            learner.load_state_dict(state["policies"][name])
        if self.opponents is not None:
            self.opponents.load_state_dict(state["self_play"])
        self._reached()
