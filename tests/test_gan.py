"""StackGAN-v2 networks (s2ilib.models.gan) and the multi-scale triplet loss (s2ilib.training.gan_losses)."""
from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from s2ilib.core.config import get_config
from s2ilib.models.gan import CondAugment, ScaleDiscriminator, StackGenerator, build_discriminators, generator_kwargs
from s2ilib.training.gan_losses import color_consistency_loss, d_loss, g_adv_loss, kl_loss, mean_covariance


@pytest.fixture
def no_init(monkeypatch):
    """Skip the orthogonal init: QR of the paper D256's (2048, 16384) weights takes ~20 s on 2 cores."""
    monkeypatch.setattr("s2ilib.models.gan.init_weights", lambda module: None)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("preset,sizes", [("smoke", [16, 32]), ("small", [32, 64]), ("paper", [64, 128, 256])])
def test_generator_and_discriminator_shapes(preset, sizes, no_init):
    cfg = get_config(preset).gan
    torch.manual_seed(0)
    G = StackGenerator(**generator_kwargs(cfg, cond_dim=24)).eval()
    assert G.sizes == sizes
    batch = 1 if preset == "paper" else 3
    with torch.no_grad():
        images, mu, logvar = G(torch.randn(batch, cfg.z_dim), torch.randn(batch, 24))
    assert [tuple(x.shape) for x in images] == [(batch, 3, s, s) for s in sizes]
    assert mu.shape == logvar.shape == (batch, cfg.ca_dim)
    assert all(float(x.abs().max()) <= 1.0 for x in images)  # tanh range
    Ds = build_discriminators(G.sizes, cfg.df_dim, cfg.ca_dim).eval()
    with torch.no_grad():
        for D, x in zip(Ds, images):
            cond, uncond = D(x, mu)
            assert cond.shape == uncond.shape == (batch,)
            # Codes are at most 8 * df channels, as StackGAN-v2 (wide 256 px codes are narrowed).
            assert D.code_dim <= 8 * cfg.df_dim


def test_paper_widths_match_stackgan_v2(no_init):
    cfg = get_config("paper").gan
    G = StackGenerator(**generator_kwargs(cfg, cond_dim=1024))
    assert G.stages[0].ngf == 16 * cfg.gf_dim  # 4x4x(16 GF) after the fc
    assert [s.out_channels for s in G.stages] == [64, 32, 16]
    assert [D.code_dim for D in build_discriminators(G.sizes, 64, 128)] == [512, 512, 512]


def test_train_mode_batch_and_bad_sizes():
    G = StackGenerator(branches=2, base_size=16, gf_dim=8, z_dim=10, ca_dim=6, cond_dim=5, r_num=1)
    images, _, _ = G(torch.randn(4, 10), torch.randn(4, 5))
    images[-1].mean().backward()  # gradients reach the first stage through the tree
    assert G.stages[0].fc[0].weight.grad is not None
    with pytest.raises(ValueError, match="power of two"):
        StackGenerator(base_size=48)
    with pytest.raises(ValueError, match="branches"):
        StackGenerator(branches=4)
    D = ScaleDiscriminator(32, 8, 6)
    with pytest.raises(ValueError, match="size"):
        D(torch.randn(2, 3, 16, 16), torch.randn(2, 6))


def test_cond_augment_reparameterisation():
    torch.manual_seed(0)
    ca = CondAugment(7, 5)
    emb, eps = torch.randn(4, 7), torch.randn(4, 5)
    c, mu, logvar = ca(emb, eps=eps)
    h = ca.fc(emb)
    gated = h[:, :10] * torch.sigmoid(h[:, 10:])
    torch.testing.assert_close(mu, gated[:, :5])
    torch.testing.assert_close(logvar, gated[:, 5:])
    torch.testing.assert_close(c, mu + eps * torch.exp(0.5 * logvar))
    c1, _, _ = ca(emb, generator=torch.Generator().manual_seed(3))
    c2, _, _ = ca(emb, generator=torch.Generator().manual_seed(3))
    c3, _, _ = ca(emb, generator=torch.Generator().manual_seed(4))
    assert torch.equal(c1, c2) and not torch.equal(c1, c3)


def test_init_is_orthogonal_and_bn_near_one():
    torch.manual_seed(0)
    D = ScaleDiscriminator(16, 8, 4)
    w = D.cond_logit.weight.view(1, -1)
    torch.testing.assert_close((w @ w.T), torch.ones(1, 1), atol=1e-5, rtol=0)
    bn = D.encode[1][1]
    assert abs(float(bn.weight.detach().mean()) - 1.0) < 0.05 and float(bn.bias.detach().abs().max()) == 0.0


# --------------------------------------------------------------------------- losses


