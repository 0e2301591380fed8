"""Training configuration: defaults in code, YAML overrides checked strictly.

The YAML schema follows ML-Agents (``behaviors:`` with ``trainer_type``, ``hyperparameters``,
``network_settings``, ``max_steps``, ``time_horizon``, ``summary_freq``, ``checkpoint_interval``;
``environment_parameters``; ``engine_settings``) plus the sections ``env:`` (what to train on), ``run:``
(run id, workers, device, budgets) and ``policy_mapping:`` (behaviour -> policy name). Every key is checked:
an unknown key raises :class:`ConfigError` naming the key, its section and the nearest valid key.

Step counts (``max_steps``, ``summary_freq``, ``checkpoint_interval``) are *env steps*: one per ``step()``
of one environment, summed over all environments of all workers. All behaviours are collected together, so
the run uses the largest ``max_steps`` and ``time_horizon`` and the smallest ``summary_freq`` and
``checkpoint_interval`` of the behaviours present in the game. ``behaviors: default:`` applies to behaviours
not named explicitly; a Unity behaviour ``Name?team=0`` matches the config key ``Name?team=0`` first, then
``Name``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import yaml

from unimarl.trainers.core.errors import ConfigError
from unimarl.trainers.core.mappo_settings import GhostSettings, MAPPOHyperparameters, NetworkSettings
from unimarl.trainers.core.mf_settings import (
    MEAN_FIELD_TRAINERS,
    MeanFieldHyperparameters,
    SelfPlaySettings,
    check_settings,
)
from unimarl.trainers.core.mlagents_schema import read_either_spelling

SUPPORTED_TRAINERS = ("mappo", *MEAN_FIELD_TRAINERS)
DEFAULT_BEHAVIOR = "default"

ENVS_PER_WORKER = {"editor": 1, "pettingzoo": 32, "sim": 4, "build": 4}
"""``env.num_envs`` when unset, per env kind. In-process PettingZoo envs are cheap and share one batched
forward per step, so a worker steps many (MPE simple_spread on 2 cores: 16 to 128 envs per worker train at
about the same rate per CPU second, 8 about 25% slower). Sim games and Unity builds run one game process per
env, so a worker steps few (coop_nav: 4 games within 15% of 8 or 16, with half or a quarter of the start-up;
MF-Q on battle: 2 to 8 games alike). The Editor is one game."""


@dataclass
class EnvSettings:
    """What to train on: at most one of ``build``, ``editor``, ``sim``, ``pettingzoo``; none means the Editor
    (as with ``mlagents-learn``, a config that names only its behaviours waits for Play in the Editor)."""

    build: str | None = None
    """Path to a Unity player build (launched headless, one process per environment)."""
    editor: bool = False
    """Train on the Unity Editor: listen on ``editor_port`` and wait for Play to be pressed (one env, one
    worker). Also the mode when no other env is given."""
    editor_port: int = 5004
    """Port the Editor dials when ``editor`` is true (ML-Agents' default editor port)."""
    sim: str | None = None
    """Name of a stand-in game (``unimarl.sim.GAMES``), written into the run folder, launched as a build."""
    args: list[str] = field(default_factory=list)
    """Extra command-line arguments for the build or sim game."""
    pettingzoo: str | None = None
    """``package.module:factory`` (or ``path/to/file.py:factory``) returning a PettingZoo ParallelEnv."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for the ``pettingzoo`` factory."""
    num_envs: int | None = None
    """Environments per rollout worker (each worker runs one batched forward over all of them per step);
    unset: by env kind (:data:`ENVS_PER_WORKER`): 32 in-process PettingZoo envs, 4 game processes of a sim
    game or build, 1 in Editor mode (:attr:`envs_per_worker` holds the value used)."""
    timeout_s: float = 60.0
    """Seconds to wait for a game's next message before failing with its log file named."""
    num_areas: int = 1
    """Areas per Unity/sim environment (sent in the handshake)."""
    max_lifetime_restarts: int = 10
    """Times one game may be relaunched after it exited, was killed or stopped answering (-1: no limit);
    ML-Agents' ``--max-lifetime-restarts``."""
    restarts_rate_limit_n: int = 1
    """Relaunches of one game allowed within ``restarts_rate_limit_period_s`` (-1: no limit); one more ends
    the run. ML-Agents' ``--restarts-rate-limit-n``."""
    restarts_rate_limit_period_s: float = 60.0
    """The window of ``restarts_rate_limit_n``; ML-Agents' ``--restarts-rate-limit-period-s``."""

    @property
    def envs_per_worker(self) -> int:
        """``num_envs``, or its default for this kind of env (:data:`ENVS_PER_WORKER`)."""
        if self.num_envs is not None:
            return self.num_envs
        return ENVS_PER_WORKER[self.kind]

    @property
    def kind(self) -> str:
        """ "build", "editor", "sim" or "pettingzoo" ("editor" when none is set)."""
        chosen = [
            k
            for k, v in (
                ("build", self.build),
                ("editor", self.editor),
                ("sim", self.sim),
                ("pettingzoo", self.pettingzoo),
            )
            if v
        ]
        if len(chosen) > 1:
            raise ConfigError(
                f"env: set one of build, editor, sim, pettingzoo (got {chosen}); "
                "e.g. `env: {sim: coop_nav}` or pass --env sim:coop_nav (none: the Unity Editor)"
            )
        return chosen[0] if chosen else "editor"


@dataclass
class EngineSettings:
    """Sent to Unity/sim games through the EngineConfigurationChannel at start-up."""

    width: int = 84
    """Window width in pixels (only matters with graphics)."""
    height: int = 84
    """Window height in pixels."""
    quality_level: int = 5
    """Unity quality level."""
    time_scale: float = 20.0
    """Game speed multiplier (ML-Agents' training default)."""
    target_frame_rate: int = -1
    """Frame-rate cap; -1 = unlimited."""
    capture_frame_rate: int = 60
    """Fixed frame rate used for time steps."""
    no_graphics: bool = True
    """Launch builds with ``-nographics``."""


@dataclass
class BehaviorSettings:
    """Training settings of one behaviour (ML-Agents' ``behaviors.<name>`` section)."""

    trainer_type: str = "mappo"
    """Learning algorithm; supported: mappo, mfq (mean-field Q), mfac (mean-field actor-critic)."""
    hyperparameters: MAPPOHyperparameters = field(default_factory=MAPPOHyperparameters)
    """Learner hyperparameters (see MAPPOHyperparameters)."""
    network_settings: NetworkSettings = field(default_factory=NetworkSettings)
    """Actor and critic network shape."""
    max_steps: int = 500_000
    """Env steps after which training stops."""
    time_horizon: int = 64
    """Env steps each environment runs per iteration (trajectory fragment length; bootstrapped at the cut)."""
    summary_freq: int = 10_000
    """Env steps between metrics lines (metrics.jsonl, TensorBoard, console)."""
    checkpoint_interval: int = 100_000
    """Env steps between checkpoints."""
    keep_checkpoints: int = 5
    """Checkpoints kept in the run folder (the newest; the run keeps the largest number its behaviours ask
    for)."""
    group_reward_weight: float = 1.0
    """Weight of the group reward added to each agent's own reward. Unity games give a cooperative team's
    reward through ``SimpleMultiAgentGroup.AddGroupReward``; the bridge reports it per agent as
    ``infos["group_reward"]``, and every agent of the group receives ``reward + weight * group_reward``
    (as ML-Agents' extrinsic reward signal does). 0 ignores group rewards (a warning says so once)."""
    mean_field: MeanFieldHyperparameters = field(default_factory=MeanFieldHyperparameters)
    """mfq / mfac settings; in YAML they are given as ``hyperparameters:`` of an mfq / mfac behaviour."""
    self_play: SelfPlaySettings | None = None
    """mfq / mfac: learn against frozen snapshots of this behaviour that drive ``self_play.opponent``."""
    ghost: GhostSettings | None = None
    """Self-play between the game's teams (``Name?team=T``) against snapshots of the policies, one team
    learning at a time, with ELO (ML-Agents' ghost trainer: its ``self_play`` section); for every trainer
    type (mfq / mfac: instead of ``self_play``)."""


@dataclass
class RunSettings:
    """Where results go, how many workers, and the run's budget."""

    run_id: str = "run"
    """Name of the run folder under results_dir."""
    results_dir: str = "results"
    """Folder holding run folders."""
    resume: bool = False
    """Continue the run from its latest checkpoint (steps, optimisers, normalisers, RNG)."""
    force: bool = False
    """Replace an existing run folder of the same run id (its checkpoints, models, metrics and logs are
    deleted) instead of refusing to start; ignored with ``resume``. mlagents-learn's ``--force``."""
    initialize_from: str | None = None
    """Run id (under ``results_dir``) whose latest checkpoint gives this run's starting weights, normalisers
    and optimiser state; the step counters start at 0. Ignored with ``resume``. mlagents-learn's
    ``--initialize-from``."""
    seed: int = 0
    """Seed of policies, samplers and environments."""
    device: str = "auto"
    """Learner device: auto (cuda when available), cpu or cuda. Rollout workers always run on CPU."""
    num_workers: int = 1
    """Rollout workers; 1 = in-process (serial backend), more = Ray actors. Ray takes seconds to start (8-20 s
    on 2 busy cores), so more workers are a choice, not the default (MAPPO on MPE simple_spread, 2 cores, 32
    envs each: 2 workers trained about 20% faster than 1 once started)."""
    backend: str = "auto"
    """Rollout backend: auto (serial for 1 worker, ray otherwise), serial or ray."""
    address: str | None = None
    """Ray cluster address (e.g. "auto"); None starts a local Ray on loopback."""
    max_steps: int | None = None
    """Env-step budget overriding the behaviours' max_steps."""
    max_seconds: float | None = None
    """Wall-clock budget; the run ends cleanly with a checkpoint when reached."""


@dataclass
class HotSwapSettings:
    """Pushing policies into the running games while training (``unimarl.trainers.export.hotswap``)."""

    every: int = 0
    """Push every K iterations (0 = only on demand: ``touch results/RUN_ID/push_policy``)."""


SAMPLER_TYPES = ("uniform", "gaussian", "multirangeuniform")


@dataclass
class SamplerSettings:
    """An environment parameter the game draws anew each time it reads it (once per episode in ML-Agents'
    games: ``Academy.Instance.EnvironmentParameters.GetWithDefault`` at episode start), ML-Agents' spelling.

    ``sampler_parameters``: uniform ``min_value``, ``max_value``; gaussian ``mean``, ``st_dev``;
    multirangeuniform ``intervals`` ([[min, max], ...]); each optionally ``seed`` (default: the run's seed).
    """

    sampler_type: str = ""
    sampler_parameters: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = "environment_parameters sampler"
        if self.sampler_type not in SAMPLER_TYPES:
            raise ConfigError(
                f"{where}: sampler_type {self.sampler_type!r}; use one of {', '.join(SAMPLER_TYPES)} "
                "(or give the parameter one number)"
            )
        needed = {
            "uniform": ("min_value", "max_value"),
            "gaussian": ("mean", "st_dev"),
            "multirangeuniform": ("intervals",),
        }[self.sampler_type]
        p = self.sampler_parameters
        unknown = set(p) - {*needed, "seed"}
        missing = [k for k in needed if k not in p]
        if unknown or missing:
            raise ConfigError(
                f"{where} {self.sampler_type}: sampler_parameters needs {', '.join(needed)} (and optionally "
                f"seed); got {sorted(p)}"
            )
        try:
            if self.sampler_type == "multirangeuniform":
                intervals = [(float(low), float(high)) for low, high in p["intervals"]]
                numbers = [x for pair in intervals for x in pair]
                bad = not intervals or any(low > high for low, high in intervals)
            else:
                numbers = [float(p[k]) for k in needed]
                bad = numbers[0] > numbers[1] if self.sampler_type == "uniform" else numbers[1] < 0
            seed = int(p.get("seed", 0))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where} {self.sampler_type}: sampler_parameters {p}: {e}") from e
        if bad or not all(math.isfinite(x) for x in numbers) or abs(seed) > 2**31 - 1:
            raise ConfigError(
                f"{where} {self.sampler_type}: sampler_parameters {p} are out of range (uniform: "
                "min_value <= max_value; gaussian: st_dev >= 0; multirangeuniform: at least one [min, max] "
                "with min <= max; finite numbers; seed a 32-bit integer)"
            )


