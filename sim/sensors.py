"""ML-Agents' sensor order: an agent's sensors are sorted by name with ``StringComparison.InvariantCulture``.

``Agent.InitializeSensors`` sorts every sensor of an agent with ``SensorUtils.SortSensors``
(com.unity.ml-agents 3.0.0 and 4.0.1: Runtime/Agent.cs:1036, Runtime/Sensors/ISensor.cs:133-137):
``string.Compare(x.GetName(), y.GetName(), StringComparison.InvariantCulture)``. That is a culture collation,
not ordinal: letters compare case-insensitively first (``"position" < "Status"``, where ordinal puts every
upper-case letter first), so the battle agent's sensors go LocalView, position, Status.

:func:`invariant_key` approximates the invariant culture's collation for the names sensors use (ASCII letters,
digits, punctuation such as ``_``): primary level punctuation < digits < letters, letters compared without
case; a name that is a prefix of another sorts first; on a primary tie, the first case difference decides,
lower case before upper case (``"a" < "A"``). Not modelled: ignorable characters (.NET's NLS ignores ``-``
and apostrophes in a "word sort"), accents and non-Latin scripts; sensor names outside the modelled set fall
back to their ordinal order at the primary level, so they still sort deterministically.

The stand-in games declare their sensors in any order; the client (:mod:`unimarl.sim.client`) reorders each
behaviour's observations with :func:`sorted_behavior` / :func:`reorder_batch` before anything is sent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from unimarl.sim.game import AgentBatch, BehaviorDef


def invariant_key(name: str) -> tuple[tuple[tuple[int, int], ...], tuple[int, ...]]:
    """Sort key of ``name`` that orders ASCII names as .NET's ``StringComparison.InvariantCulture`` does."""
    primary = []
    for char in name:
        if char.isascii() and char.isalpha():
            primary.append((3, ord(char.lower())))
        elif char.isascii() and char.isdigit():
            primary.append((2, ord(char)))
        elif char.isascii():
            primary.append((1, ord(char)))  # punctuation and symbols sort before digits and letters
        else:
            primary.append((4, ord(char)))  # outside the model: after ASCII, ordinal among themselves
    # tertiary level: compared only when the primary keys tie; lower case (0) before upper case (1)
    tertiary = tuple(1 if char.isupper() else 0 for char in name)
    return tuple(primary), tertiary


def sensor_order(names: Sequence[str]) -> tuple[int, ...]:
    """Indices of ``names`` in ML-Agents' sensor order (``SensorUtils.SortSensors``)."""
    return tuple(sorted(range(len(names)), key=lambda i: invariant_key(names[i])))


def sorted_behavior(behavior: BehaviorDef) -> tuple[BehaviorDef, tuple[int, ...]]:
    """``behavior`` with its observations in ML-Agents' order, and that order (indices into the game's)."""
    order = sensor_order([o.name for o in behavior.observations])
    observations = tuple(behavior.observations[i] for i in order)
    return dataclasses.replace(behavior, observations=observations), order


def reorder_batch(batch: AgentBatch, order: tuple[int, ...]) -> AgentBatch:
    """``batch`` with its observation arrays in ``order`` (the same object when the order is unchanged)."""
    if order == tuple(range(len(order))):
        return batch
    # a plain AgentBatch: a CachedBatch's cached wire bytes hold the old order
    plain = {f.name: getattr(batch, f.name) for f in dataclasses.fields(AgentBatch)}
    return AgentBatch(**{**plain, "obs": [batch.obs[i] for i in order]})
