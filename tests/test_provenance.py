"""Issue 33, "say what reproduces where": a finished run folder says which commit and machine trained
it (``summary.json`` -> ``trained_by``), and the study's results entry of a folder says whether the
notebook reused it (``reused``) and who trained it, or that an old folder never recorded it."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fixtures import TINY_GAN, tiny_gan_data
from test_train_encoder import DIM, VIEWS, FakeDataset, _cfg

from s2ilib.core.config import get_config
from s2ilib.core.hardware import FIELDS, hardware_info
from s2ilib.core.results import git_commit, record
from s2ilib.study import report
from s2ilib.core.runkit import NOT_RECORDED
from s2ilib.study import stages
from s2ilib.study.paths import RunPaths
from s2ilib.training import encoder_trainer, gan_trainer

pytestmark = pytest.mark.usefixtures("one_thread")


def _check_trained_here(tb: dict, sessions: list[int]) -> None:
    """``trained_by`` names this checkout and this machine; ``sessions``: the from_step of each session."""
    here = git_commit()
    assert tb["commit"] == here["commit"] and tb["dirty"] == here["dirty"]
    assert tb["commit"] is None or len(tb["commit"]) == 40
    hw = hardware_info()
    assert set(FIELDS) <= set(tb["hardware"])
    assert tb["hardware"]["cpu_model"] == hw["cpu_model"] and tb["hardware"]["kernel_flags"] == hw["kernel_flags"]
    assert tb["cpu"] and isinstance(tb["cpu"], str)
    finished = dt.datetime.fromisoformat(tb["finished"])
    assert abs((dt.datetime.now(dt.timezone.utc) - finished).total_seconds()) < 600
    assert [s["from_step"] for s in tb["sessions"]] == sessions
    assert all(s["commit"] == here["commit"] and s["cpu"] == tb["cpu"] for s in tb["sessions"])
    assert tb["started_by"] == (tb["sessions"][0] if sessions[0] == 0 else None)


# ------------------------------------------------------------------------------------------------
# the trainers


@pytest.fixture(scope="module")
def enc_data():
    ds = FakeDataset()
    return ds, torch.randn(len(ds.images), VIEWS, DIM, generator=torch.Generator().manual_seed(2))


def test_encoder_records_who_trained_it_and_a_rerun_reuses_it(enc_data, tmp_path):
    ds, feats = enc_data
    out = tmp_path / "run"
    fresh = encoder_trainer.train_encoder("speech_ts", ds, feats, _cfg(), out, seed=1, progress=False)
    assert fresh["reused"] is False
    _check_trained_here(fresh["trained_by"], [0])
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["trained_by"] == fresh["trained_by"]
    assert "reused" not in on_disk  # a property of the call, not of the folder
    again = encoder_trainer.train_encoder("speech_ts", ds, feats, _cfg(), out, seed=1, progress=False)
    assert again["reused"] is True and again["trained_by"] == fresh["trained_by"]


def test_encoder_resumed_run_lists_its_sessions(enc_data, tmp_path):
    ds, feats = enc_data
    out = tmp_path / "run"
    part = encoder_trainer.train_encoder("speech_ts", ds, feats, _cfg(), out, seed=1, progress=False, stop_at=5)
    assert part["stopped_early"] and "trained_by" not in part  # not finished: nobody has trained it yet
    done = encoder_trainer.train_encoder("speech_ts", ds, feats, _cfg(), out, seed=1, progress=False)
    assert done["resumed_from"] == 3 and done["reused"] is False
    _check_trained_here(done["trained_by"], [0, 3])  # started at 0, resumed from the step-3 checkpoint


def test_gan_records_who_trained_it_across_a_resume(tmp_path):
    images, emb, idx, cls = tiny_gan_data()
    cfg = dataclasses.replace(get_config("smoke").gan, **TINY_GAN, steps=6, sample_every=3, ckpt_every=2)

    def crash(step, record):
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        gan_trainer.train_gan(images, emb, idx, cls, cfg, tmp_path, seed=1, progress=False, callback=crash)
    assert not (tmp_path / "summary.json").exists()
    fresh = gan_trainer.train_gan(images, emb, idx, cls, cfg, tmp_path, seed=1, progress=False)
    assert fresh["start_step"] == 4 and fresh["reused"] is False
    _check_trained_here(fresh["trained_by"], [0, 4])
    assert json.loads((tmp_path / "summary.json").read_text())["trained_by"] == fresh["trained_by"]
    again = gan_trainer.train_gan(images, emb, idx, cls, cfg, tmp_path, seed=1, progress=False)
    assert again["reused"] is True and again["trained_by"] == fresh["trained_by"]


# ------------------------------------------------------------------------------------------------
# the study's results entries


def _enc_entry(summary, ds, cfg, paths) -> dict:
    """The notebook's ``encoders`` entry of the folder (report.encoders_payload), provenance keys only."""
    entry = report.encoders_payload({(ds.name, "speech_ts"): summary}, {}, cfg, paths)[ds.name]["speech_ts"]
    return {k: entry[k] for k in ("reused", "trained_by", "trained_by_note") if k in entry}


def _gan_entry(summary, ds, cfg, paths) -> dict:
    entry = report.generators_payload({(ds.name, "one_stage"): summary}, cfg, paths)[ds.name]["one_stage"]
    return {k: entry[k] for k in ("reused", "trained_by", "trained_by_note") if k in entry}


