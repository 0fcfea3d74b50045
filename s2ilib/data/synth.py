"""Build the embedded datasets ``synth-birds`` (CUB-200 layout) and ``synth-flowers`` (Oxford-102 layout).

:func:`build_synthetic_dataset` plans every class, image attribute set, scene and caption in the
main process from the seed (so the result does not depend on the number of workers), renders the
JPEGs in a process pool and writes the index files of the real dataset's layout (see
docs/ARCHITECTURE.md, "Dataset on disk"). The build happens in ``<root>.partial`` and is moved to
``root`` only when complete; a rerun with the same configuration and seed returns at once.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from s2ilib.core.config import DataConfig
from s2ilib.core.io import atomic_write_text, staging_dir
from s2ilib.data.render import Scene, render_image, sample_scene, scene_bbox
from s2ilib.data.captions import make_captions
from s2ilib.data.species import Species, make_classes, sample_attributes, train_values
from s2ilib.data.vocab import vocabulary

SYNTH_VERSION = 1  # bump when rendering or captions change: old folders then refuse to be reused
DATASETS = {"synth-birds": "birds", "synth-flowers": "flowers"}
_KIND_SEED = {"birds": 1, "flowers": 2}  # separate random streams per dataset
_MARKER = ".build.json"  # in <root>.partial: which build the partial files belong to
JPEG_QUALITY = 95


class DatasetConfigMismatch(ValueError):
    """The target folder holds a dataset built with another configuration or seed."""


class DatasetFolderError(ValueError):
    """The target folder exists but is not a synthetic dataset."""


@dataclass
class PlannedImage:
    """Everything about one image except its pixels."""

    key: str  # path relative to the root without extension
    class_index: int
    attributes: dict[str, str]
    captions: list[tuple[str, dict[str, str]]]
    scene: Scene


def dataset_meta(name: str, cfg: DataConfig, seed: int) -> dict[str, Any]:
    """The content of ``dataset.json``: what identifies a build (only settings that change the data)."""
    kind = _kind(name)
    config = {
        f"{kind}_train_classes": getattr(cfg, f"{kind}_train_classes"),
        f"{kind}_test_classes": getattr(cfg, f"{kind}_test_classes"),
        "images_per_class": cfg.images_per_class,
        "image_size": cfg.image_size,
        "captions_per_image": cfg.captions_per_image,
    }
    layout = "cub" if kind == "birds" else "oxford"
    return {"name": name, "layout": layout, "synthetic": True, "config": config, "seed": int(seed),
            "version": SYNTH_VERSION}


def _kind(name: str) -> str:
    if name not in DATASETS:
        raise ValueError(f"unknown synthetic dataset {name!r}; choose one of {sorted(DATASETS)}")
    return DATASETS[name]


def _image_key(kind: str, sp: Species, j: int, global_idx: int) -> str:
    if kind == "birds":
        return f"images/{sp.class_dir}/{sp.class_dir.split('.', 1)[1]}_{j + 1:04d}"
    return f"jpg/image_{global_idx + 1:05d}"


def plan_dataset(name: str, cfg: DataConfig, seed: int, progress: bool = False) -> tuple[list[Species], list[PlannedImage]]:
    """Classes and per-image attributes, captions and scenes; deterministic in ``seed``.

    Each image has its own random stream keyed by (seed, dataset, class, image), so changing
    ``images_per_class`` keeps the first images of every class unchanged.
    """
    kind = _kind(name)
    n_train, n_test = getattr(cfg, f"{kind}_train_classes"), getattr(cfg, f"{kind}_test_classes")
    species = make_classes(kind, n_train, n_test, np.random.default_rng([seed, _KIND_SEED[kind]]))
    allowed = train_values([s.prototype for s in species if s.split == "train"])
    images: list[PlannedImage] = []
    for sp in tqdm(species, desc=f"plan {name}", unit="class", disable=not progress):
        for j in range(cfg.images_per_class):
            rng = np.random.default_rng([seed, _KIND_SEED[kind], sp.index, j])
            attrs = sample_attributes(sp.prototype, rng, allowed=allowed)
            scene = sample_scene(kind, attrs, rng)
            captions = make_captions(kind, attrs, cfg.captions_per_image, rng)
            images.append(PlannedImage(_image_key(kind, sp, j, len(images)), sp.index, attrs, captions, scene))
    return species, images


# ----------------------------------------------------------------------------- rendering

def _render_one(task: tuple[Scene, int, str]) -> str:
    """Render one scene and save it as JPEG atomically (a killed worker leaves no broken file)."""
    scene, size, path = task
    tmp = path + ".tmp"
    render_image(scene, size).save(tmp, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    os.replace(tmp, path)
    return path


def _render_all(tasks: list[tuple[Scene, int, str]], workers: int, progress: bool, desc: str) -> None:
    """Render in ``workers`` processes (chunked) with a progress bar; in-process when workers <= 1."""
    bar = tqdm(total=len(tasks), desc=desc, unit="img", disable=not progress)
    if workers <= 1 or len(tasks) < 32:
        for t in tasks:
            _render_one(t)
            bar.update()
    else:
        chunk = max(1, min(32, len(tasks) // (workers * 8)))
        # spawn: safe whatever threads the parent (torch, a notebook kernel) has running
        with mp.get_context("spawn").Pool(workers) as pool:
            for _ in pool.imap_unordered(_render_one, tasks, chunksize=chunk):
                bar.update()
    bar.close()


# ----------------------------------------------------------------------------- index files

def _lines(rows: list[str]) -> str:
    return "".join(r + "\n" for r in rows)


def _write_cub_index(out: Path, species: list[Species], images: list[PlannedImage], size: int) -> None:
    """images.txt, image_class_labels.txt, classes.txt, bounding_boxes.txt, train_test_split.txt."""
    imgs, labels, boxes, split = [], [], [], []
    for i, im in enumerate(images, start=1):
        imgs.append(f"{i} {im.key.split('/', 1)[1]}.jpg")
        labels.append(f"{i} {im.class_index + 1}")
        x, y, w, h = (v * size for v in scene_bbox(im.scene))
        boxes.append(f"{i} {x:.1f} {y:.1f} {w:.1f} {h:.1f}")
        split.append(f"{i} {1 if species[im.class_index].split == 'train' else 0}")
    atomic_write_text(out / "images.txt", _lines(imgs))
    atomic_write_text(out / "image_class_labels.txt", _lines(labels))
    atomic_write_text(out / "classes.txt", _lines([f"{s.index + 1} {s.class_dir}" for s in species]))
    atomic_write_text(out / "bounding_boxes.txt", _lines(boxes))
    atomic_write_text(out / "train_test_split.txt", _lines(split))


def _write_text(out: Path, kind: str, species: list[Species], images: list[PlannedImage]) -> None:
    """Captions (text_c10), class split lists and attributes.json."""
    for im in images:
        sp = species[im.class_index]
        stem = im.key.rsplit("/", 1)[1]
        path = out / "text_c10" / sp.class_dir / f"{stem}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_lines([t for t, _ in im.captions]))
    atomic_write_text(out / "trainvalclasses.txt", _lines([s.class_dir for s in species if s.split == "train"]))
    atomic_write_text(out / "testclasses.txt", _lines([s.class_dir for s in species if s.split == "test"]))
    attributes = {
        "kind": kind,
        "vocabulary": vocabulary(kind),
        "class_names": {s.class_dir: s.name for s in species},
        "prototypes": {s.class_dir: s.prototype for s in species},
        "images": {im.key: im.attributes for im in images},
        "captions": {im.key: [m for _, m in im.captions] for im in images},
    }
    atomic_write_text(out / "attributes.json", json.dumps(attributes, indent=1) + "\n")


# ----------------------------------------------------------------------------- builder

def _check_existing(root: Path, meta: dict[str, Any]) -> bool:
    """True when ``root`` already holds this exact build; raise when it holds something else."""
    info = root / "dataset.json"
    if info.exists():
        try:
            old = json.loads(info.read_text())
        except json.JSONDecodeError as e:
            raise DatasetFolderError(f"{info}: unreadable ({e}); delete {root} to rebuild") from e
        keys = ("name", "config", "seed", "version")
        diff = {k: (old.get(k), meta[k]) for k in keys if old.get(k) != meta[k]}
        if diff:
            details = "; ".join(f"{k}: on disk {a!r}, requested {b!r}" for k, (a, b) in diff.items())
            raise DatasetConfigMismatch(
                f"{root} holds a dataset built with other settings ({details}). "
                f"Pick another folder or delete {root} to rebuild.")
        return True
    if root.exists() and any(root.iterdir()):
        raise DatasetFolderError(f"{root} exists and is not a synthetic dataset (no dataset.json); "
                                 f"pick another folder or delete it")
    return False


def _prepare_partial(root: Path, meta: dict[str, Any]) -> None:
    """Keep ``<root>.partial`` of the same build (resume); remove one of another build (restart)."""
    partial = root.with_name(root.name + ".partial")
    marker = partial / _MARKER
    if partial.exists():
        try:
            same = json.loads(marker.read_text()) == meta
        except (OSError, json.JSONDecodeError):  # no marker or a torn one: unknown content
            same = False
        if not same:
            shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, json.dumps(meta, sort_keys=True))


def build_synthetic_dataset(name: str, root: Path, cfg: DataConfig, seed: int, progress: bool = True) -> Path:
    """Write ``synth-birds`` or ``synth-flowers`` into ``root`` and return ``root``.

    Cached: returns at once if ``root/dataset.json`` records the same config and seed; raises
    :class:`DatasetConfigMismatch` if it records another. An interrupted build (``<root>.partial``)
    resumes, re-using the images already written. Deterministic in ``seed`` whatever ``cfg.workers``.
    """
    kind = _kind(name)
    root = Path(root)
    if not 8 <= cfg.image_size <= 256:
        raise ValueError(f"DataConfig.image_size must be in [8, 256] for {name}, got {cfg.image_size}")
    meta = dataset_meta(name, cfg, seed)
    if _check_existing(root, meta):
        return root
    species, images = plan_dataset(name, cfg, seed, progress)
    _prepare_partial(root, meta)
    with staging_dir(root) as out:
        tasks = []
        for im in images:
            path = out / f"{im.key}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():  # resume: JPEGs are written atomically, so an existing one is whole
                tasks.append((im.scene, cfg.image_size, str(path)))
        for tmp in out.rglob("*.jpg.tmp"):  # left by a killed worker
            tmp.unlink()
        _render_all(tasks, cfg.workers, progress, desc=f"render {name}")
        if kind == "birds":
            _write_cub_index(out, species, images, cfg.image_size)
        _write_text(out, kind, species, images)
        (out / _MARKER).unlink()
        atomic_write_text(out / "dataset.json", json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return root
