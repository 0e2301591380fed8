"""Confidence intervals of evaluation reports (``unimarl eval``, benchmarks): Wilson intervals of win rates,
percentile-bootstrap intervals of means and of differences of means. numpy only."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def wilson(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion (Wilson 1927)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_ci(
    values: np.ndarray, other: np.ndarray | None = None, seed: int = 0, resamples: int = 2000
) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean of ``values`` (minus the mean of ``other``, resampled
    independently, when given); NaN for no values."""
    if len(values) == 0 or (other is not None and len(other) == 0):
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = rng.choice(values, size=(resamples, len(values)), replace=True).mean(axis=1)
    if other is not None:
        means = means - rng.choice(other, size=(resamples, len(other)), replace=True).mean(axis=1)
    return (float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5)))


def record(wins: int, draws: int, games: int) -> dict[str, Any]:
    """Wins, draws, losses and the win rate (a draw counts one half) with its Wilson interval."""
    score = wins + 0.5 * draws
    return {
        "wins": wins,
        "draws": draws,
        "losses": games - wins - draws,
        "win_rate": score / max(games, 1),
        "win_rate_ci": wilson(score, games),
    }
