"""GAE on hand-computed trajectories: termination, truncation, unfinished fragments."""

from __future__ import annotations

import numpy as np
import pytest

from unimarl.trainers.algos.mappo.gae import gae
from unimarl.trainers.core.errors import TrainerError

REWARDS = np.array([1.0, 0.0, 2.0])
VALUES = np.array([0.5, 1.0, 1.5])
GAMMA, LAM = 0.9, 0.8

# deltas: 1 + 0.9*1.0 - 0.5 = 1.4, 0 + 0.9*1.5 - 1.0 = 0.35, last = 2 + 0.9*V_next - 1.5
# A_t = delta_t + 0.72 * A_{t+1}
TERMINATED_ADV = [1.4 + 0.72 * (0.35 + 0.72 * 0.5), 0.35 + 0.72 * 0.5, 0.5]  # V_next = 0
BOOTSTRAP_ADV = [1.4 + 0.72 * (0.35 + 0.72 * 4.1), 0.35 + 0.72 * 4.1, 4.1]  # V_next = 4


def test_termination_does_not_bootstrap() -> None:
    adv, ret = gae(REWARDS, VALUES, 4.0, terminated=True, truncated=False, gamma=GAMMA, lam=LAM)
    np.testing.assert_allclose(adv, [1.9112, 0.71, 0.5], rtol=1e-6)
    np.testing.assert_allclose(adv, TERMINATED_ADV, rtol=1e-6)
    np.testing.assert_allclose(ret, [2.4112, 1.71, 2.0], rtol=1e-6)
    assert adv.dtype == np.float32 and ret.dtype == np.float32


def test_truncation_bootstraps_from_next_value() -> None:
    adv, ret = gae(REWARDS, VALUES, 4.0, terminated=False, truncated=True, gamma=GAMMA, lam=LAM)
    np.testing.assert_allclose(adv, [3.77744, 3.302, 4.1], rtol=1e-6)
    np.testing.assert_allclose(adv, BOOTSTRAP_ADV, rtol=1e-6)
    np.testing.assert_allclose(ret, [4.27744, 4.302, 5.6], rtol=1e-6)


def test_unfinished_fragment_bootstraps_like_truncation() -> None:
    adv, ret = gae(REWARDS, VALUES, 4.0, terminated=False, truncated=False, gamma=GAMMA, lam=LAM)
    np.testing.assert_allclose(adv, [3.77744, 3.302, 4.1], rtol=1e-6)
    np.testing.assert_allclose(ret, [4.27744, 4.302, 5.6], rtol=1e-6)


def test_termination_wins_over_truncation() -> None:
    adv, _ = gae(REWARDS, VALUES, 4.0, terminated=True, truncated=True, gamma=GAMMA, lam=LAM)
    np.testing.assert_allclose(adv, [1.9112, 0.71, 0.5], rtol=1e-6)


def test_lambda_one_gives_monte_carlo_minus_value() -> None:
    adv, ret = gae([1.0, 1.0], [0.0, 0.0], 10.0, terminated=False, truncated=True, gamma=0.5, lam=1.0)
    # returns: 1 + 0.5 * (1 + 0.5 * 10) = 4, 1 + 0.5 * 10 = 6
    np.testing.assert_allclose(ret, [4.0, 6.0])
    np.testing.assert_allclose(adv, [4.0, 6.0])


def test_single_step_and_empty_trajectories() -> None:
    adv, ret = gae([2.0], [0.5], 3.0, terminated=False, truncated=True, gamma=1.0, lam=0.95)
    np.testing.assert_allclose(adv, [4.5])
    np.testing.assert_allclose(ret, [5.0])
    adv, ret = gae(np.zeros(0), np.zeros(0), 3.0, terminated=True, truncated=False, gamma=0.99, lam=0.95)
    assert adv.shape == (0,) and ret.shape == (0,)


def test_mismatched_lengths_are_rejected() -> None:
    with pytest.raises(TrainerError, match=r"equal length, got shapes \(3,\) and \(2,\)"):
        gae(REWARDS, VALUES[:2], 0.0, terminated=True, truncated=False, gamma=GAMMA, lam=LAM)
