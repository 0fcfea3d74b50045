"""The main table (paper Table II analogue): FID, KID, IS, R-precision, attribute accuracy and WER of
every method, per speech condition, from the trained encoders and generators of one dataset.

The methods and what conditions their generator come from :mod:`s2ilib.core.registry` (a method
declared there is evaluated without edits here); the paper's four:

* ``one_stage``  -- the teacher-student speech encoder (``speech_ts``) -> its StackGAN-v2.
* ``classifier`` -- the classifier-based speech encoder (``speech_cls``) -> its StackGAN-v2.
* ``two_stage``  -- ASR (Whisper tiny.en) -> text encoder (``text_ts``) -> the text StackGAN-v2.
* ``text``       -- the ground-truth caption -> text encoder -> the text StackGAN-v2 (upper bound).

A method's registry ``query`` says how its conditions are made: ``speech`` and ``text`` look up
its encoder's exported embeddings, ``asr`` transcribes the utterances and encodes the transcripts
(:mod:`s2ilib.evaluation.two_stage`).

Queries (:func:`s2ilib.evaluation.queries.evaluation_queries`): the spoken captions of the test
images (unseen classes), one image per utterance as the authors (10 per test image), for the
``seen`` voices and the held-out ``unseen`` voices; text queries use the ground-truth captions of
the same (image, caption) pairs as the ``seen`` queries, reported once under the condition
``groundtruth_text``. Image ``i`` of every method is drawn with the same noise, so images of one
utterance are comparable side by side.

Metrics of one (method, condition), streamed chunk by chunk so a large set never sits in memory
(:mod:`s2ilib.evaluation.scoring`, against the references of :mod:`s2ilib.evaluation.references`):

* FID / KID: FID Inception features of the generated images vs those of the real test images (one
  per test image, at the GAN's output resolution, resized to ``EvalConfig.fid_image_size``).
* IS: class probabilities from a head trained once per dataset on Inception features of the real
  test images (stands in for the authors' Inception fine-tuned on the test classes); its held-out
  accuracy is reported next to it (``is_head``).
* R-precision: teacher features of each generated image against its query's embedding among
  ``rprec_candidates - 1`` embeddings of captions of other images. The judge must live in the
  teacher's space: for every *speech* query (``speech`` or ``asr``: one_stage, classifier,
  two_stage) it is the ``speech_ts`` embedding of the same utterance (the classifier encoder's own
  output is not in the teacher's space), so the number says whether the image shows what was
  *said*; for a ``text`` query it is the ``text_ts`` embedding of the caption
  (``r_precision_speech`` gives the speech judge too).
* Attribute accuracy: a reader trained once per dataset on real training images (at the GAN
  resolution) reads the generated image; score = share of the attributes the caption mentions that
  the image shows. Floor: the same images against the mentions of shuffled captions; ceiling: the
  reader's held-out accuracy and its score on the real test images (``reader``).
* WER of the ASR transcripts (``asr`` queries), per condition.

Statistical power (:mod:`s2ilib.evaluation.items`, :mod:`s2ilib.evaluation.stats`): attribute
accuracy and R-precision are means of per-image scores with 95% bootstrap intervals over TEST
IMAGES (``attr_acc_ci``, ``attr_acc_n``, ``attr_acc_n_groups``, same for ``r_precision``); the
per-item scores are kept in ``eval/<dataset>/items/<method>__<condition>.json`` with their query
ids, so :func:`paired_comparison` compares two methods on the same utterances. FID / KID / IS use
a fixed random subset of ``eval.fid_n`` generated images (``fid_n``), KID with its interval
(``kid_ci``); ``fid_floor`` is the real-vs-real FID / KID between two disjoint class-stratified
halves of the real test images, and each cell's ``fid_half`` / ``kid_half`` (n_real / 2 generated
images against half A) reads beside it. R-precision uses ``eval.rprec_n`` images, ASR methods
``eval.asr_max_queries`` utterances (fixed subsets chosen by query id, so they pair).

Every metric carries ``n_images`` (generated) and ``n_real``; ``timings`` gives seconds per stage
(generation, Inception, teacher, reader, ASR, statistics) and seconds per 1000 images.
Results go to ``runs/<preset>/eval/<dataset>/main.json`` (cached by configuration and input files).
Every model built or loaded here (teacher, generators, encoders, Inception) runs on one device,
``cfg.device`` (``auto`` | ``cpu`` | ``cuda``) unless the caller names another.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from s2ilib.core import registry
from s2ilib.core.device import resolve_device
from s2ilib.core.io import atomic_write_text, file_stamp
from s2ilib.evaluation.queries import EvaluationError, embedding_cache, evaluation_queries, lookup_embeddings, query_mentions
from s2ilib.evaluation.references import (CACHE_VERSION, generators_bbox_crop, is_head_for, references_dir, study_reader,
                                          reader_reference, real_test_features)
from s2ilib.evaluation import items as IT
from s2ilib.evaluation.fid import real_floor, stratified_halves
from s2ilib.evaluation.items import load_items, paired_comparison  # noqa: F401  (re-export)
from s2ilib.evaluation.scoring import EvalContext, generator_images_fn, load_method_generator, score_images
from s2ilib.evaluation.two_stage import encode_texts, transcribe_queries
from s2ilib.speech.asr import settings as asr_settings

# Re-exported: notebook 04 reaches these through ``from s2ilib.evaluation import main as evaluate``
# (tests/test_asr.py reaches transcribe_queries the same way).
from s2ilib.evaluation.examples import example_rows  # noqa: F401  (re-export)
from s2ilib.evaluation.tables import (main_table_intervals, main_table_long, main_table_wide,  # noqa: F401  (re-export)
                                      write_tables)

__all__ = ["run_main_evaluation", "evaluation_key", "per_1000_images", "SPEECH_JUDGE", "TEXT_JUDGE",
           "example_rows", "main_table_long", "main_table_wide", "main_table_intervals", "write_tables", "paired_comparison",
           "load_items", "method_queries"]

# Version of main.json's layout (2: per-item scores, intervals, FID at a fixed N with its floor).
MAIN_VERSION = 2

# The R-precision judges: embeddings in the teacher's space of the utterance / of the caption.
SPEECH_JUDGE, TEXT_JUDGE = "speech_ts", "text_ts"


def _inputs(paths, name: str, methods: Sequence[str]) -> dict[str, Any]:
    """Input files the results depend on, with size and mtime (a retrained model invalidates the cache)."""
    files = {}
    for m in methods:
        spec = registry.method(m)
        gan = paths.gan(name, spec.generator) / "generator_ema.pt"
        files[str(gan)] = file_stamp(gan)
        judges = {SPEECH_JUDGE, TEXT_JUDGE} if spec.query == "text" else {SPEECH_JUDGE}
        for kind in {spec.encoder} | judges:
            for f in ("embeddings.pt", "checkpoint.pt"):
                p = paths.encoder(name, kind) / f
                files[str(p)] = file_stamp(p)
    return files


def evaluation_key(ds, cfg, paths, methods: Sequence[str]) -> dict[str, Any]:
    """What main.json depends on: eval / GAN / encoder configs, seed, methods, dataset, input files."""
    return {"version": CACHE_VERSION, "main_version": MAIN_VERSION, "seed": cfg.seed, "methods": list(methods), "dataset": ds.name,
            "dataset_fingerprint": ds.fingerprint(), "eval": dataclasses.asdict(cfg.eval),
            "gan": dataclasses.asdict(cfg.gan), "encoder": dataclasses.asdict(cfg.encoder),
            "inputs": _inputs(paths, ds.name, methods)}


def _load_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # JSON has no NaN
    return obj


def _default_teacher(cfg, device: str):
    from s2ilib.models.teacher import Teacher

    e = cfg.encoder
    # channels-last weights (the Teacher's default): the same features, 2-3x faster on CPU
    return Teacher(e.teacher, e.teacher_weights, e.teacher_image_size, bf16=e.bf16, device=device)


def _conditions_for(ds, method: str, queries, paths, emb_cache, asr, progress,
                    device: str) -> tuple[torch.Tensor, dict]:
    """Condition embeddings (N, D) of one method for the queries, plus extras (transcripts, WER):
    by its registry ``query``, a lookup of its encoder's embeddings (``speech``, ``text``) or ASR
    transcripts encoded by its text encoder on ``device`` (``asr``)."""
    from s2ilib.evaluation.metrics import wer

    name = ds.name
    spec = registry.method(method)
    if spec.query != "asr":
        return lookup_embeddings(emb_cache(spec.encoder), queries, spec.encoder), {}
    # asr (two_stage): ASR -> text encoder
    from s2ilib.models.loading import load_trained_encoder

    cond = str(queries["condition"].iloc[0])
    t0 = time.perf_counter()
    texts = transcribe_queries(ds, queries, references_dir(paths, name) / f"transcripts_{cond}.csv",
                               transcriber=asr.get("transcriber"), speak=asr.get("speak"), progress=progress)
    asr_s = time.perf_counter() - t0
    model, _, tok = load_trained_encoder(paths.encoder(name, spec.encoder), map_location=device)
    t1 = time.perf_counter()
    emb = encode_texts(model.to(device), tok, texts)
    return emb, {"wer": wer(list(queries["text"].astype(str)), texts), "timings": {
        "asr": asr_s, "text_encode": time.perf_counter() - t1}}


def run_main_evaluation(ds, cfg, paths, methods: Sequence[str] | None = None, progress: bool = True,
                        teacher: Any = None, transcriber: Any = None,
                        speak: Callable[[Any, int], np.ndarray] | None = None,
                        device: str | None = None, force: bool = False) -> dict[str, Any]:
    """The main table of one dataset: {method: {condition: {metric: value, "n_images", "n_real"}}}
    plus "reader", "is_head", "asr": {"wer": {condition: v}}, "timings", "queries", "key".

    ``cfg``: a StudyConfig. ``teacher``: a :class:`s2ilib.models.teacher.Teacher` (or anything with
    ``features(uint8 images) -> (B, D)``) for R-precision; built from ``cfg.encoder`` if None.
    ``transcriber`` / ``speak``: ASR and speech re-synthesis of the two-stage method (defaults:
    Whisper, :func:`s2ilib.data.spoken.speak_utterance`). Cached in ``eval/<name>/main.json`` under
    :func:`evaluation_key`; finished (method, condition) parts are kept in ``main.parts.json`` so an
    interrupted run resumes. ``force`` recomputes. ``methods``: names from
    :mod:`s2ilib.core.registry` (default: every registered method). ``device``: where every model
    built or loaded here runs (default ``cfg.device``; ``cuda`` without a GPU is an error).
    """
    known = registry.method_names()
    methods = known if methods is None else tuple(methods)
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise EvaluationError(f"unknown methods {unknown}; choose from {known}")
    name, ev = ds.name, cfg.eval
    out_dir = paths.eval(name)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = str(resolve_device(cfg.device if device is None else device))
    gens = {m: load_method_generator(paths, name, m, device) for m in methods}
    crop = generators_bbox_crop(gens, ds)  # the real references' image view
    key = {**evaluation_key(ds, cfg, paths, methods), "bbox_crop": crop}
    main_path, parts_path = out_dir / "main.json", out_dir / "main.parts.json"
    cached = _load_json(main_path)
    if not force and cached.get("key") == key:
        return cached
    parts = _load_json(parts_path)
    parts = parts.get("parts", {}) if parts.get("key") == key and not force else {}

    t_start = time.perf_counter()
    size = next(iter(gens.values())).sizes[-1]
    timings: dict[str, Any] = {}
    t0 = time.perf_counter()
    real = real_test_features(ds, paths, size, ev.fid_image_size, progress=progress, device=device, bbox_crop=crop,
                              fast=ev.fid_bf16)
    head = is_head_for(ds, paths, real, ev, size, ev.fid_image_size, cfg.seed, bbox_crop=crop)
    halves = stratified_halves([ds.images[i].class_index for i in ds.split("test")], cfg.seed)
    floor = real_floor(real, halves, seed=cfg.seed)
    timings["real_features_and_is_head_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    reader = study_reader(ds, paths, cfg, size, crop, progress=progress)
    reader_ref = reader_reference(ds, reader, size, cfg.seed, bbox_crop=crop) if reader is not None else None
    timings["reader_s"] = time.perf_counter() - t0
    teacher = teacher if teacher is not None else _default_teacher(cfg, device)
    ctx = EvalContext(real, ev.fid_image_size, head, reader, teacher, ev.rprec_candidates, cfg.seed,
                      progress=progress, device=device, fid_n=ev.fid_n, rprec_n=ev.rprec_n, real_halves=halves,
                      fast_inception=ev.fid_bf16)
    emb_cache = embedding_cache(paths, name)
    asr = {"transcriber": transcriber, "speak": speak}
    part_stamp = _stamp(key)

    results: dict[str, Any] = {m: {} for m in methods}
    wers: dict[str, float] = {}
    per_part: dict[str, Any] = {}
    query_sizes: dict[str, Any] = {}
    for method in methods:
        for cond in registry.method(method).conditions:
            q = method_queries(ds, method, cond, ev, cfg.seed)
            query_sizes[f"{method}/{cond}"] = {"n_queries": len(q), "n_test_images": int(q["image_idx"].nunique())}
            part_key = f"{method}/{cond}"
            item_file = IT.item_path(out_dir, method, cond)
            if part_key in parts and item_file.is_file() and IT.read_items(item_file)[1] == part_stamp:
                res, tim = parts[part_key]["metrics"], parts[part_key]["timings"]
            elif len(q) < 2:
                res, tim = {"n_images": len(q), "n_real": len(real), "skipped": "fewer than 2 queries"}, {}
            else:
                res, tim, items = _evaluate_part(ds, method, q, paths, cfg, ctx, gens[method], emb_cache, asr,
                                                 progress)
                IT.save_items(item_file, items, key=part_stamp)
                parts[part_key] = {"metrics": _jsonable(res), "timings": tim}
                atomic_write_text(parts_path, json.dumps({"key": key, "parts": parts}, indent=1) + "\n")
            results[method][cond] = res
            per_part[part_key] = tim
            if "wer" in res:
                wers[cond] = res["wer"]
    split = {"split": cfg.split, **(ds.info.get("validation") or {})}
    out = {**results, "reader": reader_ref, "is_head": dict(head.report), "asr": {"wer": wers, "model": ev.asr_model, **asr_settings()},
           "split": split,
           "fid_floor": floor, "items_dir": IT.items_dir(out_dir).name,
           "queries": query_sizes, "image_size": size, "fid_image_size": ev.fid_image_size, "bbox_crop": crop,
           "timings": {**timings, "parts": per_part, "per_1000_images": per_1000_images(per_part, results),
                       "total_s": time.perf_counter() - t_start},
           "key": key}
    out = _jsonable(out)
    atomic_write_text(main_path, json.dumps(out, indent=1) + "\n")
    return out


def _stamp(key: dict[str, Any]) -> str:
    """A short hash of the evaluation key, written into every items file (stale files are redone)."""
    import hashlib

    return hashlib.sha256(json.dumps(_jsonable(key), sort_keys=True).encode()).hexdigest()[:16]


def method_queries(ds, method: str, condition: str, ev, seed: int):
    """The queries one (method, condition) is scored on: every caption (``ev.captions_per_image``)
    of the test images chosen by ``ev.max_eval_images``; methods queried through ASR keep a fixed
    random subset of ``ev.asr_max_queries`` of them (:func:`s2ilib.evaluation.scoring.fid_subset`
    on the query ids), so their items pair with the other methods' by query id."""
    from s2ilib.evaluation.scoring import fid_subset

    q = evaluation_queries(ds, condition, ev.max_eval_images, seed, ev.images_per_caption, ev.captions_per_image)
    if registry.method(method).query == "asr" and ev.asr_max_queries and ev.asr_max_queries < len(q):
        keep = np.sort(fid_subset(IT.query_ids(q), ev.asr_max_queries, seed))
        q = q.iloc[keep].reset_index(drop=True)
    return q


