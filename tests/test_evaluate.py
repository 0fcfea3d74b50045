"""Main-table evaluation (s2ilib.evaluation: queries, references, scoring, main, tables) on a tiny synthetic dataset built in tmp.

Real images standing in for generated ones must score FID ~ 0 and attribute accuracy far above the
shuffled floor; noise images must score worse. The end-to-end run trains tiny encoders and
generators for a few steps, with a stub teacher (random projection of pooled pixels) and a stub ASR.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import torch

from s2ilib.core import registry
from s2ilib.evaluation import cli as CLI
from s2ilib.evaluation import items as IT
from s2ilib.evaluation import main as EV
from s2ilib.evaluation import metrics as M
from s2ilib.evaluation import queries as Q
from s2ilib.evaluation import references as REF
from s2ilib.evaluation import scoring as SC
from s2ilib.evaluation import tables as T
from s2ilib.core.config import get_config
from s2ilib.data.images import load_images_uint8
from s2ilib.study.analysis import hits_and_groups
from s2ilib.study.stages import RunPaths

SIZE = 32  # GAN output resolution of the tiny generators
DIM = 16  # teacher / embedding dimension


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(n)


def _study_cfg():
    cfg = get_config("smoke")
    cfg.data = dataclasses.replace(cfg.data, birds_train_classes=4, birds_test_classes=2, images_per_class=6,
                                   captions_per_image=2, workers=1, keep_wav=False, n_train_voices=4,
                                   n_unseen_voices=2, unseen_voice_fraction=0.5)
    cfg.eval = dataclasses.replace(cfg.eval, fid_image_size=75, reader_epochs=120, is_head_epochs=5,
                                   rprec_candidates=5)
    cfg.gan = dataclasses.replace(cfg.gan, base_size=16, branches=2, gf_dim=4, df_dim=4, z_dim=8, ca_dim=4,
                                  r_num=1, batch_size=8, steps=1, sample_every=1, ckpt_every=1)
    cfg.encoder = dataclasses.replace(cfg.encoder, cnn_channels=[4, 4, 4, 8, 8, 8, 8, 8], rnn_hidden=8,
                                      batch_size=8, max_steps=2, epochs=1, text_epochs=1, val_every=0,
                                      ckpt_every=0, max_frames=128, bf16=False)
    return cfg


class StubTeacher:
    """Teacher stand-in: a fixed random projection of 4x4 average-pooled pixels -> (B, DIM)."""

    def __init__(self):
        self.proj = torch.randn(48, DIM, generator=torch.Generator().manual_seed(0))
        self.calls = 0

    def features(self, images: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        x = torch.nn.functional.adaptive_avg_pool2d(images.float() / 255.0, 4).flatten(1)
        return x @ self.proj


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from s2ilib.data.datasets import load_dataset
    from s2ilib.data.spoken import synthesize_dataset_speech
    from s2ilib.data.synth import build_synthetic_dataset

    cfg = _study_cfg()
    paths = RunPaths.create(tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("reports"), "smoke")
    root = build_synthetic_dataset("synth-birds", paths.data("synth-birds"), cfg.data, seed=3, progress=False)
    ds = load_dataset(root)
    ds.speech = synthesize_dataset_speech(ds, root / "speech", cfg.data, 3, progress=False)
    return ds, cfg, paths


@pytest.fixture(scope="module")
def reader(built):
    ds, cfg, paths = built
    return REF.reader_for(ds, paths, SIZE, cfg.eval.reader_epochs, cfg.seed, progress=False,
                         bbox_crop=cfg.gan.bbox_crop)


def test_queries_select_test_utterances(built):
    ds, _, _ = built
    test = set(ds.split("test"))
    seen = Q.evaluation_queries(ds, "seen", 0, seed=1)
    unseen = Q.evaluation_queries(ds, "unseen", 0, seed=1)
    text = Q.evaluation_queries(ds, "groundtruth_text", 0, seed=1)
    assert len(seen) == 2 * len(test)  # every caption of every test image, one image per utterance
    assert set(seen["image_idx"]) == test and (ds.speech.index.loc[seen["row"], "condition"] == "seen").all()
    assert 0 < unseen["image_idx"].nunique() < len(test)  # unseen voices speak half the test images
    assert (ds.speech.index.loc[unseen["row"], "condition"] == "unseen").all()
    assert text[["image_idx", "caption_idx"]].equals(seen[["image_idx", "caption_idx"]])
    capped = Q.evaluation_queries(ds, "seen", 3, seed=1)
    assert capped["image_idx"].nunique() == 3 and len(capped) == 6
    assert capped.equals(Q.evaluation_queries(ds, "seen", 3, seed=1))  # deterministic
    assert not capped.equals(Q.evaluation_queries(ds, "seen", 3, seed=2))
    assert len(Q.evaluation_queries(ds, "seen", 3, seed=1, images_per_caption=2)) == 12
    with pytest.raises(Q.EvaluationError, match="unknown condition"):
        Q.evaluation_queries(ds, "noisy", 0)


def _ctx(ds, paths, cfg, reader, teacher=None):
    crop = cfg.gan.bbox_crop
    real = REF.real_test_features(ds, paths, SIZE, cfg.eval.fid_image_size, progress=False, bbox_crop=crop)
    head = REF.is_head_for(ds, paths, real, cfg.eval, SIZE, cfg.eval.fid_image_size, cfg.seed, bbox_crop=crop)
    return SC.EvalContext(real, cfg.eval.fid_image_size, head, reader, teacher, rprec_candidates=5, seed=0,
                          progress=False)


def test_frechet_distance_matches_torchmetrics():
    from s2ilib.evaluation.metrics import fid_from_features

    g = torch.Generator().manual_seed(0)
    real = torch.randn(40, 24, generator=g)
    for fake in (torch.randn(30, 24, generator=g) * 1.5 + 0.3, torch.randn(90, 24, generator=g) + 1.0, real):
        for r in (real, torch.randn(200, 24, generator=g)):  # N < D path and D-space path
            assert M.frechet_distance(r, fake) == pytest.approx(fid_from_features(r, fake), rel=1e-6, abs=1e-6)
    assert M.frechet_distance(real, real) == pytest.approx(0.0, abs=1e-8)


def test_real_images_score_well_and_noise_badly(built, reader):
    ds, cfg, paths = built
    q = Q.evaluation_queries(ds, "seen", 0, seed=0)
    real_imgs = load_images_uint8(ds, q["image_idx"].tolist(), SIZE, bbox_crop=cfg.gan.bbox_crop)
    noise = torch.randint(0, 256, real_imgs.shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    teacher = StubTeacher()
    judge = teacher.features(real_imgs)  # a perfect judge: the caption embedding = the image's features
    ctx = _ctx(ds, paths, cfg, reader, teacher)
    labels = torch.tensor(q["image_idx"].to_numpy())
    kw = dict(judges={"r_precision": judge}, image_labels=labels)
    good, tim = SC.evaluate_images(lambda s, e: real_imgs[s:e], len(q), ctx, **kw)
    bad, _ = SC.evaluate_images(lambda s, e: noise[s:e], len(q), ctx, mentions=Q.query_mentions(ds, q), **kw)
    # Each real test image twice (one per caption) against each once: same mean and nearly the same
    # covariance, so FID is small; noise is far away.
    assert good["n_images"] == len(q) and good["n_real"] == len(ds.split("test"))
    assert good["fid"] < 1.0 and bad["fid"] > 50 * max(good["fid"], 1.0), (good["fid"], bad["fid"])
    assert good["kid"] < bad["kid"]
    assert good["r_precision"] == 1.0 and good["r_precision_candidates"] == 5
    assert bad["r_precision"] < 0.7
    assert 1.0 <= good["is"] <= 2.0 + 1e-6  # two test classes
    assert set(tim) >= {"generate", "inception", "teacher", "fid_kid", "is", "r_precision", "intervals"}
    # intervals over test images around each per-item mean; FID / KID at a recorded n
    lo, hi = good["r_precision_ci"]
    assert lo <= good["r_precision"] <= hi and good["r_precision_n"] == len(q)
    assert good["r_precision_n_groups"] == len(ds.split("test")) and good["r_precision_chance"] == 1 / 5
    assert bad["attr_acc_ci"][0] <= bad["attr_acc"] <= bad["attr_acc_ci"][1] and bad["attr_acc_n"] == len(q)
    assert good["fid_n"] == len(q) and good["kid_n"] == min(len(q), good["n_real"])
    assert good["kid_ci"][0] <= good["kid"] <= good["kid_ci"][1]
    # a fixed subset of N images for FID and of rprec_n for R-precision (NaN items elsewhere)
    sub, _, items = SC.score_images(lambda s, e: real_imgs[s:e], len(q), dataclasses.replace(ctx, fid_n=6, rprec_n=5),
                                    judges={"r_precision": judge}, image_labels=labels)
    assert sub["fid_n"] == 6 and sub["r_precision_n"] == 5 and np.isfinite(items["r_precision"]).sum() == 5
    # Attribute accuracy: real training images (the reader's own classes, so it reads them well) with
    # the mentions of their captions, against shuffled mentions and against noise images.
    train_q = [(i, c) for i in ds.split("train") for c in range(len(ds.images[i].captions))]
    import pandas as pd

    tq = pd.DataFrame(train_q, columns=["image_idx", "caption_idx"])
    train_imgs = load_images_uint8(ds, tq["image_idx"].tolist(), SIZE, bbox_crop=cfg.gan.bbox_crop)
    mentions = Q.query_mentions(ds, tq)
    no_fid = dataclasses.replace(ctx, real_feats=None)  # attribute accuracy only
    real_attr, tim = SC.evaluate_images(lambda s, e: train_imgs[s:e], len(tq), no_fid, mentions=mentions)
    assert real_attr["attr_acc"] > real_attr["attr_acc_shuffled"] + 0.2, real_attr
    assert real_attr["attr_acc"] > bad["attr_acc"] + 0.2, (real_attr, bad)
    assert real_attr["n_mentions"] > len(tq) and "reader" in tim and "inception" not in tim
    assert "fid" not in real_attr and "r_precision" not in real_attr


def test_tables_and_markdown(tmp_path):
    res = {"one_stage": {"seen": {"fid": 10.0, "is": 2.0, "n_images": 20, "n_real": 10,
                                  "attr_per_attribute": {"head": 0.5}},
                         "unseen": {"fid": 12.0, "is": 1.9, "n_images": 8, "n_real": 10}},
           "text": {"groundtruth_text": {"fid": 8.0, "n_images": 20, "n_real": 10}},
           "two_stage": {"seen": {"fid": 11.0, "wer": 0.4, "n_images": 20, "n_real": 10}},
           "reader": {"real_test_attr_acc": 0.9, "real_test_attr_acc_shuffled": 0.3, "holdout_mean": 0.8,
                      "n_real": 10},
           "is_head": {"holdout_accuracy": 1.0, "n_holdout": 4}, "timings": {"total_s": 1.0}}
    df = T.main_table_long({"synth-birds": res, "synth-flowers": res})
    assert list(df.columns) == ["dataset", "method", "condition", "metric", "value", "low", "high", "n", "n_images"]
    assert len(df) == 2 * (7 + 4)  # 7 method metrics + 4 references per dataset
    assert df.query("dataset == 'synth-birds' and method == 'one_stage' and condition == 'unseen' "
                    "and metric == 'fid'")["n_images"].item() == 8
    wide = T.main_table_wide(df)
    assert list(wide.index.get_level_values("method")[:4]) == ["one_stage", "one_stage", "two_stage", "text"]
    assert wide.loc[("synth-birds", "two_stage", "seen"), "wer"] == 0.4
    out = T.write_tables(df, tmp_path)
    md = out["md"].read_text().splitlines()
    assert md[0].startswith("| dataset | method | condition | n_images | fid |") and len(md) == 2 + len(wide)
    assert "| synth-birds | text | groundtruth_text | 20 | 8.000 |" in out["md"].read_text()
    assert len(__import__("pandas").read_csv(out["long_csv"])) == len(df)


def _cli(argv):
    """``s2i read-attributes`` through a parser that registers it as s2ilib.cli does (evaluation.cli.add_cli)."""
    import argparse

    parser = argparse.ArgumentParser(prog="s2i")
    CLI.add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_read_attributes_cli(built, reader, tmp_path, capsys):
    from PIL import Image

    main = _cli

    ds, cfg, paths = built
    run_root = paths.run.parent
    img_path = tmp_path / "bird.png"
    Image.open(ds.images[0].path).save(img_path)
    assert main(["read-attributes", "--dataset", "synth-birds", "--run-root", str(run_root), "--preset", "smoke",
                 str(img_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    obj = json.loads(lines[0])
    assert obj["image"] == str(img_path) and set(obj["attributes"]) == set(ds.vocabulary)
    head = obj["attributes"]["head"]
    assert head["value"] in ds.vocabulary["head"] and 0.0 < head["prob"] <= 1.0
    assert main(["read-attributes", "--dataset", "synth-flowers", "--run-root", str(run_root), "--preset", "smoke",
                 str(img_path)]) == 2
    err = capsys.readouterr().err
    assert "no trained attribute reader" in err and CLI.EVAL_NOTEBOOK in err


class StubASR:
    """Drops the last word of the caption: WER = 1 / (words in caption) per utterance."""

    def __init__(self, ds):
        self.texts = {i: str(t) for i, t in enumerate(ds.speech.index["text"])}
        self.calls = 0

    def transcribe(self, wave):
        self.calls += 1
        return self.texts[int(wave[0])].rsplit(" ", 1)[0]


def _train_models(ds, cfg, paths):
    from s2ilib.training.encoder_trainer import train_encoder
    from s2ilib.training.gan_trainer import train_gan

    teacher = torch.randn(len(ds.images), 1, DIM, generator=torch.Generator().manual_seed(1))
    for kind in ("speech_ts", "speech_cls", "text_ts"):
        train_encoder(kind, ds, teacher, cfg.encoder, paths.encoder(ds.name, kind), seed=0, progress=False)
    train = ds.split("train")
    images = load_images_uint8(ds, train, SIZE, bbox_crop=cfg.gan.bbox_crop)
    classes = torch.tensor([ds.images[i].class_index for i in train])
    pos = {i: k for k, i in enumerate(train)}
    for method in registry.generator_methods():  # one_stage_authors: the authors' recipe on speech_ts
        kind = registry.method(method).encoder
        emb = torch.load(paths.encoder(ds.name, kind) / "embeddings.pt", weights_only=True)
        keep = [r for r, i in enumerate(emb["image_idx"].tolist()) if i in pos]
        train_gan(images, emb["emb"][keep], torch.tensor([pos[int(emb["image_idx"][r])] for r in keep]), classes,
                  paths.config_for(method).gan, paths.gan(ds.name, method), seed=0, progress=False)


@pytest.mark.slow
def test_run_main_evaluation_end_to_end(built, reader):
    ds, cfg, paths = built
    _train_models(ds, cfg, paths)
    asr = StubASR(ds)
    speak = lambda ds_, row: np.array([row], dtype=np.float32)  # the stub ASR looks the row up
    teacher = StubTeacher()
    res = EV.run_main_evaluation(ds, cfg, paths, progress=False, teacher=teacher, transcriber=asr, speak=speak)
    ev = cfg.eval
    seen_q = Q.evaluation_queries(ds, "seen", ev.max_eval_images, cfg.seed, ev.images_per_caption,
                                   ev.captions_per_image)
    n_seen = len(seen_q)
    assert set(res["one_stage"]) == {"seen", "unseen"} and set(res["text"]) == {"groundtruth_text"}
    for method in registry.method_names():
        for cond, m in res[method].items():
            assert m["n_images"] > 1 and m["n_real"] == len(ds.split("test"))
            assert m["fid"] >= 0 and 0 <= m["attr_acc"] <= 1 and 0 <= m["r_precision"] <= 1, (method, cond, m)
    assert res["one_stage"]["seen"]["n_images"] == n_seen
    assert "r_precision_speech" in res["text"]["groundtruth_text"]
    # every (method, condition): attr_acc and r_precision with a 95% interval over test images and n;
    # FID / KID at a recorded N, KID with its interval, the half-size FID beside the real-vs-real floor
    for method in registry.method_names():
        for cond, m in res[method].items():
            for metric in ("attr_acc", "r_precision"):
                lo, hi = m[f"{metric}_ci"]
                assert lo <= m[metric] <= hi and m[f"{metric}_n"] >= 2 and m[f"{metric}_n_groups"] >= 2
            assert m["fid_n"] == min(m["n_images"], ev.fid_n or m["n_images"]) and m["fid_half_n"] >= 2
            assert m["kid_ci"][0] <= m["kid"] <= m["kid_ci"][1]
    floor = res["fid_floor"]
    assert floor["n_a"] + floor["n_b"] == len(ds.split("test")) and floor["fid"] >= 0
    # per-item scores next to main.json, pairable by query id
    items = EV.load_items(paths.eval(ds.name))
    assert set(items) == {f"{m}/{c}" for m in registry.method_names() for c in res[m]}
    one = items["one_stage/seen"]
    assert len(one["query_id"]) == n_seen and np.nanmean(one["attr_acc"]) == pytest.approx(res["one_stage"]["seen"]["attr_acc"])
    self_diff = EV.paired_comparison(one, one, "attr_acc")
    assert (self_diff["estimate"], self_diff["low"], self_diff["high"], self_diff["p_value"]) == (0.0, 0.0, 0.0, 1.0)
    vs_text = EV.paired_comparison(one, items["text/groundtruth_text"], "attr_acc")
    assert vs_text["n"] == np.isfinite(one["attr_acc"]).sum()  # the same (image, caption) pairs
    assert EV.paired_comparison(one, items["two_stage/seen"], "attr_acc")["n"] <= len(items["two_stage/seen"]["query_id"])
    # two_stage: WER of the stub ASR (one deleted word per caption) recorded per condition, on a
    # fixed subset of eval.asr_max_queries of the other methods' queries
    asr_q = EV.method_queries(ds, "two_stage", "seen", ev, cfg.seed)
    assert len(asr_q) == min(ev.asr_max_queries or n_seen, n_seen) == res["two_stage"]["seen"]["n_images"]
    assert set(asr_q["utt_id"]) <= set(seen_q["utt_id"])
    words = np.array([len(t.split()) for t in asr_q["text"]])
    assert res["asr"]["wer"]["seen"] == pytest.approx(len(words) / words.sum(), rel=1e-6)
    assert res["two_stage"]["unseen"]["wer"] == res["asr"]["wer"]["unseen"] > 0
    n_asr = len(asr_q) + res["two_stage"]["unseen"]["n_images"]
    assert asr.calls == n_asr
    assert (REF.references_dir(paths, ds.name) / "transcripts_seen.csv").is_file()
    # The reader's reference is read from the real test images in the generators' view (the crops).
    # (Whether a reader generalises to unseen classes is not testable with four training classes'
    # worth of attribute values; tests/test_attribute_reader.py checks that it learns.)
    from s2ilib.evaluation import attribute_reader as AR

    test = ds.split("test")
    # the reader the evaluation used (cfg.eval.reader_source: rendered at smoke), from its cache
    used = REF.reader_for(ds, paths, SIZE, cfg.eval.reader_epochs, cfg.seed, progress=False, bbox_crop=True,
                          source=cfg.eval.reader_source, n_images=cfg.eval.reader_images,
                          render_size=cfg.data.image_size)
    assert used.report["source"] == res["reader"]["source"] == cfg.eval.reader_source
    assert set(res["reader"]["real_test_table"]) == {"sharp", "blur32", "blur16"}
    read = AR.read_attributes(used, load_images_uint8(ds, test, SIZE, bbox_crop=True))
    pairs = [(r, m) for r, i in zip(read, test) for m in ds.images[i].caption_attributes]
    expect = AR.mention_accuracy([r for r, _ in pairs], [m for _, m in pairs])
    per_caption = IT.mention_scores([r for r, _ in pairs], [m for _, m in pairs])
    assert res["reader"]["real_test_attr_acc"] == pytest.approx(np.nanmean(per_caption))
    assert res["reader"]["real_test_attr_acc_micro"] == pytest.approx(expect["accuracy"])
    assert res["reader"]["real_test_n_mentions"] == expect["n_mentions"]
    lo, hi = res["reader"]["real_test_attr_acc_ci"]
    assert lo <= res["reader"]["real_test_attr_acc"] <= hi
    assert 0 <= res["reader"]["real_test_attr_acc_shuffled"] <= 1
    assert res["is_head"]["n_classes"] == 2
    # Real references use the generators' image view (smoke trains on bounding-box crops).
    assert res["bbox_crop"] is cfg.gan.bbox_crop is True and res["is_head"]["bbox_crop"] is True
    assert list(REF.references_dir(paths, ds.name).glob("synth-birds_bboxcrop*__test__*.pt"))
    per1k = res["timings"]["per_1000_images"]
    assert per1k["inception"] > 0 and per1k["asr"] > 0
    # Rerun: cache hit (no image is scored, no utterance transcribed)
    calls = teacher.calls
    again = EV.run_main_evaluation(ds, cfg, paths, progress=False, teacher=teacher, transcriber=asr, speak=speak)
    assert again == res and teacher.calls == calls and asr.calls == n_asr
    df = EV.main_table_long({ds.name: res})
    assert set(df["method"]) == {*registry.method_names(), "real"} and df["value"].notna().all()
    # Side-by-side rows: every method's image for the same utterances (transcripts from the cache)
    rows = EV.example_rows(ds, paths, n=3, seed=0, transcriber=asr, speak=speak)
    assert len(rows) == 3 and len({r["image_idx"] for r in rows}) == 3
    assert set(rows[0]["images"]) == set(registry.method_names()) and rows[0]["real"].shape == (3, SIZE, SIZE)
    assert rows[0]["transcript"] == rows[0]["text"].rsplit(" ", 1)[0]


@pytest.mark.slow
def test_train_class_items_read_generated_images_of_training_captions(built):
    from s2ilib.evaluation import attribute_reader as AR
    from s2ilib.evaluation import train_classes as TC

    ds, cfg, paths = built
    _train_models(ds, cfg, paths)  # finished runs are returned as they are
    q = TC.train_class_queries(ds, 5, cfg.seed)
    assert len(q) == 5 and set(q["image_idx"]) <= set(ds.split("train"))
    assert q.equals(TC.train_class_queries(ds, 5, cfg.seed)) and not q.equals(TC.train_class_queries(ds, 5, cfg.seed + 1))
    n_all = len(TC.train_class_queries(ds, 10**6, cfg.seed))
    assert n_all == int(((ds.speech.index["condition"] == "seen") & ds.speech.index["image_idx"].isin(ds.split("train"))).sum())
    with pytest.raises(Q.EvaluationError, match="n must be >= 1"):
        TC.train_class_queries(ds, 0, cfg.seed)
    out = TC.train_class_items(ds, cfg, paths, registry.method_names(), n=5)
    assert "two_stage" not in out and set(out) == set(registry.method_names()) - {"two_stage"}
    fams = list(ds.vocabulary)
    # the hits are the reader's on G(z, embedding of each caption) against that caption's mentions
    gen = SC.load_method_generator(paths, ds.name, "one_stage", "cpu")
    emb = Q.lookup_embeddings(Q.embedding_cache(paths, ds.name)("speech_ts"), q, "speech_ts")
    reader = REF.study_reader(ds, paths, cfg, SIZE, True, progress=False)
    read = AR.read_attributes(reader, SC.generator_images_fn(gen, emb, cfg.seed, bf16=cfg.gan.bf16)(0, 5))
    expect = IT.family_hits(read, Q.query_mentions(ds, q))
    hits, groups = hits_and_groups(out["one_stage"], fams)
    for a in hits:
        np.testing.assert_array_equal(hits[a], expect[IT.HIT_PREFIX + a])
        assert np.array_equal(groups[a], q["image_idx"].to_numpy())
    assert any(np.isfinite(h).any() for h in hits.values())


def test_generators_must_share_one_image_view():
    from types import SimpleNamespace as NS

    crop, whole, old = NS(train_config={"bbox_crop": True}), NS(train_config={"bbox_crop": False}), NS()
    assert REF.generators_bbox_crop({"one_stage": crop, "text": crop}) is True
    assert REF.generators_bbox_crop({"one_stage": old}) is False  # saved before the option: uncropped
    boxes, no_boxes = NS(images=[NS(bbox=(1, 2, 3, 4))]), NS(images=[NS(bbox=None)])
    assert REF.generators_bbox_crop({"one_stage": crop}, boxes) is True
    assert REF.generators_bbox_crop({"one_stage": crop}, no_boxes) is False  # whole images either way
    with pytest.raises(Q.EvaluationError, match="different image views"):
        REF.generators_bbox_crop({"one_stage": crop, "text": whole})


def test_notebook_names_stay_on_evaluation_main():
    """Notebook 04 does ``from s2ilib.evaluation import main as evaluate``: the names it calls stay there."""
    from s2ilib.evaluation import examples as EX

    assert EV.main_table_long is T.main_table_long and EV.main_table_wide is T.main_table_wide
    assert EV.write_tables is T.write_tables and EV.example_rows is EX.example_rows
    assert EV.main_table_intervals is T.main_table_intervals and EV.paired_comparison is IT.paired_comparison
    assert callable(EV.run_main_evaluation)


class _Stop(Exception):
    pass


def test_evaluation_device_comes_from_the_config(built, monkeypatch):
    """Every generator is loaded on ``cfg.device`` (or the ``device`` argument); no silent fallback."""
    from s2ilib.core.device import DeviceError

    ds, cfg, paths = built
    seen = []

    def load(paths_, name, method, device):
        seen.append((method, device))
        raise _Stop

    monkeypatch.setattr(EV, "load_method_generator", load)
    with pytest.raises(_Stop):
        EV.run_main_evaluation(ds, dataclasses.replace(cfg, device="cpu"), paths, progress=False)
    assert seen == [(registry.method_names()[0], "cpu")]
    with pytest.raises(_Stop):
        EV.run_main_evaluation(ds, dataclasses.replace(cfg, device="auto"), paths, methods=["text"], device="cpu")
    assert seen[-1] == ("text", "cpu")
    with pytest.raises(EV.EvaluationError, match="unknown methods"):
        EV.run_main_evaluation(ds, cfg, paths, methods=["nope"])
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA"):
            EV.run_main_evaluation(ds, dataclasses.replace(cfg, device="cuda"), paths, progress=False)
        assert len(seen) == 2  # refused before any model is loaded
