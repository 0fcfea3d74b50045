"""Intervals and paired tests for the evaluation: a verdict that the noise cannot flip.

Per-item scores (one value per generated image: attribute accuracy in [0, 1], an R-precision hit
0/1, ...) are summarised by their mean with a bootstrap interval, and two methods scored on the
SAME items (same utterances, same noise) are compared through their paired differences.

* :func:`bootstrap_ci` -- :class:`Interval` of the mean of per-item scores. With ``groups`` the
  bootstrap resamples clusters (e.g. test images, each with several captions) instead of items,
  because the captions of one image are not independent.
* :func:`paired_difference` -- interval of ``mean(a - b)`` (items or groups resampled jointly)
  and a two-sided sign-flip permutation p-value.
* :func:`unpaired_difference` -- difference of two independent intervals (normal approximation),
  for metrics with no per-item scores (KID, FID with a floor).
* :func:`kid_interval` -- torchmetrics' KID (mean, std over subsets) as an :class:`Interval`.
* :func:`verdict`, :func:`claim_row` -- a claim "A better than B" reads ``holds`` / ``fails`` /
  ``undecided`` from the difference interval, never from a bare difference of point values.

Intervals come from :func:`scipy.stats.bootstrap` (BCa up to 5,000 resampled units, percentile
above, where BCa's O(n^2) jackknife costs seconds and its correction is negligible); p-values from a
vectorised sign-flip permutation test, the null of :func:`scipy.stats.permutation_test` with
``permutation_type="samples"`` (scipy's own takes ~10 s at n = 20,000). Everything is deterministic
under ``seed``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import stats as _st

__all__ = ["Interval", "bootstrap_ci", "claim_row", "decide", "kid_interval", "paired_difference",
           "unpaired_difference", "verdict"]

_BATCH = 200  # resamples per vectorised batch: bounds memory at batch x n floats
BCA_MAX_GROUPS = 5000  # method="auto": BCa up to this many resampled units, percentile above


@dataclasses.dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided interval at ``level`` (e.g. 0.95).

    ``n``: items; ``n_groups``: resampled units (== ``n`` without groups); ``method``: how the
    interval was made (``"bootstrap-BCa"``, ``"bootstrap-percentile"``, ``"degenerate"``, ...).
    """

    estimate: float
    low: float
    high: float
    n: int
    n_groups: int
    level: float
    method: str

    @property
    def half_width(self) -> float:
        """Half the interval's width, ``(high - low) / 2``."""
        return (self.high - self.low) / 2.0

    def to_dict(self) -> dict:
        """Plain dict of the fields plus ``half_width`` (JSON / CSV friendly)."""
        out = dataclasses.asdict(self)
        out["half_width"] = self.half_width
        return out


