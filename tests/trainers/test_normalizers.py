"""Running statistics against numpy; ValueNorm against its EMA formula; PopArt preserves outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from unimarl.trainers.algos.mappo.normalizers import ObsNormalizer, PopArt, RunningMeanStd, ValueNorm


def test_running_mean_std_matches_numpy_over_batches() -> None:
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(n, 4)) for n in (1, 7, 100, 3)]
    rms = RunningMeanStd((4,), epsilon=0.0)
    for batch in batches:
        rms.update(torch.as_tensor(batch))
    everything = np.concatenate(batches)
    np.testing.assert_allclose(rms.mean.numpy(), everything.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(rms.var.numpy(), everything.var(axis=0), rtol=1e-10)
    assert rms.count.item() == len(everything)


def test_running_mean_std_is_stable_for_large_offsets() -> None:
    rng = np.random.default_rng(1)
    batches = [1e6 + rng.normal(size=(50, 2)) for _ in range(20)]
    rms = RunningMeanStd((2,), epsilon=0.0)
    for batch in batches:
        rms.update(torch.as_tensor(batch, dtype=torch.float32))
    everything = np.concatenate([b.astype(np.float32).astype(np.float64) for b in batches])
    np.testing.assert_allclose(rms.var.numpy(), everything.var(axis=0), rtol=1e-6)


def test_running_mean_std_default_prior_and_empty_batch() -> None:
    rms = RunningMeanStd((1,))
    rms.update(torch.zeros((0, 1)))
    assert rms.mean.item() == 0.0 and rms.var.item() == 1.0
    data = np.arange(10.0).reshape(10, 1)
    rms.update(torch.as_tensor(data))
    assert rms.mean.item() == pytest.approx(data.mean(), rel=1e-4)
    assert rms.var.item() == pytest.approx(data.var(), rel=1e-4)


def test_obs_normalizer_normalises_and_clips() -> None:
    norm = ObsNormalizer(2)
    data = torch.tensor([[0.0, 10.0], [2.0, 10.0], [4.0, 10.0]])
    norm.update(data)
    out = norm(torch.tensor([[4.0, 10.0], [1000.0, -1000.0]]))
    mean, var = norm.stats.mean.numpy(), norm.stats.var.numpy()
    expected_first = (np.array([4.0, 10.0]) - mean) / np.sqrt(var + 1e-8)
    np.testing.assert_allclose(out[0].numpy(), expected_first, rtol=1e-5, atol=1e-4)
    assert out[1].tolist() == [5.0, -5.0]
    assert {name for name, _ in norm.named_buffers()} >= {"offset", "scale", "stats.mean", "stats.var"}


def test_value_norm_matches_debiased_ema() -> None:
    beta = 0.9
    vn = ValueNorm(beta=beta)
    rng = np.random.default_rng(2)
    batches = [rng.normal(5.0, 3.0, size=n) for n in (4, 10, 6)]
    mean = mean_sq = debias = 0.0
    for batch in batches:
        vn.update(torch.as_tensor(batch))
        mean = beta * mean + (1 - beta) * batch.mean()
        mean_sq = beta * mean_sq + (1 - beta) * (batch**2).mean()
        debias = beta * debias + (1 - beta)
    exp_mean, exp_var = mean / debias, mean_sq / debias - (mean / debias) ** 2
    got_mean, got_var = vn.mean_var()
    assert got_mean.item() == pytest.approx(exp_mean, rel=1e-10)
    assert got_var.item() == pytest.approx(exp_var, rel=1e-10)
    x = torch.tensor([1.0, 7.0])
    np.testing.assert_allclose(vn.normalize(x).numpy(), (x.numpy() - exp_mean) / np.sqrt(exp_var), rtol=1e-6)
    np.testing.assert_allclose(vn.denormalize(vn.normalize(x)).numpy(), x.numpy(), rtol=1e-6)


def test_value_norm_first_update_is_the_batch_statistics() -> None:
    vn = ValueNorm()
    vn.update(torch.tensor([1.0, 2.0, 3.0]))
    assert vn.normalize(torch.tensor([2.0])).item() == pytest.approx(0.0, abs=1e-6)
    assert vn.normalize(torch.tensor([3.0])).item() == pytest.approx(1.0 / np.sqrt(2.0 / 3.0), rel=1e-5)


def test_value_norm_variance_floor() -> None:
    vn = ValueNorm()
    vn.update(torch.full((8,), 4.0))
    assert vn.mean_var()[1].item() == pytest.approx(1e-2)


def test_popart_update_preserves_denormalised_outputs() -> None:
    torch.manual_seed(0)
    head = nn.Linear(3, 1)
    popart = PopArt(beta=0.9)
    popart.update(torch.tensor([0.0, 1.0, 2.0]))
    features = torch.randn(5, 3)
    before = popart.denormalize(head(features).squeeze(1)).detach()
    old_mean = popart.mean_var()[0].item()
    popart.update_preserving(torch.tensor([100.0, 120.0, 80.0]), head)
    after = popart.denormalize(head(features).squeeze(1)).detach()
    assert popart.mean_var()[0].item() > old_mean + 10
    np.testing.assert_allclose(after.numpy(), before.numpy(), rtol=1e-5, atol=1e-5)


def test_value_norm_before_any_update_is_the_identity() -> None:
    # the variance floor must not act on the empty statistics (it would scale every target by 10)
    vn = ValueNorm()
    x = torch.tensor([-50.0, 0.0, 3.5], dtype=torch.float64)
    np.testing.assert_allclose(vn.normalize(x).numpy(), x.numpy())
    np.testing.assert_allclose(vn.denormalize(x).numpy(), x.numpy())
    assert [t.item() for t in vn.mean_var()] == [0.0, 1.0]


@pytest.mark.parametrize("beta", [0.9, 0.99999, 0.999999, 1.0 - 1e-9])
def test_value_norm_first_update_is_the_batch_statistics_for_any_beta(beta: float) -> None:
    # hand-computed: mean 2, population variance ((-1)^2 + 0 + 1^2) / 3 = 2/3; the debiasing term after one
    # step is 1 - beta, which can lie below any fixed floor
    vn = ValueNorm(beta=beta)
    vn.update(torch.tensor([1.0, 2.0, 3.0]))
    mean, var = vn.mean_var()
    assert mean.item() == pytest.approx(2.0, rel=1e-6)
    assert var.item() == pytest.approx(2.0 / 3.0, rel=1e-6)
