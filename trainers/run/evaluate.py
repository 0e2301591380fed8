"""Evaluation of any run: its policies play a game as their exported models act, against a side or alone.

One evaluator for every algorithm. A side is

* ``random``: uniformly random actions (within the action masks); ``scripted``: the battle game's scripted
  baseline (:func:`~unimarl.trainers.envs.battles.scripted_choices`, one discrete branch);
* a ``.onnx`` model (for every behaviour it drives);
* a run folder (its latest checkpoint; a folder without checkpoints: the models of its ``onnx/`` manifest),
  or a ``checkpoint-N.pt`` of a run. ``PATH#POLICY`` picks one policy of the run for every behaviour.

A checkpoint is exported to ONNX first, with its algorithm's own export (MAPPO: the actor of
:func:`~unimarl.trainers.export.policies.mappo_source`; mean field:
:func:`~unimarl.trainers.export.meanfield.policy_model`, a Q policy at the temperature its training reached,
:mod:`unimarl.trainers.algos.meanfield.checkpoint`), for the game's own observation and action specs; every
side then acts through :class:`~unimarl.trainers.run.play.ModelActor`, with onnxruntime, exactly as
``unimarl play`` and the game's inference run the exported models: evaluation measures what ships. A
behaviour gets the run's policy for it (``policy_mapping``, exact name, name without ``?team=``); a behaviour
the run has no policy for (an MF self-play run trained ``Battle?team=0`` only, the side drives team 1) gets
the run's only policy, or needs ``#POLICY``. Mean-field models are fed their mean action as in training (by
Unity group, the run's neighbourhood); ``mean_action_ablation`` zeroes or shuffles it (does the policy use
it?).

Policies sample as their models do (``greedy``: the models' ``deterministic_*`` outputs; baselines always
sample). Games run through the training runner (:class:`~unimarl.trainers.collect.runner.EnvRunner`): returns
count as training's ``return/<behaviour>`` metrics, group rewards weighted by the run's
``group_reward_weight``; crashed games are relaunched.

Two modes:

* **head to head** (:func:`play_match`; the default on a game of two teams, ``Name?team=T``, or of exactly two
  behaviours): side A drives the first team, side B the second, in the same games. The result rule is the
  game's: a game that reports its kills (``<Game>/kills_team<k>`` statistics, as the battle game) is scored
  per battle (:class:`~unimarl.trainers.envs.battles.EnvBook`), more kills winning; any other game per agent
  episode by the sign of its final reward, as ML-Agents' ghost trainer reads it for ELO (> 0 won, < 0 lost, 0
  drawn). The first battle that ends decides which rule applies (agents of a battle game die, ending their
  episodes, long before it ends); a game none of whose battles ends (agents without a Unity group that restart
  one by one) is scored by final rewards after :data:`UNDECIDED_EPISODES` times the episodes asked for. Per
  side: win rate (a draw counts one half) with a Wilson interval, mean return (and kills) with bootstrap
  intervals. :func:`play_both_sides` plays both
  orientations and combines A's record, which removes any advantage of one team from the comparison.
* **alone** (:func:`play_returns`): each side drives every behaviour of the game by itself for ``episodes``
  agent episodes per behaviour; mean returns with bootstrap intervals, and their difference
  (:func:`returns_report`). Episodes of agents that share a game episode are not independent (teammates share
  rewards), so with team rewards the intervals are narrower than the truth.
"""

from __future__ import annotations

import logging
import pickle
import re
import tempfile
import time
import zlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from unimarl.trainers.algos.mappo.networks import build_actor
from unimarl.trainers.algos.meanfield.checkpoint import (
    CheckpointPolicy,
    CheckpointPolicyError,
    checkpoint_policy,
    is_mean_field_checkpoint,
)
from unimarl.trainers.algos.meanfield.learners import make_learner
from unimarl.trainers.algos.meanfield.mean_action import MeanFieldError
from unimarl.trainers.algos.meanfield.worker import baseline_actions
from unimarl.trainers.collect.runner import Collected, Decision, EnvRunner, EnvStep
from unimarl.trainers.core.checkpoints import checkpoint_files
from unimarl.trainers.core.config import TrainConfig, config_from_dict
from unimarl.trainers.core.errors import ConfigError, TrainerError
from unimarl.trainers.core.names import team_of
from unimarl.trainers.envs.battles import EnvBook, Outcome, group_id
from unimarl.trainers.envs.factory import AgentView, EnvFactory
from unimarl.trainers.export.meanfield import policy_model
from unimarl.trainers.export.policies import (
    ONNX_DIR,
    RunExportError,
    export_model,
    mappo_source,
    policy_for,
    read_manifest,
)
from unimarl.trainers.run.intervals import bootstrap_ci, record
from unimarl.trainers.run.play import (
    MEAN_ACTION_ABLATIONS,
    MeanFieldInput,
    ModelActor,
    PlayError,
    group_reward_weights,
)
from unimarl.trainers.selfplay.ghost import game_result

