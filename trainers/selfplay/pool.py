"""The one snapshot pool of self-play, shared by every algorithm and both self-play rules.

A pool belongs to one learning policy. It keeps up to ``window`` snapshots of the policy's weights in a ring
(the oldest is overwritten, as ML-Agents' ghost trainer does), each with an ELO rating and the learner's
results against it, plus the learner's own rating. The *opponent* is drawn from the pool and stays frozen
until the next draw; :attr:`SnapshotPool.version` counts draws, so whoever runs the opponent (rollout workers,
or games fed exported models) knows when its weights changed.

Two rules drive a pool (each in its own module, both on this class):

* ML-Agents' ghost (:mod:`unimarl.trainers.selfplay.ghost`, ``self_play`` of ppo / poca): a snapshot every
  ``save_steps``, a draw every ``swap_steps``, the learner itself with ``play_against_latest_model_ratio``;
* the mean-field reference (:mod:`unimarl.trainers.selfplay.manager`, ``self_play`` of mfq / mfac): after a
  battle the learner wins, the newest snapshot moves towards the learner (``mix``) and the opponent is drawn
  by ``sample`` (:func:`refresh_after_win`).

Draw rules (:meth:`SnapshotPool.draw`): ``latest`` (the newest snapshot), ``uniform``, ``win_rate`` (snapshots
the learner beats less often are drawn more often: weight 1 - wins / (games + 1), plus a floor of 0.05).
Ratings: every recorded result moves the learner's rating by ``K * (result - expected)`` (K = 16, ML-Agents'
``GhostController``) and the opponent snapshot's the other way; against the learner's own weights the two
changes cancel.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

Weights = dict[str, np.ndarray]

K_FACTOR = 16.0
"""ELO's K (ML-Agents' ``GhostController.K``)."""

DRAW_RULES = ("latest", "uniform", "win_rate")
WIN_RATE_FLOOR = 0.05
"""Added to every snapshot's ``win_rate`` weight, so that beaten snapshots are still drawn sometimes."""

LEARNER = -1
""":attr:`SnapshotPool.opponent` when the opponent plays the learner's weights taken at the draw."""


def elo_change(rating: float, opponent: float, result: float) -> float:
    """The change of ``rating`` after a game of ``result`` (1 win, 0.5 draw, 0 loss) against ``opponent``."""
    r1, r2 = 10.0 ** (rating / 400.0), 10.0 ** (opponent / 400.0)
    return K_FACTOR * (result - r1 / (r1 + r2))


def mix_weights(learner: Weights, old: Weights, mix: float) -> Weights:
    """mix * learner + (1 - mix) * old, key by key (non-float entries are copied from the learner)."""
    out = {}
    for k, v in learner.items():
        if np.issubdtype(v.dtype, np.floating):
            out[k] = (mix * v + (1.0 - mix) * old[k]).astype(v.dtype)
        else:
            out[k] = v.copy()
    return out


def copy_weights(weights: Weights) -> Weights:
    return {k: np.array(v, copy=True) for k, v in weights.items()}


