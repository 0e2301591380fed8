"""Replay ring buffer: wraparound, sampling, frame sharing between consecutive transitions, storage dtypes."""

from __future__ import annotations

import numpy as np
import pytest

from unimarl.trainers.algos.meanfield.mean_action import MeanFieldError
from unimarl.trainers.algos.meanfield.replay import ReplayBuffer, Transitions


def step(values, t: float, keys=None, terminated=None, n_actions: int = 3) -> Transitions:
    """B transitions whose obs hold ``values`` and whose next obs hold ``values + 1``; reward = obs."""
    v = np.asarray(values, np.float32)
    b = len(v)
    return Transitions(
        obs=(np.repeat(v[:, None], 2, axis=1),),
        action=np.arange(b) % n_actions,
        reward=v,
        next_obs=(np.repeat(v[:, None] + 1, 2, axis=1),),
        terminated=np.zeros(b, bool) if terminated is None else np.asarray(terminated),
        mean_action=np.full((b, n_actions), t, np.float32),
        next_mean_action=np.full((b, n_actions), t + 1, np.float32),
        next_action_mask=np.eye(n_actions, dtype=bool)[np.arange(b) % n_actions],
        agent_keys=keys,
    )


def test_wraparound_keeps_the_newest():
    buf = ReplayBuffer([(2,)], capacity=4, n_actions=3, mean_dim=3, share_frames=False, seed=0)
    assert buf.frame_capacity == 8
    for t in range(3):
        buf.add(step([2 * t, 2 * t + 1], t))
    assert len(buf) == 4
    batches = list(buf.iterate(3))
    assert [len(b.reward) for b in batches] == [3, 1]
    rewards = np.concatenate([b.reward for b in batches])
    assert sorted(rewards.tolist()) == [2, 3, 4, 5]


def test_sample_returns_consistent_fields():
    buf = ReplayBuffer([(2,)], capacity=16, n_actions=3, mean_dim=3, share_frames=False, seed=0)
    for t in range(4):
        buf.add(step([10 * t, 10 * t + 1, 10 * t + 2], t))
    s = buf.sample(32)
    assert s.obs[0].shape == (32, 2) and s.obs[0].dtype == np.float32
    np.testing.assert_array_equal(s.next_obs[0], s.obs[0] + 1)
    np.testing.assert_array_equal(s.reward, s.obs[0][:, 0])
    np.testing.assert_array_equal(s.next_mean_action, s.mean_action + 1)
    np.testing.assert_array_equal(s.action, (s.reward % 10).astype(int) % 3)
    np.testing.assert_array_equal(s.next_action_mask, np.eye(3, dtype=bool)[s.action])
    assert s.action_mask.all()  # no mask given for s: all allowed
    assert len(set(s.reward.tolist())) > 4  # draws spread over the buffer
    with pytest.raises(MeanFieldError, match="holding 0"):
        ReplayBuffer([(2,)], capacity=4, n_actions=3).sample(1)


def test_consecutive_transitions_share_frames():
    buf = ReplayBuffer([(2,)], capacity=64, n_actions=3, mean_dim=3)
    for t in range(5):
        buf.add(step([t, 100 + t], t, keys=["a", "b"]))
    assert buf.frames_written == 2 + 5 * 2  # first obs of each agent, then one frame per transition
    # a caller that skips a step gets correct data, not the shared frame
    buf.add(step([50, 200], 9, keys=["a", "b"]))
    assert buf.frames_written == 12 + 4
    rows = np.concatenate([b.obs[0][:, 0] for b in buf.iterate(64)])
    assert sorted(rows.tolist()) == [0, 1, 2, 3, 4, 50, 100, 101, 102, 103, 104, 200]


def test_terminated_ends_the_chain():
    buf = ReplayBuffer([(2,)], capacity=64, n_actions=3, mean_dim=3)
    buf.add(step([0.0], 0, keys=["a"], terminated=[True]))
    buf.add(step([1.0], 1, keys=["a"]))  # same name, new episode: its first frame is written anew
    assert buf.frames_written == 4


def test_frames_stay_consistent_over_many_wraps():
    buf = ReplayBuffer([(2,)], capacity=24, n_actions=3, mean_dim=3, frame_slack=0.25, seed=1)
    keys = [f"agent{i}" for i in range(6)]
    for t in range(200):
        ended = (np.arange(6) + t) % 7 == 0  # agents end at different times and restart under their names
        buf.add(step(1000 * np.arange(6) + t, t, keys=keys, terminated=ended))
    s = buf.sample(500)
    np.testing.assert_array_equal(s.next_obs[0], s.obs[0] + 1)
    np.testing.assert_array_equal(s.reward, s.obs[0][:, 0])
    assert s.reward.min() >= 200 - 24 // 6 - 1 - 1  # only the newest transitions survive