logger = logging.getLogger(__name__)

RANDOM, SCRIPTED = "random", "scripted"
BASELINES = (RANDOM, SCRIPTED)
KILLS, FINAL_REWARD = "kills", "final reward"
"""The two result rules of a head-to-head evaluation (module docstring)."""
UNDECIDED_EPISODES = 10
"""A head-to-head game in which no battle has ended by the time each team has ended this many times the
agent episodes asked for is scored by final rewards (its agents end one by one, outside any group battle)."""


class EvaluationError(TrainerError):
    """A side cannot be loaded or does not fit the game, or the evaluation cannot run (a game without two
    teams for a match, too few episodes in time)."""


class NotAMatchError(EvaluationError):
    """A head-to-head evaluation on a game that has neither two teams nor two behaviours."""


@dataclass(frozen=True)
class Side:
    """One contestant (module docstring): a baseline, a model file, a run's models, or a checkpoint."""

    label: str
    baseline: str | None = None
    """``random`` or ``scripted``."""
    source: Path | None = None
    """The ``.onnx`` file, the run folder (models of its manifest) or the checkpoint file."""
    policy: str = ""
    """``#POLICY``: the run's policy for every behaviour."""
    state: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    """The checkpoint's contents (None for the other kinds)."""
    config: TrainConfig | None = field(default=None, repr=False, compare=False)
    """The run's configuration (its ``config.yaml``), when it has one."""
    temperature: float | None = None
    """An MF-Q / IQL checkpoint policy's Boltzmann temperature: the one its training reached."""

    @property
    def run(self) -> Path | None:
        """The run folder of a run or checkpoint side."""
        if self.source is None or self.source.suffix == ".onnx":
            return None
        return self.source if self.source.is_dir() else self.source.parent.parent


def load_side(text: str) -> Side:
    """``random`` / ``scripted`` / ``MODEL.onnx`` / ``RUN_DIR_OR_CHECKPOINT[#POLICY]`` (module docstring)."""
    if text in BASELINES:
        return Side(text, baseline=text)
    path_text, _, policy = text.partition("#")
    path = Path(path_text)
    if not path.exists():
        raise EvaluationError(
            f"side '{text}': {path} does not exist; pass random, scripted, a .onnx model, a run folder or a "
            "checkpoint-N.pt"
        )
    if path.is_file() and path.suffix == ".onnx":
        return Side(path.name, source=path, policy=policy)
    if path.is_dir():
        found = checkpoint_files(path / "checkpoints") or checkpoint_files(path)
        if not found:
            if (path / ONNX_DIR).is_dir():
                _manifest(path)  # a folder of exported models: readable now, not at the first step
                return Side(path.name, source=path, policy=policy, config=_run_config(path))
            raise EvaluationError(
                f"no checkpoint-*.pt in {path} or {path / 'checkpoints'} (and no {ONNX_DIR}/ of exported "
                "models); pass a checkpoint file, a run folder or a .onnx model"
            )
        path = found[-1]
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError) as e:
        raise EvaluationError(
            f"{path} is not a readable checkpoint ({e}); pass a checkpoint-*.pt written by unimarl"
        ) from e
    if not isinstance(state, dict) or not isinstance(state.get("policies"), dict):
        raise EvaluationError(f"{path} is not a checkpoint of a unimarl run (it holds no policies)")
    label = f"{path.parent.parent.name}/{path.name}" + (f"#{policy}" if policy else "")
    run = path.parent.parent
    if is_mean_field_checkpoint(state):
        try:
            chosen = checkpoint_policy(path, state, policy)
        except CheckpointPolicyError as e:
            raise EvaluationError(str(e)) from e
        config = _run_config(run) if (run / "config.yaml").exists() else None
        return Side(label, None, path, chosen.name, state, config, chosen.temperature)
    if policy and policy not in state["policies"]:
        raise EvaluationError(f"{path} holds policies {sorted(state['policies'])}, not '{policy}'")
    if not (run / "config.yaml").exists():
        raise EvaluationError(
            f"{path} is a MAPPO checkpoint but {run / 'config.yaml'} does not exist; evaluate a checkpoint "
            "inside the run folder that wrote it"
        )
    return Side(label, None, path, policy, state, _run_config(run))


