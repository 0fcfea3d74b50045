"""The main table (paper Table II analogue): FID, KID, IS, R-precision, attribute accuracy and WER of
every method, per speech condition, from the trained encoders and generators of one dataset.

Methods (paper §IV-C) and what conditions their generator:

* ``one_stage``  -- the teacher-student speech encoder (``speech_ts``) -> its StackGAN-v2.
* ``classifier`` -- the classifier-based speech encoder (``speech_cls``) -> its StackGAN-v2.
* ``two_stage``  -- ASR (Whisper tiny.en) -> text encoder (``text_ts``) -> the text StackGAN-v2.
* ``text``       -- the ground-truth caption -> text encoder -> the text StackGAN-v2 (upper bound).

Queries (:func:`evaluation_queries`): the spoken captions of the test images (unseen classes), one
image per utterance as the authors (10 per test image), for the ``seen`` voices and the held-out
``unseen`` voices; the text method uses the ground-truth captions of the same (image, caption)
pairs as the ``seen`` queries, reported once under the condition ``groundtruth_text``. Image ``i``
of every method is drawn with the same noise, so images of one utterance are comparable side by side.

Metrics of one (method, condition), streamed chunk by chunk so a large set never sits in memory:

* FID / KID: FID Inception features of the generated images vs those of the real test images (one
  per test image, at the GAN's output resolution, resized to ``EvalConfig.fid_image_size``).
* IS: class probabilities from a head trained once per dataset on Inception features of the real
  test images (stands in for the authors' Inception fine-tuned on the test classes); its held-out
  accuracy is reported next to it (``is_head``).
* R-precision: teacher features of each generated image against its query's embedding among
  ``rprec_candidates - 1`` embeddings of captions of other images. The judge must live in the
  teacher's space: for every *speech* method (one_stage, classifier, two_stage) it is the
  ``speech_ts`` embedding of the same utterance (the classifier encoder's own output is not in
  the teacher's space), so the number says whether the image shows what was *said*; for ``text``
  it is the ``text_ts`` embedding of the caption (``r_precision_speech`` gives the speech judge too).
* Attribute accuracy: a reader trained once per dataset on real training images (at the GAN
  resolution) reads the generated image; score = share of the attributes the caption mentions that
  the image shows. Floor: the same images against the mentions of shuffled captions; ceiling: the
  reader's held-out accuracy and its score on the real test images (``reader``).
* WER of the ASR transcripts (two_stage), per condition.

Every metric carries ``n_images`` (generated) and ``n_real``; ``timings`` gives seconds per stage
(generation, Inception, teacher, reader, ASR, statistics) and seconds per 1000 images.
Results go to ``runs/<preset>/eval/<dataset>/main.json`` (cached by configuration and input files).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from s2ilib.core.io import atomic_write_text
from s2ilib.evaluation.metrics import frechet_distance

METHODS = ("one_stage", "two_stage", "classifier", "text")
# Which generator run folder serves each method (two_stage reuses the text generator) ...
METHOD_GAN = {"one_stage": "one_stage", "classifier": "classifier", "text": "text", "two_stage": "text"}
# ... and which encoder's embeddings condition it (two_stage encodes ASR transcripts with text_ts).
METHOD_ENCODER = {"one_stage": "speech_ts", "classifier": "speech_cls", "text": "text_ts", "two_stage": "text_ts"}
SPEECH_CONDITIONS = ("seen", "unseen")
TEXT_CONDITION = "groundtruth_text"
METHOD_CONDITIONS = {"one_stage": SPEECH_CONDITIONS, "classifier": SPEECH_CONDITIONS,
                     "two_stage": SPEECH_CONDITIONS, "text": (TEXT_CONDITION,)}
READER_FILE = "attribute_reader.pt"
EVAL_NOTEBOOK = "04_baselines"  # the notebook that trains the reader (named in CLI errors)
SHUFFLE_REPEATS = 5
CACHE_VERSION = 1


class EvaluationError(ValueError):
    """An input of the evaluation (embeddings, generator, dataset) is missing or inconsistent."""


# ------------------------------------------------------------------------------------------------
# queries


def evaluation_queries(ds, condition: str, max_images: int = 0, seed: int = 0,
                       images_per_caption: int = 1, captions_per_image: int = 0):
    """The test utterances evaluated for ``condition``: a DataFrame, one row per image to generate.

    ``condition``: ``seen`` / ``unseen`` (store rows of test images spoken by that kind of voice;
    unseen exists only for a fraction of the test images) or ``groundtruth_text`` (the same
    (image, caption) pairs as ``seen``). ``max_images`` > 0 keeps that many test images, the first
    ones of one seeded permutation of all test images that have this condition, so the seen and
    unseen sets overlap as much as possible. Columns: ``row`` (store row), ``utt_id``,
    ``image_idx``, ``caption_idx``, ``text``, ``voice``, ``condition``; rows repeat
    ``images_per_caption`` times (consecutively). ``captions_per_image`` > 0 keeps the captions
    with index below it (captions are drawn at random per image, so this is an unbiased subset).
    """
    if condition not in (*SPEECH_CONDITIONS, TEXT_CONDITION):
        raise EvaluationError(f"unknown condition {condition!r}; use seen, unseen or {TEXT_CONDITION}")
    store = ds.speech
    if store is None:
        raise EvaluationError(f"dataset {ds.name!r} ({ds.root}) has no speech feature store; run notebook 01")
    test = np.array(ds.split("test"), dtype=np.int64)
    store_cond = "seen" if condition == TEXT_CONDITION else condition
    idx = store.index
    rows = idx[(idx["condition"] == store_cond) & idx["image_idx"].isin(test)]
    perm = test[np.random.default_rng([int(seed), 5]).permutation(len(test))]
    present = set(rows["image_idx"].astype(int))
    chosen = [int(i) for i in perm if int(i) in present]
    if max_images and max_images > 0:
        chosen = chosen[:max_images]
    keep = rows[rows["image_idx"].isin(chosen)]
    if captions_per_image and captions_per_image > 0:
        keep = keep[keep["caption_idx"] < captions_per_image]
    keep = keep.sort_values(["image_idx", "caption_idx"], kind="stable")
    out = keep.assign(row=keep.index.astype(np.int64))[["row", "utt_id", "image_idx", "caption_idx", "text", "voice"]]
    out = out.assign(condition=condition)
    if images_per_caption > 1:
        out = out.loc[out.index.repeat(images_per_caption)]
    return out.reset_index(drop=True)


def query_mentions(ds, queries) -> list[dict[str, str]]:
    """Attributes each query's caption mentions (empty dicts for datasets without attributes)."""
    out = []
    for i, c in zip(queries["image_idx"], queries["caption_idx"]):
        ca = ds.images[int(i)].caption_attributes
        out.append(dict(ca[int(c)]) if int(c) < len(ca) else {})
    return out


