"""Image-caption datasets in their real on-disk layouts (CUB-200-2011, Oxford-102, Places audio
captions) and the embedded synthetic ones, which use the same layouts (docs/ARCHITECTURE.md).

Every loader returns a :class:`SpeechImageDataset`; malformed or missing files raise
:class:`DatasetError` naming the file (and line where there is one). Checks beyond the format:

* every path read from a list or json file (``images.txt``, Places ``wav`` / ``image``, class
  folders) must stay inside its base folder (``images/``, ``text_c10/``, the json's base paths):
  absolute paths, ``..`` components and symlinks leading out are refused. The base folder itself
  may be a symlink (e.g. ``images`` -> a copy on another disk);
* class names hold no path separator and are not ``.`` / ``..``;
* ids are unique in ``images.txt``, ``image_class_labels.txt``, ``bounding_boxes.txt``,
  ``train_test_split.txt`` and ``classes.txt`` (a repeated id would silently replace a row);
* bounding boxes are finite with positive width and height;
* text files may start with a UTF-8 byte-order mark (it is dropped).
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message names the file (and line)."""


@dataclass
class ImageRecord:
    """One image with its captions. ``key``: path relative to the root without extension."""

    key: str
    path: Path
    class_index: int
    split: str  # "train" | "test"
    captions: list[str]
    caption_attributes: list[dict] = field(default_factory=list)
    attributes: dict = field(default_factory=dict)
    bbox: tuple[float, float, float, float] | None = None  # x, y, w, h in pixels
    wavs: list[Path] = field(default_factory=list)  # spoken captions (Places), same order as captions
    speakers: list[str] = field(default_factory=list)
    utt_ids: list[str] = field(default_factory=list)


@dataclass
class SpeechImageDataset:
    name: str
    root: Path
    kind: str  # "birds" | "flowers" | "places" | ...
    classes: list[str]  # class dirs
    images: list[ImageRecord]
    vocabulary: dict[str, list[str]] = field(default_factory=dict)
    layout: str = ""
    class_names: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)  # dataset.json
    _speech: Any = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.images)

    def split(self, name: str) -> list[int]:
        """Indices of the images in split ``name`` ("train" / "test")."""
        if name not in ("train", "test"):
            raise ValueError(f"unknown split {name!r}; use 'train' or 'test'")
        return [i for i, r in enumerate(self.images) if r.split == name]

    @property
    def speech(self):
        """The :class:`~s2ilib.speech.features.FeatureStore` in ``root/speech`` (None until built)."""
        if self._speech is None and (Path(self.root) / "speech" / "index.csv").is_file():
            from s2ilib.speech.features import FeatureStore

            self._speech = FeatureStore.open(Path(self.root) / "speech")
        return self._speech

    @speech.setter
    def speech(self, store) -> None:
        self._speech = store

    def fingerprint(self) -> str:
        """Short hash of image keys, classes, splits and captions (keys speech caches)."""
        h = hashlib.sha256()
        for r in self.images:
            h.update(f"{r.key}|{r.class_index}|{r.split}|".encode())
            h.update("\n".join(r.captions).encode())
        return h.hexdigest()[:12]


# --------------------------------------------------------------------------------------------
# small readers with line-numbered errors


def _need(path: Path) -> Path:
    if not path.is_file():
        raise DatasetError(f"{path}: required file is missing")
    return path


def _read_text(path: Path) -> str:
    """A UTF-8 text file without its byte-order mark, if any."""
    try:
        return _need(path).read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc})") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None


def _read_table(path: Path, n_fields: int, types: tuple, unique: bool = True) -> list[tuple]:
    """Whitespace-separated lines with ``n_fields`` fields (the last may contain spaces if str).

    ``unique``: the first field is an id that may appear once (a repeat is an error naming both lines).
    """
    rows, seen = [], {}
    text_last = types[-1] is str
    for lineno, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=n_fields - 1) if text_last else line.split()
        if len(parts) != n_fields:
            raise DatasetError(f"{path}:{lineno}: expected {n_fields} fields, got {len(parts)}: {line!r}")
        try:
            row = tuple(t(p) for t, p in zip(types, parts))
        except ValueError as exc:
            raise DatasetError(f"{path}:{lineno}: bad value in {line!r} ({exc})") from None
        if unique:
            if row[0] in seen:
                raise DatasetError(f"{path}:{lineno}: duplicate id {row[0]} (first on line {seen[row[0]]})")
            seen[row[0]] = lineno
        rows.append(row + (lineno,))
    return rows


def _read_lines(path: Path) -> list[str]:
    return [ln.strip() for ln in _read_text(path).splitlines() if ln.strip()]