def _scores(x, name: str) -> np.ndarray:
    """Validate per-item scores: (n,) finite floats, n >= 1."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name}: expected a non-empty 1-D array of per-item scores, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: scores must be finite (found NaN or inf)")
    return arr


def _group_sums(x: np.ndarray, groups) -> tuple[np.ndarray, np.ndarray]:
    """Per-group sums and counts of ``x`` (n,): two (G,) arrays; each item its own group if None."""
    if groups is None:
        return x, np.ones_like(x)
    g = np.asarray(groups)
    if g.shape != x.shape:
        raise ValueError(f"groups: shape {g.shape} does not match the scores' shape {x.shape}")
    _, inverse = np.unique(g, return_inverse=True)
    sums = np.bincount(inverse, weights=x)
    counts = np.bincount(inverse).astype(np.float64)
    return sums, counts


def _ratio_of_sums(sums, counts, axis=-1):
    """The item mean of a resample of groups: sum of group sums over sum of group sizes."""
    return np.sum(sums, axis=axis) / np.sum(counts, axis=axis)


def bootstrap_ci(scores, n_boot: int = 2000, level: float = 0.95, seed: int = 0, groups=None,
                 method: str = "auto") -> Interval:
    """Bootstrap interval of the mean of per-item ``scores``.

    scores: (n,) per-item values (accuracy in [0, 1], hits 0/1, paired differences, ...).
    groups: optional (n,) labels (ints, strings); resample whole groups (cluster bootstrap) so that
      items of one group (the captions of one test image) stay together. The estimate is always the
      item mean; a resample's mean is (sum of its groups' sums) / (number of its items).
    method: ``"BCa"`` (better for proportions near 0 or 1), ``"percentile"``, or ``"auto"`` (default:
      BCa up to :data:`BCA_MAX_GROUPS` resampled units, percentile above).
    Returns an :class:`Interval`; when every score is equal the interval is that point
    (``method="degenerate"``). At least 2 groups (items) are needed otherwise.
    """
    x = _scores(scores, "bootstrap_ci")
    if not 0.0 < level < 1.0:
        raise ValueError(f"bootstrap_ci: level must be in (0, 1), got {level}")
    sums, counts = _group_sums(x, groups)
    est = float(x.mean())
    if np.ptp(x) == 0.0:
        return Interval(est, est, est, x.size, sums.size, level, "degenerate")
    if sums.size < 2:
        raise ValueError("bootstrap_ci: at least 2 groups are needed to bootstrap")
    if method == "auto":
        method = "BCa" if sums.size <= BCA_MAX_GROUPS else "percentile"
    if method not in ("BCa", "percentile"):
        raise ValueError(f"bootstrap_ci: method must be 'auto', 'BCa' or 'percentile', got {method!r}")
    res = _st.bootstrap((sums, counts), _ratio_of_sums, paired=True, vectorized=True,
                        n_resamples=int(n_boot), batch=_BATCH, confidence_level=level,
                        method=method, rng=np.random.default_rng(seed))
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (np.isfinite(low) and np.isfinite(high)):  # BCa can fail on near-degenerate data
        tail = (1.0 - level) / 2.0
        low, high = (float(q) for q in np.quantile(res.bootstrap_distribution, [tail, 1.0 - tail]))
        method = "percentile"
    return Interval(est, low, high, x.size, sums.size, level, f"bootstrap-{method}")


def _sign_flip_p(d: np.ndarray, groups, n_perm: int, seed: int) -> float:
    """Two-sided p-value of mean(d) == 0 under random sign flips of items (or of whole groups).

    d: (n,) paired differences. The sign-flip null of :func:`scipy.stats.permutation_test` with
    ``permutation_type="samples"`` and one sample, vectorised by hand because scipy's takes ~10 s at
    n = 20,000: flip masks are drawn as packed random bits and applied as one (batch, G) @ (G,)
    product. Exact (all 2**G patterns) when 2**G <= n_perm; otherwise p = (1 + #extreme) / (1 + n_perm).
    """
    sums, _ = _group_sums(d, groups)
    obs = abs(float(sums.sum()))
    if obs == 0.0 and not np.any(sums):
        return 1.0
    n_groups = sums.size
    tol = 1e-9 * float(np.abs(sums).sum())  # float noise of re-signed sums; ties count as extreme
    if n_groups <= 20 and 2 ** n_groups <= n_perm:
        flips = (np.arange(2 ** n_groups)[:, None] >> np.arange(n_groups)) & 1
        null = sums.sum() - 2.0 * (flips @ sums)
        return float(np.mean(np.abs(null) >= obs - tol))
    rng = np.random.default_rng(seed)
    extreme, done, n_bytes = 0, 0, -(-n_groups // 8)
    batch = max(1, min(n_perm, 2 ** 24 // max(n_groups, 1)))  # ~16M mask entries per batch
    while done < n_perm:
        b = min(batch, n_perm - done)
        bits = rng.integers(0, 256, size=(b, n_bytes), dtype=np.uint8)
        flips = np.unpackbits(bits, axis=1, count=n_groups)  # (b, G) of 0/1: 1 = flip the sign
        null = sums.sum() - 2.0 * (flips @ sums)
        extreme += int(np.count_nonzero(np.abs(null) >= obs - tol))
        done += b
    return (1.0 + extreme) / (1.0 + n_perm)


def paired_difference(a, b, n_boot: int = 2000, seed: int = 0, groups=None, level: float = 0.95,
                      n_perm: int = 9999) -> dict:
    """Paired comparison of two methods scored on the SAME items: ``mean(a - b)``.

    a, b: (n,) per-item scores of method A and method B, item i being the same utterance and noise
      in both. groups: optional (n,) cluster labels, as in :func:`bootstrap_ci`; items (or groups)
      are resampled jointly for a and b, i.e. the differences ``a - b`` are resampled.
    The p-value is two-sided, from a permutation test that flips the sign of each paired difference
    (of each group's summed difference with ``groups``): H0 "A and B are exchangeable on every item".
    Returns {estimate, low, high, p_value, n, n_groups, level, method}.
    """
    xa, xb = _scores(a, "paired_difference (a)"), _scores(b, "paired_difference (b)")
    if xa.shape != xb.shape:
        raise ValueError(f"paired_difference: a and b must score the same items, got shapes "
                         f"{xa.shape} and {xb.shape}")
    d = xa - xb
    out = bootstrap_ci(d, n_boot=n_boot, level=level, seed=seed, groups=groups).to_dict()
    out.pop("half_width")
    out["p_value"] = _sign_flip_p(d, groups, n_perm, seed)
    return out


def above_chance(hits, chance: float, level: float = 0.95) -> dict:
    """Hit rate of 0/1 items against a known chance rate: exact binomial inference.

    hits: (n,) 0/1 per item (a top-1 retrieval hit); chance: the hit probability of a random guess
    (1 / candidates). ``low`` / ``high``: the Clopper-Pearson interval of the hit rate minus
    ``chance``; ``p_value``: the one-sided exact binomial test of "hit rate > chance". A sign-flip
    test of ``hit - chance`` would assume differences symmetric about 0 under the null, which 0/1
    hits against a 1% chance are not. Returns {estimate, low, high, p_value, n, n_groups, level, method}.
    """
    x = _scores(hits, "above_chance")
    if not np.all((x == 0) | (x == 1)):
        raise ValueError("above_chance: hits must be 0 or 1 per item")
    if not 0 < chance < 1:
        raise ValueError(f"above_chance: chance must lie in (0, 1), got {chance}")
    k, n = int(x.sum()), len(x)
    ci = _st.binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
    p = float(_st.binomtest(k, n, chance, alternative="greater").pvalue)
    return {"estimate": k / n - chance, "low": float(ci.low) - chance, "high": float(ci.high) - chance,
            "p_value": p, "n": n, "n_groups": n, "level": level, "method": "exact binomial (Clopper-Pearson)"}


def unpaired_difference(a: Interval, b: Interval) -> dict:
    """Difference ``a - b`` of two independent intervals by the normal approximation.

    For metrics without per-item scores (KID per method, each from its own images): each half-width
    is turned into a standard error at its level, ``se = sqrt(se_a^2 + se_b^2)``, and the p-value is
    the two-sided normal one. Returns {estimate, low, high, p_value, n, n_groups, level, method}
    at ``a.level``.
    """
    se_a = a.half_width / _st.norm.ppf(0.5 + a.level / 2.0)
    se_b = b.half_width / _st.norm.ppf(0.5 + b.level / 2.0)
    se = math.hypot(se_a, se_b)
    est = a.estimate - b.estimate
    z = _st.norm.ppf(0.5 + a.level / 2.0)
    if se > 0:
        p = float(2.0 * _st.norm.sf(abs(est) / se))
    else:
        p = 1.0 if est == 0 else 0.0
    return {"estimate": est, "low": est - z * se, "high": est + z * se, "p_value": p,
            "n": min(a.n, b.n), "n_groups": min(a.n_groups, b.n_groups), "level": a.level,
            "method": "unpaired-normal"}


def kid_interval(kid_mean: float, kid_std: float, level: float = 0.95, subset_size: int | None = None,
                 n: int | None = None) -> Interval:
    """KID (torchmetrics' mean and std over random subsets) as an :class:`Interval`.

    ``kid_std`` is the spread of a KID estimate made from ``subset_size`` samples, not the standard
    error of the reported mean (the subsets overlap). With ``subset_size`` (m) and ``n`` (the smaller
    of the real / generated set sizes) the spread is rescaled to the full-set estimate by the
    first-order approximation for subsets drawn without replacement, ``se = std * sqrt(m / (n - m))``
    (``method="kid-subsets-rescaled"``); without them ``se = std`` (``"kid-subset-spread"``,
    conservative when m <= n / 2). ``m >= n`` is refused: every subset is then the whole set and the
    std is ~0, which says nothing about the sampling noise. Interval: ``mean +- z * se``.
    """
    if not (math.isfinite(kid_mean) and math.isfinite(kid_std)) or kid_std < 0:
        raise ValueError(f"kid_interval: need a finite mean and a std >= 0, got {kid_mean}, {kid_std}")
    if (subset_size is None) != (n is None):
        raise ValueError("kid_interval: give both subset_size and n, or neither")
    se, method, n_items = float(kid_std), "kid-subset-spread", int(subset_size or 0)
    if subset_size is not None:
        if not 2 <= subset_size < n:
            raise ValueError(f"kid_interval: subset_size must be in [2, n) for an interval, got "
                             f"subset_size={subset_size}, n={n} (use subsets of at most n / 2)")
        se, method, n_items = kid_std * math.sqrt(subset_size / (n - subset_size)), "kid-subsets-rescaled", n
    z = float(_st.norm.ppf(0.5 + level / 2.0))
    return Interval(float(kid_mean), kid_mean - z * se, kid_mean + z * se, n_items, n_items, level, method)


ALPHA = 0.05
RULES = ("higher", "lower", "above_chance", "close")


def _finite(*xs) -> bool:
    return all(isinstance(x, (int, float, np.floating)) and math.isfinite(x) for x in xs)


def decide(rule: str, low: float, high: float, p_adjusted: float = math.nan, margin: float | None = None,
           alpha: float = ALPHA) -> str:
    """The study's one verdict rule, from a difference's interval [low, high] and its p-value
    (Holm-adjusted in a claims file, :mod:`s2ilib.study.claims`). ``rule``: ``higher`` /
    ``above_chance`` (bigger is better), ``lower`` (smaller is better), ``close`` (within
    +-``margin``). *holds*: the p is below ``alpha`` and the interval lies on the claimed side
    (inside the margin); *fails*: it lies wholly on the other side (outside the margin; for a signed
    rule with the p below ``alpha`` too); *undecided* otherwise. A NaN p leaves the interval alone
    to decide (claims without a test)."""
    if rule not in RULES:
        raise ValueError(f"unknown claim rule {rule!r}; choose one of {RULES}")
    if not _finite(low, high):
        return "undecided"
    significant = not _finite(p_adjusted) or p_adjusted < alpha
    if rule == "close":
        if not _finite(margin):
            raise ValueError("a 'close' claim needs a finite margin")
        if -margin <= low and high <= margin and significant:
            return "holds"
        return "fails" if high < -margin or low > margin else "undecided"
    sign = -1.0 if rule == "lower" else 1.0
    lo, hi = sorted((sign * low, sign * high))
    if lo > 0 and significant:
        return "holds"
    if hi < 0 and significant:
        return "fails"
    return "undecided"


def verdict(low: float, high: float, direction: int, p_value: float | None = None, alpha: float = ALPHA) -> str:
    """Verdict of a claim "A better than B" from the interval [low, high] of a difference A - B:
    :func:`decide` with rule ``higher`` (``direction`` +1: bigger is better, accuracy, R-precision)
    or ``lower`` (-1: FID, KID, WER).

    ``p_value``: the two-sided test of the same difference (the sign-flip test of
    :func:`paired_difference`, the normal one of :func:`unpaired_difference`); when given and
    finite, a decided verdict also needs ``p_value < alpha``. A bootstrap interval of
    a difference carried by a few discordant items can exclude 0 although the exact test cannot (3
    R-precision hits against none among 60 paired queries: every resample's difference is >= 0,
    BCa's interval is [0.016, 0.125], the sign-flip test's p is 0.25): the claim is then undecided.
    """
    if direction not in (1, -1):
        raise ValueError(f"verdict: direction must be +1 or -1, got {direction!r}")
    if not (math.isnan(low) or math.isnan(high)) and low > high:
        raise ValueError(f"verdict: low ({low}) is above high ({high})")
    return decide("higher" if direction > 0 else "lower", low, high,
                  math.nan if p_value is None else p_value, alpha=alpha)


def claim_row(name: str, diff: dict, direction: int, metric: str) -> dict:
    """One row of the claims table from a difference dict (:func:`paired_difference` or
    :func:`unpaired_difference` of A minus B): {claim, metric, estimate, low, high, p_value, n,
    verdict}. ``p_value`` is NaN when ``diff`` has none; when it has one, the verdict needs it below
    0.05 as well (:func:`verdict`)."""
    low, high = float(diff["low"]), float(diff["high"])
    p = float(diff.get("p_value", float("nan")))
    return {"claim": name, "metric": metric, "estimate": float(diff["estimate"]), "low": low,
            "high": high, "p_value": p, "n": int(diff["n"]), "verdict": verdict(low, high, direction, p)}
