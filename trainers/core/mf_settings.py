"""Config sections of the mean-field trainers (``trainer_type: mfq`` / ``mfac``), torch-free.

For a behaviour with ``trainer_type: mfq`` or ``mfac`` the YAML ``hyperparameters:`` section is read into
:class:`MeanFieldHyperparameters` (strict keys, like every section) instead of MAPPO's; ``self_play:``
(:class:`SelfPlaySettings`) makes that behaviour learn against a frozen opponent that drives another
behaviour. Defaults are the reference (MAgent battle) settings of Yang et al. 2018. The learners are built
from these by :func:`unimarl.trainers.algos.meanfield.learners.make_learner`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from unimarl.trainers.core.batch import PolicySpec
from unimarl.trainers.core.errors import ConfigError

MEAN_FIELD_TRAINERS = ("mfq", "mfac")


class Neighbourhood(str, enum.Enum):
    """Which agents' actions enter an agent's mean action."""

    TEAM = "team"
    """Every other live agent of the same behaviour (team) and segment - the reference choice."""
    GROUP = "group"
    """Every other live agent with the same Unity group id."""
    RADIUS = "radius"
    """Every other live agent whose position lies within ``radius`` (Euclidean) of the agent's position."""


MEAN_INPUTS = ("probabilities", "centred")
"""The values of ``mean_action_input``: how a Q network reads the mean action."""


@dataclass
class MeanFieldHyperparameters:
    """MF-Q / MF-AC settings (YAML ``hyperparameters:`` of an mfq / mfac behaviour)."""

    use_mean_action: bool = True
    """False gives the independent baselines: IQL (mfq) or plain actor-critic (mfac)."""
    neighbourhood: str = "team"
    """Whose previous actions form the mean action: team, group (Unity group id) or radius; each within the
    agent's behaviour and Unity group (one area's team when a game runs several areas)."""
    radius: float | None = None
    """Radius for ``neighbourhood: radius``, in the units of the position sensor."""
    mean_action_input: str = "probabilities"
    """How the Q network reads the mean action: probabilities (as it is, the reference) or centred
    (``n_actions * mean - 1``: 0 for the uniform mean, the scale of the observations)."""
    position_sensor: int = 1
    """Index of the observation holding the agent's position (radius neighbourhood); battle: 1, as ML-Agents
    sorts sensors by name (InvariantCulture): LocalView, position, Status."""
    learning_rate: float = 1e-4
    """Adam step size."""
    gamma: float = 0.95
    """Discount."""
    batch_size: int = 64
    """Transitions per gradient step (mfq) or minibatch (mfac)."""
    buffer_capacity: int = 80_000
    """mfq: replay capacity in agent transitions; mfac: transitions held between two updates."""
    replay_ratio: float = 2.0
    """mfq: samples learned per transition collected. Once ``learning_starts`` transitions are stored, each
    chunk the learner ingests is followed by as many gradient steps as keep batch_size x gradient steps >=
    replay_ratio x transitions added (all of them, the first ``learning_starts`` included), so collection
    waits for the learner. 2.0 is the reference's pace (mlii/mfrl ``MemoryGroup.get_batch_num``: 2 x the
    transitions added // batch_size batches after each battle). 0: only the fixed cadence below."""
    update_every: int | None = None
    """mfq: a fixed cadence on top of ``replay_ratio``: ``gradient_steps`` every ``update_every`` worker steps
    (each adds the transitions of every agent of the worker's ``num_envs`` games). Off unless this or
    ``gradient_steps`` is set (the other then defaults to 5 / 1); its steps count towards the ratio, so the
    learner runs whichever asks for more."""
    gradient_steps: int | None = None
    """mfq: gradient steps per round of the fixed cadence (see ``update_every``)."""
    learning_starts: int = 64
    """mfq: transitions stored before the first gradient step."""
    tau: float = 0.005
    """Soft target-network update rate."""
    double_q: bool = True
    """mfq: the online network picks the target policy, the target network evaluates it."""
    temperature: list[list[float]] = field(default_factory=lambda: [[0.0, 1.0], [0.8, 0.2], [1.0, 0.1]])
    """mfq: Boltzmann temperature as [progress, value] points over the run."""
    value_coef: float = 0.1
    """mfac: weight of the critic loss."""
    entropy_coef: float = 0.08
    """mfac: weight of the entropy bonus."""
    encoder: str = "conv"
    """conv (a conv stack per visual sensor) or mlp (every sensor flattened)."""
    conv_channels: list[int] = field(default_factory=lambda: [32, 32])
    """Channels of the 3x3 convolutions."""
    visual_hidden: int = 256
    """Dense units after the convolutions."""
    head_hidden: list[int] = field(default_factory=lambda: [128, 64])
    """Dense layers of the Q / actor head."""
    push_every: int = 16
    """Worker steps per batch of transitions streamed to the learner."""
    sync_every: int = 1
    """Learner updates between two weight refreshes sent to the workers."""


