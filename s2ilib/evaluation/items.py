"""Per-item scores of the main evaluation: one row per generated image, so that every headline
number carries a bootstrap interval over TEST IMAGES and two methods can be compared on the same
utterances (:mod:`s2ilib.evaluation.stats`).

An item is one generated image of one query (a test utterance, or a ground-truth caption). Its
``query_id`` is ``"<image_idx>/<caption_idx>/<repeat>"``: the same id in two methods means the
same caption of the same test image (for the speech conditions: the same utterance when the voice
condition is the same), so the ``seen`` queries of one_stage, classifier and two_stage and the
``groundtruth_text`` queries of the text upper bound pair item by item; ``seen`` and ``unseen``
pair on the same caption spoken by a training voice and by a held-out one.

Scores per item:

* ``attr_acc``: the share of the attributes its caption mentions that the reader sees in the
  image (NaN when the caption mentions none; such items are left out of the mean).
* ``attr_acc_shuffled``: the same image against the mentions of other captions (mean over
  :data:`s2ilib.evaluation.references.SHUFFLE_REPEATS` derangements): the floor, paired with
  ``attr_acc`` on the same image.
* ``r_precision`` (and ``r_precision_speech``): 1 when the image ranks its own caption's
  embedding above every drawn mismatch, else 0 (:func:`rprecision_hits`).

Files: ``eval/<dataset>/items/<method>__<condition>.json``, columns of equal length
(:func:`save_items` / :func:`load_items`).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from s2ilib.core.io import atomic_write_text
from s2ilib.evaluation import stats
from s2ilib.evaluation.metrics import ranking_hits

ITEM_METRICS = ("attr_acc", "attr_acc_shuffled", "r_precision", "r_precision_speech")
INTERVAL_METRICS = ("attr_acc", "r_precision", "r_precision_speech")  # reported with a 95% interval
N_BOOT = 2000


def query_ids(queries) -> list[str]:
    """``"<image_idx>/<caption_idx>/<repeat>"`` of each query row (repeat: 0.. within
    ``images_per_caption`` consecutive copies of one row)."""
    img = queries["image_idx"].astype(int).to_numpy()
    cap = queries["caption_idx"].astype(int).to_numpy()
    rep = queries.groupby(["image_idx", "caption_idx"], sort=False).cumcount().to_numpy()
    return [f"{i}/{c}/{r}" for i, c, r in zip(img, cap, rep)]


# ------------------------------------------------------------------------------------------------
# per-item scores


def rprecision_hits(image_emb: torch.Tensor, cond_emb: torch.Tensor, labels: torch.Tensor | None = None,
                    n_candidates: int = 100, seed: int = 0, chunk: int = 256,
                    rows: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
    """Per-image R-precision hits of 0/1: does image k rank its own caption's embedding
    ``cond_emb[rows[k]]`` above ``n_candidates - 1`` mismatches drawn from ``cond_emb`` (never rows
    with its label; without labels, never its own row)? ``rows`` (default: all, ``image_emb`` then
    (N, D) like ``cond_emb``) scores a subset of the queries against the whole pool. With every row
    the draws are exactly those of :func:`s2ilib.evaluation.metrics.r_precision` (same generator:
    the mean of the hits is its value). Returns (len(rows),) float."""
    n = len(cond_emb)
    rows_t = torch.arange(n) if rows is None else torch.as_tensor(rows, dtype=torch.long)
    if image_emb.dim() != 2 or cond_emb.dim() != 2 or image_emb.shape != (len(rows_t), cond_emb.shape[1]):
        raise ValueError(f"rprecision_hits: image_emb {tuple(image_emb.shape)} must be (len(rows), D) for "
                         f"cond_emb {tuple(cond_emb.shape)} and {len(rows_t)} rows")
    img = F.normalize(image_emb.float(), dim=1)
    own = F.normalize(cond_emb.float(), dim=1)
    gen = torch.Generator().manual_seed(seed)
    hits = torch.empty(len(rows_t))
    for s in range(0, len(rows_t), chunk):
        pos = torch.arange(s, min(s + chunk, len(rows_t)))
        q = rows_t[pos]
        allowed = torch.ones(len(q), n, dtype=torch.bool)
        if labels is not None:
            allowed &= labels[q].view(-1, 1) != labels.view(1, -1)
        else:
            allowed[torch.arange(len(q)), q] = False
        hits[pos] = ranking_hits(img[pos], own[q], own, allowed, n_candidates, gen, q, "rprecision_hits")
    return hits


def mention_scores(read: Sequence[dict[str, Any]], mentions: Sequence[dict[str, str]]) -> np.ndarray:
    """Per image: the share of its mentions the read attributes match (NaN where none is mentioned)."""
    if len(read) != len(mentions):
        raise ValueError(f"mention_scores: {len(read)} images but {len(mentions)} mention dicts")
    out = np.full(len(read), np.nan)
    for k, (r, m) in enumerate(zip(read, mentions)):
        if m:
            out[k] = np.mean([(r[a][0] if isinstance(r[a], tuple) else r[a]) == v for a, v in m.items()])
    return out


HIT_PREFIX = "hit_"


def family_hits(read: Sequence[dict[str, Any]], mentions: Sequence[dict[str, str]]) -> dict[str, np.ndarray]:
    """``{"hit_<attribute>": (N,)}``: 1 where the image shows the value its caption mentions for
    that attribute, 0 where it shows another, NaN where the caption does not mention it."""
    families = sorted({a for r in read for a in r})
    out = {f"{HIT_PREFIX}{a}": np.full(len(read), np.nan) for a in families}
    for k, (r, m) in enumerate(zip(read, mentions)):
        for a, v in m.items():
            if a in r:
                out[f"{HIT_PREFIX}{a}"][k] = float((r[a][0] if isinstance(r[a], tuple) else r[a]) == v)
    return out


# ------------------------------------------------------------------------------------------------
# summaries with intervals


def _finite(items: dict[str, Any], metric: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(items[metric], dtype=np.float64)
    g = np.asarray(items["image_idx"])
    keep = np.isfinite(x)
    return x[keep], g[keep]


def interval(items: dict[str, Any], metric: str, seed: int = 0, n_boot: int = N_BOOT) -> dict[str, Any]:
    """``{metric: mean, metric_ci: [low, high], metric_n, metric_n_groups}`` of one per-item column:
    the 95% bootstrap interval over test images (:func:`stats.bootstrap_ci` with groups = test image).
    Empty columns give NaN."""
    x, g = _finite(items, metric)
    if x.size == 0:
        return {metric: float("nan"), f"{metric}_ci": [float("nan"), float("nan")], f"{metric}_n": 0,
                f"{metric}_n_groups": 0}
    if np.unique(g).size < 2 and np.ptp(x) > 0:
        ci = stats.Interval(float(x.mean()), float("nan"), float("nan"), x.size, 1, 0.95, "none")
    else:
        ci = stats.bootstrap_ci(x, n_boot=n_boot, seed=seed, groups=g)
    return {metric: ci.estimate, f"{metric}_ci": [ci.low, ci.high], f"{metric}_n": ci.n,
            f"{metric}_n_groups": ci.n_groups}


def summarise(items: dict[str, Any], seed: int = 0, metrics: Sequence[str] = INTERVAL_METRICS) -> dict[str, Any]:
    """Intervals of every metric of ``metrics`` present in ``items``."""
    out: dict[str, Any] = {}
    for m in metrics:
        if m in items:
            out.update(interval(items, m, seed))
    return out


def paired_comparison(scores_a: dict[str, Any], scores_b: dict[str, Any], metric: str, seed: int = 0,
                      n_boot: int = N_BOOT, metric_b: str | None = None) -> dict[str, Any]:
    """Method A minus method B on the SAME items: rows are paired by ``query_id`` (items present in
    both with a finite score), the differences resampled by test image
    (:func:`stats.paired_difference`, groups = test image). ``metric_b``: B's column when it differs
    (e.g. ``attr_acc`` vs ``attr_acc_shuffled`` of the same items). Returns the difference dict
    (estimate, low, high, p_value, n, n_groups, level, method); NaN with n = 0 when nothing pairs."""
    metric_b = metric_b or metric
    if metric not in scores_a or metric_b not in scores_b:
        return _empty_difference()
    b_pos = {q: k for k, q in enumerate(scores_b["query_id"])}
    xa, xb = np.asarray(scores_a[metric], dtype=np.float64), np.asarray(scores_b[metric_b], dtype=np.float64)
    ia, ib = [], []
    for k, q in enumerate(scores_a["query_id"]):
        j = b_pos.get(q)
        if j is not None and math.isfinite(xa[k]) and math.isfinite(xb[j]):
            ia.append(k)
            ib.append(j)
    if len(ia) < 2:
        return _empty_difference()
    groups = np.asarray(scores_a["image_idx"])[ia]
    if np.unique(groups).size < 2 and np.ptp(xa[ia] - xb[ib]) > 0:
        return _empty_difference(len(ia))
    return stats.paired_difference(xa[ia], xb[ib], n_boot=n_boot, seed=seed, groups=groups)


def _empty_difference(n: int = 0) -> dict[str, Any]:
    nan = float("nan")
    return {"estimate": nan, "low": nan, "high": nan, "p_value": nan, "n": n, "n_groups": 0, "level": 0.95,
            "method": "none"}


# ------------------------------------------------------------------------------------------------
# files


def items_dir(eval_dir: str | Path) -> Path:
    return Path(eval_dir) / "items"


def item_path(eval_dir: str | Path, method: str, condition: str) -> Path:
    return items_dir(eval_dir) / f"{method}__{condition}.json"


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def save_items(path: str | Path, items: dict[str, Any], key: Any = None) -> Path:
    """Write per-item columns (lists / arrays / tensors of equal length) as JSON (NaN -> null)."""
    cols = {}
    lengths = set()
    for name, col in items.items():
        vals = col.tolist() if hasattr(col, "tolist") else list(col)
        cols[name] = [_clean(v) for v in vals]
        lengths.add(len(vals))
    if len(lengths) > 1:
        raise ValueError(f"save_items: columns of different lengths {sorted(lengths)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"key": key, "items": cols}) + "\n")
    return path


def read_items(path: str | Path) -> tuple[dict[str, Any], Any]:
    """(columns, key) of an items file; numeric columns as float arrays (null -> NaN)."""
    blob = json.loads(Path(path).read_text())
    cols = {}
    for name, vals in blob["items"].items():
        if name in ("query_id", "utt_id"):
            cols[name] = [str(v) for v in vals]
        elif name == "image_idx":
            cols[name] = np.asarray(vals, dtype=np.int64)
        else:
            cols[name] = np.asarray([np.nan if v is None else v for v in vals], dtype=np.float64)
    return cols, blob.get("key")


def load_items(eval_dir: str | Path) -> dict[str, dict[str, Any]]:
    """{"<method>/<condition>": columns} of every items file of one dataset's evaluation folder."""
    out = {}
    for p in sorted(items_dir(eval_dir).glob("*__*.json")):
        method, cond = p.stem.split("__", 1)
        out[f"{method}/{cond}"] = read_items(p)[0]
    return out
