"""ML-Agents' trainer-config spelling (``mlagents-learn``'s ``config.yaml``, release 22/23) read as unimarl's.

A file is read in ML-Agents' spelling when it holds a key that only ML-Agents' schema has: a top-level
``default_settings``, ``env_settings``, ``checkpoint_settings``, ``torch_settings`` or ``debug``; a behaviour
with ``trainer_type`` ppo, poca or sac; or, in a behaviour whose ``trainer_type`` is not unimarl's own (mappo,
mfq, mfac), ``reward_signals``, ``keep_checkpoints``, ``even_checkpoints``, ``threaded``, ``init_path``,
``behavioral_cloning``, an ML-Agents hyperparameter (``batch_size``, ``buffer_size``, ``beta``, ...),
``network_settings`` key (``normalize``, ``memory``, ...) or ghost-trainer ``self_play`` key. Such a file
means what it means to mlagents-learn:

* ``trainer_type: ppo`` is MAPPO without the centralised critic (a shared policy, a value of each agent's own
  observation); ``poca`` is MAPPO's centralised critic over the agent's Unity group with attention pooling
  (MA-POCA). All teams of a behaviour share its one policy (``policy_mapping: {Name: Name}``), as in
  mlagents-learn. Behaviour keys left out take ML-Agents' defaults, ``default_settings`` is merged into every
  behaviour and applies to behaviours not named.
* ``buffer_size`` / ``batch_size`` (rounded down) is the number of minibatches per epoch. unimarl updates
  after every iteration, on time_horizon x num_envs x num_workers x (agents per game) agent steps, not after
  ``buffer_size`` of them: the two agree when that product equals ``buffer_size``.
* ``max_steps``, ``summary_freq`` and ``checkpoint_interval`` count env steps in unimarl; ML-Agents counts the
  steps of each agent of the behaviour, so a game with N agents of a behaviour trains N times longer.
* Run-level sections (``env_settings``, ``engine_settings``, ``checkpoint_settings``, ``torch_settings``) map
  the keys given; keys left out keep unimarl's defaults (they are mlagents-learn's command-line defaults).

What unimarl cannot honour (:data:`~unimarl.trainers.core.mlagents_checks.REFUSED`) is never dropped: every
such key is listed in one :class:`UnsupportedSettingError`, raised once the rest of the file has passed
unimarl's own validation.
Files in unimarl's spelling pass through unchanged, except that ML-Agents' ``environment_parameters``
forms (a constant sampler, also as a lesson's value) are read in both spellings.
"""

from __future__ import annotations

import copy
import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from unimarl.trainers.core.errors import ConfigError
from unimarl.trainers.core.mf_settings import MEAN_FIELD_TRAINERS
from unimarl.trainers.core.mlagents_checks import (
    Refusal,
    UnsupportedSettingError,
    as_flag,
    as_float,
    as_int,
    check_keys,
    refuse,
)

logger = logging.getLogger(__name__)

OWN_TRAINERS = ("mappo", *MEAN_FIELD_TRAINERS)
"""``trainer_type`` values in unimarl's spelling; such behaviours pass through an ML-Agents file unchanged."""
MLAGENTS_TRAINERS = ("ppo", "poca", "sac")
"""ML-Agents' trainer types: a behaviour naming one makes the file ML-Agents' spelling."""