MEASURES = ("progress", "reward")


@dataclass
class CompletionCriteria:
    """When a curriculum lesson is done (ML-Agents' ``CompletionCriteriaSettings``, same names and defaults).

    ``measure: progress``: the run's progress (env steps / ``max_steps``, or the share of ``max_seconds``
    spent when that is further; ML-Agents: the behaviour's trainer steps / its ``max_steps``) passes
    ``threshold`` (a fraction, 0 to 1). ``measure: reward``: the mean
    cumulative reward of ``behavior``'s last ``min_lesson_length`` episodes (smoothed ``0.25 * previous +
    0.75 * mean`` with ``signal_smoothing``) passes ``threshold``. No lesson ends before ``behavior`` has
    finished ``min_lesson_length`` episodes in it."""

    behavior: str = ""
    """The behaviour whose progress or reward counts (its name, or the part before ``?``)."""
    measure: str = "reward"
    threshold: float = 0.0
    min_lesson_length: int = 0
    signal_smoothing: bool = True
    require_reset: bool = False
    """Reset every game when the lesson changes (the episodes running then are dropped, not trained on)."""

    def check(self, where: str) -> None:
        if not self.behavior:
            raise ConfigError(f"{where}.behavior is required: the behaviour whose progress or reward counts")
        if self.measure not in MEASURES:
            raise ConfigError(f"{where}.measure must be progress or reward, got {self.measure!r}")
        if self.measure == "progress" and not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(
                f"{where}.threshold {self.threshold} is not a fraction of training; with measure: progress "
                "it must be between 0 and 1"
            )
        if self.min_lesson_length < 0:
            raise ConfigError(f"{where}.min_lesson_length must be >= 0, got {self.min_lesson_length}")


