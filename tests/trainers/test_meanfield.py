"""Mean actions by hand: team, group and radius neighbourhoods, dead agents, arrivals, masked actions."""

from __future__ import annotations

import numpy as np
import pytest

from unimarl.bridge.spec import ActionSpec
from unimarl.trainers.algos.meanfield.mean_action import (
    MeanActionTracker,
    MeanFieldError,
    Neighbourhood,
    encode_actions,
    mean_actions,
)

SPEC3 = ActionSpec(discrete_branches=(3,))
ALL = np.ones(4, bool)


def onehots(actions: list[int]) -> np.ndarray:
    return encode_actions(SPEC3, np.array(actions)[:, None])


def test_team_mean_excludes_the_agent_itself():
    out = mean_actions(onehots([0, 1, 1, 2]), ALL)
    np.testing.assert_allclose(
        out, [[0, 2 / 3, 1 / 3], [1 / 3, 1 / 3, 1 / 3], [1 / 3, 1 / 3, 1 / 3], [1 / 3, 2 / 3, 0]]
    )


def test_dead_agents_do_not_count_but_still_get_a_mean():
    out = mean_actions(onehots([0, 1, 1, 2]), ALL, alive=np.array([True, True, True, False]))
    np.testing.assert_allclose(out[0], [0, 1, 0])
    np.testing.assert_allclose(out[1], [0.5, 0.5, 0])
    np.testing.assert_allclose(out[3], [1 / 3, 2 / 3, 0])


def test_lone_agent_and_agents_without_previous_action_give_zeros():
    np.testing.assert_array_equal(mean_actions(onehots([2]), np.ones(1, bool)), [[0, 0, 0]])
    out = mean_actions(onehots([0, 1]), np.array([True, False]))
    np.testing.assert_array_equal(out, [[0, 0, 0], [1, 0, 0]])


def test_group_neighbourhood_and_segments():
    acts = onehots([0, 1, 2, 2])
    out = mean_actions(acts, ALL, neighbourhood=Neighbourhood.GROUP, group_id=np.array([5, 5, 7, 7]))
    np.testing.assert_array_equal(out, [[0, 1, 0], [1, 0, 0], [0, 0, 1], [0, 0, 1]])
    # two games batched together: the same group id in another segment is not a neighbour
    out = mean_actions(acts, ALL, neighbourhood="group", group_id=np.zeros(4), segment=np.array([0, 1, 0, 1]))
    np.testing.assert_array_equal(out, [[0, 0, 1], [0, 0, 1], [1, 0, 0], [0, 1, 0]])
    with pytest.raises(MeanFieldError, match="needs group_id"):
        mean_actions(acts, ALL, neighbourhood=Neighbourhood.GROUP)


def test_radius_neighbourhood():
    acts = onehots([0, 1, 2, 2])
    pos = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0], [10.0, 10.0]])
    out = mean_actions(acts, ALL, neighbourhood=Neighbourhood.RADIUS, positions=pos, radius=1.5)
    np.testing.assert_array_equal(out, [[0, 1, 0], [1, 0, 0], [0, 0, 0], [0, 0, 0]])
    out = mean_actions(acts, ALL, neighbourhood=Neighbourhood.RADIUS, positions=pos, radius=3.0)
    np.testing.assert_allclose(out[0], [0, 0.5, 0.5])
    np.testing.assert_allclose(out[2], [1, 0, 0])  # (1, 0) is sqrt(10) > 3 away from (0, 3)
    with pytest.raises(MeanFieldError, match="radius >= 0"):
        mean_actions(acts, ALL, neighbourhood=Neighbourhood.RADIUS, positions=pos)


def test_tracker_handles_deaths_and_arrivals():
    tracker = MeanActionTracker(SPEC3)
    tracker.record(["a", "b", "c"], np.array([[0], [1], [2]]))
    # next step: "a" died, "d" arrived (no previous action: excluded from everyone's mean)
    out = tracker.mean_actions(["b", "c", "d"])
    np.testing.assert_allclose(out, [[0, 0, 1], [0, 1, 0], [0, 0.5, 0.5]])
    # an agent that just ended is passed with alive=False: it gets a mean, and counts for nobody
    out = tracker.mean_actions(["b", "c"], alive=np.array([True, False]))
    np.testing.assert_array_equal(out, [[0, 0, 0], [0, 1, 0]])


def test_neighbours_taken_actions_count_whatever_the_observers_mask():
    # "b" took action 2; even if action 2 is disabled for "a" now, a's mean action shows it: masks only
    # restrict an agent's own policy, they never enter the mean action.
    tracker = MeanActionTracker(SPEC3)
    tracker.record(["a", "b"], np.array([[0], [2]]))
    np.testing.assert_array_equal(tracker.mean_actions(["a", "b"])[0], [0, 0, 1])


def test_encode_mixed_actions_and_bad_input():
    spec = ActionSpec(continuous_size=1, discrete_branches=(2, 3))
    enc = encode_actions(spec, np.array([[1, 2], [0, 0]]), np.array([[0.5], [-1.0]], np.float32))
    np.testing.assert_array_equal(enc, [[0.5, 0, 1, 0, 0, 1], [-1, 1, 0, 1, 0, 0]])
    tracker = MeanActionTracker(spec)
    tracker.record([0, 1], np.array([[1, 2], [0, 0]]), np.array([[0.5], [-1.0]], np.float32))
    np.testing.assert_array_equal(tracker.mean_actions([0, 1]), enc[::-1])
    with pytest.raises(MeanFieldError, match="outside branch 0 of size 3"):
        encode_actions(SPEC3, np.array([[3]]))
    with pytest.raises(MeanFieldError, match="unknown neighbourhood 'ring'"):
        MeanActionTracker(SPEC3, "ring")


def test_large_team_matches_a_loop():
    rng = np.random.default_rng(1)
    acts = onehots(list(rng.integers(0, 3, 128)))
    has, alive = rng.random(128) > 0.1, rng.random(128) > 0.2
    out = mean_actions(acts, has, alive=alive)
    for j in (0, 17, 127):
        nb = [k for k in range(128) if k != j and has[k] and alive[k]]
        np.testing.assert_allclose(out[j], acts[nb].mean(axis=0), rtol=1e-6)


def test_a_step_without_acting_agents_records_nothing():
    tracker = MeanActionTracker(ActionSpec(discrete_branches=(3, 2)), Neighbourhood.TEAM)
    tracker.record(["a", "b"], np.array([[0, 1], [2, 0]]))
    tracker.record([], np.zeros((0, 2), np.int64))  # every agent waits (decision period) or died
    np.testing.assert_array_equal(tracker.mean_actions(["a", "b"]), np.zeros((2, 5), np.float32))
