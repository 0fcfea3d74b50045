"""Per-dataset references every method is scored against: FID Inception features of the real test
images, the IS head of the test classes, the attribute reader and its ceilings on real images,
all in the image view the generators were trained on (whole images or bounding-box crops).
"""
from __future__ import annotations

import functools
import hashlib
from typing import Any, Callable, Iterable

import numpy as np
import torch

from s2ilib.evaluation.queries import EvaluationError

SHUFFLE_REPEATS = 5
CACHE_VERSION = 1


def _keys_hash(ds, indices: Iterable[int]) -> str:
    h = hashlib.sha256()
    for i in indices:
        h.update(f"{ds.images[int(i)].key}\n".encode())
    return h.hexdigest()[:16]


def real_test_features(ds, paths, size: int, fid_size: int, progress: bool = True, device: str = "cpu",
                       load_images: Callable | None = None, bbox_crop: bool = False,
                       fast: bool = False) -> torch.Tensor:
    """FID Inception features (n_test, 2048) of the real test images at ``size`` px, cached in eval/;
    ``bbox_crop``: of their bounding-box crops (the view the generators were trained on); ``fast``:
    through the bfloat16 / channels-last Inception (``cfg.eval.fid_bf16``), cached apart."""
    from s2ilib.evaluation import metrics

    load_images = load_images or functools.partial(load_images_view, bbox_crop=bbox_crop)
    test = ds.split("test")
    tag = ds.name + _view_suffix(bbox_crop) + ("_bf16" if fast else "")
    path = metrics.real_features_path(references_dir(paths, ds.name), tag, "test", size, fid_size)
    meta = {"n_images": len(test), "keys_hash": _keys_hash(ds, test), "version": CACHE_VERSION,
            "bbox_crop": bbox_crop}
    if fast:
        meta["fast"] = True
    compute = lambda: metrics.inception_features(_chunks(lambda s, e: load_images(ds, test[s:e], size), len(test), 64),
                                                 image_size=fid_size, progress=progress, device=device, fast=fast)
    return metrics.cached_real_features(path, compute, meta)


def load_images_view(ds, indices, size: int, bbox_crop: bool = False) -> torch.Tensor:
    """uint8 (N, 3, size, size) images of dataset rows ``indices``, whole or bounding-box crops."""
    from s2ilib.data.images import load_images_uint8

    return load_images_uint8(ds, list(indices), size, bbox_crop=bbox_crop)


def _view_suffix(bbox_crop: bool) -> str:
    """File-name tag of the image view, so cropped and whole-image references never share a cache."""
    return "_bboxcrop" if bbox_crop else ""


def generators_bbox_crop(generators: dict[str, Any], ds: Any = None) -> bool:
    """Whether the generators were trained on bounding-box crops; real references must use the same
    view. Generators saved before the option existed were uncropped. With ``ds``, False when the
    dataset has no boxes (its images were used whole either way)."""
    views = {m: bool(getattr(G, "train_config", {}).get("bbox_crop", False)) for m, G in generators.items()}
    if len(set(views.values())) > 1:
        raise EvaluationError(f"generators were trained on different image views (gan.bbox_crop): {views}; "
                              f"retrain them with one setting")
    crop = next(iter(views.values()), False)
    return crop and (ds is None or any(r.bbox is not None for r in ds.images))


def _chunks(fn: Callable[[int, int], torch.Tensor], n: int, chunk: int) -> Iterable[torch.Tensor]:
    for s in range(0, n, chunk):
        yield fn(s, min(s + chunk, n))


