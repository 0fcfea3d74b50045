"""Text-to-speech engines that turn captions into the study's spoken captions.

The paper spoke CUB / Oxford captions with a TTS system; here the default engine is
espeak-ng, called *in process* through ctypes from the ``espeakng-loader`` wheel (library +
voice data, no system install). A "voice" is a setting of the engine: accent x variant
(``en-gb-scotland+f2``) x speaking rate x pitch x pitch range.

Engines are pluggable: :func:`register_engine` / :func:`get_engine`. A :class:`CommandEngine`
runs a command-line synthesiser (Debian ``flite``, ``espeak-ng``) when it is installed.

Determinism: espeak-ng keeps generator state in C static variables (the pitch "flutter" phase,
a roughness cycle counter, an automatic gain) that carry over from one utterance to the next, so
the same text spoken twice differs slightly. Before each utterance :class:`EspeakEngine`
resets those variables (their addresses come from the library's ELF symbol table) and seeds the
engine's noise generator, so the samples depend only on (text, voice). If the library were
stripped, :attr:`EspeakEngine.deterministic` is False and a warning says so.

espeak-ng is not thread-safe: one engine per process (the library state is global); run
utterances in parallel with processes (:mod:`s2ilib.data.spoken` does).
"""
from __future__ import annotations

import ctypes
import shutil
import struct
import subprocess
import tempfile
import threading
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from s2ilib.speech.audio import AudioError, check_waveform, load_wav, resample

# Shorter synthesised audio is not speech (espeak renders "." or "?" as 0.007 s of zeros; the
# shortest word, "a", takes about 0.28 s at the normal rate).
MIN_SPEECH_SECONDS = 0.05


class TTSError(RuntimeError):
    """A speech engine is missing, fails, or was given an unknown voice."""


class TTSAudioError(TTSError, AudioError):
    """The synthesised audio is unusable (silent, too short, NaN): refused by the same rule as a
    wav file (:func:`s2ilib.speech.audio.check_waveform`), so it is also an :class:`AudioError`."""


