"""Evaluation queries: which test utterances (or captions) each condition scores, the attributes
their captions mention, and the rows of an encoder's exported embeddings that condition them.

Conditions come from :mod:`s2ilib.core.registry`: ``seen`` / ``unseen`` (spoken captions of the
test images by training / held-out voices) and ``groundtruth_text`` (the ground-truth captions of
the same (image, caption) pairs as ``seen``).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from s2ilib.core import registry
from s2ilib.core.registry import SPEECH_CONDITIONS, TEXT_CONDITION


class EvaluationError(ValueError):
    """An input of the evaluation (embeddings, generator, dataset) is missing or inconsistent."""


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

    Encoders of speech (registry input ``speech``) match on ``utt_id``; encoders of text (e.g.
    ``text_ts``) on (image_idx, caption_idx).
    """
    if registry.encoder(kind).input == "text":
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


def embedding_cache(paths, name: str) -> Callable[[str], dict[str, Any]]:
    """``kind -> embeddings.pt`` of the dataset's encoders, each file read once."""
    from s2ilib.models.embedding import load_embeddings

    embs: dict[str, dict] = {}

    def get(kind: str) -> dict[str, Any]:
        if kind not in embs:
            embs[kind] = load_embeddings(paths.encoder(name, kind))
        return embs[kind]

    return get
