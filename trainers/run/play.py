"""``unimarl play``: drive a game's agents with ONNX models run in Python and measure episode returns.

The game is opened as for training (a Unity build or the Editor-less ``sim:NAME``), its agents of Behavior
Type *Default*, so they are reported to the trainer and act on the actions it sends; that works with any
build. Each step the trainer feeds every deciding agent's observation to its behaviour's model with
onnxruntime and sends the model's outputs as the actions:

* inputs in ML-Agents' contract order (:func:`unimarl.trainers.export.onnx.input_names`): ``obs_0..obs_n``
  (rank-3 observations NCHW: a game that sends HWC, C# package 2.x, is transposed; a model that declares
  HWC inputs, exported before layouts were recorded, is fed HWC), ``action_masks`` (1 = allowed) for discrete
  actions, and for mean-field models ``mean_action``: the mean of the encoded actions the agent's teammates
  (same behaviour and Unity group, i.e. one area's team; agents without a group form one group) took at
  their previous decision, computed by
  :class:`unimarl.trainers.algos.meanfield.mean_action.MeanActionTracker` with the group as ``segment``, as
  the mean-field worker does in training and as the sim games and the plug-in compute it for such models;
* outputs: ``deterministic_continuous_actions`` / ``deterministic_discrete_actions`` (``stochastic=True``:
  the sampled ``continuous_actions`` / ``discrete_actions``). The model's continuous output already is the
  game's action (:mod:`unimarl.trainers.core.action_map`, applied inside the exported graph), so it is sent
  as it is, exactly as Unity's ML-Agents runner applies a model; no second mapping.

Episode returns are summed per agent, as training credits rewards: the agent's own reward plus
``group_reward_weight`` times its Unity group reward (``SimpleMultiAgentGroup.AddGroupReward``, the bridge's
``infos["group_reward"]``), one entry per finished agent episode (terminated or interrupted), per behaviour.
The weight is the run's for that behaviour (``behaviors.<name>.group_reward_weight`` of its resolved
``config.yaml``) when playing a run folder, 1.0 (the config default) for a single ``.onnx``, or
``group_reward_weight`` for every behaviour when given.

Models: a single ``.onnx`` file (for every behaviour of the game, or for ``behavior``), or a run folder
(each behaviour gets its policy from ``onnx/policies.json``, following the run's ``policy_mapping``).
Behaviours without a model (when ``behavior`` names one) act uniformly at random within their action masks.

Pushing models into the game (Unity's *Inference Only* agents) is not a way to play: such agents are never
sent to the trainer, so their returns cannot be measured, and a game without *Default* agents never exchanges
after the handshake. ``hotswap`` pushes models into a game for watching.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from unimarl.bridge.parallel_env import UnityParallelEnv
from unimarl.trainers.algos.meanfield.mean_action import MeanActionTracker
from unimarl.trainers.core.config import BehaviorSettings, TrainConfig
from unimarl.trainers.core.errors import TrainerError
from unimarl.trainers.envs.battles import group_id
from unimarl.trainers.envs.factory import AgentView, agent_behavior, agent_view, visual_layout_of
from unimarl.trainers.export.onnx import MEAN_ACTION_INPUT
from unimarl.trainers.export.policies import ONNX_DIR, RunExportError, policy_for, read_manifest

logger = logging.getLogger(__name__)


class PlayError(TrainerError):
    """No model fits one of the game's behaviours, a model does not fit its behaviour, or too few episodes
    ended within the step limit."""


MEAN_ACTION_ABLATIONS = ("zero", "shuffle")
"""What an evaluation may do to the mean action a mean-field model is fed (does the policy use it?): hand it
zeros, or shuffle the agents' mean actions among those acting at the same step."""


@dataclass(frozen=True)
class MeanFieldInput:
    """How a mean-field model's ``mean_action`` input is computed: the training run's neighbourhood
    (:class:`~unimarl.trainers.core.mf_settings.MeanFieldHyperparameters`: ``team`` by default, ``group``,
    or ``radius`` around the position sensor), and an optional ablation (:data:`MEAN_ACTION_ABLATIONS`)."""

    neighbourhood: str = "team"
    radius: float | None = None
    position_sensor: int = 1
    ablation: str = ""
    rng: np.random.Generator = field(default_factory=np.random.default_rng, compare=False)


@dataclass
class PlayResult:
    """Episode returns per behaviour, the model each behaviour ran (behaviour -> file), and the weight its
    group rewards counted with."""

    returns: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    models: dict[str, Path] = field(default_factory=dict)
    group_reward_weights: dict[str, float] = field(default_factory=dict)
    env_steps: int = 0


