"""torchrun training (s2ilib.training.distributed): 2 CPU ranks (gloo) against one process.

One torchrun launch (this file run as a script) trains a tiny GAN and a tiny speech encoder on two
ranks, each killed at step j (the GAN by an exception on both ranks, the encoder by ``stop_at``),
after its last checkpoint, and resumed on the two ranks to step k; the test then checks that the
logged losses match a single process on the same global batch, that the EMA generator was
identical on both ranks, and that one process resumes the two-rank folders.

Tolerance: the two-rank step adds the ranks' batch-norm sums and averages gradients, so it differs
from one process only by float32 rounding order. Measured max |difference| of the logged losses
(2 CPU ranks, torch 2.14): GAN 4e-7 over 4 steps, encoder 7e-6 over 6 steps; the test allows 1e-4 relative
+ 1e-5 absolute. The encoder's masked batch norm takes the variance as E[x^2] - E[x]^2 in float32
(the single-process code too): on inputs far from zero mean (the fake store's N(-40, 1) log-mels)
that cancellation leaves ~1e-4 relative error in the input normalisation, which the two summation
orders make differently and six steps of training amplify to ~1e-3 in the losses. That case is
checked separately with a tolerance of 1e-2 relative; the exact-equivalence checks use centred
features.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fixtures import TINY_GAN, tiny_gan_data

from s2ilib.core.config import get_config

ROOT = Path(__file__).resolve().parents[1]
J, K = 3, 4  # GAN: killed at step J (checkpoint at 2), resumed to K (then one process to K + 2)
EJ, EK = 5, 6  # encoder: the same (checkpoint at 3), 3 steps per epoch on the fake dataset
RTOL, ATOL = 1e-4, 1e-5
GAN_KEYS = ("d_loss", "g_adv", "g_loss", "kl", "color")
ENC_KEYS = ("jel", "norm", "kdl", "total")


def gan_cfg(**kw):
    """Tiny GAN (8/16 px), DiffAugment on (its draws are split over the ranks too), bf16 off. The
    authors' recipe: the contrastive recipe's InfoNCE takes its negatives from each rank's own batch,
    so it is not the same loss as one process over the global batch."""
    cfg = get_config("smoke", {"gan.recipe": "stackgan2"}).gan
    return dataclasses.replace(cfg, **{**TINY_GAN, "steps": K, "sample_every": 100, "ckpt_every": 2,
                                       "diffaug": "translation,cutout", **kw})


def encoder_data(centred: bool = True):
    sys.path.insert(0, str(Path(__file__).parent))
    from test_train_encoder import VIEWS, DIM, FakeDataset, _cfg

    ds = FakeDataset()
    if centred:
        for f in ds.speech._feats:  # the fake log-mels are N(-40, 1): centre them (see the module note)
            f += 40
    feats = torch.randn(len(ds.images), VIEWS, DIM, generator=torch.Generator().manual_seed(2))
    return ds, feats, _cfg(max_steps=EK, ckpt_every=3, val_every=4, batch_size=8)


def _log(path: Path, keys) -> torch.Tensor:
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    return torch.tensor([[v for k in keys for v in (r[k] if isinstance(r[k], list) else [r[k]])] for r in rows],
                        dtype=torch.float64)


def _worker(out: Path) -> None:
    """Body of each torchrun rank: the GAN and the encoder, each stopped at step j and resumed."""
    from s2ilib.training import distributed, gan_trainer
    from s2ilib.training.encoder_trainer import train_encoder

    torch.set_num_threads(1)
    ctx = distributed.init_from_env("cpu")
    emas = []
    update = gan_trainer.ema_update
    gan_trainer.ema_update = lambda ema, model, d: (emas.append(ema), update(ema, model, d))
    data = tiny_gan_data()

    def kill(step, record):
        if step == J:
            raise KeyboardInterrupt

    try:
        gan_trainer.train_gan(*data, gan_cfg(), out / "gan", seed=5, progress=False, device="cpu", callback=kill)
    except KeyboardInterrupt:
        torch.distributed.barrier()  # a relaunch would start both ranks afresh
    assert len((out / "gan" / "log.jsonl").read_text().splitlines()) == J  # past the checkpoint at 2
    gan_trainer.train_gan(*data, gan_cfg(), out / "gan", seed=5, progress=False, device="cpu")
    ema_same = distributed.same_on_all_ranks(emas[-1], ctx)
    ds, feats, cfg = encoder_data()
    train_encoder("speech_ts", ds, feats, cfg, out / "enc", seed=3, progress=False, stop_at=EJ, device="cpu")
    train_encoder("speech_ts", ds, feats, cfg, out / "enc", seed=3, progress=False, device="cpu")
    ds, feats, cfg = encoder_data(centred=False)
    train_encoder("speech_ts", ds, feats, cfg, out / "enc_raw", seed=3, progress=False, device="cpu")
    if ctx.lead:
        (out / "ranks.json").write_text(json.dumps({"world": ctx.world, "ema_same": ema_same}))
    torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", __file__, str(out)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-4000:]
    return out


@pytest.mark.slow
def test_gan_two_ranks_match_one_process_and_resume_on_one(two_ranks, tmp_path, one_thread):
    from s2ilib.training.gan_trainer import train_gan

    assert json.loads((two_ranks / "ranks.json").read_text()) == {"world": 2, "ema_same": True}
    data = tiny_gan_data()
    train_gan(*data, gan_cfg(), tmp_path / "one", seed=5, progress=False, device="cpu")
    two, one = _log(two_ranks / "gan" / "log.jsonl", GAN_KEYS), _log(tmp_path / "one" / "log.jsonl", GAN_KEYS)
    assert two.shape == one.shape == (K, 7)
    print(f"GAN max |loss difference| 2 ranks vs 1 process over {K} steps: {(two - one).abs().max():.2e}")
    torch.testing.assert_close(two, one, rtol=RTOL, atol=ATOL)
    # One process resumes the two-rank folder; it ends where the one-process run ends.
    for folder in (two_ranks / "gan", tmp_path / "one"):
        train_gan(*data, gan_cfg(steps=K + 2), folder, seed=5, progress=False, device="cpu")
    g2 = torch.load(two_ranks / "gan" / "generator_ema.pt", weights_only=True)["state_dict"]
    g1 = torch.load(tmp_path / "one" / "generator_ema.pt", weights_only=True)["state_dict"]
    diff = max(float((g2[k].double() - g1[k].double()).abs().max()) for k in g1)
    print(f"GAN EMA weights after resuming on 1 process, max |difference|: {diff:.2e}")
    assert diff < 1e-3
    torch.testing.assert_close(_log(two_ranks / "gan" / "log.jsonl", GAN_KEYS),
                               _log(tmp_path / "one" / "log.jsonl", GAN_KEYS), rtol=RTOL, atol=ATOL)


@pytest.mark.slow
def test_encoder_two_ranks_match_one_process_and_resume_on_one(two_ranks, tmp_path, one_thread):
    from s2ilib.training.encoder_trainer import train_encoder

    ds, feats, cfg = encoder_data()
    train_encoder("speech_ts", ds, feats, cfg, tmp_path / "one", seed=3, progress=False, device="cpu")
    two, one = _log(two_ranks / "enc" / "log.jsonl", ENC_KEYS), _log(tmp_path / "one" / "log.jsonl", ENC_KEYS)
    assert two.shape == one.shape == (EK, len(ENC_KEYS))
    print(f"encoder max |loss difference| 2 ranks vs 1 process over {EK} steps: {(two - one).abs().max():.2e}")
    torch.testing.assert_close(two, one, rtol=RTOL, atol=ATOL)
    assert (two_ranks / "enc" / "embeddings.pt").is_file()  # rank 0 finished the run folder
    longer = dataclasses.replace(cfg, max_steps=EK + 2)
    for folder in (two_ranks / "enc", tmp_path / "one"):
        s = train_encoder("speech_ts", ds, feats, longer, folder, seed=3, progress=False, device="cpu")
        assert s["resumed_from"] == EK and s["steps"] == EK + 2
    torch.testing.assert_close(_log(two_ranks / "enc" / "log.jsonl", ENC_KEYS),
                               _log(tmp_path / "one" / "log.jsonl", ENC_KEYS), rtol=RTOL, atol=ATOL)


@pytest.mark.slow
def test_encoder_on_uncentred_features_within_float32_rounding(two_ranks, tmp_path, one_thread):
    from s2ilib.training.encoder_trainer import train_encoder

    ds, feats, cfg = encoder_data(centred=False)
    train_encoder("speech_ts", ds, feats, cfg, tmp_path / "one", seed=3, progress=False, device="cpu")
    two, one = _log(two_ranks / "enc_raw" / "log.jsonl", ENC_KEYS), _log(tmp_path / "one" / "log.jsonl", ENC_KEYS)
    print(f"encoder (N(-40, 1) features) max |loss difference|: {(two - one).abs().max():.2e}, "
          f"relative {((two - one).abs() / one.abs().clamp_min(1e-3)).max():.2e}")
    torch.testing.assert_close(two, one, rtol=1e-2, atol=1e-4)


if __name__ == "__main__":  # one torchrun rank (see the two_ranks fixture)
    _worker(Path(sys.argv[1]))
