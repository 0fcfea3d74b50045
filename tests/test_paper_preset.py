"""The ``paper`` preset's models build and take one training step on the CPU (batch 2), so the GPU
preset cannot silently break: 64/128/256 px StackGAN-v2 with GF = DF = 64, the authors' speech
encoder (CNN up to 1024 channels + BiLSTM 512)."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from s2ilib.core.config import get_config
from s2ilib.training.encoder_trainer import train_encoder
from s2ilib.training.gan_trainer import train_gan
from test_train_encoder import FakeDataset

pytestmark = pytest.mark.slow


def test_paper_encoder_one_step(tmp_path):
    cfg = get_config("paper")
    assert cfg.encoder.cnn_channels[-1] == 1024 and cfg.encoder.rnn_type == "lstm" and cfg.encoder.rnn_hidden == 512
    enc = dataclasses.replace(cfg.encoder, batch_size=2, max_steps=1, val_every=1, ckpt_every=1)
    ds = FakeDataset()
    feats = torch.randn(len(ds.images), 2, 1024, generator=torch.Generator().manual_seed(0))
    summary = train_encoder("speech_ts", ds, feats, enc, tmp_path / "enc", seed=0, progress=False)
    assert summary["steps"] == 1
    log = [json.loads(line) for line in (tmp_path / "enc" / "log.jsonl").read_text().splitlines()]
    assert log and all(torch.isfinite(torch.tensor(r["loss"])) for r in log if "loss" in r)


def test_paper_gan_one_step(tmp_path):
    cfg = get_config("paper")
    gan = cfg.gan
    assert (gan.branches, gan.base_size, gan.gf_dim, gan.df_dim) == (3, 64, 64, 64)
    gan = dataclasses.replace(gan, batch_size=2, steps=1, sample_every=1, ckpt_every=1)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (4, 3, 256, 256), dtype=torch.uint8, generator=g)
    cond = torch.randn(8, 1024, generator=g)
    summary = train_gan(images, cond, torch.arange(8) % 4, torch.tensor([0, 0, 1, 1]), gan, tmp_path / "gan",
                        seed=0, progress=False)
    assert summary["steps"] == 1 and summary["sizes"] == [64, 128, 256]
    final = torch.tensor([x for v in summary["final"].values() for x in (v if isinstance(v, list) else [v])],
                         dtype=torch.float64)
    assert final.numel() >= 4 and bool(torch.isfinite(final).all())
