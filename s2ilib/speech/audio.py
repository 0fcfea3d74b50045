"""Reading and writing speech waveforms, with documented fix-ups and clear errors.

Every waveform inside the library is a float32 mono NumPy array at 16 kHz in [-1, 1].

Fix-ups :func:`load_wav` applies silently (they are normal for real corpora):

* any sample rate -> ``target_sr`` with an anti-aliased windowed-sinc resampler
  (``torchaudio.functional.resample``);
* stereo / multichannel -> mono by averaging the channels;
* integer PCM -> float in [-1, 1] (soundfile does this).

Problems it refuses with :class:`AudioError` (a ``ValueError`` whose message names the file):

* missing file, a directory, empty (0-byte) file, corrupt file (whatever soundfile cannot
  decode), a file with zero samples;
* a truncated RIFF/WAVE file: its ``data`` chunk declares more bytes than the file holds
  (soundfile would silently read the part that is there). Streamed files whose header leaves
  the size open (0 or 0xFFFFFFFF) are read as they are;
* NaN or infinite samples (float wav files can hold them; features would be NaN);
* a digitally silent file (every sample exactly 0 after decoding): log-mel features of it are
  the constant floor, which would train the encoder on nothing. Quiet-but-not-silent speech
  is accepted: the features use dB relative to the utterance maximum, so level does not matter.
  A multichannel file whose channels cancel when averaged to mono (the downmix peaks 60 dB
  or more below the channels) is refused with that reason.

The same rule applies to synthesised speech: :func:`check_waveform` is what :mod:`s2ilib.speech.tts`
calls on every utterance, so ``s2i generate --say`` refuses what ``--wav`` refuses.
:func:`save_wav` raises :class:`AudioError` naming the file and the OS problem (read-only
folder, full disk) instead of libsndfile's bare "System error".

Short files are *not* an error here: the encoder needs at least 64 frames (0.64 s) and
:func:`s2ilib.speech.features.logmel` pads shorter utterances (documented there).
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np


# A multichannel file whose downmix peaks this far (-60 dB) below its channels' peak has channels
# that cancel (one polarity-inverted copy of another, up to integer rounding): refused.
CANCEL_RATIO = 1e-3


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


def check_waveform(samples: np.ndarray, sr: int, source: str, min_seconds: float = 0.0) -> None:
    """Raise :class:`AudioError` naming ``source`` for zero samples, NaN/inf samples, digital
    silence, or (``min_seconds`` > 0) audio shorter than ``min_seconds``.

    ``samples``: ``(n,)`` mono or ``(n, channels)``; a multichannel signal whose channels cancel
    when downmixed is reported as such. The one validity rule for files and synthesised speech.
    """
    samples = np.asarray(samples)
    if samples.size == 0:
        raise AudioError(f"{source}: the audio holds zero samples")
    if not np.all(np.isfinite(samples)):
        n_bad = int((~np.isfinite(samples)).sum())
        raise AudioError(f"{source}: {n_bad} sample(s) are NaN or infinite")
    if not np.any(samples):
        raise AudioError(f"{source}: the audio is digitally silent (every sample is 0)")
    if samples.ndim == 2 and samples.shape[1] > 1:
        mono_peak = float(np.abs(to_mono(samples)).max())
        if mono_peak <= CANCEL_RATIO * float(np.abs(samples).max()):
            raise AudioError(f"{source}: the audio is silent after downmixing its {samples.shape[1]} channels "
                             "to mono: the channels cancel (e.g. one is the inverse of the other)")
    seconds = samples.shape[0] / float(sr)
    if min_seconds > 0 and seconds < min_seconds:
        raise AudioError(f"{source}: only {seconds:.3f} s of audio (at least {min_seconds:g} s needed)")


def check_wave(wave: np.ndarray, where: str) -> None:
    """Raise :class:`AudioError` for zero samples, NaN/inf samples or digital silence."""
    if wave.size == 0:
        raise AudioError(f"{where}: the file holds zero audio samples")
    check_waveform(wave, 1, where)


def _riff_data_shortfall(path: Path) -> tuple[int, int] | None:
    """(declared, present) bytes of a RIFF/WAVE ``data`` chunk that is cut short, else None.

    Walks the chunk list of a little-endian RIFF file; anything it cannot follow is left to
    soundfile. A declared size of 0 or 0xFFFFFFFF (streamed, size unknown) is not checked.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            cid, csize = struct.unpack("<4sI", f.read(8))
            if cid == b"data":
                present = size - (pos + 8)
                if csize in (0, 0xFFFFFFFF) or csize <= present:
                    return None
                return csize, present
            pos += 8 + csize + (csize & 1)
    return None


def _file_kind(path: Path) -> str:
    import stat

    mode = path.stat().st_mode
    kinds = [(stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a named pipe"),
             (stat.S_ISSOCK, "a socket")]
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def load_wav(path: str | Path, target_sr: int = 16000) -> np.ndarray:
    """Read a speech file as float32 mono at ``target_sr`` Hz, shape ``(n,)``.

    Raises :class:`AudioError` (naming ``path``) for missing, empty, corrupt, truncated,
    sample-less, non-finite or silent files; resamples and downmixes (see module docstring).
    """
    import soundfile as sf

    path = Path(path)
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    if path.exists() and not path.is_file():  # /dev/null, a FIFO, a socket
        raise AudioError(f"{path}: not a regular audio file ({_file_kind(path)})")
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: audio file is empty (0 bytes)")
    try:
        short = _riff_data_shortfall(path)
    except OSError as exc:
        raise AudioError(f"{path}: cannot read audio file ({exc.strerror or exc})") from None
    if short is not None:
        raise AudioError(f"{path}: truncated wav: the data chunk declares {short[0]} bytes but the file "
                         f"holds only {short[1]}")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=False)
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError / TypeError
        raise AudioError(f"{path}: cannot decode audio (truncated or corrupt?): {exc}") from exc
    data = np.asarray(data, dtype=np.float32)
    if data.size == 0:
        raise AudioError(f"{path}: the file holds zero audio samples")
    check_waveform(data, int(sr), str(path))
    wave = to_mono(data)
    wave = resample(wave, int(sr), int(target_sr))
    return np.ascontiguousarray(wave, dtype=np.float32)


def save_wav(path: str | Path, wave: np.ndarray, sr: int = 16000) -> Path:
    """Write a float waveform ``(n,)`` in [-1, 1] as 16-bit PCM wav, atomically.

    The wav is encoded in memory and written by Python, so a read-only folder or a full disk
    raises :class:`AudioError` naming ``path`` and the OS error (nothing half-written is left).
    """
    import io

    import soundfile as sf

    from s2ilib.core.io import atomic_path

    path = Path(path)
    clipped = np.clip(np.asarray(wave, dtype=np.float32), -1.0, 1.0)
    buf = io.BytesIO()
    try:
        sf.write(buf, clipped, int(sr), subtype="PCM_16", format="WAV")
    except (sf.SoundFileError, RuntimeError, ValueError, TypeError) as exc:
        raise AudioError(f"{path}: cannot encode wav ({exc})") from exc
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(buf.getvalue())
    except OSError as exc:
        raise AudioError(f"{path}: cannot write wav ({exc.strerror or exc})") from exc
    return path


def duration_s(wave: np.ndarray, sr: int = 16000) -> float:
    """Length of a waveform in seconds."""
    return float(len(wave)) / float(sr)
