"""Scoring one (method, condition): FID, KID, IS, R-precision and attribute accuracy of images
produced chunk by chunk (so a large set never sits in memory), against an :class:`EvalContext`
of the dataset's references; plus the generator side (loading a method's generator from the
registry, drawing its images with the same noise for every method).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from s2ilib.core import registry
from s2ilib.evaluation.queries import EvaluationError
from s2ilib.evaluation.references import SHUFFLE_REPEATS
from s2ilib.core.device import bf16_autocast


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
    # FID / KID / IS from a fixed random subset of this many generated images (0: all of them)
    fid_n: int = 0
    # R-precision (teacher features) of a fixed random subset of this many generated images, each
    # against the whole condition's pool of captions (0: all of them)
    rprec_n: int = 0
    # two disjoint halves of the real test images (indices into real_feats, stratified by class):
    # fid_half / kid_half against half A at n = len(half B), comparable with the real-vs-real floor
    real_halves: tuple[torch.Tensor, torch.Tensor] | None = None
    fast_inception: bool = False  # bfloat16 autocast + channels-last Inception (must match real_feats')


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


def fid_subset(query_ids: Sequence[str] | int, k: int, seed: int) -> np.ndarray:
    """Positions of the ``k`` generated images (all when ``k`` is 0 or >= n) scored by the costly
    networks (FID Inception, R-precision teacher), in a seeded pseudo-random order: each query is
    ranked by a hash of (seed, query id), so the choice depends only on the ids: methods scored on
    the same queries use the same images, a method scored on a subset of the queries (two-stage,
    ``eval.asr_max_queries``) keeps those of the others' images it has, and every prefix is itself
    a random subset (``fid_half`` takes the first n_real / 2). ``query_ids``: the ids, or n."""
    import hashlib

    ids = [str(i) for i in range(query_ids)] if isinstance(query_ids, int) else [str(q) for q in query_ids]
    keys = [int.from_bytes(hashlib.blake2b(f"{int(seed)}:{q}".encode(), digest_size=8).digest(), "little")
            for q in ids]
    order = np.argsort(np.asarray(keys, dtype=np.uint64), kind="stable")
    return order if not k or k >= len(ids) else order[:k]


def evaluate_images(images_fn: Callable[[int, int], torch.Tensor], n: int, ctx: EvalContext,
                    mentions: list[dict[str, str]] | None = None, judges: dict[str, torch.Tensor] | None = None,
                    image_labels: torch.Tensor | None = None) -> tuple[dict[str, Any], dict[str, float]]:
    """Score ``n`` images produced chunk by chunk by ``images_fn(start, stop) -> uint8 (b, 3, S, S)``:
    (metrics, seconds per stage); :func:`score_images` without the per-item scores."""
    res, tim, _ = score_images(images_fn, n, ctx, mentions=mentions, judges=judges, image_labels=image_labels)
    return res, tim


def score_images(images_fn: Callable[[int, int], torch.Tensor], n: int, ctx: EvalContext,
                 mentions: list[dict[str, str]] | None = None, judges: dict[str, torch.Tensor] | None = None,
                 image_labels: torch.Tensor | None = None, query_ids: list[str] | None = None,
                 ) -> tuple[dict[str, Any], dict[str, float], dict[str, Any]]:
    """Score ``n`` images produced chunk by chunk by ``images_fn(start, stop) -> uint8 (b, 3, S, S)``.

    ``mentions``: per image the attributes its caption mentions (attribute accuracy);
    ``judges``: {metric name: (n, D) embeddings in the teacher's space} for R-precision, e.g.
    ``{"r_precision": speech_ts_emb}``; ``image_labels`` (n,): the test image of each query
    (its other captions are not drawn as mismatches; the bootstrap resamples test images);
    ``query_ids``: the id of each query (:func:`s2ilib.evaluation.items.query_ids`; default its index).

    Returns (metrics, seconds per stage, per-item scores). Attribute accuracy and R-precision are
    the means of per-image scores with 95% bootstrap intervals over test images (``attr_acc_ci``,
    ``attr_acc_n``, ``attr_acc_n_groups``, ...), R-precision over ``ctx.rprec_n`` of them (NaN in
    the per-item column elsewhere); FID / KID / IS come from ``ctx.fid_n`` generated
    images (:func:`fid_subset`; ``fid_n`` records how many), KID with its interval, and with
    ``ctx.real_halves`` the half-set ``fid_half`` / ``kid_half`` comparable with the real-vs-real floor.
    The per-item scores: columns ``query_id``, ``image_idx``, ``attr_acc``, ``attr_acc_shuffled``,
    ``n_mentions``, ``hit_<attribute>`` (1 / 0 where the caption mentions it, else NaN), one per
    judge (0/1 hits) (:mod:`s2ilib.evaluation.items`).
    """
    from tqdm.auto import tqdm

    from s2ilib.evaluation import attribute_reader as AR
    from s2ilib.evaluation import items as IT
    from s2ilib.evaluation import metrics

    if n < 2:
        raise EvaluationError(f"evaluate_images: need at least 2 images, got {n}")
    labels = image_labels if image_labels is not None else torch.arange(n)
    if len(labels) != n:
        raise EvaluationError(f"evaluate_images: {len(labels)} image labels for {n} images")
    timings: dict[str, float] = {}
    qids = list(query_ids) if query_ids is not None else [str(k) for k in range(n)]
    if len(qids) != n:
        raise EvaluationError(f"evaluate_images: {len(qids)} query ids for {n} images")
    order = fid_subset(qids, 0, ctx.seed)
    incep_order = order[:ctx.fid_n or n] if ctx.real_feats is not None else np.zeros(0, dtype=np.int64)
    in_subset = np.zeros(n, dtype=bool)
    in_subset[incep_order] = True
    teach_rows = np.sort(order[:ctx.rprec_n or n]) if ctx.teacher is not None and judges else np.zeros(0, np.int64)
    in_teach = np.zeros(n, dtype=bool)
    in_teach[teach_rows] = True
    incep, incep_pos, teach, read = [], [], [], []
    with tqdm(total=n, desc="evaluate", unit="img", disable=not ctx.progress) as bar:
        for s in range(0, n, ctx.batch_size):
            e = min(s + ctx.batch_size, n)
            imgs = _timed(timings, "generate", images_fn, s, e)
            if imgs.dtype != torch.uint8 or len(imgs) != e - s:
                raise EvaluationError(f"images_fn({s}, {e}) must return {e - s} uint8 images, got "
                                      f"{imgs.dtype} {tuple(imgs.shape)}")
            pick = np.flatnonzero(in_subset[s:e])
            if len(pick):
                incep.append(_timed(timings, "inception", metrics.inception_features, imgs[torch.from_numpy(pick)],
                                    batch_size=len(pick), progress=False, image_size=ctx.fid_size,
                                    device=ctx.device, fast=ctx.fast_inception))
                incep_pos.append(pick + s)
            tpick = np.flatnonzero(in_teach[s:e])
            if len(tpick):
                teach.append(_timed(timings, "teacher", _teacher_centre_view, ctx.teacher,
                                    imgs[torch.from_numpy(tpick)]))
            if ctx.reader is not None and mentions is not None:
                read += _timed(timings, "reader", AR.read_attributes, ctx.reader, imgs)
            bar.update(e - s)
    out: dict[str, Any] = {"n_images": n, "n_real": len(ctx.real_feats) if ctx.real_feats is not None else 0}
    items: dict[str, Any] = {"query_id": qids, "image_idx": labels.numpy().astype(np.int64)}
    if incep:
        feats = torch.cat(incep)
        where = {int(p): k for k, p in enumerate(np.concatenate(incep_pos))}
        fake = feats[torch.tensor([where[int(p)] for p in incep_order])]  # the subset's random order
        t0 = time.perf_counter()
        from s2ilib.evaluation.fid import fid_kid_at_n

        fk = fid_kid_at_n(ctx.real_feats, fake, ctx.real_halves, seed=ctx.seed)
        timings["fid_kid"] = time.perf_counter() - t0
        out.update(fk)
    if incep and ctx.is_head is not None:
        probs = metrics.is_probabilities(ctx.is_head, fake)
        out["is"], out["is_std"] = _timed(timings, "is", metrics.inception_score, probs,
                                          splits=max(1, min(10, len(fake) // 2)), seed=ctx.seed)
        out["is_n"] = len(fake)
    if teach:
        feats = torch.cat(teach)
        k = _candidates(labels, ctx.rprec_candidates)
        rows = torch.from_numpy(teach_rows)
        for name, judge in judges.items():
            col = np.full(n, np.nan)
            if k >= 2:
                col[teach_rows] = _timed(timings, "r_precision", IT.rprecision_hits, feats, judge, labels, k,
                                         ctx.seed, rows=None if len(rows) == n else rows).numpy()
            items[name] = col
            out["r_precision_candidates"] = k
            out["r_precision_chance"] = 1.0 / k if k >= 2 else float("nan")
    if read:
        own = IT.mention_scores(read, mentions)
        floors = np.stack([IT.mention_scores(read, AR.shuffled_mentions(mentions, ctx.seed + k))
                           for k in range(SHUFFLE_REPEATS)])
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # an image no shuffle gave a mention
                floor_items = np.nanmean(floors, axis=0)
                per_repeat = np.nanmean(floors, axis=1)
        items["attr_acc"], items["attr_acc_shuffled"] = own, floor_items
        items["n_mentions"] = np.array([len(m) for m in mentions], dtype=np.float64)
        items.update(IT.family_hits(read, mentions))
        acc = AR.mention_accuracy(read, mentions)
        out.update(attr_acc_shuffled=float(np.nanmean(floor_items)), attr_acc_shuffled_std=float(np.std(per_repeat)),
                   n_mentions=acc["n_mentions"], attr_per_attribute=acc["per_attribute"])
    t0 = time.perf_counter()
    out.update(IT.summarise(items, seed=ctx.seed))
    timings["intervals"] = time.perf_counter() - t0
    return out, timings, items


def generator_images_fn(generator, cond: torch.Tensor, seed: int, bf16: bool = True) -> Callable[[int, int], torch.Tensor]:
    """``images_fn`` of :func:`evaluate_images` for a generator: image i = G(z_i, cond[i]); the
    noise of a chunk depends only on (seed, chunk start), so every method draws the same z_i."""
    from s2ilib.models.loading import generate

    dev = next(generator.parameters()).device

    def images(s: int, e: int) -> torch.Tensor:
        with bf16_autocast(bf16, dev):
            return generate(generator, cond[s:e], seed=seed * 1_000_003 + s, batch_size=max(1, e - s))

    return images



def load_method_generator(paths, name: str, method: str, device: str):
    """The EMA generator that serves ``method`` (its registry ``generator`` run folder) on ``device``."""
    from s2ilib.models.loading import load_generator

    gan = registry.method(method).generator
    path = paths.gan(name, gan) / "generator_ema.pt"
    if not path.is_file():
        raise EvaluationError(f"{path}: generator {gan!r} not trained; run notebook 03 at this preset")
    return load_generator(path, device=device)