@dataclass
class Lesson:
    """One lesson of a curriculum: the parameter's value while it lasts, and when it ends."""

    name: str = ""
    value: float | SamplerSettings = 0.0
    """A number, or a sampler the game draws from (:class:`SamplerSettings`)."""
    completion_criteria: CompletionCriteria | None = None
    """Required on every lesson but the last (which lasts to the end of training)."""


@dataclass
class CurriculumSettings:
    """An environment parameter that changes as training goes: ML-Agents' ``curriculum:`` list of lessons,
    played in order (:mod:`unimarl.trainers.run.curriculum`)."""

    curriculum: list[Lesson] = field(default_factory=list)

    def check(self, where: str) -> None:
        if not self.curriculum:
            raise ConfigError(f"{where}.curriculum has no lessons; give at least one (name, value)")
        last = len(self.curriculum) - 1
        for i, lesson in enumerate(self.curriculum):
            at = f"{where}.curriculum[{i}]"
            if not lesson.name:
                raise ConfigError(f"{at}.name is required (it names the lesson in logs)")
            if lesson.completion_criteria is not None:
                lesson.completion_criteria.check(f"{at}.completion_criteria")
            elif i < last:
                raise ConfigError(
                    f"{at} (lesson {lesson.name!r}) has no completion_criteria, so the lessons after it "
                    "would never be reached; every lesson but the last needs one"
                )


