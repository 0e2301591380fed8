"""Battle's side symmetry: mirrored maps, egocentric observations, masks and actions for team 1.

The mirror of an arena swaps the teams and mirrors every column (c -> size - 1 - c). Each team sees and acts
in its own frame, so the mirrored arena must give team 1 exactly what the original gives team 0 (and the
reverse), and the same actions must lead to mirrored states. The battle's win stat uses the evaluator's rule.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from unimarl.sim.battle import (
    ATTACKS,
    FIRST_ATTACK,
    MIRRORED_ACTION,
    MOVES,
    NUM_ACTIONS,
    Arena,
    Battle,
)
from unimarl.sim.game import EnvParams

SIZE, TEAM, VIEW = 12, 6, 7


def _arena(seed: int, size: int = SIZE, obstacles: float = 0.15) -> Arena:
    arena = Arena(size, TEAM, VIEW, obstacles, np.random.default_rng(seed))
    arena.reset()
    return arena


def _scatter(arena: Arena, rng: np.random.Generator) -> None:
    """Place all agents anywhere free (teams mixed, in contact), with random hp and some dead."""
    free = np.argwhere(~arena.wall)
    arena.pos[:] = free[rng.choice(len(free), 2 * TEAM, replace=False)]
    arena.hp[:] = rng.integers(1, 6, 2 * TEAM) * 2.0
    arena.alive[:] = rng.random(2 * TEAM) > 0.2
    arena.ep_step = int(rng.integers(0, 50))


def _mirror(arena: Arena) -> Arena:
    """The same situation with the teams swapped and the columns mirrored."""
    other = Arena(arena.size, TEAM, VIEW, 0.0, np.random.default_rng(0))
    swap = np.r_[TEAM : 2 * TEAM, 0:TEAM]  # other's agent k is arena's agent swap[k]
    other.wall = arena.wall[:, ::-1].copy()
    other.pos = arena.pos[swap].copy()
    other.pos[:, 1] = arena.size - 1 - other.pos[:, 1]
    other.hp, other.alive = arena.hp[swap].copy(), arena.alive[swap].copy()
    other.action, other.ep_step = arena.action[swap].copy(), arena.ep_step
    other.acc, other.kills = arena.acc[swap].copy(), arena.kills[::-1].copy()
    return other


TEAM0, TEAM1 = np.arange(TEAM), np.arange(TEAM, 2 * TEAM)


def test_mirrored_action_negates_the_column_offset():
    assert sorted(MIRRORED_ACTION.tolist()) == list(range(NUM_ACTIONS))
    np.testing.assert_array_equal(MIRRORED_ACTION[MIRRORED_ACTION], np.arange(NUM_ACTIONS))
    assert MIRRORED_ACTION[0] == 0
    for a in range(1, FIRST_ATTACK):
        np.testing.assert_array_equal(MOVES[MIRRORED_ACTION[a] - 1], MOVES[a - 1] * [1, -1])
    for a in range(FIRST_ATTACK, NUM_ACTIONS):
        m = MIRRORED_ACTION[a] - FIRST_ATTACK
        np.testing.assert_array_equal(ATTACKS[m], ATTACKS[a - FIRST_ATTACK] * [1, -1])


@pytest.mark.parametrize("size", [11, 12, 24, 25])
def test_map_and_start_regions_are_mirror_symmetric(size):
    for seed in range(5):
        arena = _arena(seed, size, obstacles=0.2)
        np.testing.assert_array_equal(arena.wall, arena.wall[:, ::-1])
        assert arena.wall[1:-1, 1:-1].any(), "obstacles must still be drawn"
        half = size // 2
        cols0, cols1 = arena.pos[TEAM0, 1], arena.pos[TEAM1, 1]
        assert cols0.min() >= 1 and cols0.max() < half
        assert cols1.min() >= size - half and cols1.max() < size - 1
        assert not arena.wall[arena.pos[:, 0], arena.pos[:, 1]].any()


@pytest.mark.parametrize("seed", range(6))
def test_mirrored_arena_gives_each_team_the_other_teams_observations_and_masks(seed):
    arena = _arena(seed)
    _scatter(arena, np.random.default_rng(seed))
    other = _mirror(arena)
    for mine, theirs in ((TEAM0, TEAM1), (TEAM1, TEAM0)):
        for a, b in zip(arena.observe(mine, 100), other.observe(theirs, 100), strict=True):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(arena.masks(mine), other.masks(theirs))
    # not trivially equal: the view is not symmetric itself, and team 1 sees its own frame
    view0 = arena.observe(TEAM0, 100)[0]
    assert not np.array_equal(view0, view0[:, :, ::-1])


def _uncontested_actions(arena: Arena, rng: np.random.Generator) -> np.ndarray:
    """Random allowed actions; a mover whose target another mover also wants stays instead."""
    mask = arena.masks(np.arange(2 * TEAM))
    allowed = [np.nonzero(~row)[0] for row in mask]
    action = np.array([rng.choice(a) for a in allowed])
    frame = np.where(arena.team[:, None] == 1, [1, -1], [1, 1])
    moving = (action >= 1) & (action < FIRST_ATTACK)
    target = arena.pos + MOVES[np.clip(action - 1, 0, len(MOVES) - 1)] * frame
    cells = [tuple(t) for t in target]
    for k in np.nonzero(moving)[0]:
        if sum(moving[j] and cells[j] == cells[k] for j in range(2 * TEAM)) > 1:
            action[k] = 0
    return action


@pytest.mark.parametrize("seed", range(6))
def test_same_actions_in_the_mirrored_arena_give_the_mirrored_state(seed):
    rng = np.random.default_rng(100 + seed)
    arena = _arena(seed)
    _scatter(arena, rng)
    for _ in range(4):
        arena.action[:] = _uncontested_actions(arena, rng)
        other = _mirror(arena)
        arena.step()
        other.step()
        expected = _mirror(arena)
        np.testing.assert_array_equal(other.alive, expected.alive)
        live = other.alive
        np.testing.assert_array_equal(other.pos[live], expected.pos[live])
        np.testing.assert_array_equal(other.hp, expected.hp)
        np.testing.assert_array_equal(other.acc, expected.acc)
        np.testing.assert_array_equal(other.kills, expected.kills)
    assert arena.kills.sum() + (arena.hp < 10).sum() > 0, "the scenario must include fighting"


def _lone_pair(team1_col: int, enemy_col: int) -> Arena:
    """One living agent per team on row 5 of an empty map, the rest dead."""
    arena = Arena(SIZE, TEAM, VIEW, 0.0, np.random.default_rng(0))
    arena.reset()
    arena.alive[:] = False
    arena.alive[[0, TEAM]] = True
    arena.pos[0], arena.pos[TEAM] = (5, enemy_col), (5, team1_col)
    return arena


def test_team1_actions_and_view_are_mirrored_on_the_map():
    right = 1 + [tuple(m) for m in MOVES.tolist()].index((0, 1))
    attack_right = FIRST_ATTACK + [tuple(a) for a in ATTACKS.tolist()].index((0, 1))
    arena = _lone_pair(team1_col=7, enemy_col=6)  # team 0's agent is on team 1's (map) left
    view, _, position = arena.observe(np.array([TEAM]), 100)
    centre = VIEW // 2
    assert view[0, centre, centre + 1, 2] == 1.0 and view[0, centre, centre - 1, 2] == 0.0
    np.testing.assert_allclose(position[0], [1 - 7 / (SIZE - 1), 5 / (SIZE - 1)], rtol=1e-6)
    mask = arena.masks(np.array([TEAM]))[0]
    assert not mask[attack_right] and mask[MIRRORED_ACTION[attack_right]]
    assert mask[right] and not mask[MIRRORED_ACTION[right]]  # right is the enemy's cell
    arena.action[TEAM] = attack_right
    arena.step()
    assert arena.hp[0] == 8.0 and arena.hp[TEAM] == 10.0
    arena.action[:] = 0
    arena.action[TEAM] = MIRRORED_ACTION[right]  # egocentric left = map right
    arena.step()
    np.testing.assert_array_equal(arena.pos[TEAM], [5, 8])


@pytest.mark.parametrize(("kills", "win"), [((3, 1), 1.0), ((1, 3), 0.0), ((2, 2), 0.5)])
def test_team0_win_counts_kills_when_the_battle_is_interrupted(kills, win):
    parser = argparse.ArgumentParser()
    Battle.add_arguments(parser)
    game = Battle(parser.parse_args(["--team-size", "4", "--grid", "10"]), 3, 1)
    params = EnvParams({"max_steps": 1.0})
    game.reset(params)
    game.arenas[0].kills[:] = kills  # as if earlier steps had killed; this step only waits (action 0)
    game.step(params)
    stats = {key: value for key, value, _ in game.pop_stats()}
    assert stats["Battle/team0_win"] == win
    assert (stats["Battle/kills_team0"], stats["Battle/kills_team1"]) == kills
