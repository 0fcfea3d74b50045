"""One training iteration of the fusion generator (``gan.arch = "fusion"``, DF-GAN's objective).

D (one scale, one conditional logit) sees three pairs, as in DF-GAN (Tao et al. 2022, eq. 1-3):

    L_D = hinge(D(x, e), real) + [hinge(D(G(z, e), e), fake) + hinge(D(x_w, e), fake)] / 2
          + ma_gp * mean(||(grad_x D(x, e), grad_e D(x, e))||_2 ** ma_gp_power)
    L_G = -mean(D(G(z, e), e))                         (hinge; BCE: BCE(D(G(z, e), e), 1))

where ``x_w`` is a real image of another class (the mismatched pair) and the matching-aware
gradient penalty (MA-GP) is taken on real images *with their own conditions*, so D is smooth
around the matching pairs and G's images are pulled towards images that fit their caption.
DiffAugment, when on, transforms every image D sees; the penalty is on the transformed real.
With ``ma_gp_every = k`` the penalty is taken on every k-th step only, weighted by k (StyleGAN2's
lazy regularisation): its double backward is a third of the step's time.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from s2ilib.training.gan_losses import _D_TERM, bce_logits, mode_seeking_term


def ma_gradient_penalty(D: Callable, real: torch.Tensor, cond: torch.Tensor, weight: float = 2.0,
                        power: float = 6.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits of D(real, cond) (B,), weight * mean(||[dD/dreal, dD/dcond]||_2 ** power)).

    real (B, 3, S, S), cond (B, D): the matching pairs. The penalty keeps its graph
    (``create_graph``) so D's update differentiates through it."""
    real = real.detach().requires_grad_(True)
    cond = cond.detach().requires_grad_(True)
    logits = D(real, cond)
    g_real, g_cond = torch.autograd.grad(logits.float().sum(), (real, cond), create_graph=True)
    norm = torch.sqrt(g_real.float().flatten(1).pow(2).sum(1) + g_cond.float().pow(2).sum(1) + 1e-12)
    return logits, weight * norm.pow(power).mean()


def generator_loss(fake_logits: torch.Tensor, kind: str) -> torch.Tensor:
    """G's adversarial loss on D's logits of generated images with their conditions."""
    return -fake_logits.float().mean() if kind == "hinge" else bce_logits(fake_logits, 1.0)


def fusion_step(tr: Any, reals: list[torch.Tensor], wrongs: list[torch.Tensor], emb: torch.Tensor,
                z: torch.Tensor, eps: torch.Tensor, aug: Callable, autocast: Callable) -> dict[str, Any]:
    """D then G update of ``tr`` (a :class:`s2ilib.training.gan_trainer._Trainer` with a fusion G);
    returns the losses for the log. ``eps`` is unused (no conditioning augmentation);
    ``autocast()`` gives the bf16 context or a null one."""
    cfg = tr.cfg
    term = _D_TERM[cfg.d_loss]
    D, opt = tr.Ds_fwd[0], tr.opt_Ds[0]
    with autocast():
        fakes, cond, _ = tr.G_fwd(z, emb)
    fake, cond_d = fakes[-1], cond.detach()
    opt.zero_grad(set_to_none=True)
    with autocast():
        if cfg.ma_gp > 0 and getattr(tr, "step_no", 0) % cfg.ma_gp_every == 0:  # lazy: weight x k
            r, gp = ma_gradient_penalty(D, aug(reals[-1]), cond_d, cfg.ma_gp * cfg.ma_gp_every, cfg.ma_gp_power)
        else:
            r, gp = D(aug(reals[-1]), cond_d), torch.zeros((), device=fake.device)
        w = D(aug(wrongs[-1]), cond_d)
        f = D(aug(fake.detach()), cond_d)
    d_total = term(r, 1.0) + 0.5 * (term(f, 0.0) + term(w, 0.0)) + gp
    d_total.backward()
    opt.step()

    tr.opt_G.zero_grad(set_to_none=True)
    tr.Ds.requires_grad_(False)
    with autocast():
        g_adv = generator_loss(tr.Ds[0](aug(fake), cond), cfg.d_loss)
    ms = mode_seeking_term(fake, z, cfg.mode_seeking)
    g_total = g_adv + ms
    g_total.backward()
    tr.opt_G.step()
    tr.Ds.requires_grad_(True)
    out = {"d_loss": [float(d_total.detach())], "g_adv": [float(g_adv.detach())], "g_loss": float(g_total.detach()),
           "kl": 0.0, "color": 0.0, "ma_gp": float(gp.detach())}
    if cfg.mode_seeking > 0:
        out["mode_seeking"] = float(ms.detach())
    return out