def _run_manifest(source: Path) -> dict[str, Any]:
    try:
        return read_manifest(source)
    except RunExportError as e:
        raise PlayError(f"{e}; or pass a .onnx file") from e


def models_for(source: str | Path, behaviors: list[str], only: str | None = None) -> dict[str, Path]:
    """The model file each behaviour runs, from a ``.onnx`` file or a run folder."""
    source = Path(source)
    targets = [b for b in behaviors if only is None or b == only or b.split("?", 1)[0] == only]
    if not targets:
        raise PlayError(f"the game has no behaviour {only!r}; it has {behaviors}")
    if source.is_file():
        return {b: source for b in targets}
    manifest = _run_manifest(source)
    mapping = dict(_run_config(source).get("policy_mapping") or {})
    chosen = {}
    for behavior in targets:
        policy = policy_for(behavior, manifest, mapping)
        if policy is None:
            raise PlayError(
                f"{source} has no policy for behaviour {behavior!r} (it has {sorted(manifest)}); "
                "pass a .onnx file, or --behavior to play only some behaviours"
            )
        chosen[behavior] = source / ONNX_DIR / manifest[policy]["file"]
    return chosen


def _run_config(source: Path) -> dict[str, Any]:
    """The run's resolved ``config.yaml`` as plain data ({} when the folder has none)."""
    path = source / "config.yaml"
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise PlayError(
            f"cannot read {path}: {e}; restore the run's config.yaml or play one of its .onnx files"
        ) from e
    if not isinstance(data, dict):
        raise PlayError(
            f"{path} holds a {type(data).__name__}, not a config mapping; restore the run's config.yaml"
        )
    return data


def group_reward_weights(
    source: str | Path, behaviors: list[str], override: float | None = None
) -> dict[str, float]:
    """The weight of each behaviour's group rewards in its returns: ``override``, else the run's
    ``behaviors.<name>.group_reward_weight`` (looked up as training does: exact name, name without ``?``,
    ``default``), else the config default 1.0 (a single ``.onnx`` file, or a run without config.yaml)."""
    if override is not None:
        if not math.isfinite(override):
            raise PlayError(f"the group reward weight must be a finite number, got {override}")
        return {b: float(override) for b in behaviors}
    source = Path(source)
    sections = {} if source.is_file() else (_run_config(source).get("behaviors") or {})
    settings: dict[str, BehaviorSettings] = {}
    for key, section in dict(sections).items():
        value = (section or {}).get("group_reward_weight", BehaviorSettings.group_reward_weight)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise PlayError(
                f"{source / 'config.yaml'}: behaviors.{key}.group_reward_weight is {value!r}, not a finite "
                "number; fix it or pass --group-reward-weight"
            )
        settings[str(key)] = BehaviorSettings(group_reward_weight=float(value))
    config = TrainConfig(behaviors=settings)
    return {b: config.behavior_settings(b).group_reward_weight for b in behaviors}


def open_game(env: str, args: list[str], log_dir: Path, seed: int, timeout: float) -> UnityParallelEnv:
    """The game (``sim:NAME`` or a build path), its agents driven by the trainer's actions."""
    from unimarl import sim

    file_name = env
    if env.startswith("sim:"):
        file_name = str(sim.make_build(env[4:], log_dir / "build", extra_args=tuple(args)))
    return UnityParallelEnv(
        file_name,
        seed=seed,
        timeout=timeout,
        additional_args=() if env.startswith("sim:") else tuple(args),
        log_dir=log_dir / "logs",
    )


