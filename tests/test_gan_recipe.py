"""The GAN recipe switches (gan.recipe, d_loss, spectral_norm, projection, diffaug, mode_seeking):
each changes the loss it should, on small tensors, and a tiny run with the modern recipe trains
and resumes exactly."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from fixtures import TINY_GAN, tiny_gan_data

from s2ilib.core.config import ConfigError, get_config
from s2ilib.models.gan import ScaleDiscriminator
from s2ilib.training.augment import cutout, diff_augment, parse_policy, translation
from s2ilib.training.gan_losses import d_loss, g_adv_loss, mode_seeking_loss
from s2ilib.training.gan_trainer import _Trainer, train_gan

pytestmark = pytest.mark.usefixtures("one_thread")


def test_recipe_bundle_and_explicit_overrides():
    base = get_config("smoke", {"gan.recipe": "stackgan2"}).gan
    assert base.recipe == "stackgan2" and base.d_loss == "bce" and not base.spectral_norm and base.mode_seeking == 0
    assert base.contrastive == 0 and not base.projection and base.diffaug == ""
    assert get_config("paper").gan.recipe == "stackgan2"  # the paper preset keeps the authors' recipe
    for preset in ("small", "smoke"):  # small adopted the sweep's best recipe; smoke runs the same code
        c = get_config(preset).gan
        assert (c.recipe, c.d_loss, c.spectral_norm, c.projection, c.diffaug, c.contrastive, c.mode_seeking,
                c.contrastive_cond) == ("contrastive", "hinge", True, True, "translation,cutout", 2.0, 0.0, "embedding")
        assert (c.lr_g, c.lr_d, c.beta1, c.beta2) == (4e-4, 8e-4, 0.0, 0.9)
    assert (get_config("paper").gan.lr_g, get_config("paper").gan.lr_d) == (2e-4, 2e-4)  # the authors' rates
    assert get_config("smoke", {"gan.contrastive_cond": "mu"}).gan.contrastive_cond == "mu"  # explicit key wins
    m = get_config("smoke", {"gan.recipe": "modern"}).gan
    assert (m.d_loss, m.spectral_norm, m.projection, m.diffaug, m.mode_seeking) == \
        ("hinge", True, True, "translation,cutout", 1.0)
    assert (m.lr_g, m.lr_d, m.beta1, m.beta2) == (2e-4, 4e-4, 0.0, 0.9)
    mixed = get_config("smoke", {"gan.recipe": "modern", "gan.mode_seeking": 0.0, "gan.lr_d": 1e-4}).gan
    assert mixed.mode_seeking == 0.0 and mixed.lr_d == 1e-4 and mixed.spectral_norm  # explicit keys win
    single = get_config("smoke", {"gan.recipe": "stackgan2", "gan.d_loss": "hinge"}).gan  # one switch on the authors' recipe
    assert single.d_loss == "hinge" and not single.spectral_norm


@pytest.mark.parametrize("bad, msg", [({"gan.recipe": "fancy"}, "gan.recipe"), ({"gan.d_loss": "wgan"}, "gan.d_loss"),
                                      ({"gan.diffaug": "color"}, "gan.diffaug"),
                                      ({"gan.mode_seeking": 1.0, "gan.batch_size": 7}, "even"),
                                      ({"gan.mode_seeking": -1.0}, "gan.mode_seeking")])
def test_bad_recipe_values_are_config_errors(bad, msg):
    with pytest.raises(ConfigError, match=msg):
        get_config("smoke", bad)


def test_hinge_loss_differs_from_bce_as_it_should():
    big = torch.full((4,), 3.0)
    # hinge: real logits above 1 and fake logits below -1 cost nothing; BCE still costs a little
    loss_h, terms_h = d_loss(big, -big, -big, big, -big, kind="hinge")
    loss_b, _ = d_loss(big, -big, -big, big, -big, kind="bce")
    assert float(loss_h) == 0.0 and float(loss_b) > 0
    small = torch.zeros(4)
    assert d_loss(small, small, small, small, small, kind="hinge")[1]["real"] == pytest.approx(1.0)
    # the generator's hinge loss is minus the mean logit
    assert float(g_adv_loss(torch.tensor([1.0, 3.0]), torch.zeros(2), kind="hinge")) == pytest.approx(-2.0)


def test_spectral_norm_bounds_every_d_layer():
    torch.manual_seed(0)
    D = ScaleDiscriminator(16, df_dim=4, cond_dim=6, spectral_norm=True, projection=True)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in D.modules())
    D.train()
    x, c = torch.randn(3, 3, 16, 16), torch.randn(3, 6)
    for _ in range(30):  # power iterations converge during forward passes
        D(x, c)
    for name, m in D.named_modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            w = m.weight.detach().flatten(1)
            assert torch.linalg.matrix_norm(w, ord=2) == pytest.approx(1.0, rel=0.1), name


def test_projection_logit_is_uncond_plus_inner_product():
    torch.manual_seed(0)
    D = ScaleDiscriminator(16, df_dim=4, cond_dim=6, projection=True).eval()
    x, c = torch.randn(2, 3, 16, 16), torch.randn(2, 6)
    cond, uncond = D(x, c)
    code = D.encode(x).sum(dim=(2, 3))
    torch.testing.assert_close(cond - uncond, (D.embed(c) * code).sum(1))
    cond2, uncond2 = D(x, -c)
    torch.testing.assert_close(uncond2, uncond)
    torch.testing.assert_close(cond2 - uncond2, -(cond - uncond))


def test_diffaugment_geometry_only_and_seeded():
    x = torch.rand(6, 3, 16, 16) + 0.5  # strictly positive, so zeros come only from the transforms
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    t = translation(x, g())
    assert torch.equal(t, translation(x, g()))
    # translated pixels are pixels of the same image (or zero fill): colours are never changed
    for b in range(6):
        vals = set(x[b, 0].flatten().tolist()) | {0.0}
        assert set(t[b, 0].flatten().tolist()) <= vals
    c = cutout(x, g())
    zero_frac = (c == 0).float().mean()
    assert 0.1 < zero_frac <= 0.25 + 1e-6 and torch.equal(c[c != 0], x[c != 0])
    assert torch.equal(diff_augment(x, "", g()), x)
    assert parse_policy("translation, cutout") == ("translation", "cutout")
    with pytest.raises(ValueError, match="unknown"):
        parse_policy("color")


def test_mode_seeking_loss_falls_as_images_differ():
    z1, z2 = torch.zeros(4, 8), torch.ones(4, 8)
    a = torch.zeros(4, 3, 8, 8)
    near, far = mode_seeking_loss(a, a + 0.01, z1, z2), mode_seeking_loss(a, a + 1.0, z1, z2)
    assert float(far) == pytest.approx(1.0, rel=1e-3) and float(near) > 50 * float(far)


def _tiny(**kw):
    cfg = get_config("smoke", {"gan.recipe": "modern"}).gan
    base = dict(TINY_GAN, steps=6, sample_every=3, ckpt_every=2)
    return dataclasses.replace(cfg, **{**base, **kw})


@pytest.fixture(scope="module")
def data():
    return tiny_gan_data()


def test_modern_recipe_trains_and_resumes_exactly(tmp_path, data):
    images, emb, idx, cls = data
    full = train_gan(images, emb, idx, cls, _tiny(), tmp_path / "full", seed=3, progress=False)
    assert full["steps"] == 6
    log = (tmp_path / "full" / "log.jsonl").read_text().splitlines()
    assert all('"mode_seeking"' in line for line in log)
    train_gan(images, emb, idx, cls, _tiny(steps=4), tmp_path / "part", seed=3, progress=False)
    train_gan(images, emb, idx, cls, _tiny(), tmp_path / "part", seed=3, progress=False)
    a = torch.load(tmp_path / "full" / "generator_ema.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "part" / "generator_ema.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_info_nce_known_answers():
    from s2ilib.training.tree_step import info_nce

    eye = torch.eye(4)
    assert float(info_nce(eye, eye, tau=0.01)) < 1e-6  # each image picks its own condition
    same = torch.ones(4, 3)
    assert float(info_nce(same, same)) == pytest.approx(math.log(4), rel=1e-5)  # no information: log B
    assert float(info_nce(eye, eye.roll(1, dims=0), tau=0.01)) > 50  # every row picks a wrong one


def test_contrastive_switch_adds_its_term_to_both_losses():
    data = tiny_gan_data()
    images, emb = data[0], data[1]
    reals = [images[:6, :, :8, :8].float() / 127.5 - 1, images[:6, :, :16, :16].float() / 127.5 - 1]
    wrongs = [images[4:, :, :8, :8].float() / 127.5 - 1, images[4:, :, :16, :16].float() / 127.5 - 1]
    cfg = _tiny(mode_seeking=0.0, branches=2, contrastive=0.5)
    tr = _Trainer(cfg, 12, torch.device("cpu"))
    out = tr.step(reals, wrongs, emb[:6], torch.randn(6, cfg.z_dim), torch.randn(6, cfg.ca_dim))
    assert len(out["d_contrastive"]) == len(out["g_contrastive"]) == 2  # one term per scale
    assert all(0 < v < 10 for v in out["d_contrastive"] + out["g_contrastive"])
    plain = ScaleDiscriminator(8, df_dim=4, cond_dim=6)
    with pytest.raises(ValueError, match="contrastive=True"):
        plain(torch.zeros(2, 3, 8, 8), torch.zeros(2, 6), pair=True)
    with pytest.raises(ConfigError, match="gan.contrastive"):
        get_config("smoke", {"gan.recipe": "dfgan", "gan.contrastive": 1.0})


def test_contrastive_cond_embedding_pairs_images_with_the_embedding_g_cannot_move():
    """gan.contrastive_cond = "embedding": D's contrast head reads the encoder's embedding (its
    width, not ca_dim), so the G pass's InfoNCE sends no gradient into the CA; "mu" does."""
    data = tiny_gan_data()
    images, emb = data[0], data[1]
    reals = [images[:6, :, :8, :8].float() / 127.5 - 1, images[:6, :, :16, :16].float() / 127.5 - 1]
    wrongs = [images[4:, :, :8, :8].float() / 127.5 - 1, images[4:, :, :16, :16].float() / 127.5 - 1]
    grads = {}
    for mode in ("mu", "embedding"):
        torch.manual_seed(0)
        cfg = _tiny(mode_seeking=0.0, branches=2, contrastive=1.0, contrastive_cond=mode, bf16=False)
        tr = _Trainer(cfg, emb.shape[1], torch.device("cpu"))
        assert [D.contrast.in_features for D in tr.Ds] == [emb.shape[1] if mode == "embedding" else cfg.ca_dim] * 2
        out = tr.step(reals, wrongs, emb[:6], torch.randn(6, cfg.z_dim), torch.randn(6, cfg.ca_dim))
        assert all(0 < v < 10 for v in out["d_contrastive"] + out["g_contrastive"])
        # the InfoNCE term alone, through the G pass: its gradient on the CA's weights
        tr.G.zero_grad(set_to_none=True)
        z, eps = torch.randn(6, cfg.z_dim), torch.randn(6, cfg.ca_dim)
        fakes, mu, _ = tr.G(z, emb[:6], eps=eps)
        c_pair = emb[:6] if mode == "embedding" else None
        loss = sum(D(fake, mu, pair=True, c_pair=c_pair)[2][1].sum() for D, fake in zip(tr.Ds, fakes))
        loss.backward()
        grads[mode] = sum(float(p.grad.abs().sum()) for n, p in tr.G.named_parameters()
                          if n.startswith("ca.") and p.grad is not None)
    assert grads["mu"] > 0 and grads["embedding"] == 0
    with pytest.raises(ConfigError, match="gan.contrastive_cond"):
        get_config("smoke", {"gan.contrastive_cond": "text"})
