"""In-memory datasets: :class:`SpeechImageDataset` of :class:`ImageRecord` (one image with its
captions), :class:`DatasetError`, and reading one record's image (optionally on its bounding-box
crop). The loaders of :mod:`s2ilib.data.loaders` build these."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
