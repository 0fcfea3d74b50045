"""The two-stage cascade's first half: ASR transcripts of the evaluation queries (cached on disk,
keyed by audio content and ASR settings) and their encoding with a trained text encoder.

A method whose registry ``query`` is ``asr`` is conditioned through these functions.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from s2ilib.core.io import atomic_write_text
from s2ilib.evaluation.queries import EvaluationError


TRANSCRIPT_COLUMNS = ("utt_id", "reference", "transcript", "audio_key", "asr_key")


def _read_transcripts(path: Path) -> dict[str, dict[str, str]]:
    """utt_id -> {"transcript", "audio_key", "asr_key"} of a transcript cache (older caches lack the keys)."""
    import pandas as pd

    if not path.is_file():
        return {}
    df = pd.read_csv(path, keep_default_na=False, dtype=str)
    if "utt_id" not in df or "transcript" not in df:
        raise EvaluationError(f"{path}: not a transcript cache (columns {list(df.columns)}); delete it to redo the ASR")
    get = lambda col: df[col] if col in df else [""] * len(df)
    return {u: {"transcript": t, "audio_key": a, "asr_key": k}
            for u, t, a, k in zip(df["utt_id"], df["transcript"], get("audio_key"), get("asr_key"))}


def _write_transcripts(path: Path, cache: dict[str, dict[str, str]], refs: dict[str, str]) -> None:
    import pandas as pd

    df = pd.DataFrame({"utt_id": list(cache), "reference": [refs.get(u, "") for u in cache],
                       **{c: [e[c] for e in cache.values()] for c in TRANSCRIPT_COLUMNS[2:]}})
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, df.to_csv(index=False))


def asr_cache_key(transcriber: Any = None) -> str:
    """Model and decoding settings of ``transcriber`` (default: a default Whisper Transcriber)."""
    if transcriber is None:
        from s2ilib.speech.asr import default_cache_key

        return default_cache_key()
    key = getattr(transcriber, "cache_key", None)
    return str(key) if key else f"{type(transcriber).__module__}.{type(transcriber).__qualname__}"


def utterance_audio_key(ds, row: int, wave: np.ndarray | None = None) -> str:
    """Content hash of utterance ``row``: its stored log-mel features when the dataset has a speech
    store (no re-synthesis needed), else the waveform ``wave``."""
    import hashlib

    speech = getattr(ds, "speech", None)
    if speech is not None and hasattr(speech, "get"):
        feat = np.ascontiguousarray(speech.get(int(row)))
        return "feat:" + hashlib.sha256(str(feat.shape).encode() + feat.tobytes()).hexdigest()[:24]
    if wave is None:
        raise ValueError("utterance_audio_key: the dataset has no speech store; pass the wave")
    from s2ilib.speech.asr import wave_hash

    return "wave:" + wave_hash(wave)


def transcribe_queries(ds, queries, cache_path: str | Path, transcriber: Any = None,
                       speak: Callable[[Any, int], np.ndarray] | None = None, progress: bool = True,
                       save_every: int = 50) -> list[str]:
    """ASR transcripts of the queries' utterances, cached in a CSV (utt_id, reference, transcript,
    audio_key, asr_key).

    The waves are re-synthesised deterministically (``speak(ds, store_row)``, default
    :func:`s2ilib.data.spoken.speak_utterance`) since the store keeps only features. ``transcriber``
    needs ``transcribe(wave (T,) float32 16 kHz) -> str`` (default: a Whisper
    :class:`s2ilib.speech.asr.Transcriber`, built only if something is missing from the cache). A cached
    transcript is reused only for the same audio content (:func:`utterance_audio_key`) and the same
    ASR model and decoding settings (:func:`asr_cache_key`), so identical runs give identical
    transcripts. The cache is saved every ``save_every`` utterances, so an interrupted run resumes.
    """
    from tqdm.auto import tqdm

    cache_path = Path(cache_path)
    cache = _read_transcripts(cache_path)
    refs = dict(zip(queries["utt_id"].astype(str), queries["text"].astype(str)))
    asr_key = asr_cache_key(transcriber)
    has_store = getattr(getattr(ds, "speech", None), "get", None) is not None
    if speak is None:
        from s2ilib.data.spoken import speak_utterance as speak
    todo, waves = [], {}
    for utt, row in dict.fromkeys((str(u), int(r)) for u, r in zip(queries["utt_id"], queries["row"])):
        # a repeated query (images_per_caption > 1) is transcribed once
        if not has_store:
            waves[utt] = speak(ds, row)
        audio = utterance_audio_key(ds, row, waves.get(utt))
        hit = cache.get(utt)
        if hit is None or hit["audio_key"] != audio or hit["asr_key"] != asr_key:
            todo.append((utt, row, audio))
    if todo:
        if transcriber is None:
            from s2ilib.speech.asr import Transcriber

            transcriber = Transcriber()
        for k, (utt, row, audio) in enumerate(tqdm(todo, desc="asr", unit="utt", disable=not progress)):
            wave = waves.pop(utt) if utt in waves else speak(ds, row)
            cache[utt] = {"transcript": transcriber.transcribe(wave), "audio_key": audio, "asr_key": asr_key}
            if save_every and (k + 1) % save_every == 0:
                _write_transcripts(cache_path, cache, refs)
        _write_transcripts(cache_path, cache, refs)
    return [cache[str(u)]["transcript"] for u in queries["utt_id"]]


def encode_texts(model: torch.nn.Module, tokenizer: Any, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """Texts -> (N, D) float32 with a trained ``text_ts`` encoder and its tokenizer."""
    model.eval()
    dev = next(model.parameters()).device
    out = []
    for s in range(0, len(texts), batch_size):
        tokens, lengths = tokenizer.batch(list(texts[s:s + batch_size]))
        out.append(model(tokens.to(dev), lengths).float().cpu())
    if not out:
        return torch.zeros(0, getattr(model, "out_dim", 0))
    return torch.cat(out)
