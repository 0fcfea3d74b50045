"""Ablations of the paper's §V: the loss terms of the speech encoder (Table IV, notebook 05) and the
number of generator scales (Table V, notebook 06).

Every ablation model is trained through the ordinary stages with the ablation schedule of the
preset (:data:`SCHEDULES`, one place, overridable from the notebooks) applied by
:func:`s2ilib.study.paths.with_overrides`, so each lands in its own variant folder
(``encoders/<ds>/speech_ts@encoder.max_steps=400,...``) and never touches the main runs; a rerun
finds and reuses it. Every row of one notebook uses the same schedule.

Every model is scored against the SAME references as the main table (notebook 04's cached attribute
reader, real FID features and real-vs-real floor, at the main generator's output size), on one
fixed random subset of the test queries of unseen classes (seen voices), with the same noise per
query: outputs of another size are resized (antialiased bilinear) to that size first, so every
model is read through the same reader / Inception / teacher view. R-precision is judged by the MAIN
``speech_ts`` embeddings of the utterances, the same judge for every row.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from s2ilib.core.io import atomic_write_text, file_stamp
from s2ilib.study.paths import RunPaths, device_of, with_overrides

# The ablation schedules, per preset. Config keys (dotted) are applied to every ablation model of a
# notebook; the other keys size the evaluation. At small they are sized to keep notebooks 05-07
# within 40 min on 2 idle CPU cores, from the per-unit costs measured on this CPU (speech encoder
# step ~0.1 s, 2-branch GAN step ~0.18 s and 3-4x that at 3 branches, FID Inception ~0.09 s / image
# bf16, generation + reader ~8 ms / image, teacher ~0.03 s / image): 05 ~25 min (8 rows x ~3 min),
# 06 ~9 min (birds), 07 ~1.5 min. Every notebook prints and records the time of each part.
SCHEDULES: dict[str, dict[str, Any]] = {
    "smoke": {"loss_config": {"encoder.max_steps": 8, "gan.steps": 4}, "loss_datasets": ["synth-birds"],
              "scale_config": {"gan.steps": 4}, "scale_branches": [1, 2, 3], "scale_datasets": ["synth-birds"],
              "eval_queries": 12, "rprec_n": 8, "fid_n": 8, "probe_max_train": 400,
              "grad_steps": 6, "grad_window": [2, 6], "pairs": 6, "figure_pairs": 2},
    "small": {"loss_config": {"encoder.max_steps": 400, "gan.steps": 300},
              "loss_datasets": ["synth-birds", "synth-flowers"],
              "scale_config": {"gan.steps": 400}, "scale_branches": [1, 2, 3], "scale_datasets": ["synth-birds"],
              "eval_queries": 800, "rprec_n": 200, "fid_n": 300, "probe_max_train": 3000,
              "grad_steps": 150, "grad_window": [50, 150], "pairs": 200, "figure_pairs": 4},
    "paper": {"loss_config": {"encoder.max_steps": 20000, "gan.steps": 60000},
              "loss_datasets": ["synth-birds", "synth-flowers"],
              "scale_config": {"gan.steps": 60000}, "scale_branches": [1, 2, 3],
              "scale_datasets": ["synth-birds", "synth-flowers"],
              "eval_queries": 4000, "rprec_n": 1000, "fid_n": 2000, "probe_max_train": 8000,
              "grad_steps": 150, "grad_window": [50, 150], "pairs": 200, "figure_pairs": 4},
}

# Table IV's rows: which teacher-student terms the speech encoder is trained with (weights 5 / 1 / 1000).
LOSS_ROWS: dict[str, dict[str, Any]] = {
    "norm": {"encoder.use_jel": False, "encoder.use_kdl": False},
    "norm+jel": {"encoder.use_kdl": False},
    "norm+kdl": {"encoder.use_jel": False},
    "norm+jel+kdl": {},
}
CONDITION = "seen"  # spoken by training voices, of unseen (test) classes


def schedule(preset: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The preset's ablation schedule with ``overrides`` on top (unknown keys are errors)."""
    base = json.loads(json.dumps(SCHEDULES[preset]))
    for k, v in (overrides or {}).items():
        if k not in base:
            raise KeyError(f"unknown ablation schedule key {k!r}; known: {sorted(base)}")
        base[k] = {**base[k], **v} if isinstance(base[k], dict) else v
    return base


