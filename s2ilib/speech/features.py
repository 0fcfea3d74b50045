"""Log-mel speech features (paper §III-A) and the on-disk :class:`FeatureStore`.

Features follow the paper and the authors' code: 16 kHz input, DC removal (subtract the mean),
pre-emphasis 0.97, STFT with a 25 ms Hamming window (400 samples, n_fft 400) and a 10 ms shift
(160 samples, centred frames), power spectrum, 40 mel bands from 20 Hz to 8 kHz (Slaney mel
scale and area normalisation, as librosa's defaults the authors used), then log energies in dB
relative to the utterance maximum with an 80 dB floor (``librosa.power_to_db(ref=np.max)``):
values lie in [-80, 0]. The DSP is torchaudio's (``MelSpectrogram``, ``amplitude_to_DB``).

Utterances shorter than the encoder's minimum (``min_frames``, 64: the encoder shortens time
64x) are padded on the right with the utterance's minimum value (the floor of its own
spectrogram, i.e. "silence" in its own scale).
"""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Iterable

import numpy as np

SAMPLE_RATE = 16000
N_FFT = 400  # = the 25 ms window (authors' n_fft)
WIN_LENGTH = 400  # 25 ms
HOP_LENGTH = 160  # 10 ms
F_MIN = 20.0
PREEMPHASIS = 0.97
TOP_DB = 80.0
AMIN = 1e-10

_MEL_CACHE: dict = {}


def _mel_transform(sr: int, n_mels: int):
    import torch
    import torchaudio

    key = (sr, n_mels)
    if key not in _MEL_CACHE:
        _MEL_CACHE[key] = torchaudio.transforms.MelSpectrogram(
            sample_rate=sr, n_fft=N_FFT, win_length=WIN_LENGTH, hop_length=HOP_LENGTH,
            f_min=F_MIN, f_max=sr / 2, n_mels=n_mels, window_fn=torch.hamming_window, power=2.0,
            center=True, pad_mode="constant", norm="slaney", mel_scale="slaney")
    return _MEL_CACHE[key]


def preprocess(wave: np.ndarray, preemphasis: float = PREEMPHASIS) -> np.ndarray:
    """DC removal then pre-emphasis ``y[n] = x[n] - 0.97 x[n-1]``; ``(n,)`` -> ``(n,)``."""
    x = np.asarray(wave, dtype=np.float32)
    x = x - x.mean()
    return np.concatenate([x[:1], x[1:] - preemphasis * x[:-1]]).astype(np.float32)


def pad_frames(feat: np.ndarray, min_frames: int) -> np.ndarray:
    """Right-pad ``(n_mels, T)`` to at least ``min_frames`` frames with the utterance minimum."""
    if feat.shape[1] >= min_frames:
        return feat
    pad = np.full((feat.shape[0], min_frames - feat.shape[1]), feat.min(), dtype=feat.dtype)
    return np.concatenate([feat, pad], axis=1)


def logmel(wave: np.ndarray, sr: int = SAMPLE_RATE, n_mels: int = 40, min_frames: int = 64) -> np.ndarray:
    """Log-mel spectrogram of a mono waveform ``(n,)`` at ``sr`` Hz -> float32 ``(n_mels, T)`` dB.

    ``T = 1 + n // 160`` frames of 10 ms (at least ``min_frames``); values in [-80, 0] dB
    relative to the loudest time-frequency bin.
    """
    import torch
    import torchaudio.functional as AF

    if sr != SAMPLE_RATE:
        raise ValueError(f"logmel expects {SAMPLE_RATE} Hz audio (got {sr}); resample with s2ilib.speech.audio.load_wav")
    x = torch.from_numpy(preprocess(wave))
    with torch.no_grad():
        power = _mel_transform(sr, n_mels)(x)  # (n_mels, T)
        ref = torch.clamp(power.max(), min=AMIN)
        db = AF.amplitude_to_DB(power, multiplier=10.0, amin=AMIN, db_multiplier=math.log10(float(ref)),
                                top_db=TOP_DB)
    return pad_frames(db.numpy().astype(np.float32), min_frames)


