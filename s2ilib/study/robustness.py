"""Speech the encoders never heard (notebook 08): where does direct speech win over ASR?

On the unseen test classes, the one-stage (``speech_ts``), two-stage (Whisper ASR + ``text_ts``)
and classifier-based (``speech_cls``) methods of the main table are scored under conditions none of
their encoders trained on: another TTS engine, additive noise at 20-0 dB SNR, reverberation and
speaking rate (:mod:`s2ilib.study.robustness_speech` makes and caches that speech;
:mod:`s2ilib.study.robustness_report` turns the results into tables, claims and figures).

Each method embeds the condition's features with its trained encoder (``two_stage``: Whisper's
transcripts, cached by the features' content and the ASR settings, encoded by the text encoder; the
clean condition shares notebook 04's transcript cache), its generator of notebook 03 draws one image
per utterance, and notebook 04's scoring reads it: attribute accuracy with the attribute reader, and
R-precision judged by the ``speech_ts`` embedding of the CLEAN utterance (the same yardstick in every
condition: does the image show what was said?); WER of the transcripts per condition, the corpus WER
with a bootstrap interval (:func:`wer_interval`). Each (method, condition) is cached in
``eval/<dataset>/robustness/`` under :func:`part_key`.

Queries: a fixed random subset of the main table's ``seen`` queries
(:func:`~s2ilib.study.robustness_speech.robustness_queries`), the same for every method and
condition, image i drawn with the same noise throughout, so every comparison pairs on the same
utterances; intervals are 95% bootstrap intervals over test images. :data:`SCHEDULES` sizes the
study per preset, :func:`plan` says what a schedule costs.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Sequence

import numpy as np
import torch

from s2ilib.core.io import atomic_write_text, file_stamp
from s2ilib.study.robustness_speech import (ENGINE_CONDITIONS, ROBUSTNESS_VERSION, all_conditions,
                                            babble_rows, condition_key, condition_store, condition_wave,
                                            family, needs_others, robustness_queries)

METHODS = ("one_stage", "two_stage", "classifier")
SPEECH_JUDGE = "speech_ts"  # R-precision judge: the clean utterance's teacher-student speech embedding


# Per preset: datasets, queries per condition (the same utterances for every method and condition),
# conditions. At small the cost is Whisper's: 0.36-0.47 s per utterance (measured on 2 cores at 48
# utterances per condition: 17 s white 0 dB, 23 s babble 0 dB, 21 s rate 1.2; the clean condition
# comes from notebook 04's cache), against ~0.02 s per generated image (generation, reader,
# R-precision teacher) and ~0.5 s per Piper utterance: 17 conditions x 60 birds utterances come to
# about 9 min (:func:`plan`); notebook 08 records the measured time of every part.
SCHEDULES: dict[str, dict[str, Any]] = {
    "smoke": {"datasets": ["synth-birds"], "queries": 6,
              "conditions": ["clean", "piper", "white_0db", "babble_5db", "reverb", "rate_1.2"]},
    "small": {"datasets": ["synth-birds"], "queries": 60, "conditions": all_conditions()},
    "paper": {"datasets": ["synth-birds", "synth-flowers"], "queries": 500, "conditions": all_conditions()},
}


def schedule(preset: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The preset's schedule with ``overrides`` on top; unknown keys and conditions are errors."""
    base = json.loads(json.dumps(SCHEDULES[preset]))
    for k, v in (overrides or {}).items():
        if k not in base:
            raise KeyError(f"unknown robustness schedule key {k!r}; known: {sorted(base)}")
        base[k] = v
    for cond in base["conditions"]:
        family(cond)  # an unknown condition raises here, not after minutes of work
    if "clean" not in base["conditions"]:
        base["conditions"] = ["clean", *base["conditions"]]  # every curve starts from the reference
    return base


# Wall seconds per unit on 2 CPU cores at small, for the plan printed before the work (measured on
# the small run's birds models, 6 conditions x 48 utterances; notebook 08 records the real time of
# every part): Whisper per utterance (0.36-0.47), Piper per utterance, generation + reader +
# R-precision teacher per generated image (~0.02), espeak + perturbation + log-mel per utterance,
# and the fixed setup per dataset (models, reader, teacher, Whisper, simulated rooms).
UNIT_COSTS = {"asr_s": 0.45, "piper_s": 0.5, "image_s": 0.02, "speech_s": 0.015, "setup_s": 20.0}


