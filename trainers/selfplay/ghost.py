"""Self-play between a game's teams, as ML-Agents' ghost trainer (``self_play`` of ppo / poca; ``ghost:`` of
any unimarl behaviour: MAPPO, and the mean-field learners through :class:`~unimarl.trainers.selfplay.manager.
MeanFieldGhost`).

The game's behaviours carry their team (``Name?team=T``). One team learns at a time; every other team plays
snapshots of its policies. The algorithms give each policy one acting *slot* per team it plays on
(:func:`~unimarl.trainers.algos.ghost.ghost_slots`); :meth:`GhostPlay.weights` fills the learning
team's slots with the learner's weights and the others with their snapshot, and only the learning slot's
trajectories (MAPPO) or transitions (mean field) train the policy (:meth:`GhostPlay.learning_slot`). The
rules are mlagents-learn's (ml-agents/mlagents/trainers/ghost/trainer.py ``GhostTrainer.advance``,
``_save_snapshot``, ``_swap_snapshots``; ghost/controller.py ``GhostController``), with env steps as the
clock:

* every ``save_steps`` env steps a policy learns, its weights enter its window of ``window`` snapshots (a
  ring: the oldest is overwritten), with its current ELO;
* every ``swap_steps`` env steps a policy plays as an opponent, and whenever the learning team changes, each
  opponent slot draws its weights: with probability ``play_against_latest_model_ratio`` the learner's current
  weights (frozen until the next draw), else a snapshot of the window, uniformly;
* every ``team_change`` env steps of learning, the learning team passes to the next team (a queue);
* ELO (K = 16): after every episode of a learning agent, its final reward (with its group reward) says win
  (> 0), draw (0) or loss (< 0); the learner's rating moves by ``K * (result - expected)`` against the rating
  of the opponent snapshot playing, which moves the other way (against the learner's own current weights the
  two changes cancel, as in ML-Agents). Metrics: ``selfplay/elo/<policy>`` (TensorBoard ``Self-play/ELO``).

Each policy's window, ratings and opponent are its :class:`~unimarl.trainers.selfplay.pool.SnapshotPool`, the
pool every self-play rule shares; the ghost adds the step clocks and the team queue. Its state (pools with
their draw generators, clocks, the learning team) is saved in checkpoints.
"""

from __future__ import annotations

import functools
import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unimarl.trainers.core.config import TrainConfig
from unimarl.trainers.core.errors import ResumeError
from unimarl.trainers.core.mappo_settings import GhostSettings
from unimarl.trainers.core.names import team_of
from unimarl.trainers.selfplay.pool import SnapshotPool, Weights

logger = logging.getLogger(__name__)


def game_result(final_reward: float) -> float:
    """ML-Agents' reading of an episode's final reward: > 0 win, < 0 loss, 0 draw."""
    return 1.0 if final_reward > 0 else 0.0 if final_reward < 0 else 0.5


@dataclass
class _Clock:
    """One policy's ghost settings and step counters (env steps)."""

    settings: GhostSettings
    learned: int = 0
    last_save: int = 0
    last_team_change: int = 0
    ghost: int = 0  # while an opponent slot plays
    last_swap: int = 0


