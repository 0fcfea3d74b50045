"""The encoder trainer on a tiny fake dataset: resume equality, exports, run-folder rules."""
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from s2ilib.core.config import EncoderConfig
from s2ilib.models.embedding import export_embeddings
from s2ilib.models.loading import load_trained_encoder
from s2ilib.training.encoder_trainer import (EncoderTrainError, epoch_batches,
                                  train_encoder)

N_CLASSES, PER_CLASS, CAPTIONS, DIM, VIEWS = 6, 3, 2, 16, 2
WORDS = ["red", "blue", "green", "small", "large", "bird", "crown", "wings"]


@dataclass
class FakeRecord:
    key: str
    path: Path
    class_index: int
    split: str
    captions: list = field(default_factory=list)


class FakeStore:
    """Same interface as s2ilib.speech.features.FeatureStore: index DataFrame, get(i) -> (40, T) float32."""

    n_mels = 40

    def __init__(self, rows):
        self.index = pd.DataFrame(rows)
        rng = np.random.default_rng(0)
        self._feats = [rng.normal(size=(40, int(n))).astype(np.float32) - 40 for n in self.index["n_frames"]]

    def __len__(self):
        return len(self.index)

    def get(self, i):
        return self._feats[int(i)].copy()


class FakeDataset:
    def __init__(self):
        self.name, self.root = "fake", Path("/nonexistent")
        self.images, rows = [], []
        rng = np.random.default_rng(1)
        for c in range(N_CLASSES):
            split = "train" if c < 4 else "test"
            for k in range(PER_CLASS):
                i = len(self.images)
                caps = [f"a {WORDS[c]} bird with {WORDS[(c + k + j) % 8]} wings" for j in range(CAPTIONS)]
                self.images.append(FakeRecord(f"images/{c}/{k}", Path(f"/nonexistent/{i}.jpg"), c, split, caps))
                conds = ["seen"] + (["unseen"] if split == "test" else [])
                for cond in conds:
                    for j in range(CAPTIONS):
                        rows.append(dict(utt_id=f"u{len(rows)}", image_idx=i, caption_idx=j, voice="v",
                                         condition=cond, text=caps[j], n_frames=int(rng.integers(50, 200))))
        self.speech = FakeStore(rows)

    def split(self, name):
        return [i for i, r in enumerate(self.images) if r.split == name]


@pytest.fixture(scope="module")
def data():
    ds = FakeDataset()
    feats = torch.randn(len(ds.images), VIEWS, DIM, generator=torch.Generator().manual_seed(2))
    return ds, feats


def _cfg(**kw):
    base = dict(cnn_channels=[4, 4, 4, 8, 8, 8, 8, 8], rnn_type="gru", rnn_hidden=8, batch_size=8,
                epochs=3, max_steps=8, text_epochs=0, lr_step_epochs=1, val_every=4, ckpt_every=3,
                max_frames=128, bf16=False)
    base.update(kw)
    return EncoderConfig(**base)


def test_resume_after_kill_gives_same_weights(data, tmp_path):
    ds, feats = data
    full = train_encoder("speech_ts", ds, feats, _cfg(), tmp_path / "full", seed=3, progress=False)
    part = train_encoder("speech_ts", ds, feats, _cfg(), tmp_path / "resumed", seed=3, progress=False, stop_at=5)
    assert part["stopped_early"] and part["steps"] == 5
    assert not (tmp_path / "resumed" / "embeddings.pt").exists()
    at_kill = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert at_kill["step"] == 3  # the last checkpoint before the "kill"
    resumed = train_encoder("speech_ts", ds, feats, _cfg(), tmp_path / "resumed", seed=3, progress=False)
    assert resumed["resumed_from"] == 3
    assert full["steps"] == resumed["steps"] == 8
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["model"]
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k
    # the comparison can fail: weights at the kill differ from the final ones
    assert any(not torch.allclose(a[k].float(), at_kill["model"][k].float()) for k in a)
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))  # redone steps are not logged twice


def test_speech_ts_outputs_and_rerun_is_cached(data, tmp_path):
    ds, feats = data
    out = tmp_path / "run"
    s = train_encoder("speech_ts", ds, feats, _cfg(), out, seed=1, progress=False)
    for name in ("config.json", "checkpoint.pt", "log.jsonl", "metrics.jsonl", "embeddings.pt", "summary.json"):
        assert (out / name).is_file(), name
    emb = torch.load(out / "embeddings.pt", weights_only=True)
    assert emb["emb"].shape == (len(ds.speech), DIM) and emb["dim"] == DIM and emb["encoder"] == "speech_ts"
    assert emb["utt_id"] == ds.speech.index["utt_id"].tolist()
    assert set(emb["condition"]) == {"seen", "unseen"}
    assert torch.isfinite(emb["emb"]).all()
    assert set(s["test"]) == {"seen", "unseen"} and 0 <= s["test"]["seen"]["recall@1"] <= 1
    assert s["steps"] == 8 and s["steps_per_s"] > 0 and s["n_val_items"] > 0
    log = [json.loads(ln) for ln in (out / "log.jsonl").read_text().splitlines()]
    assert {"jel", "norm", "kdl", "total", "lr", "time_s"} <= set(log[0])
    # StepLR(1 epoch, 0.5): lr halves after each epoch (8 steps over epochs of a few batches)
    assert log[-1]["lr"] < log[0]["lr"]
    # a finished folder is returned as is, without training again
    mtime = (out / "checkpoint.pt").stat().st_mtime_ns
    again = train_encoder("speech_ts", ds, feats, _cfg(), out, seed=1, progress=False)
    assert again["steps"] == 8 and (out / "checkpoint.pt").stat().st_mtime_ns == mtime
    # the saved model reproduces the exported embeddings
    model, kind, _ = load_trained_encoder(out)
    re = export_embeddings(model, kind, ds, progress=False)
    assert torch.allclose(re["emb"], emb["emb"], atol=1e-5)


