"""Retrieval metrics on constructed embeddings with known answers."""
import pytest
import torch

from s2ilib.evaluation.retrieval import RetrievalError, retrieval_metrics


def _gallery():
    """6 images of 3 classes, orthonormal features (cosine = dot)."""
    return torch.eye(6), torch.tensor([10, 11, 12, 13, 14, 15]), torch.tensor([0, 0, 1, 1, 2, 2])


def test_perfect_queries():
    g, gi, gc = _gallery()
    mate = torch.tensor([1, 0, 3, 2, 5, 4])
    q = 3.0 * g + g[mate]  # own image first, the class mate second
    m = retrieval_metrics(q, gi, g, gi, ks=(1, 5), query_class=gc, gallery_class=gc)
    assert m["recall@1"] == 1.0 and m["mrr"] == 1.0
    assert m["centroid_acc"] == 1.0 and m["centroid_acc_authors"] == 1.0
    # class-level AP: own image first (P=1), class mate second (P=1) -> 1
    assert m["map_class"] == pytest.approx(1.0)
    assert m["chance"]["recall@1"] == pytest.approx(1 / 6)
    assert m["chance"]["centroid_acc"] == pytest.approx(1 / 3)


def test_known_ranks():
    g, gi, gc = _gallery()
    # query 0 paired with image 10: best match image 12 then 10 -> rank 2
    # query 1 paired with image 13: scores favour 15, 14, 13 -> rank 3
    q = torch.tensor([[0.5, 0, 1.0, 0, 0, 0], [0, 0, 0, 0.2, 0.5, 0.9]])
    qi = torch.tensor([10, 13])
    m = retrieval_metrics(q, qi, g, gi, ks=(1, 2, 3), query_class=[0, 1], gallery_class=gc)
    assert m["recall@1"] == 0.0
    assert m["recall@2"] == 0.5
    assert m["recall@3"] == 1.0
    assert m["mrr"] == pytest.approx((1 / 2 + 1 / 3) / 2)
    # class AP: query 0 ranks [12(x), 10(v), others 0-score tie order...]; compute directly
    assert 0.0 < m["map_class"] < 1.0


def test_class_map_value_on_a_clear_case():
    g, gi, gc = _gallery()
    # query of class 1 scoring its class mates 2nd and 4th: relevant at ranks 2 and 4 -> AP = (1/2 + 2/4) / 2
    q = torch.tensor([[0.0, 0.0, 0.9, 0.0, 1.0, 0.5]])  # order: 14 (c2), 12 (c1), 15 (c2), 13 (c1, 0), ...
    q[0, 3] = 0.1  # 13 (class 1) 4th
    m = retrieval_metrics(q, [12], g, gi, ks=(1,), query_class=[1], gallery_class=gc)
    assert m["map_class"] == pytest.approx((1 / 2 + 2 / 4) / 2)


def test_centroid_accuracy_and_ap_at_k():
    g, gi, gc = _gallery()
    # queries near their class but not their image: class metrics perfect, image metrics not
    q = torch.tensor([[0, 1.0, 0, 0, 0, 0], [1.0, 0, 0, 0, 0, 0], [0, 0, 0, 1.0, 0, 0], [0, 0, 1.0, 0, 0, 0]])
    qi = torch.tensor([10, 11, 12, 13])
    qc = torch.tensor([0, 0, 1, 1])
    m = retrieval_metrics(q, qi, g, gi, ks=(1, 2), query_class=qc, gallery_class=gc, ap_at=2)
    assert m["recall@1"] == 0.0 and m["recall@2"] == 1.0
    assert m["centroid_acc"] == 1.0
    # query centroids of classes 0 and 1 pick their own two images as top-2 -> precision 1
    assert m["ap@2"] == 1.0
    # gallery images of class 2 are classified into class 0 or 1 (only those have queries)
    assert m["centroid_acc_authors"] == pytest.approx(4 / 6)


def test_random_embeddings_near_chance():
    gen = torch.Generator().manual_seed(0)
    n = 200
    g = torch.randn(n, 32, generator=gen)
    q = torch.randn(2000, 32, generator=gen)
    qi = torch.randint(0, n, (2000,), generator=gen)
    m = retrieval_metrics(q, qi, g, torch.arange(n), ks=(10,))
    assert m["recall@10"] == pytest.approx(m["chance"]["recall@10"], abs=0.02)


def test_input_errors():
    g, gi, _ = _gallery()
    with pytest.raises(RetrievalError, match="not in the gallery"):
        retrieval_metrics(g[:1], [99], g, gi)
    with pytest.raises(RetrievalError, match="repeated"):
        retrieval_metrics(g[:1], [10], g, torch.tensor([10, 10, 12, 13, 14, 15]))
    with pytest.raises(RetrievalError, match="shape"):
        retrieval_metrics(g[:2], [10], g, gi)
