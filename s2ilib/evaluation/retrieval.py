"""Speech-to-image retrieval metrics of an encoder on test classes (cosine similarity).

Two notions of relevance are reported:

* image level -- the query's own paired image is the one relevant gallery item:
  ``recall@k`` (paired image within the top k) and ``mrr`` (mean reciprocal rank, which is the
  mean average precision when exactly one item is relevant);
* class level -- every gallery image of the query's class is relevant: ``map_class``.

And the two figures of the authors' evaluation code (``EvalClass.eval_class``):

* ``centroid_acc_authors``: class centroids of the QUERY embeddings; each gallery image is
  classified by its most similar centroid (the authors scored with dot products over the per-utterance
  copies of the image features; we use cosine over unique gallery images);
* ``ap@50``: per class, the precision of the 50 gallery images most similar to that class's query
  centroid, averaged over classes (bounded by ``n_c / 50`` when a class has fewer than 50 images).

Plus ``centroid_acc``: each query classified by its most similar centroid of the gallery IMAGE
features of each class. ``chance`` holds each metric's value for random embeddings.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


class RetrievalError(ValueError):
    """Inconsistent retrieval inputs (shapes, missing paired images)."""


def _as_long(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.long)


def _paired_columns(query_image_idx: torch.Tensor, gallery_image_idx: torch.Tensor) -> torch.Tensor:
    """Gallery row of each query's paired image (gallery image ids must be unique)."""
    if gallery_image_idx.unique().numel() != gallery_image_idx.numel():
        raise RetrievalError("gallery_image_idx has repeated images; pass one gallery row per image")
    lookup = {int(g): j for j, g in enumerate(gallery_image_idx.tolist())}
    missing = sorted({int(q) for q in query_image_idx.tolist()} - lookup.keys())
    if missing:
        raise RetrievalError(f"queries refer to images not in the gallery: {missing[:10]}")
    return torch.tensor([lookup[int(q)] for q in query_image_idx.tolist()], dtype=torch.long)


def _class_map(scores: torch.Tensor, query_class: torch.Tensor, gallery_class: torch.Tensor,
               chunk: int = 1024) -> float:
    """Mean over queries of the average precision with relevance = same class."""
    aps = []
    for s in range(0, scores.shape[0], chunk):
        sc = scores[s : s + chunk]
        order = sc.argsort(dim=1, descending=True)
        rel = (gallery_class[order] == query_class[s : s + chunk, None]).float()
        hits = rel.cumsum(dim=1)
        prec = hits / torch.arange(1, rel.shape[1] + 1)
        aps.append((prec * rel).sum(dim=1) / rel.sum(dim=1).clamp_min(1))
    return torch.cat(aps).mean().item()


def _centroids(emb: torch.Tensor, labels: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Normalised mean of the normalised embeddings of each class -> (C, D)."""
    return F.normalize(torch.stack([emb[labels == c].mean(0) for c in classes]), dim=1)


def retrieval_metrics(query_emb, query_image_idx, gallery_emb, gallery_image_idx, ks=(1, 5, 10),
                      query_class=None, gallery_class=None, ap_at: int = 50) -> dict:
    """Retrieval of the paired image of each query among the gallery images.

    ``query_emb`` (Q, D) speech/text embeddings; ``query_image_idx`` (Q,) their paired image ids;
    ``gallery_emb`` (G, D) teacher features of the (test) images, one row per image;
    ``gallery_image_idx`` (G,) unique image ids. ``query_class`` (Q,) and ``gallery_class`` (G,)
    (optional) enable the class-level metrics. Returns floats in [0, 1] and a ``chance`` dict.
    """
    q = F.normalize(torch.as_tensor(query_emb).float(), dim=1)
    g = F.normalize(torch.as_tensor(gallery_emb).float(), dim=1)
    qi, gi = _as_long(query_image_idx), _as_long(gallery_image_idx)
    if q.shape[0] != qi.shape[0] or g.shape[0] != gi.shape[0] or q.shape[1] != g.shape[1]:
        raise RetrievalError(f"shape mismatch: query {tuple(q.shape)} / {tuple(qi.shape)}, "
                             f"gallery {tuple(g.shape)} / {tuple(gi.shape)}")
    n_q, n_g = q.shape[0], g.shape[0]
    scores = q @ g.T  # (Q, G) cosine
    col = _paired_columns(qi, gi)
    paired = scores[torch.arange(n_q), col]
    rank = (scores > paired[:, None]).sum(dim=1)  # 0 = first; ties count in the query's favour
    out: dict = {"n_queries": n_q, "n_gallery": n_g}
    chance: dict = {}
    for k in ks:
        out[f"recall@{k}"] = (rank < k).float().mean().item()
        chance[f"recall@{k}"] = min(k, n_g) / n_g
    out["mrr"] = (1.0 / (rank.float() + 1)).mean().item()
    chance["mrr"] = (1.0 / torch.arange(1, n_g + 1).float()).mean().item()
    if query_class is not None and gallery_class is not None:
        qc, gc = _as_long(query_class), _as_long(gallery_class)
        classes = gc.unique()
        out["n_classes"] = int(classes.numel())
        out["map_class"] = _class_map(scores, qc, gc)
        freq = torch.stack([(gc == c).float().mean() for c in qc.unique()])
        chance["map_class"] = freq.mean().item()  # about the class prior for random rankings
        img_cent = _centroids(g, gc, classes)
        pred = classes[(q @ img_cent.T).argmax(dim=1)]
        out["centroid_acc"] = (pred == qc).float().mean().item()
        chance["centroid_acc"] = 1.0 / classes.numel()
        q_classes = qc.unique()
        q_cent = _centroids(q, qc, q_classes)
        cent_scores = g @ q_cent.T  # (G, Cq)
        out["centroid_acc_authors"] = (q_classes[cent_scores.argmax(dim=1)] == gc).float().mean().item()
        chance["centroid_acc_authors"] = 1.0 / q_classes.numel()
        k = min(ap_at, n_g)
        top = cent_scores.topk(k, dim=0).indices  # (k, Cq) gallery rows per class
        out[f"ap@{ap_at}"] = (gc[top] == q_classes[None, :]).float().mean().item()
        chance[f"ap@{ap_at}"] = torch.stack([(gc == c).float().mean() for c in q_classes]).mean().item()
    out["chance"] = chance
    return out
