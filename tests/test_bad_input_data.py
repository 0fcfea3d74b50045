"""Hostile and careless input data (issue 10, items 2 and 6): dataset list files, Places json,
wav files and synthesised speech. Every case must raise the module's own error class with a
one-line message naming the file (and line / entry) and the problem."""
import errno
import json
import os
import struct

import numpy as np
import pytest
import soundfile as sf
from fixtures import make_cub, make_oxford, make_places

from s2ilib.speech.audio import AudioError, load_wav, save_wav
from s2ilib.data.datasets import DatasetError, load_cub, load_dataset, load_oxford, load_places
from s2ilib.speech.tts import TTSAudioError, TTSEngine, TTSError, Voice, get_engine, register_engine

BOM = "\ufeff"


def _raises(exc_class, fn, *names):
    """Call ``fn``; assert it raises ``exc_class`` with a one-line message containing every name."""
    with pytest.raises(exc_class) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg, msg
    for name in names:
        assert name in msg, f"{name!r} not in {msg!r}"
    return msg


def _replace_line(path, lineno, text):
    lines = path.read_text().splitlines()
    lines[lineno - 1] = text
    path.write_text("\n".join(lines) + "\n")


def _append(path, text):
    path.write_text(path.read_text() + text + "\n")


# --------------------------------------------------------------------------------------------
# CUB layout: path escapes, class names, duplicate ids, bounding boxes


def _outside(root):
    """A real jpg outside the dataset root (a symlink target)."""
    target = root.parent / "outside" / "secret.jpg"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes((root / "images/001.Bird_A/Bird_A_0001.jpg").read_bytes())
    return target


def _symlink_image(root):
    img = root / "images/001.Bird_A/Bird_A_0001.jpg"
    target = _outside(root)
    img.unlink()
    img.symlink_to(target)


def _symlink_class_dir(root):
    target = root.parent / "outside_dir"
    (root / "images/001.Bird_A").rename(target)
    (root / "images/001.Bird_A").symlink_to(target, target_is_directory=True)


CUB_PATH_CASES = {
    "dotdot": (lambda r: _replace_line(r / "images.txt", 1, "1 ../../../../etc/passwd"), "images.txt:1", "outside"),
    "dotdot_inside_name": (lambda r: _replace_line(r / "images.txt", 2, "2 001.Bird_A/../../x.jpg"), "images.txt:2", "outside"),
    "absolute": (lambda r: _replace_line(r / "images.txt", 1, "1 /etc/hosts"), "images.txt:1", "outside"),
    "symlinked_image": (_symlink_image, "images.txt:1", "outside"),
    "symlinked_class_dir": (_symlink_class_dir, "images.txt:1", "symlink"),
    "class_name_dotdot": (lambda r: _replace_line(r / "classes.txt", 1, "1 ../../../../../etc"), "classes.txt:1", "bad class name"),
    "class_name_separator": (lambda r: _replace_line(r / "classes.txt", 2, "2 a/b"), "classes.txt:2", "bad class name"),
}


@pytest.mark.parametrize("case", sorted(CUB_PATH_CASES))
def test_cub_paths_stay_inside_the_root(tmp_path, case):
    breakit, *names = CUB_PATH_CASES[case]
    root = make_cub(tmp_path / "cub")
    breakit(root)
    _raises(DatasetError, lambda: load_dataset(root), str(root), *names)


def test_cub_class_name_from_image_paths_is_checked(tmp_path):
    root = make_cub(tmp_path / "cub")
    (root / "classes.txt").unlink()
    _replace_line(root / "images.txt", 1, "1 ../x.jpg")
    _raises(DatasetError, lambda: load_cub(root), "images.txt:1")


CUB_DUPLICATE_CASES = {
    "images.txt": ("3 001.Bird_A/Bird_A_0002.jpg", "images.txt:5", "duplicate id 3"),
    "image_path_twice": ("5 001.Bird_A/Bird_A_0002.jpg", "images.txt:5", "listed twice"),
    "image_class_labels.txt": ("2 1", "image_class_labels.txt:5", "duplicate id 2"),
    "bounding_boxes.txt": ("4 1 1 2 2", "bounding_boxes.txt:5", "duplicate id 4"),
    "classes.txt": ("1 003.Bird_C", "classes.txt:3", "duplicate id 1"),
    "classes_dir_twice": ("3 001.Bird_A", "classes.txt:3", "listed twice"),
    "train_test_split.txt": ("1 0", "train_test_split.txt:5", "duplicate id 1"),
}


