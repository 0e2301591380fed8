"""The battle game's knowledge: battles from the runner's episodes, and the scripted baseline."""

from __future__ import annotations

from typing import Any

import numpy as np

from unimarl.sim import battle
from unimarl.trainers.algos.meanfield.worker import baseline_actions
from unimarl.trainers.collect.runner import AgentEnd
from unimarl.trainers.envs.battles import FIRST_ATTACK, EnvBook, scripted_choices

TEAMS = ("Battle?team=0", "Battle?team=1")


def _behavior(agent: str) -> str:
    return agent.split("#")[0]


def _end(agent: str, ret: float, terminated: bool = True) -> AgentEnd:
    return AgentEnd(agent, _behavior(agent), None, 0, 0.0, terminated, not terminated, {}, ret, 1)


def _book(agents: dict[str, int]) -> tuple[EnvBook, dict[str, Any]]:
    """A book of one environment whose ``agents`` (name ``<behaviour>#<k>`` -> group) are live."""
    book = EnvBook(0, {b: b for b in TEAMS}, (), lambda: {})
    infos = {a: {"group_id": g} for a, g in agents.items()}
    book.register(agents, _behavior, infos)
    return book, infos


def test_a_battle_ends_when_every_agent_of_its_groups_has_ended() -> None:
    """Area groups 1 (team 0) and 2 (team 1): the battle ends at the step the last agent of both groups ends,
    even when new agents of those groups start at that step; kills are the other team's deaths."""
    live = {"Battle?team=0#0": 1, "Battle?team=0#1": 1, "Battle?team=1#0": 2}
    book, infos = _book(live)
    assert book.step([_end("Battle?team=0#0", -1.0)], [], _behavior, infos) == []
    infos |= {"Battle?team=0#2": {"group_id": 1}, "Battle?team=1#1": {"group_id": 2}}
    ends = [_end("Battle?team=0#1", 2.0), _end("Battle?team=1#0", 4.0, terminated=False)]
    battles = book.step(ends, ["Battle?team=0#2", "Battle?team=1#1"], _behavior, infos)
    assert battles == [[1, 2]]
    (outcome,) = book.outcomes(battles, {}, ())
    assert outcome.kills == {"Battle?team=0": 0.0, "Battle?team=1": 2.0}
    assert outcome.returns == {"Battle?team=0": 0.5, "Battle?team=1": 4.0} and outcome.steps == 2
    assert outcome.groups == {"Battle?team=0": 1, "Battle?team=1": 2}
    assert set(book.member) == {"Battle?team=0#2", "Battle?team=1#1"}  # the next battle's agents


def test_an_agent_seen_first_at_the_step_it_ends_fights_in_that_steps_battle() -> None:
    book, infos = _book({"Battle?team=0#0": 1})
    infos["Battle?team=1#0"] = {"group_id": 2}
    ends = [_end("Battle?team=0#0", 1.0), _end("Battle?team=1#0", 3.0)]
    battles = book.step(ends, [], _behavior, infos)
    assert battles == [[1, 2]]
    (outcome,) = book.outcomes(battles, {}, ())
    assert outcome.kills == {"Battle?team=0": 1.0, "Battle?team=1": 1.0}


def test_the_scripted_baseline_attacks_with_the_games_attack_actions() -> None:
    """The attack actions are the sim battle's; the scripted choices are the allowed attacks when there are
    any; the actions drawn for a seed stay the same."""
    assert FIRST_ATTACK == battle.FIRST_ATTACK and battle.NUM_ACTIONS == 21
    mask = np.random.default_rng(1).random((10, 21)) < 0.3
    mask[0] = False  # nothing allowed: everything is
    mask[1, FIRST_ATTACK:] = False  # no adjacent enemy: the allowed moves
    choices = scripted_choices(np.where(mask.any(axis=1, keepdims=True), mask, True))
    attacks = mask[:, FIRST_ATTACK:].any(axis=1)
    assert not choices[attacks, :FIRST_ATTACK].any()
    np.testing.assert_array_equal(choices[1], mask[1])
    actions = baseline_actions("baseline:scripted", mask.astype(np.int8), 10, np.random.default_rng(0))
    assert actions.tolist() == [18, 6, 13, 18, 10, 10, 17, 9, 16, 20]
