"""The deflated Sharpe ratio and the probability of backtest overfitting against hand-computed values."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from runtime.optimize.executor import block_moments
from runtime.optimize.overfit import (
    ReturnStats,
    block_edges,
    deflated_sharpe,
    expected_max_sharpe,
    pbo,
    stats,
)


def _moments(returns: np.ndarray, blocks: int) -> np.ndarray:
    """Per-block moments of a return series on bars closing at 1, 2, ... (equal blocks)."""
    time = np.arange(1, len(returns) + 1, dtype=np.int64)
    equity = 100.0 * np.cumprod(1 + returns)
    return block_moments(time, equity, 100.0, block_edges(time, blocks))


def test_block_moments_are_the_counts_and_power_sums_of_each_blocks_returns() -> None:
    time = np.array([10, 20, 30, 40, 50], dtype=np.int64)
    equity = np.array([110.0, 99.0, 99.0, 108.9, 108.9])  # returns +10%, -10%, 0, +10%, 0
    found = block_moments(time, equity, 100.0, (10, 30, 51))
    r = np.array([0.1, -0.1, 0.0, 0.1, 0.0])
    expected = [[len(part), *(np.sum(part**k) for k in (1, 2, 3, 4))] for part in (r[:2], r[2:])]
    np.testing.assert_allclose(found, expected, rtol=1e-12, atol=1e-15)


def test_stats_from_moments_are_the_plain_moments_of_the_returns() -> None:
    r = np.array([0.01, -0.02, 0.03, 0.0, 0.015, -0.005, 0.02, -0.01])
    found = stats(_moments(r, 4))
    mean, sd = r.mean(), r.std()
    assert found.bars == 8
    assert found.sharpe == pytest.approx(mean / sd, rel=1e-9)
    assert found.skew == pytest.approx(np.mean((r - mean) ** 3) / sd**3, rel=1e-9)
    assert found.kurtosis == pytest.approx(np.mean((r - mean) ** 4) / sd**4, rel=1e-9)


def test_the_expected_maximum_sharpe_of_trials_by_hand() -> None:
    # √V·((1−γ)·Φ⁻¹(1−1/N) + γ·Φ⁻¹(1−1/(N·e))) with V = 0.01, N = 3:
    # Φ⁻¹(2/3) = 0.4307273, Φ⁻¹(1 − 1/(3e)) = Φ⁻¹(0.8773735) = 1.1619569 (γ = 0.5772157), so
    # SR₀ = 0.1·(0.4227843·0.4307273 + 0.5772157·1.1619569) = 0.0852804.
    assert expected_max_sharpe(0.01, 3) == pytest.approx(0.0852804, abs=1e-7)
    assert expected_max_sharpe(0.01, 1) == 0.0


def test_the_deflated_sharpe_ratio_by_hand() -> None:
    best = ReturnStats(bars=101, sharpe=0.1, skew=0.0, kurtosis=3.0)
    # One trial: SR₀ = 0, DSR = Φ(0.1·√100 / √(1 + (3 − 1)/4·0.01)) = Φ(0.9975093) = 0.8407413.
    assert deflated_sharpe(best, np.array([0.1])) == pytest.approx(0.8407413, abs=1e-7)
    # Three trials of Sharpe 0.1, 0, −0.1 (V = 0.01): SR₀ = 0.0852804 (above), so
    # DSR = Φ((0.1 − 0.0852804)·10 / √1.005) = Φ(0.1468289) = 0.5583665.
    assert deflated_sharpe(best, np.array([0.1, 0.0, -0.1])) == pytest.approx(0.5583665, abs=1e-7)


def test_pbo_is_one_when_each_in_sample_winner_is_the_out_of_sample_loser() -> None:
    # Two blocks of two bars; member 0 gains in block 0 and loses in block 1, member 1 the other way round.
    a = np.array([0.02, 0.01, -0.01, -0.02])
    found = pbo(np.stack([_moments(a, 2), _moments(a[::-1].copy(), 2)]))
    assert found is not None
    value, logits = found
    assert value == 1.0
    assert logits.tolist() == pytest.approx([math.log(0.5), math.log(0.5)])  # ω = 1/3


def test_pbo_is_zero_when_the_in_sample_winner_also_wins_out_of_sample() -> None:
    good = np.array([0.02, 0.01, 0.02, 0.01])
    bad = np.array([-0.01, 0.0, -0.02, 0.01])
    value, logits = pbo(np.stack([_moments(good, 2), _moments(bad, 2)]))  # type: ignore[misc]
    assert value == 0.0 and logits.tolist() == pytest.approx([math.log(2), math.log(2)])  # ω = 2/3


def test_pbo_matches_a_direct_cross_validation_of_the_return_matrix() -> None:
    rng = np.random.default_rng(7)
    returns = rng.normal(0.0, 0.01, size=(5, 40))  # 5 members, 40 bars, 4 blocks of 10
    found = pbo(np.stack([_moments(r, 4) for r in returns]))
    assert found is not None
    blocks = np.split(np.arange(40), 4)
    expected = []
    for chosen in itertools.combinations(range(4), 2):
        inside = np.concatenate([blocks[b] for b in chosen])
        outside = np.setdiff1d(np.arange(40), inside)
        is_sr = returns[:, inside].mean(axis=1) / returns[:, inside].std(axis=1)
        oos_sr = returns[:, outside].mean(axis=1) / returns[:, outside].std(axis=1)
        winner = int(np.argmax(is_sr))
        omega = (1 + np.sum(oos_sr < oos_sr[winner])) / 6
        expected.append(math.log(omega / (1 - omega)))
    assert found[1].tolist() == pytest.approx(expected, rel=1e-9)
    assert found[0] == np.mean(np.array(expected) <= 0)
