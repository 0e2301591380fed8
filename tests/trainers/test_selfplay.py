"""Self-play snapshot pool: the reference mix update on wins, pool size, opponent sampling, checkpoint."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from unimarl.trainers.algos.meanfield.learners import SelfPlaySettings
from unimarl.trainers.selfplay.snapshots import SnapshotPool, mix_weights


def _w(value: float) -> dict[str, np.ndarray]:
    return {"w": np.full(3, value, np.float32), "n": np.array([7], np.int64)}


def test_mix_is_the_reference_update() -> None:
    out = mix_weights(_w(1.0), _w(0.0), 0.99)
    np.testing.assert_allclose(out["w"], 0.99)
    assert out["n"][0] == 7


def test_only_wins_refresh_the_opponent() -> None:
    pool = SnapshotPool(SelfPlaySettings(opponent="B"), _w(0.0))
    assert not pool.record(False, _w(1.0))
    np.testing.assert_allclose(pool.current()["w"], 0.0)
    assert pool.record(True, _w(1.0))
    np.testing.assert_allclose(pool.current()["w"], 0.99)
    assert pool.record(True, _w(1.0))
    np.testing.assert_allclose(pool.current()["w"], 0.99 + 0.01 * 0.99)
    assert pool.win_rate() == pytest.approx(2 / 3)


def test_copy_update_and_pool_size() -> None:
    pool = SnapshotPool(SelfPlaySettings(opponent="B", update="copy", pool_size=2), _w(0.0))
    for v in (1.0, 2.0, 3.0):
        pool.record(True, _w(v))
    assert [float(s["w"][0]) for s in pool.snapshots] == [2.0, 3.0]
    np.testing.assert_allclose(pool.current()["w"], 3.0)


@pytest.mark.parametrize("sample", ["uniform", "win_rate"])
def test_sampling_draws_past_snapshots(sample: str) -> None:
    pool = SnapshotPool(SelfPlaySettings(opponent="B", update="copy", sample=sample, pool_size=5), _w(0.0))
    drawn = set()
    for i in range(60):
        pool.record(True, _w(float(i % 4)))
        drawn.add(pool.active)
    assert len(drawn) > 1  # not always the latest


def test_state_dict_loads_with_weights_only() -> None:
    pool = SnapshotPool(SelfPlaySettings(opponent="B"), _w(0.0))
    pool.record(True, _w(1.0))
    buf = io.BytesIO()
    torch.save(pool.state_dict(), buf)
    buf.seek(0)
    other = SnapshotPool(SelfPlaySettings(opponent="B"), _w(5.0))
    other.load_state_dict(torch.load(buf, weights_only=True))
    np.testing.assert_allclose(other.current()["w"], 0.99)
    assert other.version == 1 and other.games == pool.games


def test_resumed_pool_draws_what_the_uninterrupted_one_draws() -> None:
    settings = SelfPlaySettings(opponent="B", update="copy", sample="uniform", pool_size=6)
    pool = SnapshotPool(settings, _w(0.0), seed=3)
    for i in range(5):
        pool.record(True, _w(float(i)))
    buf = io.BytesIO()
    torch.save(pool.state_dict(), buf)
    buf.seek(0)
    resumed = SnapshotPool(settings, _w(0.0), seed=99)  # a different seed: the state must win
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    for i in range(20):
        pool.record(True, _w(float(i)))
        resumed.record(True, _w(float(i)))
        assert resumed.active == pool.active