def lookup_embeddings(emb: dict[str, Any], queries, kind: str) -> torch.Tensor:
    """Rows of an ``embeddings.pt`` dict for the queries: (N, D) float32.

    Speech kinds match on ``utt_id``; ``text_ts`` on (image_idx, caption_idx).
    """
    if kind == "text_ts":
        pos = {(int(i), int(c)): k for k, (i, c) in enumerate(zip(emb["image_idx"].tolist(), emb["caption_idx"].tolist()))}
        keys = list(zip(queries["image_idx"].astype(int), queries["caption_idx"].astype(int)))
    else:
        pos = {str(u): k for k, u in enumerate(emb["utt_id"])}
        keys = [str(u) for u in queries["utt_id"]]
    missing = [k for k in keys if k not in pos]
    if missing:
        raise EvaluationError(f"{kind} embeddings lack {len(missing)} query items (e.g. {missing[0]}); "
                              "the encoder was exported from another dataset build: retrain it (notebook 02)")
    return emb["emb"][torch.tensor([pos[k] for k in keys], dtype=torch.long)].float()


# ------------------------------------------------------------------------------------------------
# two-stage: ASR transcripts (cached) and text encoding


TRANSCRIPT_COLUMNS = ("utt_id", "reference", "transcript", "audio_key", "asr_key")


def _read_transcripts(path: Path) -> dict[str, dict[str, str]]:
    """utt_id -> {"transcript", "audio_key", "asr_key"} of a transcript cache (older caches lack the keys)."""
    import pandas as pd

    if not path.is_file():
        return {}
    df = pd.read_csv(path, keep_default_na=False, dtype=str)
    if "utt_id" not in df or "transcript" not in df:
        raise EvaluationError(f"{path}: not a transcript cache (columns {list(df.columns)}); delete it to redo the ASR")
    get = lambda col: df[col] if col in df else [""] * len(df)
    return {u: {"transcript": t, "audio_key": a, "asr_key": k}
            for u, t, a, k in zip(df["utt_id"], df["transcript"], get("audio_key"), get("asr_key"))}


def _write_transcripts(path: Path, cache: dict[str, dict[str, str]], refs: dict[str, str]) -> None:
    import pandas as pd

    df = pd.DataFrame({"utt_id": list(cache), "reference": [refs.get(u, "") for u in cache],
                       **{c: [e[c] for e in cache.values()] for c in TRANSCRIPT_COLUMNS[2:]}})
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, df.to_csv(index=False))


def asr_cache_key(transcriber: Any = None) -> str:
    """Model and decoding settings of ``transcriber`` (default: a default Whisper Transcriber)."""
    if transcriber is None:
        from s2ilib.speech.asr import default_cache_key

        return default_cache_key()
    key = getattr(transcriber, "cache_key", None)
    return str(key) if key else f"{type(transcriber).__module__}.{type(transcriber).__qualname__}"


def utterance_audio_key(ds, row: int, wave: np.ndarray | None = None) -> str:
    """Content hash of utterance ``row``: its stored log-mel features when the dataset has a speech
    store (no re-synthesis needed), else the waveform ``wave``."""
    import hashlib

    speech = getattr(ds, "speech", None)
    if speech is not None and hasattr(speech, "get"):
        feat = np.ascontiguousarray(speech.get(int(row)))
        return "feat:" + hashlib.sha256(str(feat.shape).encode() + feat.tobytes()).hexdigest()[:24]
    if wave is None:
        raise ValueError("utterance_audio_key: the dataset has no speech store; pass the wave")
    from s2ilib.speech.asr import wave_hash

    return "wave:" + wave_hash(wave)