def variant_paths(cfg, paths: RunPaths, extra: dict[str, Any]):
    """(config, RunPaths) of an ablation model: ``cfg`` with ``extra`` overrides, same run folder."""
    vcfg = with_overrides(cfg, extra)
    return vcfg, RunPaths.create(paths.run.parent, paths.report, vcfg)


def loss_row_config(cfg, paths: RunPaths, row: str, sched: dict[str, Any]):
    """(config, RunPaths) of one Table IV row under the schedule."""
    return variant_paths(cfg, paths, {**sched["loss_config"], **LOSS_ROWS[row]})


def scale_config(cfg, paths: RunPaths, branches: int, sched: dict[str, Any]):
    """(config, RunPaths) of the generator with ``branches`` scales under the schedule."""
    return variant_paths(cfg, paths, {**sched["scale_config"], "gan.branches": int(branches)})


# ------------------------------------------------------------------------------------------------
# the shared evaluation


def ablation_queries(ds, cfg, n: int):
    """A fixed random subset of ``n`` of the main table's one-stage queries (seen voices)."""
    from s2ilib.evaluation import items as IT
    from s2ilib.evaluation.main import method_queries
    from s2ilib.evaluation.scoring import fid_subset

    q = method_queries(ds, "one_stage", CONDITION, cfg.eval, cfg.seed)
    keep = np.sort(fid_subset(IT.query_ids(q), n, cfg.seed))
    return q.iloc[keep].reset_index(drop=True)


def evaluation_context(ds, cfg, paths: RunPaths, size: int, crop: bool, sched: dict[str, Any],
                       progress: bool = False):
    """(EvalContext, real-vs-real floor) against the main table's references at ``size`` px."""
    from s2ilib.evaluation.fid import real_floor, stratified_halves
    from s2ilib.evaluation.main import _default_teacher
    from s2ilib.evaluation.references import real_test_features, study_reader
    from s2ilib.evaluation.scoring import EvalContext

    ev, device = cfg.eval, device_of(cfg)
    real = real_test_features(ds, paths, size, ev.fid_image_size, progress=progress, device=device, bbox_crop=crop,
                              fast=ev.fid_bf16)
    halves = stratified_halves([ds.images[i].class_index for i in ds.split("test")], cfg.seed)
    reader = study_reader(ds, paths, cfg, size, crop, progress=progress)
    ctx = EvalContext(real, ev.fid_image_size, None, reader, _default_teacher(cfg, device), ev.rprec_candidates,
                      cfg.seed, progress=progress, device=device, fid_n=sched["fid_n"], rprec_n=sched["rprec_n"],
                      real_halves=halves, fast_inception=ev.fid_bf16,
                      batch_size=512)  # few large chunks: each FID Inception call costs seconds on a CPU
    return ctx, real_floor(real, halves, seed=cfg.seed)


def resized_images_fn(images_fn, size: int, sub: int = 128):
    """``images_fn`` with every output resized to ``size`` px (antialiased bilinear, uint8); a chunk
    is drawn ``sub`` images at a time (the noise of each sub-chunk depends on its start, as in the
    main evaluation's chunks of 128), so the evaluation's large chunks never hold big activations."""
    import torch.nn.functional as F

    def images(s: int, e: int) -> torch.Tensor:
        out = []
        for a in range(s, e, sub):
            x = images_fn(a, min(a + sub, e))
            if x.shape[-1] != size:
                x = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
                x = x.round().clamp(0, 255).to(torch.uint8)
            out.append(x)
        return torch.cat(out)

    return images