TOP_KEYS = ("default_settings", "env_settings", "checkpoint_settings", "torch_settings", "debug")
BEHAVIOR_KEYS = (
    "trainer_type", "hyperparameters", "network_settings", "reward_signals", "max_steps", "time_horizon",
    "summary_freq", "checkpoint_interval", "keep_checkpoints", "even_checkpoints", "threaded", "init_path",
    "self_play", "behavioral_cloning",
)  # fmt: skip
PPO_KEYS = (
    "batch_size", "buffer_size", "learning_rate", "learning_rate_schedule", "beta", "beta_schedule",
    "epsilon", "epsilon_schedule", "lambd", "num_epoch", "shared_critic",
)  # fmt: skip
SAC_KEYS = (
    "buffer_init_steps", "tau", "steps_per_update", "save_replay_buffer", "init_entcoef",
    "reward_signal_steps_per_update",
)  # fmt: skip
NETWORK_KEYS = (
    "normalize", "hidden_units", "num_layers", "vis_encode_type", "memory", "goal_conditioning_type",
    "deterministic",
)  # fmt: skip
GHOST_KEYS = (
    "save_steps", "team_change", "swap_steps", "window", "play_against_latest_model_ratio", "initial_elo",
)  # fmt: skip
ENV_KEYS = (
    "env_path", "env_args", "base_port", "num_envs", "num_areas", "timeout_wait", "seed",
    "max_lifetime_restarts", "restarts_rate_limit_n", "restarts_rate_limit_period_s",
)  # fmt: skip
CHECKPOINT_KEYS = (
    "run_id", "initialize_from", "load_model", "resume", "force", "train_model", "inference", "results_dir",
)  # fmt: skip
SIGNALS = ("extrinsic", "curiosity", "gail", "rnd")
BEHAVIOR_MARKERS = (
    "reward_signals", "keep_checkpoints", "even_checkpoints", "threaded", "init_path", "behavioral_cloning",
)  # fmt: skip
NETWORK_MARKERS = ("normalize", "memory", "goal_conditioning_type", "deterministic")

# ML-Agents' defaults (mlagents/trainers/settings.py, ppo/poca settings) for behaviour keys left out
BEHAVIOR_DEFAULTS = {
    "max_steps": 500_000, "time_horizon": 64, "summary_freq": 50_000, "checkpoint_interval": 500_000,
    "keep_checkpoints": 5, "even_checkpoints": False, "threaded": False,
}  # fmt: skip
PPO_DEFAULTS = {
    "batch_size": 1024, "buffer_size": 10240, "learning_rate": 3.0e-4, "beta": 5.0e-3, "epsilon": 0.2,
    "lambd": 0.95, "num_epoch": 3, "shared_critic": False,
}  # fmt: skip
NETWORK_DEFAULTS = {"normalize": False, "hidden_units": 128, "num_layers": 2, "deterministic": False}
SCHEDULE_KEYS = {"learning_rate_schedule": "lr_schedule", "beta_schedule": "entropy_schedule",
                 "epsilon_schedule": "clip_schedule"}  # fmt: skip
"""ML-Agents' schedule keys -> unimarl's (both: constant, or linear to ML-Agents' floors over max_steps)."""

# unimarl's name -> ML-Agents' name, to name the key a user wrote in errors raised by unimarl's validation
RENAMED = {
    "lr": "learning_rate", "critic_lr": "learning_rate", "entropy_coef": "beta", "clip": "epsilon",
    "lam": "lambd", "epochs": "num_epoch", "num_minibatches": "buffer_size / batch_size",
    "gamma": "reward_signals.extrinsic.gamma", "normalize_inputs": "normalize", "timeout_s": "timeout_wait",
    "run.seed": "env_settings.seed", "run.device": "torch_settings.device",
    "run.run_id": "checkpoint_settings.run_id", "env.num_envs": "env_settings.num_envs",
    "lr_schedule": "learning_rate_schedule", "entropy_schedule": "beta_schedule",
    "clip_schedule": "epsilon_schedule", "ghost": "self_play",
}  # fmt: skip


T = TypeVar("T")


@dataclass
class Translation:
    """A config mapping in unimarl's spelling, and what of the ML-Agents original it cannot honour."""

    data: dict[str, Any]
    mlagents: bool
    refusals: list[Refusal] = field(default_factory=list)


