"""s2ilib.speech.features: log-mel parameters and the FeatureStore."""
import math

import numpy as np
import pytest

from s2ilib.speech.features import FeatureStore, FeatureStoreError, FeatureStoreWriter, logmel, preprocess


def _tone(f, seconds=1.0, sr=16000):
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * np.pi * f * t)).astype(np.float32)


def test_shape_and_frame_rate():
    for seconds in (1.0, 2.37):
        f = logmel(_tone(300, seconds) + 0.01)
        assert f.shape[0] == 40 and f.dtype == np.float32
        assert abs(f.shape[1] - seconds * 100) <= 2  # 10 ms frames
    # dB relative to the maximum (0 up to float32 rounding: -2.4e-7 with ATen capped to its default kernels), 80 dB floor
    assert abs(f.max()) <= 1e-5 and f.min() >= -80.0 - 1e-5


def _slaney_mel(f):
    f = np.asarray(f, dtype=float)
    lin = f / (200.0 / 3)
    return np.where(f < 1000, lin, 15 + np.log(np.maximum(f, 1e-9) / 1000) / (np.log(6.4) / 27))


def test_1khz_tone_peaks_in_the_right_band():
    # band centres: 42 points equally spaced on the Slaney mel scale between 20 Hz and 8 kHz
    centres = np.linspace(_slaney_mel(20.0), _slaney_mel(8000.0), 42)[1:-1]
    for freq in (1000.0, 3000.0):
        expected = int(np.argmin(np.abs(centres - _slaney_mel(freq))))
        band = int(logmel(_tone(freq)).mean(axis=1).argmax())
        assert band == expected, (freq, band, expected)


def test_dc_removal_and_preemphasis():
    x = _tone(300) + 0.7  # large DC offset
    y = preprocess(x)
    assert abs(y.mean()) < 0.01
    np.testing.assert_allclose(logmel(x), logmel(x - 0.7), atol=1e-3)
    # pre-emphasis lifts high frequencies relative to low ones by about 1 - 0.97 cos(w)
    lo, hi = _tone(200), _tone(4000)
    gain = lambda f: 20 * math.log10(abs(1 - 0.97 * np.exp(-2j * np.pi * f / 16000)))  # noqa: E731
    r = np.sqrt(np.mean(preprocess(hi) ** 2)) / np.sqrt(np.mean(preprocess(lo) ** 2))
    assert abs(20 * math.log10(r) - (gain(4000) - gain(200))) < 0.5


def test_level_invariance_and_min_frames():
    x = _tone(500, 0.3) + 0.01 * np.random.default_rng(0).standard_normal(4800).astype(np.float32)
    # away from the padding (where the 1e-10 power floor differs with level) only the shape matters
    np.testing.assert_allclose(logmel(x)[:, 1:29], logmel(0.1 * x)[:, 1:29], atol=1e-2)
    f = logmel(x, min_frames=64)
    assert f.shape == (40, 64) and np.all(f[:, 40:] == f.min())


def test_wrong_rate_rejected():
    with pytest.raises(ValueError, match="16000"):
        logmel(_tone(300), sr=8000)


def test_feature_store_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    feats = [rng.uniform(-80, 0, (40, n)).astype(np.float32) for n in (64, 100, 77)]
    w = FeatureStoreWriter(tmp_path / "store")
    for k, f in enumerate(feats):
        w.add(f, utt_id=f"u{k}", image_idx=k // 2, caption_idx=k % 2, voice="v", condition=["seen", "unseen"][k == 2],
              split=["train", "test"][k >= 1], text=f"caption, with comma {k}", duration_s=f.shape[1] / 100)
    store = w.finalize()
    assert len(store) == 3 and store.features.dtype == np.float16 and store.features.shape == (241, 40)
    again = FeatureStore.open(tmp_path / "store")
    for k, f in enumerate(feats):
        g = again.get(k)
        assert g.shape == f.shape and g.dtype == np.float32
        np.testing.assert_allclose(g, f, atol=0.05)  # float16
    assert list(again.rows(condition="unseen").index) == [2]
    assert list(again.rows(split="test").index) == [1, 2]
    assert list(again.rows(image_indices=[0]).index) == [0, 1]
    assert again.index.loc[0, "text"] == "caption, with comma 0"
    assert not list((tmp_path / "store").glob(".*tmp"))


def test_incomplete_store_is_an_error(tmp_path):
    with pytest.raises(FeatureStoreError, match="features.npy"):
        FeatureStore.open(tmp_path)
    w = FeatureStoreWriter(tmp_path / "s")
    w.add(np.zeros((40, 64), np.float32), utt_id="a", image_idx=0, caption_idx=0, voice="v", condition="seen",
          split="train", text="t", duration_s=0.6)
    w.finalize()
    np.save(tmp_path / "s" / "features.npy", np.zeros((10, 40), np.float16))
    with pytest.raises(FeatureStoreError, match="does not match"):
        FeatureStore.open(tmp_path / "s")
