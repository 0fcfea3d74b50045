"""Issue 14 part 4: the Places path end to end at ``smoke``.

A tiny dataset in the Places audio-caption layout, its wavs recorded at test time by espeak-ng
(tests/places_fixture.py), goes through the same stages the notebooks call: ``load_dataset``,
the featurisation of the recorded wavs into the run's data folder (``data.dataset_dirs``), the
teacher, the teacher-student speech encoder, a StackGAN-v2 generator, speech -> image inference
from a recorded wav, and the main evaluation, where the attribute metrics are skipped with their
reason (Places has no attribute labels) while FID / KID / IS / R-precision are computed.
"""
import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch
from places_fixture import SCENES, make_recorded_places

from s2ilib.core.config import ConfigError, get_config
from s2ilib.data.datasets import load_dataset
from s2ilib.speech.audio import load_wav
from s2ilib.study import stages

pytestmark = pytest.mark.slow  # trains an encoder and a generator (about 30 s on 2 cores)

NAME = "places"
# The smallest smoke run: a few encoder steps, three GAN steps (losses and files are what is checked).
FAST = {"data.workers": 1, "encoder.max_steps": 4, "gan.steps": 3, "gan.ckpt_every": 3, "gan.sample_every": 3,
        "device": "cpu"}


def _cfg(src, **extra):
    return get_config("smoke", {"data.datasets": [NAME], "data.dataset_dirs": [str(src)], **FAST, **extra})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The fixture built once: (source folder, config, RunPaths, dataset as notebook 01 leaves it)."""
    base = tmp_path_factory.mktemp("places_e2e")
    src = make_recorded_places(base / NAME)
    cfg = _cfg(src)
    paths = stages.RunPaths.create(base / "runs", base / "reports", cfg)
    ds, _ = stages.build_dataset(NAME, cfg, paths, progress=False)
    n = torch.get_num_threads()
    torch.set_num_threads(min(n, 2))
    yield src, cfg, paths, ds
    torch.set_num_threads(n)


def test_layout_and_recorded_speech_features(run):
    src, cfg, paths, built = run
    raw = load_dataset(src)
    assert raw.layout == "places" and raw.kind == "places"
    assert raw.classes == sorted(SCENES)  # class = the image's folder path
    assert len(raw.split("train")) == 12 and len(raw.split("test")) == 6  # val.json -> test
    assert all(len(r.wavs) == 2 == len(r.captions) == len(r.speakers) for r in raw.images)

    ds = stages.load_built_dataset(NAME, paths)  # what notebooks 02-04 open
    assert ds.name == NAME and ds.fingerprint() == raw.fingerprint() == built.fingerprint()
    data_dir = paths.data(NAME)
    assert ds.speech.root == data_dir / "speech"  # the store is in the run, not in the user's copy
    assert not (src / "speech").exists()
    idx = ds.speech.index
    assert len(idx) == 36 and set(idx["condition"]) == {"seen"}
    assert list(idx["split"].value_counts().sort_index()) == [12, 24]  # test, train
    assert set(idx["voice"]) == {s for r in raw.images for s in r.speakers}
    # every row is its recorded wav: duration from the file, log-mel (40, T) of matching length
    r = 7
    rec = ds.images[int(idx.at[r, "image_idx"])]
    wav = rec.wavs[int(idx.at[r, "caption_idx"])]
    assert idx.at[r, "text"] == rec.captions[int(idx.at[r, "caption_idx"])]
    assert idx.at[r, "duration_s"] == pytest.approx(sf.info(str(wav)).duration, abs=2e-3)
    feats = ds.speech.get(r)
    assert feats.shape[0] == 40 and abs(feats.shape[1] - 100 * idx.at[r, "duration_s"]) <= 3
    assert np.isfinite(feats).all() and feats.std() > 0.5
    # the audio the two-stage ASR hears is the recorded file itself, at 16 kHz
    np.testing.assert_array_equal(stages.speak_utterance(ds, r), load_wav(wav, 16000))
    # cached: a second build reuses the store
    mtime = (data_dir / "speech" / "features.npy").stat().st_mtime_ns
    stages.build_dataset(NAME, cfg, paths, progress=False)
    assert (data_dir / "speech" / "features.npy").stat().st_mtime_ns == mtime
    assert json.loads((data_dir / "source.json").read_text())["source"] == str(src.resolve())


def test_dataset_dirs_config_errors(run, tmp_path):
    src, cfg, paths, _ = run
    with pytest.raises(ConfigError, match=r"data\.datasets .* does not list"):
        get_config("smoke", {"data.dataset_dirs": [str(src)]})  # the folder would go unused
    with pytest.raises(ConfigError, match="two folders are named"):
        get_config("smoke", {"data.datasets": [NAME], "data.dataset_dirs": [str(src), str(tmp_path / NAME)]})
    with pytest.raises(ConfigError, match="must be an absolute path"):
        get_config("smoke", {"data.datasets": [NAME], "data.dataset_dirs": [NAME]})
    with pytest.raises(FileNotFoundError, match="is neither embedded"):
        stages.dataset_dir("kitchens", cfg)
    # the dataset's name keys its run folders like any other; the folder it came from is part of the variant
    assert paths.data(NAME).name.startswith(f"{NAME}@")
    overrides = json.loads((paths.data(NAME) / "variant.json").read_text())["overrides"]
    assert overrides["data.dataset_dirs"] == [str(src)] and overrides["data.datasets"] == [NAME]


def test_encoder_and_generator_at_smoke(run):
    from s2ilib.inference import SpeechToImage

    src, cfg, paths, ds = run
    teacher = stages.teacher_features(ds, cfg, paths, progress=False)
    assert tuple(teacher.shape[:2]) == (18, cfg.encoder.teacher_views) and torch.isfinite(teacher).all()

    summary = stages.train_encoder_stage(ds, "speech_ts", cfg, paths, teacher, progress=False)
    enc = paths.encoder(NAME, "speech_ts")
    assert summary["steps"] == 4
    assert (enc / "checkpoint.pt").is_file() and (enc / "embeddings.pt").is_file()
    log = stages.read_log(enc)
    assert len(log) == 4 and np.isfinite(log[["total", "jel", "norm", "kdl"]].to_numpy()).all()
    emb = stages.load_embeddings(paths, NAME, "speech_ts")
    assert tuple(emb["emb"].shape) == (36, teacher.shape[2]) and torch.isfinite(emb["emb"]).all()
    assert list(emb["utt_id"]) == list(ds.speech.index["utt_id"])
    test_rows = [json.loads(line) for line in (enc / "metrics.jsonl").read_text().splitlines()]
    seen = [m for m in test_rows if m.get("split") == "test" and m.get("condition") == "seen"]
    assert len(seen) == 1 and 0.0 <= seen[0]["recall@10"] <= 1.0  # retrieval on the 6 test images

    gsum = stages.train_generator_stage(ds, "one_stage", cfg, paths, progress=False)
    gan = paths.gan(NAME, "one_stage")
    assert gsum["steps"] == 3 and gsum["sizes"] == [16, 32]
    assert gsum["n_train_images"] == 12 and gsum["n_conditions"] == 24
    final = gsum["final"]
    assert all(math.isfinite(v) for v in [*final["d_loss"], final["g_loss"], final["kl"]])
    assert (gan / "generator_ema.pt").is_file() and (gan / "checkpoint.pt").is_file()
    assert json.loads((gan / "pipeline.json").read_text())["dataset"] == NAME

    # speech -> image from one of the recorded test wavs
    wav = ds.images[ds.split("test")[0]].wavs[0]
    images = SpeechToImage(gan, device="cpu").from_wav(wav, n=3, seed=0)
    assert tuple(images.shape) == (3, 3, 32, 32) and images.dtype == torch.uint8
    assert images.float().std() > 0  # not a constant image


def test_evaluation_skips_attribute_metrics_with_a_reason(run):
    src, cfg, paths, ds = run
    if not (paths.gan(NAME, "one_stage") / "generator_ema.pt").is_file():
        pytest.skip("needs the generator of test_encoder_and_generator_at_smoke")
    res = stages.evaluate_methods(ds, cfg, paths, ["one_stage"], progress=False)
    cell = res["one_stage"]["seen"]
    assert cell["n_images"] == 12  # 6 test images x smoke's 2 captions
    assert math.isfinite(cell["fid"]) and cell["fid"] > 0 and math.isfinite(cell["kid"])
    assert 0.0 <= cell["r_precision"] <= 1.0 and cell["is"] >= 1.0
    assert "attr_acc" not in cell and res["reader"] is None
    assert res["one_stage"]["unseen"]["skipped"] == "fewer than 2 queries"  # Places has no held-out voices
    skipped = res["skipped_metrics"]
    assert set(skipped) == {"attr_acc", "attr_acc_shuffled", "reader"}
    assert "no attribute labels" in skipped["attr_acc"] and NAME in skipped["attr_acc"]
    on_disk = json.loads((paths.eval(NAME) / "skipped_metrics.json").read_text())
    assert on_disk == skipped
