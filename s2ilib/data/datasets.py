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

This module dispatches on the layout (:func:`load_dataset`) and featurizes spoken captions read
from wav files (:func:`featurize_wavs`); the records live in :mod:`s2ilib.data.records`, the
per-layout loaders in :mod:`s2ilib.data.loaders`, the file readers and path checks in
:mod:`s2ilib.data.dataset_files`. Every public name is importable from here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from s2ilib.data.dataset_files import _read_json
from s2ilib.data.loaders import load_cub, load_oxford, load_places
from s2ilib.data.records import DatasetError, ImageRecord, SpeechImageDataset, bbox_crop_box, load_image

__all__ = ["DatasetError", "ImageRecord", "SpeechImageDataset", "bbox_crop_box", "detect_layout", "featurize_wavs",
           "load_cub", "load_dataset", "load_image", "load_oxford", "load_places"]


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