@dataclass
class SelfPlaySettings:
    """Self-play: this behaviour learns; ``opponent`` is driven by frozen snapshots of it."""

    opponent: str = ""
    """The behaviour the frozen snapshot plays (e.g. ``Battle?team=1``)."""
    update: str = "mix"
    """After a won round: mix (opponent = mix * learner + (1 - mix) * opponent, the reference) or copy."""
    mix: float = 0.99
    """Weight of the learner in the ``mix`` update."""
    pool_size: int = 10
    """Past snapshots kept in the policy pool."""
    sample: str = "latest"
    """How the opponent is drawn from the pool after each refresh: latest, uniform or win_rate."""
    sides: str = "both"
    """both: learner and opponent trade teams after every battle (each environment alternates; the learner
    masters both starting sides, given observations relative to the own team); own: the learner always
    plays its own behaviour."""
    opponent_runs: str = "trainer"
    """trainer: the rollout workers act for the opponent with the snapshot's weights; game: the snapshot is
    exported as ONNX and pushed into the games, whose opponent agents run it themselves (Unity: Behavior Type
    Heuristic Only calling ``PolicyHotSwap.TryDecide``; sim games: ``--inference-behavior NAME``), so the
    opponent is not one of the trainer's behaviours. Needs ``sides: own``; with the mean action (MF-Q) only
    the ``team`` neighbourhood, which the game computes."""


def check_settings(
    name: str, hp: MeanFieldHyperparameters, sp: SelfPlaySettings | None, trainer_type: str = "mfq"
) -> None:
    """Cross-field checks of one mean-field behaviour, raised as ConfigError naming the key."""
    if hp.neighbourhood not in {n.value for n in Neighbourhood}:
        raise ConfigError(
            f"behaviors.{name}.hyperparameters.neighbourhood '{hp.neighbourhood}': use team, group or radius"
        )
    if hp.neighbourhood == "radius" and (hp.radius is None or hp.radius < 0):
        raise ConfigError(f"behaviors.{name}.hyperparameters.radius must be >= 0 with neighbourhood radius")
    if hp.mean_action_input not in MEAN_INPUTS:
        raise ConfigError(
            f"behaviors.{name}.hyperparameters.mean_action_input '{hp.mean_action_input}': use "
            f"{' or '.join(MEAN_INPUTS)}"
        )
    if hp.push_every < 1 or hp.sync_every < 1:
        raise ConfigError(f"behaviors.{name}.hyperparameters push_every and sync_every must be >= 1")
    if trainer_type == "mfq":
        check_pace(name, hp)
    if sp is not None:
        if not sp.opponent:
            raise ConfigError(f"behaviors.{name}.self_play.opponent: name the behaviour the snapshot plays")
        if sp.update not in ("mix", "copy") or not 0 < sp.mix <= 1 or sp.pool_size < 1:
            raise ConfigError(
                f"behaviors.{name}.self_play: update '{sp.update}' must be mix or copy, mix {sp.mix} in "
                f"(0, 1], pool_size {sp.pool_size} >= 1"
            )
        if sp.sides not in ("both", "own"):
            raise ConfigError(f"behaviors.{name}.self_play.sides '{sp.sides}': use both or own")
        if sp.opponent_runs not in ("trainer", "game"):
            raise ConfigError(
                f"behaviors.{name}.self_play.opponent_runs '{sp.opponent_runs}': use trainer or game"
            )
        if sp.opponent_runs == "game" and sp.sides != "own":
            raise ConfigError(
                f"behaviors.{name}.self_play: opponent_runs game needs sides: own (a game keeps running the "
                "pushed model for the opponent's team, so the learner cannot take that team over)"
            )
        takes_mean = trainer_type == "mfq" and hp.use_mean_action  # MF-AC's actor takes no mean action
        if sp.opponent_runs == "game" and takes_mean and hp.neighbourhood != "team":
            raise ConfigError(
                f"behaviors.{name}: self_play.opponent_runs game computes the opponent's mean action in the "
                f"game over the team in each Unity group; neighbourhood '{hp.neighbourhood}' is computed by "
                "the trainer only: use neighbourhood team, use_mean_action false, or opponent_runs trainer"
            )
        if sp.sample not in ("latest", "uniform", "win_rate"):
            raise ConfigError(
                f"behaviors.{name}.self_play.sample '{sp.sample}': use latest, uniform or win_rate"
            )