def _run_config(run: Path) -> TrainConfig:
    path = run / "config.yaml"
    if not path.exists():
        return TrainConfig()
    try:
        return config_from_dict(yaml.safe_load(path.read_text()) or {})
    except (OSError, yaml.YAMLError, ConfigError) as e:
        raise EvaluationError(
            f"{run}'s {path.name} cannot be read ({e}); evaluate a checkpoint inside the run folder that "
            "wrote it, with its config.yaml as training wrote it"
        ) from e


def _manifest(run: Path) -> dict[str, Any]:
    try:
        return read_manifest(run)
    except RunExportError as e:
        raise EvaluationError(str(e)) from e


# -- a side's models for a game -----------------------------------------------------------------------
@dataclass
class _Model:
    path: Path
    mean_field: MeanFieldInput


class _Driver:
    """What a side needs to act in a game: the model (or baseline) of each behaviour it drives, made on
    first use (a checkpoint's policies are exported into ``folder`` for the game's specs)."""

    def __init__(self, side: Side, folder: Path, ablation: str, seed: int) -> None:
        self.side, self.folder, self.ablation = side, folder, ablation
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(side.label.encode())]))
        self._models: dict[str, _Model] = {}
        self._exported: dict[str, Path] = {}
        self._manifest: dict[str, Any] | None = None

    def model(self, behavior: str, view: AgentView, layout: str | None) -> _Model:
        if behavior not in self._models:
            self._models[behavior] = self._make(behavior, view, layout)
        return self._models[behavior]

    def _make(self, behavior: str, view: AgentView, layout: str | None) -> _Model:
        side = self.side
        assert side.source is not None
        mean_field = MeanFieldInput(ablation=self.ablation, rng=self.rng)
        if side.state is None and side.source.suffix == ".onnx":
            return _Model(side.source, mean_field)
        if side.state is None:  # a run folder of exported models
            if self._manifest is None:
                self._manifest = _manifest(side.source)
            manifest, mapping = self._manifest, dict(side.config.policy_mapping if side.config else {})
            name = side.policy or policy_for(behavior, manifest, mapping) or _only(manifest, side, behavior)
            if not (manifest.get(name) or {}).get("file"):
                raise EvaluationError(f"{side.label}: policy '{name}' has no exported model in its manifest")
            return _Model(side.source / ONNX_DIR / manifest[name]["file"], mean_field)
        if is_mean_field_checkpoint(side.state):
            policy = checkpoint_policy(side.source, side.state, side.policy)
            hp = policy.hyperparameters
            mean_field = MeanFieldInput(
                hp.neighbourhood, hp.radius, hp.position_sensor, self.ablation, self.rng
            )
            return _Model(self._export_mean_field(policy, behavior, view, layout), mean_field)
        return _Model(self._export_mappo(behavior, view, layout), mean_field)

    def _export_mean_field(
        self, policy: CheckpointPolicy, behavior: str, view: AgentView, layout: str | None
    ) -> Path:
        key = f"{policy.name}@{view.spec}"
        if key not in self._exported:
            learner = make_learner(policy.trainer_type, view.spec, policy.hyperparameters, acting_only=True)
            try:
                learner.load_state_dict(policy.state)
            except (MeanFieldError, KeyError, RuntimeError) as e:
                raise EvaluationError(
                    f"{self.side.label}: policy '{policy.name}' does not fit behaviour '{behavior}' of this "
                    f"game ({e}); evaluate it on the game it was trained on"
                ) from e
            path = self._path(policy.name)
            policy_model(
                learner, path, name=policy.name, temperature=policy.temperature, visual_layout=layout
            )
            self._exported[key] = path
        return self._exported[key]

    def _export_mappo(self, behavior: str, view: AgentView, layout: str | None) -> Path:
        side = self.side
        assert side.state is not None and side.config is not None
        policies = side.state["policies"]
        name = side.config.policy_of(behavior)
        if side.policy:
            name = side.policy
        elif name not in policies:
            name = _only(policies, side, behavior)
        key = f"{name}@{view.spec}"
        if key not in self._exported:
            # the network the policy trained with: its own section, else its behaviour's (as make_plan reads)
            network = (
                side.config.behaviors.get(name) or side.config.behavior_settings(behavior)
            ).network_settings
            actor = build_actor(view.spec, network)
            try:
                actor.load_state_dict(policies[name]["modules"]["actor"])
            except (RuntimeError, KeyError) as e:
                raise EvaluationError(
                    f"{side.label}: policy '{name}' does not fit behaviour '{behavior}' of this game ({e}); "
                    "evaluate it on the game it was trained on"
                ) from e
            source = mappo_source(actor.eval(), view.spec, network, layout or "CHW")
            path = self._path(name)
            with torch.random.fork_rng(devices=[]):  # tracing draws random inputs
                export_model(name, source.actor, view.spec, path, 0, source.layout, source.mean_action_size)
            self._exported[key] = path
        return self._exported[key]

    def _path(self, policy: str) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder / f"{len(self._exported)}-{re.sub(r'[^A-Za-z0-9_.-]', '_', policy)}.onnx"


