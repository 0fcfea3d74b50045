"""Estimates over training seeds, and the family-wise error of many claims.

Training seeds move the study's numbers about as much as its effects (the "FID lottery"), so a claim
is decided over seeds, not within one. Two ways, for the two kinds of input the study has:

- :func:`hierarchical_bootstrap`: per-item scores of every seed. Resample the seeds, then the test
  images (groups) within each resampled seed; the statistic is the mean over seeds of each seed's
  item mean. With one seed it is the per-image cluster bootstrap.
- :func:`random_effects`: only each seed's estimate and its 95% interval (the committed per-seed
  claims files). A normal random-effects model, ``y_s = mu + u_s + e_s``, ``u_s ~ N(0, tau^2)``
  (seed-to-seed), ``e_s ~ N(0, se_s^2)`` (test images); ``tau^2`` by DerSimonian-Laird, the interval
  and p-value of ``mu`` by Hartung-Knapp-Sidik-Jonkman (a t with k - 1 degrees of freedom), which
  keeps its coverage with as few as three seeds where the plain normal interval is far too narrow.

:func:`holm` adjusts the p-values of one claims file (Holm 1979: step-down Bonferroni).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

Z975 = 1.959963984540054


@dataclass(frozen=True)
class Pooled:
    """A pooled estimate: ``estimate`` with its ``level`` interval [low, high], two-sided ``p_value``
    against 0 (NaN where none), the seeds behind it and the between-seed variance ``tau2``."""

    estimate: float
    low: float
    high: float
    p_value: float
    n_seeds: int
    tau2: float
    method: str
    level: float = 0.95


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values, in the input order; NaN stays NaN and is not counted in the family.

    Sorted ascending, ``p_(i)`` becomes ``max_{j<=i} min(1, (m - j + 1) p_(j))``; a hypothesis is
    rejected at level alpha when its adjusted p is below alpha."""
    p = np.asarray(p_values, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[idx]))
        out[idx] = running
    return out


def se_from_interval(low: float, high: float, level: float = 0.95) -> float:
    """Standard error implied by a symmetric normal ``level`` interval."""
    from scipy import stats

    return (high - low) / (2 * stats.norm.ppf(0.5 + level / 2))


def random_effects(estimates: Sequence[float], ses: Sequence[float], level: float = 0.95) -> Pooled:
    """DerSimonian-Laird random-effects mean of per-seed ``estimates`` with standard errors ``ses``,
    interval and p by Hartung-Knapp-Sidik-Jonkman. One seed: its own normal interval (tau2 NaN)."""
    from scipy import stats

    y, se = np.asarray(estimates, float), np.asarray(ses, float)
    keep = np.isfinite(y) & np.isfinite(se) & (se >= 0)
    y, se = y[keep], se[keep]
    k = len(y)
    if k == 0:
        return Pooled(math.nan, math.nan, math.nan, math.nan, 0, math.nan, "none")
    if k == 1:
        z = y[0] / se[0] if se[0] > 0 else math.copysign(math.inf, y[0]) if y[0] else 0.0
        p = float(2 * stats.norm.sf(abs(z)))
        h = stats.norm.ppf(0.5 + level / 2) * se[0]
        return Pooled(float(y[0]), float(y[0] - h), float(y[0] + h), p, 1, math.nan, "one seed (normal)", level)
    v = np.maximum(se ** 2, 1e-300)
    w = 1 / v
    mu_fe = float(np.sum(w * y) / np.sum(w))
    q = float(np.sum(w * (y - mu_fe) ** 2))
    c = float(np.sum(w) - np.sum(w ** 2) / np.sum(w))
    tau2 = max(0.0, (q - (k - 1)) / c) if c > 0 else 0.0
    ws = 1 / (v + tau2)
    mu = float(np.sum(ws * y) / np.sum(ws))
    var_hk = float(np.sum(ws * (y - mu) ** 2) / ((k - 1) * np.sum(ws)))
    # HKSJ can be narrower than the model-based variance when the seeds agree by chance; never below it
    var = max(var_hk, 1 / float(np.sum(ws)))
    t = stats.t.ppf(0.5 + level / 2, k - 1)
    half = t * math.sqrt(var)
    p = float(2 * stats.t.sf(abs(mu) / math.sqrt(var), k - 1)) if var > 0 else (0.0 if mu else 1.0)
    return Pooled(mu, mu - half, mu + half, p, k, tau2, "random effects (DL + HKSJ)", level)


def hierarchical_bootstrap(values: Sequence[np.ndarray], groups: Sequence[np.ndarray] | None = None,
                           n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> Pooled:
    """Two-stage bootstrap of the mean over seeds of per-seed means.

    ``values[s]``: the item scores of seed ``s`` (e.g. paired differences per query); ``groups[s]``:
    their cluster ids (test images; default each item its own). Each replicate draws ``k`` seeds with
    replacement, then, within each drawn seed, its groups with replacement; the statistic is the mean
    over drawn seeds of (sum of drawn groups' sums / their item count). Percentile interval; the
    p-value is the two-sided bootstrap p of 0 (twice the smaller tail share, at least 1 / n_boot).
    With one seed only the groups are resampled: the per-image cluster bootstrap."""
    rng = np.random.default_rng(seed)
    sums, counts = [], []
    for s, x in enumerate(values):
        x = np.asarray(x, float)
        g = np.arange(len(x)) if groups is None else np.asarray(groups[s])
        ok = np.isfinite(x)
        x, g = x[ok], g[ok]
        _, inv = np.unique(g, return_inverse=True)
        sums.append(np.bincount(inv, weights=x))
        counts.append(np.bincount(inv).astype(float))
    k = len(sums)
    if k == 0 or any(len(c) == 0 for c in counts):
        raise ValueError("hierarchical_bootstrap: every seed needs at least one finite item")
    point = float(np.mean([s.sum() / c.sum() for s, c in zip(sums, counts)]))
    reps = np.empty(n_boot)
    for b in range(n_boot):
        drawn = rng.integers(0, k, size=k) if k > 1 else np.zeros(1, dtype=int)
        means = []
        for s in drawn:
            idx = rng.integers(0, len(sums[s]), size=len(sums[s]))
            means.append(sums[s][idx].sum() / counts[s][idx].sum())
        reps[b] = np.mean(means)
    alpha = 1 - level
    low, high = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
    p = min(1.0, 2 * max(min(np.mean(reps <= 0), np.mean(reps >= 0)), 1 / n_boot))
    return Pooled(point, float(low), float(high), float(p), k, math.nan,
                  "hierarchical bootstrap (seeds, then images)" if k > 1 else "cluster bootstrap (images)", level)