def score_generator(ds, gan_dir: Path, cond: torch.Tensor, queries, judge: torch.Tensor, ctx, size: int,
                    cfg) -> tuple[dict[str, Any], dict[str, float], dict[str, Any]]:
    """Metrics, seconds per stage and per-item scores of the generator in ``gan_dir`` on ``queries``
    (conditions ``cond``), its outputs resized to ``size``; cached in ``gan_dir/ablation_eval.json``."""
    from s2ilib.evaluation import items as IT
    from s2ilib.evaluation.queries import query_mentions
    from s2ilib.evaluation.scoring import generator_images_fn, score_images
    from s2ilib.models.loading import load_generator

    qids = IT.query_ids(queries)
    key = {"queries": hashlib.sha256("\n".join(qids).encode()).hexdigest()[:16], "size": size, "seed": cfg.seed,
           "fid_n": ctx.fid_n, "rprec_n": ctx.rprec_n, "chunk": ctx.batch_size, "generator": file_stamp(gan_dir / "generator_ema.pt"),
           "judge": hashlib.sha256(judge.numpy().tobytes()).hexdigest()[:16], "n_real": len(ctx.real_feats)}
    cache, item_file = gan_dir / "ablation_eval.json", gan_dir / "ablation_items.json"
    if cache.is_file() and item_file.is_file():
        blob = json.loads(cache.read_text())
        items, stamp = IT.read_items(item_file)
        if blob.get("key") == key and stamp == blob.get("stamp"):
            return blob["metrics"], blob["timings"], items
    G = load_generator(gan_dir / "generator_ema.pt", device=ctx.device)
    images_fn = resized_images_fn(generator_images_fn(G, cond, cfg.seed, bf16=cfg.gan.bf16), size)
    labels = torch.tensor(queries["image_idx"].to_numpy(dtype=np.int64))
    res, tim, items = score_images(images_fn, len(queries), ctx, mentions=query_mentions(ds, queries),
                                   judges={"r_precision": judge}, image_labels=labels, query_ids=qids)
    res = json.loads(json.dumps(res, default=float).replace("NaN", "null"))
    stamp = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    IT.save_items(item_file, items, key=stamp)
    atomic_write_text(cache, json.dumps({"key": key, "stamp": stamp, "metrics": res, "timings": tim}, indent=1) + "\n")
    return res, tim, items


def retrieval_items(emb: dict[str, Any], ds, teacher_feats, k: int = 10) -> dict[str, Any]:
    """Per test utterance (seen voices, unseen classes): ``recall@k`` hit (its own image within the top
    k of the test images by cosine with the view-averaged teacher features) and ``ap`` (average
    precision with relevance = same class), as the encoder trainer's retrieval; items keyed by utterance."""
    import torch.nn.functional as F

    test = np.array(ds.split("test"))
    img = emb["image_idx"].numpy()
    rows = np.flatnonzero(np.isin(img, test) & (np.asarray(emb["condition"]) == CONDITION))
    q = F.normalize(emb["emb"][rows].float(), dim=1)
    g = F.normalize(torch.as_tensor(teacher_feats)[test].float().mean(1), dim=1)
    scores = q @ g.T
    col = torch.as_tensor(np.searchsorted(test, img[rows]))
    paired = scores[torch.arange(len(rows)), col]
    rank = (scores > paired[:, None]).sum(1)
    gc = torch.tensor([ds.images[i].class_index for i in test])
    qc = torch.tensor([ds.images[i].class_index for i in img[rows]])
    order = scores.argsort(dim=1, descending=True)
    rel = (gc[order] == qc[:, None]).float()
    prec = rel.cumsum(1) / torch.arange(1, rel.shape[1] + 1)
    ap = (prec * rel).sum(1) / rel.sum(1).clamp_min(1)
    return {"query_id": [str(u) for u in np.asarray(emb["utt_id"])[rows]], "image_idx": img[rows].astype(np.int64),
            f"recall@{k}": (rank < k).float().numpy().astype(np.float64), "ap": ap.numpy().astype(np.float64)}


def _ci(items: dict[str, Any], metric: str, seed: int) -> dict[str, Any]:
    from s2ilib.evaluation.items import interval

    return interval(items, metric, seed=seed)


def _image_metrics(res: dict[str, Any], floor: dict[str, Any]) -> dict[str, Any]:
    keep = ("attr_acc", "attr_acc_ci", "attr_acc_n", "attr_acc_n_groups", "attr_acc_shuffled", "r_precision",
            "r_precision_ci", "r_precision_n", "r_precision_chance", "fid", "fid_n", "kid", "kid_ci", "fid_half",
            "fid_half_n", "kid_half", "kid_half_ci", "n_images", "n_real")
    return {**{k: res.get(k) for k in keep}, "fid_floor": floor.get("fid"), "kid_floor": floor.get("kid"),
            "kid_floor_ci": floor.get("kid_ci")}