def _only(policies: dict[str, Any], side: Side, behavior: str) -> str:
    """The run's only policy, for a behaviour it has none for."""
    if len(policies) == 1:
        return next(iter(policies))
    raise EvaluationError(
        f"{side.label} holds policies {sorted(policies)}, none for behaviour '{behavior}'; pick one with "
        f"{side.source}#POLICY, or evaluate it on the game it was trained on"
    )


# -- playing -----------------------------------------------------------------------------------------
class _Players:
    """The runner's actor (:class:`~unimarl.trainers.collect.runner.Actor`): each behaviour's side acts,
    battles are booked per env (:class:`EnvBook`) with the kill statistics the games report at their end."""

    def __init__(
        self, runner: EnvRunner, drivers: list[_Driver], side_of: Callable[[str], int | None], greedy: bool
    ) -> None:
        self.runner, self.drivers, self.side_of, self.greedy = runner, drivers, side_of, greedy
        self._actors: dict[tuple[int, str], ModelActor] = {}
        self.books = [EnvBook(i, {}, (), dict) for i in range(len(runner.envs))]
        for i, book in enumerate(self.books):
            book.register(runner.open_episodes(i), lambda a, i=i: runner.behavior_of(i, a), runner.infos[i])
        self.outcomes: list[Outcome] = []
        self.kill_stats: list[bool] = []
        """Per outcome: whether the game reported the kills of each of its behaviours."""
        self.stats: dict[str, list[float]] = defaultdict(list)

    def driver(self, behavior: str) -> _Driver:
        side = self.side_of(behavior)
        if side is None:
            raise EvaluationError(
                f"behaviour '{behavior}' appeared during the evaluation and belongs to no side (its team is "
                "neither side's); have the game report every behaviour from its first step"
            )
        return self.drivers[side]

    def act(self, decisions: list[Decision]) -> list[dict[str, Any]]:
        runner = self.runner
        acting: dict[tuple[int, str], list[str]] = defaultdict(list)
        for i, agent, behavior in decisions:
            if behavior not in runner.views:
                runner.views[behavior] = runner.view_for(i, agent, behavior)
            acting[(i, behavior)].append(agent)
        actions: list[dict[str, Any]] = [{} for _ in runner.envs]
        for (i, behavior), agents in sorted(acting.items()):
            driver, view = self.driver(behavior), runner.views[behavior]
            raws = [runner.obs[i][a] for a in agents]
            if driver.side.baseline is not None:
                chosen = self._baseline(driver, view, raws, agents, i)
            else:
                actor = self._actors.get((i, behavior))
                if actor is None:
                    layout = runner.visual_layouts(behavior, i).get(behavior)
                    model = driver.model(behavior, view, layout)
                    actor = ModelActor(model.path, view, layout, not self.greedy, mean_field=model.mean_field)
                    self._actors[(i, behavior)] = actor
                groups = [group_id(runner.infos[i].get(a)) for a in agents]
                chosen = actor.act(agents, raws, groups)
            actions[i].update(zip(agents, chosen, strict=True))
        return actions

    def _baseline(self, driver: _Driver, view: AgentView, raws: list, agents: list[str], i: int) -> list[Any]:
        act = view.spec.action_spec
        name = driver.side.baseline
        if act.continuous_size == 0 and len(act.discrete_branches) == 1:
            _, mask = view.stack(raws)
            if mask is None:
                mask = np.ones((len(raws), act.discrete_branches[0]), np.float32)
            chosen = baseline_actions(f"baseline:{name}", mask, len(raws), driver.rng)
            return [view.to_env_action(np.zeros(0), np.array([a])) for a in chosen]
        if name == SCRIPTED:
            raise EvaluationError(
                f"the scripted baseline plays the battle game's single discrete branch; this behaviour has "
                f"{act}: use random or a trained side"
            )
        out = []
        for agent, raw in zip(agents, raws, strict=True):
            space = self.runner.envs[i].action_space(agent)
            space.seed(int(driver.rng.integers(2**31)))
            out.append(space.sample(raw["action_mask"]) if isinstance(raw, dict) else space.sample())
        return out

    def observe(self, steps: list[EnvStep]) -> None:
        runner = self.runner
        for env_step in steps:
            i = env_step.env
            ended = [e for e in env_step.ended if not e.lost]  # a relaunched game's episodes end no battle
            battles = self.books[i].step(
                ended, env_step.started, lambda a, i=i: runner.behavior_of(i, a), runner.infos[i]
            )
            if not battles:
                continue
            env = runner.envs[i]
            stats = env.connection.stats.get_and_reset_stats() if runner.unity[i] else {}
            for outcome in self.books[i].outcomes(battles, stats, ()):
                self.outcomes.append(outcome)
                self.kill_stats.append(all(_kills_key(b) in stats for b in outcome.returns))
            for key, values in stats.items():
                self.stats[key].extend(float(value) for value, _ in values)

    def restarted(self, env: int) -> None:
        runner = self.runner
        self.books[env].restart(
            runner.open_episodes(env), lambda a: runner.behavior_of(env, a), runner.infos[env]
        )
        for (i, _), actor in self._actors.items():
            if i == env and actor.tracker is not None:
                actor.tracker.reset()


