"""Self-play opponents of the mean-field learners: ghost self-play between teams (:class:`MeanFieldGhost`,
ML-Agents' rules of :mod:`unimarl.trainers.selfplay.ghost`) or, with ``self_play:``, the reference's rule
(mlii/mfrl, Yang et al. 2018), below: a
snapshot pool per self-play policy (:class:`~unimarl.trainers.selfplay.pool.SnapshotPool`, the pool every
self-play rule shares) whose opponent either acts in the rollout workers (``opponent:<policy>`` actors) or
runs in the games from pushed ONNX models (:class:`~unimarl.trainers.selfplay.game.GameOpponents`,
``self_play.opponent_runs: game``).

Each finished battle is recorded for the learning policy against its opponent (whichever teams they drove:
with ``self_play.sides: both`` they trade teams after every battle): a win (more kills) counts 1, a draw one
half, and moves the learner's ELO (``selfplay/elo/<policy>``, as ML-Agents' ghost trainer rates). A win
refreshes the opponent (:func:`refresh_after_win`): the newest snapshot moves towards the learner
(``self_play.update``: ``mix``, the reference, or ``copy``), enters the pool (at most ``pool_size``; the
oldest is overwritten) and the opponent is drawn by ``self_play.sample``. A battle whose opponent the game
ran counts only when the game ran one model version for the whole battle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from unimarl.trainers.algos.ghost import ghost_settings
from unimarl.trainers.algos.meanfield.algorithm import GHOST_STATE, OPPONENT_PREFIX, MeanField
from unimarl.trainers.algos.meanfield.learners import MFLearner, SelfPlaySettings
from unimarl.trainers.algos.meanfield.worker import MFChunk
from unimarl.trainers.core.config import TrainConfig
from unimarl.trainers.envs.battles import Outcome
from unimarl.trainers.selfplay.game import GameOpponents, SelfPlayError
from unimarl.trainers.selfplay.ghost import GhostPlay
from unimarl.trainers.selfplay.pool import SnapshotPool, Weights, copy_weights, mix_weights


def refresh_after_win(
    pool: SnapshotPool, settings: SelfPlaySettings, result: float, learner: Weights
) -> bool:
    """Record one battle of the learner against ``pool``'s opponent (``result``: 1 won, 0.5 drawn, 0 lost);
    after a win, the reference's refresh (module docstring). True when the opponent changed."""
    pool.record(result)
    if result < 1.0:
        return False
    newest = pool.snapshots[pool.newest]
    pool.save(
        mix_weights(learner, newest, settings.mix) if settings.update == "mix" else copy_weights(learner)
    )
    pool.draw(settings.sample)
    return True


