"""Attribute reader: the semantic-consistency metric of the synthetic datasets.

A small CNN trained on real rendered images with their ground-truth attributes (``attributes.json``)
predicts every attribute of an image (head colour, petal count, ...). A generated image is then
scored against the attributes its spoken caption mentions:

    attribute accuracy = (# mentioned attributes the image shows) / (# mentioned attributes)

Two reference levels frame the number: the reader's held-out accuracy on real images (ceiling:
a perfect generator cannot score higher than the reader can read) and the shuffled-speech floor
(the same images scored against the mentions of other captions: what a generator that ignores
the speech gets).

The reader takes plain tensors and dicts: images (N, 3, H, W) uint8, attributes as
``{attribute: value}`` with the vocabulary ``{attribute: [values...]}``.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from s2ilib.core.io import seed_everything, torch_save_atomic
from s2ilib.core.runkit import load_checkpoint
from s2ilib.core.device import bf16_autocast

IGNORE = -100  # target index of an attribute the ground truth does not give
POOLS = ("mean", "attention")


class AttributeReaderError(ValueError):
    """An attribute-reader file is unreadable, unsafe (not plain tensors and types) or malformed."""


class AttributeReader(nn.Module):
    """Four stride-2 conv blocks (64 -> 4 pixels), a pooling, one linear head per attribute.

    ``depth`` - 1 extra stride-1 conv blocks follow each stride-2 block (a wider receptive field, so
    the reader can tell the head from the breast whichever way the bird faces). ``pool``: ``"mean"``
    (global average) or ``"attention"`` (each attribute pools the last feature map with its own
    learned spatial softmax: it can look at its part). The defaults are the original reader.

    ``forward(x)``: x (B, 3, S, S) float in [-1, 1], S = ``image_size`` -> {attribute: logits (B, n_values)}.
    """

    def __init__(self, vocabulary: dict[str, list[str]], image_size: int = 64, width: int = 32,
                 depth: int = 1, pool: str = "mean"):
        super().__init__()
        if not vocabulary:
            raise ValueError("AttributeReader: empty vocabulary")
        if pool not in POOLS or depth < 1:
            raise ValueError(f"AttributeReader: pool must be one of {POOLS} and depth >= 1, got {pool!r}, {depth}")
        self.vocabulary = {a: list(v) for a, v in vocabulary.items()}
        self.image_size = int(image_size)
        self.width = int(width)
        self.depth = int(depth)
        self.pool = pool
        chans = [3, width, 2 * width, 4 * width, 8 * width]
        blocks = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            blocks += [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout),
                       nn.LeakyReLU(0.2, inplace=True)]
            for _ in range(self.depth - 1):
                blocks += [nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                           nn.LeakyReLU(0.2, inplace=True)]
        self.trunk = nn.Sequential(*blocks)
        if pool == "attention":
            self.attend = nn.Conv2d(chans[-1], len(self.vocabulary), 1)
        self.heads = nn.ModuleDict({a: nn.Linear(chans[-1], len(v)) for a, v in self.vocabulary.items()})
        self.report: dict[str, Any] = {}  # filled by train_attribute_reader, saved with the weights

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.trunk(x)
        if self.pool == "mean":
            g = h.mean(dim=(2, 3))
            return {a: head(g) for a, head in self.heads.items()}
        w = self.attend(h).flatten(2).float().softmax(-1).to(h.dtype)  # (B, n_attr, HW)
        pooled = torch.bmm(w, h.flatten(2).transpose(1, 2))  # (B, n_attr, C)
        return {a: head(pooled[:, k]) for k, (a, head) in enumerate(self.heads.items())}

    def prepare(self, images_uint8: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        """(B, 3, H, W) uint8 -> (B, 3, S, S) float in [-1, 1] (antialiased bilinear resize).

        Converted ``chunk`` images at a time: a float copy of a whole 256 px set would not fit in memory.
        """
        if images_uint8.dtype != torch.uint8 or images_uint8.dim() != 4 or images_uint8.shape[1] != 3:
            raise ValueError(f"expected uint8 images (B, 3, H, W), got {images_uint8.dtype} {tuple(images_uint8.shape)}")
        out = []
        for b in images_uint8.split(chunk):
            x = b.float() / 127.5 - 1.0
            if x.shape[-2:] != (self.image_size, self.image_size):
                x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                                  align_corners=False, antialias=True)
            out.append(x)
        return torch.cat(out)


def encode_attributes(attributes: list[dict[str, str]], vocabulary: dict[str, list[str]]) -> dict[str, torch.Tensor]:
    """[{attr: value}] -> {attr: LongTensor (N,) value index, IGNORE where the attribute is absent}."""
    out = {}
    for a, values in vocabulary.items():
        index = {v: i for i, v in enumerate(values)}
        col = []
        for n, d in enumerate(attributes):
            v = d.get(a)
            if v is not None and v not in index:
                raise ValueError(f"image {n}: value {v!r} of attribute {a!r} not in the vocabulary {values}")
            col.append(IGNORE if v is None else index[v])
        out[a] = torch.tensor(col, dtype=torch.long)
    return out


def _augment(x: torch.Tensor, gen: torch.Generator, max_shift: int = 4) -> torch.Tensor:
    """Random horizontal flip per image and a small random crop (reflection pad, one shift of up to
    ``max_shift`` px per batch: cheap, and the shift varies from batch to batch)."""
    flip = torch.rand(len(x), generator=gen) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    size = x.shape[-1]
    padded = F.pad(x, [max_shift] * 4, mode="reflect")
    dx, dy = torch.randint(0, 2 * max_shift + 1, (2,), generator=gen).tolist()
    return padded[..., dy:dy + size, dx:dx + size]


def _holdout_split(n: int, fraction: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=gen)
    k = max(1, int(round(fraction * n))) if n > 1 else 0
    return perm[k:], perm[:k]


@torch.no_grad()
def _predict(reader: AttributeReader, x: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Prepared images (N, 3, S, S) -> {attr: probabilities (N, n_values)}."""
    reader.eval()
    outs: dict[str, list[torch.Tensor]] = {a: [] for a in reader.vocabulary}
    for b in x.split(batch_size):
        with bf16_autocast(b.device.type == "cpu", "cpu"):
            logits = reader(b)
        for a, l in logits.items():
            outs[a].append(l.float().softmax(1))
    return {a: torch.cat(v) for a, v in outs.items()}