EnvironmentParameter: TypeAlias = float | SamplerSettings | CurriculumSettings
"""One ``environment_parameters`` entry: a number, a sampler, or a curriculum of lessons."""


@dataclass
class TrainConfig:
    """A whole training run."""

    env: EnvSettings = field(default_factory=EnvSettings)
    """What to train on."""
    run: RunSettings = field(default_factory=RunSettings)
    """Run folder, workers, device, budgets."""
    behaviors: dict[str, BehaviorSettings] = field(default_factory=dict)
    """Per-behaviour settings; the key ``default`` applies to behaviours not named."""
    policy_mapping: dict[str, str] = field(default_factory=dict)
    """Behaviour -> policy name; unmapped behaviours get a policy of their own name."""
    environment_parameters: dict[str, EnvironmentParameter] = field(default_factory=dict)
    """Parameters sent through the EnvironmentParametersChannel (Unity/sim envs): a number, a sampler the
    game draws from (:class:`SamplerSettings`), or a curriculum (:class:`CurriculumSettings`)."""
    engine_settings: EngineSettings = field(default_factory=EngineSettings)
    """Engine configuration sent to Unity/sim envs."""
    hotswap: HotSwapSettings = field(default_factory=HotSwapSettings)
    """Hot-swap: push the newest policies into the running games every K iterations."""

    def behavior_settings(self, behavior: str) -> BehaviorSettings:
        """Settings for ``behavior``: exact key, then the part before ``?``, then ``default``, else code."""
        for key in (behavior, behavior.split("?", 1)[0], DEFAULT_BEHAVIOR):
            if key in self.behaviors:
                return self.behaviors[key]
        return BehaviorSettings()

    def policy_of(self, behavior: str) -> str:
        """Name of the policy that acts for ``behavior``."""
        for key in (behavior, behavior.split("?", 1)[0]):
            if key in self.policy_mapping:
                return self.policy_mapping[key]
        return behavior


def _nearest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.0)
    return f"did you mean '{close[0]}'? " if close else ""


def _number(text: str, where: str) -> float | int:
    try:
        number = float(text)
    except ValueError as e:
        raise ConfigError(f"{where}: expected a number, got {text!r}") from e
    return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number