class SelfPlay:
    """Opponents of one mean-field run (the algorithm's ``opponents``); see the module docstring."""

    def __init__(self, config: TrainConfig, algorithm: MeanField, run_path: str | Path) -> None:
        setup = algorithm.setup
        self.pairs = dict(setup.self_play)
        """Learning policy -> (its behaviour, the opponent behaviour)."""
        self.in_game = setup.in_game
        self.settings: dict[str, SelfPlaySettings] = {
            n: config.behavior_settings(b).self_play  # type: ignore[misc]
            for n, (b, _) in self.pairs.items()
        }
        self.pools = {
            n: SnapshotPool(
                algorithm.policies[n].get_weights(), self.settings[n].pool_size, seed=config.run.seed
            )
            for n in self.pairs
        }
        self.game = GameOpponents(
            run_path,
            {n: pair for n, pair in self.pairs.items() if n in self.in_game},
            setup.plan.policies,
            self.pools,
            config.run.num_workers,
        )

    def start(self, progress: float) -> None:
        """Export the first in-game opponents."""
        self.game.refresh(progress)

    def learning_slot(self, policy: str) -> str | None:
        """A learning policy always acts (and learns) as itself here."""
        return policy

    def weights(self) -> dict[str, Any]:
        """Weights of the opponents the workers run (``opponent:<policy>``)."""
        return {OPPONENT_PREFIX + n: p.current() for n, p in self.pools.items() if n not in self.in_game}

    def models(self) -> dict[str, tuple[int, bytes]]:
        """Opponent behaviour -> (version, ONNX bytes) of the opponents the games run."""
        return self.game.models()

    def after_chunk(
        self, chunk: MFChunk, learners: dict[str, MFLearner], acc: dict[str, list[float]]
    ) -> bool:
        """Record the chunk's battles (and the games' model status); True when an opponent changed."""
        self.game.observe(chunk.worker_index, chunk.game_status)
        changed = False
        for outcome in chunk.outcomes:
            changed |= self._record(outcome, learners, acc)
        return changed

    def _record(self, o: Outcome, learners: dict[str, MFLearner], acc: dict[str, list[float]]) -> bool:
        changed = False
        for name, (mine, theirs) in self.pairs.items():
            if o.actors:  # the teams learner and opponent drove in this battle (they swap with sides: both)
                side = {actor: b for b, actor in o.actors.items()}
                mine, theirs = side.get(name, mine), side.get(OPPONENT_PREFIX + name, theirs)
            if name in self.in_game:
                if mine not in o.kills or theirs not in o.kills:
                    raise SelfPlayError(
                        f"self_play.opponent_runs game needs the game to report each team's kills as stats "
                        f"(<Game>/kills_team<k>, e.g. via StatsRecorder) for '{mine}' and '{theirs}'; this "
                        f"battle reported kills for {sorted(o.kills)}"
                    )
                if not self.game.credited(name, o):
                    continue
            if mine in o.kills and theirs in o.kills:
                result = 0.5 + 0.5 * float(np.sign(o.kills[mine] - o.kills[theirs]))  # won 1, drawn 0.5
                acc[f"selfplay/win/{name}"].append(result)
                pool = self.pools[name]
                changed |= refresh_after_win(pool, self.settings[name], result, learners[name].get_weights())
                acc[f"selfplay/refreshes/{name}"].append(float(pool.saves))
        return changed

    def after_round(self, progress: float, changed: bool) -> None:
        """Check that the games run the pushed opponents; export new ones when an opponent changed."""
        self.game.check()
        if changed:
            self.game.refresh(progress)

    def metrics(self) -> dict[str, float]:
        return {**self.game.metrics(), **{f"selfplay/elo/{n}": p.elo for n, p in self.pools.items()}}

    def state_dict(self) -> dict[str, Any]:
        return {n: p.state_dict() for n, p in self.pools.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, pool in self.pools.items():
            pool.load_state_dict(state[name])


class MeanFieldGhost:
    """Ghost self-play between teams (:class:`~unimarl.trainers.selfplay.ghost.GhostPlay`, ML-Agents' rules)
    for a mean-field run: each ghost policy acts through a slot per team (:class:`MFSetup.ghost_slots
    <unimarl.trainers.algos.meanfield.algorithm.MFSetup>`), the learning team's slot with the learner's
    weights and its transitions training it, the other teams' with the drawn snapshots. Every chunk advances
    the clocks by its env steps and rates the learning team's ended episodes by their final rewards; a new
    learning team or opponent refreshes the workers' weights at once."""

    def __init__(self, play: GhostPlay, algorithm: MeanField) -> None:
        self.play, self.algorithm = play, algorithm

    def start(self, progress: float) -> None:
        """Nothing to export: the workers run every slot."""

    def weights(self) -> dict[str, Any]:
        learners = {n: lr.get_weights() for n, lr in self.algorithm.policies.items()}
        return self.play.weights(learners)

    def learning_slot(self, policy: str) -> str | None:
        return self.play.learning_slot(policy)

    def models(self) -> dict[str, tuple[int, bytes]]:
        return {}

    def _signature(self) -> tuple[Any, ...]:
        return self.play.learning_team, tuple(p.version for p in self.play.policies.values())

    def after_chunk(
        self, chunk: MFChunk, learners: dict[str, MFLearner], acc: dict[str, list[float]]
    ) -> bool:
        before = self._signature()
        self.play.after_round(
            chunk.env_steps,
            chunk.final_rewards,
            self.algorithm.behavior_policy,
            lambda name: learners[name].get_weights(),
        )
        return self._signature() != before

    def after_round(self, progress: float, changed: bool) -> None:
        """Everything happened per chunk."""

    def metrics(self) -> dict[str, float]:
        return self.play.metrics()

    def state_dict(self) -> dict[str, Any]:
        return {GHOST_STATE: self.play.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.play.load_state_dict(state[GHOST_STATE])


def mean_field_opponents(
    config: TrainConfig, algorithm: MeanField, run_path: str | Path
) -> SelfPlay | MeanFieldGhost:
    """The run's self-play: ghost between teams when its behaviours set ``ghost``, else the reference's
    opponents (``self_play``; none when no behaviour sets it)."""
    slots = algorithm.setup.ghost_slots
    if not slots:
        return SelfPlay(config, algorithm, run_path)
    settings = ghost_settings(config, algorithm.behavior_policy)
    initial = {name: algorithm.policies[name].get_weights() for name in slots}
    return MeanFieldGhost(GhostPlay(slots, settings, initial, seed=config.run.seed), algorithm)
