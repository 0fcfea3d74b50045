"""Speech the encoders never heard: additive noise at an exact SNR, reverberation, speaking rate.

Every function takes and returns a float32 mono waveform ``(n,)`` at ``sr`` Hz (16 kHz in the
study) and is deterministic under ``seed``: the same seed gives the same samples, bit for bit.

* **Noise** (:func:`add_noise`): white and pink noise from ``audiomentations.AddColorNoise``
  (pink: -3.01 dB/octave); babble made here from other utterances (``AddBackgroundNoise`` reads
  noise from files only). The SNR is relative to the clean signal's power over the whole
  utterance, ``10 log10(mean(clean^2) / mean(noise^2))``, and exact: the noise is rescaled after
  the library made it, so the measured SNR equals the target to float32 rounding (the tests
  hold it within 0.5 dB).
* **Reverberation** (:func:`reverberate`): ``audiomentations.RoomSimulator`` (an image-source
  room impulse response from ``pyroomacoustics``) in a fixed shoebox room with a nominal RT60
  of 0.5 s (truncated by the image-source order, see :func:`room_impulse_response`); source and
  microphone positions are drawn from ``seed``. The output keeps the reverberant tail.
* **Speaking rate** (:func:`change_rate`): ``audiomentations.TimeStretch`` with the
  Signalsmith stretcher, which keeps the pitch; rate 0.8 is slower speech, ``n / 0.8`` samples.

:data:`CONDITIONS` names the conditions a notebook loops over (``clean``, ``white_20db``,
``pink_10db``, ``babble_5db``, ``reverb``, ``rate_0.8``, ...); :func:`apply_condition` applies one
by name and scales the result into [-1, 1] when noise or reverberation pushed its peak above 1
(both parts scale together, so the SNR is unchanged; the features are level-invariant).
Bad input (no samples, NaN / inf, digital silence, an unknown condition) raises
:class:`s2ilib.speech.audio.AudioError` or :class:`PerturbationError` naming the problem.
"""
from __future__ import annotations

import contextlib
import functools
import random
import re
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from s2ilib.speech.audio import AudioError, check_waveform

SR = 16000
NOISE_KINDS = ("white", "pink", "babble")
SNRS_DB = (20, 10, 5, 0)
RATES = (0.8, 1.2)
PINK_DECAY_DB_PER_OCTAVE = -3.01
BABBLE_TALKERS = 4  # the paper's babble: a few simultaneous talkers, no single one intelligible
ROOM_SIZE_M = (5.0, 4.0, 3.0)
RT60_S = 0.5
MAX_ORDER = 12  # image-source order: 12 costs about 1 s, 16 over a minute on 2 cores


class PerturbationError(ValueError):
    """A perturbation cannot be applied (unknown condition, bad parameter, no babble sources)."""


@contextlib.contextmanager
def _seeded(seed: int):
    """audiomentations draws from the global ``random`` and ``numpy.random`` generators: seed both
    for the call and restore them after, so a perturbation neither depends on nor disturbs them."""
    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def _checked(wave: np.ndarray, what: str) -> np.ndarray:
    wave = np.asarray(wave)
    if wave.ndim != 1:
        raise AudioError(f"{what}: expected a mono waveform (n,), got shape {wave.shape}")
    check_waveform(wave, 1, what)
    return wave.astype(np.float32, copy=False)


def power(wave: np.ndarray) -> float:
    """Mean square of a waveform (float64)."""
    return float(np.mean(np.square(wave, dtype=np.float64)))


def snr_db(clean: np.ndarray, noise: np.ndarray) -> float:
    """``10 log10(mean(clean^2) / mean(noise^2))`` in dB; ``noise`` is what was added."""
    return 10.0 * np.log10(power(clean) / power(noise))


def _scaled_to_snr(clean: np.ndarray, noise: np.ndarray, snr: float) -> np.ndarray:
    """``noise`` rescaled so that ``clean`` over it is ``snr`` dB (float64 arithmetic)."""
    p_noise = power(noise)
    if p_noise == 0.0:
        raise PerturbationError("the noise is silent; cannot set an SNR")
    gain = np.sqrt(power(clean) / (p_noise * 10.0 ** (snr / 10.0)))
    return (noise.astype(np.float64) * gain).astype(np.float32)