def _bce(logits, label):
    p = torch.sigmoid(logits.double())
    return float(-(label * torch.log(p) + (1 - label) * torch.log(1 - p)).mean())


def test_d_loss_matches_direct_formula():
    torch.manual_seed(1)
    r_c, f_c, w_c, r_u, f_u, w_u = (torch.randn(6) * 2 for _ in range(6))
    loss, terms = d_loss(r_c, f_c, w_c, r_u, f_u, uncond_coef=0.7)
    expect = _bce(r_c, 1) + _bce(f_c, 0) + _bce(w_c, 0) + 0.7 * (_bce(r_u, 1) + _bce(f_u, 0))
    assert float(loss) == pytest.approx(expect, rel=1e-5)
    assert terms["wrong"] == pytest.approx(_bce(w_c, 0), rel=1e-5)
    assert set(terms) == {"real", "fake", "wrong", "real_uncond", "fake_uncond"}
    loss_w, _ = d_loss(r_c, f_c, w_c, r_u, f_u, uncond_coef=0.7, wrong_uncond=w_u)
    assert float(loss_w) == pytest.approx(expect + 0.7 * _bce(w_u, 1), rel=1e-5)
    # bf16 logits are scored in float32
    loss_bf, _ = d_loss(*(x.bfloat16() for x in (r_c, f_c, w_c, r_u, f_u)), uncond_coef=0.7)
    assert loss_bf.dtype == torch.float32


def test_g_and_kl_losses_match_direct_formula():
    torch.manual_seed(2)
    f_c, f_u = torch.randn(5), torch.randn(5)
    assert float(g_adv_loss(f_c, f_u, 2.0)) == pytest.approx(_bce(f_c, 1) + 2.0 * _bce(f_u, 1), rel=1e-5)
    mu, logvar = torch.randn(4, 3), torch.randn(4, 3) * 0.5
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros(4, 3), torch.ones(4, 3))
    expect = torch.distributions.kl_divergence(q, p).mean()
    torch.testing.assert_close(kl_loss(mu, logvar), expect)
    assert float(kl_loss(torch.zeros(2, 3), torch.zeros(2, 3))) == 0.0


def test_color_consistency_matches_direct_formula():
    torch.manual_seed(3)
    small, big = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 8, 8)
    mu, cov = mean_covariance(big)
    px = big[1].reshape(3, -1)
    torch.testing.assert_close(cov[1], torch.cov(px, correction=0))
    torch.testing.assert_close(mu[1], px.mean(1))
    mu_s, cov_s = mean_covariance(small)
    expect = 10.0 * (((mu - mu_s) ** 2).mean() + 5 * ((cov - cov_s) ** 2).mean())
    torch.testing.assert_close(color_consistency_loss([small, big], 10.0), expect)
    assert float(color_consistency_loss([small, big], 0.0)) == 0.0
    # Only the larger scale receives the gradient (the smaller one is the reference).
    small.requires_grad_(True), big.requires_grad_(True)
    color_consistency_loss([small, big], 1.0).backward()
    assert small.grad is None and float(big.grad.abs().sum()) > 0


def test_d_steps_on_fixed_data_reduce_discriminator_error():
    """A few Adam steps of D_s against a frozen G separate fixed real and fake images."""
    torch.manual_seed(4)
    G = StackGenerator(branches=1, base_size=16, gf_dim=8, z_dim=8, ca_dim=4, cond_dim=6, r_num=1).eval()
    D = ScaleDiscriminator(16, 8, 4)
    opt = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    emb = torch.randn(16, 6)
    with torch.no_grad():
        (fake,), mu, _ = G(torch.randn(16, 8), emb)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 16), torch.linspace(-1, 1, 16), indexing="ij")
    real = torch.stack([torch.stack([xx * s, yy * s, xx * yy]) for s in torch.linspace(0.3, 1, 16)])
    wrong = real.flip(0)

    def loss_now():
        opt.zero_grad()
        r_c, r_u = D(real, mu)
        w_c, _ = D(wrong, mu)
        f_c, f_u = D(fake, mu)
        return d_loss(r_c, f_c, w_c, r_u, f_u)

    first, _ = loss_now()
    for _ in range(30):
        loss, _ = loss_now()
        loss.backward()
        opt.step()
    last, terms = loss_now()
    assert float(last.detach()) < 0.7 * float(first.detach())
    # Real vs fake separates fast; real vs wrong (same images, other conditions) needs many more steps.
    assert terms["real_uncond"] < 0.3 and terms["fake_uncond"] < 0.5 and terms["fake"] < 0.4
    with torch.no_grad():
        _, r_u = D(real, mu)
        _, f_u = D(fake, mu)
    assert float((r_u > 0).float().mean()) == 1.0 and float((f_u < 0).float().mean()) >= 0.75