def _accuracy_per_attribute(probs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict[str, float]:
    acc = {}
    for a, p in probs.items():
        known = targets[a] != IGNORE
        acc[a] = float((p[known].argmax(1) == targets[a][known]).float().mean()) if known.any() else float("nan")
    return acc


def train_attribute_reader(images_uint8: torch.Tensor, attributes: list[dict[str, str]],
                           vocabulary: dict[str, list[str]], epochs: int = 30, seed: int = 0,
                           out_path: str | Path | None = None, progress: bool = True, image_size: int = 64,
                           width: int = 32, batch_size: int = 64, lr: float = 2e-3, holdout: float = 0.2,
                           bf16: bool = True, extra_report: dict[str, Any] | None = None
                           ) -> tuple[AttributeReader, dict[str, Any]]:
    """Train the reader on real images (N, 3, H, W) uint8 with their ground-truth ``attributes``.

    A random ``holdout`` fraction of the images is never trained on; the report gives per-attribute
    held-out accuracy (the ceiling of the attribute-accuracy metric), the majority-class chance
    level on the same images, sizes and the training time, plus ``extra_report`` (e.g. how the
    images were prepared). Saved to ``out_path`` when given.
    """
    if len(images_uint8) != len(attributes):
        raise ValueError(f"train_attribute_reader: {len(images_uint8)} images but {len(attributes)} attribute dicts")
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    reader = AttributeReader(vocabulary, image_size, width)
    x = reader.prepare(images_uint8)
    y = encode_attributes(attributes, reader.vocabulary)
    tr, ho = _holdout_split(len(x), holdout, gen)
    steps_per_epoch = max(1, -(-len(tr) // batch_size))
    opt = torch.optim.AdamW(reader.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    t0 = time.time()
    for _ in tqdm(range(epochs), desc="attribute reader", disable=not progress):
        reader.train()
        for b in tr[torch.randperm(len(tr), generator=gen)].split(batch_size):
            if len(b) < 2:  # batch norm needs two samples
                continue
            with bf16_autocast(bf16, "cpu"):
                logits = reader(_augment(x[b], gen))
                loss = sum(F.cross_entropy(l.float(), y[a][b], ignore_index=IGNORE) for a, l in logits.items()
                           if (y[a][b] != IGNORE).any())
            if not torch.is_tensor(loss):  # no attribute known for this batch
                continue
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    train_s = time.time() - t0
    report = _reader_report(reader, x, y, tr, ho)
    report.update({"epochs": epochs, "seed": seed, "train_seconds": train_s, "image_size": image_size, "width": width,
                   **(extra_report or {})})
    reader.report = report
    if out_path is not None:
        save_attribute_reader(reader, out_path)
    return reader, report


def _reader_report(reader: AttributeReader, x: torch.Tensor, y: dict[str, torch.Tensor],
                   tr: torch.Tensor, ho: torch.Tensor) -> dict[str, Any]:
    sub = lambda idx: {a: t[idx] for a, t in y.items()}
    held = _accuracy_per_attribute(_predict(reader, x[ho]), sub(ho)) if len(ho) else {}
    train = _accuracy_per_attribute(_predict(reader, x[tr]), sub(tr))
    chance = {}
    for a, t in sub(ho).items():  # majority value of the training part, scored on the held-out part
        known_tr = y[a][tr][y[a][tr] != IGNORE]
        known_ho = t[t != IGNORE]
        if len(known_tr) and len(known_ho):
            chance[a] = float((known_ho == known_tr.mode().values).float().mean())
    mean = lambda d: float(torch.tensor([v for v in d.values() if v == v]).mean()) if d else float("nan")
    return {"holdout_accuracy": held, "holdout_mean": mean(held), "train_accuracy": train,
            "train_mean": mean(train), "chance_majority": chance, "n_train": len(tr), "n_holdout": len(ho)}


def save_attribute_reader(reader: AttributeReader, path: str | Path) -> Path:
    """Checkpoint with the vocabulary inside, so a reader file is self-describing."""
    return torch_save_atomic({"state_dict": reader.state_dict(), "vocabulary": reader.vocabulary,
                              "image_size": reader.image_size, "width": reader.width,
                              "depth": reader.depth, "pool": reader.pool,
                              "report": getattr(reader, "report", {})}, path)


def load_attribute_reader(path: str | Path) -> AttributeReader:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no attribute reader checkpoint (train it with train_attribute_reader)")
    blob = load_checkpoint(path, AttributeReaderError, ("state_dict", "vocabulary", "image_size", "width"),
                           what="attribute reader", remedy="if an older s2ilib wrote it, delete it: it is retrained")
    try:
        reader = AttributeReader(blob["vocabulary"], blob["image_size"], blob["width"],
                                 int(blob.get("depth", 1)), str(blob.get("pool", "mean")))
        reader.load_state_dict(blob["state_dict"])
    except (RuntimeError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise AttributeReaderError(f"{path}: attribute reader weights do not fit "
                                   f"({type(exc).__name__}: {exc})") from exc
    reader.report = blob.get("report", {})
    return reader.eval()


def read_attributes(reader: AttributeReader, images_uint8: torch.Tensor,
                    batch_size: int = 256) -> list[dict[str, tuple[str, float]]]:
    """(N, 3, H, W) uint8 -> per image {attribute: (most likely value, its probability)}."""
    probs = _predict(reader, reader.prepare(images_uint8), batch_size)
    out: list[dict[str, tuple[str, float]]] = [{} for _ in range(len(images_uint8))]
    for a, p in probs.items():
        conf, idx = p.max(1)
        for n in range(len(out)):
            out[n][a] = (reader.vocabulary[a][int(idx[n])], float(conf[n]))
    return out


def mention_accuracy(read: list[dict[str, Any]], mentioned: list[dict[str, str]]) -> dict[str, Any]:
    """Score read attributes against mentions, pair by pair (micro average over all mentions).

    ``read``: per image {attr: value or (value, prob)} (from :func:`read_attributes`);
    ``mentioned``: per image {attr: value} its caption mentions. Returns {"accuracy", "n_mentions",
    "per_attribute": {attr: accuracy}}; accuracy is NaN when nothing is mentioned.
    """
    if len(read) != len(mentioned):
        raise ValueError(f"mention_accuracy: {len(read)} images but {len(mentioned)} mention dicts")
    hits: dict[str, list[bool]] = {}
    for r, m in zip(read, mentioned):
        for a, v in m.items():
            if a not in r:
                raise KeyError(f"mentioned attribute {a!r} is not read by the reader (reads {sorted(r)})")
            got = r[a][0] if isinstance(r[a], tuple) else r[a]
            hits.setdefault(a, []).append(got == v)
    flat = [h for hs in hits.values() for h in hs]
    return {"accuracy": sum(flat) / len(flat) if flat else float("nan"), "n_mentions": len(flat),
            "per_attribute": {a: sum(hs) / len(hs) for a, hs in sorted(hits.items())}}


def attribute_accuracy(reader: AttributeReader, images_uint8: torch.Tensor, mentioned: list[dict[str, str]]) -> float:
    """Fraction of the attributes mentioned by each image's caption that the image shows (main metric)."""
    return mention_accuracy(read_attributes(reader, images_uint8), mentioned)["accuracy"]


def derangement(n: int, seed: int = 0) -> torch.Tensor:
    """A random permutation of range(n) with no fixed point (n >= 2)."""
    if n < 2:
        raise ValueError("derangement needs n >= 2")
    gen = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(n, generator=gen)
        if not (perm == torch.arange(n)).any():
            return perm


def shuffled_mentions(mentioned: list[dict[str, str]], seed: int = 0) -> list[dict[str, str]]:
    """Mentions of other captions (a derangement): the input of the shuffled-speech floor."""
    perm = derangement(len(mentioned), seed)
    return [mentioned[int(i)] for i in perm]


def shuffled_attribute_accuracy(reader: AttributeReader, images_uint8: torch.Tensor, mentioned: list[dict[str, str]],
                                seed: int = 0, repeats: int = 5) -> tuple[float, float]:
    """Shuffled-speech floor: the same images scored against mentions of shuffled captions.

    Returns (mean, std) over ``repeats`` shuffles; the images are read once.
    """
    read = read_attributes(reader, images_uint8)
    scores = torch.tensor([mention_accuracy(read, shuffled_mentions(mentioned, seed + r))["accuracy"]
                           for r in range(repeats)])
    return float(scores.mean()), float(scores.std(unbiased=False))


# ------------------------------------------------------------------------------------------------
# a reader trained on freshly rendered images (ceiling near 1, robust to blur and noise)