def plan(sched: dict[str, Any], methods: Sequence[str]) -> dict[str, Any]:
    """What a schedule costs: generated images, Whisper and Piper utterances and the expected minutes
    (:data:`UNIT_COSTS`); the clean transcripts come from notebook 04's cache."""
    from s2ilib.core import registry

    n_ds, n_q, conds = len(sched["datasets"]), int(sched["queries"]), list(sched["conditions"])
    asr = any(registry.method(m).query == "asr" for m in methods)
    out = {"images": n_ds * n_q * len(conds) * len(methods),
           "asr_utterances": n_ds * n_q * len([c for c in conds if c != "clean"]) if asr else 0,
           "piper_utterances": n_ds * n_q * sum(c in ENGINE_CONDITIONS for c in conds),
           "speech_utterances": n_ds * n_q * len(conds)}
    u = UNIT_COSTS
    seconds = (out["asr_utterances"] * u["asr_s"] + out["piper_utterances"] * u["piper_s"]
               + out["images"] * u["image_s"] + out["speech_utterances"] * u["speech_s"] + n_ds * u["setup_s"])
    return {**out, "expected_s": seconds, "expected_min": seconds / 60.0}


# ------------------------------------------------------------------------------------------------
# what the methods share: models loaded on first use


class _LazyTranscriber:
    """Whisper (or ``transcriber``) built on first use; its cache key is known without loading it,
    so a fully cached rerun never loads the ASR model."""

    def __init__(self, transcriber: Any = None) -> None:
        from s2ilib.evaluation.two_stage import asr_cache_key

        self._t = transcriber
        self.cache_key = asr_cache_key(transcriber)

    def transcribe(self, wave: np.ndarray) -> str:
        if self._t is None:
            from s2ilib.speech.asr import Transcriber

            self._t = Transcriber()
        return self._t.transcribe(wave)


class Models:
    """The trained encoders and generators of one dataset, the scoring context (notebook 04's
    attribute reader, the teacher) and the babble sources, each loaded on first use."""

    def __init__(self, ds, cfg, paths, methods: Sequence[str], queries, transcriber: Any = None,
                 progress: bool = False) -> None:
        from s2ilib.study.paths import device_of

        self.ds, self.cfg, self.paths, self.methods, self.queries = ds, cfg, paths, tuple(methods), queries
        self.device, self.progress = device_of(cfg), progress
        self.transcriber = _LazyTranscriber(transcriber)
        self._made: dict[Any, Any] = {}

    def _get(self, key: Any, make: Callable[[], Any]) -> Any:
        if key not in self._made:
            self._made[key] = make()
        return self._made[key]

    def encoder(self, kind: str):
        """(model, kind, tokenizer) of the trained encoder ``kind`` on the device."""
        from s2ilib.models.loading import load_trained_encoder

        return self._get(("encoder", kind), lambda: load_trained_encoder(
            self.paths.encoder(self.ds.name, kind), map_location=self.device))

    def embeddings(self, kind: str) -> dict[str, Any]:
        """The exported ``embeddings.pt`` of encoder ``kind`` (the clean utterances)."""
        from s2ilib.models.embedding import load_embeddings

        return self._get(("embeddings", kind), lambda: load_embeddings(self.paths.encoder(self.ds.name, kind)))

    def generator(self, method: str):
        from s2ilib.core import registry
        from s2ilib.evaluation.scoring import load_method_generator

        gen = registry.method(method).generator
        return self._get(("generator", gen), lambda: load_method_generator(self.paths, self.ds.name, method,
                                                                           self.device))

    def context(self):
        """The :class:`~s2ilib.evaluation.scoring.EvalContext` of notebook 04 without FID / IS."""
        return self._get("context", self._make_context)

    def _make_context(self):
        from s2ilib.evaluation.main import _default_teacher
        from s2ilib.evaluation.references import generators_bbox_crop, study_reader
        from s2ilib.evaluation.scoring import EvalContext

        ev, cfg = self.cfg.eval, self.cfg
        gens = {m: self.generator(m) for m in self.methods}
        crop = generators_bbox_crop(gens, self.ds)
        size = next(iter(gens.values())).sizes[-1]
        reader = study_reader(self.ds, self.paths, cfg, size, crop, progress=self.progress)
        return EvalContext(None, ev.fid_image_size, None, reader, _default_teacher(cfg, self.device),
                           ev.rprec_candidates, cfg.seed, progress=self.progress, device=self.device)

    def babble(self) -> list[np.ndarray]:
        """The babble talkers: :func:`babble_rows` re-synthesised."""
        from s2ilib.data.spoken import speak_utterance

        rows = lambda: babble_rows(self.ds, self.queries, self.cfg.seed)  # noqa: E731
        return self._get("babble", lambda: [speak_utterance(self.ds, r, sr=self.cfg.data.sample_rate) for r in rows()])


