"""s2ilib.study.robustness (notebook 08): the schedule, the perturbed speech and its cache, WER with an
interval, the paired claims and the tables, on a tiny hand-made dataset (no trained models)."""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from s2ilib.core.config import get_config
from s2ilib.speech.perturb import PerturbationError
from s2ilib.study import robustness as R
from s2ilib.study import robustness_report as P
from s2ilib.study import robustness_speech as S
from s2ilib.study.paths import RunPaths

VOICE = "espeak:en-us+m3:r170:p50:g50"
TEXTS = ["a small red bird with a black beak", "this bird has white wings and a yellow belly",
         "the bird is blue with a short tail", "a grey bird with a long pointed bill",
         "this flower has pink petals", "a green bird with orange feet"]


def _dataset():
    """Six test utterances of six images (enough for babble from other images)."""
    index = pd.DataFrame({"utt_id": [f"s{i:06d}_00" for i in range(6)], "image_idx": list(range(6)),
                          "caption_idx": [0] * 6, "voice": [VOICE] * 6, "condition": ["seen"] * 6,
                          "split": ["test"] * 6, "text": TEXTS})
    return SimpleNamespace(name="tiny", images=[None] * 6, speech=SimpleNamespace(index=index),
                           fingerprint=lambda: "tiny0")


def _queries(ds, rows=(0, 1, 2)):
    idx = ds.speech.index
    return idx.iloc[list(rows)].assign(row=list(rows)).reset_index(drop=True)


@pytest.fixture()
def setting(tmp_path):
    cfg = get_config("smoke")
    return _dataset(), cfg, RunPaths.create(tmp_path / "runs", tmp_path / "rep", cfg)


def test_conditions_and_schedules():
    conds = S.all_conditions()
    assert conds[:2] == ["clean", "piper"] and len(conds) == 17
    assert {"white_20db", "pink_5db", "babble_0db", "reverb", "rate_0.8", "rate_1.2"} <= set(conds)
    assert R.schedule("small")["conditions"] == conds
    s = R.schedule("smoke", {"queries": 3, "conditions": ["white_10db"]})
    assert s["queries"] == 3 and s["conditions"] == ["clean", "white_10db"]  # clean is always the reference
    with pytest.raises(KeyError, match="unknown robustness schedule key 'pairs'"):
        R.schedule("smoke", {"pairs": 3})
    with pytest.raises(PerturbationError, match="unknown speech condition 'thunder'"):
        R.schedule("smoke", {"conditions": ["thunder"]})
    assert [S.family(c) for c in ("clean", "piper", "pink_5db", "reverb", "rate_0.8")] == \
        ["clean", "engine", "noise", "reverb", "rate"]


def test_plan_of_the_small_schedule():
    n = R.schedule("small")["queries"]
    p = R.plan(R.schedule("small"), R.METHODS)
    assert p["images"] == 17 * n * 3 and p["asr_utterances"] == 16 * n and p["piper_utterances"] == n
    assert 5 < p["expected_min"] < 11  # the budget of notebook 08 at small
    assert R.plan(R.schedule("small"), ["one_stage"])["asr_utterances"] == 0


def test_clean_condition_is_the_dataset_featurisation(setting):
    from s2ilib.data.spoken import speak_utterance
    from s2ilib.speech.features import logmel

    ds, cfg, paths = setting
    store, waves = S.condition_store(ds, cfg, paths, _queries(ds), "clean", lambda: [])
    assert len(store) == 3 and set(waves) == set(store.index["utt_id"])
    d = cfg.data
    for k in range(3):
        ref = logmel(speak_utterance(ds, k), sr=d.sample_rate, n_mels=d.n_mels, min_frames=d.min_frames)
        assert np.array_equal(store.get(k), ref.astype(np.float16).astype(np.float32))
    assert store.root == paths.run / "robustness" / "tiny" / "clean"