class ModelActor:
    """One behaviour's ONNX model: observations of deciding agents -> the game's actions."""

    def __init__(
        self,
        path: Path,
        view: AgentView,
        game_layout: str | None,
        stochastic: bool,
        *,
        mean_field: MeanFieldInput | None = None,
    ) -> None:
        import onnxruntime as ort

        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own unexported exception types
            raise PlayError(f"onnxruntime cannot load {path}: {e}") from e
        self.path, self.view = path, view
        spec = view.spec
        declared = {i.name: tuple(i.shape[1:]) for i in self.session.get_inputs()}
        expected = [f"obs_{i}" for i in range(len(spec.obs_shapes))]
        expected += ["action_masks"] * bool(spec.action_spec.discrete_size)
        extra = sorted(set(declared) - set(expected))
        if sorted(set(declared) - {MEAN_ACTION_INPUT}) != sorted(expected):
            raise PlayError(
                f"{path} takes inputs {sorted(declared)}; the game's behaviour needs {expected} "
                f"(optionally followed by {MEAN_ACTION_INPUT!r}): play it against the game it was trained on"
            )
        self.mean_field = mean_field or MeanFieldInput()
        takes_mean = extra == [MEAN_ACTION_INPUT]
        mf = self.mean_field
        self.tracker = (
            MeanActionTracker(spec.action_spec, mf.neighbourhood, mf.radius) if takes_mean else None
        )
        width = declared.get(MEAN_ACTION_INPUT, (None,))[-1]
        if self.tracker is not None and isinstance(width, int) and width != self.tracker.dim:
            raise PlayError(
                f"{path} takes {MEAN_ACTION_INPUT!r} of width {width}; this behaviour's encoded actions have "
                f"{self.tracker.dim} values (continuous size + sum of branch sizes)"
            )
        self.transpose = [
            _needs_transpose(declared[f"obs_{i}"], shape, game_layout, path, i)
            for i, shape in enumerate(spec.obs_shapes)
        ]
        kind = "" if stochastic else "deterministic_"
        act = spec.action_spec
        self.outputs = [f"{kind}continuous_actions"] * bool(act.continuous_size)
        self.outputs += [f"{kind}discrete_actions"] * bool(act.discrete_size)

    def act(self, agents: list[str], raws: list[Any], groups: list[int] | None = None) -> list[Any]:
        """The game's action for each agent (rows of ``raws``, the bridge's observations; ``groups``: their
        Unity group ids, which segment mean actions; None: one group)."""
        obs, mask = self.view.stack(raws)
        feed = {
            f"obs_{i}": o.transpose(0, 3, 1, 2) if t else o
            for i, (o, t) in enumerate(zip(obs, self.transpose, strict=True))
        }
        if mask is not None:
            feed["action_masks"] = mask
        if self.tracker is not None:
            feed[MEAN_ACTION_INPUT] = self.mean_actions(agents, obs, groups)
        n, act = len(agents), self.view.spec.action_spec
        results = dict(zip(self.outputs, self.session.run(self.outputs, feed), strict=True))
        continuous = np.zeros((n, 0), np.float32)
        discrete = np.zeros((n, 0), np.int64)
        for name, value in results.items():
            if name.endswith("continuous_actions"):
                continuous = np.asarray(value, np.float32).reshape(n, act.continuous_size)
            else:
                discrete = np.asarray(value, np.int64).reshape(n, act.discrete_size)
        if self.tracker is not None:
            self.tracker.record(agents, discrete if act.discrete_size else None, continuous)
        return [self.view.to_env_action(c, d, mapped=True) for c, d in zip(continuous, discrete, strict=True)]

    def mean_actions(
        self, agents: list[str], obs: tuple[np.ndarray, ...], groups: list[int] | None
    ) -> np.ndarray:
        """The mean actions fed to the model: the tracker's (neighbours as in training, within each Unity
        group), then the ablation, if any."""
        assert self.tracker is not None
        mf = self.mean_field
        segment = None if groups is None else np.asarray(groups, np.int64)
        positions = None
        if mf.neighbourhood == "radius":
            positions = obs[mf.position_sensor].reshape(len(agents), -1)
        group_ids = segment if mf.neighbourhood == "group" else None
        means = self.tracker.mean_actions(agents, segment=segment, positions=positions, group_id=group_ids)
        if mf.ablation == "zero":
            return np.zeros_like(means)
        if mf.ablation == "shuffle":
            return means[mf.rng.permutation(len(means))]
        return means


def _needs_transpose(
    declared: tuple[Any, ...], shape: tuple[int, ...], game_layout: str | None, path: Path, index: int
) -> bool:
    """Whether observation ``index`` (the game's ``shape``) must be transposed HWC -> CHW for the model."""
    if len(shape) != 3:
        fits = len(declared) == len(shape) and all(
            not isinstance(d, int) or d == s for d, s in zip(declared, shape, strict=True)
        )
        if not fits:
            raise PlayError(f"{path}: input obs_{index} is {list(declared)}, the game sends {list(shape)}")
        return False
    chw_of_hwc = (shape[2], shape[0], shape[1])
    as_is, transposed = declared == shape, declared == chw_of_hwc
    if as_is and transposed:  # a cube: the game's marking decides
        return game_layout == "HWC"
    if as_is or transposed:
        return transposed
    raise PlayError(
        f"{path}: input obs_{index} is {list(declared)}; the game sends {list(shape)} "
        f"({list(chw_of_hwc)} once transposed to CHW): the model was trained on another game"
    )


