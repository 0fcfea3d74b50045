"""Loaders of the three real on-disk layouts (CUB-200-2011, Oxford-102, Places audio captions),
each returning a :class:`~s2ilib.data.records.SpeechImageDataset`; the checks they apply are listed
in :mod:`s2ilib.data.datasets`."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

import numpy as np

from s2ilib.data.dataset_files import (_check_class_name, _class_split, _inside, _read_captions, _read_json,
                                       _read_table, _safe_rel)
from s2ilib.data.records import DatasetError, ImageRecord, SpeechImageDataset


def load_cub(root: str | Path) -> SpeechImageDataset:
    """CUB-200-2011 layout with Reed et al.'s ``text_c10`` captions and the class split files."""
    root = Path(root)
    images_txt, labels_txt = root / "images.txt", root / "image_class_labels.txt"
    path_rows = _read_table(images_txt, 2, (int, str))
    paths = {i: p for i, p, _ in path_rows}
    line_of = {i: ln for i, _, ln in path_rows}
    labels = {i: c for i, c, _ in _read_table(labels_txt, 2, (int, int))}
    first_line: dict[str, int] = {}
    for i, rel, ln in path_rows:
        _safe_rel(rel, f"{images_txt}:{ln}", "image path")
        if rel in first_line:
            raise DatasetError(f"{images_txt}:{ln}: image {rel!r} is listed twice (first on line {first_line[rel]})")
        first_line[rel] = ln
    if (root / "classes.txt").is_file():
        class_rows = _read_table(root / "classes.txt", 2, (int, str))
        classes_by_num = {n: _check_class_name(d.strip(), f"{root / 'classes.txt'}:{ln}") for n, d, ln in class_rows}
        dirs: dict[str, int] = {}
        for n, d, ln in class_rows:
            if d.strip() in dirs:
                raise DatasetError(f"{root / 'classes.txt'}:{ln}: class {d.strip()!r} is listed twice "
                                   f"(first on line {dirs[d.strip()]})")
            dirs[d.strip()] = ln
    else:  # derive from the image paths
        classes_by_num = {labels[i]: _check_class_name(re.split(r"[/\\]", p)[0], f"{images_txt}:{line_of[i]}")
                          for i, p in paths.items() if i in labels}
    nums = sorted(classes_by_num)
    classes = [classes_by_num[n] for n in nums]
    class_pos = {n: k for k, n in enumerate(nums)}
    boxes = {}
    if (root / "bounding_boxes.txt").is_file():
        for img_id, x, y, w, h, ln in _read_table(root / "bounding_boxes.txt", 5, (int, float, float, float, float)):
            if not all(np.isfinite(v) for v in (x, y, w, h)):
                raise DatasetError(f"{root / 'bounding_boxes.txt'}:{ln}: box of image id {img_id} is not finite "
                                   f"({x}, {y}, {w}, {h})")
            if w <= 0 or h <= 0:
                raise DatasetError(f"{root / 'bounding_boxes.txt'}:{ln}: box of image id {img_id} has "
                                   f"non-positive size (width {w}, height {h})")
            boxes[img_id] = (x, y, w, h)
    if (root / "trainvalclasses.txt").is_file():
        class_split = _class_split(root, classes)
        split_of = lambda i, cdir: class_split.get(cdir, "train")  # noqa: E731
    else:  # train_test_split.txt: "<id> <1|0>", 1 = training
        flags = {i: f for i, f, _ in _read_table(root / "train_test_split.txt", 2, (int, int))}
        split_of = lambda i, cdir: "train" if flags.get(i, 1) == 1 else "test"  # noqa: E731
    images = []
    images_dir, text_dir = root / "images", root / "text_c10"
    images_real, text_real = images_dir.resolve(), text_dir.resolve()
    for img_id in sorted(paths):
        rel = paths[img_id]
        where = f"{images_txt}:{line_of[img_id]}"
        if img_id not in labels:
            raise DatasetError(f"{labels_txt}: no class for image id {img_id} ({rel})")
        num = labels[img_id]
        if num not in class_pos:
            raise DatasetError(f"{labels_txt}: image id {img_id} has unknown class {num}")
        cdir = classes[class_pos[num]]
        img_path = _inside(images_dir, rel, where, "image path", images_real)
        if not img_path.is_file():
            raise DatasetError(f"{img_path}: image listed in {images_txt} is missing")
        stem = str(Path(rel).with_suffix(""))
        captions = _read_captions(_inside(text_dir, f"{stem}.txt", where, "caption path", text_real))
        images.append(ImageRecord(key=f"images/{stem}", path=img_path, class_index=class_pos[num],
                                  split=split_of(img_id, cdir), captions=captions, bbox=boxes.get(img_id)))
    return SpeechImageDataset(name=root.name, root=root, kind="birds", classes=classes, images=images, layout="cub")


_OXFORD_IMG = re.compile(r"^image_(\d{5})$")