def _read_captions(path: Path) -> list[str]:
    try:
        raw = _need(path).read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: captions are not UTF-8 text ({exc})") from None
    caps = [ln.strip() for ln in raw.splitlines() if ln.strip()]
    if not caps:
        raise DatasetError(f"{path}: caption file has no captions")
    return caps


def _check_class_name(name: str, where: str) -> str:
    """A class folder name: one path component, not ``.`` / ``..``, no separators or NUL."""
    if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise DatasetError(f"{where}: bad class name {name!r} (must be one folder name: no path separator, "
                           "not '.' or '..')")
    return name


def _safe_rel(rel: str, where: str, what: str = "path") -> str:
    """A relative path with no ``..`` component, not absolute: lexical check of a listed path."""
    if not isinstance(rel, str) or not rel.strip():
        raise DatasetError(f"{where}: {what} must be a non-empty string, got {rel!r}")
    pure = Path(rel)
    if pure.is_absolute() or rel.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", rel) or "\0" in rel \
            or any(part == ".." for part in re.split(r"[/\\]", rel)):
        raise DatasetError(f"{where}: {what} {rel!r} leads outside the dataset folder "
                           "(absolute or with '..')")
    return rel


def _inside(base: Path, rel: str, where: str, what: str = "path", base_real: Path | None = None) -> Path:
    """``base / rel`` after checking that it stays inside ``base`` (lexically and after
    following symlinks). Returns the unresolved path ``base / rel``."""
    _safe_rel(rel, where, what)
    path = base / rel
    real_base = base_real if base_real is not None else base.resolve()
    try:
        path.resolve().relative_to(real_base)
    except ValueError:
        raise DatasetError(f"{where}: {what} {rel!r} leads outside {base} (through a symlink to "
                           f"{path.resolve()})") from None
    return path


def _class_split(root: Path, classes: list[str]) -> dict[str, str]:
    """class dir -> split from ``trainvalclasses.txt`` / ``testclasses.txt``."""
    train, test = _read_lines(root / "trainvalclasses.txt"), _read_lines(root / "testclasses.txt")
    split = {c: "train" for c in train}
    for c in test:
        if c in split:
            raise DatasetError(f"{root / 'testclasses.txt'}: class {c!r} is also in trainvalclasses.txt")
        split[c] = "test"
    unknown = [c for c in split if c not in classes]
    if unknown:
        raise DatasetError(f"{root / 'trainvalclasses.txt'} / testclasses.txt name unknown classes {unknown[:5]}")
    return split


# --------------------------------------------------------------------------------------------
# loaders


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


def _apply_attributes(ds: SpeechImageDataset, path: Path) -> None:
    """Fill kind / vocabulary / class names / per-image and per-caption attributes (synthetic sets)."""
    meta = _read_json(path)
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: expected a JSON object")
    ds.kind = meta.get("kind", ds.kind)
    ds.vocabulary = meta.get("vocabulary", {})
    ds.class_names = meta.get("class_names", {})
    imgs, caps = meta.get("images", {}), meta.get("captions", {})
    for r in ds.images:
        r.attributes = imgs.get(r.key, {})
        r.caption_attributes = caps.get(r.key, [])
        if r.caption_attributes and len(r.caption_attributes) != len(r.captions):
            raise DatasetError(f"{path}: {r.key} has {len(r.caption_attributes)} caption attribute sets "
                               f"for {len(r.captions)} captions")


def detect_layout(root: Path) -> str:
    """``cub`` / ``oxford`` / ``places`` from dataset.json or the files present."""
    info_path = root / "dataset.json"
    if info_path.is_file():
        info = _read_json(info_path)
        if not isinstance(info, dict):
            raise DatasetError(f"{info_path}: expected a JSON object")
        layout = info.get("layout")
        if layout:
            return layout
    if (root / "images.txt").is_file():
        return "cub"
    if (root / "jpg").is_dir():
        return "oxford"
    if any(p.name not in ("dataset.json", "attributes.json") for p in root.glob("*.json")):
        return "places"
    raise DatasetError(f"{root}: no known dataset layout (images.txt, jpg/ or a Places *.json)")


