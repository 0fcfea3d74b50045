"""s2ilib.data.datasets loaders on tiny real-layout fixtures, and s2ilib.data.spoken synthesis into a FeatureStore."""
import json
import shutil

import numpy as np
import pytest
from fixtures import make_cub, make_oxford, make_places

from s2ilib.speech.audio import AudioError
from s2ilib.core.config import DataConfig
from s2ilib.data.datasets import DatasetError, featurize_wavs, load_cub, load_dataset, load_image, load_oxford, load_places
from s2ilib.speech.features import FeatureStore
from s2ilib.data.spoken import synthesize_dataset_speech


def test_cub_layout(tmp_path):
    ds = load_dataset(make_cub(tmp_path / "cub"))
    assert ds.layout == "cub" and ds.kind == "birds"
    assert ds.classes == ["001.Bird_A", "002.Bird_B"]
    assert len(ds) == 4 and ds.split("train") == [0, 1] and ds.split("test") == [2, 3]
    r = ds.images[2]
    assert r.key == "images/002.Bird_B/Bird_B_0001" and r.class_index == 1 and len(r.captions) == 10
    assert r.bbox == (5.0, 4.0, 20.0, 16.0)
    img = load_image(r, size=16)
    assert img.mode == "RGB" and img.size == (16, 16)
    crop = load_image(r, bbox_crop=True)
    assert crop.size == (30, 27)  # half-side 0.75 * 20 = 15 around the centre (15, 12), clipped to 40 x 30
    assert ds.speech is None


def test_cub_without_class_files_uses_train_test_split(tmp_path):
    root = make_cub(tmp_path / "cub")
    (root / "trainvalclasses.txt").unlink()
    (root / "testclasses.txt").unlink()
    assert load_cub(root).split("test") == [2, 3]


def test_oxford_layout(tmp_path):
    ds = load_dataset(make_oxford(tmp_path / "ox", n_classes=3))
    assert ds.layout == "oxford" and ds.kind == "flowers" and len(ds) == 6
    assert [r.key for r in ds.images[:2]] == ["jpg/image_00001", "jpg/image_00002"]
    assert ds.split("test") == [4, 5] and ds.images[4].class_index == 2


def test_attributes_and_dataset_json(tmp_path):
    root = make_oxford(tmp_path / "ox")
    keys = [f"jpg/image_{n:05d}" for n in range(1, 5)]
    (root / "dataset.json").write_text(json.dumps({"name": "synth-flowers", "layout": "oxford", "synthetic": True}))
    (root / "attributes.json").write_text(json.dumps({
        "kind": "flowers", "vocabulary": {"colour": ["red", "blue"]}, "class_names": {"class_00001": "Red Rose"},
        "images": {k: {"colour": "red"} for k in keys}, "captions": {k: [{"colour": "red"}] * 10 for k in keys}}))
    ds = load_dataset(root)
    assert ds.name == "synth-flowers" and ds.vocabulary == {"colour": ["red", "blue"]}
    assert ds.images[0].attributes == {"colour": "red"} and len(ds.images[0].caption_attributes) == 10
    assert ds.class_names["class_00001"] == "Red Rose"


@pytest.mark.parametrize("breakit,pattern", [
    (lambda r: (r / "images.txt").write_text("1 001.Bird_A/Bird_A_0001.jpg\n2\n"), r"images\.txt:2"),
    (lambda r: (r / "image_class_labels.txt").write_text("1 x\n"), r"image_class_labels\.txt:1"),
    (lambda r: (r / "text_c10/001.Bird_A/Bird_A_0001.txt").unlink(), r"Bird_A_0001\.txt"),
    (lambda r: (r / "text_c10/001.Bird_A/Bird_A_0002.txt").write_text("\n\n"), r"Bird_A_0002\.txt: caption file has no"),
    (lambda r: (r / "images/001.Bird_A/Bird_A_0001.jpg").unlink(), r"Bird_A_0001\.jpg"),
    (lambda r: (r / "testclasses.txt").write_text("001.Bird_A\n"), r"testclasses\.txt"),
    (lambda r: (r / "bounding_boxes.txt").write_text("1 1 2 3\n"), r"bounding_boxes\.txt:1"),
])
def test_malformed_cub_names_the_file(tmp_path, breakit, pattern):
    root = make_cub(tmp_path / "cub")
    breakit(root)
    with pytest.raises(DatasetError, match=pattern):
        load_dataset(root)


def test_malformed_oxford_and_unknown_layout(tmp_path):
    root = make_oxford(tmp_path / "ox")
    (root / "jpg" / "image_00003.jpg").unlink()
    with pytest.raises(DatasetError, match="image_00003.jpg"):
        load_oxford(root)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no known dataset layout"):
        load_dataset(tmp_path / "empty")