def is_head_for(ds, paths, real_feats: torch.Tensor, cfg, size: int, fid_size: int, seed: int,
                bbox_crop: bool = False):
    """The IS classifier of the dataset's test classes (trained once, saved in eval/; reused if its
    epochs, seed, image count and image view match)."""
    from s2ilib.evaluation import metrics

    labels = torch.tensor([ds.images[i].class_index for i in ds.split("test")])
    path = references_dir(paths, ds.name) / f"is_head_{size}px_inception{fid_size}{_view_suffix(bbox_crop)}.pt"
    if path.is_file():
        head = metrics.load_is_head(path)
        r = head.report
        if (r.get("epochs"), r.get("seed"), r.get("n_train", 0) + r.get("n_holdout", 0),
                r.get("bbox_crop", False)) == (cfg.is_head_epochs, seed, len(labels), bbox_crop):
            return head
    head = metrics.train_is_head(real_feats, labels, epochs=cfg.is_head_epochs, seed=seed)
    head.report["bbox_crop"] = bbox_crop
    metrics.save_is_head(head, path)
    return head


def references_dir(paths, dataset: str, shared: bool = False):
    """Where the dataset's evaluation references live (real-image features, IS head, attribute
    reader, ASR transcripts): beside the data (``data/<dataset>[@variant]/references/``), since
    they depend on the data and their own settings only, so every generator variant shares them.
    Each file's name or report carries the settings it was made with; a mismatch recomputes it.
    The validation split (``split=val``) keeps its own (``references@split=val/``): its "test"
    images are other images; ``shared`` references (the rendered reader) depend on neither."""
    val = getattr(getattr(paths, "cfg", None), "split", "test") == "val"
    out = paths.data(dataset) / ("references@split=val" if val and not shared else "references")
    out.mkdir(parents=True, exist_ok=True)
    return out


def reader_for(ds, paths, size: int, epochs: int, seed: int, progress: bool = True,
               load_images: Callable | None = None, bbox_crop: bool = False, source: str = "real",
               n_images: int = 16000, render_size: int | None = None):
    """The attribute reader of the dataset (``eval/<name>/attribute_reader.pt``), trained once at
    ``size`` px in the generators' view (bounding-box crops with ``bbox_crop``); None without attributes.

    ``source="real"``: on the real TRAINING images with their ground-truth attributes.
    ``source="rendered"``: on ``n_images`` freshly rendered images of every attribute value
    (:func:`s2ilib.evaluation.rendered_reader.train_rendered_reader`); only for the embedded datasets,
    whose renderer is known (another dataset is an error, never a silent switch to ``real``)."""
    from s2ilib.evaluation import attribute_reader as AR

    if not ds.vocabulary:
        return None
    if source == "rendered":
        return _rendered_reader(ds, paths, size, epochs, seed, progress, bbox_crop, n_images, render_size)
    load_images = load_images or functools.partial(load_images_view, bbox_crop=bbox_crop)
    train = ds.split("train")
    path = references_dir(paths, ds.name) / f"attribute_reader_real{_view_suffix(bbox_crop)}_{size}px.pt"
    if path.is_file():
        reader = AR.load_attribute_reader(path)
        r = reader.report
        if (reader.image_size, r.get("epochs"), r.get("seed"), r.get("n_train", 0) + r.get("n_holdout", 0),
                r.get("bbox_crop", False)) == (size, epochs, seed, len(train), bbox_crop):
            return reader
    images = load_images(ds, train, size)
    reader, _ = AR.train_attribute_reader(images, [ds.images[i].attributes for i in train], ds.vocabulary,
                                          epochs=epochs, seed=seed, out_path=path, progress=progress,
                                          image_size=size, extra_report={"bbox_crop": bbox_crop})
    return reader


def study_reader(ds, paths, cfg, size: int, bbox_crop: bool, progress: bool = True):
    """:func:`reader_for` with the study's settings (``cfg.eval`` reader keys, ``cfg.seed``, the
    render size of ``cfg.data``): the one reader every notebook scores generated images with."""
    ev = cfg.eval
    return reader_for(ds, paths, size, ev.reader_epochs, cfg.seed, progress=progress, bbox_crop=bbox_crop,
                      source=ev.reader_source, n_images=ev.reader_images, render_size=cfg.data.image_size)


