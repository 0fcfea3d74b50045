"""Speech perturbations on known signals: exact SNR, pitch-preserving rate change, a longer decay
under reverberation, determinism under the seed, clear errors."""
from __future__ import annotations

import numpy as np
import pytest

from s2ilib.speech import perturb
from s2ilib.speech.audio import AudioError

SR = 16000


def _tone(freq: float = 220.0, seconds: float = 1.0, amp: float = 0.1) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _speechlike(seed: int, seconds: float = 1.2) -> np.ndarray:
    """A babble source: amplitude-modulated harmonics with pauses, like a voiced utterance."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    f0 = rng.uniform(100, 200)
    wave = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    envelope = np.clip(np.sin(2 * np.pi * rng.uniform(2, 5) * t), 0, None)
    return (0.2 * wave * envelope).astype(np.float32)


def _dominant_hz(wave: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / SR)[np.argmax(spec)])


OTHERS = [_speechlike(s) for s in range(6)]


@pytest.mark.parametrize("kind", perturb.NOISE_KINDS)
@pytest.mark.parametrize("snr", [20, 10, 5, 0])
def test_noise_is_added_at_the_target_snr(kind, snr):
    clean = _speechlike(99)
    noisy = perturb.add_noise(clean, kind, snr, seed=3, others=OTHERS)
    added = noisy.astype(np.float64) - clean
    measured = perturb.snr_db(clean, added)
    assert abs(measured - snr) < 0.5, f"{kind} at {snr} dB measured {measured:.3f} dB"
    assert abs(measured - snr) < 0.01  # rescaled after the library: exact to rounding
    assert noisy.dtype == np.float32 and noisy.shape == clean.shape


def test_pink_noise_has_more_low_than_high_frequency_power():
    n = perturb.color_noise(SR * 2, "pink", seed=1)
    w = perturb.color_noise(SR * 2, "white", seed=1)
    f = np.fft.rfftfreq(len(n), 1 / SR)

    def ratio(x):
        p = np.abs(np.fft.rfft(x)) ** 2
        return p[(f > 100) & (f < 400)].mean() / p[(f > 3200) & (f < 6400)].mean()

    assert ratio(n) > 4 * ratio(w)  # -3 dB/octave over 3 octaves: about 8x; white: about 1x
    assert abs(perturb.power(n) - 1) < 1e-3


@pytest.mark.parametrize("rate", perturb.RATES)
def test_rate_change_scales_duration_and_keeps_pitch(rate):
    clean = _tone(440.0, seconds=1.0)
    out = perturb.change_rate(clean, rate)
    assert abs(len(out) - len(clean) / rate) <= 0.01 * len(clean)
    middle = out[len(out) // 4: 3 * len(out) // 4]
    assert abs(_dominant_hz(middle) - 440.0) < 5.0  # a resampling speed-up would move it by 20%


def _decay_time(wave: np.ndarray, drop_db: float = 30.0) -> float:
    """Seconds from the peak until the remaining energy is ``drop_db`` below the energy at the peak."""
    start = int(np.argmax(np.abs(wave)))
    energy = np.cumsum(np.square(wave[start:].astype(np.float64))[::-1])[::-1]
    edc = 10 * np.log10(energy / energy[0] + 1e-30)
    return float(np.argmax(edc < -drop_db)) / SR


def test_reverberation_lengthens_the_energy_decay():
    burst = _tone(500.0, seconds=0.05, amp=0.5)
    clean = np.concatenate([burst, np.zeros(SR // 2, dtype=np.float32)])
    wet = perturb.reverberate(clean, seed=2)
    assert len(wet) > len(clean)
    assert _decay_time(wet) > _decay_time(clean) + 0.05
    tail = slice(len(burst) + SR // 20, len(clean))  # 50 ms after the burst ends
    assert perturb.power(wet[tail]) > 1e3 * (perturb.power(clean[tail]) + 1e-12)


@pytest.mark.parametrize("name", ["white_10db", "pink_0db", "babble_5db", "reverb", "rate_0.8"])
def test_conditions_are_deterministic_under_the_seed(name):
    clean = _speechlike(7)
    a = perturb.apply_condition(clean, name, seed=11, others=OTHERS)
    b = perturb.apply_condition(clean, name, seed=11, others=OTHERS)
    assert np.array_equal(a, b)
    assert np.all(np.abs(a) <= 1.0)
    if name != "rate_0.8":  # the stretcher draws nothing
        c = perturb.apply_condition(clean, name, seed=12, others=OTHERS)
        assert not np.array_equal(a, c)


def test_perturbations_leave_the_global_generators_alone():
    import random

    np.random.seed(5)
    random.seed(5)
    perturb.add_noise(_tone(), "white", 10, seed=1)
    assert np.random.rand() == np.random.RandomState(5).rand()
    assert random.random() == random.Random(5).random()


def test_peak_fit_keeps_the_snr():
    clean = _tone(amp=0.9)
    raw = perturb.add_noise(clean, "white", 0, seed=1)
    fitted = perturb.apply_condition(clean, "white_0db", seed=1)
    assert np.abs(raw).max() > 1 and np.abs(fitted).max() == pytest.approx(1.0)
    scale = np.abs(raw).max()
    assert perturb.snr_db(clean / scale, fitted.astype(np.float64) - clean / scale) == pytest.approx(0.0, abs=0.01)


def test_condition_registry():
    names = perturb.condition_names()
    for name in ("clean", "white_20db", "pink_10db", "babble_5db", "reverb", "rate_0.8", "rate_1.2"):
        assert name in names
    assert perturb.condition("pink_15db").snr_db == 15.0
    assert perturb.condition("rate_0.9").rate == 0.9
    assert np.array_equal(perturb.apply_condition(_tone(), "clean", seed=0), _tone())


@pytest.mark.parametrize("bad, match", [
    (np.zeros(0, dtype=np.float32), "zero samples"),
    (np.array([0.1, np.nan, 0.2], dtype=np.float32), "NaN"),
    (np.zeros(100, dtype=np.float32), "silent"),
    (np.zeros((10, 2), dtype=np.float32), "mono"),
])
def test_bad_audio_is_refused(bad, match):
    with pytest.raises(AudioError, match=match):
        perturb.apply_condition(bad, "white_10db", seed=0)


def test_bad_conditions_are_refused():
    with pytest.raises(perturb.PerturbationError, match="unknown speech condition 'loud'"):
        perturb.apply_condition(_tone(), "loud", seed=0)
    with pytest.raises(perturb.PerturbationError, match="other utterances"):
        perturb.apply_condition(_tone(), "babble_10db", seed=0)
    with pytest.raises(perturb.PerturbationError, match="rate"):
        perturb.change_rate(_tone(), 10.0)
    with pytest.raises(perturb.PerturbationError, match="unknown noise"):
        perturb.add_noise(_tone(), "brown", 10, seed=0)