def read_either_spelling(data: dict[str, Any], build: Callable[[dict[str, Any]], T]) -> T:
    """``build`` (unimarl's strict validation) applied to ``data`` read in its spelling; an ML-Agents file's
    errors name ML-Agents' keys, and its refused settings raise :class:`UnsupportedSettingError` once the
    rest of the file is valid."""
    translation = translate(data)
    try:
        config = build(translation.data)
    except ConfigError as e:
        if not translation.mlagents or isinstance(e, UnsupportedSettingError):
            raise
        message = _in_mlagents_terms(str(e))
        if translation.refusals:
            message += "; not supported either: " + ", ".join(r.key for r in translation.refusals)
        raise type(e)(message) from e
    if translation.refusals:
        raise UnsupportedSettingError(translation.refusals)
    return config


def translate(data: dict[str, Any]) -> Translation:
    """``data`` in unimarl's spelling (a copy; ``data`` itself is left as it is)."""
    if not isinstance(data, dict):
        return Translation(data, False)
    out, refusals = dict(data), list[Refusal]()
    if "environment_parameters" in out:
        out["environment_parameters"] = _environment_parameters(out["environment_parameters"], refusals)
    if not is_mlagents(data):
        return Translation(out, False, refusals)
    for key in TOP_KEYS:
        out.pop(key, None)
    if out.get("environment_parameters", 0) is None:
        del out["environment_parameters"]
    behaviors, translated = _behaviors(data, refusals)
    if behaviors is not None:
        out["behaviors"] = behaviors
    mapping = out.get("policy_mapping") or {}
    if translated and isinstance(mapping, dict):
        # mlagents-learn trains one policy per behaviour name, whatever the team
        out["policy_mapping"] = {**{name: name for name in translated}, **mapping}
    env, run = _run_sections(data, refusals)
    for section, values in (("env", env), ("run", run)):
        given = out.get(section)
        given = given if isinstance(given, dict) else {}
        twice = sorted(values.keys() & given.keys())
        if twice:
            raise ConfigError(
                f"{section}.{twice[0]} is set twice: in '{section}:' and in an ML-Agents section"
            )
        if values:
            out[section] = {**given, **values}
    logger.warning(
        "reading an ML-Agents config: unimarl counts max_steps, summary_freq and checkpoint_interval in env "
        "steps, where ML-Agents counts every agent's steps, so a game with N agents of a behaviour trains "
        "N times longer; cap the run with --max-steps or run.max_steps"
    )
    return Translation(out, True, refusals)


def is_mlagents(data: dict[str, Any]) -> bool:
    """Whether ``data`` uses a key only ML-Agents' schema has (see the module docstring)."""
    if any(key in data for key in TOP_KEYS):
        return True
    behaviors = data.get("behaviors")
    for section in behaviors.values() if isinstance(behaviors, dict) else ():
        if not isinstance(section, dict) or section.get("trainer_type") in OWN_TRAINERS:
            continue
        hp, net, sp = (section.get(k) for k in ("hyperparameters", "network_settings", "self_play"))
        if (
            section.get("trainer_type") in MLAGENTS_TRAINERS
            or any(k in section for k in BEHAVIOR_MARKERS)
            or (
                "trainer_type" in section
                and isinstance(hp, dict)
                and any(k in PPO_KEYS + SAC_KEYS for k in hp)
            )
            or (isinstance(net, dict) and any(k in NETWORK_MARKERS for k in net))
            or (isinstance(sp, dict) and any(k in GHOST_KEYS for k in sp))
        ):
            return True
    return False


def _behaviors(data: dict[str, Any], refusals: list[Refusal]) -> tuple[Any, list[str]]:
    """``behaviors`` in unimarl's spelling (``default_settings`` merged into those in ML-Agents' spelling and
    kept as ``default``), and the names of the behaviours translated."""
    behaviors, defaults = data.get("behaviors"), data.get("default_settings")
    if behaviors is None and defaults is None:
        return None, []
    behaviors = {} if behaviors is None else behaviors
    if not isinstance(behaviors, dict):
        return behaviors, []  # unimarl's validation names the section
    if defaults is not None and not isinstance(defaults, dict):
        raise ConfigError(f"section 'default_settings' must be a mapping of keys to values, got {defaults!r}")
    if defaults is not None and "default" in behaviors:
        raise ConfigError("default_settings and behaviors.default both set the defaults: keep one of them")
    out: dict[str, Any] = {}
    names: list[str] = []
    for name, section in behaviors.items():
        if not isinstance(section, dict | None) or (section or {}).get("trainer_type") in OWN_TRAINERS:
            out[name] = section
            continue
        translated = _behavior(f"behaviors.{name}", _merged(defaults or {}, section or {}), refusals)
        if translated is not None:
            out[name] = translated
            names += [name] if name != "default" else []
    if defaults:
        translated = _behavior("default_settings", defaults, refusals)
        if translated is not None:
            out["default"] = translated
    return out, names