def _evaluate_part(ds, method, q, paths, cfg, ctx, generator, emb_cache, asr, progress):
    """Metrics, timings and per-item scores of one (method, condition)."""
    cond_emb, extra = _conditions_for(ds, method, q, paths, emb_cache, asr, progress, ctx.device)
    judges = {}
    if registry.method(method).query == "text":
        judges["r_precision"] = lookup_embeddings(emb_cache(TEXT_JUDGE), q, TEXT_JUDGE)
        # groundtruth_text queries are the seen utterances' (image, caption) pairs: the speech judge
        # of the same utterances makes the text upper bound comparable with the speech methods
        judges["r_precision_speech"] = lookup_embeddings(emb_cache(SPEECH_JUDGE), q, SPEECH_JUDGE)
    else:
        judges["r_precision"] = lookup_embeddings(emb_cache(SPEECH_JUDGE), q, SPEECH_JUDGE)
    images_fn = generator_images_fn(generator, cond_emb, cfg.seed, bf16=cfg.gan.bf16)
    labels = torch.tensor(q["image_idx"].to_numpy(dtype=np.int64))
    res, tim, items = score_images(images_fn, len(q), ctx, mentions=query_mentions(ds, q), judges=judges,
                                   image_labels=labels, query_ids=IT.query_ids(q))
    items["utt_id"] = [str(u) for u in q["utt_id"]]
    if "wer" in extra:
        res["wer"] = extra["wer"]
        res["n_utterances_asr"] = int(q["utt_id"].nunique())
        tim.update(extra["timings"])
    return res, tim, items


def per_1000_images(per_part: dict[str, dict[str, float]], results: dict[str, Any]) -> dict[str, float]:
    """Seconds per 1000 images of every stage, pooled over all (method, condition) parts."""
    totals: dict[str, float] = {}
    counts: dict[str, int] = {}
    for part, tim in per_part.items():
        method, cond = part.split("/")
        n = results.get(method, {}).get(cond, {}).get("n_images", 0)
        for stage, s in tim.items():
            totals[stage] = totals.get(stage, 0.0) + s
            counts[stage] = counts.get(stage, 0) + n
    return {stage: 1000.0 * totals[stage] / counts[stage] for stage in totals if counts[stage]}