def _kills_key(behavior: str) -> str:
    game, _, team = behavior.partition("?team=")
    return f"{game}/kills_team{team}" if team else ""


@dataclass
class _Tally:
    """What a head-to-head or lone evaluation has seen so far."""

    returns: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    finals: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    agent_steps: int = 0
    env_steps: int = 0
    restarts: dict[str, int] = field(default_factory=dict)

    def add(self, done: Collected) -> None:
        for behavior, rets in done.episode_returns.items():
            self.returns[behavior].extend(rets)
        for behavior, finals in done.final_rewards.items():
            self.finals[behavior].extend(finals)
        self.agent_steps += done.agent_steps
        self.env_steps += done.env_steps
        for reason, n in done.game_restarts.items():
            self.restarts[reason] = self.restarts.get(reason, 0) + n


PROGRESS_EVERY_S = 10.0
"""Seconds between two progress lines of an evaluation."""


class _Progress:
    """Hands ``report`` a line about every :data:`PROGRESS_EVERY_S` seconds."""

    def __init__(self, report: Callable[[str], None] | None, start: float) -> None:
        self.report, self.start, self.last = report, start, start

    def __call__(self, line: str) -> None:
        now = time.perf_counter()
        if self.report is not None and now - self.last >= PROGRESS_EVERY_S:
            self.report(f"{line} ({now - self.start:.0f} s)")
            self.last = now


def _check_counts(**counts: int) -> None:
    bad = {k: v for k, v in counts.items() if v < 1}
    if bad:
        text = ", ".join(f"{k}={v}" for k, v in counts.items())
        raise EvaluationError(f"{text}: pass {' and '.join('--' + k.replace('_', '-') for k in bad)} >= 1")


def match_teams(behaviors: list[str]) -> list[list[str]] | None:
    """The behaviours of each of the two sides of a head-to-head game: by team (``Name?team=T``) when the
    game has two teams, else one behaviour each when it has exactly two; None for any other game."""
    teams = sorted({team_of(b) for b in behaviors})
    if len(teams) == 2:
        return [sorted(b for b in behaviors if team_of(b) == t) for t in teams]
    if len(behaviors) == 2:
        return [[b] for b in sorted(behaviors)]
    return None


def _side_of(teams: list[list[str]]) -> Callable[[str], int | None]:
    """Behaviour -> the side that drives it: its team's (a behaviour met late joins its team's side, when the
    sides are teams)."""
    known = {b: k for k, team in enumerate(teams) for b in team}
    by_team = {team_of(team[0]): k for k, team in enumerate(teams)}
    split_by_team = len(by_team) == 2
    return lambda b: known.get(b, by_team.get(team_of(b)) if split_by_team else None)