def load_oxford(root: str | Path) -> SpeechImageDataset:
    """Oxford-102 layout: ``jpg/image_XXXXX.jpg``, ``text_c10/class_XXXXX/image_XXXXX.txt``, split files."""
    root = Path(root)
    text_dir = root / "text_c10"
    if not text_dir.is_dir():
        raise DatasetError(f"{text_dir}: caption folder is missing")
    classes = sorted(p.name for p in text_dir.iterdir() if p.is_dir() and p.name.startswith("class_"))
    if not classes:
        raise DatasetError(f"{text_dir}: no class_XXXXX folders")
    text_real, jpg_real = text_dir.resolve(), (root / "jpg").resolve()
    for cdir in classes:
        where = str(text_dir / cdir)
        _inside(text_dir, _check_class_name(cdir, where), where, "class folder", text_real)
    split = _class_split(root, classes)
    images = []
    for ci, cdir in enumerate(classes):
        for txt in sorted((text_dir / cdir).glob("*.txt")):
            if not _OXFORD_IMG.match(txt.stem):
                raise DatasetError(f"{txt}: caption file name is not image_XXXXX.txt")
            _inside(text_dir, f"{cdir}/{txt.name}", str(txt), "caption file", text_real)
            img_path = _inside(root / "jpg", f"{txt.stem}.jpg", f"{root / 'jpg'} (for captions {txt})", "image",
                               jpg_real)
            if not img_path.is_file():
                raise DatasetError(f"{img_path}: image for captions {txt} is missing")
            images.append(ImageRecord(key=f"jpg/{txt.stem}", path=img_path, class_index=ci,
                                      split=split.get(cdir, "train"), captions=_read_captions(txt)))
    images.sort(key=lambda r: r.key)
    return SpeechImageDataset(name=root.name, root=root, kind="flowers", classes=classes, images=images,
                              layout="oxford")


def _resolve_base(base: str, json_dir: Path) -> Path:
    p = Path(base)
    return p if p.is_absolute() and p.exists() else json_dir / base


def _places_split(json_path: Path) -> str:
    return "test" if re.search(r"(val|test)", json_path.stem, re.I) else "train"


def load_places(json_path: str | Path | Iterable[str | Path], classes: Iterable[str] | None = None,
                split: str | None = None) -> SpeechImageDataset:
    """Places audio captions: json(s) with ``image_base_path``, ``audio_base_path`` and ``data[]`` of
    ``{wav, image, speaker, uttid, asr_text}``. One record per image; its utterances are the captions
    (``asr_text``) and ``wavs``. Class = the image's folder path (``a/abbey``); ``classes`` keeps a subset
    (the paper: 7 indoor classes). Split from ``split`` or the file name (``*val*``/``*test*`` -> test).
    Relative base paths are resolved against the json's folder."""
    json_paths = [Path(json_path)] if isinstance(json_path, (str, Path)) else [Path(p) for p in json_path]
    keep = set(classes) if classes is not None else None
    by_image: dict[str, ImageRecord] = {}
    class_of: dict[str, str] = {}
    for jp in json_paths:
        meta = _read_json(jp)
        if not isinstance(meta, dict):
            raise DatasetError(f"{jp}: expected a JSON object with image_base_path, audio_base_path and data")
        for k in ("image_base_path", "audio_base_path", "data"):
            if k not in meta:
                raise DatasetError(f"{jp}: missing key {k!r}")
        for k in ("image_base_path", "audio_base_path"):
            if not isinstance(meta[k], str):
                raise DatasetError(f"{jp}: {k} must be a string, got {meta[k]!r}")
        if not isinstance(meta["data"], list):
            raise DatasetError(f"{jp}: data must be a list of entries, got {type(meta['data']).__name__}")
        img_base, wav_base = _resolve_base(meta["image_base_path"], jp.parent), _resolve_base(meta["audio_base_path"], jp.parent)
        img_real, wav_real = img_base.resolve(), wav_base.resolve()
        sp = split or _places_split(jp)
        for n, item in enumerate(meta["data"]):
            where = f"{jp}: data[{n}]"
            if not isinstance(item, dict):
                raise DatasetError(f"{where} is not an object: {item!r}"[:300])
            missing = [k for k in ("wav", "image", "asr_text") if k not in item]
            if missing:
                raise DatasetError(f"{where} lacks {missing}")
            for k in ("wav", "image"):
                if not isinstance(item[k], str) or not item[k].strip():
                    raise DatasetError(f"{where}: {k!r} must be a non-empty string, got {item[k]!r}")
            for k, ok in (("asr_text", (str,)), ("speaker", (str,)), ("uttid", (str, int))):
                if k in item and (not isinstance(item[k], ok) or isinstance(item[k], bool)):
                    raise DatasetError(f"{where}: {k!r} must be a string, got {item[k]!r}")
            img_path = _inside(img_base, item["image"], where, "'image'", img_real)
            wav_path = _inside(wav_base, item["wav"], where, "'wav'", wav_real)
            cdir = Path(item["image"]).parent.as_posix()
            if keep is not None and cdir not in keep:
                continue
            key = Path(item["image"]).with_suffix("").as_posix()
            if key not in by_image:
                by_image[key] = ImageRecord(key=key, path=img_path, class_index=-1, split=sp, captions=[])
                class_of[key] = cdir
            rec = by_image[key]
            rec.captions.append(str(item["asr_text"]).strip())
            rec.wavs.append(wav_path)
            rec.speakers.append(str(item.get("speaker", "")))
            rec.utt_ids.append(str(item.get("uttid", Path(item["wav"]).stem)))
    class_list = sorted(set(class_of.values()))
    pos = {c: i for i, c in enumerate(class_list)}
    images = sorted(by_image.values(), key=lambda r: (r.split, r.key))
    for r in images:
        r.class_index = pos[class_of[r.key]]
    root = json_paths[0].parent
    return SpeechImageDataset(name=root.name, root=root, kind="places", classes=class_list, images=images,
                              layout="places")
