"""Self-play opponents run by the game itself: snapshots exported as ONNX and pushed over the policy channel.

With ``self_play.opponent_runs: game`` the opponent team is not one of the trainer's behaviours: the game
drives it from the models the trainer pushes (Unity: the team's Behavior Type is Heuristic Only and its
``Heuristic`` calls ``PolicyHotSwap.TryDecide``; sim games: ``--inference-behavior NAME``). The snapshot pool
(:class:`~unimarl.trainers.selfplay.pool.SnapshotPool`) works as with trainer-run opponents; whenever
the opponent it draws changes (:attr:`SnapshotPool.version`), :class:`GameOpponents` exports that snapshot as
an acting policy (``results/RUN_ID/onnx/selfplay/<policy>.onnx``; MF-Q with its mean-action input, at the
temperature the schedule has reached, see :func:`unimarl.trainers.export.meanfield.policy_model`) and hands
it to the rollout pool, whose workers push it into each of their games (model version = pool version + 1).

What the games acknowledge comes back with every chunk of transitions. A rejected model (the game could not
load or run it, e.g. the opponent's observations differ from the learner's) or a model no game has
acknowledged after :data:`ACK_TIMEOUT_S` stops training with :class:`SelfPlayError`: the opponent would
otherwise stand still or keep an old policy unnoticed. A battle is credited to the snapshot only if the game
ran that snapshot's model for the whole battle (:attr:`~unimarl.trainers.envs.battles.Outcome.versions`);
battles played while a new model was on its way are counted under ``selfplay/uncredited/<policy>``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from unimarl.trainers.algos.meanfield.learners import make_learner
from unimarl.trainers.algos.meanfield.mfq import MFQLearner
from unimarl.trainers.algos.meanfield.worker import MFPolicySetup
from unimarl.trainers.core.errors import TrainerError
from unimarl.trainers.envs.battles import Outcome
from unimarl.trainers.export.meanfield import policy_model
from unimarl.trainers.export.onnx import ExportError
from unimarl.trainers.export.policies import ONNX_DIR, model_file_name
from unimarl.trainers.selfplay.pool import SnapshotPool

logger = logging.getLogger(__name__)

ACK_TIMEOUT_S = 120.0
"""Seconds a pushed opponent model may go without being acknowledged by every game."""


class SelfPlayError(TrainerError):
    """A game cannot run the self-play opponent the trainer pushed (rejected, or never acknowledged)."""


class GameOpponents:
    """Exports and tracks the in-game opponents of self-play policies (module docstring)."""

    def __init__(
        self,
        run_path: str | Path,
        pairs: dict[str, tuple[str, str]],
        setups: dict[str, MFPolicySetup],
        pools: dict[str, SnapshotPool],
        num_workers: int,
        ack_timeout_s: float = ACK_TIMEOUT_S,
    ) -> None:
        self.folder = Path(run_path) / ONNX_DIR / "selfplay"
        self.pairs = dict(pairs)
        """Policy -> (its behaviour, the game-driven opponent behaviour)."""
        self.setups, self.pools = setups, pools
        self.num_workers = num_workers
        self.ack_timeout_s = ack_timeout_s
        self._models: dict[str, tuple[int, bytes]] = {}
        self._pushed_at: dict[str, float] = {}
        self._status: dict[tuple[int, str], list[Any]] = {}
        self.accepted: dict[str, int] = {}
        """Opponent behaviour -> newest version every game acknowledged running."""
        self.uncredited: dict[str, int] = dict.fromkeys(self.pairs, 0)

    def models(self) -> dict[str, tuple[int, bytes]]:
        """Opponent behaviour -> (version, ONNX bytes) for the rollout pool."""
        return dict(self._models)

    def refresh(self, progress: float) -> bool:
        """Export the snapshot each pool plays now, where it changed; True if some model did."""
        changed = False
        for name, (_, opponent) in sorted(self.pairs.items()):
            version = self.pools[name].version + 1
            if self._models.get(opponent, (None,))[0] == version:
                continue
            data = self._export(name, progress)
            self._models[opponent] = (version, data)
            self._pushed_at[opponent] = time.monotonic()
            logger.info(
                "self-play: %s's opponent %s now plays snapshot v%d (%d bytes, pushed into the games)",
                name,
                opponent,
                version,
                len(data),
            )
            changed = True
        return changed

    def _export(self, name: str, progress: float) -> bytes:
        setup = self.setups[name]
        learner = make_learner(setup.trainer_type, setup.spec, setup.hyperparameters, acting_only=True)
        learner.set_weights(self.pools[name].current())
        temperature = None
        if isinstance(learner, MFQLearner):
            learner.set_progress(progress)
            temperature = learner.temperature
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            path = self.folder / model_file_name(name)
            done = policy_model(learner, path, name=name, temperature=temperature)
        except ExportError as e:
            raise SelfPlayError(
                f"self_play.opponent_runs game: the snapshot of policy '{name}' cannot be exported for the "
                f"game to run: {e}. Use opponent_runs: trainer to keep the opponent in the workers"
            ) from e
        return done.path.read_bytes()

    def observe(self, worker: int, game_status: dict[str, list[Any]]) -> None:
        """Take one chunk's acknowledgements; raises :class:`SelfPlayError` on a rejected model."""
        for opponent, statuses in game_status.items():
            self._status[(worker, opponent)] = statuses
            version = self._models.get(opponent, (None,))[0]
            for status in statuses:
                ack = None if status is None else status.last_ack
                if ack is not None and not ack.ok and ack.version == version:
                    raise SelfPlayError(
                        f"a game rejected the self-play opponent model v{version} for behaviour "
                        f"'{opponent}' ({ack.reason.name}): {ack.error}. The opponent must have the "
                        "learner's observations and actions"
                    )

    def check(self) -> None:
        """Mark versions every game runs; raises :class:`SelfPlayError` when one is overdue."""
        now = time.monotonic()
        for opponent, (version, _) in self._models.items():
            if self.accepted.get(opponent) == version:
                continue
            running = [
                None if s is None else s.running_version
                for w in range(self.num_workers)
                for s in self._status.get((w, opponent), [None])
            ]
            if all(r == version for r in running):
                self.accepted[opponent] = version
                logger.info("self-play: every game runs %s v%d", opponent, version)
            elif now - self._pushed_at[opponent] > self.ack_timeout_s:
                done = sum(r == version for r in running)
                raise SelfPlayError(
                    f"self-play opponent model v{version} for behaviour '{opponent}' runs in {done} of "
                    f"{len(running)} games after {self.ack_timeout_s:.0f} s. The game must receive models "
                    "for it: Unity: a PolicyHotSwap component whose Behavior Name is that behaviour's "
                    "(without ?team=), its agents Heuristic Only calling TryDecide; sim games: "
                    f"--inference-behavior '{opponent}' in env.args"
                )

    def credited(self, name: str, outcome: Outcome) -> bool:
        """Whether ``outcome`` was played against ``name``'s current snapshot from start to end."""
        opponent = self.pairs[name][1]
        ok = outcome.versions.get(opponent) == self._models.get(opponent, (None,))[0]
        self.uncredited[name] += not ok
        return ok

    def metrics(self) -> dict[str, float]:
        """Per policy: the opponent's newest pushed version, the one every game runs, uncredited battles."""
        line: dict[str, float] = {}
        for name, (_, opponent) in sorted(self.pairs.items()):
            line[f"selfplay/opponent_pushed/{name}"] = float(self._models.get(opponent, (-1,))[0])
            line[f"selfplay/opponent_running/{name}"] = float(self.accepted.get(opponent, -1))
            line[f"selfplay/uncredited/{name}"] = float(self.uncredited[name])
        return line
