"""s2ilib.speech.tts: espeak-ng in process, determinism, voice pools, command engines."""
import numpy as np
import pytest

from s2ilib.speech.tts import TTSError, Voice, get_engine, register_engine, voice_pool

TEXT = "this bird has a bright red crown and a short pointed black beak"


@pytest.fixture(scope="module")
def espeak():
    return get_engine("espeak")


def test_espeak_is_deterministic_regardless_of_history(espeak):
    v = Voice("espeak", "en-gb-scotland+f2", 160, 60, 55)
    a = espeak.synthesize(TEXT, v)
    espeak.synthesize("something else entirely, to move the internal state on", Voice("espeak", "en-us+m3"))
    b = espeak.synthesize(TEXT, v)
    assert espeak.deterministic
    assert a.dtype == np.float32 and a.ndim == 1
    assert np.array_equal(a, b)


def test_different_voices_differ(espeak):
    a = espeak.synthesize(TEXT, Voice("espeak", "en-us+m3", 170, 50, 50))
    b = espeak.synthesize(TEXT, Voice("espeak", "en-029+f4", 170, 50, 50))
    c = espeak.synthesize(TEXT, Voice("espeak", "en-us+m3", 170, 80, 50))  # pitch only
    n = min(len(a), len(b), len(c))
    assert not np.allclose(a[:n], b[:n]) and not np.allclose(a[:n], c[:n])
    # a higher rate speaks faster
    fast = espeak.synthesize(TEXT, Voice("espeak", "en-us+m3", 220, 50, 50))
    assert len(fast) < 0.9 * len(a)


def test_duration_of_a_ten_word_sentence(espeak):
    w = espeak.synthesize("the small bird has white wings and a long yellow tail", Voice())
    assert 1.5 <= len(w) / 16000 <= 6.0
    assert 0.05 < np.abs(w).max() <= 1.0


def test_unknown_voice_and_empty_text(espeak):
    with pytest.raises(TTSError, match="unknown voice"):
        espeak.synthesize(TEXT, Voice("espeak", "xx-nonexistent"))
    with pytest.raises(TTSError, match="empty"):
        espeak.synthesize("   ", Voice())


def test_voice_pool_is_disjoint_deterministic_and_unseen_accents_are_new():
    tr, un = voice_pool(24, 6, seed=3)
    assert len(tr) == 24 and len(un) == 6
    assert len({v.id for v in tr}) == 24
    assert not {v.accent for v in tr} & {v.accent for v in un}
    assert not {v.variant for v in tr} & {v.variant for v in un}
    assert voice_pool(24, 6, seed=3) == (tr, un)
    assert voice_pool(24, 6, seed=4)[0] != tr
    assert Voice.from_id(tr[0].id) == tr[0]


def test_pool_voices_all_speak(espeak):
    tr, un = voice_pool(24, 6, seed=0)
    for v in tr + un:
        assert len(espeak.synthesize("a bird", v)) > 1600


def test_flite_missing_is_a_clear_error():
    import shutil

    if shutil.which("flite"):
        pytest.skip("flite is installed here")
    with pytest.raises(TTSError, match="flite.*not installed"):
        get_engine("flite")
    with pytest.raises(TTSError, match="unknown TTS engine"):
        get_engine("nope")


def test_register_engine():
    from s2ilib.speech.tts import TTSEngine

    class Beep(TTSEngine):
        name = "beep"

        def synthesize_native(self, text, voice):
            return np.full(22050, 0.1, np.float32), 22050

    register_engine("beep", Beep)
    w = get_engine("beep").synthesize("x", Voice("beep"))
    assert abs(len(w) - 16000) <= 1