def load_dataset(root: str | Path) -> SpeechImageDataset:
    """Load any supported dataset folder (dispatch on ``dataset.json`` "layout", else on files)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    layout = detect_layout(root)
    if layout == "cub":
        ds = load_cub(root)
    elif layout == "oxford":
        ds = load_oxford(root)
    elif layout == "places":
        jsons = sorted(p for p in root.glob("*.json") if p.name not in ("dataset.json", "attributes.json"))
        ds = load_places(jsons)
        ds.root = root
    else:
        raise DatasetError(f"{root / 'dataset.json'}: unknown layout {layout!r}")
    if (root / "dataset.json").is_file():
        ds.info = _read_json(root / "dataset.json")
        ds.name = ds.info.get("name", ds.name)
    if (root / "attributes.json").is_file():
        _apply_attributes(ds, root / "attributes.json")
    return ds


# --------------------------------------------------------------------------------------------
# images


def bbox_crop_box(bbox, width: int, height: int, ratio: float = 0.75) -> tuple[int, int, int, int]:
    """Square-ish crop around a CUB bounding box as StackGAN does: half-side ``ratio * max(w, h)``
    around the box centre, clipped to the image. Returns (left, top, right, bottom)."""
    x, y, w, h = bbox
    r = int(max(w, h) * ratio)
    cx, cy = int(x + w / 2), int(y + h / 2)
    return max(0, cx - r), max(0, cy - r), min(width, cx + r), min(height, cy + r)


def load_image(record: ImageRecord, size: int | None = None, bbox_crop: bool = False):
    """The image as an RGB ``PIL.Image``, optionally cropped to its bbox (CUB) and resized to size x size."""
    from PIL import Image

    try:
        img = Image.open(record.path)
        img.load()
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{record.path}: cannot read image ({exc})") from None
    img = img.convert("RGB")
    if bbox_crop and record.bbox is not None:
        img = img.crop(bbox_crop_box(record.bbox, *img.size))
    if size is not None:
        img = img.resize((size, size), Image.BICUBIC)
    return img


# --------------------------------------------------------------------------------------------
# spoken captions from wav files (Places)


def _featurize_one(args):
    from s2ilib.speech.audio import AudioError, duration_s, load_wav
    from s2ilib.speech.features import logmel

    path, sr, n_mels, min_frames = args
    try:
        wave = load_wav(path, target_sr=sr)
    except AudioError as exc:
        return None, str(exc)
    return logmel(wave, sr=sr, n_mels=n_mels, min_frames=min_frames).astype(np.float16), duration_s(wave, sr)


def featurize_wavs(dataset: SpeechImageDataset, out_dir: str | Path, sr: int = 16000, n_mels: int = 40,
                   min_frames: int = 64, workers: int = 1, on_error: str = "raise", progress: bool = True,
                   mp_context: str | None = None):
    """Build a FeatureStore from the records' ``wavs`` (real speech; condition "seen", voice = speaker).

    Files go through :func:`s2ilib.speech.audio.load_wav` fix-ups. ``on_error="raise"`` stops at the first
    unusable file (:class:`~s2ilib.speech.audio.AudioError` naming it); ``"skip"`` leaves it out and lists it
    in ``skipped.txt``. Built in ``<out_dir>.partial`` and moved into place when complete.
    """
    from tqdm.auto import tqdm

    from s2ilib.speech.audio import AudioError
    from s2ilib.speech.features import FeatureStore, FeatureStoreWriter, clear_partial, worker_pool
    from s2ilib.core.io import atomic_write_text, staging_dir

    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    jobs, meta = [], []
    for i, r in enumerate(dataset.images):
        for c, wav in enumerate(r.wavs):
            jobs.append((str(wav), sr, n_mels, min_frames))
            meta.append(dict(utt_id=r.utt_ids[c] if c < len(r.utt_ids) else f"{i}_{c}", image_idx=i, caption_idx=c,
                             voice=r.speakers[c] if c < len(r.speakers) else "", condition="seen",
                             split=r.split, text=r.captions[c]))
    out_dir = Path(out_dir)
    clear_partial(out_dir)
    skipped = []
    with staging_dir(out_dir) as tmp:
        writer = FeatureStoreWriter(tmp, n_mels=n_mels)
        if workers > 1:
            pool = worker_pool(workers, mp_context)
            results = pool.imap(_featurize_one, jobs, chunksize=16)
        else:
            pool, results = None, map(_featurize_one, jobs)
        try:
            for m, (feat, dur) in tqdm(zip(meta, results), total=len(jobs), disable=not progress, desc="featurize wavs"):
                if feat is None:
                    if on_error == "raise":
                        raise AudioError(dur)
                    skipped.append(dur)
                    continue
                writer.add(feat, **m, duration_s=round(dur, 3))
        finally:
            if pool is not None:
                pool.terminate()
        writer.finalize()
        atomic_write_text(tmp / "skipped.txt", "\n".join(skipped) + ("\n" if skipped else ""))
    return FeatureStore.open(out_dir)