def play(
    source: str | Path,
    env: str,
    *,
    episodes: int = 10,
    env_args: list[str] | None = None,
    behavior: str | None = None,
    seed: int = 0,
    timeout: float = 60.0,
    max_steps: int = 100_000,
    work_dir: str | Path | None = None,
    stochastic: bool = False,
    group_reward_weight: float | None = None,
) -> PlayResult:
    """Drive the game's agents with the models until ``episodes`` agent episodes of modelled behaviours
    ended (module docstring; ``group_reward_weight`` overrides every behaviour's weight)."""
    with tempfile.TemporaryDirectory(prefix="unimarl-play-") as tmp:
        game = open_game(env, list(env_args or []), Path(work_dir or tmp), seed, timeout)
        try:
            return play_game(
                game,
                source,
                episodes=episodes,
                behavior=behavior,
                seed=seed,
                max_steps=max_steps,
                stochastic=stochastic,
                group_reward_weight=group_reward_weight,
            )
        finally:
            game.close()


def play_game(
    game: UnityParallelEnv,
    source: str | Path,
    *,
    episodes: int = 10,
    behavior: str | None = None,
    seed: int = 0,
    max_steps: int = 100_000,
    stochastic: bool = False,
    group_reward_weight: float | None = None,
) -> PlayResult:
    """:func:`play` on a game the caller opened (e.g. the Editor, or a game with its own side channels); it
    is reset with ``seed`` and left open."""
    rng = np.random.default_rng(seed)
    obs, infos = game.reset(seed=seed)
    models = models_for(source, sorted(game.behavior_specs), behavior)
    weights = group_reward_weights(source, sorted(models), group_reward_weight)
    result = PlayResult(models=models, group_reward_weights=weights)
    actors: dict[str, ModelActor] = {}
    running: dict[str, float] = {}
    finished = 0
    while finished < episodes:
        if result.env_steps >= max_steps:
            raise PlayError(f"{finished} of {episodes} episodes ended in {max_steps} steps: raise max_steps")
        actions = _actions(game, obs, infos, result.models, actors, stochastic, rng)
        obs, rewards, terminations, truncations, infos = game.step(actions)
        result.env_steps += 1
        for agent, reward in rewards.items():
            name = agent_behavior(game, agent, infos.get(agent))
            if name not in result.models:
                continue
            # as training credits it (trainers/algos/mappo/rollout.py): reward + weight * Unity group reward
            group = float((infos.get(agent) or {}).get("group_reward", 0.0) or 0.0)
            running[agent] = running.get(agent, 0.0) + float(reward) + weights[name] * group
            if terminations.get(agent) or truncations.get(agent):
                result.returns[name].append(running.pop(agent))
                finished += 1
    return result


def _actions(
    game: UnityParallelEnv,
    obs: dict[str, Any],
    infos: dict[str, Any],
    models: dict[str, Path],
    actors: dict[str, ModelActor],
    stochastic: bool,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """Actions of the agents that requested a decision: their model's, random ones for behaviours without."""
    deciding: dict[str, list[str]] = defaultdict(list)
    for agent in game.agents:
        if (infos.get(agent) or {}).get("requested_decision", True):
            deciding[agent_behavior(game, agent, infos.get(agent))].append(agent)
    actions: dict[str, Any] = {}
    for name, agents in deciding.items():
        if name not in models:
            for agent in agents:
                space = game.action_space(agent)
                space.seed(int(rng.integers(2**31)))
                raw = obs[agent]
                actions[agent] = space.sample(raw["action_mask"]) if isinstance(raw, dict) else space.sample()
            continue
        actor = actors.get(name)
        if actor is None:
            actor = actors[name] = _actor(game, agents[0], name, models[name], stochastic)
        groups = [group_id(infos.get(a)) for a in agents]
        actions.update(zip(agents, actor.act(agents, [obs[a] for a in agents], groups), strict=True))
    return actions


def _actor(game: UnityParallelEnv, agent: str, behavior: str, path: Path, stochastic: bool) -> ModelActor:
    view = agent_view(
        game.observation_space(agent), game.action_space(agent), None, f"behaviour '{behavior}'"
    )
    layout = visual_layout_of(game.behavior_specs[behavior].observation_specs)
    logger.info("behaviour %s acts from %s", behavior, path)
    return ModelActor(path, view, layout, stochastic)