VOICE_ID_FORMAT = "engine:name:r<rate>:p<pitch>:g<range>, e.g. espeak:en-us+m3:r170:p50:g50"


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: an engine setting.

    ``name``: engine voice, e.g. ``en-gb-scotland+f2`` (espeak accent + variant) or ``kal16``;
    ``rate``: words per minute (espeak 80-450, normal 175); ``pitch``, ``range``: 0-99 (50 normal).
    """

    engine: str = "espeak"
    name: str = "en-us"
    rate: int = 175
    pitch: int = 50
    range: int = 50

    @property
    def id(self) -> str:
        """Stable string id, e.g. ``espeak:en-us+m3:r170:p45:g60``."""
        return f"{self.engine}:{self.name}:r{self.rate}:p{self.pitch}:g{self.range}"

    @property
    def accent(self) -> str:
        return self.name.split("+")[0]

    @property
    def variant(self) -> str:
        return self.name.split("+")[1] if "+" in self.name else ""

    def to_dict(self) -> dict:
        return {**asdict(self), "id": self.id}

    @classmethod
    def from_id(cls, voice_id: str) -> "Voice":
        """Parse :attr:`id`; a malformed id or an out-of-range number raises :class:`TTSError`."""
        parts = str(voice_id).split(":")
        if len(parts) != 5 or not parts[0] or not parts[1]:
            raise TTSError(f"bad voice id {voice_id!r}: expected {VOICE_ID_FORMAT}")
        engine, name, *nums = parts
        values = []
        for part, letter, what, lo, hi in zip(nums, "rpg", ("rate", "pitch", "range"), (80, 0, 0), (450, 99, 99)):
            if not (part[:1] == letter and part[1:].isdigit()):
                raise TTSError(f"bad voice id {voice_id!r}: {what} field {part!r} is not {letter}<number>; "
                               f"expected {VOICE_ID_FORMAT}")
            if not lo <= int(part[1:]) <= hi:
                raise TTSError(f"bad voice id {voice_id!r}: {what} {int(part[1:])} is outside {lo}-{hi}")
            values.append(int(part[1:]))
        return cls(engine, name, *values)


class TTSEngine:
    """Base class: subclasses implement :meth:`synthesize_native`."""

    name = "base"

    def synthesize_native(self, text: str, voice: Voice) -> tuple[np.ndarray, int]:
        """Speak ``text``: returns (float32 mono waveform ``(n,)`` in [-1, 1], sample rate Hz)."""
        raise NotImplementedError

    def check_voice(self, voice: Voice) -> None:
        """Raise :class:`TTSError` naming ``voice`` if the engine does not have it (no engine may fall
        back to a default voice silently)."""
        raise NotImplementedError

    def synthesize(self, text: str, voice: Voice, sr: int = 16000) -> np.ndarray:
        """Speak ``text`` as float32 mono at ``sr`` Hz, shape ``(n,)`` (anti-aliased resampling)."""
        if not text or not text.strip():
            raise TTSError(f"{self.name}: nothing to say (empty text)")
        wave, native_sr = self.synthesize_native(text, voice)
        if wave.size == 0:
            raise TTSAudioError(f"{self.name}: voice {voice.id} produced no audio for {text[:60]!r}")
        try:  # the rule a wav file passes (s2ilib.speech.audio), plus a minimum length for speech
            check_waveform(wave, native_sr, f"{self.name} voice {voice.id} speaking {text[:60]!r}",
                           min_seconds=MIN_SPEECH_SECONDS)
        except AudioError as exc:
            raise TTSAudioError(f"{exc} (the text has nothing speakable?)") from None
        return resample(wave, native_sr, sr)


_ENGINES: dict[str, Callable[[], TTSEngine]] = {}
_INSTANCES: dict[str, TTSEngine] = {}
# Engines whose module registers them on import (heavier dependencies, loaded on first use).
_LAZY_ENGINES = {"piper": "s2ilib.speech.piper"}


def register_engine(name: str, cls: Callable[[], TTSEngine]) -> None:
    """Make an engine class (or zero-argument factory) available to :func:`get_engine`."""
    _ENGINES[name] = cls


def engine_names() -> list[str]:
    """Every engine :func:`get_engine` knows (registered, or registered on first use)."""
    return sorted({*_ENGINES, *_LAZY_ENGINES})


def get_engine(name: str) -> TTSEngine:
    """The process-wide instance of engine ``name`` (created on first use)."""
    if name not in _ENGINES and name in _LAZY_ENGINES:  # registered by importing its module
        import importlib

        importlib.import_module(_LAZY_ENGINES[name])
    if name not in _ENGINES:
        raise TTSError(f"unknown TTS engine {name!r}; registered: {sorted(_ENGINES)}")
    if name not in _INSTANCES:
        _INSTANCES[name] = _ENGINES[name]()
    return _INSTANCES[name]


# --------------------------------------------------------------------------------------------
# espeak-ng in process


def _elf_symbols(path: str) -> dict[str, int]:
    """Name -> value of the ``.symtab`` entries of a 64-bit little-endian ELF shared library.

    Needed because the variables reset for determinism are file-local (not exported).
    Returns ``{}`` for stripped or non-ELF64 files.
    """
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return {}
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    out: dict[str, int] = {}
    for _name, sh_type, _f, _a, off, size, link, _i, _al, entsize in sections:
        if sh_type != 2 or entsize == 0:  # SHT_SYMTAB
            continue
        str_off = sections[link][4]
        for k in range(size // entsize):
            st_name, _info, _other, _shndx, value, _size = struct.unpack_from("<IBBHQQ", data, off + k * entsize)
            end = data.index(b"\0", str_off + st_name)
            out[data[str_off + st_name:end].decode("ascii", "replace")] = value
    return out


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

# espeak_PARAMETER values (speak_lib.h)
_ESPEAK_RATE, _ESPEAK_PITCH, _ESPEAK_RANGE = 1, 3, 4
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_INITIALIZE_DONT_EXIT = 0x8000
_ESPEAK_CHARS_UTF8 = 1
_POS_CHARACTER = 1


class EspeakEngine(TTSEngine):
    """espeak-ng through ctypes (``espeakng-loader``): 22050 Hz int16, hundreds x real time."""

    name = "espeak"
    # File-local C statics in wavegen.c that carry state between utterances: name prefix -> reset value.
    _STATE_RESET = {"Flutter_ix.": 0, "cycle_count.": 0, "agc.": 256}
    _lock = threading.Lock()  # the C library state is global: one utterance at a time

    def __init__(self) -> None:
        import espeakng_loader

        self.library_path = espeakng_loader.get_library_path()
        self.data_path = espeakng_loader.get_data_path()
        lib = ctypes.CDLL(self.library_path)
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self.sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 500, self.data_path.encode(),
                                                 _ESPEAK_INITIALIZE_DONT_EXIT)
        if self.sample_rate <= 0:
            raise TTSError(f"espeak_Initialize failed (data path {self.data_path})")
        self._lib = lib
        self._variants: set[str] | None = None
        self._chunks: list[np.ndarray] = []
        self._callback = _SynthCallback(self._collect)  # keep a reference: C holds the pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._state_vars = self._locate_state()
        self.deterministic = self._state_vars is not None
        if not self.deterministic:
            warnings.warn(f"{self.library_path}: no symbol table; espeak output will vary slightly "
                          "with the utterances spoken before", RuntimeWarning)

    def _locate_state(self) -> list[tuple[ctypes.c_int, int]] | None:
        syms = _elf_symbols(self.library_path)
        if "espeak_Synth" not in syms:
            return None
        base = ctypes.cast(self._lib.espeak_Synth, ctypes.c_void_p).value - syms["espeak_Synth"]
        found = []
        for prefix, value in self._STATE_RESET.items():
            names = [n for n in syms if n.startswith(prefix)]
            if len(names) != 1:
                return None
            found.append((ctypes.c_int.from_address(base + syms[names[0]]), value))
        return found

    def _collect(self, wav, n, _events) -> int:
        if n > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0  # 0 = continue synthesis

    def _reset_state(self) -> None:
        for var, value in self._state_vars or []:
            var.value = value
        self._lib.espeak_ng_SetRandSeed(0)

    def _unknown_voice_message(self, name: str) -> str:
        try:
            accents, variants = espeak_english_accents(self.data_path), espeak_variants(self.data_path)
        except OSError:
            accents, variants = [], []
        return (f"espeak: unknown voice {name!r} (data {self.data_path}); a voice is <accent>[+<variant>], "
                f"English accents: {', '.join(accents)}; variants: {', '.join(variants)}")

    def check_voice(self, voice: Voice) -> None:
        if "+" in voice.name:  # espeak ignores an unknown variant silently
            if self._variants is None:
                self._variants = set(espeak_variants(self.data_path))
            if voice.variant not in self._variants:
                raise TTSError(self._unknown_voice_message(voice.name))
        with self._lock:
            if self._lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
                raise TTSError(self._unknown_voice_message(voice.name))

    def synthesize_native(self, text: str, voice: Voice) -> tuple[np.ndarray, int]:
        lib = self._lib
        self.check_voice(voice)
        with self._lock:
            if lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
                raise TTSError(self._unknown_voice_message(voice.name))
            for param, value in ((_ESPEAK_RATE, voice.rate), (_ESPEAK_PITCH, voice.pitch), (_ESPEAK_RANGE, voice.range)):
                lib.espeak_SetParameter(param, int(value), 0)
            self._reset_state()
            self._chunks = []
            raw = text.encode("utf-8")
            err = lib.espeak_Synth(raw, len(raw) + 1, 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None)
            lib.espeak_Synchronize()
            if err != 0:
                raise TTSError(f"espeak_Synth failed with code {err} for {text[:60]!r}")
            pcm = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return pcm.astype(np.float32) / 32768.0, self.sample_rate


def espeak_english_accents(data_path: str | None = None) -> list[str]:
    """English accents in the espeak-ng data, as the voice-file names ``espeak_SetVoiceByName``
    accepts (lower case): ``en`` (British, language en-gb), ``en-us``, ``en-gb-scotland``, ..."""
    if data_path is None:
        import espeakng_loader

        data_path = espeakng_loader.get_data_path()
    accents = sorted(f.name.lower() for f in (Path(data_path) / "lang" / "gmw").glob("en*"))
    return [a for a in accents if a != "en-shaw"]  # Shavian is a spelling, not an accent


def espeak_variants(data_path: str | None = None) -> list[str]:
    """Voice variant names available (``m1`` ... ``f5``, ...)."""
    if data_path is None:
        import espeakng_loader

        data_path = espeakng_loader.get_data_path()
    return sorted(p.name for p in (Path(data_path) / "voices" / "!v").iterdir())


# --------------------------------------------------------------------------------------------
# command-line engines


class CommandEngine(TTSEngine):
    """A command-line synthesiser writing a wav file. ``argv`` is formatted with
    ``{voice} {rate} {pitch} {text} {out}``; the wav is read with :func:`load_wav` at its own rate.
    ``list_argv`` makes the program print its voices (``<heading>: name name ...``): a voice it does
    not list is refused (a program such as flite would speak with its default voice instead)."""

    name = "command"
    binary = ""
    argv: tuple[str, ...] = ()
    list_argv: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.path = shutil.which(self.binary) if self.binary else None
        if self.path is None:
            raise TTSError(f"TTS engine {self.name!r} needs the program {self.binary!r}, which is not "
                           f"installed (Debian: apt-get install {self.binary})")
        self._voices: list[str] | None = None

    def voices(self) -> list[str]:
        if self._voices is None:
            proc = subprocess.run([self.path, *self.list_argv], capture_output=True, text=True)
            self._voices = proc.stdout.split(":", 1)[-1].split() if proc.returncode == 0 else []
        return self._voices

    def check_voice(self, voice: Voice) -> None:
        if voice.name not in self.voices():
            raise TTSError(f"{self.name}: unknown voice {voice.name!r}; {self.binary} has "
                           f"{', '.join(self.voices()) or 'no voices it can list'}")

    def synthesize_native(self, text: str, voice: Voice) -> tuple[np.ndarray, int]:
        import soundfile as sf

        self.check_voice(voice)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out.wav"
            args = [a.format(voice=voice.name, rate=voice.rate, pitch=voice.pitch, text=text, out=out)
                    for a in self.argv]
            proc = subprocess.run([self.path, *args], capture_output=True, text=True)
            if proc.returncode != 0 or not out.exists():
                raise TTSError(f"{self.binary} failed ({proc.returncode}): {proc.stderr.strip()[:300]}")
            sr = sf.info(str(out)).samplerate
            return load_wav(out, target_sr=sr), sr


class FliteEngine(CommandEngine):
    """Debian ``flite`` (voices kal16, awb, rms, slt): ``flite -voice kal16 -t TEXT -o out.wav``."""

    name = "flite"
    binary = "flite"
    argv = ("-voice", "{voice}", "-t", "{text}", "-o", "{out}")
    list_argv = ("-lv",)  # "Voices available: kal awb_time kal16 awb rms slt"


register_engine("espeak", EspeakEngine)
register_engine("flite", FliteEngine)


# --------------------------------------------------------------------------------------------
# voice pools

# Training voices use these accents / variants; held-out ("unseen") voices use the others, so
# the unseen condition differs in accent *and* speaker variant, not only in rate and pitch.
# "en" is espeak's British English (language en-gb).
TRAIN_ACCENTS = ("en-us", "en", "en-gb-scotland", "en-029", "en-gb-x-rp")
UNSEEN_ACCENTS = ("en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
TRAIN_VARIANTS = ("m1", "m2", "m3", "m4", "f1", "f2", "f3")
UNSEEN_VARIANTS = ("m5", "m6", "m7", "f4", "f5")
RATES = tuple(range(140, 201, 10))  # words per minute
PITCHES = tuple(range(30, 71, 5))
RANGES = (40, 50, 60, 70)


def _draw(rng: np.random.Generator, accents, variants, n: int) -> list[Voice]:
    combos = [(a, v) for a in accents for v in variants]
    order = rng.permutation(len(combos))
    voices: list[Voice] = []
    for k in range(n):  # more voices than combos: combos repeat with other rate / pitch
        a, v = combos[order[k % len(combos)]]
        voices.append(Voice("espeak", f"{a}+{v}", int(rng.choice(RATES)), int(rng.choice(PITCHES)),
                            int(rng.choice(RANGES))))
    return voices


def voice_pool(n_train: int = 24, n_unseen: int = 6, seed: int = 0) -> tuple[list[Voice], list[Voice]]:
    """Disjoint training and held-out espeak voices, deterministic in ``seed``.

    Held-out voices take accents and variants the training voices never use (when the data
    path has them; otherwise they fall back to the training accents with held-out variants).
    """
    have_acc = set(espeak_english_accents())
    have_var = set(espeak_variants())
    train_acc = [a for a in TRAIN_ACCENTS if a in have_acc]
    unseen_acc = [a for a in UNSEEN_ACCENTS if a in have_acc] or train_acc
    train_var = [v for v in TRAIN_VARIANTS if v in have_var]
    unseen_var = [v for v in UNSEEN_VARIANTS if v in have_var]
    if not train_acc or not train_var or not unseen_var:
        raise TTSError("espeak-ng data lacks the English accents / variants the voice pool needs")
    rng = np.random.default_rng(seed)
    train = _draw(rng, train_acc, train_var, n_train)
    unseen = _draw(rng, unseen_acc, unseen_var, n_unseen)
    assert not {v.id for v in train} & {v.id for v in unseen}
    return train, unseen