def transcribe_queries(ds, queries, cache_path: str | Path, transcriber: Any = None,
                       speak: Callable[[Any, int], np.ndarray] | None = None, progress: bool = True,
                       save_every: int = 50) -> list[str]:
    """ASR transcripts of the queries' utterances, cached in a CSV (utt_id, reference, transcript,
    audio_key, asr_key).

    The waves are re-synthesised deterministically (``speak(ds, store_row)``, default
    :func:`s2ilib.data.spoken.speak_utterance`) since the store keeps only features. ``transcriber``
    needs ``transcribe(wave (T,) float32 16 kHz) -> str`` (default: a Whisper
    :class:`s2ilib.speech.asr.Transcriber`, built only if something is missing from the cache). A cached
    transcript is reused only for the same audio content (:func:`utterance_audio_key`) and the same
    ASR model and decoding settings (:func:`asr_cache_key`), so identical runs give identical
    transcripts. The cache is saved every ``save_every`` utterances, so an interrupted run resumes.
    """
    from tqdm.auto import tqdm

    cache_path = Path(cache_path)
    cache = _read_transcripts(cache_path)
    refs = dict(zip(queries["utt_id"].astype(str), queries["text"].astype(str)))
    asr_key = asr_cache_key(transcriber)
    has_store = getattr(getattr(ds, "speech", None), "get", None) is not None
    if speak is None:
        from s2ilib.data.spoken import speak_utterance as speak
    todo, waves = [], {}
    for utt, row in dict.fromkeys((str(u), int(r)) for u, r in zip(queries["utt_id"], queries["row"])):
        # a repeated query (images_per_caption > 1) is transcribed once
        if not has_store:
            waves[utt] = speak(ds, row)
        audio = utterance_audio_key(ds, row, waves.get(utt))
        hit = cache.get(utt)
        if hit is None or hit["audio_key"] != audio or hit["asr_key"] != asr_key:
            todo.append((utt, row, audio))
    if todo:
        if transcriber is None:
            from s2ilib.speech.asr import Transcriber

            transcriber = Transcriber()
        for k, (utt, row, audio) in enumerate(tqdm(todo, desc="asr", unit="utt", disable=not progress)):
            wave = waves.pop(utt) if utt in waves else speak(ds, row)
            cache[utt] = {"transcript": transcriber.transcribe(wave), "audio_key": audio, "asr_key": asr_key}
            if save_every and (k + 1) % save_every == 0:
                _write_transcripts(cache_path, cache, refs)
        _write_transcripts(cache_path, cache, refs)
    return [cache[str(u)]["transcript"] for u in queries["utt_id"]]


