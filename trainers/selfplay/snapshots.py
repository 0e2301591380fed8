"""Self-play between teams: a frozen opponent refreshed when the learner wins, and a pool of past snapshots.

One behaviour learns; the opponent behaviour is driven by frozen acting weights. After a battle the learner
wins (more kills than the opponent, the reference rule), the *frozen* weights move towards the learner:
``opponent = mix * learner + (1 - mix) * opponent`` (the reference update, mix 0.99) or a plain copy, and the
result enters the pool (the oldest snapshot leaves beyond ``pool_size``). The opponent that plays next is
drawn from the pool: ``latest`` (the frozen weights), ``uniform``, or ``win_rate`` (snapshots the learner
beats less often are drawn more often: weight 1 - wins / (games + 1), plus a floor).

Who plays the opponent: the rollout workers, with the weights :meth:`SnapshotPool.current` returns
(``self_play.opponent_runs: trainer``), or the games themselves, from those weights exported as ONNX and
pushed over the policy side channel whenever :attr:`SnapshotPool.version` changes (``opponent_runs: game``,
:mod:`unimarl.trainers.selfplay.game`).

The pool's state (snapshots, results, the draw generator) is saved in checkpoints and restored on resume.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import torch

from unimarl.trainers.algos.meanfield.learners import SelfPlaySettings

logger = logging.getLogger(__name__)

Weights = dict[str, np.ndarray]


def mix_weights(learner: Weights, old: Weights, mix: float) -> Weights:
    """mix * learner + (1 - mix) * old, key by key (non-float entries are copied from the learner)."""
    out = {}
    for k, v in learner.items():
        if np.issubdtype(v.dtype, np.floating):
            out[k] = (mix * v + (1.0 - mix) * old[k]).astype(v.dtype)
        else:
            out[k] = v.copy()
    return out


class SnapshotPool:
    """Frozen opponent weights, past snapshots and the learner's results against each."""

    def __init__(self, settings: SelfPlaySettings, initial: Weights, seed: int = 0) -> None:
        self.settings = settings
        self.frozen = {k: v.copy() for k, v in initial.items()}
        self.snapshots: list[Weights] = [self.frozen]
        self.games: list[int] = [0]
        self.wins: list[int] = [0]
        self.active = 0
        self.version = 0
        self.refreshes = 0
        self._rng = np.random.default_rng(seed)

    def current(self) -> Weights:
        """Weights the opponent plays with now."""
        return self.snapshots[self.active]

    def record(self, won: bool, learner: Weights) -> bool:
        """Account one battle against the active snapshot; refresh after a win. True if it changed."""
        self.games[self.active] += 1
        self.wins[self.active] += int(won)
        if not won:
            return False
        s = self.settings
        self.frozen = (
            mix_weights(learner, self.frozen, s.mix)
            if s.update == "mix"
            else {k: v.copy() for k, v in learner.items()}
        )
        self.snapshots.append(self.frozen)
        self.games.append(0)
        self.wins.append(0)
        if len(self.snapshots) > s.pool_size:
            del self.snapshots[0], self.games[0], self.wins[0]
        self.refreshes += 1
        self.active = self._draw()
        self.version += 1
        return True

    def _draw(self) -> int:
        n = len(self.snapshots)
        if self.settings.sample == "latest":
            return n - 1
        if self.settings.sample == "uniform":
            return int(self._rng.integers(n))
        rate = np.array(self.wins, np.float64) / (np.array(self.games, np.float64) + 1.0)
        weights = 1.0 - rate + 0.05
        return int(self._rng.choice(n, p=weights / weights.sum()))

    def win_rate(self) -> float:
        """The learner's win rate over every recorded battle."""
        return float(sum(self.wins) / max(sum(self.games), 1))

    def state_dict(self) -> dict:
        """Plain tensors and numbers (loadable with ``torch.load(weights_only=True)``)."""
        return {
            "snapshots": [{k: torch.as_tensor(v) for k, v in w.items()} for w in self.snapshots],
            "games": list(self.games),
            "wins": list(self.wins),
            "active": self.active,
            "version": self.version,
            "refreshes": self.refreshes,
            "rng": json.dumps(self._rng.bit_generator.state),
        }

    def load_state_dict(self, state: dict) -> None:
        self.snapshots = [{k: v.numpy() for k, v in w.items()} for w in state["snapshots"]]
        self.frozen = self.snapshots[-1]
        self.games, self.wins = list(state["games"]), list(state["wins"])
        self.active, self.version, self.refreshes = (
            int(state["active"]),
            int(state["version"]),
            int(state["refreshes"]),
        )
        if "rng" in state:  # checkpoints written before the generator was saved draw from a fresh one
            self._rng.bit_generator.state = json.loads(state["rng"])