@pytest.mark.parametrize("case", sorted(CUB_DUPLICATE_CASES))
def test_cub_duplicate_ids_are_errors(tmp_path, case):
    line, *names = CUB_DUPLICATE_CASES[case]
    root = make_cub(tmp_path / "cub")
    fname = {"image_path_twice": "images.txt", "classes_dir_twice": "classes.txt"}.get(case, case)
    _append(root / fname, line)
    if fname == "train_test_split.txt":  # only read without the class split files
        (root / "trainvalclasses.txt").unlink()
        (root / "testclasses.txt").unlink()
    _raises(DatasetError, lambda: load_cub(root), str(root / fname), *names)


BBOX_CASES = {
    "negative_width": ("2 5 4 -20 16", "non-positive size"),
    "zero_height": ("2 5 4 20 0", "non-positive size"),
    "nan": ("2 nan 4 20 16", "not finite"),
    "inf": ("2 5 4 inf 16", "not finite"),
    "too_many_fields": ("2 5 4 20 16 3", "expected 5 fields, got 6"),
    "too_few_fields": ("2 5 4 20", "expected 5 fields, got 4"),
    "not_a_number": ("2 5 4 twenty 16", "bad value"),
}


@pytest.mark.parametrize("case", sorted(BBOX_CASES))
def test_bad_bounding_boxes(tmp_path, case):
    line, problem = BBOX_CASES[case]
    root = make_cub(tmp_path / "cub")
    _replace_line(root / "bounding_boxes.txt", 2, line)
    _raises(DatasetError, lambda: load_cub(root), str(root / "bounding_boxes.txt") + ":2", problem)


def test_byte_order_marks_are_stripped_everywhere(tmp_path):
    root = make_cub(tmp_path / "cub")
    good = load_cub(root)
    for rel in ("images.txt", "image_class_labels.txt", "classes.txt", "bounding_boxes.txt",
                "train_test_split.txt", "trainvalclasses.txt", "testclasses.txt",
                "text_c10/001.Bird_A/Bird_A_0001.txt"):
        p = root / rel
        p.write_text(BOM + p.read_text(encoding="utf-8"), encoding="utf-8")
    ds = load_cub(root)
    assert ds.classes == good.classes and [r.key for r in ds.images] == [r.key for r in good.images]
    assert ds.images[0].captions == good.images[0].captions
    assert not ds.images[0].captions[0].startswith(BOM)
    (root / "dataset.json").write_text(BOM + json.dumps({"name": "x", "layout": "cub"}), encoding="utf-8")
    assert load_dataset(root).name == "x"


def test_oxford_caption_bom_is_stripped(tmp_path):
    root = make_oxford(tmp_path / "ox")
    p = root / "text_c10/class_00001/image_00001.txt"
    first = p.read_text().splitlines()[0]
    p.write_text(BOM + p.read_text(), encoding="utf-8")
    assert load_oxford(root).images[0].captions[0] == first


# --------------------------------------------------------------------------------------------
# Oxford layout: class folders and caption files that lead outside


def _oxford_class_symlink(root):
    outside = root.parent / "elsewhere"
    (root / "text_c10/class_00002").rename(outside)
    (root / "text_c10/class_00002").symlink_to(outside, target_is_directory=True)


def _oxford_caption_symlink(root):
    p = root / "text_c10/class_00001/image_00002.txt"
    target = root.parent / "secret.txt"
    target.write_text("a caption\n")
    p.unlink()
    p.symlink_to(target)


def _oxford_jpg_symlink(root):
    p = root / "jpg/image_00001.jpg"
    target = root.parent / "secret.jpg"
    target.write_bytes(p.read_bytes())
    p.unlink()
    p.symlink_to(target)


@pytest.mark.parametrize("breakit,names", [
    (_oxford_class_symlink, ("class_00002", "outside")),
    (_oxford_caption_symlink, ("image_00002.txt", "outside")),
    (_oxford_jpg_symlink, ("image_00001.jpg", "outside")),
], ids=["class_dir", "caption_file", "jpg"])
def test_oxford_symlink_escapes(tmp_path, breakit, names):
    root = make_oxford(tmp_path / "ox")
    breakit(root)
    _raises(DatasetError, lambda: load_oxford(root), str(root), *names)