def color_noise(n: int, kind: str, seed: int, sr: int = SR) -> np.ndarray:
    """Unit-power white or pink noise ``(n,)`` from ``audiomentations.AddColorNoise``."""
    from audiomentations import AddColorNoise

    decay = {"white": 0.0, "pink": PINK_DECAY_DB_PER_OCTAVE}.get(kind)
    if decay is None:
        raise PerturbationError(f"unknown colour of noise {kind!r}; known: white, pink")
    # the transform adds noise with the clean signal's RMS at 0 dB; on a constant signal of ones
    # the added part is exactly that noise (unit RMS)
    ones = np.ones(n, dtype=np.float32)
    aug = AddColorNoise(min_snr_db=0.0, max_snr_db=0.0, min_f_decay=decay, max_f_decay=decay,
                        p_apply_a_weighting=0.0, p=1.0)
    with _seeded(seed):
        noise = aug(samples=ones, sample_rate=sr) - ones
    return noise / np.sqrt(power(noise))


def babble(n: int, others: Sequence[np.ndarray], seed: int, talkers: int = BABBLE_TALKERS) -> np.ndarray:
    """Babble ``(n,)``: ``talkers`` utterances from ``others`` (drawn with ``seed``), each at unit
    power, looped to ``n`` samples from a random start, and summed."""
    pool = [np.asarray(o, dtype=np.float32) for o in others]
    if not pool:
        raise PerturbationError("babble needs other utterances (others=[...]); none were given")
    for k, o in enumerate(pool):
        _checked(o, f"babble source {k}")
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(pool), size=talkers, replace=len(pool) < talkers)
    out = np.zeros(n, dtype=np.float64)
    for k in picks:
        src = pool[int(k)] / np.sqrt(power(pool[int(k)]))
        start = int(rng.integers(len(src)))
        out += np.resize(np.roll(src, -start), n)  # np.resize repeats the utterance when it is short
    return out.astype(np.float32)


def add_noise(clean: np.ndarray, kind: str, snr: float, seed: int, sr: int = SR,
              others: Sequence[np.ndarray] = ()) -> np.ndarray:
    """``clean`` ``(n,)`` plus ``kind`` noise (white / pink / babble from ``others``) at exactly
    ``snr`` dB below the clean signal's power. Not rescaled: the peak may exceed 1."""
    clean = _checked(clean, "clean speech")
    if not np.isfinite(snr):
        raise PerturbationError(f"SNR must be a finite number of dB, got {snr!r}")
    if kind == "babble":
        noise = babble(len(clean), others, seed)
    elif kind in ("white", "pink"):
        noise = color_noise(len(clean), kind, seed, sr)
    else:
        raise PerturbationError(f"unknown noise {kind!r}; known: {', '.join(NOISE_KINDS)}")
    return (clean.astype(np.float64) + _scaled_to_snr(clean, noise, snr)).astype(np.float32)