# ------------------------------------------------------------------------------------------------
# one (method, condition)


def speech_conditions(models: Models, kind: str, store, queries) -> torch.Tensor:
    """(N, D) embeddings of the queries' utterances in ``store`` by the trained encoder ``kind``
    (:func:`s2ilib.models.embedding.export_embeddings`, as notebook 02 exported the clean ones)."""
    from s2ilib.evaluation.queries import lookup_embeddings
    from s2ilib.models.embedding import export_embeddings

    model, _, _ = models.encoder(kind)
    emb = export_embeddings(model, kind, SimpleNamespace(name=models.ds.name, speech=store),
                            batch_size=models.cfg.encoder.batch_size, bf16=models.cfg.encoder.bf16, progress=False)
    return lookup_embeddings(emb, queries, kind)


def transcripts(models: Models, cond: str, store, queries, waves: dict[str, np.ndarray]) -> list[str]:
    """Whisper's transcripts of the queries under ``cond``, cached by the features' content and the
    ASR settings (:func:`s2ilib.evaluation.two_stage.transcribe_queries`): beside the condition's
    features, or, for ``clean``, in notebook 04's cache (the same audio, the same key)."""
    from s2ilib.evaluation.references import references_dir
    from s2ilib.evaluation.two_stage import transcribe_queries

    ds, cfg = models.ds, models.cfg
    if cond == "clean":
        return transcribe_queries(ds, queries, references_dir(models.paths, ds.name) / "transcripts_seen.csv",
                                  models.transcriber, progress=models.progress)
    pos = {str(u): k for k, u in enumerate(store.index["utt_id"])}
    source = dict(zip(queries["utt_id"].astype(str), queries["row"].astype(int)))
    utt_of = store.index["utt_id"].astype(str).tolist()

    def speak(_ds, row: int) -> np.ndarray:  # only on a cache miss; the waves of this run when there
        utt = utt_of[int(row)]
        return waves[utt] if utt in waves else condition_wave(ds, source[utt], cond, cfg.seed, cfg.data.sample_rate,
                                                               models.babble() if needs_others(cond) else ())

    q = queries.assign(row=[pos[str(u)] for u in queries["utt_id"]])
    return transcribe_queries(SimpleNamespace(speech=store), q, store.root / "transcripts.csv", models.transcriber,
                              speak=speak, progress=models.progress)