def encode_texts(model: torch.nn.Module, tokenizer: Any, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """Texts -> (N, D) float32 with a trained ``text_ts`` encoder and its tokenizer."""
    model.eval()
    dev = next(model.parameters()).device
    out = []
    for s in range(0, len(texts), batch_size):
        tokens, lengths = tokenizer.batch(list(texts[s:s + batch_size]))
        out.append(model(tokens.to(dev), lengths).float().cpu())
    if not out:
        return torch.zeros(0, getattr(model, "out_dim", 0))
    return torch.cat(out)


# ------------------------------------------------------------------------------------------------
# shared per-dataset references: real features, IS head, attribute reader


def _keys_hash(ds, indices: Iterable[int]) -> str:
    h = hashlib.sha256()
    for i in indices:
        h.update(f"{ds.images[int(i)].key}\n".encode())
    return h.hexdigest()[:16]


def real_test_features(ds, paths, size: int, fid_size: int, progress: bool = True, device: str = "cpu",
                       load_images: Callable | None = None, bbox_crop: bool = False) -> torch.Tensor:
    """FID Inception features (n_test, 2048) of the real test images at ``size`` px, cached in eval/;
    ``bbox_crop``: of their bounding-box crops (the view the generators were trained on)."""
    from s2ilib.evaluation import metrics

    load_images = load_images or functools.partial(_load_images, bbox_crop=bbox_crop)
    test = ds.split("test")
    path = metrics.real_features_path(paths.eval(ds.name), ds.name + _view_suffix(bbox_crop), "test", size, fid_size)
    meta = {"n_images": len(test), "keys_hash": _keys_hash(ds, test), "version": CACHE_VERSION,
            "bbox_crop": bbox_crop}
    compute = lambda: metrics.inception_features(_chunks(lambda s, e: load_images(ds, test[s:e], size), len(test), 64),
                                                 image_size=fid_size, progress=progress, device=device)
    return metrics.cached_real_features(path, compute, meta)


def _load_images(ds, indices, size: int, bbox_crop: bool = False) -> torch.Tensor:
    from s2ilib.data.images import load_images_uint8

    return load_images_uint8(ds, list(indices), size, bbox_crop=bbox_crop)


def _view_suffix(bbox_crop: bool) -> str:
    """File-name tag of the image view, so cropped and whole-image references never share a cache."""
    return "_bboxcrop" if bbox_crop else ""


def generators_bbox_crop(generators: dict[str, Any], ds: Any = None) -> bool:
    """Whether the generators were trained on bounding-box crops; real references must use the same
    view. Generators saved before the option existed were uncropped. With ``ds``, False when the
    dataset has no boxes (its images were used whole either way)."""
    views = {m: bool(getattr(G, "train_config", {}).get("bbox_crop", False)) for m, G in generators.items()}
    if len(set(views.values())) > 1:
        raise EvaluationError(f"generators were trained on different image views (gan.bbox_crop): {views}; "
                              f"retrain them with one setting")
    crop = next(iter(views.values()), False)
    return crop and (ds is None or any(r.bbox is not None for r in ds.images))


def _chunks(fn: Callable[[int, int], torch.Tensor], n: int, chunk: int) -> Iterable[torch.Tensor]:
    for s in range(0, n, chunk):
        yield fn(s, min(s + chunk, n))


def is_head_for(ds, paths, real_feats: torch.Tensor, cfg, size: int, fid_size: int, seed: int,
                bbox_crop: bool = False):
    """The IS classifier of the dataset's test classes (trained once, saved in eval/; reused if its
    epochs, seed, image count and image view match)."""
    from s2ilib.evaluation import metrics

    labels = torch.tensor([ds.images[i].class_index for i in ds.split("test")])
    path = paths.eval(ds.name) / f"is_head_{size}px_inception{fid_size}{_view_suffix(bbox_crop)}.pt"
    if path.is_file():
        head = metrics.load_is_head(path)
        r = head.report
        if (r.get("epochs"), r.get("seed"), r.get("n_train", 0) + r.get("n_holdout", 0),
                r.get("bbox_crop", False)) == (cfg.is_head_epochs, seed, len(labels), bbox_crop):
            return head
    head = metrics.train_is_head(real_feats, labels, epochs=cfg.is_head_epochs, seed=seed)
    head.report["bbox_crop"] = bbox_crop
    metrics.save_is_head(head, path)
    return head


def reader_for(ds, paths, size: int, epochs: int, seed: int, progress: bool = True,
               load_images: Callable | None = None, bbox_crop: bool = False):
    """The attribute reader of the dataset (``eval/<name>/attribute_reader.pt``), trained once on the
    real TRAINING images at ``size`` px (bounding-box crops with ``bbox_crop``) with their
    ground-truth attributes; None without attributes."""
    from s2ilib.evaluation import attribute_reader as AR

    if not ds.vocabulary:
        return None
    load_images = load_images or functools.partial(_load_images, bbox_crop=bbox_crop)
    train = ds.split("train")
    path = paths.eval(ds.name) / READER_FILE
    if path.is_file():
        reader = AR.load_attribute_reader(path)
        r = reader.report
        if (reader.image_size, r.get("epochs"), r.get("seed"), r.get("n_train", 0) + r.get("n_holdout", 0),
                r.get("bbox_crop", False)) == (size, epochs, seed, len(train), bbox_crop):
            return reader
    images = load_images(ds, train, size)
    reader, _ = AR.train_attribute_reader(images, [ds.images[i].attributes for i in train], ds.vocabulary,
                                          epochs=epochs, seed=seed, out_path=path, progress=progress,
                                          image_size=size, extra_report={"bbox_crop": bbox_crop})
    return reader


def reader_reference(ds, reader, size: int, seed: int, load_images: Callable | None = None,
                     bbox_crop: bool = False) -> dict[str, Any]:
    """Ceilings of the attribute metric: the reader's held-out accuracy (training classes) and its
    mention accuracy on the real test images against each of their captions (+ shuffled floor)."""
    from s2ilib.evaluation import attribute_reader as AR

    load_images = load_images or functools.partial(_load_images, bbox_crop=bbox_crop)
    test = ds.split("test")
    read = AR.read_attributes(reader, load_images(ds, test, size))
    reads, mentions = [], []
    for r, i in zip(read, test):
        for m in ds.images[i].caption_attributes:
            reads.append(r)
            mentions.append(m)
    real = AR.mention_accuracy(reads, mentions)
    floor = [AR.mention_accuracy(reads, AR.shuffled_mentions(mentions, seed + k))["accuracy"]
             for k in range(SHUFFLE_REPEATS)] if len(mentions) > 1 else [float("nan")]
    rep = reader.report
    return {"holdout_mean": rep.get("holdout_mean"), "holdout_accuracy": rep.get("holdout_accuracy"),
            "chance_majority": rep.get("chance_majority"), "n_train": rep.get("n_train"),
            "n_holdout": rep.get("n_holdout"), "image_size": reader.image_size,
            "real_test_attr_acc": real["accuracy"], "real_test_attr_acc_shuffled": float(np.mean(floor)),
            "real_test_n_mentions": real["n_mentions"], "n_real": len(test)}


# ------------------------------------------------------------------------------------------------
# one (method, condition)


@dataclass
class EvalContext:
    """What every (method, condition) of one dataset is scored against."""

    real_feats: torch.Tensor | None  # (n_real, 2048) Inception features of the real test images (None: no FID/KID/IS)
    fid_size: int
    is_head: Any = None
    reader: Any = None
    teacher: Any = None  # object with features(uint8 (B, 3, H, W)) -> (B, D), or None
    rprec_candidates: int = 100
    seed: int = 0
    # Images per chunk. The FID Inception TorchScript costs ~4 s per call on 2 CPU cores whatever
    # the batch (measured), so chunks must be large.
    batch_size: int = 128
    progress: bool = True
    device: str = "cpu"


def _teacher_centre_view(teacher, images: torch.Tensor) -> torch.Tensor:
    """Teacher features of the centre view (the view the encoders were validated against)."""
    from s2ilib.models.teacher import image_views

    size = getattr(teacher, "input_size", None)
    if size is None:  # a plain feature function
        return teacher.features(images) if hasattr(teacher, "features") else teacher(images)
    views = torch.stack([image_views(img, 1, size)[0] for img in images])
    return teacher.features(views).float().cpu()


def _timed(timings: dict[str, float], key: str, fn: Callable, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    timings[key] = timings.get(key, 0.0) + time.perf_counter() - t0
    return out


def _candidates(labels: torch.Tensor, wanted: int) -> int:
    """The largest n_candidates <= wanted that every query can fill with rows of other images."""
    _, counts = labels.unique(return_counts=True)
    return int(min(wanted, len(labels) - int(counts.max()) + 1))


def _rprec(image_feats: torch.Tensor, judge: torch.Tensor, labels: torch.Tensor, ctx: EvalContext) -> dict[str, Any]:
    from s2ilib.evaluation.metrics import r_precision

    k = _candidates(labels, ctx.rprec_candidates)
    if k < 2:
        return {"value": float("nan"), "std": float("nan"), "candidates": k}
    mean, std = r_precision(image_feats, judge, labels=labels, n_candidates=k, seed=ctx.seed)
    return {"value": mean, "std": std, "candidates": k}


def evaluate_images(images_fn: Callable[[int, int], torch.Tensor], n: int, ctx: EvalContext,
                    mentions: list[dict[str, str]] | None = None, judges: dict[str, torch.Tensor] | None = None,
                    image_labels: torch.Tensor | None = None) -> tuple[dict[str, Any], dict[str, float]]:
    """Score ``n`` images produced chunk by chunk by ``images_fn(start, stop) -> uint8 (b, 3, S, S)``.

    ``mentions``: per image the attributes its caption mentions (attribute accuracy);
    ``judges``: {metric name: (n, D) embeddings in the teacher's space} for R-precision, e.g.
    ``{"r_precision": speech_ts_emb}``; ``image_labels`` (n,): the test image of each query
    (its other captions are not drawn as mismatches). Returns (metrics, seconds per stage).
    """
    from tqdm.auto import tqdm

    from s2ilib.evaluation import attribute_reader as AR
    from s2ilib.evaluation import metrics

    if n < 2:
        raise EvaluationError(f"evaluate_images: need at least 2 images, got {n}")
    timings: dict[str, float] = {}
    incep, teach, read = [], [], []
    with tqdm(total=n, desc="evaluate", unit="img", disable=not ctx.progress) as bar:
        for s in range(0, n, ctx.batch_size):
            e = min(s + ctx.batch_size, n)
            imgs = _timed(timings, "generate", images_fn, s, e)
            if imgs.dtype != torch.uint8 or len(imgs) != e - s:
                raise EvaluationError(f"images_fn({s}, {e}) must return {e - s} uint8 images, got "
                                      f"{imgs.dtype} {tuple(imgs.shape)}")
            if ctx.real_feats is not None:
                incep.append(_timed(timings, "inception", metrics.inception_features, imgs, batch_size=len(imgs),
                                    progress=False, image_size=ctx.fid_size, device=ctx.device))
            if ctx.teacher is not None and judges:
                teach.append(_timed(timings, "teacher", _teacher_centre_view, ctx.teacher, imgs))
            if ctx.reader is not None and mentions is not None:
                read += _timed(timings, "reader", AR.read_attributes, ctx.reader, imgs)
            bar.update(e - s)
    out: dict[str, Any] = {"n_images": n, "n_real": len(ctx.real_feats) if ctx.real_feats is not None else 0}
    if incep:
        fake = torch.cat(incep)
        out["fid"] = _timed(timings, "fid", frechet_distance, ctx.real_feats, fake)
        out["kid"], out["kid_std"] = _timed(timings, "kid", metrics.kid_from_features, ctx.real_feats, fake,
                                            seed=ctx.seed)
    if incep and ctx.is_head is not None:
        probs = metrics.is_probabilities(ctx.is_head, fake)
        out["is"], out["is_std"] = _timed(timings, "is", metrics.inception_score, probs,
                                          splits=max(1, min(10, n // 2)), seed=ctx.seed)
    if teach:
        feats = torch.cat(teach)
        labels = image_labels if image_labels is not None else torch.arange(n)
        for name, judge in judges.items():
            r = _timed(timings, "r_precision", _rprec, feats, judge, labels, ctx)
            out[name], out[f"{name}_std"] = r["value"], r["std"]
            out["r_precision_candidates"] = r["candidates"]
    if read:
        acc = AR.mention_accuracy(read, mentions)
        floor = [AR.mention_accuracy(read, AR.shuffled_mentions(mentions, ctx.seed + k))["accuracy"]
                 for k in range(SHUFFLE_REPEATS)]
        out.update(attr_acc=acc["accuracy"], attr_acc_shuffled=float(np.mean(floor)),
                   attr_acc_shuffled_std=float(np.std(floor)), n_mentions=acc["n_mentions"],
                   attr_per_attribute=acc["per_attribute"])
    return out, timings


def generator_images_fn(generator, cond: torch.Tensor, seed: int, bf16: bool = True) -> Callable[[int, int], torch.Tensor]:
    """``images_fn`` of :func:`evaluate_images` for a generator: image i = G(z_i, cond[i]); the
    noise of a chunk depends only on (seed, chunk start), so every method draws the same z_i."""
    from s2ilib.models.loading import generate

    dev = next(generator.parameters()).device

    def images(s: int, e: int) -> torch.Tensor:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            return generate(generator, cond[s:e], seed=seed * 1_000_003 + s, batch_size=max(1, e - s))

    return images


# ------------------------------------------------------------------------------------------------
# the whole table of one dataset


def _file_stamp(path: Path) -> list[Any]:
    st = path.stat() if path.is_file() else None
    return [st.st_size, st.st_mtime_ns] if st else None


def _inputs(paths, name: str, methods: Sequence[str]) -> dict[str, Any]:
    """Input files the results depend on, with size and mtime (a retrained model invalidates the cache)."""
    files = {}
    for m in methods:
        gan = paths.gan(name, METHOD_GAN[m]) / "generator_ema.pt"
        files[str(gan)] = _file_stamp(gan)
        for kind in {METHOD_ENCODER[m], "speech_ts"}:
            for f in ("embeddings.pt", "checkpoint.pt"):
                p = paths.encoder(name, kind) / f
                files[str(p)] = _file_stamp(p)
    return files


def evaluation_key(ds, cfg, paths, methods: Sequence[str]) -> dict[str, Any]:
    """What main.json depends on: eval / GAN / encoder configs, seed, methods, dataset, input files."""
    return {"version": CACHE_VERSION, "seed": cfg.seed, "methods": list(methods), "dataset": ds.name,
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


def _default_teacher(cfg):
    from s2ilib.models.teacher import Teacher

    e = cfg.encoder
    return Teacher(e.teacher, e.teacher_weights, e.teacher_image_size, bf16=e.bf16,
                   device="cuda" if torch.cuda.is_available() else "cpu")


def _embedding_cache(paths, name: str) -> Callable[[str], dict[str, Any]]:
    """``kind -> embeddings.pt`` of the dataset's encoders, each file read once."""
    from s2ilib.models.embedding import load_embeddings

    embs: dict[str, dict] = {}

    def get(kind: str) -> dict[str, Any]:
        if kind not in embs:
            embs[kind] = load_embeddings(paths.encoder(name, kind))
        return embs[kind]

    return get


def _load_gen(paths, name: str, method: str, device: str):
    from s2ilib.models.loading import load_generator

    path = paths.gan(name, METHOD_GAN[method]) / "generator_ema.pt"
    if not path.is_file():
        raise EvaluationError(f"{path}: generator {METHOD_GAN[method]!r} not trained; run notebook 03 at this preset")
    return load_generator(path, device=device)


def _conditions_for(ds, method: str, queries, paths, cfg, emb_cache, asr, progress) -> tuple[torch.Tensor, dict]:
    """Condition embeddings (N, D) of one method for the queries, plus extras (transcripts, WER)."""
    from s2ilib.evaluation.metrics import wer

    name = ds.name
    if method in ("one_stage", "classifier", "text"):
        kind = METHOD_ENCODER[method]
        return lookup_embeddings(emb_cache(kind), queries, kind), {}
    # two_stage: ASR -> text encoder
    from s2ilib.models.loading import load_trained_encoder

    cond = str(queries["condition"].iloc[0])
    t0 = time.perf_counter()
    texts = transcribe_queries(ds, queries, paths.eval(name) / f"transcripts_{cond}.csv",
                               transcriber=asr.get("transcriber"), speak=asr.get("speak"), progress=progress)
    asr_s = time.perf_counter() - t0
    model, _, tok = load_trained_encoder(paths.encoder(name, "text_ts"))
    t1 = time.perf_counter()
    emb = encode_texts(model, tok, texts)
    return emb, {"wer": wer(list(queries["text"].astype(str)), texts), "timings": {
        "asr": asr_s, "text_encode": time.perf_counter() - t1}}


def run_main_evaluation(ds, cfg, paths, methods: Sequence[str] = METHODS, progress: bool = True,
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
    interrupted run resumes. ``force`` recomputes.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise EvaluationError(f"unknown methods {unknown}; choose from {METHODS}")
    name, ev = ds.name, cfg.eval
    out_dir = paths.eval(name)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    gens = {m: _load_gen(paths, name, m, device) for m in methods}
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
    real = real_test_features(ds, paths, size, ev.fid_image_size, progress=progress, device=device, bbox_crop=crop)
    head = is_head_for(ds, paths, real, ev, size, ev.fid_image_size, cfg.seed, bbox_crop=crop)
    timings["real_features_and_is_head_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    reader = reader_for(ds, paths, size, ev.reader_epochs, cfg.seed, progress=progress, bbox_crop=crop)
    reader_ref = reader_reference(ds, reader, size, cfg.seed, bbox_crop=crop) if reader is not None else None
    timings["reader_s"] = time.perf_counter() - t0
    teacher = teacher if teacher is not None else _default_teacher(cfg)
    ctx = EvalContext(real, ev.fid_image_size, head, reader, teacher, ev.rprec_candidates, cfg.seed,
                      progress=progress, device=device)
    emb_cache = _embedding_cache(paths, name)
    asr = {"transcriber": transcriber, "speak": speak}

    results: dict[str, Any] = {m: {} for m in methods}
    wers: dict[str, float] = {}
    per_part: dict[str, Any] = {}
    query_sizes: dict[str, Any] = {}
    for method in methods:
        for cond in METHOD_CONDITIONS[method]:
            q = evaluation_queries(ds, cond, ev.max_eval_images, cfg.seed, ev.images_per_caption,
                                     ev.captions_per_image)
            query_sizes[cond] = {"n_queries": len(q), "n_test_images": int(q["image_idx"].nunique())}
            part_key = f"{method}/{cond}"
            if part_key in parts:
                res, tim = parts[part_key]["metrics"], parts[part_key]["timings"]
            elif len(q) < 2:
                res, tim = {"n_images": len(q), "n_real": len(real), "skipped": "fewer than 2 queries"}, {}
            else:
                res, tim = _evaluate_part(ds, method, q, paths, cfg, ctx, gens[method], emb_cache, asr, progress)
                parts[part_key] = {"metrics": _jsonable(res), "timings": tim}
                atomic_write_text(parts_path, json.dumps({"key": key, "parts": parts}, indent=1) + "\n")
            results[method][cond] = res
            per_part[part_key] = tim
            if "wer" in res:
                wers[cond] = res["wer"]
    out = {**results, "reader": reader_ref, "is_head": dict(head.report), "asr": {"wer": wers, "model": ev.asr_model},
           "queries": query_sizes, "image_size": size, "fid_image_size": ev.fid_image_size, "bbox_crop": crop,
           "timings": {**timings, "parts": per_part, "per_1000_images": per_1000_images(per_part, results),
                       "total_s": time.perf_counter() - t_start},
           "key": key}
    out = _jsonable(out)
    atomic_write_text(main_path, json.dumps(out, indent=1) + "\n")
    return out


def _evaluate_part(ds, method, q, paths, cfg, ctx, generator, emb_cache, asr, progress):
    """Metrics and timings of one (method, condition)."""
    cond_emb, extra = _conditions_for(ds, method, q, paths, cfg, emb_cache, asr, progress)
    judges = {}
    if method == "text":
        judges["r_precision"] = lookup_embeddings(emb_cache("text_ts"), q, "text_ts")
        # groundtruth_text queries are the seen utterances' (image, caption) pairs: the speech judge
        # of the same utterances makes the text upper bound comparable with the speech methods
        judges["r_precision_speech"] = lookup_embeddings(emb_cache("speech_ts"), q, "speech_ts")
    else:
        judges["r_precision"] = lookup_embeddings(emb_cache("speech_ts"), q, "speech_ts")
    images_fn = generator_images_fn(generator, cond_emb, cfg.seed, bf16=cfg.gan.bf16)
    labels = torch.tensor(q["image_idx"].to_numpy(dtype=np.int64))
    res, tim = evaluate_images(images_fn, len(q), ctx, mentions=query_mentions(ds, q), judges=judges,
                               image_labels=labels)
    if "wer" in extra:
        res["wer"] = extra["wer"]
        res["n_utterances_asr"] = int(q["utt_id"].nunique())
        tim.update(extra["timings"])
    return res, tim


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


# ------------------------------------------------------------------------------------------------
# tables


SCALAR_METRICS = ("fid", "kid", "is", "r_precision", "r_precision_speech", "attr_acc", "attr_acc_shuffled", "wer")


def main_table_long(results_by_dataset: dict[str, dict[str, Any]]):
    """{dataset: run_main_evaluation result} -> long DataFrame
    (dataset, method, condition, metric, value, n_images); one row per scalar metric, plus the
    references: method ``real`` (reader on real test images, condition ``real_test``) and the
    reader / IS-head held-out accuracies."""
    import pandas as pd

    rows = []
    for dataset, res in results_by_dataset.items():
        for method in METHODS:
            for cond, m in (res.get(method) or {}).items():
                for metric, value in m.items():
                    if metric in ("n_images", "n_real") or not _is_number(value):
                        continue
                    rows.append((dataset, method, cond, metric, float(value), m.get("n_images")))
        ref = res.get("reader") or {}
        if ref:
            for metric, key in (("attr_acc", "real_test_attr_acc"), ("attr_acc_shuffled", "real_test_attr_acc_shuffled"),
                                ("reader_holdout_acc", "holdout_mean")):
                if _is_number(ref.get(key)):
                    rows.append((dataset, "real", "real_test", metric, float(ref[key]), ref.get("n_real")))
        head = res.get("is_head") or {}
        if _is_number(head.get("holdout_accuracy")):
            rows.append((dataset, "real", "real_test", "is_head_holdout_acc", float(head["holdout_accuracy"]),
                         head.get("n_holdout")))
    return pd.DataFrame(rows, columns=["dataset", "method", "condition", "metric", "value", "n_images"])


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool)


def main_table_wide(df_long, metrics: Sequence[str] | None = None):
    """Long table -> one row per (dataset, method, condition), one column per metric (+ n_images),
    methods in the paper's order."""
    import pandas as pd

    df = df_long if metrics is None else df_long[df_long["metric"].isin(metrics)]
    wide = df.pivot_table(index=["dataset", "method", "condition"], columns="metric", values="value", aggfunc="first")
    n = df.groupby(["dataset", "method", "condition"])["n_images"].max()
    wide.insert(0, "n_images", n)
    order = list(metrics) if metrics else [m for m in SCALAR_METRICS if m in wide.columns]
    rest = [c for c in wide.columns if c not in order and c != "n_images"]
    wide = wide[["n_images"] + [c for c in order if c in wide.columns] + sorted(rest)]
    rank = {m: k for k, m in enumerate((*METHODS, "real"))}
    wide = wide.reset_index()
    wide["_r"] = wide["method"].map(lambda m: rank.get(m, 99))
    wide = wide.sort_values(["dataset", "_r", "condition"]).drop(columns="_r")
    wide.columns.name = None
    return wide.set_index(["dataset", "method", "condition"])


def to_markdown(df, floatfmt: str = ".3f") -> str:
    """A DataFrame as a GitHub Markdown table (index included), without ``tabulate``."""
    flat = df.reset_index() if any(n is not None for n in df.index.names) else df

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "" if math.isnan(v) else format(v, floatfmt)
        return str(v)

    header = [str(c) for c in flat.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in flat.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def write_tables(df_long, out_dir: str | Path) -> dict[str, Path]:
    """Write main_table_long.csv, main_table.csv (wide) and main_table.md (wide) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    wide = main_table_wide(df_long)
    paths = {"long_csv": out / "main_table_long.csv", "csv": out / "main_table.csv", "md": out / "main_table.md"}
    atomic_write_text(paths["long_csv"], df_long.to_csv(index=False))
    atomic_write_text(paths["csv"], wide.to_csv())
    atomic_write_text(paths["md"], to_markdown(wide))
    return paths


# ------------------------------------------------------------------------------------------------
# side-by-side examples


def example_rows(ds, paths, methods: Sequence[str] = METHODS, n: int = 6, seed: int = 0, condition: str = "seen",
                 transcriber: Any = None, speak: Callable | None = None, device: str = "cpu") -> list[dict[str, Any]]:
    """For ``n`` test utterances (distinct test images), the image of every method for the same
    utterance and the same noise: [{"utt_id", "image_idx", "text", "voice", "transcript" (two_stage),
    "real": uint8 (3, S, S), "images": {method: uint8 (3, S, S)}}]. Transcripts come from the
    evaluation's cache when present."""
    from s2ilib.models.loading import load_trained_encoder

    q = evaluation_queries(ds, condition, 0, seed)
    first = q.groupby("image_idx", sort=False).head(1)  # one utterance per test image
    pick = np.random.default_rng([seed, 9]).permutation(len(first))[:n]
    q = first.iloc[np.sort(pick)].reset_index(drop=True)
    emb_cache = _embedding_cache(paths, ds.name)
    rows = [{"utt_id": str(r.utt_id), "image_idx": int(r.image_idx), "text": str(r.text), "voice": str(r.voice),
             "images": {}} for r in q.itertuples()]
    size, gens = None, {}
    for method in methods:
        G = gens[method] = _load_gen(paths, ds.name, method, device)
        size = G.sizes[-1]
        if method == "two_stage":
            texts = transcribe_queries(ds, q, paths.eval(ds.name) / f"transcripts_{condition}.csv",
                                       transcriber=transcriber, speak=speak, progress=False)
            model, _, tok = load_trained_encoder(paths.encoder(ds.name, "text_ts"))
            cond = encode_texts(model, tok, texts)
            for r, t in zip(rows, texts):
                r["transcript"] = t
        else:
            kind = METHOD_ENCODER[method]
            cond = lookup_embeddings(emb_cache(kind), q, kind)
        images = generator_images_fn(G, cond, seed)(0, len(q))
        for r, img in zip(rows, images):
            r["images"][method] = img
    if size is not None:
        real = _load_images(ds, q["image_idx"].tolist(), size, bbox_crop=generators_bbox_crop(gens, ds))
        for r, img in zip(rows, real):
            r["real"] = img
    return rows


# ------------------------------------------------------------------------------------------------
# CLI: s2i read-attributes


def reader_path(run_root: str | Path, preset: str, dataset: str) -> Path:
    """Where the evaluation stage saves a dataset's attribute reader."""
    return Path(run_root) / preset / "eval" / dataset / READER_FILE


def cmd_read_attributes(args) -> int:
    import sys

    from s2ilib.evaluation import attribute_reader as AR
    from s2ilib.models.teacher import load_image_uint8

    path = reader_path(args.run_root, args.preset, args.dataset)
    if not path.is_file():
        print(f"s2i read-attributes: {path}: no trained attribute reader for dataset {args.dataset!r} at preset "
              f"{args.preset!r}; run the evaluation notebook {EVAL_NOTEBOOK} first "
              f"(s2i study --preset {args.preset} --only 04)", file=sys.stderr)
        return 2
    reader = AR.load_attribute_reader(path)
    status = 0
    for image in args.images:
        try:
            img = load_image_uint8(image)
        except (FileNotFoundError, OSError, ValueError) as exc:
            print(f"s2i read-attributes: {image}: cannot read image ({exc})", file=sys.stderr)
            status = 1
            continue
        (read,) = AR.read_attributes(reader, img[None])
        print(json.dumps({"image": str(image),
                          "attributes": {a: {"value": v, "prob": round(p, 4)} for a, (v, p) in read.items()}}))
    return status


def add_cli(subparsers) -> None:
    """Register ``s2i read-attributes`` on an argparse subparsers object."""
    p = subparsers.add_parser("read-attributes", help="read the attributes of image files with a dataset's "
                                                      "trained attribute reader (one JSON object per image)")
    p.add_argument("--dataset", required=True, help="e.g. synth-birds")
    p.add_argument("--run-root", default="runs", help="run folder root (default: runs)")
    p.add_argument("--preset", default="small", help="preset whose reader to use (default: small)")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.set_defaults(func=cmd_read_attributes)