# --------------------------------------------------------------------------------------------
# Places json: escapes, null / missing / non-string fields


def _edit_places(root, n, **changes):
    jp = root / "train.json"
    meta = json.loads(jp.read_text())
    for k, v in changes.items():
        if v is _DROP:
            meta["data"][n].pop(k)
        else:
            meta["data"][n][k] = v
    jp.write_text(json.dumps(meta, indent=1))


_DROP = object()

PLACES_CASES = {
    "wav_dotdot": (1, {"wav": "../../../../etc/passwd"}, "'wav'", "outside"),
    "wav_absolute": (0, {"wav": "/etc/passwd"}, "'wav'", "outside"),
    "image_dotdot": (2, {"image": "../../x.jpg"}, "'image'", "outside"),
    "class_becomes_etc": (0, {"image": "../../../../../etc/passwd.jpg"}, "'image'", "outside"),
    "wav_null": (1, {"wav": None}, "'wav'", "non-empty string"),
    "wav_number": (0, {"wav": 7}, "'wav'", "non-empty string"),
    "wav_empty": (0, {"wav": ""}, "'wav'", "non-empty string"),
    "image_null": (3, {"image": None}, "'image'", "non-empty string"),
    "wav_missing": (0, {"wav": _DROP}, "lacks", "wav"),
    "speaker_null": (2, {"speaker": None}, "'speaker'", "must be a string"),
    "speaker_list": (2, {"speaker": ["a"]}, "'speaker'", "must be a string"),
    "asr_text_null": (1, {"asr_text": None}, "'asr_text'", "must be a string"),
}


@pytest.mark.parametrize("case", sorted(PLACES_CASES))
def test_places_bad_entries(tmp_path, case):
    n, changes, *names = PLACES_CASES[case]
    root = make_places(tmp_path / "places")
    _edit_places(root, n, **changes)
    _raises(DatasetError, lambda: load_places(root / "train.json"), str(root / "train.json"), f"data[{n}]", *names)


def test_places_symlink_escape_and_bad_shapes(tmp_path):
    root = make_places(tmp_path / "places")
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "wavs" / "link").symlink_to(outside, target_is_directory=True)
    _edit_places(root, 1, wav="link/x.wav")
    _raises(DatasetError, lambda: load_places(root / "train.json"), "train.json: data[1]", "symlink")
    jp = root / "train.json"
    jp.write_text(json.dumps({"image_base_path": "images", "audio_base_path": "wavs", "data": {"a": 1}}))
    _raises(DatasetError, lambda: load_places(jp), str(jp), "data must be a list")
    jp.write_text(json.dumps({"image_base_path": "images", "audio_base_path": "wavs", "data": ["x"]}))
    _raises(DatasetError, lambda: load_places(jp), str(jp), "data[0]", "not an object")
    jp.write_text(json.dumps({"image_base_path": None, "audio_base_path": "wavs", "data": []}))
    _raises(DatasetError, lambda: load_places(jp), str(jp), "image_base_path")
    jp.write_text(json.dumps([1, 2]))
    _raises(DatasetError, lambda: load_places(jp), str(jp), "JSON object")


def test_places_json_with_bom_loads(tmp_path):
    root = make_places(tmp_path / "places")
    jp = root / "train.json"
    jp.write_text(BOM + jp.read_text(), encoding="utf-8")
    assert len(load_places(jp)) == 4


# --------------------------------------------------------------------------------------------
# wav files


def _speech(sr=16000, seconds=0.5):
    t = np.arange(int(sr * seconds)) / sr
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def _cut_data(p, fraction=0.5):
    data = p.read_bytes()
    p.write_bytes(data[:44 + int((len(data) - 44) * fraction)])


def test_truncated_data_chunk_is_refused(tmp_path):
    p = tmp_path / "cut.wav"
    save_wav(p, _speech())
    _cut_data(p)
    msg = _raises(AudioError, lambda: load_wav(p), str(p), "truncated")
    assert "16000 bytes" in msg and "8000" in msg