def wer_items(references: Sequence[str], hypotheses: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per utterance: word errors (substitutions + deletions + insertions, :func:`metrics.wer`
    through jiwer) and reference words, both after the main table's transcript normalisation."""
    from s2ilib.evaluation.metrics import normalize_transcript, wer

    words = np.array([len(normalize_transcript(r).split()) for r in references], dtype=np.float64)
    errors = np.array([round(wer(r, h) * n) if n else 0.0 for r, h, n in zip(references, hypotheses, words)],
                      dtype=np.float64)
    return errors, words


def wer_interval(errors: np.ndarray, words: np.ndarray, groups: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Corpus WER (sum of errors / sum of reference words) with a 95% bootstrap interval over
    ``groups`` (test images): every reference word becomes an item scored errors / words of its
    utterance, so the item mean is the corpus WER and the cluster bootstrap of
    :func:`s2ilib.evaluation.stats.bootstrap_ci` resamples whole utterances of whole images."""
    from s2ilib.evaluation import stats

    keep = words > 0
    e, w, g = errors[keep], words[keep].astype(int), np.asarray(groups)[keep]
    if not w.sum():
        return {"wer": math.nan, "wer_ci": [math.nan, math.nan], "wer_n": 0, "wer_n_words": 0, "wer_n_groups": 0}
    x = np.repeat(e / w, w)
    gx = np.repeat(g, w)
    if np.unique(gx).size < 2 and np.ptp(x) > 0:
        ci = stats.Interval(float(x.mean()), math.nan, math.nan, x.size, 1, 0.95, "none")
    else:
        ci = stats.bootstrap_ci(x, n_boot=2000, seed=seed, groups=gx)
    return {"wer": ci.estimate, "wer_ci": [ci.low, ci.high], "wer_n": int(keep.sum()), "wer_n_words": int(w.sum()),
            "wer_n_groups": int(np.unique(g).size)}


def part_key(models: Models, method: str, cond_key: dict[str, Any], qids: Sequence[str]) -> dict[str, Any]:
    """What one (method, condition) depends on: the condition's features, the queries, the seed, the
    eval config, the model files (size and mtime: a retrained model invalidates it) and the ASR."""
    import dataclasses

    from s2ilib.core import registry

    spec, p, name, cfg = registry.method(method), models.paths, models.ds.name, models.cfg
    files = [p.gan(name, spec.generator) / "generator_ema.pt", p.encoder(name, spec.encoder) / "checkpoint.pt",
             p.encoder(name, SPEECH_JUDGE) / "embeddings.pt"]
    return {"version": ROBUSTNESS_VERSION, "method": method, "condition": cond_key, "seed": cfg.seed,
            "queries": hashlib.sha256("\n".join(qids).encode()).hexdigest()[:16],
            "eval": dataclasses.asdict(cfg.eval), "bf16": [cfg.gan.bf16, cfg.encoder.bf16],
            "files": {str(f.relative_to(p.run)): file_stamp(f) for f in files},
            "asr": models.transcriber.cache_key if spec.query == "asr" else None}


def parts_dir(paths, dataset: str) -> Path:
    """Cached (method, condition) results: ``eval/<dataset>[@variant]/robustness/``."""
    return paths.eval(dataset) / "robustness"


def _cached_part(folder: Path, part: str, key: dict[str, Any]):
    from s2ilib.evaluation import items as IT

    meta, item_file = folder / f"{part}.json", folder / f"{part}.items.json"
    if not (meta.is_file() and item_file.is_file()):
        return None
    blob = json.loads(meta.read_text())
    items, stamp = IT.read_items(item_file)
    if blob.get("key") != json.loads(json.dumps(key)) or stamp != blob.get("stamp"):
        return None
    return blob["metrics"], blob["timings"], items


def _save_part(folder: Path, part: str, key: dict[str, Any], res, tim, items) -> None:
    from s2ilib.evaluation import items as IT
    from s2ilib.study.report import _nan_to_none

    stamp = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    IT.save_items(folder / f"{part}.items.json", items, key=stamp)
    blob = {"key": key, "stamp": stamp, "metrics": _nan_to_none(res), "timings": tim}
    atomic_write_text(folder / f"{part}.json", json.dumps(blob, indent=1, default=float) + "\n")


def method_conditions(models: Models, method: str, cond: str, store, waves, queries):
    """(N, D) conditions of ``method``'s generator for the queries under ``cond``, its extra per-item
    columns and the seconds of ASR: the speech encoder's embeddings of the condition's features, or
    (``asr`` methods) Whisper's transcripts encoded by the text encoder, with their word errors."""
    from s2ilib.core import registry
    from s2ilib.evaluation.two_stage import encode_texts

    spec = registry.method(method)
    if spec.query != "asr":
        return speech_conditions(models, spec.encoder, store, queries), {}, 0.0
    t0 = time.perf_counter()
    texts = transcripts(models, cond, store, queries, waves)
    asr_s = time.perf_counter() - t0
    model, _, tok = models.encoder(spec.encoder)
    refs = list(queries["text"].astype(str))
    errors, words = wer_items(refs, texts)
    extra = {"wer_errors": errors, "ref_words": words, "examples": [list(p) for p in zip(refs[:5], texts[:5])]}
    return encode_texts(model, tok, texts), extra, asr_s


def evaluate_part(models: Models, method: str, cond: str, store, waves, queries, judge: torch.Tensor,
                  cond_key: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float], dict[str, Any]]:
    """Metrics, seconds per stage and per-item scores of ``method`` under ``cond`` (cached in
    :func:`parts_dir` under :func:`part_key`): the method's conditions from the condition's speech
    (:func:`method_conditions`), its generator's images, notebook 04's reader and R-precision
    (``judge``: the clean utterances' speech_ts embeddings); WER and its interval for ASR methods."""
    from s2ilib.evaluation import items as IT
    from s2ilib.evaluation.queries import query_mentions
    from s2ilib.evaluation.scoring import generator_images_fn, score_images

    qids, cfg, part = IT.query_ids(queries), models.cfg, f"{method}__{cond}"
    key, folder = part_key(models, method, cond_key, qids), parts_dir(models.paths, models.ds.name)
    hit = _cached_part(folder, part, key)
    if hit is not None:
        return hit
    t0 = time.perf_counter()
    cond_emb, extra, asr_s = method_conditions(models, method, cond, store, waves, queries)
    condition_s = time.perf_counter() - t0
    images_fn = generator_images_fn(models.generator(method), cond_emb, cfg.seed, bf16=cfg.gan.bf16)
    labels = torch.tensor(queries["image_idx"].to_numpy(dtype=np.int64))
    res, tim, items = score_images(images_fn, len(queries), models.context(),
                                   mentions=query_mentions(models.ds, queries), judges={"r_precision": judge},
                                   image_labels=labels, query_ids=qids)
    res.update(IT.interval(items, "attr_acc_shuffled", seed=cfg.seed))
    items["utt_id"] = [str(u) for u in queries["utt_id"]]
    if extra:
        items["wer_errors"], items["ref_words"] = extra["wer_errors"], extra["ref_words"]
        res.update(wer_interval(extra["wer_errors"], extra["ref_words"], items["image_idx"], seed=cfg.seed))
        res["transcript_examples"] = extra["examples"]
    tim = {**tim, "asr": asr_s, "condition": condition_s}
    _save_part(folder, part, key, res, tim, items)
    return res, tim, items


# ------------------------------------------------------------------------------------------------
# the study of one dataset


def robustness_study(ds, cfg, paths, sched: dict[str, Any], methods: Sequence[str] = METHODS,
                     transcriber: Any = None, progress: bool = False) -> dict[str, Any]:
    """Every method under every condition of ``sched`` on one dataset.

    Returns {"cells": {method: {condition: metrics}}, "items": {method: {condition: per-item scores}},
    "conditions", "methods", "n_queries", "n_test_images", "timings": {condition: {stage: s}}}.
    Metrics per cell: ``attr_acc``, ``r_precision``, ``attr_acc_shuffled`` with ``_ci`` / ``_n`` /
    ``_n_groups``, and for the ASR method ``wer`` with its interval and ``transcript_examples``."""
    from s2ilib.evaluation.queries import lookup_embeddings

    t_all, c_all = time.perf_counter(), time.process_time()
    q = robustness_queries(ds, cfg, sched["queries"])
    models = Models(ds, cfg, paths, methods, q, transcriber=transcriber, progress=progress)
    judge = lookup_embeddings(models.embeddings(SPEECH_JUDGE), q, SPEECH_JUDGE)
    out: dict[str, Any] = {"conditions": list(sched["conditions"]), "methods": list(methods), "n_queries": len(q),
                           "n_test_images": int(q["image_idx"].nunique()), "cells": {m: {} for m in methods},
                           "items": {m: {} for m in methods}, "timings": {}}
    for cond in sched["conditions"]:
        t0, c0 = time.perf_counter(), time.process_time()
        store, waves = condition_store(ds, cfg, paths, q, cond, models.babble, progress=progress)
        tim = {"speech_s": time.perf_counter() - t0, "synthesised": len(waves)}
        cond_key = condition_key(ds, cfg, cond, list(q.drop_duplicates("utt_id")["utt_id"]))
        for m in methods:
            t1 = time.perf_counter()
            res, part_tim, items = evaluate_part(models, m, cond, store, waves, q, judge, cond_key)
            out["cells"][m][cond], out["items"][m][cond] = res, items
            tim[f"{m}_s"] = time.perf_counter() - t1
            tim[f"{m}_parts"] = part_tim
        # CPU seconds of this process (all its threads) beside the wall time: on a shared machine
        # the wall time also counts the time other jobs held the cores
        tim["cpu_s"], tim["wall_s"] = time.process_time() - c0, time.perf_counter() - t0
        out["timings"][cond] = tim
    out["timings"]["total_s"] = time.perf_counter() - t_all
    out["timings"]["total_cpu_s"] = time.process_time() - c_all
    return out