def test_uint8_storage_is_checked_lossless():
    buf = ReplayBuffer([(2,)], capacity=8, n_actions=3, mean_dim=3, obs_dtypes=["uint8"], share_frames=False)
    buf.add(step([3.0], 0))
    assert buf.sample(1).obs[0].tolist() == [[3.0, 3.0]]
    with pytest.raises(MeanFieldError, match=r"not integers in 0\.\.255.*float16"):
        buf.add(step([0.5], 0))
    with pytest.raises(MeanFieldError, match="must name one of"):
        ReplayBuffer([(2,)], capacity=8, n_actions=3, obs_dtypes=["int4"])


def test_bytes_per_transition():
    buf = ReplayBuffer(
        [(13, 13, 5), (7,)], capacity=1000, n_actions=21, mean_dim=21, obs_dtypes=["uint8", "float32"]
    )
    frame = 845 + 7 * 4 + 21 * 4 + 21
    row = 8 + 8 + 2 + 4 + 1
    assert buf.frame_capacity == 1125
    assert buf.bytes_per_transition == pytest.approx((1125 * frame + 1000 * row) / 1000)


def test_batch_larger_than_capacity_is_rejected():
    buf = ReplayBuffer([(2,)], capacity=4, n_actions=3, mean_dim=3)
    with pytest.raises(MeanFieldError, match="raise the capacity to at least 10"):
        buf.add(step(np.arange(5), 0, keys=list(range(5))))
    with pytest.raises(MeanFieldError, match="needs agent_keys"):
        buf.add(step([1.0], 0))


def _first_frames_only(capacity: int, frame_slack: float) -> ReplayBuffer:
    """A full buffer whose every transition starts a new agent (two frames each): with little frame slack
    the older rows lose their frames, so a share of the buffer cannot be sampled."""
    buf = ReplayBuffer([(2,)], capacity=capacity, n_actions=3, mean_dim=3, frame_slack=frame_slack, seed=1)
    for t in range(capacity // 10):
        buf.add(step(np.arange(10) + 10 * t, t, keys=[("agent", 10 * t + k) for k in range(10)]))
    return buf


def test_sample_returns_exactly_the_size_asked_when_many_rows_lost_their_frames():
    buf = _first_frames_only(1000, frame_slack=0.125)
    stale = ~buf._valid(np.arange(len(buf)))
    assert 0.3 < stale.mean() < 0.6  # the case that made rejection sampling come back short
    s = buf.sample(20_000)
    assert len(s.reward) == 20_000
    # only rows whose frames are intact: the newest rows (their obs are the largest values)
    newest = 1000 - int((~stale).sum())
    assert s.reward.min() >= newest
    np.testing.assert_array_equal(s.next_obs[0], s.obs[0] + 1)


def test_sample_from_a_buffer_without_intact_frames_says_why():
    buf = ReplayBuffer([(2,)], capacity=10, n_actions=3, mean_dim=3, frame_slack=0.0, seed=0)
    buf.add(step(np.arange(5), 0, keys=list(range(5))))
    buf._frames_written += buf.frame_capacity  # every frame overwritten (as by other agents' first frames)
    with pytest.raises(MeanFieldError, match=r"none of the 5 stored transitions.*frame_slack=0\.0"):
        buf.sample(4)


def test_behaviour_log_probabilities_stay_with_their_rows():
    """With store_logp each row keeps the log-probability it was added with (here -reward), through
    wraparound and shuffling; without it (or for rows added without one) it reads as NaN."""
    import dataclasses

    buf = ReplayBuffer([(2,)], capacity=8, n_actions=3, mean_dim=3, share_frames=False, store_logp=True)
    for t in range(5):
        values = np.arange(3, dtype=np.float32) + 10 * t
        buf.add(dataclasses.replace(step(values, t), logp=-values))
    buf.add(step(np.array([99.0], np.float32), 5))  # no logp
    rewards = []
    for s in buf.iterate(3):
        known = ~np.isnan(s.logp)
        np.testing.assert_array_equal(s.logp[known], -s.reward[known])
        assert np.all(s.reward[~known] == 99.0)
        rewards += s.reward.tolist()
    assert 99.0 in rewards and 40.0 in rewards and len(rewards) >= 4  # rows on both sides of the wrap
    plain = ReplayBuffer([(2,)], capacity=8, n_actions=3, mean_dim=3, share_frames=False)
    plain.add(dataclasses.replace(step([1.0], 0), logp=np.array([-1.0], np.float32)))
    assert np.isnan(plain.sample(2).logp).all()