def _behavior(where: str, section: dict[str, Any], refusals: list[Refusal]) -> dict[str, Any] | None:
    """One ML-Agents ``TrainerSettings`` section as a unimarl behaviour (None when its trainer is refused)."""
    check_keys(section, where, BEHAVIOR_KEYS)
    if "hyperparameters" in section and "trainer_type" not in section:
        raise ConfigError(
            f"{where}: hyperparameters given without a trainer_type; add trainer_type: ppo or poca"
        )
    trainer = section.get("trainer_type", "ppo")
    if trainer not in ("ppo", "poca"):
        refuse(
            refusals, f"{where}.trainer_type", "sac" if trainer == "sac" else "trainer_type", value=trainer
        )
        return None
    s = {**BEHAVIOR_DEFAULTS, **section}
    hp = _hyperparameters(f"{where}.hyperparameters", trainer, section.get("hyperparameters"), refusals)
    hp["gamma"] = _extrinsic_gamma(f"{where}.reward_signals", section.get("reward_signals"), refusals)
    keep = as_int(s["keep_checkpoints"], f"{where}.keep_checkpoints")
    interval = s["checkpoint_interval"]
    if as_flag(s["even_checkpoints"], f"{where}.even_checkpoints"):
        interval = int(
            as_float(s["max_steps"], f"{where}.max_steps") / max(keep, 1)
        )  # as ML-Agents computes it
    if as_flag(s["threaded"], f"{where}.threaded"):
        logger.warning(
            "%s.threaded true: unimarl collects and updates in turn (ML-Agents' threaded: false), so every "
            "update is on-policy; only the speed-up of updating while the games step is not had",
            where,
        )
    for key in ("init_path", "behavioral_cloning"):
        if s.get(key) is not None:
            refuse(refusals, f"{where}.{key}", key)
    network = _network(f"{where}.network_settings", trainer, section.get("network_settings"), refusals)
    return {
        "trainer_type": "mappo",
        "hyperparameters": hp,
        "network_settings": network,
        "max_steps": s["max_steps"],
        "time_horizon": s["time_horizon"],
        "summary_freq": s["summary_freq"],
        "checkpoint_interval": interval,
        "keep_checkpoints": keep,
        "group_reward_weight": 1.0,  # ML-Agents' extrinsic signal adds the group reward to the agent's own
        **({"ghost": s["self_play"]} if s.get("self_play") is not None else {}),  # the ghost trainer's keys
    }