def n_frames_for(n_samples: int) -> int:
    """Frames :func:`logmel` produces for ``n_samples`` samples (before padding)."""
    return 1 + n_samples // HOP_LENGTH


# --------------------------------------------------------------------------------------------
# FeatureStore

INDEX_COLUMNS = ["utt_id", "image_idx", "caption_idx", "voice", "condition", "split", "text",
                 "n_frames", "offset", "duration_s"]


class FeatureStoreError(ValueError):
    """A feature store folder is missing files or inconsistent."""


class FeatureStore:
    """All utterances of a dataset: ``features.npy`` float16 ``(total_frames, n_mels)`` + ``index.csv``.

    Row ``i`` of the index is utterance ``i``; its frames are ``features[offset:offset+n_frames]``.
    Columns: ``utt_id, image_idx, caption_idx, voice, condition, split, text, n_frames, offset,
    duration_s`` (``split`` is the image's split, so rows can be selected without the dataset).
    """

    def __init__(self, root: Path, features: np.ndarray, index) -> None:
        self.root = Path(root)
        self.features = features
        self.index = index
        # plain arrays: get() is called per training sample, pandas row access would dominate
        self._offsets = index["offset"].to_numpy(dtype=np.int64)
        self._n_frames = index["n_frames"].to_numpy(dtype=np.int64)

    @classmethod
    def open(cls, root: str | Path) -> "FeatureStore":
        """Open (memory-mapped) a finished store; raises :class:`FeatureStoreError` naming the problem."""
        import pandas as pd

        root = Path(root)
        fpath, ipath = root / "features.npy", root / "index.csv"
        for p in (fpath, ipath):
            if not p.is_file():
                raise FeatureStoreError(f"{p}: missing (feature store not built or incomplete)")
        try:  # never unpickles: object arrays are refused (allow_pickle=False)
            features = np.load(fpath, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise FeatureStoreError(f"{fpath}: not a readable .npy feature array ({exc})") from None
        try:
            index = pd.read_csv(ipath, keep_default_na=False, encoding="utf-8-sig",
                                dtype={"text": str, "voice": str, "utt_id": str})
        except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise FeatureStoreError(f"{ipath}: not a readable index ({first})") from None
        missing = [c for c in INDEX_COLUMNS if c not in index.columns]
        if missing:
            raise FeatureStoreError(f"{ipath}: missing columns {missing}")
        for col in ("n_frames", "offset"):
            if len(index) and (not pd.api.types.is_integer_dtype(index[col]) or int(index[col].min()) < 0):
                raise FeatureStoreError(f"{ipath}: column {col!r} must hold non-negative integers")
        total = int(index["n_frames"].sum())
        if features.ndim != 2 or features.shape[0] != total:
            raise FeatureStoreError(f"{fpath}: shape {features.shape} does not match {ipath} "
                                    f"({total} frames in {len(index)} rows)")
        if len(index) and int((index["offset"] + index["n_frames"]).max()) > total:
            raise FeatureStoreError(f"{ipath}: offsets point past the end of {fpath.name} ({total} frames)")
        return cls(root, features, index)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def n_mels(self) -> int:
        return int(self.features.shape[1])

    def get(self, i: int) -> np.ndarray:
        """Log-mel features of utterance ``i`` (row position): float32 ``(n_mels, T)``."""
        off, n = int(self._offsets[i]), int(self._n_frames[i])
        return np.asarray(self.features[off:off + n], dtype=np.float32).T.copy()

    def rows(self, condition: str | None = None, split: str | None = None,
             image_indices: Iterable[int] | None = None):
        """Index rows (pandas DataFrame, original row positions kept as the index) filtered by
        ``condition`` ("seen" / "unseen"), image ``split`` ("train" / "test") and image indices."""
        df = self.index
        if condition is not None:
            df = df[df["condition"] == condition]
        if split is not None:
            df = df[df["split"] == split]
        if image_indices is not None:
            df = df[df["image_idx"].isin(list(image_indices))]
        return df

    def _json(self, name: str) -> dict:
        p = self.root / name
        if not p.is_file():
            return {}
        try:
            return json.loads(p.read_text(encoding="utf-8-sig"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise FeatureStoreError(f"{p}: invalid JSON ({exc})") from None

    @property
    def voices(self) -> dict:
        return self._json("voices.json")

    @property
    def info(self) -> dict:
        return self._json("config.json")

    def hours(self) -> float:
        return float(self.index["duration_s"].sum()) / 3600.0


class FeatureStoreWriter:
    """Append utterances, then :meth:`finalize` writes ``features.npy`` and ``index.csv``.

    Frames stream to a raw temporary file (a large dataset does not have to fit in memory);
    the final files appear by atomic renames, ``index.csv`` last, so :meth:`FeatureStore.open`
    never sees a half-written store. Build inside a staging folder for full atomicity.
    """

    def __init__(self, root: str | Path, n_mels: int = 40) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.n_mels = n_mels
        self._raw_path = self.root / ".features.f16.tmp"
        self._raw = open(self._raw_path, "wb")
        self._rows: list[dict] = []
        self._offset = 0

    def add(self, feat: np.ndarray, **row) -> None:
        """Append one utterance ``(n_mels, T)`` with its index fields (``utt_id``, ``image_idx``, ...)."""
        if feat.ndim != 2 or feat.shape[0] != self.n_mels:
            raise ValueError(f"expected features of shape ({self.n_mels}, T), got {feat.shape}")
        frames = np.ascontiguousarray(feat.T, dtype=np.float16)
        self._raw.write(frames.tobytes())
        self._rows.append({**row, "n_frames": frames.shape[0], "offset": self._offset})
        self._offset += frames.shape[0]

    def __len__(self) -> int:
        return len(self._rows)

    def finalize(self) -> FeatureStore:
        import pandas as pd

        self._raw.close()
        # memory-mapped: pages stream from disk to disk, nothing large is held in memory
        raw = np.memmap(self._raw_path, dtype=np.float16, mode="r", shape=(self._offset, self.n_mels)) \
            if self._offset else np.zeros((0, self.n_mels), np.float16)
        tmp_npy = self.root / ".features.npy.tmp"
        with open(tmp_npy, "wb") as f:
            np.lib.format.write_array(f, raw)
        del raw
        os.replace(tmp_npy, self.root / "features.npy")
        self._raw_path.unlink(missing_ok=True)
        index = pd.DataFrame(self._rows)
        for col in INDEX_COLUMNS:
            if col not in index.columns:
                index[col] = ""
        tmp_csv = self.root / ".index.csv.tmp"
        index[INDEX_COLUMNS].to_csv(tmp_csv, index=False)
        os.replace(tmp_csv, self.root / "index.csv")
        return FeatureStore.open(self.root)

    def abort(self) -> None:
        self._raw.close()
        self._raw_path.unlink(missing_ok=True)


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)  # parallelism is across processes


def worker_pool(workers: int, mp_context: str | None = None):
    """A process pool whose workers run torch on one thread each.

    Default start method: "fork" on Linux (workers start in milliseconds instead of re-importing
    torch; they set one thread before any work), "spawn" elsewhere. Scripts using "spawn" need the
    ``if __name__ == "__main__":`` guard.
    """
    import multiprocessing as mp
    import sys

    method = mp_context or ("fork" if sys.platform.startswith("linux") else "spawn")
    return mp.get_context(method).Pool(workers, initializer=_one_thread)


def clear_partial(final: str | Path) -> None:
    """Remove a leftover ``<final>.partial`` folder from an interrupted build."""
    partial = Path(final).with_name(Path(final).name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