class GhostPlay:
    """Teams taking turns to learn against snapshots; see the module docstring.

    ``slots``: policy -> team -> the acting slot of that policy on that team; ``settings``: policy -> its
    ghost settings; ``initial``: policy -> its weights now (the first snapshot and opponent)."""

    def __init__(
        self,
        slots: dict[str, dict[int, str]],
        settings: dict[str, GhostSettings],
        initial: dict[str, Weights],
        seed: int = 0,
    ) -> None:
        self.slots = slots
        self.policies = {
            name: SnapshotPool(
                initial[name], settings[name].window, initial_elo=settings[name].initial_elo, seed=seed + i
            )
            for i, name in enumerate(sorted(slots))
        }
        """Policy -> its snapshot pool (:mod:`unimarl.trainers.selfplay.pool`)."""
        self.clocks = {name: _Clock(settings[name]) for name in slots}
        teams = sorted({team for by_team in slots.values() for team in by_team})
        self.learning_team = teams[0]
        self.queue: deque[int] = deque(teams[1:])
        self.team_changes = 0
        logger.info(
            "self-play (ghost) over teams %s: team %d learns first; policies %s",
            teams,
            self.learning_team,
            sorted(slots),
        )

    def learning_slot(self, policy: str) -> str | None:
        """The slot whose trajectories train ``policy`` now (None: its team does not learn now)."""
        return self.slots[policy].get(self.learning_team)

    def weights(self, learner: dict[str, Weights]) -> dict[str, Weights]:
        """Acting weights per slot: the learner's on the learning team, the drawn snapshot elsewhere; policies
        without self-play keep their own."""
        out = dict(learner)  # (a ghost policy's own name serves its behaviours that appear after reset)
        for name, by_team in self.slots.items():
            for team, slot in by_team.items():
                out[slot] = (
                    learner[name] if team == self.learning_team else self.policies[name].opponent_weights
                )
        return out

    def after_round(
        self,
        env_steps: int,
        final_rewards: Mapping[str, Sequence[float]],
        behavior_policy: dict[str, str],
        learner: Callable[[str], Weights],
    ) -> None:
        """Account one learning round: ``env_steps`` stepped, the final rewards of the episodes that ended per
        behaviour; ``learner(policy)`` gives a policy's weights after the update (asked for only when a
        snapshot is saved or the learner is drawn as the opponent)."""
        for behavior, rewards in final_rewards.items():
            name = behavior_policy.get(behavior)
            if name in self.policies and team_of(behavior) == self.learning_team:
                for reward in rewards:
                    self._rate(name, game_result(reward))
        learning = [n for n in self.policies if self.learning_team in self.slots[n]]
        for name, clock in self.clocks.items():
            if name in learning:
                clock.learned += env_steps
            if any(team != self.learning_team for team in self.slots[name]):
                clock.ghost += env_steps
        changed = False
        if self.queue and any(
            self.clocks[n].learned - self.clocks[n].last_team_change > self.clocks[n].settings.team_change
            for n in learning
        ):
            for n in learning:
                self.clocks[n].last_team_change = self.clocks[n].learned
            self.queue.append(self.learning_team)
            self.learning_team = self.queue.popleft()
            self.team_changes += 1
            changed = True
            logger.info("self-play: team %d learns now (change %d)", self.learning_team, self.team_changes)
        for name in learning:
            clock = self.clocks[name]
            if clock.learned - clock.last_save > clock.settings.save_steps:
                self.policies[name].save(learner(name))
                clock.last_save = clock.learned
        for name, clock in self.clocks.items():
            if changed or clock.ghost - clock.last_swap > clock.settings.swap_steps:
                ratio = clock.settings.play_against_latest_model_ratio
                self.policies[name].draw("uniform", ratio, functools.partial(learner, name))
                clock.last_swap = clock.ghost

    def _rate(self, name: str, result: float) -> None:
        """ML-Agents' ``compute_elo_rating_changes``: the opponent is the policy of another team."""
        teams = self.slots[name]
        others = [
            n
            for n, by_team in self.slots.items()
            if any(t != self.learning_team for t in by_team) and n != name
        ]
        opponent = self.policies[others[0]] if others and len(teams) == 1 else self.policies[name]
        self.policies[name].record(result, against=opponent)

    def metrics(self) -> dict[str, float]:
        out = {"selfplay/learning_team": float(self.learning_team)}
        for name, p in self.policies.items():
            out[f"selfplay/elo/{name}"] = p.elo
            out[f"selfplay/snapshots/{name}"] = float(len(p.snapshots))
            out[f"selfplay/swaps/{name}"] = float(p.version)
            out[f"selfplay/opponent/{name}"] = float(p.opponent)  # window index; -1: the learner at the draw
        return out

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors and numbers (loadable with ``torch.load(weights_only=True)``)."""
        return {
            "learning_team": self.learning_team,
            "queue": list(self.queue),
            "team_changes": self.team_changes,
            "policies": {
                name: {
                    **self.policies[name].state_dict(),
                    "clock": [c.learned, c.last_save, c.last_team_change, c.ghost, c.last_swap],
                }
                for name, c in self.clocks.items()
            },
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state["policies"]) != set(self.policies):
            raise ResumeError(
                f"the checkpoint's self-play is between policies {sorted(state['policies'])}, this config's "
                f"between {sorted(self.policies)}; resume with the self_play settings the run started with"
            )
        self.learning_team, self.team_changes = int(state["learning_team"]), int(state["team_changes"])
        self.queue = deque(int(t) for t in state["queue"])
        for name, saved in state["policies"].items():
            c = self.clocks[name]
            if "clock" in saved:
                c.learned, c.last_save, c.last_team_change, c.ghost, c.last_swap = (
                    int(n) for n in saved["clock"]
                )
            else:  # written before the pool was shared: pool and clock counters in one list
                counter, opponent, c.learned, c.last_save, c.last_team_change, c.ghost, c.last_swap, swaps = (
                    int(n) for n in saved["counters"]
                )
                saved = {**saved, "counter": counter, "opponent": opponent, "version": swaps}
            self.policies[name].load_state_dict(saved)


def ghost_play(config: TrainConfig, algorithm: Any, run_path: Path) -> GhostPlay | None:
    """The MAPPO run's self-play between teams (None when no behaviour sets ``ghost``)."""
    slots: dict[str, dict[int, str]] = algorithm.ghost_slots
    if not slots:
        return None
    settings = {name: algorithm.ghost_settings[name] for name in slots}
    initial = {name: algorithm.policies[name].get_weights() for name in slots}
    return GhostPlay(slots, settings, initial, seed=config.run.seed)