def _check_value(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against the type ``hint`` (ints accepted for floats); returns the converted value."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _check_value(value, arg, where)
            except ConfigError as e:
                errors.append((_fit(value, arg), str(e)))
        raise ConfigError(max(errors, key=lambda e: e[0])[1])  # the error of the type meant
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _from_dict(hint, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_check_value(v, typing.get_args(hint)[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        vtype = typing.get_args(hint)[1]
        return {str(k): _check_value(v, vtype, f"{where}.{k}") for k, v in value.items()}
    if hint is Any:
        return value
    if hint in (int, float) and isinstance(value, str):
        value = _number(value, where)  # PyYAML reads 1e-3 (no dot) as a string
    if hint in (int, float) and not isinstance(value, bool) and isinstance(value, int | float):
        _check_range(value, where)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)  # 1e6 and 1.0e6 are floats in YAML
    if (hint in (int, float) and isinstance(value, bool)) or not isinstance(value, hint):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r} ({type(value).__name__})")
    return value


MAX_INT = 2**63 - 1
"""Largest whole number a config value may hold (seeds and step counts reach torch and numpy as int64)."""


def _fit(value: Any, hint: Any) -> int:
    """How well ``value`` looks meant as a ``hint``: for a mapping, how many of its keys the dataclass has
    (so a mapping with a bad sampler reports the sampler's error, not "expected float")."""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return 1 + len(set(value) & {f.name for f in dataclasses.fields(hint)})
    return 0


def _check_range(value: float | int, where: str) -> None:
    """Numbers must be finite and fit int64 (a NaN learning rate or a seed of 2**70 fails much later)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    if abs(value) > MAX_INT:
        raise ConfigError(f"{where}: {value!r} is out of range; use a value between -{MAX_INT} and {MAX_INT}")


def _from_dict(cls: type, data: Any, section: str) -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys with the nearest valid one."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"section '{section}' must be a mapping of keys to values, got {data!r}")
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in valid:
            raise ConfigError(
                f"unknown key '{key}' in section '{section}': {_nearest(str(key), valid)}"
                f"valid keys: {', '.join(valid)}"
            )
        where = str(key) if section == "top level" else f"{section}.{key}"
        kwargs[key] = _check_value(value, hints[key], where)
    return cls(**kwargs)


def _check_behavior(name: str, settings: BehaviorSettings) -> None:
    if settings.trainer_type not in SUPPORTED_TRAINERS:
        raise ConfigError(
            f"behaviors.{name}.trainer_type '{settings.trainer_type}' is not supported; "
            f"supported: {', '.join(SUPPORTED_TRAINERS)}"
        )
    for key in ("max_steps", "time_horizon", "summary_freq", "checkpoint_interval", "keep_checkpoints"):
        if getattr(settings, key) <= 0:
            raise ConfigError(f"behaviors.{name}.{key} must be > 0, got {getattr(settings, key)}")
    if settings.ghost is not None:
        if settings.self_play is not None:
            raise ConfigError(
                f"behaviors.{name} sets both ghost (self-play between teams, ML-Agents' rules) and self_play "
                "(the mean-field reference's opponent rule); keep one"
            )
        settings.ghost.check(f"behaviors.{name}.ghost")


def _route_mean_field(data: Any) -> Any:
    """An mfq / mfac behaviour's ``hyperparameters:`` section holds mean-field settings (``mean_field``)."""
    behaviors = data.get("behaviors") if isinstance(data, dict) else None
    if not isinstance(behaviors, dict):
        return data
    routed = {}
    for name, section in behaviors.items():
        if (
            isinstance(section, dict)
            and section.get("trainer_type") in MEAN_FIELD_TRAINERS
            and "hyperparameters" in section
        ):
            section = {k: v for k, v in section.items() if k != "hyperparameters"}
            section["mean_field"] = behaviors[name]["hyperparameters"]
        routed[name] = section
    return {**data, "behaviors": routed}


def config_from_dict(data: dict[str, Any] | None) -> TrainConfig:
    """Build a :class:`TrainConfig` from a parsed YAML mapping (strict: unknown keys raise ConfigError), in
    unimarl's spelling or ML-Agents' (:mod:`unimarl.trainers.core.mlagents_schema`)."""
    return read_either_spelling(data or {}, _config_from_own_spelling)


def _config_from_own_spelling(data: dict[str, Any]) -> TrainConfig:
    config = _from_dict(TrainConfig, _route_mean_field(data), "top level")
    for name, settings in config.behaviors.items():
        _check_behavior(name, settings)
        if settings.trainer_type in MEAN_FIELD_TRAINERS:
            check_settings(name, settings.mean_field, settings.self_play, settings.trainer_type)
    validate(config)
    return config


# Characters that make a run id more than one folder name: path separators on any OS, a Windows drive or
# stream colon, and NUL (which the OS refuses).
_RUN_ID_FORBIDDEN = ("/", "\\", ":", "\0")


def check_run_id(run_id: str, key: str = "run.run_id") -> None:
    """Raise ConfigError unless ``run_id`` (the value of ``key``) names exactly one folder directly under the
    results folder."""
    if (
        not isinstance(run_id, str)
        or not run_id.strip()
        or run_id in (".", "..")
        or any(c in run_id for c in _RUN_ID_FORBIDDEN)
    ):
        raise ConfigError(
            f"{key} {run_id!r} is not a single folder name inside run.results_dir: a run id cannot be "
            "empty, '.' or '..', or contain '/', '\\', ':' or NUL; use letters, digits, '-', '_' and '.' "
            "(e.g. coop_nav-1), and choose where runs go with run.results_dir (--results-dir)"
        )


def validate(config: TrainConfig) -> None:
    """Cross-field checks (run after CLI overrides too)."""
    run = config.run
    check_run_id(run.run_id)
    if run.initialize_from is not None:
        check_run_id(run.initialize_from, "run.initialize_from")
        if run.initialize_from == run.run_id and not run.resume:
            raise ConfigError(
                f"run.initialize_from names this run itself ({run.run_id!r}); continue it with --resume, or "
                "give the new run another --run-id"
            )
    if run.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"run.device must be auto, cpu or cuda, got '{run.device}'")
    if run.backend not in ("auto", "serial", "ray"):
        raise ConfigError(f"run.backend must be auto, serial or ray, got '{run.backend}'")
    num_envs = config.env.envs_per_worker
    if run.num_workers < 1 or num_envs < 1:
        raise ConfigError(
            f"run.num_workers and env.num_envs must be >= 1, got {run.num_workers} and {num_envs}"
        )
    if run.max_steps is not None and run.max_steps <= 0:
        raise ConfigError(
            f"run.max_steps must be > 0 (or unset for the behaviours' max_steps), got {run.max_steps}"
        )
    if run.max_seconds is not None and run.max_seconds <= 0:
        raise ConfigError(f"run.max_seconds must be > 0 (or unset for no time budget), got {run.max_seconds}")
    for name, parameter in config.environment_parameters.items():
        if isinstance(parameter, CurriculumSettings):
            parameter.check(f"environment_parameters.{name}")
    if config.hotswap.every < 0:
        raise ConfigError(f"hotswap.every must be >= 0 (0 = on demand only), got {config.hotswap.every}")
    if config.env.kind == "editor" and (num_envs != 1 or run.num_workers != 1):
        raise ConfigError(
            f"the Unity Editor is one game: Editor mode (no build, sim or pettingzoo env given) needs 1 env "
            f"and 1 worker, got env.num_envs {num_envs} and run.num_workers {run.num_workers}; drop them "
            "(or pass --num-envs 1 --num-workers 1), or train on a build with --env"
        )


def load_config(path: str | Path) -> TrainConfig:
    """Read and check a YAML config file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from e
    return config_from_dict(data)


def apply_env_flag(config: TrainConfig, value: str) -> None:
    """Apply ``--env``: ``sim:NAME`` selects a sim game, anything else is a build path."""
    # every setting but the env kind travels: player arguments apply to a build as to a sim game, and the
    # env count, timeout and restart bounds are the user's whatever the game
    config.env = dataclasses.replace(
        config.env, build=None, editor=False, sim=None, pettingzoo=None, kwargs={}, args=list(config.env.args)
    )
    if value.startswith("sim:"):
        config.env.sim = value[4:]
    else:
        config.env.build = value


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """The resolved config as plain data (what results/RUN_ID/config.yaml holds)."""
    data = dataclasses.asdict(config)
    data["env"]["num_envs"] = config.env.envs_per_worker
    for name, section in data["behaviors"].items():
        # written the way a user writes it, so config_from_dict reads it back: a mean-field behaviour's
        # settings under `hyperparameters`, and no `mean_field` section for MAPPO behaviours
        mean_field = section.pop("mean_field")
        if config.behaviors[name].trainer_type in MEAN_FIELD_TRAINERS:
            section["hyperparameters"] = mean_field
    return data