class SnapshotPool:
    """Snapshots, ratings and results of one learning policy, and its opponent; see the module docstring."""

    def __init__(self, initial: Weights, window: int, *, initial_elo: float = 1200.0, seed: int = 0) -> None:
        if window < 1:
            raise ValueError(f"a snapshot pool needs a window of at least 1, got {window}")
        self.window = window
        self.snapshots: list[Weights] = [copy_weights(initial)]
        self.elos = [float(initial_elo)] * (window + 1)
        """Ratings of the snapshots by index; ``elos[-1]`` is the learner's own."""
        self.games: list[int] = [0]
        self.wins: list[float] = [0.0]
        """Results of the learner against each snapshot (a draw counts one half)."""
        self.counter = 1 % window
        """Where the next snapshot goes."""
        self.opponent = 0
        """Index of the snapshot the opponent plays, or :data:`LEARNER`."""
        self.opponent_weights = self.snapshots[0]
        self.version = 0
        """Draws so far (the opponent's weights may have changed with each)."""
        self.saves = 0
        self._rng = np.random.default_rng(seed)

    @property
    def elo(self) -> float:
        """The learner's rating."""
        return self.elos[-1]

    @property
    def newest(self) -> int:
        """Index of the snapshot saved last (the initial weights before any save)."""
        return (self.counter - 1) % self.window

    def current(self) -> Weights:
        """The weights the opponent plays with now."""
        return self.opponent_weights

    def save(self, weights: Weights) -> int:
        """``weights`` into the ring, rated as the learner is now; returns its index."""
        if len(self.snapshots) < self.window:
            self.snapshots.append(copy_weights(weights))
            self.games.append(0)
            self.wins.append(0.0)
            index = len(self.snapshots) - 1
        else:
            index = self.counter
            self.snapshots[index] = copy_weights(weights)
            self.games[index], self.wins[index] = 0, 0.0
        self.elos[index] = self.elo
        self.counter = (index + 1) % self.window
        self.saves += 1
        return index

    def draw(
        self, rule: str = "uniform", latest_ratio: float = 0.0, learner: Callable[[], Weights] | None = None
    ) -> None:
        """The opponent's next weights: with probability ``latest_ratio`` the learner's (``learner()``, frozen
        until the next draw), else a snapshot by ``rule`` (module docstring)."""
        if learner is not None and self._rng.uniform() >= 1.0 - latest_ratio:
            self.opponent, self.opponent_weights = LEARNER, copy_weights(learner())
        else:
            self.opponent = self._pick(rule)
            self.opponent_weights = self.snapshots[self.opponent]
        self.version += 1

    def _pick(self, rule: str) -> int:
        n = len(self.snapshots)
        if rule == "latest":
            return self.newest
        if rule == "uniform":
            return int(self._rng.integers(n))
        if rule == "win_rate":
            rate = np.array(self.wins, np.float64) / (np.array(self.games, np.float64) + 1.0)
            weights = 1.0 - rate + WIN_RATE_FLOOR
            return int(self._rng.choice(n, p=weights / weights.sum()))
        raise ValueError(f"unknown draw rule {rule!r}: use one of {DRAW_RULES}")

    def record(self, result: float, against: SnapshotPool | None = None) -> float:
        """One game of the learner (``result``: 1 win, 0.5 draw, 0 loss) against the opponent ``against``
        plays now (default: this pool's own, a symmetric game). Returns the learner's rating change."""
        other = self if against is None else against
        change = elo_change(self.elo, other.elos[other.opponent], result)
        self.elos[-1] += change
        other.elos[other.opponent] -= change  # the learner's own weights (LEARNER): the changes cancel
        if against is None and self.opponent != LEARNER:
            self.games[self.opponent] += 1
            self.wins[self.opponent] += result
        return change

    def win_rate(self) -> float:
        """The learner's results over every game recorded against the snapshots it holds."""
        return float(sum(self.wins) / max(sum(self.games), 1))

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors and numbers (loadable with ``torch.load(weights_only=True)``)."""
        return {
            "snapshots": [{k: torch.as_tensor(v) for k, v in w.items()} for w in self.snapshots],
            "opponent_weights": {k: torch.as_tensor(v) for k, v in self.opponent_weights.items()},
            "elos": list(self.elos),
            "games": list(self.games),
            "wins": list(self.wins),
            "counter": self.counter,
            "opponent": self.opponent,
            "version": self.version,
            "saves": self.saves,
            "rng": json.dumps(self._rng.bit_generator.state),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.snapshots = [{k: v.numpy() for k, v in w.items()} for w in state["snapshots"]]
        n = len(self.snapshots)
        self.games = [int(g) for g in state.get("games", [0] * n)]
        self.wins = [float(w) for w in state.get("wins", [0.0] * n)]
        elos = [float(e) for e in state.get("elos", [])]
        if len(elos) == self.window + 1:  # (mean-field checkpoints before the pool was shared rated nothing)
            self.elos = elos
        if "counter" in state:
            self.counter = int(state["counter"])
            self.opponent = int(state["opponent"])
        else:  # mean-field checkpoints before the pool was shared: snapshots oldest first, ``active``
            self.counter = n % self.window
            self.opponent = int(state["active"])
        saved = state.get("opponent_weights")
        self.opponent_weights = (
            {k: v.numpy() for k, v in saved.items()} if saved is not None else self.snapshots[self.opponent]
        )
        self.version = int(state.get("version", 0))
        self.saves = int(state.get("saves", state.get("refreshes", 0)))
        if "rng" in state:  # checkpoints written before the generator was saved draw from a fresh one
            self._rng.bit_generator.state = json.loads(state["rng"])
