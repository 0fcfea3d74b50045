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

import json
from pathlib import Path

import numpy as np

from s2ilib.data.dataset_files import _read_json
from s2ilib.data.loaders import load_cub, load_oxford, load_places
from s2ilib.data.records import DatasetError, ImageRecord, SpeechImageDataset, bbox_crop_box, load_image

__all__ = ["DatasetError", "ImageRecord", "SpeechImageDataset", "bbox_crop_box", "detect_layout", "featurize_wavs",
           "has_recorded_speech", "load_cub", "load_dataset", "load_image", "load_oxford", "load_places",
           "open_user_dataset", "recorded_utterance"]


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


def open_user_dataset(name: str, root: str | Path, speech: str | Path | None = None) -> SpeechImageDataset:
    """A user's dataset in a real layout read from ``root`` and studied as ``name``, its speech store
    (``speech``, if given) opened from elsewhere: the study keeps it in its run folder, never in the
    user's copy."""
    from s2ilib.speech.features import FeatureStore

    ds = load_dataset(root)
    ds.name = name
    if speech is not None:
        ds.speech = FeatureStore.open(speech)
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


WAV_FEATURE_VERSION = 1  # bump when featurize_wavs changes what a store contains


def has_recorded_speech(dataset: SpeechImageDataset) -> bool:
    """True when the records carry recorded wavs (Places): the speech comes from them, not from TTS."""
    return any(getattr(r, "wavs", None) for r in dataset.images)


def _wav_key(dataset: SpeechImageDataset, sr: int, n_mels: int, min_frames: int, on_error: str) -> dict:
    """What a wav feature store depends on: the records, the settings and every wav's size and mtime."""
    import hashlib

    h = hashlib.sha256()
    for r in dataset.images:
        for w in r.wavs:
            st = Path(w).stat() if Path(w).is_file() else None
            h.update(f"{w}|{st.st_size if st else -1}|{st.st_mtime_ns if st else -1}\n".encode())
    return {"version": WAV_FEATURE_VERSION, "dataset": dataset.fingerprint(), "n_images": len(dataset.images),
            "wavs": h.hexdigest()[:16], "sample_rate": sr, "n_mels": n_mels, "min_frames": min_frames,
            "on_error": on_error}


def _open_wav_store(out_dir: Path, key: dict):
    from s2ilib.speech.features import FeatureStore, FeatureStoreError

    try:
        if json.loads((out_dir / "config.json").read_text()).get("key") != key:
            return None
        return FeatureStore.open(out_dir)
    except (OSError, json.JSONDecodeError, FeatureStoreError):
        return None


def featurize_wavs(dataset: SpeechImageDataset, out_dir: str | Path, sr: int = 16000, n_mels: int = 40,
                   min_frames: int = 64, workers: int = 1, on_error: str = "raise", progress: bool = True,
                   mp_context: str | None = None):
    """Build a FeatureStore from the records' ``wavs`` (real speech; condition "seen", voice = speaker).

    Files go through :func:`s2ilib.speech.audio.load_wav` fix-ups. ``on_error="raise"`` stops at the first
    unusable file (:class:`~s2ilib.speech.audio.AudioError` naming it); ``"skip"`` leaves it out and lists it
    in ``skipped.txt``. Built in ``<out_dir>.partial`` and moved into place when complete, with
    ``voices.json`` (the speakers of each split) and ``config.json`` (cache key + totals); a store whose
    key matches (same records, settings and wav files) is reused, not rebuilt.
    """
    import time

    from tqdm.auto import tqdm

    from s2ilib.speech.audio import AudioError
    from s2ilib.speech.features import FeatureStore, FeatureStoreWriter, clear_partial, worker_pool
    from s2ilib.core.io import atomic_write_text, staging_dir

    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    out_dir = Path(out_dir)
    key = _wav_key(dataset, sr, n_mels, min_frames, on_error)
    cached = _open_wav_store(out_dir, key)
    if cached is not None:
        return cached
    jobs, meta = [], []
    for i, r in enumerate(dataset.images):
        for c, wav in enumerate(r.wavs):
            jobs.append((str(wav), sr, n_mels, min_frames))
            meta.append(dict(utt_id=r.utt_ids[c] if c < len(r.utt_ids) else f"{i}_{c}", image_idx=i, caption_idx=c,
                             voice=r.speakers[c] if c < len(r.speakers) else "", condition="seen",
                             split=r.split, text=r.captions[c]))
    clear_partial(out_dir)
    skipped, seconds, t0 = [], 0.0, time.time()
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
                seconds += dur
        finally:
            if pool is not None:
                pool.terminate()
        writer.finalize()
        atomic_write_text(tmp / "skipped.txt", "\n".join(skipped) + ("\n" if skipped else ""))
        speakers = {sp: sorted({v["voice"] for v in meta if v["split"] == sp}) for sp in ("train", "test")}
        voices = {"train": [{"id": v} for v in speakers["train"]], "test": [{"id": v} for v in speakers["test"]],
                  "unseen": [], "recorded": True}
        atomic_write_text(tmp / "voices.json", json.dumps(voices, indent=1) + "\n")
        wall = time.time() - t0
        totals = {"utterances": len(jobs) - len(skipped), "skipped": len(skipped), "hours": seconds / 3600,
                  "wall_s": wall, "speech_s_per_wall_s": seconds / max(wall, 1e-9), "workers": workers}
        atomic_write_text(tmp / "config.json", json.dumps({"key": key, "totals": totals}, indent=2) + "\n")
    return FeatureStore.open(out_dir)


def recorded_utterance(dataset: SpeechImageDataset, row: int, sr: int = 16000) -> np.ndarray:
    """The recorded wav of row ``row`` of the dataset's store (made by :func:`featurize_wavs`), as
    float32 mono at ``sr`` Hz: what the ASR of the two-stage method hears for real speech."""
    from s2ilib.speech.audio import load_wav

    r = dataset.speech.index.iloc[int(row)]
    rec = dataset.images[int(r["image_idx"])]
    c = int(r["caption_idx"])
    if c >= len(rec.wavs):
        raise DatasetError(f"{rec.key}: store row {row} names caption {c}, but the record has {len(rec.wavs)} wavs")
    return load_wav(rec.wavs[c], target_sr=sr)
