"""Unlimited labelled images from the procedural renderer, at the generators' view.

:func:`rendered_batch` draws every attribute family uniformly and independently over ALL its
values (no class prototypes, so a reader trained on them cannot lean on correlations between
attributes), samples a scene (pose, scale, lighting, background vary as in the datasets), renders
it at ``render_size`` and applies the same view as the dataset loader: birds on the square crop
around their bounding box (:func:`s2ilib.data.records.bbox_crop_box`, on the box rounded to 0.1 px
as ``bounding_boxes.txt`` stores it), flowers whole; optionally a JPEG round trip at the datasets'
quality, then a BICUBIC resize to ``size`` as :func:`s2ilib.data.records.load_image` does.

Image ``i`` of a seed depends only on (seed, kind, i): its attributes come from one random stream
and its scene from another, so a batch is the same whatever its length, offset (``start``) or
number of workers, and :func:`render_one` re-renders any image from its labels.
"""
from __future__ import annotations

import io
import multiprocessing as mp
from typing import Any

import numpy as np
from PIL import Image

from s2ilib.data.records import bbox_crop_box
from s2ilib.data.render import render_image, sample_scene, scene_bbox
from s2ilib.data.vocab import vocabulary

VIEWS = ("auto", "bbox", "whole")
DATASET_JPEG_QUALITY = 95  # s2ilib.data.synth.JPEG_QUALITY (not imported: synth pulls in the config layer)
_KIND_STREAM = {"birds": 11, "flowers": 12}  # separate from the dataset builder's streams
_ATTR, _SCENE = 0, 1


def resolve_view(kind: str, view: str | bool) -> str:
    """``"bbox"`` or ``"whole"``: ``"auto"`` is the bbox crop for birds, the whole image otherwise;
    a bool is read as ``gan.bbox_crop`` (True: bbox crop for birds)."""
    if isinstance(view, bool):
        view = "auto" if view else "whole"
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; choose one of {VIEWS}")
    if view == "auto":
        return "bbox" if kind == "birds" else "whole"
    return view


def default_render_size(size: int) -> int:
    """Source resolution for a view of ``size`` px: twice it (the ``small`` preset stores 128 px
    images for its 64 px generators), at most 256 and at least ``size``."""
    return int(max(size, min(256, 2 * size)))


def _check_kind(kind: str) -> dict[str, list[str]]:
    return vocabulary(kind)  # raises on an unknown kind


def sample_uniform_labels(kind: str, seed: int, index: int) -> np.ndarray:
    """Labels (n_attributes,) of image ``index``: each family uniform over all its values."""
    vocab = _check_kind(kind)
    rng = np.random.default_rng([int(seed), _KIND_STREAM[kind], int(index), _ATTR])
    return np.array([int(rng.integers(len(v))) for v in vocab.values()], dtype=np.int64)


def labels_to_attributes(kind: str, labels: Any) -> list[dict[str, str]]:
    """(n, n_attributes) value indices -> [{attribute: value}] in the vocabulary of ``kind``."""
    vocab = _check_kind(kind)
    arr = np.asarray(labels)
    if arr.ndim != 2 or arr.shape[1] != len(vocab):
        raise ValueError(f"labels must be (n, {len(vocab)}) for {kind}, got {arr.shape}")
    return [{a: vals[int(row[j])] for j, (a, vals) in enumerate(vocab.items())} for row in arr]


def view_of(img: Image.Image, scene: Any, view: str, size: int, jpeg_quality: int | None) -> np.ndarray:
    """The generator's view of a rendered image: JPEG round trip (``jpeg_quality``), bbox crop when
    ``view == "bbox"`` (the box rounded as ``bounding_boxes.txt`` stores it), BICUBIC to ``size``."""
    if jpeg_quality is not None:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=int(jpeg_quality), subsampling=0)
        img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    if view == "bbox":
        w, h = img.size
        bbox = tuple(float(f"{v * s:.1f}") for v, s in zip(scene_bbox(scene), (w, h, w, h)))
        img = img.crop(bbox_crop_box(bbox, w, h))
    if img.size != (size, size):
        img = img.resize((size, size), Image.BICUBIC)
    return np.asarray(img, dtype=np.uint8)


def rendered_scene(kind: str, labels: Any, seed: int, index: int):
    """The scene of image ``index`` of ``seed`` showing the attribute ``labels`` (n_attributes,)."""
    attrs = labels_to_attributes(kind, np.asarray(labels).reshape(1, -1))[0]
    return sample_scene(kind, attrs, np.random.default_rng([int(seed), _KIND_STREAM[kind], int(index), _SCENE]))


def render_one(kind: str, labels: Any, seed: int, index: int, size: int, view: str | bool = "auto",
               render_size: int | None = None, jpeg_quality: int | None = DATASET_JPEG_QUALITY) -> np.ndarray:
    """(size, size, 3) uint8 image ``index`` of ``seed`` rendered from the attribute ``labels`` given
    (its scene's pose, lighting and background are those of image ``index``)."""
    scene = rendered_scene(kind, labels, seed, index)
    img = render_image(scene, render_size or default_render_size(size))
    return view_of(img, scene, resolve_view(kind, view), size, jpeg_quality)


def _render_range(task: tuple) -> tuple[np.ndarray, np.ndarray]:
    kind, seed, start, stop, size, view, render_size, jpeg_quality = task
    labels = np.stack([sample_uniform_labels(kind, seed, i) for i in range(start, stop)])
    images = np.stack([render_one(kind, labels[k], seed, i, size, view, render_size, jpeg_quality)
                       for k, i in enumerate(range(start, stop))])
    return images, labels


def rendered_batch(kind: str, n: int, size: int, seed: int, view: str | bool = "auto", start: int = 0,
                   render_size: int | None = None, jpeg_quality: int | None = DATASET_JPEG_QUALITY,
                   workers: int = 1, chunk: int = 64):
    """``n`` freshly rendered labelled images: (uint8 (n, 3, size, size), int64 labels (n, n_attributes)).

    Labels are value indices in :func:`s2ilib.data.vocab.vocabulary` order (attributes as
    :func:`~s2ilib.data.vocab.attribute_names`), each family uniform and independent. Images
    ``start .. start + n - 1`` of ``seed``: deterministic, and the same with any ``workers``
    (spawned processes, ``chunk`` images per task). ``view``: ``"auto"`` (birds on their bbox crop,
    flowers whole, as the generators see them), ``"bbox"``, ``"whole"`` or a bool (``gan.bbox_crop``).
    ``render_size``: the stored dataset resolution (default :func:`default_render_size`);
    ``jpeg_quality``: the datasets' JPEG round trip (None: skip it).
    """
    import torch

    _check_kind(kind)
    view = resolve_view(kind, view)
    render_size = int(render_size or default_render_size(size))
    if n < 0 or start < 0:
        raise ValueError(f"rendered_batch: need n >= 0 and start >= 0, got {n}, {start}")
    n_attr = len(vocabulary(kind))
    if n == 0:
        return torch.zeros((0, 3, size, size), dtype=torch.uint8), torch.zeros((0, n_attr), dtype=torch.long)
    tasks = [(kind, seed, a, min(a + chunk, start + n), size, view, render_size, jpeg_quality)
             for a in range(start, start + n, chunk)]
    if workers > 1 and len(tasks) > 1:
        with mp.get_context("spawn").Pool(min(workers, len(tasks))) as pool:  # spawn: safe under torch threads
            parts = pool.map(_render_range, tasks)
    else:
        parts = [_render_range(t) for t in tasks]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return (torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels).long())
