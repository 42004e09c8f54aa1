"""How much to trust the best member: the deflated Sharpe ratio and the probability of backtest overfitting.

Both read each member's per-bar returns through their per-block power sums (`executor.block_moments`:
count, Σr, Σr², Σr³, Σr⁴ per time block), so memory grows with members × blocks, never with bars.

- Deflated Sharpe ratio (Bailey & López de Prado, 2014): the probability that the best member's true
  Sharpe ratio is above the best one would expect from N trials of skill-less members,
  `DSR = Φ((SR − SR₀)·√(T−1) / √(1 − γ₃·SR + (γ₄−1)/4·SR²))` with `SR₀ = √V·((1−γ)·Φ⁻¹(1−1/N) +
  γ·Φ⁻¹(1−1/(N·e)))`: SR, γ₃ (skewness) and γ₄ (kurtosis, 3 for normal returns) of the best member's
  per-bar returns, T its bars, V the variance of the members' per-bar Sharpe ratios, γ Euler's constant.
  With one trial SR₀ is 0 (the probabilistic Sharpe ratio).
- Probability of backtest overfitting (Bailey, Borwein, López de Prado & Zhu, 2015), by combinatorially
  symmetric cross-validation: the bars are cut into S blocks; for each way of choosing S/2 of them as
  in-sample (the rest out-of-sample) the member with the best in-sample Sharpe ratio is ranked out of
  sample; ω = rank / (N + 1) (rank 1 the worst) and λ = ln(ω / (1 − ω)). PBO is the share of splits with
  λ ≤ 0: the in-sample winner at or below the out-of-sample median.

Sharpe ratios here are per bar (mean / population standard deviation), 0 for a flat member.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

# Euler–Mascheroni constant (the expected maximum of N normal draws uses it).
EULER_GAMMA = 0.5772156649015329
# Time blocks of the cross-validation: C(10, 5) = 252 splits.
BLOCKS = 10


@dataclass(frozen=True)
class ReturnStats:
    """Moments of one member's per-bar returns."""

    bars: int  # number of returns
    sharpe: float  # mean / population standard deviation (0 when flat)
    skew: float  # skewness γ₃ (0 when flat)
    kurtosis: float  # kurtosis γ₄, not in excess (3 when flat, as for normal returns)


def stats(moments: np.ndarray) -> ReturnStats:
    """The moments of a member's returns from its per-block sums (shape (blocks, 5))."""
    n, s1, s2, s3, s4 = np.asarray(moments, dtype=np.float64).sum(axis=0)
    if n < 1:
        return ReturnStats(0, 0.0, 0.0, 3.0)
    mean = s1 / n
    var = s2 / n - mean**2
    if var <= 1e-30:
        return ReturnStats(int(n), 0.0, 0.0, 3.0)
    # Central moments from the raw ones.
    m3 = s3 / n - 3 * mean * s2 / n + 2 * mean**3
    m4 = s4 / n - 4 * mean * s3 / n + 6 * mean**2 * s2 / n - 3 * mean**4
    return ReturnStats(int(n), mean / math.sqrt(var), m3 / var**1.5, m4 / var**2)


def expected_max_sharpe(variance: float, trials: int) -> float:
    """SR₀: the Sharpe ratio the best of `trials` skill-less members reaches by chance."""
    if trials < 2:
        return 0.0
    inv = NormalDist().inv_cdf
    return math.sqrt(max(variance, 0.0)) * (
        (1 - EULER_GAMMA) * inv(1 - 1 / trials) + EULER_GAMMA * inv(1 - 1 / (trials * math.e))
    )


def deflated_sharpe(best: ReturnStats, sharpes: np.ndarray) -> float | None:
    """The deflated Sharpe ratio of `best` among members of per-bar Sharpe ratios `sharpes`.

    None when the best member has fewer than two returns or the denominator is not positive.
    """
    trials = len(sharpes)
    variance = float(np.var(sharpes, ddof=1)) if trials > 1 else 0.0
    sr0 = expected_max_sharpe(variance, trials)
    sr = best.sharpe
    spread = 1 - best.skew * sr + (best.kurtosis - 1) / 4 * sr**2
    if best.bars < 2 or spread <= 0:
        return None
    return NormalDist().cdf((sr - sr0) * math.sqrt(best.bars - 1) / math.sqrt(spread))


def _sharpe(n: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """Per-bar Sharpe ratios from counts and sums (0 where flat or empty)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = s1 / n
        var = s2 / n - mean**2
        return np.where((n > 0) & (var > 1e-30), mean / np.sqrt(np.maximum(var, 1e-300)), 0.0)


def pbo(moments: np.ndarray) -> tuple[float, np.ndarray] | None:
    """PBO of members with per-block sums `moments` (members, blocks, ≥3): (PBO, λ of every split).

    None with fewer than two members or two blocks. An odd number of blocks drops the last one.
    """
    members, blocks = moments.shape[0], moments.shape[1] - moments.shape[1] % 2
    if members < 2 or blocks < 2:
        return None
    sums = moments[:, :blocks, :3]
    total = sums.sum(axis=1)  # (members, 3)
    logits = []
    for chosen in itertools.combinations(range(blocks), blocks // 2):
        inside = sums[:, list(chosen), :].sum(axis=1)
        outside = total - inside
        is_sr = _sharpe(inside[:, 0], inside[:, 1], inside[:, 2])
        oos_sr = _sharpe(outside[:, 0], outside[:, 1], outside[:, 2])
        winner = int(np.argmax(is_sr))
        rank = 1 + int(np.sum(oos_sr < oos_sr[winner]))
        omega = rank / (members + 1)
        logits.append(math.log(omega / (1 - omega)))
    lam = np.array(logits)
    return float(np.mean(lam <= 0)), lam


def block_edges(times: np.ndarray, blocks: int = BLOCKS) -> tuple[int, ...]:
    """Bounds of `blocks` blocks of equally many bars over sorted bar close times (UTC ms)."""
    count = len(times)
    if count < blocks:
        blocks = max(1, count)
    cuts = [int(times[i * count // blocks]) for i in range(blocks)]
    return (*cuts, int(times[-1]) + 1)