def _weights(sides: list[tuple[Side, list[str]]]) -> dict[str, float]:
    """Group-reward weight per behaviour: the run's of the side that drives it; a side without a run
    (a baseline, a bare model) takes the other side's for the same behaviour name, else the default."""
    weights: dict[str, float] = {}
    by_name: dict[str, float] = {}
    for side, behaviors in sides:
        if side.run is not None:
            try:
                mine = group_reward_weights(side.run, behaviors)
            except PlayError as e:
                raise EvaluationError(str(e)) from e
            weights.update(mine)
            by_name.update({b.split("?", 1)[0]: w for b, w in mine.items()})
    default = TrainConfig()
    for side, behaviors in sides:
        if side.run is None:
            for b in behaviors:
                fallback = default.behavior_settings(b).group_reward_weight
                weights[b] = by_name.get(b.split("?", 1)[0], fallback)
    return weights


def play_match(
    factory: EnvFactory,
    side_a: Side,
    side_b: Side,
    *,
    battles: int = 50,
    episodes: int = 100,
    num_envs: int = 1,
    seed: int = 0,
    greedy: bool = False,
    timeout_s: float = 3600.0,
    mean_action_ablation: str = "",
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Head to head (module docstring): A on the game's first team, B on the second, until ``battles`` battles
    (games that report kills) or ``episodes`` agent episodes of each team (any other game) ended. Returns the
    report (JSON-ready). ``progress`` receives a line about every :data:`PROGRESS_EVERY_S` seconds."""
    if mean_action_ablation not in ("", *MEAN_ACTION_ABLATIONS):
        raise EvaluationError(
            f"mean_action_ablation {mean_action_ablation!r}: use one of {list(MEAN_ACTION_ABLATIONS)}"
        )
    _check_counts(battles=battles, episodes=episodes, num_envs=num_envs)
    runner = EnvRunner(factory, num_envs, seed=seed)
    try:
        behaviors = sorted(runner.specs())
        teams = match_teams(behaviors)
        if teams is None:
            raise NotAMatchError(
                "a match needs a game of two teams (behaviour ids Name?team=T) or two behaviours; this "
                f"game's behaviours are {behaviors}: compare the sides' returns instead (eval --alone)"
            )
        side_of = _side_of(teams)
        runner.group_weight = _weights([(side_a, teams[0]), (side_b, teams[1])])
        with tempfile.TemporaryDirectory(prefix="unimarl-eval-") as tmp:
            drivers = [
                _Driver(side, Path(tmp) / key, mean_action_ablation, seed)
                for key, side in (("a", side_a), ("b", side_b))
            ]
            players = _Players(runner, drivers, side_of, greedy)
            tally, start = _Tally(), time.perf_counter()
            report_progress = _Progress(progress, start)

            def team_episodes() -> list[int]:
                return [sum(len(tally.finals[b]) for b in team) for team in teams]

            while True:
                rule = None if not players.outcomes else KILLS if players.kill_stats[0] else FINAL_REWARD
                if rule is None and min(team_episodes()) >= UNDECIDED_EPISODES * episodes:
                    rule = FINAL_REWARD  # no battle ends in this game: its agents end one by one
                if rule == KILLS and len(players.outcomes) >= battles:
                    break
                if rule == FINAL_REWARD and min(team_episodes()) >= episodes:
                    break
                if time.perf_counter() - start > timeout_s:
                    done = len(players.outcomes) if rule == KILLS else min(team_episodes())
                    unit = "battles" if rule == KILLS else "agent episodes per team"
                    target = battles if rule == KILLS else episodes
                    raise EvaluationError(f"only {done} of {target} {unit} finished in {timeout_s:.0f} s")
                tally.add(runner.run(players, 16, time.perf_counter()))
                report_progress(
                    f"{side_a.label} vs {side_b.label}: {len(players.outcomes)} of {battles} battles, "
                    f"{min(team_episodes())} agent episodes per team"
                )
        for key, values in runner.drain_stats().items():
            players.stats[key].extend(values)
        wall = time.perf_counter() - start
    finally:
        runner.close()
    labels = _labels(side_a, side_b)
    if rule == KILLS:
        report = kills_report(players.outcomes[:battles], teams, labels)
    else:
        report = _finals_report(tally, teams, labels, episodes)
    report.update(
        labels=list(labels),
        rule=rule,
        game_stats={key: float(np.mean(v)) for key, v in sorted(players.stats.items()) if v},
        greedy=greedy,
        mean_action_ablation=mean_action_ablation,
        agent_steps_per_s=tally.agent_steps / wall,
        env_steps=tally.env_steps,
        wall_s=wall,
        game_restarts=tally.restarts,
    )
    return report


def _labels(side_a: Side, side_b: Side) -> tuple[str, str]:
    if side_a.label == side_b.label:
        return f"{side_a.label} (A)", f"{side_b.label} (B)"
    return side_a.label, side_b.label


def kills_report(outcomes: list[Outcome], teams: list[list[str]], labels: tuple[str, str]) -> dict[str, Any]:
    """Per side, battles won by kills (a draw counts one half), mean kills and mean agent return."""
    n = len(outcomes)
    report: dict[str, Any] = {"battles": n, "sides": {}}
    for k, (label, team) in enumerate(zip(labels, teams, strict=True)):
        other = teams[1 - k]
        kills = np.array([sum(o.kills.get(b, 0.0) for b in team) for o in outcomes], np.float64)
        theirs = np.array([sum(o.kills.get(b, 0.0) for b in other) for o in outcomes], np.float64)
        rets = np.array(
            [np.mean([o.returns[b] for b in team if b in o.returns] or [0.0]) for o in outcomes], np.float64
        )
        report["sides"][label] = {
            "team": team_of(team[0]),
            "behaviors": team,
            **record(int((kills > theirs).sum()), int((kills == theirs).sum()), n),
            "kills_mean": float(kills.mean()) if n else float("nan"),
            "kills_ci": bootstrap_ci(kills),
            "return_mean": float(rets.mean()) if n else float("nan"),
            "return_ci": bootstrap_ci(rets, seed=1),
        }
    return report


def _finals_report(
    tally: _Tally, teams: list[list[str]], labels: tuple[str, str], episodes: int
) -> dict[str, Any]:
    """Per side, its first ``episodes`` agent episodes read by their final reward, and their mean return."""
    report: dict[str, Any] = {"episodes": episodes, "sides": {}}
    for label, team in zip(labels, teams, strict=True):
        finals = [f for b in team for f in tally.finals[b]][:episodes]
        rets = np.asarray([r for b in team for r in tally.returns[b]][:episodes], np.float64)
        results = [game_result(f) for f in finals]
        report["sides"][label] = {
            "team": team_of(team[0]),
            "behaviors": team,
            **record(results.count(1.0), results.count(0.5), len(results)),
            "return_mean": float(rets.mean()),
            "return_ci": bootstrap_ci(rets),
        }
    return report


def play_both_sides(factory: EnvFactory, side_a: Side, side_b: Side, **kwargs: Any) -> dict[str, Any]:
    """:func:`play_match` twice, A on the first team then on the second; A's combined record.

    ``kwargs`` go to :func:`play_match` (``battles`` / ``episodes`` are per orientation). Returned: both
    reports under ``orientations`` and, over all of them, A's wins, draws, losses and win rate with its
    Wilson interval, its win rate per orientation and the mean throughput."""
    first = play_match(factory, side_a, side_b, **kwargs)
    second = play_match(factory, side_b, side_a, **kwargs)
    mine = [first["sides"][first["labels"][0]], second["sides"][second["labels"][1]]]
    games = sum(s["wins"] + s["draws"] + s["losses"] for s in mine)
    unit = "battles" if first["rule"] == KILLS else "episodes"
    return {
        "side": side_a.label,
        "rule": first["rule"],
        unit: games,
        **record(sum(s["wins"] for s in mine), sum(s["draws"] for s in mine), games),
        "per_orientation": [s["win_rate"] for s in mine],
        "agent_steps_per_s": (first["agent_steps_per_s"] + second["agent_steps_per_s"]) / 2,
        "orientations": [first, second],
    }


def play_returns(
    factory: EnvFactory,
    side: Side,
    *,
    episodes: int,
    num_envs: int = 1,
    seed: int = 0,
    greedy: bool = False,
    timeout_s: float = 3600.0,
    group_weights_from: Side | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, list[float]]:
    """The returns of the first ``episodes`` agent episodes of every behaviour, ``side`` driving them all
    (a side without a run counts group rewards with ``group_weights_from``'s weights; ``progress`` as for
    :func:`play_match`)."""
    _check_counts(episodes=episodes, num_envs=num_envs)
    runner = EnvRunner(factory, num_envs, seed=seed)
    try:
        behaviors = sorted(runner.specs())
        counted_by = side if side.run is not None or group_weights_from is None else group_weights_from
        runner.group_weight = _weights([(counted_by, behaviors)])
        with tempfile.TemporaryDirectory(prefix="unimarl-eval-") as tmp:
            players = _Players(runner, [_Driver(side, Path(tmp), "", seed)], lambda b: 0, greedy)
            tally, start = _Tally(), time.perf_counter()
            report_progress = _Progress(progress, start)
            while min(len(tally.returns[b]) for b in behaviors) < episodes:
                if time.perf_counter() - start > timeout_s:
                    counts = {b: len(tally.returns[b]) for b in behaviors}
                    raise EvaluationError(
                        f"only {counts} of {episodes} episodes per behaviour finished in {timeout_s:.0f} s"
                    )
                tally.add(runner.run(players, 64, time.perf_counter()))
                behaviors = sorted({*behaviors, *tally.returns})
                done = ", ".join(f"{b} {len(tally.returns[b])}" for b in behaviors)
                report_progress(f"{side.label} alone: {done} of {episodes} episodes")
        return {b: r[:episodes] for b, r in tally.returns.items()}
    finally:
        runner.close()


# -- reports -----------------------------------------------------------------------------------------
def returns_report(results: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    """The report (JSON-ready) from each side's returns: ``{side label: {behaviour: returns}}``."""
    report: dict[str, Any] = {"sides": {}}
    for label, per_behavior in results.items():
        report["sides"][label] = {
            b: {
                "episodes": len(r),
                "return_mean": float(np.mean(r)),
                "return_ci": bootstrap_ci(np.asarray(r, np.float64)),
            }
            for b, r in sorted(per_behavior.items())
        }
    labels = list(results)
    if len(labels) == 2:
        a, b = (results[label] for label in labels)
        report["difference"] = {
            behavior: {
                "mean": float(np.mean(a[behavior]) - np.mean(b[behavior])),
                "ci": bootstrap_ci(np.asarray(a[behavior]), np.asarray(b[behavior]), seed=1),
            }
            for behavior in sorted(set(a) & set(b))
        }
    return report


def format_returns(report: dict[str, Any]) -> str:
    """A plain-text table of :func:`returns_report`'s report."""
    lines = [f"{'side':<36} {'behaviour':<28} {'episodes':>8}  mean return (95% CI)"]
    for label, per_behavior in report["sides"].items():
        for behavior, s in per_behavior.items():
            lo, hi = s["return_ci"]
            lines.append(
                f"{label[:36]:<36} {behavior[:28]:<28} {s['episodes']:>8}  "
                f"{s['return_mean']:.3f} [{lo:.3f}, {hi:.3f}]"
            )
    if "difference" in report:
        first, second = list(report["sides"])
        for behavior, d in report["difference"].items():
            lo, hi = d["ci"]
            lines.append(f"difference {first} - {second} on {behavior}: {d['mean']:.3f} [{lo:.3f}, {hi:.3f}]")
    return "\n".join(lines)


def format_match(report: dict[str, Any]) -> str:
    """A plain-text table of :func:`play_match` or :func:`play_both_sides`."""
    lines = []
    for match in report.get("orientations", [report]):
        unit = "battles" if match["rule"] == KILLS else "episodes"
        lines.append(
            f"{match[unit]} {unit} per side, scored by {match['rule']}"
            + (
                f", mean-action ablation {match['mean_action_ablation']}"
                if match["mean_action_ablation"]
                else ""
            )
        )
        lines.append(
            f"{'side':<36} {'team':>4}  win rate (95% CI)      W / D / L        mean return (95% CI)"
            + ("        mean kills (95% CI)" if unit == "battles" else "")
        )
        for label, s in match["sides"].items():
            lo, hi = s["win_rate_ci"]
            rlo, rhi = s["return_ci"]
            line = (
                f"{label[:36]:<36} {s['team']:>4}  {s['win_rate']:.3f} [{lo:.3f}, {hi:.3f}]  "
                f"{s['wins']:>4} / {s['draws']:>3} / {s['losses']:<4}  "
                f"{s['return_mean']:.3f} [{rlo:.3f}, {rhi:.3f}]"
            )
            if "kills_mean" in s:
                klo, khi = s["kills_ci"]
                line += f"  {s['kills_mean']:.2f} [{klo:.2f}, {khi:.2f}]"
            lines.append(line)
        for key, value in match["game_stats"].items():
            lines.append(f"  game statistic {key}: {value:.3f}")
    if "orientations" in report:
        lo, hi = report["win_rate_ci"]
        as_first, as_second = report["per_orientation"]
        lines.append(
            f"{report['side']} over both orientations: win rate {report['win_rate']:.3f} "
            f"[{lo:.3f}, {hi:.3f}] ({report['wins']} won, {report['draws']} drawn, {report['losses']} lost); "
            f"on the first team {as_first:.3f}, on the second {as_second:.3f}"
        )
    return "\n".join(lines)
