"""The fusion recipe (gan.recipe = dfgan, gan.arch = fusion): DF-GAN-style generator and
discriminator shapes, the matching-aware gradient penalty against a closed form, its switch
changing D's loss, checkpoints that load back as the right class, and a tiny run that resumes
exactly."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from fixtures import TINY_GAN, tiny_gan_data

from s2ilib.core.config import ConfigError, get_config
from s2ilib.models.fusion_gan import Affine, FusionDiscriminator, FusionGenerator
from s2ilib.models.gan import build_networks, output_sizes
from s2ilib.models.loading import generate, load_generator
from s2ilib.training.fusion_step import ma_gradient_penalty
from s2ilib.training.gan_trainer import _Trainer, train_gan

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(**kw):
    cfg = get_config("smoke", {"gan.recipe": "dfgan"}).gan
    base = {k: v for k, v in TINY_GAN.items() if k != "r_num"}
    return dataclasses.replace(cfg, **{**base, "branches": 2, "steps": 5, "ckpt_every": 2, "sample_every": 5, **kw})


def test_dfgan_recipe_bundle_and_config_errors():
    cfg = get_config("smoke", {"gan.recipe": "dfgan"}).gan
    assert (cfg.arch, cfg.d_loss, cfg.ma_gp, cfg.ma_gp_power, cfg.kl_coef) == ("fusion", "hinge", 2.0, 6.0, 0.0)
    assert get_config("paper").gan.arch == "stackgan2"
    with pytest.raises(ConfigError, match="gan.arch"):
        get_config("smoke", {"gan.arch": "unet"})
    with pytest.raises(ConfigError, match="gan.ma_gp"):  # no silent no-op on the tree
        get_config("smoke", {"gan.ma_gp": 2.0})


def test_fusion_generator_outputs_the_final_size_only():
    cfg = _cfg()
    assert output_sizes(cfg) == [16]  # base 8, 2 branches -> one 16 px image
    G, Ds = build_networks(cfg, cond_dim=12)
    assert isinstance(G, FusionGenerator) and len(Ds) == 1 and isinstance(Ds[0], FusionDiscriminator)
    z, e = torch.randn(3, cfg.z_dim), torch.randn(3, 12)
    imgs, cond, logvar = G(z, e)
    assert [tuple(x.shape) for x in imgs] == [(3, 3, 16, 16)] and imgs[0].abs().max() <= 1
    assert torch.equal(cond, e) and not logvar.any()  # D is conditioned on the embedding itself
    assert Ds[0](imgs[0], e).shape == (3,)
    for m in G.modules():  # the affines start as identities; once trained the condition reaches the image
        if isinstance(m, Affine):
            torch.nn.init.normal_(m.mlp[2].weight, std=0.1)
    imgs = G(z, e)[0]
    e2 = e.clone()
    e2[0] += 5.0
    assert not torch.allclose(G(z, e2)[0][0][0], imgs[0][0]) and torch.allclose(G(z, e2)[0][0][1:], imgs[0][1:])


def test_affine_starts_as_identity_and_learns_a_per_channel_map():
    aff = Affine(5, 4)
    h, y = torch.randn(2, 4, 3, 3), torch.randn(2, 5)
    assert torch.equal(aff(h, y), h)
    torch.nn.init.normal_(aff.mlp[2].weight)
    out = aff(h, y)
    gamma, beta = aff.mlp(y).chunk(2, dim=1)
    assert torch.allclose(out, gamma[:, :, None, None] * h + beta[:, :, None, None])


def test_ma_gradient_penalty_matches_closed_form():
    a, b = torch.randn(3, 4, 4, requires_grad=True), torch.randn(6, requires_grad=True)  # D's "weights"

    def linear_d(x, c):  # gradient w.r.t. (x, c) is (a, b) for every sample
        return (x * a).flatten(1).sum(1) + (c * b).sum(1)

    x, c = torch.randn(5, 3, 4, 4), torch.randn(5, 6)
    logits, gp = ma_gradient_penalty(linear_d, x, c, weight=2.0, power=6.0)
    norm = torch.sqrt(a.pow(2).sum() + b.pow(2).sum())  # d(w n^6)/da = 6 w n^4 a
    assert torch.allclose(logits, linear_d(x, c)) and torch.allclose(gp, 2.0 * norm ** 6, rtol=1e-4)
    (grad_a,) = torch.autograd.grad(gp, a)  # D's update differentiates through the penalty
    assert torch.allclose(grad_a, 2.0 * 6 * norm.detach() ** 4 * a.detach(), rtol=1e-4)


def test_ma_gp_switch_changes_d_loss_only_by_the_penalty():
    data = tiny_gan_data()
    images, emb = data[0], data[1]
    reals = [images[:6, :, :16, :16].float() / 127.5 - 1]
    wrongs = [images[4:, :, :16, :16].float() / 127.5 - 1]
    out = {}
    for w in (0.0, 2.0):
        torch.manual_seed(0)
        tr = _Trainer(_cfg(ma_gp=w), 12, torch.device("cpu"))
        out[w] = tr.step(reals, wrongs, emb[:6], torch.randn(6, TINY_GAN["z_dim"]), torch.randn(6, 6))
    assert out[0.0]["ma_gp"] == 0.0 and out[2.0]["ma_gp"] > 0
    assert out[2.0]["d_loss"][0] == pytest.approx(out[0.0]["d_loss"][0] + out[2.0]["ma_gp"], rel=1e-4)


def test_fusion_run_trains_resumes_exactly_and_loads_back(tmp_path):
    images, emb, idx, cls = tiny_gan_data()
    full = train_gan(images, emb, idx, cls, _cfg(), tmp_path / "full", seed=3, progress=False)
    assert full["steps"] == 5 and full["sizes"] == [16]
    assert all('"ma_gp"' in line for line in (tmp_path / "full" / "log.jsonl").read_text().splitlines())
    train_gan(images, emb, idx, cls, _cfg(steps=2), tmp_path / "part", seed=3, progress=False)
    train_gan(images, emb, idx, cls, _cfg(), tmp_path / "part", seed=3, progress=False)
    a = torch.load(tmp_path / "full" / "generator_ema.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "part" / "generator_ema.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    G = load_generator(tmp_path / "full" / "generator_ema.pt")
    assert isinstance(G, FusionGenerator)
    assert generate(G, emb[:4], seed=1).shape == (4, 3, 16, 16)


def test_lazy_ma_gp_skips_steps_and_weights_by_k():
    images, emb = tiny_gan_data()[:2]
    reals, wrongs = [images[:6, :, :16, :16].float() / 127.5 - 1], [images[4:, :, :16, :16].float() / 127.5 - 1]
    gps = {}
    for every, step_no in ((1, 0), (3, 1), (3, 3)):
        torch.manual_seed(0)
        tr = _Trainer(_cfg(ma_gp_every=every), 12, torch.device("cpu"))
        tr.step_no = step_no
        gps[every, step_no] = tr.step(reals, wrongs, emb[:6], torch.randn(6, TINY_GAN["z_dim"]), torch.randn(6, 6))["ma_gp"]
    assert gps[3, 1] == 0.0 and gps[3, 3] == pytest.approx(3 * gps[1, 0], rel=1e-4)


def test_checkpoint_from_before_a_switch_existed_still_resumes(tmp_path):
    """A run written before gan.arch / ma_gp / contrastive existed had their defaults: it resumes."""
    images, emb, idx, cls = tiny_gan_data()
    cfg = dataclasses.replace(get_config("smoke", {"gan.recipe": "stackgan2"}).gan, **TINY_GAN, steps=2, ckpt_every=2, sample_every=2)
    train_gan(images, emb, idx, cls, cfg, tmp_path / "old", seed=3, progress=False)
    ckpt = torch.load(tmp_path / "old" / "checkpoint.pt", weights_only=False)
    for key in ("arch", "ma_gp", "ma_gp_power", "ma_gp_every", "contrastive"):
        del ckpt["config"][key]
    torch.save(ckpt, tmp_path / "old" / "checkpoint.pt")
    out = train_gan(images, emb, idx, cls, dataclasses.replace(cfg, steps=3), tmp_path / "old", seed=3, progress=False)
    assert out["start_step"] == 2 and out["steps"] == 3