def test_wav_chunk_walk_keeps_good_and_streamed_files(tmp_path):
    # a LIST chunk (odd size, padded) before the data chunk: complete file is fine
    p = tmp_path / "list.wav"
    x = _speech()
    sf.write(p, x, 16000, subtype="PCM_16")
    raw = p.read_bytes()
    extra = b"LIST" + struct.pack("<I", 5) + b"abcde\x00"
    fmt_end = 12 + 8 + struct.unpack("<I", raw[16:20])[0]
    body = raw[12:fmt_end] + extra + raw[fmt_end:]
    p.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body)
    assert np.allclose(load_wav(p), x, atol=1e-3)
    # ... and the same cut short is refused
    p.write_bytes(p.read_bytes()[:-100])
    _raises(AudioError, lambda: load_wav(p), str(p), "truncated")
    # a streamed header (data size 0xFFFFFFFF) is read as it is
    s = tmp_path / "stream.wav"
    sf.write(s, x, 16000, subtype="PCM_16")
    raw = bytearray(s.read_bytes())
    k = raw.index(b"data")
    raw[k + 4:k + 8] = struct.pack("<I", 0xFFFFFFFF)
    s.write_bytes(bytes(raw))
    assert len(load_wav(s)) == len(x)


def test_directory_as_wav(tmp_path):
    d = tmp_path / "speech.wav"
    d.mkdir()
    msg = _raises(AudioError, lambda: load_wav(d), str(d), "is a directory")
    assert "not found" not in msg


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
def test_stereo_channels_that_cancel(tmp_path, subtype):
    p = tmp_path / "cancel.wav"
    x = _speech()
    sf.write(p, np.stack([x, -x], axis=1), 16000, subtype=subtype)  # PCM_16: cancel up to rounding
    msg = _raises(AudioError, lambda: load_wav(p), str(p), "channels cancel", "downmix")
    assert "every sample is 0" not in msg
    z = tmp_path / "zeros.wav"
    sf.write(z, np.zeros((8000, 2), np.float32), 16000)
    _raises(AudioError, lambda: load_wav(z), str(z), "every sample is 0")


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_when_writing_a_wav(tmp_path, monkeypatch):
    import pathlib

    monkeypatch.setattr(pathlib.Path, "write_bytes", _no_space)
    p = tmp_path / "out" / "a.wav"
    _raises(AudioError, lambda: save_wav(p, _speech()), str(p), os.strerror(errno.ENOSPC))
    monkeypatch.undo()
    assert not p.exists() and not list(p.parent.glob(".a.wav.*"))  # nothing half-written left


