"""Reading and writing speech waveforms, with documented fix-ups and clear errors.

Every waveform inside the library is a float32 mono NumPy array at 16 kHz in [-1, 1].

Fix-ups :func:`load_wav` applies silently (they are normal for real corpora):

* any sample rate -> ``target_sr`` with an anti-aliased windowed-sinc resampler
  (``torchaudio.functional.resample``);
* stereo / multichannel -> mono by averaging the channels;
* integer PCM -> float in [-1, 1] (soundfile does this).

Problems it refuses with :class:`AudioError` (a ``ValueError`` whose message names the file):

* missing file, empty (0-byte) file, truncated or corrupt file (whatever soundfile cannot
  decode), a file with zero samples;
* NaN or infinite samples (float wav files can hold them; features would be NaN);
* a digitally silent file (every sample exactly 0 after decoding): log-mel features of it are
  the constant floor, which would train the encoder on nothing. Quiet-but-not-silent speech
  is accepted: the features use dB relative to the utterance maximum, so level does not matter.

Short files are *not* an error here: the encoder needs at least 64 frames (0.64 s) and
:func:`s2ilib.features.logmel` pads shorter utterances (documented there).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


class AudioError(ValueError):
    """A speech file cannot be used; the message names the file and the problem."""


def resample(wave: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample a mono float waveform ``(n,)`` from ``orig_sr`` to ``target_sr`` Hz.

    Band-limited (windowed-sinc, Hann, 6 zero crossings) so content above the new Nyquist
    frequency is filtered instead of aliased. Output length is ``ceil(n * target/orig)``.
    """
    if orig_sr == target_sr:
        return np.asarray(wave, dtype=np.float32)
    import torch

    x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    with torch.no_grad():
        y = _resampler(int(orig_sr), int(target_sr))(x)
    return y.numpy().astype(np.float32, copy=False)


_RESAMPLERS: dict = {}


def _resampler(orig_sr: int, target_sr: int):
    """Cached ``torchaudio.transforms.Resample``: building the sinc kernel (e.g. 22050 -> 16000 Hz)
    costs more than applying it, so it is built once per rate pair."""
    import torchaudio

    key = (orig_sr, target_sr)
    if key not in _RESAMPLERS:
        _RESAMPLERS[key] = torchaudio.transforms.Resample(orig_sr, target_sr)
    return _RESAMPLERS[key]


def to_mono(data: np.ndarray) -> np.ndarray:
    """``(n,)`` or ``(n, channels)`` -> ``(n,)`` by averaging the channels."""
    if data.ndim == 1:
        return data
    return data.mean(axis=1)


def check_wave(wave: np.ndarray, where: str) -> None:
    """Raise :class:`AudioError` for zero samples, NaN/inf samples or digital silence."""
    if wave.size == 0:
        raise AudioError(f"{where}: the file holds zero audio samples")
    if not np.all(np.isfinite(wave)):
        n_bad = int((~np.isfinite(wave)).sum())
        raise AudioError(f"{where}: {n_bad} sample(s) are NaN or infinite")
    if not np.any(wave):
        raise AudioError(f"{where}: the audio is digitally silent (every sample is 0)")


def load_wav(path: str | Path, target_sr: int = 16000) -> np.ndarray:
    """Read a speech file as float32 mono at ``target_sr`` Hz, shape ``(n,)``.

    Raises :class:`AudioError` (naming ``path``) for missing, empty, corrupt, truncated,
    sample-less, non-finite or silent files; resamples and downmixes (see module docstring).
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: audio file is empty (0 bytes)")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=False)
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError / TypeError
        raise AudioError(f"{path}: cannot decode audio (truncated or corrupt?): {exc}") from exc
    wave = to_mono(np.asarray(data, dtype=np.float32))
    check_wave(wave, str(path))
    wave = resample(wave, int(sr), int(target_sr))
    return np.ascontiguousarray(wave, dtype=np.float32)


def save_wav(path: str | Path, wave: np.ndarray, sr: int = 16000) -> Path:
    """Write a float waveform ``(n,)`` in [-1, 1] as 16-bit PCM wav, atomically."""
    import soundfile as sf

    from s2ilib.io import atomic_path

    path = Path(path)
    clipped = np.clip(np.asarray(wave, dtype=np.float32), -1.0, 1.0)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), clipped, int(sr), subtype="PCM_16", format="WAV")
    return path


def duration_s(wave: np.ndarray, sr: int = 16000) -> float:
    """Length of a waveform in seconds."""
    return float(len(wave)) / float(sr)