def _drop_trained_by(folder) -> dict:
    """Make ``folder`` look trained before provenance was kept; returns what was removed."""
    summary = json.loads((folder / "summary.json").read_text())
    tb = summary.pop("trained_by")
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    return tb


def test_encoder_stage_says_fresh_reused_and_not_recorded(enc_data, tmp_path, monkeypatch):
    ds, feats = enc_data
    real = encoder_trainer.train_encoder
    monkeypatch.setattr(encoder_trainer, "train_encoder",  # the stage's call, on a tiny encoder
                        lambda kind, ds, feats, cfg, out, **kw: real(kind, ds, feats, _cfg(), out, **kw))
    cfg = get_config("smoke", {"device": "cpu"})
    paths = RunPaths.create(tmp_path / "runs", tmp_path / "rep", cfg)
    folder = paths.encoder(ds.name, "speech_ts")

    fresh = stages.train_encoder_stage(ds, "speech_ts", cfg, paths, feats, progress=False)
    tb = json.loads((folder / "summary.json").read_text())["trained_by"]
    _check_trained_here(tb, [0])
    assert fresh["reused"] is False and _enc_entry(fresh, ds, cfg, paths) == {"reused": False, "trained_by": tb}

    reused = stages.train_encoder_stage(ds, "speech_ts", cfg, paths, feats, progress=False)
    assert reused["reused"] is True and reused["trained_by"] == tb
    assert _enc_entry(reused, ds, cfg, paths) == {"reused": True, "trained_by": tb}
    # the payload lands in results.json through record(), beside the entry's numbers
    record(paths.results, "encoders", report.encoders_payload({(ds.name, "speech_ts"): reused}, {}, cfg, paths),
           preset=cfg.preset)
    saved = json.loads(paths.results.read_text())["encoders"][ds.name]["speech_ts"]
    assert saved["reused"] is True and saved["trained_by"] == tb and saved["steps"] == 8

    assert _drop_trained_by(folder) == tb
    old = stages.train_encoder_stage(ds, "speech_ts", cfg, paths, feats, progress=False)
    assert old["reused"] is True and old["trained_by"] is None and old["trained_by_note"] == NOT_RECORDED
    assert _enc_entry(old, ds, cfg, paths) == {"reused": True, "trained_by": None, "trained_by_note": NOT_RECORDED}


class ToyDataset:
    """10 training images of 3 classes (tiny_gan_data's) and 2 test images, one caption each."""

    name = "toy"

    def __init__(self):
        self.images = [SimpleNamespace(class_index=i % 3 if i < 10 else 3 + i % 2, captions=[f"bird {i}"],
                                       split="train" if i < 10 else "test") for i in range(12)]

    def split(self, name):
        return [i for i, r in enumerate(self.images) if r.split == name]


def test_generator_stage_says_fresh_reused_and_not_recorded(tmp_path, monkeypatch):
    images, emb, idx, _ = tiny_gan_data()
    ds = ToyDataset()
    table = {"emb": torch.cat([emb, emb[:2]]), "image_idx": torch.cat([idx, torch.tensor([10, 11])]),
             "caption_idx": torch.zeros(len(idx) + 2, dtype=torch.long), "condition": ["seen"] * (len(idx) + 2)}
    monkeypatch.setattr(stages, "load_embeddings", lambda paths, name, kind, method=None: table)
    monkeypatch.setattr(stages, "load_images_uint8", lambda ds, train, size, bbox_crop=False: images[np.asarray(train)])
    real = gan_trainer.train_gan
    tiny = lambda cfg: dataclasses.replace(cfg, **TINY_GAN, steps=4, sample_every=4, ckpt_every=2)  # noqa: E731
    monkeypatch.setattr(gan_trainer, "train_gan", lambda im, e, i, c, cfg, out, **kw: real(im, e, i, c, tiny(cfg), out, **kw))
    cfg = get_config("smoke", {"device": "cpu"})
    paths = RunPaths.create(tmp_path / "runs", tmp_path / "rep", cfg)
    folder = paths.gan(ds.name, "one_stage")

    fresh = stages.train_generator_stage(ds, "one_stage", cfg, paths, progress=False, n_fixed=2)
    tb = json.loads((folder / "summary.json").read_text())["trained_by"]
    _check_trained_here(tb, [0])
    assert fresh["reused"] is False and fresh["trained_by"] == tb and fresh["n_conditions"] == len(idx)
    assert _gan_entry(fresh, ds, cfg, paths) == {"reused": False, "trained_by": tb}

    reused = stages.train_generator_stage(ds, "one_stage", cfg, paths, progress=False, n_fixed=2)
    assert reused["reused"] is True and reused["trained_by"] == tb
    assert _gan_entry(reused, ds, cfg, paths) == {"reused": True, "trained_by": tb}

    _drop_trained_by(folder)
    old = stages.train_generator_stage(ds, "one_stage", cfg, paths, progress=False, n_fixed=2)
    assert old["reused"] is True and old["trained_by"] is None
    assert _gan_entry(old, ds, cfg, paths) == {"reused": True, "trained_by": None, "trained_by_note": NOT_RECORDED}
    # retrained (a new folder content): the note goes, the new trained_by replaces the null
    for p in folder.iterdir():
        if p.is_file():
            p.unlink()
    again = stages.train_generator_stage(ds, "one_stage", cfg, paths, progress=False, n_fixed=2)
    new_tb = json.loads((folder / "summary.json").read_text())["trained_by"]
    assert _gan_entry(again, ds, cfg, paths) == {"reused": False, "trained_by": new_tb}
