"""s2ilib.speech.audio: fix-ups (resample, downmix) and clear errors for unusable files."""
import numpy as np
import pytest
import soundfile as sf

from s2ilib.speech.audio import AudioError, load_wav, resample, save_wav
from s2ilib.speech.features import logmel


def _sine(sr, seconds=1.0, f=440.0):
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * np.pi * f * t)).astype(np.float32)


def test_round_trip_pcm16(tmp_path):
    x = _sine(16000)
    save_wav(tmp_path / "a.wav", x)
    y = load_wav(tmp_path / "a.wav")
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.abs(y - x).max() < 1e-3  # 16-bit quantisation only


def test_wrong_rate_is_resampled_with_right_duration(tmp_path):
    sf.write(tmp_path / "a.wav", _sine(44100, 1.5), 44100)
    y = load_wav(tmp_path / "a.wav")
    assert abs(len(y) - 24000) <= 1
    # the 440 Hz tone survives at the same frequency
    spec = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spec) * 16000 / len(y) - 440) < 2


def test_resample_is_anti_aliased():
    # 7.5 kHz tone at 44.1 kHz -> 8 kHz: above the new Nyquist (4 kHz), must be filtered, not folded
    y = resample(_sine(44100, 1.0, 7500), 44100, 8000)
    assert np.sqrt(np.mean(y ** 2)) < 0.01


def test_stereo_is_downmixed(tmp_path):
    x = _sine(16000)
    sf.write(tmp_path / "s.wav", np.stack([x, np.zeros_like(x)], 1), 16000)
    y = load_wav(tmp_path / "s.wav")
    assert y.ndim == 1 and np.allclose(y, x / 2, atol=1e-3)


@pytest.mark.parametrize("make,msg", [
    (lambda p: None, "not found"),
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: p.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage bytes here"), "cannot decode"),
    (lambda p: p.write_bytes(np.random.default_rng(0).bytes(500)), "cannot decode"),
])
def test_bad_files_raise_naming_the_file(tmp_path, make, msg):
    p = tmp_path / "bad.wav"
    make(p)
    with pytest.raises(AudioError, match=msg) as e:
        load_wav(p)
    assert str(p) in str(e.value)


def test_truncated_file(tmp_path):
    p = tmp_path / "t.wav"
    save_wav(p, _sine(16000))
    p.write_bytes(p.read_bytes()[:30])  # header cut in the middle
    with pytest.raises(AudioError, match=str(p)):
        load_wav(p)


def test_nan_zero_length_and_silence_are_errors(tmp_path):
    x = _sine(16000)
    x[100] = np.nan
    sf.write(tmp_path / "n.wav", x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        load_wav(tmp_path / "n.wav")
    sf.write(tmp_path / "z.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="zero audio samples"):
        load_wav(tmp_path / "z.wav")
    sf.write(tmp_path / "s.wav", np.zeros(8000, np.float32), 16000)
    with pytest.raises(AudioError, match="silent"):
        load_wav(tmp_path / "s.wav")


def test_too_short_is_padded_by_features(tmp_path):
    sf.write(tmp_path / "short.wav", _sine(16000, 0.2), 16000)
    y = load_wav(tmp_path / "short.wav")  # not an error
    f = logmel(y)
    assert f.shape == (40, 64)
    assert np.all(f[:, 30:] == f.min())  # padded with the utterance minimum