def test_libsndfile_failure_when_encoding(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise sf.LibsndfileError(2, "Error : ")

    monkeypatch.setattr(sf, "write", boom)
    p = tmp_path / "a.wav"
    _raises(AudioError, lambda: save_wav(p, _speech()), str(p), "cannot encode wav")


def test_read_only_folder_when_writing_a_wav(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("running as root: a read-only folder is still writable")
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    try:
        _raises(AudioError, lambda: save_wav(d / "a.wav", _speech()), str(d / "a.wav"), "ermission denied")
    finally:
        d.chmod(0o700)


# --------------------------------------------------------------------------------------------
# synthesised speech (s2i generate --say): same validity rule as a wav file


@pytest.fixture(scope="module")
def espeak():
    return get_engine("espeak")


@pytest.mark.parametrize("text", [".", "...", "?", " , ", "\u200b"])
def test_text_that_speaks_as_silence(espeak, text):
    with pytest.raises(TTSAudioError) as e:
        espeak.synthesize(text, Voice())
    assert isinstance(e.value, AudioError) and isinstance(e.value, TTSError)  # caught like a silent --wav
    assert "silent" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text(espeak, text):
    _raises(TTSError, lambda: espeak.synthesize(text, Voice()), "nothing to say")


def test_too_short_or_nan_synthesis_is_refused():
    class Blip(TTSEngine):
        name = "blip"

        def synthesize_native(self, text, voice):
            if text == "nan":
                return np.full(22050, np.nan, np.float32), 22050
            return np.full(220, 0.1, np.float32), 22050  # 0.01 s

    register_engine("blip", Blip)
    _raises(TTSAudioError, lambda: get_engine("blip").synthesize("x", Voice("blip")), "0.010 s", "blip")
    _raises(TTSAudioError, lambda: get_engine("blip").synthesize("nan", Voice("blip")), "NaN")


@pytest.mark.parametrize("voice_id,problem", [
    ("nonsense", "expected engine:name"),
    ("espeak:en-us", "expected engine:name"),
    ("espeak:en-us:170:50:50", "is not r<number>"),
    ("espeak:en-us:r170:p50:gx", "is not g<number>"),
    ("espeak:en-us:r5:p50:g50", "rate 5 is outside"),
    ("espeak:en-us:r170:p500:g50", "pitch 500 is outside"),
    ("::r170:p50:g50", "expected engine:name"),
])
def test_bad_voice_ids(voice_id, problem):
    _raises(TTSError, lambda: Voice.from_id(voice_id), repr(voice_id), problem)


@pytest.mark.parametrize("name", ["xx-nonexistent", "en-us+nosuchvariant", "en-us+"])
def test_unknown_espeak_voice_lists_the_valid_ones(espeak, name):
    _raises(TTSError, lambda: espeak.synthesize("a bird", Voice("espeak", name)), repr(name), "en-us", "m3")


def test_unknown_engine_lists_the_registered_ones():
    _raises(TTSError, lambda: get_engine("nope"), "'nope'", "espeak")


def test_unwritable_folder_when_writing_a_wav(tmp_path, monkeypatch):
    """As root a chmod 0500 folder is still writable: simulate the refusal where the temp file is made."""
    import tempfile

    def denied(*a, **k):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    p = tmp_path / "a.wav"
    _raises(AudioError, lambda: save_wav(p, _speech()), str(p), "cannot write wav", os.strerror(errno.EACCES))


# --------------------------------------------------------------------------------------------
# feature stores


def _store(tmp_path):
    from s2ilib.speech.features import FeatureStoreWriter

    w = FeatureStoreWriter(tmp_path / "speech", n_mels=4)
    for k in range(3):
        w.add(np.zeros((4, 5 + k), np.float32), utt_id=f"u{k}", image_idx=k, caption_idx=0, voice="v",
              condition="seen", split="train", text="a bird", duration_s=0.1)
    w.finalize()
    return tmp_path / "speech"


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_FEATURES",))


def _pickled_npy(d):
    np.save(d / "features.npy", np.array([_Payload()], dtype=object), allow_pickle=True)


def _csv_column(d, col, value):
    import pandas as pd

    df = pd.read_csv(d / "index.csv")
    df[col] = df[col].astype(object)
    df.loc[1, col] = value
    df.to_csv(d / "index.csv", index=False)


STORE_CASES = {
    "npy_garbage": (lambda d: (d / "features.npy").write_bytes(b"not numpy at all"), "features.npy", "not a readable"),
    "npy_pickle": (_pickled_npy, "features.npy", "not a readable"),
    "csv_empty": (lambda d: (d / "index.csv").write_text(""), "index.csv", "not a readable index"),
    "n_frames_text": (lambda d: _csv_column(d, "n_frames", "abc"), "index.csv", "'n_frames'"),
    "offset_negative": (lambda d: _csv_column(d, "offset", -3), "index.csv", "'offset'"),
    "offset_past_end": (lambda d: _csv_column(d, "offset", 100), "index.csv", "past the end"),
}


@pytest.mark.parametrize("case", sorted(STORE_CASES))
def test_bad_feature_store(tmp_path, monkeypatch, case):
    from s2ilib.speech.features import FeatureStore, FeatureStoreError

    breakit, fname, problem = STORE_CASES[case]
    d = _store(tmp_path)
    breakit(d)
    monkeypatch.chdir(tmp_path)
    _raises(FeatureStoreError, lambda: FeatureStore.open(d), str(d / fname), problem)
    assert not (tmp_path / "PWNED_BY_FEATURES").exists()


def test_feature_store_bad_json_sidecars(tmp_path):
    from s2ilib.speech.features import FeatureStore, FeatureStoreError

    d = _store(tmp_path)
    store = FeatureStore.open(d)
    (d / "voices.json").write_text("{not json")
    _raises(FeatureStoreError, lambda: store.voices, str(d / "voices.json"), "invalid JSON")
    (d / "config.json").write_text(BOM + '{"totals": {"utterances": 3}}', encoding="utf-8")
    assert store.info["totals"]["utterances"] == 3
