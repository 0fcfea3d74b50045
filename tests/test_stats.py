"""s2ilib.evaluation.stats: bootstrap intervals, paired tests and verdicts on data with known answers."""

import dataclasses
import math

import numpy as np
import pytest

from s2ilib.evaluation import stats


def test_bernoulli_interval_covers_p_with_the_textbook_width():
    x = (np.random.default_rng(1).random(5000) < 0.7).astype(float)
    ci = stats.bootstrap_ci(x)
    assert ci.low < 0.7 < ci.high
    assert ci.low < ci.estimate < ci.high and ci.estimate == pytest.approx(x.mean())
    expected = 1.96 * math.sqrt(0.21 / 5000)
    assert ci.half_width == pytest.approx(expected, rel=0.2)
    assert (ci.n, ci.n_groups, ci.level) == (5000, 5000, 0.95)
    d = ci.to_dict()
    assert set(d) == {"estimate", "low", "high", "n", "n_groups", "level", "method", "half_width"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        ci.low = 0.0  # frozen


def test_percentile_method_agrees_with_bca_on_a_large_sample():
    x = (np.random.default_rng(2).random(2000) < 0.3).astype(float)
    bca, pct = stats.bootstrap_ci(x), stats.bootstrap_ci(x, method="percentile")
    assert pct.method == "bootstrap-percentile" and bca.method == "bootstrap-BCa"
    assert pct.half_width == pytest.approx(bca.half_width, rel=0.15)


def test_grouped_bootstrap_is_wider_when_items_of_a_group_are_copies():
    per_image = (np.random.default_rng(3).random(200) < 0.5).astype(float)
    x = np.repeat(per_image, 10)  # 10 captions per image, all scored alike
    groups = np.repeat(np.arange(200), 10)
    item, grouped = stats.bootstrap_ci(x), stats.bootstrap_ci(x, groups=groups)
    assert grouped.estimate == item.estimate
    assert grouped.n == 2000 and grouped.n_groups == 200
    # 200 independent units, not 2000: about sqrt(10) ~ 3.2 times wider
    assert grouped.half_width > 2.5 * item.half_width
    assert grouped.half_width == pytest.approx(1.96 * math.sqrt(0.25 / 200), rel=0.2)


def test_grouped_bootstrap_estimate_is_the_item_mean_with_unequal_groups():
    rng = np.random.default_rng(4)
    sizes = rng.integers(1, 8, size=150)
    groups = np.repeat(np.arange(150), sizes)
    x = rng.random(groups.size)
    ci = stats.bootstrap_ci(x, groups=[f"img{g}" for g in groups])  # labels need not be ints
    assert ci.estimate == pytest.approx(x.mean()) and ci.n_groups == 150
    assert ci.low < x.mean() < ci.high


def test_degenerate_and_invalid_inputs():
    ci = stats.bootstrap_ci(np.ones(30))
    assert (ci.low, ci.estimate, ci.high, ci.method) == (1.0, 1.0, 1.0, "degenerate")
    with pytest.raises(ValueError):
        stats.bootstrap_ci([])
    with pytest.raises(ValueError):
        stats.bootstrap_ci([0.1, float("nan")])
    with pytest.raises(ValueError):
        stats.bootstrap_ci([0.0, 1.0, 1.0], groups=[0, 0])
    with pytest.raises(ValueError):
        stats.bootstrap_ci([0.0, 1.0, 1.0], groups=[0, 0, 0])  # one group: nothing to resample
    with pytest.raises(ValueError):
        stats.paired_difference([0.1, 0.2], [0.1, 0.2, 0.3])


def test_paired_difference_finds_a_known_shift():
    rng = np.random.default_rng(5)
    a = rng.random(500)
    b = a + 0.1 + rng.normal(0.0, 0.02, size=500)
    d = stats.paired_difference(b, a)
    assert d["low"] < 0.1 < d["high"] and d["low"] > 0
    assert d["estimate"] == pytest.approx(0.1, abs=0.005)
    assert d["p_value"] < 0.001 and d["n"] == 500
    assert set(d) >= {"estimate", "low", "high", "p_value", "n"}
    # the pairing is what gives the power: the unpaired spread of a alone is ~0.29
    assert d["high"] - d["low"] < 0.01


def test_paired_difference_of_one_distribution_contains_zero():
    rng = np.random.default_rng(6)
    a = (rng.random(800) < 0.6).astype(float)
    b = (rng.random(800) < 0.6).astype(float)
    d = stats.paired_difference(a, b)
    assert d["low"] < 0 < d["high"]
    assert d["p_value"] > 0.05


def test_paired_difference_with_groups_flips_whole_groups():
    rng = np.random.default_rng(7)
    shift = np.repeat(rng.normal(0.0, 0.3, size=40), 5)  # image-level effect shared by its captions
    a = rng.random(200)
    b = a + shift
    groups = np.repeat(np.arange(40), 5)
    item, grouped = stats.paired_difference(b, a), stats.paired_difference(b, a, groups=groups)
    assert grouped["n_groups"] == 40 and grouped["high"] - grouped["low"] > item["high"] - item["low"]
    assert grouped["low"] < grouped["estimate"] < grouped["high"]
    assert grouped["p_value"] >= item["p_value"]


def test_identical_methods_give_p_one():
    a = np.random.default_rng(8).random(50)
    d = stats.paired_difference(a, a.copy())
    assert d["p_value"] == 1.0 and d["low"] == d["high"] == 0.0


def test_seed_determinism():
    rng = np.random.default_rng(9)
    x = rng.random(300)
    y = x + rng.normal(0.02, 0.1, size=300)
    assert stats.bootstrap_ci(x, seed=3) == stats.bootstrap_ci(x, seed=3)
    assert stats.paired_difference(y, x, seed=3) == stats.paired_difference(y, x, seed=3)
    assert stats.bootstrap_ci(x, seed=3).low != stats.bootstrap_ci(x, seed=4).low


@pytest.mark.parametrize("low, high, direction, expected", [
    (0.01, 0.05, +1, "holds"), (-0.05, -0.01, +1, "fails"), (-0.01, 0.05, +1, "undecided"),
    (-0.05, -0.01, -1, "holds"), (0.01, 0.05, -1, "fails"), (-0.01, 0.05, -1, "undecided"),
    (0.0, 0.05, +1, "undecided"), (float("nan"), 0.1, +1, "undecided"),
])
def test_verdict(low, high, direction, expected):
    assert stats.verdict(low, high, direction) == expected


def test_few_discordant_pairs_stay_undecided():
    """3 R-precision hits against none on 60 paired queries: the bootstrap interval excludes 0 (no
    resample can go below it), the sign-flip test gives p = 2 / 2**3 = 0.25 (the 57 ties flip to nothing), so no verdict."""
    a = np.zeros(60)
    a[[3, 17, 41]] = 1.0
    d = stats.paired_difference(a, np.zeros(60), seed=0)
    assert d["low"] > 0 and d["p_value"] == pytest.approx(0.25, abs=0.01)  # Monte Carlo sign flips
    assert stats.verdict(d["low"], d["high"], +1) == "holds"  # the interval alone would decide
    assert stats.verdict(d["low"], d["high"], +1, d["p_value"]) == "undecided"
    assert stats.claim_row("one-stage beats two-stage", d, +1, "r_precision")["verdict"] == "undecided"
    # a test that agrees keeps the verdict; a NaN p-value (no test) leaves the interval to decide
    assert stats.verdict(0.01, 0.05, +1, 0.001) == "holds" and stats.verdict(-0.05, -0.01, +1, 0.01) == "fails"
    assert stats.verdict(0.01, 0.05, +1, float("nan")) == "holds"


def test_verdict_rejects_bad_input():
    with pytest.raises(ValueError):
        stats.verdict(0.1, 0.2, 0)
    with pytest.raises(ValueError):
        stats.verdict(0.2, 0.1, 1)


def test_claim_row():
    diff = {"estimate": -12.0, "low": -20.0, "high": -4.0, "p_value": 0.003, "n": 1000}
    row = stats.claim_row("two-stage worse than one-stage on FID", diff, -1, "fid")
    assert row == {"claim": "two-stage worse than one-stage on FID", "metric": "fid", "estimate": -12.0,
                   "low": -20.0, "high": -4.0, "p_value": 0.003, "n": 1000, "verdict": "holds"}
    no_p = stats.claim_row("x", {"estimate": 0.0, "low": -1.0, "high": 1.0, "n": 3}, 1, "kid")
    assert math.isnan(no_p["p_value"]) and no_p["verdict"] == "undecided"


def test_kid_interval_and_unpaired_difference():
    spread = stats.kid_interval(0.05, 0.01)
    assert spread.low == pytest.approx(0.05 - 1.96 * 0.01, rel=1e-3)
    assert spread.method == "kid-subset-spread"
    half = stats.kid_interval(0.05, 0.01, subset_size=500, n=1000)  # m = n/2: se == std
    assert half.half_width == pytest.approx(spread.half_width)
    small = stats.kid_interval(0.05, 0.01, subset_size=100, n=1000)
    assert small.half_width == pytest.approx(spread.half_width / 3.0)
    with pytest.raises(ValueError):
        stats.kid_interval(0.05, 0.0, subset_size=1000, n=1000)  # every subset is the whole set
    with pytest.raises(ValueError):
        stats.kid_interval(0.05, 0.01, subset_size=100)
    a, b = stats.kid_interval(0.10, 0.01), stats.kid_interval(0.04, 0.01)
    d = stats.unpaired_difference(b, a)  # B minus A; lower KID is better
    assert d["estimate"] == pytest.approx(-0.06)
    assert d["high"] - d["low"] == pytest.approx(2 * math.sqrt(2) * 1.96 * 0.01, rel=1e-3)
    assert stats.claim_row("B lower KID than A", d, -1, "kid")["verdict"] == "holds"
    assert d["p_value"] < 0.001
    same = stats.unpaired_difference(a, a)
    assert same["p_value"] == pytest.approx(1.0)
    assert stats.verdict(same["low"], same["high"], 1) == "undecided"


@pytest.mark.parametrize("n", [8, 200])
def test_sign_flip_p_matches_scipy_permutation_test(n):
    from scipy.stats import permutation_test
    rng = np.random.default_rng(10)
    a, b = rng.random(n), rng.random(n) + 0.05
    ours = stats.paired_difference(a, b)["p_value"]
    ref = permutation_test((a - b,), lambda x, axis=-1: x.mean(axis=axis), permutation_type="samples",
                           vectorized=True, n_resamples=9999, rng=np.random.default_rng(0)).pvalue
    if n == 8:  # 2**8 <= 9999: both are exact
        assert ours == pytest.approx(ref)
    else:
        assert ours == pytest.approx(ref, abs=0.02)


def test_auto_method_switches_to_percentile_above_the_bca_limit(monkeypatch):
    x = (np.random.default_rng(11).random(400) < 0.5).astype(float)
    assert stats.bootstrap_ci(x).method == "bootstrap-BCa"
    monkeypatch.setattr(stats, "BCA_MAX_GROUPS", 100)
    assert stats.bootstrap_ci(x).method == "bootstrap-percentile"
    assert stats.bootstrap_ci(x, groups=np.arange(400) // 5).method == "bootstrap-BCa"  # 80 groups
    with pytest.raises(ValueError):
        stats.bootstrap_ci(x, method="basic")


def test_above_chance_is_exact_binomial():
    from scipy import stats as st

    from s2ilib.evaluation.stats import above_chance

    hits = np.zeros(500)
    hits[:10] = 1  # 10 hits in 500 against a 1% chance: 2% observed
    out = above_chance(hits, 0.01)
    assert out["estimate"] == pytest.approx(0.01)
    assert out["p_value"] == pytest.approx(st.binom.sf(9, 500, 0.01))  # P(X >= 10 | n=500, p=0.01)
    assert 0.0095 < out["low"] + 0.01 < 0.0097  # Clopper-Pearson lower bound of 10/500 lies just below 1%
    hits[:25] = 1
    assert above_chance(hits, 0.01)["low"] > 0  # 5% clearly above chance
    with pytest.raises(ValueError, match="0 or 1"):
        above_chance(np.array([0.5, 1.0]), 0.01)
