"""Attribute hits of images generated from captions of the TRAINING classes.

The main evaluation scores unseen test classes. When a generator misses the caption's attributes
there, two causes look alike: it cannot compose them for new classes (a generalisation gap), or
it does not render them even for the captions it was trained on (underfitting). This module
generates one image per caption for a fixed random subset of training-class captions (utterances
of training voices; their (image, caption) pairs for text methods) and reads them with the main
evaluation's attribute reader, so notebook 04's information table can set the two side by side.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from s2ilib.core import registry
from s2ilib.evaluation.attribute_reader import read_attributes
from s2ilib.evaluation.items import family_hits
from s2ilib.evaluation.queries import EvaluationError, embedding_cache, lookup_embeddings, query_mentions
from s2ilib.evaluation.references import generators_bbox_crop, study_reader
from s2ilib.evaluation.scoring import generator_images_fn, load_method_generator


def train_class_queries(ds, n: int, seed: int):
    """A fixed random subset of ``n`` seen-voice utterances of training images (all if fewer):
    a DataFrame with ``utt_id``, ``image_idx``, ``caption_idx``, sorted by store row."""
    if ds.speech is None:
        raise EvaluationError(f"dataset {ds.name!r} ({ds.root}) has no speech feature store; run notebook 01")
    if n < 1:
        raise EvaluationError(f"train_class_queries: n must be >= 1, got {n}")
    idx = ds.speech.index
    rows = idx[(idx["condition"] == "seen") & idx["image_idx"].isin(ds.split("train"))]
    if rows.empty:
        raise EvaluationError(f"dataset {ds.name!r}: no seen-voice utterances of training images")
    keep = np.sort(np.random.default_rng([int(seed), 11]).permutation(len(rows))[:n])
    return rows.iloc[keep][["utt_id", "image_idx", "caption_idx"]].reset_index(drop=True)


def train_class_items(ds, cfg, paths, methods, n: int = 2000, device: str = "cpu",
                      batch_size: int = 250) -> dict[str, dict[str, Any]]:
    """``{method: {"hit_<family>": (N,), "image_idx": (N,)}}`` for the methods whose generator is
    trained (two-stage, which queries through ASR, is left out: its generator is text's). The
    same queries and noise for every method; the reader is the main evaluation's (cached)."""
    gens = {m: load_method_generator(paths, ds.name, m, device) for m in methods
            if registry.method(m).query != "asr"}
    if not gens:
        return {}
    reader = study_reader(ds, paths, cfg, next(iter(gens.values())).sizes[-1], generators_bbox_crop(gens, ds),
                          progress=False)
    if reader is None:
        return {}
    q = train_class_queries(ds, n, cfg.seed)
    mentions = query_mentions(ds, q)
    emb_cache = embedding_cache(paths, ds.name)
    out: dict[str, dict[str, Any]] = {}
    for m, gen in gens.items():
        kind = registry.method(m).encoder
        images = generator_images_fn(gen, lookup_embeddings(emb_cache(kind), q, kind), cfg.seed, bf16=cfg.gan.bf16)
        read = []
        with torch.no_grad():
            for s in range(0, len(q), batch_size):
                read += read_attributes(reader, images(s, min(s + batch_size, len(q))))
        hits = family_hits(read, mentions)
        out[m] = {**hits, "image_idx": q["image_idx"].to_numpy(dtype=np.int64)}
    return out
