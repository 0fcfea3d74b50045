"""Claims over training seeds: Holm, the random-effects and hierarchical-bootstrap intervals, the one
verdict rule, and pooling per-seed claims files (constructed data with known answers)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from s2ilib.evaluation import pooling as P
from s2ilib.evaluation.stats import bootstrap_ci
from s2ilib.study import claims as C


def test_holm_textbook_example():
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4 x 0.005, 3 x 0.01, 2 x 0.03, max(0.06, 1 x 0.04)
    adj = P.holm([0.01, 0.04, 0.03, 0.005])
    assert adj == pytest.approx([0.03, 0.06, 0.06, 0.02])
    with_nan = P.holm([0.01, math.nan, 0.04])  # NaN is not a member of the family
    assert math.isnan(with_nan[1]) and with_nan[[0, 2]] == pytest.approx([0.02, 0.04])
    assert P.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])


def _seed_items(rng, shift, n_groups=60, per_group=5, sd=0.3):
    g = np.repeat(np.arange(n_groups), per_group)
    x = 0.1 + shift + rng.normal(0, sd, n_groups)[g] * 0.5 + rng.normal(0, sd, len(g))
    return x, g


def test_hierarchical_bootstrap_is_the_image_bootstrap_with_one_seed():
    rng = np.random.default_rng(0)
    x, g = _seed_items(rng, 0.0)
    one = P.hierarchical_bootstrap([x], [g], n_boot=4000, seed=1)
    ref = bootstrap_ci(x, groups=g, n_boot=4000, seed=1)  # the study's per-image cluster bootstrap
    assert one.n_seeds == 1 and one.method.startswith("cluster bootstrap")
    assert one.estimate == pytest.approx(ref.estimate)
    assert (one.high - one.low) == pytest.approx(ref.high - ref.low, rel=0.1)


def test_seed_variance_widens_the_hierarchical_interval():
    rng = np.random.default_rng(1)
    same = [_seed_items(rng, 0.0) for _ in range(4)]
    spread = [_seed_items(rng, s) for s in (-0.15, -0.05, 0.05, 0.15)]
    a = P.hierarchical_bootstrap([x for x, _ in same], [g for _, g in same], n_boot=2000, seed=2)
    b = P.hierarchical_bootstrap([x for x, _ in spread], [g for _, g in spread], n_boot=2000, seed=2)
    assert b.method.startswith("hierarchical") and (b.high - b.low) > 2 * (a.high - a.low)


def test_random_effects_known_answers():
    # equal estimates, equal SEs: no heterogeneity, the fixed-effect mean and SE se / sqrt(k)
    r = P.random_effects([0.2, 0.2, 0.2], [0.05, 0.05, 0.05])
    assert r.tau2 == 0 and r.estimate == pytest.approx(0.2)
    half = 4.302653 * 0.05 / math.sqrt(3)  # t(2); HKSJ's variance is 0 here, the model's floor holds
    assert (r.low, r.high) == pytest.approx((0.2 - half, 0.2 + half), abs=1e-5)
    # seeds that disagree beyond their SEs: tau2 > 0 and a wider interval than any seed's own
    h = P.random_effects([0.0, 0.2, 0.4], [0.02, 0.02, 0.02])
    assert h.tau2 == pytest.approx(0.04 - 0.0004, rel=1e-6) and (h.high - h.low) > 10 * 2 * 1.96 * 0.02
    assert h.p_value > 0.05  # three seeds spread 0..0.4 do not establish a mean above 0 at t(2)
    one = P.random_effects([0.1], [0.02])
    assert one.n_seeds == 1 and (one.low, one.high) == pytest.approx((0.1 - 1.96 * 0.02, 0.1 + 1.96 * 0.02), abs=1e-4)


@pytest.mark.parametrize("rule,low,high,p,margin,want", [
    ("higher", 0.02, 0.08, 0.01, None, "holds"),
    ("higher", 0.02, 0.08, 0.20, None, "undecided"),  # the interval alone does not decide after Holm
    ("higher", -0.08, -0.02, 0.01, None, "fails"),
    ("lower", -0.08, -0.02, 0.01, None, "holds"),
    ("above_chance", -0.01, 0.05, 0.30, None, "undecided"),
    ("close", -0.03, 0.04, 0.01, 0.05, "holds"),
    ("close", -0.03, 0.06, 0.01, 0.05, "undecided"),
    ("close", -0.12, -0.06, 0.99, 0.05, "fails"),
    ("higher", math.nan, 0.1, 0.01, None, "undecided"),
])
def test_one_verdict_rule(rule, low, high, p, margin, want):
    assert C.decide(rule, low, high, p, margin) == want


def test_verdict_rule_refuses_unknown_rules():
    with pytest.raises(ValueError, match="unknown claim rule"):
        C.decide("bigger", 0, 1, 0.01)
    with pytest.raises(ValueError, match="margin"):
        C.decide("close", 0, 1, 0.01, None)


def _claims_table(rows):
    return pd.DataFrame(rows, columns=["dataset", "claim", "metric", "rule", "margin", "estimate", "low", "high",
                                       "verdict"])


def test_pool_claims_decides_over_seeds_and_counts_flips():
    def seed(est_a, est_b, v_b):
        return _claims_table([["birds", "A above B", "attr_acc", "higher", math.nan, est_a, est_a - 0.01, est_a + 0.01, "holds"],
                              ["birds", "C above D", "attr_acc", "higher", math.nan, est_b, est_b - 0.02, est_b + 0.02, v_b],
                              ["birds", "E close to F", "kid", "close", 0.05, 0.0, -0.01, 0.01, "holds"]])

    pooled = C.pool_claims({"1": seed(0.30, 0.06, "holds"), "2": seed(0.31, -0.01, "undecided"),
                            "3": seed(0.29, 0.02, "undecided")})
    by = pooled.set_index("claim")
    assert list(pooled.columns) == C.POOLED_COLUMNS and (by["n_seeds"] == 3).all()
    assert by.loc["A above B", "verdict"] == "holds" and not by.loc["A above B", "seed_flip"]
    assert by.loc["C above D", "verdict"] == "undecided" and by.loc["C above D", "seed_flip"]
    assert by.loc["C above D", "contradicts"]  # seed 1 said holds; pooled says undecided
    assert by.loc["E close to F", "verdict"] == "holds"
    assert (pooled["p_holm"] >= pooled["p_value"] - 1e-12).all()
    assert by.loc["A above B", "estimate"] == pytest.approx(0.30, abs=1e-9)
    s = C.pooled_summary(pooled)
    assert s == {"claims": 3, "verdicts": {"holds": 2, "undecided": 1}, "seed_flips": 1,
                 "contradicted_seed_verdicts": 1}
    md = C.pooled_markdown(pooled)
    assert "| birds | C above D | holds, undecided, undecided |" in md and "1 change verdict between seeds" in md


def _with_rules(name: str, df):
    """Claims files written before the one module carried no rule for 05-08: the rules they used."""
    if "rule" in df.columns:
        return df
    df = df.copy()
    if name == "06":
        df["rule"] = ["lower" if m == "kid" else "higher" for m in df["metric"]]
    elif name == "07":
        df["rule"] = ["close" if "as linear as text" in c else "higher" for c in df["claim"]]
    else:
        df["rule"] = "higher"
    df["margin"] = [0.1 if r == "close" else math.nan for r in df["rule"]]
    return df


@pytest.mark.committed_report
@pytest.mark.parametrize("name", ["04", "05", "06", "07", "08"])
def test_one_rule_gives_the_committed_verdicts_before_holm(name):
    """The one claims module decides every row of the committed claims files as their own modules did
    (unadjusted); Holm's adjustment only ever turns a decided row undecided."""
    import io

    import committed

    raw = pd.read_csv(io.StringIO(committed.text(f"reports/small/{name}_claims.csv")))
    rows = _with_rules(name, raw)
    before = raw["verdict"].tolist() if "p_holm" not in raw.columns else \
        C.finalize(rows, adjust=False)["verdict"].tolist()
    assert C.finalize(rows, adjust=False)["verdict"].tolist() == before
    adjusted = C.finalize(rows)
    for b, a in zip(before, adjusted["verdict"]):
        assert a == b or a == "undecided"
    assert (adjusted["p_holm"].dropna() >= adjusted["p_rule"].dropna() - 1e-12).all()