def test_perturbed_speech_is_deterministic_cached_and_reused(setting):
    ds, cfg, paths = setting
    q = _queries(ds)
    calls = []
    others = lambda: calls.append(1) or [np.sin(np.arange(16000) * 0.05).astype(np.float32)] * 4  # noqa: E731
    store, waves = S.condition_store(ds, cfg, paths, q, "babble_5db", others)
    assert calls == [1] and len(waves) == 3
    config = store.root / "config.json"
    stamp = config.stat().st_mtime_ns
    again, waves2 = S.condition_store(ds, cfg, paths, q, "babble_5db", others)
    assert waves2 == {} and calls == [1] and config.stat().st_mtime_ns == stamp  # nothing remade
    assert np.array_equal(again.get(0), store.get(0))
    assert json.loads(config.read_text())["key"]["condition"] == "babble_5db"
    w = S.condition_wave(ds, 0, "white_0db", cfg.seed, 16000)
    assert np.array_equal(w, S.condition_wave(ds, 0, "white_0db", cfg.seed, 16000))
    assert not np.array_equal(w, S.condition_wave(ds, 0, "white_0db", cfg.seed + 1, 16000))
    assert not np.array_equal(w, S.condition_wave(ds, 1, "white_0db", cfg.seed, 16000)[:len(w)])
    # another set of utterances is another cache entry, not a stale hit
    _, waves3 = S.condition_store(ds, cfg, paths, _queries(ds, (0, 1)), "babble_5db", others)
    assert len(waves3) == 2


def test_speaking_rate_and_reverb_change_the_length(setting):
    ds, cfg, paths = setting
    clean = S.condition_wave(ds, 1, "clean", cfg.seed, 16000)
    slow = S.condition_wave(ds, 1, "rate_0.8", cfg.seed, 16000)
    fast = S.condition_wave(ds, 1, "rate_1.2", cfg.seed, 16000)
    room = S.condition_wave(ds, 1, "reverb", cfg.seed, 16000)
    assert len(slow) == pytest.approx(len(clean) / 0.8, rel=0.02)
    assert len(fast) == pytest.approx(len(clean) / 1.2, rel=0.02)
    assert len(room) > len(clean) and np.abs(room).max() <= 1.0


def test_the_piper_condition(setting):
    ds, cfg, paths = setting
    store, waves = S.condition_store(ds, cfg, paths, _queries(ds, (0, 1)), "piper", lambda: [])
    assert set(store.index["voice"]) == {"piper:en_US-joe-medium:r175:p50:g50"}
    assert all(1.0 < d < 5.0 for d in store.index["duration_s"])
    espeak = S.condition_wave(ds, 0, "clean", cfg.seed, 16000)
    assert len(waves["s000000_00"]) != len(espeak)  # another engine, not the espeak utterance


def test_babble_talkers_come_from_other_images():
    ds = _dataset()
    q = _queries(ds)
    rows = S.babble_rows(ds, q, seed=1)
    assert rows == sorted(rows) and set(rows) == {3, 4, 5}  # every other image, none of the queries'
    assert S.babble_rows(ds, q, seed=1) == rows


def test_wer_interval_is_the_corpus_wer():
    from s2ilib.evaluation.metrics import wer

    refs = ["a small red bird", "the wings are white and long", "a blue bird", "this bird is grey"]
    hyps = ["a small bed bird", "the wings are white and long", "", "this word is gray"]
    errors, words = R.wer_items(refs, hyps)
    assert errors.tolist() == [1, 0, 3, 1] and words.tolist() == [4, 6, 3, 4]  # gray -> grey is normalised
    ci = R.wer_interval(errors, words, np.array([0, 1, 2, 3]), seed=0)
    assert ci["wer"] == pytest.approx(wer(refs, hyps)) == pytest.approx(5 / 17)
    assert ci["wer_ci"][0] < ci["wer"] < ci["wer_ci"][1] and ci["wer_n"] == 4 and ci["wer_n_words"] == 17
    perfect = R.wer_interval(np.zeros(4), words, np.array([0, 1, 2, 3]))
    assert perfect["wer"] == 0.0 and perfect["wer_ci"] == [0.0, 0.0]


def _items(attr, hits, n_images=20):
    n = len(attr)
    return {"query_id": [f"{k}/0/0" for k in range(n)], "image_idx": np.arange(n) % n_images,
            "attr_acc": np.asarray(attr, dtype=float), "r_precision": np.asarray(hits, dtype=float),
            "attr_acc_shuffled": np.full(n, 0.3)}


