"""Image-caption datasets in their real on-disk layouts (CUB-200-2011, Oxford-102, Places audio
captions) and the embedded synthetic ones, which use the same layouts (docs/ARCHITECTURE.md).

Every loader returns a :class:`SpeechImageDataset`; malformed or missing files raise
:class:`DatasetError` naming the file (and line where there is one).
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
        """The :class:`~s2ilib.features.FeatureStore` in ``root/speech`` (None until built)."""
        if self._speech is None and (Path(self.root) / "speech" / "index.csv").is_file():
            from s2ilib.features import FeatureStore

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


def _read_table(path: Path, n_fields: int, types: tuple) -> list[tuple]:
    """Whitespace-separated lines with ``n_fields`` fields (the last may contain spaces if str)."""
    rows = []
    for lineno, line in enumerate(_need(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=n_fields - 1)
        if len(parts) != n_fields:
            raise DatasetError(f"{path}:{lineno}: expected {n_fields} fields, got {len(parts)}: {line!r}")
        try:
            rows.append(tuple(t(p) for t, p in zip(types, parts)))
        except ValueError as exc:
            raise DatasetError(f"{path}:{lineno}: bad value in {line!r} ({exc})") from None
    return rows


def _read_lines(path: Path) -> list[str]:
    return [ln.strip() for ln in _need(path).read_text().splitlines() if ln.strip()]


def _read_captions(path: Path) -> list[str]:
    try:
        raw = _need(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: captions are not UTF-8 text ({exc})") from None
    caps = [ln.strip() for ln in raw.splitlines() if ln.strip()]
    if not caps:
        raise DatasetError(f"{path}: caption file has no captions")
    return caps


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
    paths = dict(_read_table(root / "images.txt", 2, (int, str)))
    labels = dict(_read_table(root / "image_class_labels.txt", 2, (int, int)))
    if (root / "classes.txt").is_file():
        classes_by_num = dict(_read_table(root / "classes.txt", 2, (int, str)))
    else:  # derive from the image paths
        classes_by_num = {labels[i]: Path(p).parts[0] for i, p in paths.items() if i in labels}
    nums = sorted(classes_by_num)
    classes = [classes_by_num[n] for n in nums]
    class_pos = {n: k for k, n in enumerate(nums)}
    boxes = {}
    if (root / "bounding_boxes.txt").is_file():
        boxes = {r[0]: tuple(r[1:]) for r in _read_table(root / "bounding_boxes.txt", 5, (int, float, float, float, float))}
    if (root / "trainvalclasses.txt").is_file():
        class_split = _class_split(root, classes)
        split_of = lambda i, cdir: class_split.get(cdir, "train")  # noqa: E731
    else:  # train_test_split.txt: "<id> <1|0>", 1 = training
        flags = dict(_read_table(root / "train_test_split.txt", 2, (int, int)))
        split_of = lambda i, cdir: "train" if flags.get(i, 1) == 1 else "test"  # noqa: E731
    images = []
    for img_id in sorted(paths):
        rel = paths[img_id]
        if img_id not in labels:
            raise DatasetError(f"{root / 'image_class_labels.txt'}: no class for image id {img_id} ({rel})")
        num = labels[img_id]
        if num not in class_pos:
            raise DatasetError(f"{root / 'image_class_labels.txt'}: image id {img_id} has unknown class {num}")
        cdir = classes[class_pos[num]]
        img_path = root / "images" / rel
        if not img_path.is_file():
            raise DatasetError(f"{img_path}: image listed in {root / 'images.txt'} is missing")
        stem = str(Path(rel).with_suffix(""))
        captions = _read_captions(root / "text_c10" / f"{stem}.txt")
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
    split = _class_split(root, classes)
    images = []
    for ci, cdir in enumerate(classes):
        for txt in sorted((text_dir / cdir).glob("*.txt")):
            if not _OXFORD_IMG.match(txt.stem):
                raise DatasetError(f"{txt}: caption file name is not image_XXXXX.txt")
            img_path = root / "jpg" / f"{txt.stem}.jpg"
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
        try:
            meta = json.loads(_need(jp).read_text())
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{jp}:{exc.lineno}: invalid JSON ({exc.msg})") from None
        for k in ("image_base_path", "audio_base_path", "data"):
            if k not in meta:
                raise DatasetError(f"{jp}: missing key {k!r}")
        img_base, wav_base = _resolve_base(meta["image_base_path"], jp.parent), _resolve_base(meta["audio_base_path"], jp.parent)
        sp = split or _places_split(jp)
        for n, item in enumerate(meta["data"]):
            missing = [k for k in ("wav", "image", "asr_text") if k not in item]
            if missing:
                raise DatasetError(f"{jp}: data[{n}] lacks {missing}")
            cdir = str(Path(item["image"]).parent)
            if keep is not None and cdir not in keep:
                continue
            key = str(Path(item["image"]).with_suffix(""))
            if key not in by_image:
                by_image[key] = ImageRecord(key=key, path=img_base / item["image"], class_index=-1, split=sp, captions=[])
                class_of[key] = cdir
            rec = by_image[key]
            rec.captions.append(str(item["asr_text"]).strip())
            rec.wavs.append(wav_base / item["wav"])
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
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
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
        layout = json.loads(info_path.read_text()).get("layout")
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
        ds.info = json.loads((root / "dataset.json").read_text())
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
    from s2ilib.audio import AudioError, duration_s, load_wav
    from s2ilib.features import logmel

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

    Files go through :func:`s2ilib.audio.load_wav` fix-ups. ``on_error="raise"`` stops at the first
    unusable file (:class:`~s2ilib.audio.AudioError` naming it); ``"skip"`` leaves it out and lists it
    in ``skipped.txt``. Built in ``<out_dir>.partial`` and moved into place when complete.
    """
    from tqdm.auto import tqdm

    from s2ilib.audio import AudioError
    from s2ilib.features import FeatureStore, FeatureStoreWriter, clear_partial, worker_pool
    from s2ilib.io import atomic_write_text, staging_dir

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