def _hyperparameters(where: str, trainer: str, given: Any, refusals: list[Refusal]) -> dict[str, Any]:
    given = {} if given is None else given
    check_keys(given, where, PPO_KEYS if trainer == "ppo" else PPO_KEYS[:-1])  # poca has no shared_critic
    hp = {**PPO_DEFAULTS, **given}
    batch, buffer = (
        as_int(hp["batch_size"], f"{where}.batch_size"),
        as_int(hp["buffer_size"], f"{where}.buffer_size"),
    )
    if not 1 <= batch <= buffer:
        raise ConfigError(
            f"{where}: batch_size {batch} must lie in 1..buffer_size ({buffer}); ML-Agents takes minibatches "
            "of batch_size experiences out of each buffer_size collected"
        )
    rate = hp.get(
        "learning_rate_schedule", "linear"
    )  # beta and epsilon follow it unless set, as in ML-Agents
    schedules = {k: hp.get(k, rate) for k in SCHEDULE_KEYS}
    for key, value in schedules.items():
        if value not in ("constant", "linear"):
            raise ConfigError(f"{where}.{key} {value!r}: use constant or linear")
    if as_flag(hp["shared_critic"], f"{where}.shared_critic"):
        refuse(refusals, f"{where}.shared_critic", "shared_critic")
    logger.info(
        "%s: buffer_size %d / batch_size %d -> %d minibatches per epoch; an update holds time_horizon x "
        "num_envs x num_workers x agents steps",
        *(where, buffer, batch, buffer // batch),
    )
    return {
        "lr": hp["learning_rate"],
        "critic_lr": hp["learning_rate"],  # ML-Agents steps actor and critic with one optimiser
        "entropy_coef": hp["beta"],
        "clip": hp["epsilon"],
        "lam": hp["lambd"],
        "epochs": hp["num_epoch"],
        "num_minibatches": buffer // batch,
        **{SCHEDULE_KEYS[key]: value for key, value in schedules.items()},
    }


def _network(where: str, trainer: str, given: Any, refusals: list[Refusal]) -> dict[str, Any]:
    given = {} if given is None else given
    check_keys(given, where, NETWORK_KEYS)
    ns = {**NETWORK_DEFAULTS, **given}
    out = {
        "hidden_units": ns["hidden_units"],
        "num_layers": ns["num_layers"],
        "normalize_inputs": ns["normalize"],
        "centralized_critic": trainer == "poca",
    }
    if trainer == "poca":
        out["team_pooling"] = "attention"  # MA-POCA's critic attends over the group's agents
    if ns.get("vis_encode_type") is not None:
        out["vis_encode_type"] = ns["vis_encode_type"]
    if ns.get("memory") is not None:
        refuse(refusals, f"{where}.memory", "memory")
    conditioning = ns.get("goal_conditioning_type", "none")
    if conditioning not in ("hyper", "none"):
        raise ConfigError(f"{where}.goal_conditioning_type {conditioning!r}: use hyper or none")
    if conditioning == "hyper":
        refuse(refusals, f"{where}.goal_conditioning_type", "goal_conditioning_type")
    if as_flag(ns["deterministic"], f"{where}.deterministic"):
        refuse(refusals, f"{where}.deterministic", "deterministic")
    return out


def _extrinsic_gamma(where: str, signals: Any, refusals: list[Refusal]) -> Any:
    """The discount of ``reward_signals.extrinsic``; other signals and a strength other than 1 are refused."""
    signals = {"extrinsic": {}} if signals is None else signals
    check_keys(signals, where, SIGNALS)
    for name in SIGNALS[1:]:
        if name in signals:
            refuse(refusals, f"{where}.{name}", "signal", value=name)
    if "extrinsic" not in signals:
        refuse(refusals, f"{where}.extrinsic", "extrinsic")
        return 0.99
    extrinsic = {} if signals["extrinsic"] is None else signals["extrinsic"]
    check_keys(extrinsic, f"{where}.extrinsic", ("gamma", "strength", "network_settings"))  # no network used
    strength = as_float(extrinsic.get("strength", 1.0), f"{where}.extrinsic.strength")
    if strength != 1.0:
        refuse(refusals, f"{where}.extrinsic.strength", "strength", value=strength)
    return extrinsic.get("gamma", 0.99)


def _run_sections(data: dict[str, Any], refusals: list[Refusal]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``env_settings``, ``checkpoint_settings``, ``torch_settings`` and ``debug`` as unimarl's env, run."""
    env: dict[str, Any] = {}
    run: dict[str, Any] = {}
    es = _section(data, "env_settings", ENV_KEYS)
    path = es.get("env_path")
    if path is not None:
        env["sim" if str(path).startswith("sim:") else "build"] = str(path).removeprefix("sim:")
    for key, own in (
        ("env_args", "args"),
        ("num_envs", "num_envs"),
        ("num_areas", "num_areas"),
        ("timeout_wait", "timeout_s"),
        ("max_lifetime_restarts", "max_lifetime_restarts"),
        ("restarts_rate_limit_n", "restarts_rate_limit_n"),
        ("restarts_rate_limit_period_s", "restarts_rate_limit_period_s"),
    ):
        if es.get(key) is not None:
            env[own] = es[key]
    if "base_port" in es:
        logger.info(
            "env_settings.base_port: unimarl serves each game on a free port (the Editor: env.editor_port)"
        )
    if es.get("seed") is not None:
        run["seed"] = as_int(es["seed"], "env_settings.seed")
        if run["seed"] == -1:
            run["seed"] = random.randrange(10_000)  # as mlagents-learn draws one for -1
            logger.info(
                "env_settings.seed -1: drew seed %d (the run folder's config.yaml keeps it)", run["seed"]
            )
    cs = _section(data, "checkpoint_settings", CHECKPOINT_KEYS)
    for key in ("run_id", "results_dir"):
        if cs.get(key) is not None:
            run[key] = cs[key]
    if cs.get("resume") is not None or cs.get("load_model") is not None:  # load_model: resume's old name
        resume = as_flag(cs.get("resume") or False, "checkpoint_settings.resume")
        run["resume"] = resume or as_flag(cs.get("load_model") or False, "checkpoint_settings.load_model")
    if cs.get("initialize_from") is not None:
        run["initialize_from"] = cs["initialize_from"]
    if cs.get("force") is not None:
        run["force"] = as_flag(cs["force"], "checkpoint_settings.force")
    for key in ("inference", "train_model"):
        if as_flag(cs.get(key) or False, f"checkpoint_settings.{key}"):
            refuse(refusals, f"checkpoint_settings.{key}", key)
    device = _section(data, "torch_settings", ("device",)).get("device")
    if device in ("cpu", "cuda"):
        run["device"] = device
    elif device is not None:
        refuse(refusals, "torch_settings.device", "device", value=device)
    if as_flag(data.get("debug") or False, "debug"):
        refuse(refusals, "debug", "debug")
    return env, run


def _environment_parameters(params: Any, refusals: list[Refusal]) -> Any:
    """Constants, samplers and curricula stay; ML-Agents' ``sampler_type: constant`` becomes its value, in a
    curriculum's lessons too (the config's own checks then apply to both spellings)."""
    if not isinstance(params, dict):
        return params
    out = {}
    for name, value in params.items():
        if isinstance(value, dict) and isinstance(value.get("curriculum"), list):
            lessons = value["curriculum"]
            value = {
                **value,
                "curriculum": [
                    {**lesson, "value": _constant(lesson["value"])}
                    if isinstance(lesson, dict) and "value" in lesson
                    else lesson
                    for lesson in lessons
                ],
            }
            out[name] = value
        else:
            out[name] = _constant(value)
    return out


def _constant(value: Any) -> Any:
    """``{sampler_type: constant, sampler_parameters: {value: V}}`` -> V; anything else unchanged (checked
    by the config's SamplerSettings)."""
    if isinstance(value, dict) and value.get("sampler_type") == "constant":
        parameters = value.get("sampler_parameters")
        if isinstance(parameters, dict) and "value" in parameters:
            return parameters["value"]
    return value


def _merged(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``update`` over a deep copy of ``base``, nested mappings merged (ML-Agents' ``deep_update_dict``)."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(merged.get(key), dict) and isinstance(value, dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def _section(data: dict[str, Any], name: str, valid: tuple[str, ...]) -> dict[str, Any]:
    section = data.get(name)
    section = {} if section is None else section
    check_keys(section, name, valid)
    return section


def _in_mlagents_terms(message: str) -> str:
    """``message`` of unimarl's validation with the ML-Agents names of the keys it names."""
    named = sorted({ml for own, ml in RENAMED.items() if re.search(rf"(?<!\w){re.escape(own)}\b", message)})
    where = f"; there: {', '.join(named)}" if named else ""
    return f"{message} (this file is read in ML-Agents' spelling{where})"
