"""The shared self-play snapshot pool, driven by the mean-field reference's rule: the mix update on wins,
pool size, opponent sampling, ratings, checkpoints (also those written before the pool was shared)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from unimarl.trainers.algos.meanfield.learners import SelfPlaySettings
from unimarl.trainers.selfplay.manager import refresh_after_win
from unimarl.trainers.selfplay.pool import SnapshotPool, elo_change, mix_weights


def _w(value: float) -> dict[str, np.ndarray]:
    return {"w": np.full(3, value, np.float32), "n": np.array([7], np.int64)}


def _pool(settings: SelfPlaySettings, initial: dict[str, np.ndarray], seed: int = 0) -> SnapshotPool:
    return SnapshotPool(initial, settings.pool_size, seed=seed)


def test_mix_is_the_reference_update() -> None:
    out = mix_weights(_w(1.0), _w(0.0), 0.99)
    np.testing.assert_allclose(out["w"], 0.99)
    assert out["n"][0] == 7


def test_only_wins_refresh_the_opponent() -> None:
    settings = SelfPlaySettings(opponent="B")
    pool = _pool(settings, _w(0.0))
    assert not refresh_after_win(pool, settings, 0.0, _w(1.0))
    assert not refresh_after_win(pool, settings, 0.5, _w(1.0))  # a draw is no win
    np.testing.assert_allclose(pool.current()["w"], 0.0)
    assert refresh_after_win(pool, settings, 1.0, _w(1.0))
    np.testing.assert_allclose(pool.current()["w"], 0.99)
    assert refresh_after_win(pool, settings, 1.0, _w(1.0))
    np.testing.assert_allclose(pool.current()["w"], 0.99 + 0.01 * 0.99)
    assert pool.win_rate() == pytest.approx(2.5 / 4) and pool.saves == 2 and pool.version == 2


def test_copy_update_and_pool_size() -> None:
    settings = SelfPlaySettings(opponent="B", update="copy", pool_size=2)
    pool = _pool(settings, _w(0.0))
    for v in (1.0, 2.0, 3.0):
        refresh_after_win(pool, settings, 1.0, _w(v))
    assert sorted(float(s["w"][0]) for s in pool.snapshots) == [2.0, 3.0]  # the oldest two went
    np.testing.assert_allclose(pool.current()["w"], 3.0)  # sample latest: the newest


@pytest.mark.parametrize("sample", ["uniform", "win_rate"])
def test_sampling_draws_past_snapshots(sample: str) -> None:
    settings = SelfPlaySettings(opponent="B", update="copy", sample=sample, pool_size=5)
    pool = _pool(settings, _w(0.0))
    drawn = set()
    for i in range(60):
        refresh_after_win(pool, settings, 1.0, _w(float(i % 4)))
        drawn.add(pool.opponent)
    assert len(drawn) > 1  # not always the latest


def test_win_rate_sampling_favours_the_snapshots_the_learner_loses_to() -> None:
    pool = SnapshotPool(_w(0.0), 3, seed=0)
    pool.save(_w(1.0))
    pool.save(_w(2.0))
    pool.games, pool.wins = [50, 50, 50], [50.0, 50.0, 0.0]  # snapshot 2 beats the learner
    counts = np.bincount([(pool.draw("win_rate"), pool.opponent)[1] for _ in range(400)], minlength=3)
    assert counts[2] > 0.8 * 400 and counts[0] > 0  # the floor keeps beaten snapshots in play


def test_battles_rate_the_learner_against_the_snapshot_playing() -> None:
    settings = SelfPlaySettings(opponent="B", update="copy")
    pool = _pool(settings, _w(0.0))
    refresh_after_win(pool, settings, 0.0, _w(1.0))  # a loss against the initial snapshot
    loss = elo_change(1200.0, 1200.0, 0.0)
    assert pool.elo == pytest.approx(1200.0 + loss) and pool.elos[0] == pytest.approx(1200.0 - loss)
    refresh_after_win(pool, settings, 1.0, _w(1.0))  # a win against the same snapshot, then a save
    win = elo_change(1200.0 + loss, 1200.0 - loss, 1.0)
    assert pool.elo == pytest.approx(1200.0 + loss + win) and pool.elos[0] == pytest.approx(
        1200.0 - loss - win
    )
    assert (
        pool.elos[pool.newest] == pool.elo
    )  # a new snapshot starts at the learner's rating, as in ML-Agents


def test_state_dict_loads_with_weights_only() -> None:
    settings = SelfPlaySettings(opponent="B")
    pool = _pool(settings, _w(0.0))
    refresh_after_win(pool, settings, 1.0, _w(1.0))
    buf = io.BytesIO()
    torch.save(pool.state_dict(), buf)
    buf.seek(0)
    other = _pool(settings, _w(5.0))
    other.load_state_dict(torch.load(buf, weights_only=True))
    np.testing.assert_allclose(other.current()["w"], 0.99)
    assert other.version == 1 and other.games == pool.games and other.elo == pool.elo


def test_resumed_pool_draws_what_the_uninterrupted_one_draws() -> None:
    settings = SelfPlaySettings(opponent="B", update="copy", sample="uniform", pool_size=6)
    pool = _pool(settings, _w(0.0), seed=3)
    for i in range(5):
        refresh_after_win(pool, settings, 1.0, _w(float(i)))
    buf = io.BytesIO()
    torch.save(pool.state_dict(), buf)
    buf.seek(0)
    resumed = _pool(settings, _w(0.0), seed=99)  # a different seed: the state must win
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    for i in range(20):
        refresh_after_win(pool, settings, 1.0, _w(float(i)))
        refresh_after_win(resumed, settings, 1.0, _w(float(i)))
        assert resumed.opponent == pool.opponent


def test_a_checkpoint_from_before_the_shared_pool_resumes() -> None:
    """Mean-field checkpoints held the snapshots oldest first, ``active`` and ``refreshes``."""
    settings = SelfPlaySettings(opponent="B", update="copy", pool_size=3)
    old = {
        "snapshots": [{"w": torch.full((3,), v), "n": torch.tensor([7])} for v in (1.0, 2.0, 3.0)],
        "games": [4, 2, 1],
        "wins": [3, 1, 0],
        "active": 1,
        "version": 5,
        "refreshes": 5,
    }
    pool = _pool(settings, _w(0.0))
    pool.load_state_dict(old)
    assert pool.opponent == 1 and float(pool.current()["w"][0]) == 2.0 and pool.saves == 5
    assert float(pool.snapshots[pool.newest]["w"][0]) == 3.0  # the next mix starts from the newest
    refresh_after_win(pool, settings, 1.0, _w(9.0))
    assert sorted(float(s["w"][0]) for s in pool.snapshots) == [2.0, 3.0, 9.0]  # the oldest went