def _rendered_reader(ds, paths, size, epochs, seed, progress, bbox_crop, n_images, render_size):
    from s2ilib.data.rendered import resolve_view
    from s2ilib.evaluation import attribute_reader as AR
    from s2ilib.evaluation.rendered_reader import train_rendered_reader

    if ds.kind not in ("birds", "flowers") or not getattr(ds, "synthetic", True):
        raise EvaluationError(f"{ds.root}: eval.reader_source=rendered needs an embedded dataset "
                              f"(synth-birds / synth-flowers), got kind {ds.kind!r}; use eval.reader_source=real")
    view = resolve_view(ds.kind, bbox_crop)
    path = references_dir(paths, ds.name, shared=True) / f"attribute_reader_rendered_{view}_{size}px.pt"
    want = {"source": "rendered", "kind": ds.kind, "view": view, "n_train": n_images, "epochs": epochs,
            "seed": seed, "render_size": render_size}
    if path.is_file():
        reader = AR.load_attribute_reader(path)
        if reader.image_size == size and all(reader.report.get(k) == v for k, v in want.items()):
            return reader
    reader, _ = train_rendered_reader(ds.kind, size=size, view=view, n_train=n_images, epochs=epochs, seed=seed,
                                      render_size=render_size, progress=progress, out_path=path,
                                      extra_report={"bbox_crop": bbox_crop, "render_size": render_size,
                                                    "source": "rendered"})
    return reader


def reader_reference(ds, reader, size: int, seed: int, load_images: Callable | None = None,
                     bbox_crop: bool = False) -> dict[str, Any]:
    """Ceilings of the attribute metric: the reader's held-out accuracy (training classes) and its
    attribute accuracy on the real test images against each of their captions (+ shuffled floor),
    scored as the generated images are (mean over (image, caption) pairs of the share of the
    caption's mentions read, :func:`s2ilib.evaluation.items.mention_scores`), with its 95% interval
    over test images (``real_test_attr_acc_ci``)."""
    from s2ilib.evaluation import attribute_reader as AR
    from s2ilib.evaluation import items as IT

    load_images = load_images or functools.partial(load_images_view, bbox_crop=bbox_crop)
    from s2ilib.evaluation.rendered_reader import reader_accuracy_table

    test = ds.split("test")
    test_images = load_images(ds, test, size)
    read = AR.read_attributes(reader, test_images)
    # per attribute family on the real test images, sharp and blurred (as generated images are)
    table = reader_accuracy_table(reader, test_images, [ds.images[i].attributes for i in test])
    reads, mentions, groups = [], [], []
    for r, i in zip(read, test):
        for m in ds.images[i].caption_attributes:
            reads.append(r)
            mentions.append(m)
            groups.append(int(i))
    real = AR.mention_accuracy(reads, mentions)
    scores = IT.mention_scores(reads, mentions)
    floor = [float(np.nanmean(IT.mention_scores(reads, AR.shuffled_mentions(mentions, seed + k))))
             for k in range(SHUFFLE_REPEATS)] if len(mentions) > 1 else [float("nan")]
    ci = IT.interval({"image_idx": np.asarray(groups), "attr_acc": scores}, "attr_acc", seed=seed) \
        if len(scores) else {"attr_acc": float("nan"), "attr_acc_ci": [float("nan")] * 2, "attr_acc_n": 0}
    rep = reader.report
    return {"holdout_mean": rep.get("holdout_mean"), "holdout_accuracy": rep.get("holdout_accuracy"),
            "chance_majority": rep.get("chance_majority"), "n_train": rep.get("n_train"),
            "n_holdout": rep.get("n_holdout"), "image_size": reader.image_size,
            "real_test_attr_acc": ci["attr_acc"], "real_test_attr_acc_ci": ci["attr_acc_ci"],
            "real_test_attr_acc_n": ci["attr_acc_n"], "real_test_attr_acc_shuffled": float(np.mean(floor)),
            "real_test_attr_acc_micro": real["accuracy"], "real_test_n_mentions": real["n_mentions"],
            "n_real": len(test), "source": rep.get("source", "real"), "real_test_table": table,
            "chance_uniform": rep.get("chance_uniform")}
