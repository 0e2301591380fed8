"""The Algorithm protocol: what a learning method gives the one training loop (:func:`unimarl.trainers.run.
train.train`), and what the loop gives it.

An algorithm is a plug-in on shared machinery. The loop owns the run folder, the budgets, the rollout
backend (serial or Ray; :mod:`unimarl.trainers.collect.backend`), metrics and TensorBoard, checkpoints and
resume, ONNX export, hot-swap and self-play opponents. An algorithm owns:

- ``worker_cls``: its actor side, built once per rollout worker as ``worker_cls(factory, num_envs,
  worker_index=, seed=)``; it steps the worker's games through :class:`~unimarl.trainers.collect.runner.
  EnvRunner` and adds what its learner needs per step beyond the observation (MAPPO: value, log-probability
  and the critic's teammate inputs; mean field: the mean action of the agent's neighbours);
- ``streaming``: False for on-policy learners (every worker collects, the loop waits for all, then learns),
  True for off-policy ones (workers keep collecting; the loop learns from whatever has arrived);
- :meth:`Algorithm.plan`, sent once to every worker's ``configure``; :meth:`Algorithm.collect_args`, the
  arguments of each ``collect`` (weights first);
- :meth:`Algorithm.learn`: results of ``collect`` -> its training data (trajectories with GAE; replay
  transitions) -> learner updates, metrics into ``acc``; returns the steps the results hold;
- ``policies``: policy name -> the object the loop checkpoints, exports and pushes; ``behavior_policy``;
- :meth:`Algorithm.refresh_due` (streaming): whether the workers get new arguments now;
  :meth:`Algorithm.set_progress`: the run's progress in [0, 1] (schedules such as MF-Q's temperature);
- :meth:`Algorithm.state_dict` / :meth:`Algorithm.load_state_dict`: everything a resumed run needs besides
  the loop's own counters and random state.

Adding an algorithm means a folder under ``algos/`` with its worker and this class, and one line in
:mod:`unimarl.trainers.run.registry` naming its exporter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol


@dataclass(frozen=True)
class Learned:
    """What one :meth:`Algorithm.learn` call consumed."""

    env_steps: int
    agent_steps: int
    rounds: int
    """Worker results consumed (one per worker per synchronous iteration; one per arrived chunk)."""
    game_restarts: dict[str, int] = field(default_factory=dict)
    """Games the workers relaunched, per reason."""


class Algorithm(Protocol):
    """See the module docstring."""

    name: ClassVar[str]
    worker_cls: ClassVar[type]
    streaming: ClassVar[bool]
    policies: dict[str, Any]
    behavior_policy: dict[str, str]

    def plan(self) -> Any: ...
    def schedule_behaviors(self) -> list[str]: ...
    def collect_args(self) -> tuple[Any, ...]: ...
    def learn(
        self, results: Sequence[Any], acc: dict[str, list[float]], deadline: float | None
    ) -> Learned: ...
    def refresh_due(self, learned: Learned) -> bool: ...
    def set_progress(self, progress: float) -> None: ...
    def describe(self) -> str: ...
    def metrics(self) -> dict[str, float]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...