@functools.lru_cache(maxsize=16)
def room_impulse_response(seed: int, sr: int = SR, rt60: float = RT60_S,
                          room: tuple[float, float, float] = ROOM_SIZE_M) -> np.ndarray:
    """Impulse response ``(m,)`` of one simulated room from ``audiomentations.RoomSimulator``
    (image sources, ``pyroomacoustics``): fixed shoebox size, absorption for the target RT60 by
    Sabine's formula, source and microphone positions drawn from ``seed``. Cached per argument
    set: the simulation costs about 1 s, the convolution milliseconds.

    The image-source order is capped at :data:`MAX_ORDER` (each further order costs much more),
    which truncates the late tail: at the defaults the energy decays 30 dB in about 0.14 s, not the
    nominal 0.5 s -- a moderately reverberant room, not a hall."""
    from audiomentations import RoomSimulator

    x, y, z = room
    aug = RoomSimulator(min_size_x=x, max_size_x=x, min_size_y=y, max_size_y=y, min_size_z=z, max_size_z=z,
                        calculation_mode="rt60", min_target_rt60=rt60, max_target_rt60=rt60,
                        min_source_x=0.5, max_source_x=x - 0.5, min_source_y=0.5, max_source_y=y - 0.5,
                        min_mic_distance=1.0, max_mic_distance=2.0, min_mic_elevation=-0.3,
                        max_mic_elevation=0.3, use_ray_tracing=False, max_order=MAX_ORDER,
                        leave_length_unchanged=False, p=1.0)
    impulse = np.zeros(sr // 10, dtype=np.float32)
    impulse[0] = 1.0
    with _seeded(seed):
        aug(samples=impulse, sample_rate=sr)
    rir = np.asarray(aug.room.rir[0][0], dtype=np.float32)
    rir.setflags(write=False)  # shared by the cache
    return rir


def reverberate(clean: np.ndarray, seed: int, sr: int = SR, rt60: float = RT60_S) -> np.ndarray:
    """``clean`` ``(n,)`` in a simulated room (:func:`room_impulse_response`): ``(n + m - 1,)``,
    the reverberant tail kept."""
    from scipy.signal import fftconvolve

    clean = _checked(clean, "clean speech")
    if not 0.05 <= rt60 <= 3.0:
        raise PerturbationError(f"rt60 {rt60} s is outside 0.05-3 s")
    rir = room_impulse_response(int(seed), int(sr), float(rt60))
    return fftconvolve(clean.astype(np.float64), rir.astype(np.float64)).astype(np.float32)


def change_rate(clean: np.ndarray, rate: float, sr: int = SR) -> np.ndarray:
    """Speaking rate times ``rate`` with the pitch kept (Signalsmith stretch): about
    ``n / rate`` samples. Deterministic (the stretcher draws nothing)."""
    from audiomentations import TimeStretch

    clean = _checked(clean, "clean speech")
    if not 0.25 <= rate <= 4.0:
        raise PerturbationError(f"rate {rate} is outside 0.25-4")
    aug = TimeStretch(min_rate=rate, max_rate=rate, leave_length_unchanged=False,
                      method="signalsmith_stretch", p=1.0)
    with _seeded(0):
        out = aug(samples=clean, sample_rate=sr)
    return np.asarray(out, dtype=np.float32)


def fit_peak(wave: np.ndarray) -> np.ndarray:
    """``wave`` scaled by 1 / peak when its peak exceeds 1 (else unchanged)."""
    peak = float(np.max(np.abs(wave)))
    return (wave / peak).astype(np.float32) if peak > 1.0 else wave


# ------------------------------------------------------------------------------------------------
# the conditions a notebook loops over


@dataclass(frozen=True)
class Condition:
    """One named condition: ``family`` (clean / noise / reverb / rate) and its parameters."""

    name: str
    family: str
    noise: str | None = None
    snr_db: float | None = None
    rate: float | None = None

    @property
    def needs_others(self) -> bool:
        """Babble needs other utterances of the same split."""
        return self.noise == "babble"


def _build_conditions() -> dict[str, Condition]:
    conds = {"clean": Condition("clean", "clean")}
    for kind in NOISE_KINDS:
        for snr in SNRS_DB:
            conds[f"{kind}_{snr}db"] = Condition(f"{kind}_{snr}db", "noise", noise=kind, snr_db=float(snr))
    conds["reverb"] = Condition("reverb", "reverb")
    for rate in RATES:
        conds[f"rate_{rate}"] = Condition(f"rate_{rate}", "rate", rate=rate)
    return conds


CONDITIONS: dict[str, Condition] = _build_conditions()
_NAME = re.compile(r"^(white|pink|babble)_(-?\d+(?:\.\d+)?)db$|^rate_(\d+(?:\.\d+)?)$")


def condition(name: str) -> Condition:
    """The :class:`Condition` called ``name``: a registered one, or any ``<noise>_<snr>db`` /
    ``rate_<r>`` (``pink_15db``, ``rate_0.9``). Unknown names raise :class:`PerturbationError`."""
    if name in CONDITIONS:
        return CONDITIONS[name]
    m = _NAME.match(str(name))
    if m is None:
        raise PerturbationError(f"unknown speech condition {name!r}; known: {', '.join(CONDITIONS)} "
                                "(or <white|pink|babble>_<snr>db, rate_<r>)")
    if m.group(1):
        return Condition(name, "noise", noise=m.group(1), snr_db=float(m.group(2)))
    return Condition(name, "rate", rate=float(m.group(3)))


def condition_names(families: Sequence[str] = ("clean", "noise", "reverb", "rate")) -> list[str]:
    """Registered condition names of the given families, in registry order."""
    return [n for n, c in CONDITIONS.items() if c.family in families]


def apply_condition(wave: np.ndarray, name: str, seed: int, sr: int = SR,
                    others: Sequence[np.ndarray] = ()) -> np.ndarray:
    """``wave`` ``(n,)`` under condition ``name`` (see :data:`CONDITIONS`), peak fitted into [-1, 1].

    ``seed`` decides the noise, babble talkers and room; ``others``: babble sources (other
    utterances, not ``wave`` itself)."""
    cond = condition(name)
    wave = _checked(wave, f"speech for condition {name!r}")
    fns: dict[str, Callable[[], np.ndarray]] = {
        "clean": lambda: wave,
        "noise": lambda: add_noise(wave, cond.noise, cond.snr_db, seed, sr, others),
        "reverb": lambda: reverberate(wave, seed, sr),
        "rate": lambda: change_rate(wave, cond.rate, sr),
    }
    return fit_peak(fns[cond.family]())
