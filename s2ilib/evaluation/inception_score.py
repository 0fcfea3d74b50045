"""Inception Score: the score of class probabilities (torchmetrics), and the IS head, a classifier
on frozen FID Inception features standing in for the paper's Inception-v3 fine-tuned on the test
classes (training, saving and safe loading)."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from s2ilib.core.io import torch_save_atomic
from s2ilib.core.runkit import RECOMPUTE, load_checkpoint
from s2ilib.evaluation.fid import MetricsFileError, _Precomputed


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
