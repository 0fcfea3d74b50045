"""Image metrics of the main table: FID, KID, Inception Score, R-precision, and WER.

Everything runs offline. FID / KID, the FID Inception-v3 features and the real-feature cache live
in :mod:`s2ilib.evaluation.fid`; the Inception Score and its classifier head in
:mod:`s2ilib.evaluation.inception_score`; R-precision and WER here. Every name is importable from
this module.

Flow for one evaluation::

    real = cached_real_features(path, lambda: inception_features(real_uint8))   # (N, 2048)
    fake = inception_features(fake_uint8)                                       # (M, 2048)
    fid_from_features(real, fake); kid_from_features(real, fake, subset_size=...)
    head = train_is_head(real_test_feats, real_test_labels)                     # paper: fine-tuned Inception
    inception_score(is_probabilities(head, fake))
    r_precision(teacher_feats_of_fake, speech_emb_of_their_captions, labels=...)
    wer(references, asr_hypotheses)
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F

from s2ilib.evaluation.fid import (FID_FEATURE_DIM, STANDARD_FID_SIZE, FIDInception, MetricsFileError,
                                   MissingAssetError, cached_real_features, fid_from_features,
                                   fid_inception_path, frechet_distance, inception_features, kid_from_features,
                                   real_features_path)
from s2ilib.evaluation.inception_score import (ISHead, inception_score, is_probabilities, load_is_head,
                                               save_is_head, train_is_head)

__all__ = ["FID_FEATURE_DIM", "STANDARD_FID_SIZE", "FIDInception", "ISHead", "MetricsFileError", "MissingAssetError",
           "cached_real_features", "fid_from_features", "fid_inception_path", "frechet_distance",
           "inception_features", "inception_score", "is_probabilities", "kid_from_features", "load_is_head",
           "normalize_transcript", "r_precision", "real_features_path", "save_is_head", "train_is_head", "wer"]


# ---------------------------------------------------------------------------------------------
# R-precision
# ---------------------------------------------------------------------------------------------
def ranking_hits(img: torch.Tensor, own: torch.Tensor, pool: torch.Tensor, allowed: torch.Tensor,
                 n_candidates: int, gen: torch.Generator, ids: torch.Tensor, what: str) -> torch.Tensor:
    """One chunk of R-precision: (B, D) normalised image features, their own (B, D) condition
    embeddings, the (P, D) pool and the (B, P) mask of rows that may be drawn as mismatches ->
    (B,) hits of 0/1 (own caption strictly above ``n_candidates - 1`` drawn mismatches).
    ``ids`` name the images in the error when one has too few mismatches."""
    short = allowed.sum(1) < n_candidates - 1
    if short.any():
        raise ValueError(f"{what}: image {int(ids[short][0])} has only {int(allowed[short].sum(1)[0])} "
                         f"mismatched candidates, fewer than n_candidates - 1 = {n_candidates - 1}")
    wrong = torch.multinomial(allowed.float(), n_candidates - 1, replacement=False, generator=gen)
    sim_own = (img * own).sum(1)
    sim_wrong = torch.einsum("bd,bkd->bk", img, pool[wrong])
    return (sim_own > sim_wrong.max(1).values).float()


def r_precision(image_emb: torch.Tensor, cond_emb: torch.Tensor, labels: torch.Tensor | None = None,
                pool_emb: torch.Tensor | None = None, pool_labels: torch.Tensor | None = None,
                n_candidates: int = 100, folds: int = 10, seed: int = 0,
                chunk: int = 256) -> tuple[float, float]:
    """R-precision (R = 1) as in AttnGAN / S2IGAN: does a generated image retrieve its own caption?

    ``image_emb`` (N, D): teacher features of the generated images; ``cond_emb`` (N, D): the speech
    embedding each image was generated from (row i belongs to image i). For each image, its own
    caption competes with ``n_candidates - 1`` mismatched ones drawn without replacement from the
    pool (default: ``cond_emb`` itself); a hit is counted when its own caption has the strictly
    highest cosine similarity. ``labels`` (N,) / ``pool_labels`` (P,) say which pool rows do NOT
    count as mismatched: rows with the image's label are never drawn (pass class ids for "different
    classes" or image ids for "other images"). Without labels and with the default pool, only row i
    itself is excluded; without labels and with a separate pool, every pool row may be drawn.

    Returns (mean over all images, std of the per-fold means over ``folds`` folds). Chance = 1/n.
    """
    if image_emb.shape != cond_emb.shape or image_emb.dim() != 2:
        raise ValueError(f"r_precision: image_emb {tuple(image_emb.shape)} and cond_emb {tuple(cond_emb.shape)} must both be (N, D)")
    n = len(image_emb)
    same_pool = pool_emb is None
    pool = cond_emb if same_pool else pool_emb
    if same_pool:
        pool_labels = labels
    if (labels is None) != (pool_labels is None):
        raise ValueError("r_precision: give labels for both the images and the pool, or for neither")
    img = F.normalize(image_emb.float(), dim=1)
    own = F.normalize(cond_emb.float(), dim=1)
    pool = F.normalize(pool.float(), dim=1)
    gen = torch.Generator().manual_seed(seed)
    hits = torch.empty(n)
    for s in range(0, n, chunk):
        rows = torch.arange(s, min(s + chunk, n))
        allowed = torch.ones(len(rows), len(pool), dtype=torch.bool)
        if labels is not None:
            allowed &= labels[rows].view(-1, 1) != pool_labels.view(1, -1)
        elif same_pool:
            allowed[torch.arange(len(rows)), rows] = False
        hits[rows] = ranking_hits(img[rows], own[rows], pool, allowed, n_candidates, gen, rows, "r_precision")
    fold_means = torch.stack([f.mean() for f in hits[torch.randperm(n, generator=gen)].chunk(folds)])
    return float(hits.mean()), float(fold_means.std(unbiased=False)) if len(fold_means) > 1 else 0.0


# ---------------------------------------------------------------------------------------------
# WER
# ---------------------------------------------------------------------------------------------
# Whisper writes American spellings; the captions use British ones (vocabulary: "centre", "grey").
_SPELLING = {"center": "centre", "centers": "centres", "color": "colour", "colors": "colours",
             "colored": "coloured", "gray": "grey", "grayish": "greyish"}
_NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
                 "fifteen sixteen seventeen eighteen nineteen twenty").split()


def normalize_transcript(text: str) -> str:
    """Lowercase; apostrophes dropped ("bird's" -> "birds"); other punctuation and hyphens become
    spaces; the digits 0-20 become words (ASR writes "5 petals" for "five petals"); a few American
    spellings become British ("center" -> "centre", "gray" -> "grey"); spaces collapsed."""
    text = text.lower().replace("'", "").replace("\u2019", "")
    text = re.sub(r"[^a-z0-9]+", " ", text)
    words = [_NUMBER_WORDS[int(w)] if w.isdigit() and int(w) <= 20 else _SPELLING.get(w, w) for w in text.split()]
    return " ".join(words)


def wer(references: list[str] | str, hypotheses: list[str] | str) -> float:
    """Corpus word error rate (total substitutions + deletions + insertions / total reference words)
    through jiwer, after :func:`normalize_transcript` on both sides. Empty references are skipped."""
    import jiwer

    if isinstance(references, str):
        references, hypotheses = [references], [hypotheses]
    if len(references) != len(hypotheses):
        raise ValueError(f"wer: {len(references)} references but {len(hypotheses)} hypotheses")
    pairs = [(normalize_transcript(r), normalize_transcript(h)) for r, h in zip(references, hypotheses)]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        raise ValueError("wer: every reference is empty")
    out = jiwer.process_words([r for r, _ in pairs], [h for _, h in pairs])
    return float(out.wer)