def fixed_cadence(hp: MeanFieldHyperparameters) -> tuple[int, int]:
    """mfq's fixed cadence as (update_every, gradient_steps); gradient_steps 0 when it is off."""
    if hp.update_every is None and hp.gradient_steps is None:
        return 5, 0
    return (5 if hp.update_every is None else hp.update_every), (
        1 if hp.gradient_steps is None else hp.gradient_steps
    )


def check_pace(name: str, hp: MeanFieldHyperparameters) -> None:
    """mfq's replay ratio and fixed cadence: in range, and not both off."""
    key = f"behaviors.{name}.hyperparameters"
    if hp.replay_ratio < 0 or (hp.update_every is not None and hp.update_every < 1):
        raise ConfigError(
            f"{key}: replay_ratio {hp.replay_ratio} must be >= 0 and update_every {hp.update_every} >= 1"
        )
    if hp.gradient_steps is not None and hp.gradient_steps < 0:
        raise ConfigError(f"{key}.gradient_steps {hp.gradient_steps} must be >= 0")
    if hp.replay_ratio == 0 and fixed_cadence(hp)[1] == 0:
        raise ConfigError(
            f"{key}: replay_ratio 0 and no gradient_steps: MF-Q would never learn; set replay_ratio > 0 "
            "(2 is the reference's pace) or gradient_steps and update_every"
        )


def check_position_sensor(spec: PolicySpec, hp: MeanFieldHyperparameters, behavior: str = "") -> None:
    """With the ``radius`` neighbourhood, ``position_sensor`` must index one of the behaviour's vector
    observations (Python indexing: -n..n-1 for n sensors); ConfigError naming the key, value and range."""
    if hp.neighbourhood != "radius" or not hp.use_mean_action:
        return
    key = f"behaviors.{behavior}.hyperparameters.position_sensor" if behavior else "position_sensor"
    shapes = spec.obs_shapes
    n = len(shapes)
    if not -n <= hp.position_sensor < n:
        raise ConfigError(
            f"{key} is {hp.position_sensor}, but the behaviour has {n} observation(s) {list(shapes)}: use an "
            f"index in {-n}..{n - 1} naming the sensor that holds the agent's position"
        )
    shape = shapes[hp.position_sensor]
    if len(shape) != 1:
        raise ConfigError(
            f"{key} {hp.position_sensor} names an observation of shape {shape}; the position must be a "
            f"vector sensor: use an index in {-n}..{n - 1} of one of {list(shapes)} with one dimension"
        )