def test_other_config_in_same_folder_is_refused(data, tmp_path):
    ds, feats = data
    train_encoder("speech_ts", ds, feats, _cfg(max_steps=2), tmp_path, seed=1, progress=False, stop_at=1)
    with pytest.raises(EncoderTrainError, match="rnn_hidden"):
        train_encoder("speech_ts", ds, feats, _cfg(max_steps=2, rnn_hidden=4), tmp_path, seed=1, progress=False)


def test_a_switch_added_later_does_not_orphan_a_finished_run(data, tmp_path):
    """A run written before a key existed had that key's default: it is returned as is (not
    retrained, not refused); a run with another value of the key is still refused."""
    ds, feats = data
    out = tmp_path / "run"
    train_encoder("speech_ts", ds, feats, _cfg(), out, seed=1, progress=False)
    for name in ("config.json", "summary.json"):  # as an older version wrote them
        d = json.loads((out / name).read_text())
        (d["config"] if name == "summary.json" else d)["encoder"].pop("teacher_bbox_crop")
        (out / name).write_text(json.dumps(d))
    mtime = (out / "checkpoint.pt").stat().st_mtime_ns
    again = train_encoder("speech_ts", ds, feats, _cfg(), out, seed=1, progress=False)
    assert again["steps"] == 8 and (out / "checkpoint.pt").stat().st_mtime_ns == mtime
    cfg = _cfg()
    cfg.teacher_bbox_crop = True
    with pytest.raises(EncoderTrainError, match="teacher_bbox_crop"):
        train_encoder("speech_ts", ds, feats, cfg, out, seed=1, progress=False)


def test_classifier_and_text_encoders(data, tmp_path, force_bf16):
    ds, feats = data
    s = train_encoder("speech_cls", ds, feats, _cfg(max_steps=4, bf16=True), tmp_path / "cls", seed=1, progress=False)
    log = json.loads((tmp_path / "cls" / "log.jsonl").read_text().splitlines()[0])
    assert {"ce", "acc"} <= set(log) and s["test"] == {}
    emb = torch.load(tmp_path / "cls" / "embeddings.pt", weights_only=True)
    assert emb["emb"].shape == (len(ds.speech), DIM)
    t = train_encoder("text_ts", ds, feats, _cfg(max_steps=4, bf16=True), tmp_path / "text", seed=1, progress=False)
    emb = torch.load(tmp_path / "text" / "embeddings.pt", weights_only=True)
    n_caps = sum(len(r.captions) for r in ds.images)
    assert emb["emb"].shape == (n_caps, DIM) and set(emb["condition"]) == {"text"}
    assert emb["utt_id"][1] == "images/0/0#1"
    assert set(t["test"]) == {"text"}


def test_epoch_batches_deterministic_complete_and_bucketed():
    rng = np.random.default_rng(0)
    n_frames = rng.integers(50, 1000, size=300)
    a = epoch_batches(n_frames, 10, seed=1, epoch=2, bucket=True)
    b = epoch_batches(n_frames, 10, seed=1, epoch=2, bucket=True)
    assert all((x == y).all() for x, y in zip(a, b))
    assert sorted(np.concatenate(a).tolist()) == list(range(300))
    c = epoch_batches(n_frames, 10, seed=1, epoch=3, bucket=True)
    assert any((x != y).any() for x, y in zip(a, c))
    plain = epoch_batches(n_frames, 10, seed=1, epoch=2, bucket=False)
    pad = lambda bs: sum(int(n_frames[x].max() - n_frames[x].min()) for x in bs)
    assert pad(a) < pad(plain) / 3


def test_spec_augment_changes_training_and_resumes_exactly(data, tmp_path):
    ds, feats = data
    aug = dict(specaug_freq_masks=2, specaug_freq_width=6, specaug_time_masks=2, specaug_time_width=20)
    plain = train_encoder("speech_ts", ds, feats, _cfg(), tmp_path / "plain", seed=3, progress=False)
    full = train_encoder("speech_ts", ds, feats, _cfg(**aug), tmp_path / "full", seed=3, progress=False)
    train_encoder("speech_ts", ds, feats, _cfg(**aug), tmp_path / "resumed", seed=3, progress=False, stop_at=5)
    resumed = train_encoder("speech_ts", ds, feats, _cfg(**aug), tmp_path / "resumed", seed=3, progress=False)
    assert plain["steps"] == full["steps"] == resumed["steps"] == 8 and resumed["resumed_from"] == 3
    w = {k: torch.load(tmp_path / k / "checkpoint.pt", weights_only=True)["model"] for k in ("plain", "full", "resumed")}
    assert all(torch.allclose(w["full"][k].float(), w["resumed"][k].float(), atol=1e-6) for k in w["full"])
    assert any(not torch.allclose(w["full"][k].float(), w["plain"][k].float()) for k in w["full"])
    # the run folder records the switch (a run without it is refused, as for any other key)
    assert json.loads((tmp_path / "full" / "config.json").read_text())["encoder"]["specaug_time_masks"] == 2