def loss_row(ds, row: str, cfg, paths: RunPaths, teacher_feats, sched: dict[str, Any], ctx, floor, queries,
             judge, size: int, progress: bool = False) -> tuple[dict[str, Any], dict[str, dict]]:
    """One Table IV row of one dataset: train (or reuse) its encoder and generator, then retrieval
    (R@10, mAP), the attribute probe of the embedding and the image metrics, with intervals and
    the seconds of each part. Returns (row, {"retrieval": items, "images": items})."""
    from s2ilib.evaluation.queries import lookup_embeddings
    from s2ilib.study import analysis, stages

    rcfg, rpaths = loss_row_config(cfg, paths, row, sched)
    t = {}
    t0 = time.perf_counter()
    enc = stages.train_encoder_stage(ds, "speech_ts", rcfg, rpaths, teacher_feats, progress=progress)
    t["encoder_s"] = time.perf_counter() - t0
    emb = stages.load_embeddings(rpaths, ds.name, "speech_ts")
    t0 = time.perf_counter()
    ret = retrieval_items(emb, ds, teacher_feats)
    probe = analysis.attribute_information_table(ds, embeddings={"speech_ts": emb}, condition=CONDITION,
                                                 max_train=sched["probe_max_train"], seed=cfg.seed).iloc[0]
    t["retrieval_and_probe_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    gan = stages.train_generator_stage(ds, "one_stage", rcfg, rpaths, progress=progress)
    t["generator_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    res, tim, items = score_generator(ds, rpaths.gan(ds.name, "one_stage"), lookup_embeddings(emb, queries, "speech_ts"),
                                      queries, judge, ctx, size, rcfg)
    t["evaluation_s"] = time.perf_counter() - t0
    out = {"row": row, "terms": row.split("+"), "encoder_dir": rpaths.encoder(ds.name, "speech_ts").name,
           "gan_dir": rpaths.gan(ds.name, "one_stage").name, "encoder_steps": enc.get("steps"),
           "encoder_train_s": enc.get("train_seconds"), "gan_steps": gan.get("steps"),
           "gan_train_s": gan.get("total_seconds"), **_ci(ret, "recall@10", cfg.seed), **_ci(ret, "ap", cfg.seed),
           "probe": probe["pooled"], "probe_ci": [probe["low"], probe["high"]], "probe_n": int(probe["n"]),
           **{f"probe_{a}": probe[a] for a in ds.vocabulary},
           **_image_metrics(res, floor), "timings": {**t, "evaluation_parts": tim}}
    return out, {"retrieval": ret, "images": items}


def scale_row(ds, branches: int, cfg, paths: RunPaths, sched: dict[str, Any], ctx, floor, queries, cond,
              judge, size: int, progress: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """One Table V row: the generator with ``branches`` scales on the main speech encoder, trained
    (or reused) and scored with its final output resized to ``size``. Returns (row, items)."""
    from s2ilib.study import stages

    vcfg, vpaths = scale_config(cfg, paths, branches, sched)
    t0 = time.perf_counter()
    gan = stages.train_generator_stage(ds, "one_stage", vcfg, vpaths, progress=progress)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    res, tim, items = score_generator(ds, vpaths.gan(ds.name, "one_stage"), cond, queries, judge, ctx, size, vcfg)
    total = gan.get("total_seconds")  # every call of the run (a reused model keeps its own time)
    out = {"branches": int(branches), "sizes": gan.get("sizes"), "output_size": stages.gan_image_size(vcfg),
           "scored_at": size, "gan_dir": vpaths.gan(ds.name, "one_stage").name, "steps": gan.get("steps"),
           "train_s": total, "s_per_step": total / gan["steps"] if total and gan.get("steps") else None,
           **_image_metrics(res, floor),
           "timings": {"train_call_s": train_s, "evaluation_s": time.perf_counter() - t0, "evaluation_parts": tim}}
    return out, items


def gradient_stage(ds, cfg, paths: RunPaths, teacher_feats, sched: dict[str, Any]) -> dict[str, Any]:
    """:func:`s2ilib.training.loss_balance.gradient_balance` of the main configuration's speech
    encoder loss (all three terms, its weights) under the schedule's ``grad_steps`` / ``grad_window``,
    cached in ``<run>/ablation/<dataset>/gradients.json`` by its configuration."""
    import dataclasses

    from s2ilib.training.loss_balance import gradient_balance

    key = {"encoder": dataclasses.asdict(cfg.encoder), "seed": cfg.seed, "steps": sched["grad_steps"],
           "window": list(sched["grad_window"]), "dataset": ds.fingerprint()}
    path = paths.run / "ablation" / ds.name / "gradients.json"
    if path.is_file():
        blob = json.loads(path.read_text())
        if blob.get("key") == json.loads(json.dumps(key)):
            return blob["result"]
    res = gradient_balance("speech_ts", ds, teacher_feats, cfg.encoder, cfg.seed, sched["grad_steps"],
                           tuple(sched["grad_window"]), device=device_of(cfg))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"key": key, "result": res}, indent=1) + "\n")
    return res
