"""Curriculum lessons: environment parameters that change as training goes (ML-Agents' ``curriculum``).

Each parameter with a curriculum plays its lessons in order. After every learning round the loop gives
:meth:`Curriculum.update` the run's progress (as the schedules take it: env steps / max_steps, or the share
of max_seconds spent when that is further) and the cumulative rewards of the
episodes that ended; a lesson whose completion criteria are met moves on, as mlagents-learn's
``EnvironmentParameterManager.update_lessons`` does:

* no lesson ends before its behaviour has finished ``min_lesson_length`` episodes: each behaviour keeps the
  rewards of its last ``max(min_lesson_length)`` episodes (over the criteria naming it, at least 1);
* ``measure: progress`` ends the lesson once progress > ``threshold``;
* ``measure: reward`` ends it once the mean of that buffer (with ``signal_smoothing``: ``0.25 * previous
  smoothed value + 0.75 * mean``) > ``threshold``;
* when any lesson moved on, every behaviour's reward buffer is emptied (the rewards were earned in the old
  lesson), the new values are sent to every game, and with ``require_reset`` every game is reset.

Its state (lesson numbers, smoothed values) is part of the run's checkpoints, so ``--resume`` continues in
the lesson the run had reached. Metrics: ``lesson/<parameter>`` (TensorBoard ``Environment/Lesson
Number/<parameter>`` for every policy, ML-Agents' tag).
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, TypeAlias

from unimarl.trainers.core.config import (
    CompletionCriteria,
    CurriculumSettings,
    EnvironmentParameter,
    SamplerSettings,
)
from unimarl.trainers.core.errors import ResumeError

logger = logging.getLogger(__name__)

Value: TypeAlias = float | SamplerSettings


def current_values(
    parameters: dict[str, EnvironmentParameter], lessons: dict[str, int] | None = None
) -> dict[str, Value]:
    """What the games are sent: every parameter's value, a curriculum's in lesson ``lessons[name]`` (the
    first when not given)."""
    out: dict[str, Value] = {}
    for name, parameter in parameters.items():
        if isinstance(parameter, CurriculumSettings):
            out[name] = parameter.curriculum[(lessons or {}).get(name, 0)].value
        else:
            out[name] = parameter
    return out


def last_lessons(parameters: dict[str, EnvironmentParameter]) -> dict[str, Value]:
    """Every parameter's value, a curriculum's in its last lesson (the task the lessons lead to)."""
    return current_values(
        parameters,
        {n: len(p.curriculum) - 1 for n, p in parameters.items() if isinstance(p, CurriculumSettings)},
    )


class Curriculum:
    """The lessons of a run's curricula; see the module docstring."""

    def __init__(self, parameters: dict[str, EnvironmentParameter]) -> None:
        self.parameters = parameters
        self.curricula = {n: p for n, p in parameters.items() if isinstance(p, CurriculumSettings)}
        self.lessons = {name: 0 for name in self.curricula}
        self.smoothed = {name: 0.0 for name in self.curricula}
        sizes: dict[str, int] = {}
        for name, curriculum in self.curricula.items():
            last = curriculum.curriculum[-1]
            if last.completion_criteria is not None:
                logger.warning(
                    "environment_parameters.%s: the last lesson (%r) has completion_criteria; they are "
                    "ignored (the last lesson lasts to the end of training)",
                    name,
                    last.name,
                )
            for lesson in curriculum.curriculum[:-1]:
                c = lesson.completion_criteria
                assert c is not None  # checked by CurriculumSettings.check
                sizes[c.behavior] = max(sizes.get(c.behavior, 1), c.min_lesson_length)
        self.rewards: dict[str, deque[float]] = {b: deque(maxlen=n) for b, n in sizes.items()}
        """Criteria behaviour -> cumulative rewards of its last episodes (ML-Agents' reward buffer)."""

    def __bool__(self) -> bool:
        return bool(self.curricula)

    def values(self) -> dict[str, Value]:
        """Every parameter's value now."""
        return current_values(self.parameters, self.lessons)

    def episodes_ended(self, behavior: str, returns: list[float]) -> None:
        """Cumulative rewards of ``behavior``'s episodes that just ended."""
        for name, buffer in self.rewards.items():
            if name in (behavior, behavior.split("?", 1)[0]):
                buffer.extend(returns)

    def update(self, progress: float) -> tuple[bool, bool]:
        """Move every lesson whose criteria are met on by one, at ``progress`` (0 to 1) of training; returns
        (whether a lesson moved on, whether the games must be reset)."""
        moved = reset = False
        for name, curriculum in self.curricula.items():
            lesson = curriculum.curriculum[self.lessons[name]]
            criteria = lesson.completion_criteria
            if criteria is None or self.lessons[name] == len(curriculum.curriculum) - 1:
                continue
            done, self.smoothed[name] = _met(
                criteria, progress, self.rewards[criteria.behavior], self.smoothed[name]
            )
            if done:
                self.lessons[name] += 1
                moved = True
                reset = reset or criteria.require_reset
                nxt = curriculum.curriculum[self.lessons[name]]
                logger.info(
                    "Parameter '%s' is in lesson '%s' and has value '%s'.", name, nxt.name, _shown(nxt.value)
                )
        if moved:
            for buffer in self.rewards.values():
                buffer.clear()
        return moved, reset

    def metrics(self) -> dict[str, float]:
        return {f"lesson/{name}": float(number) for name, number in self.lessons.items()}

    def state_dict(self) -> dict[str, Any]:
        lessons = {
            name: (self.lessons[name], self.curricula[name].curriculum[self.lessons[name]].name)
            for name in self.curricula
        }
        return {"lessons": lessons, "smoothed": dict(self.smoothed)}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Lessons from a checkpoint; a checkpoint of a run without curricula starts every one at lesson 0,
        and a lesson the config no longer has is an error."""
        for name, (number, lesson_name) in ((state or {}).get("lessons") or {}).items():
            if name not in self.curricula:
                logger.warning(
                    "checkpoint holds a lesson of environment parameter %r, not in the config", name
                )
                continue
            lessons = self.curricula[name].curriculum
            if number >= len(lessons) or lessons[number].name != lesson_name:
                raise ResumeError(
                    f"the checkpoint is in lesson {number} ({lesson_name!r}) of environment parameter "
                    f"{name!r}, which the config's curriculum ({[x.name for x in lessons]}) does not have; "
                    "resume with the curriculum the run was started with"
                )
            self.lessons[name] = number
            self.smoothed[name] = float(((state or {}).get("smoothed") or {}).get(name, 0.0))
        for name in self.curricula:
            lesson = self.curricula[name].curriculum[self.lessons[name]]
            logger.info(
                "Parameter '%s' is in lesson '%s' and has value '%s'.",
                name,
                lesson.name,
                _shown(lesson.value),
            )


def _met(
    criteria: CompletionCriteria, progress: float, rewards: deque[float], smoothed: float
) -> tuple[bool, float]:
    """Whether ``criteria`` are met, and the new smoothed reward (ML-Agents' ``need_increment``)."""
    if len(rewards) < criteria.min_lesson_length:
        return False, smoothed
    if criteria.measure == "progress":
        return progress > criteria.threshold, smoothed
    if not rewards:
        return False, smoothed
    measure = sum(rewards) / len(rewards)
    if criteria.signal_smoothing:
        measure = smoothed = 0.25 * smoothed + 0.75 * measure
    return measure > criteria.threshold, smoothed


def _shown(value: Value) -> str:
    if isinstance(value, SamplerSettings):
        return f"{value.sampler_type} sampler {value.sampler_parameters}"
    return str(value)