def test_places_json_and_wav_features(tmp_path):
    root = make_places(tmp_path / "places")
    make_places(root, classes=("b/bedroom",), per_class=1, name="val.json")
    ds = load_dataset(root)
    assert ds.layout == "places" and ds.classes == ["b/bedroom", "k/kitchen"]
    assert len(ds.split("train")) == 4 and len(ds.split("test")) == 1
    r = ds.images[0]
    assert len(r.wavs) == 2 == len(r.captions) and r.speakers[0].startswith("SPK")
    assert len(load_places(root / "train.json", classes=["k/kitchen"])) == 2
    store = featurize_wavs(ds, tmp_path / "speech", progress=False)
    assert len(store) == 10
    # wavs at 8 / 16 / 22.05 kHz, mono and stereo: all 1.0 s or 1.25 s after the fix-ups
    assert set(np.round(store.index["duration_s"], 2)) == {1.0, 1.25}
    assert all(store.get(i).shape[1] >= 100 for i in range(len(store)))


def test_places_bad_wav_and_bad_json(tmp_path):
    root = make_places(tmp_path / "places", per_class=1, utts=1)
    (root / "wavs" / "wav" / "train_0001.wav").write_bytes(b"RIFF1234")
    ds = load_places(root / "train.json")
    with pytest.raises(AudioError, match="train_0001.wav"):
        featurize_wavs(ds, tmp_path / "speech", progress=False)
    store = featurize_wavs(ds, tmp_path / "speech", progress=False, on_error="skip")
    assert len(store) == 1 and "train_0001.wav" in (tmp_path / "speech" / "skipped.txt").read_text()
    (root / "train.json").write_text('{"data": [\n{"wav": 1,}]}')
    with pytest.raises(DatasetError, match=r"train\.json:2"):
        load_places(root / "train.json")


def _speech_cfg(**kw):
    return DataConfig(n_train_voices=4, n_unseen_voices=2, unseen_voice_fraction=0.5, workers=1, **kw)


def test_synthesize_dataset_speech(tmp_path):
    ds = load_dataset(make_cub(tmp_path / "cub", n_captions=3))
    cfg = _speech_cfg(keep_wav=True)
    store = synthesize_dataset_speech(ds, tmp_path / "cub" / "speech", cfg, seed=1, progress=False)
    idx = store.index
    assert len(store) == 12 + 3  # 4 images x 3 captions seen + 1 of 2 test images x 3 unseen
    assert set(idx[idx.condition == "unseen"].image_idx) <= {2, 3}
    assert (idx[idx.condition == "unseen"].split == "test").all()
    voices = json.loads((tmp_path / "cub" / "speech" / "voices.json").read_text())
    train_ids = {v["id"] for v in voices["train"]}
    assert set(idx[idx.condition == "seen"].voice) <= train_ids
    assert set(idx[idx.condition == "unseen"].voice).isdisjoint(train_ids)
    assert len(set(idx.voice)) > 2  # voices vary across captions
    assert all(store.get(i).shape[1] >= 64 for i in range(len(store)))
    assert (idx.duration_s > 1.0).all()
    assert len(list((tmp_path / "cub" / "speech" / "wav").glob("*.wav"))) == 15
    totals = json.loads((tmp_path / "cub" / "speech" / "config.json").read_text())["totals"]
    assert totals["utterances"] == 15 and totals["hours"] > 0
    assert ds.speech is not None and len(ds.speech) == 15
    # cached: a second call does not rebuild
    mtime = (tmp_path / "cub" / "speech" / "features.npy").stat().st_mtime_ns
    again = synthesize_dataset_speech(ds, tmp_path / "cub" / "speech", cfg, seed=1, progress=False)
    assert (tmp_path / "cub" / "speech" / "features.npy").stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(again.get(0), store.get(0))
    # another seed rebuilds with other voices
    other = synthesize_dataset_speech(ds, tmp_path / "cub" / "speech", cfg, seed=2, progress=False)
    assert list(other.index.voice) != list(idx.voice)


def test_interrupted_synthesis_restarts_cleanly(tmp_path):
    ds = load_dataset(make_oxford(tmp_path / "ox", n_captions=2))
    out = tmp_path / "ox" / "speech"
    partial = out.with_name("speech.partial")
    partial.mkdir(parents=True)
    (partial / ".features.f16.tmp").write_bytes(b"\x00" * 1000)  # a killed run's leftovers
    (partial / "index.csv").write_text("garbage\n")
    store = synthesize_dataset_speech(ds, out, _speech_cfg(), seed=0, progress=False)
    assert not partial.exists() and len(store) == 8 + 2
    assert FeatureStore.open(out).features.shape[0] == store.index.n_frames.sum()


def test_parallel_synthesis_matches_serial(tmp_path):
    ds = load_dataset(make_cub(tmp_path / "cub", n_captions=2))
    a = synthesize_dataset_speech(ds, tmp_path / "a", _speech_cfg(), seed=5, progress=False)
    cfg2 = _speech_cfg()
    cfg2.workers = 2
    b = synthesize_dataset_speech(ds, tmp_path / "b", cfg2, seed=5, progress=False)
    assert list(a.index.voice) == list(b.index.voice)
    np.testing.assert_array_equal(np.asarray(a.features), np.asarray(b.features))
