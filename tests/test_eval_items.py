"""Per-item scores, intervals and paired comparisons of the main evaluation
(s2ilib.evaluation.items), and FID / KID at a fixed N with the real-vs-real floor (fid.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from s2ilib.evaluation import fid as FID
from s2ilib.evaluation import items as IT
from s2ilib.evaluation import metrics as M
from s2ilib.evaluation import scoring as SC


def _items(n_images=40, captions=5, p=0.6, seed=0, shift=0.0):
    rng = np.random.default_rng(seed)
    img = np.repeat(np.arange(n_images), captions)
    cap = np.tile(np.arange(captions), n_images)
    acc = np.clip(rng.binomial(4, p, size=img.size) / 4 + shift, 0, 1)
    hits = rng.binomial(1, p, size=img.size).astype(float)
    return {"query_id": [f"{i}/{c}/0" for i, c in zip(img, cap)], "image_idx": img, "attr_acc": acc,
            "r_precision": hits}


def test_rprecision_hits_match_the_metric():
    g = torch.Generator().manual_seed(0)
    feats, emb = torch.randn(60, 8, generator=g), torch.randn(60, 8, generator=g)
    emb[:30] = feats[:30] + 0.1 * emb[:30]  # half the images match their caption
    labels = torch.arange(60) // 3
    hits = IT.rprecision_hits(feats, emb, labels, n_candidates=10, seed=4)
    mean, _ = M.r_precision(feats, emb, labels=labels, n_candidates=10, seed=4)
    assert set(hits.unique().tolist()) <= {0.0, 1.0} and float(hits.mean()) == pytest.approx(mean)
    assert hits[:30].mean() > 0.8


def test_intervals_are_present_and_contain_the_point_value():
    items = _items()
    out = IT.summarise(items, seed=0)
    for m in ("attr_acc", "r_precision"):
        low, high = out[f"{m}_ci"]
        assert low <= out[m] <= high and high - low > 0, (m, out)
        assert out[m] == pytest.approx(np.mean(items[m]))
        assert out[f"{m}_n"] == 200 and out[f"{m}_n_groups"] == 40
    # NaN items (captions that mention nothing) are left out
    items["attr_acc"][:10] = np.nan
    assert IT.interval(items, "attr_acc")["attr_acc_n"] == 190


def test_paired_comparison_of_a_method_with_itself_is_zero():
    a = _items()
    d = IT.paired_comparison(a, a, "attr_acc")
    assert d["estimate"] == 0.0 and d["low"] == 0.0 and d["high"] == 0.0 and d["p_value"] == 1.0
    assert d["n"] == 200 and d["n_groups"] == 40


def test_paired_comparison_pairs_by_query_id_and_sees_a_shift():
    a, b = _items(seed=0), _items(seed=0, shift=-0.1)
    order = np.random.default_rng(1).permutation(200)
    shuffled = {k: (np.asarray(v)[order] if k != "query_id" else [v[i] for i in order]) for k, v in b.items()}
    d1, d2 = IT.paired_comparison(a, b, "attr_acc"), IT.paired_comparison(a, shuffled, "attr_acc")
    assert d1 == d2  # pairing by query id, not by position
    assert d1["low"] > 0 and d1["p_value"] < 0.01
    sub = {k: (v[:50] if k == "query_id" else np.asarray(v)[:50]) for k, v in b.items()}
    assert IT.paired_comparison(a, sub, "attr_acc")["n"] == 50  # only the shared items
    assert np.isnan(IT.paired_comparison(a, {"query_id": []}, "attr_acc")["estimate"])


def test_items_round_trip(tmp_path):
    items = _items()
    items["attr_acc"][0] = np.nan
    path = IT.save_items(IT.item_path(tmp_path, "one_stage", "seen"), items, key="k")
    back, key = IT.read_items(path)
    assert key == "k" and back["query_id"] == items["query_id"] and np.isnan(back["attr_acc"][0])
    np.testing.assert_array_equal(back["attr_acc"][1:], items["attr_acc"][1:])
    assert set(IT.load_items(tmp_path)) == {"one_stage/seen"}


def test_mention_scores_and_family_hits():
    read = [{"head": ("red", 0.9), "tail": ("blue", 0.8)}, {"head": ("blue", 0.9), "tail": ("blue", 0.8)}]
    mentions = [{"head": "red", "tail": "red"}, {}]
    s = IT.mention_scores(read, mentions)
    assert s[0] == 0.5 and np.isnan(s[1])
    hits = IT.family_hits(read, mentions)
    assert hits["hit_head"][0] == 1.0 and hits["hit_tail"][0] == 0.0 and np.isnan(hits["hit_head"][1])


def test_stratified_halves_are_disjoint_and_balanced():
    labels = np.repeat(np.arange(5), [8, 8, 7, 9, 8])
    a, b = FID.stratified_halves(labels, seed=0)
    assert set(a.tolist()).isdisjoint(b.tolist()) and len(a) + len(b) == len(labels)
    assert abs(len(a) - len(b)) <= 1
    for c in range(5):
        na, nb = (labels[a.numpy()] == c).sum(), (labels[b.numpy()] == c).sum()
        assert abs(na - nb) <= 1
    assert torch.equal(FID.stratified_halves(labels, seed=0)[0], a)


def test_fid_kid_at_n_and_the_floor():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(80, 16, generator=g), torch.randn(150, 16, generator=g) + 0.7
    halves = FID.stratified_halves(np.arange(80) // 8, seed=0)
    out = FID.fid_kid_at_n(real, fake, halves, seed=0)
    assert out["fid_n"] == 150 and out["n_real"] == 80 and out["kid_n"] == 80 and out["kid_subset"] == 40
    assert out["kid_ci"][0] <= out["kid"] <= out["kid_ci"][1]
    assert out["fid_half_n"] == 40 and out["kid_half_n"] == 40
    floor = FID.real_floor(real, halves, seed=0)
    assert floor["n_a"] == floor["n_b"] == 40
    assert floor["fid"] < out["fid_half"] and floor["kid"] < out["kid_half"]  # same n, same reference


def test_fid_subset_is_fixed_and_spread():
    a = SC.fid_subset(1000, 100, seed=3)
    assert len(a) == len(set(a.tolist())) == 100 and np.array_equal(a, SC.fid_subset(1000, 100, seed=3))
    assert a.max() > 900 and a.min() < 100  # not the first 100 queries (those are 10 test images)
    assert len(SC.fid_subset(50, 100, seed=3)) == 50 and len(SC.fid_subset(50, 0, seed=3)) == 50