def _fake_results():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.7, 60)
    hits = (rng.uniform(size=60) < 0.5).astype(float)
    items = {"one_stage": {"clean": _items(base + 0.3, hits), "white_0db": _items(base, hits),
                           "reverb": _items(base, np.ones(60))},
             "two_stage": {"clean": _items(base, hits), "white_0db": _items(base + 0.3, hits),
                           "reverb": _items(base - 0.2, np.zeros(60))}}
    cells = {m: {c: {"attr_acc": float(np.mean(i["attr_acc"])), "attr_acc_ci": [0.1, 0.9], "attr_acc_n": 60,
                     "attr_acc_n_groups": 20, "r_precision": 0.5, "r_precision_ci": [0.4, 0.6], "r_precision_n": 60,
                     "r_precision_n_groups": 20, "attr_acc_shuffled": 0.3, "attr_acc_shuffled_ci": [0.28, 0.32],
                     "attr_acc_shuffled_n": 60, "attr_acc_shuffled_n_groups": 20,
                     **({"wer": 0.2, "wer_ci": [0.1, 0.3], "wer_n": 60, "wer_n_words": 600, "wer_n_groups": 20}
                        if m == "two_stage" else {})}
                 for c, i in conds.items()} for m, conds in items.items()}
    return {"synth-birds": {"conditions": ["clean", "white_0db", "reverb"], "methods": ["one_stage", "two_stage"],
                            "items": items, "cells": cells, "n_queries": 60, "n_test_images": 20, "timings": {}}}


def test_claims_are_decided_from_paired_intervals():
    res = _fake_results()
    claims = P.claims(res, seed=0)
    got = {(r.condition, r.metric): r.verdict for r in claims.itertuples()}
    assert got[("clean", "attr_acc")] == "holds" and got[("white_0db", "attr_acc")] == "fails"
    assert got[("clean", "r_precision")] == "undecided"  # identical hits: a zero-width interval at 0
    assert got[("reverb", "r_precision")] == "holds"
    for r in claims.itertuples():
        assert r.low <= r.estimate <= r.high and r.n == 60 and r.comparison == "one_stage - two_stage"
    v = P.verdicts(claims).set_index("condition")["verdict"].to_dict()
    assert v == {"clean": "undecided", "white_0db": "fails", "reverb": "holds"}  # both metrics must hold
    lines = P.verdict_summary(P.verdicts(claims))
    assert "in 1 of 3 conditions (`reverb`)" in lines[0] and "in 1 (`white_0db`)" in lines[0]
    assert lines[1] == ("synth-birds, attr_acc alone: one-stage ahead in `clean`, `reverb`; "
                        "two-stage ahead in `white_0db`.")


def test_long_table_wide_table_and_section():
    res = _fake_results()
    long = P.long_table(res)
    assert list(long.columns) == P.TABLE_COLUMNS
    wer_rows = long[long["metric"] == "wer"]
    assert set(wer_rows["method"]) == {"two_stage"} and (wer_rows["n"] == 600).all()
    assert len(long) == 2 * 3 * 3 + 3
    wide = P.wide_table(long, "attr_acc")
    assert list(wide.columns) == ["clean", "white_0db", "reverb"] and "[0.100, 0.900]" in wide.iloc[0, 0]
    claims = P.claims(res)
    sec = P.section(get_config("smoke"), R.schedule("smoke"), res, claims, P.verdicts(claims), {"total_s": 1.0})
    entry = sec["synth-birds"]
    assert entry["preset"] == "smoke" and entry["schedule"]["queries"] == 6
    assert entry["families"]["white_0db"] == "noise" and len(entry["claims"]) == 6
    assert not any(isinstance(v, float) and math.isnan(v) for c in entry["claims"] for v in c.values())


def test_curve_figure_has_a_column_per_noise_and_one_for_the_rest(tmp_path):
    import matplotlib

    matplotlib.use("agg")
    long = P.long_table(_fake_results())
    fig = P.curve_figure(long, "synth-birds", path=tmp_path / "08_synth-birds_robustness.png")
    assert (tmp_path / "08_synth-birds_robustness.png").stat().st_size > 10_000
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["white noise", "engine, room, rate"]
    assert len(fig.axes) == 3 * 2  # attr_acc, r_precision, wer x two columns
