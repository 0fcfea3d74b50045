"""GAN training loop (s2ilib.training.gan_trainer): data draws, EMA, checkpoints / resume, inference API."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

from s2ilib.core.config import get_config
from s2ilib.training.gan_trainer import (GanCheckpointError, GanDataError, WrongImageSampler, _batch_images, ema_update,
                              epoch_order, image_pyramid, train_gan)
from s2ilib.models.loading import generate, load_generator


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_cfg(**overrides):
    """The smoke preset shrunk further: 8/16 px, a few steps (each well under 0.1 s)."""
    cfg = get_config("smoke").gan
    return dataclasses.replace(cfg, **{"base_size": 8, "gf_dim": 8, "df_dim": 4, "z_dim": 8, "ca_dim": 6,
                                       "r_num": 1, "batch_size": 6, "steps": 6, "sample_every": 3,
                                       "ckpt_every": 2, **overrides})


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    n_images = 10
    images = torch.randint(0, 256, (n_images, 3, 32, 32), dtype=torch.uint8, generator=g)
    image_class = torch.arange(n_images) % 3
    cond_image_idx = torch.arange(25) % n_images
    cond_emb = torch.randn(25, 12, generator=g) + image_class[cond_image_idx, None].float()
    return images, cond_emb, cond_image_idx, image_class


def test_ema_update_math():
    torch.manual_seed(0)
    model, ema = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)), nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    before = [p.detach().clone() for p in ema.parameters()]
    model[1].running_mean.fill_(0.5)
    ema_update(ema, model, decay=0.9)
    for p_e, p0, p in zip(ema.parameters(), before, model.parameters()):
        torch.testing.assert_close(p_e, 0.9 * p0 + 0.1 * p.detach())
    torch.testing.assert_close(ema[1].running_mean, torch.full((2,), 0.5))  # buffers copied
    ema_update(ema, model, decay=0.0)
    for p_e, p in zip(ema.parameters(), model.parameters()):
        torch.testing.assert_close(p_e, p.detach())


def test_wrong_images_are_from_other_classes():
    image_class = torch.tensor([0, 0, 1, 1, 1, 2, 5, 5])
    train = torch.tensor([0, 1, 2, 3, 5, 6, 7])  # image 4 is not a training image
    sampler = WrongImageSampler(train, image_class)
    g = torch.Generator().manual_seed(0)
    cls = torch.tensor([0, 1, 2, 5] * 500)
    wrong = sampler(cls, g)
    assert bool((image_class[wrong] != cls).all())
    assert 4 not in wrong.tolist()
    # Uniform over the other classes' training images: class 0 draws from {2, 3, 5, 6, 7}.
    counts = torch.bincount(wrong[cls == 0], minlength=8)
    assert counts[[0, 1, 4]].sum() == 0 and int(counts[[2, 3, 5, 6, 7]].min()) > 60
    with pytest.raises(GanDataError, match="two classes"):
        WrongImageSampler(torch.tensor([0, 1]), image_class)


def test_pyramid_flips_and_epoch_order():
    images = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    images[:, :, :, :4] = 255  # left half white
    pyr = image_pyramid(images, [4, 8])
    assert [p.shape[-1] for p in pyr] == [4, 8] and pyr[1] is images
    row = pyr[0][0, 0, 0].tolist()  # antialiased (PIL-like triangle filter): a symmetric soft edge
    assert row[0] == 255 and row[3] == 0 and row[1] > 128 > row[2] and row[1] + row[2] == 255
    flip = torch.tensor([True, False])
    small, big = (_batch_images(p, torch.tensor([0, 1]), flip, torch.device("cpu")) for p in pyr)
    assert small[0, 0, 0, 0] == -1 and small[0, 0, 0, 3] == 1 and small[1, 0, 0, 0] == 1  # image 0 flipped
    assert big[0, 0, 0, 0] == -1 and big[1, 0, 0, 0] == 1  # same flip at every scale
    assert torch.equal(epoch_order(3, 1, 50), epoch_order(3, 1, 50))
    assert not torch.equal(epoch_order(3, 1, 50), epoch_order(3, 2, 50))
    assert sorted(epoch_order(3, 1, 50).tolist()) == list(range(50))


def test_train_writes_run_folder_and_generates(tmp_path, data):
    images, emb, idx, cls = data
    cfg = tiny_cfg()
    summary = train_gan(images, emb, idx, cls, cfg, tmp_path, seed=1, progress=False)
    assert summary["steps_run"] == 6 and summary["steps_per_s"] > 0 and summary["sizes"] == [8, 16]
    assert len(summary["final"]["d_loss"]) == 2
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    assert all(r["d_loss"][0] > 0 and r["g_loss"] > 0 and r["kl"] >= 0 for r in log)
    assert json.loads((tmp_path / "config.json").read_text())["gan"]["gf_dim"] == 8
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == [
        "step_0000003_16.png", "step_0000003_8.png", "step_0000006_16.png", "step_0000006_8.png"]

    G = load_generator(tmp_path / "generator_ema.pt")
    assert not G.training and G.sizes == [8, 16]
    assert G.train_config["gf_dim"] == 8 and G.train_config["bbox_crop"] is cfg.bbox_crop  # evaluation reads the view
    a = generate(G, emb[0], n=4, seed=7)
    assert a.shape == (4, 3, 16, 16) and a.dtype == torch.uint8
    assert torch.equal(a, generate(G, emb[0], n=4, seed=7, batch_size=3))  # deterministic, batch-independent
    assert not torch.equal(a, generate(G, emb[0], n=4, seed=8))
    assert not torch.equal(a[0], a[1])  # different noise per image
    both = generate(G, emb[:3], seed=7, all_branches=True)
    assert [tuple(x.shape) for x in both] == [(3, 3, 8, 8), (3, 3, 16, 16)]
    with pytest.raises(ValueError, match="n None or B"):
        generate(G, emb[:3], n=5)
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        load_generator(tmp_path / "nothing.pt")

    # A finished run is not redone and keeps the figures measured when it ran (a notebook rerun
    # must not record 0 s); a different architecture in the same folder is refused.
    again = train_gan(images, emb, idx, cls, cfg, tmp_path, seed=1, progress=False)
    assert again == {**summary, "reused": True} and again["train_seconds"] > 0
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 6
    with pytest.raises(GanCheckpointError, match="gf_dim"):
        train_gan(images, emb, idx, cls, tiny_cfg(gf_dim=16), tmp_path, seed=1, progress=False)
    with pytest.raises(GanCheckpointError, match="seed"):
        train_gan(images, emb, idx, cls, cfg, tmp_path, seed=2, progress=False)
    with pytest.raises(GanCheckpointError, match="different data"):
        train_gan(images, emb + 1, idx, cls, cfg, tmp_path, seed=1, progress=False)
    # a checkpoint written before a switch existed had its default (runkit.with_defaults): resuming at
    # that default is still this run, at another value it is refused
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["config"].pop("ma_gp_every") == 1
    torch.save(ckpt, tmp_path / "checkpoint.pt")
    assert train_gan(images, emb, idx, cls, cfg, tmp_path, seed=1, progress=False)["reused"]
    with pytest.raises(GanCheckpointError, match="ma_gp_every"):
        train_gan(images, emb, idx, cls, tiny_cfg(ma_gp_every=2), tmp_path, seed=1, progress=False)


@pytest.mark.parametrize("bf16", [False, True])
def test_resume_after_interruption_matches_uninterrupted(tmp_path, data, bf16, monkeypatch):
    images, emb, idx, cls = data
    if bf16:  # the bf16 path on every CPU, native bf16 or not
        monkeypatch.setenv("S2I_BF16", "force")
    cfg = tiny_cfg(bf16=bf16)
    ref = tmp_path / "ref"
    train_gan(images, emb, idx, cls, cfg, ref, seed=3, progress=False)

    def crash(step, record):
        if step == 5:  # after the checkpoint of step 4, mid-way to the next one
            raise KeyboardInterrupt

    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train_gan(images, emb, idx, cls, cfg, run, seed=3, progress=False, callback=crash)
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 4
    summary = train_gan(images, emb, idx, cls, cfg, run, seed=3, progress=False)
    assert summary["start_step"] == 4 and summary["steps_run"] == 2

    a = torch.load(ref / "checkpoint.pt", weights_only=True)
    b = torch.load(run / "checkpoint.pt", weights_only=True)
    for key in ("G", "G_ema", "Ds"):
        for name, t in a[key].items():
            torch.testing.assert_close(b[key][name], t, atol=1e-5, rtol=1e-4, msg=f"{key}.{name}")
    log_a = [json.loads(x) for x in (ref / "log.jsonl").read_text().splitlines()]
    log_b = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log_b] == [1, 2, 3, 4, 5, 6]  # the lost step 5 is logged once
    assert log_b[-1]["g_loss"] == pytest.approx(log_a[-1]["g_loss"], rel=1e-4)


def test_input_errors(tmp_path, data):
    images, emb, idx, cls = data
    with pytest.raises(GanDataError, match="uint8"):
        train_gan(images.float(), emb, idx, cls, tiny_cfg(), tmp_path, progress=False)
    with pytest.raises(GanDataError, match="largest branch"):
        train_gan(images[:, :, :8, :8], emb, idx, cls, tiny_cfg(), tmp_path, progress=False)
    with pytest.raises(GanDataError, match="cond_image_idx"):
        train_gan(images, emb, idx + 20, cls, tiny_cfg(), tmp_path, progress=False)
    with pytest.raises(GanDataError, match="two classes"):
        train_gan(images, emb, idx, torch.zeros_like(cls), tiny_cfg(), tmp_path, progress=False)
