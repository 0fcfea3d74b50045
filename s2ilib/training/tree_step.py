"""One training iteration of the StackGAN-v2 tree (``gan.arch = "stackgan2"``, paper eq. 10-14).

Every scale's D is updated on (real, fake, wrong) pairs, then G on every scale at once, with the
recipe's switches (:mod:`s2ilib.training.gan_losses`): BCE or hinge, the KL term of conditioning
augmentation, colour consistency, mode seeking, and the contrastive term below.

**Contrastive term** (``gan.contrastive`` = weight; XMC-GAN, Zhang et al. 2021): each D also
maps its pooled image code and the condition into one space (:class:`s2ilib.models.gan.ScaleDiscriminator`
``contrastive``), and an InfoNCE loss over the batch asks each image to pick its own condition
among the batch's: D learns it on real images with their conditions, G on its images with
theirs. The condition is the CA mean ``mu`` (then G's CA learns from the term too) or, with
``gan.contrastive_cond = "embedding"``, the encoder's embedding, which G cannot move. Where the scalar conditional logit only tells real-and-matching from the rest, this asks
D's image code to tell the conditions apart, and G to render what tells them apart.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch.nn import functional as F

from s2ilib.training.gan_losses import color_consistency_loss, d_loss, g_adv_loss, kl_loss, mode_seeking_term

TAU = 0.1  # InfoNCE temperature (XMC-GAN)


def info_nce(img_vec: torch.Tensor, cond_vec: torch.Tensor, tau: float = TAU) -> torch.Tensor:
    """Symmetric InfoNCE of matching rows: img_vec (B, K), cond_vec (B, K), cosine / tau logits.

    ``0.5 * [CE(image -> its condition) + CE(condition -> its image)]``; log(B) when the rows
    carry no information about each other, 0 when each image picks its condition with certainty."""
    a = F.normalize(img_vec.float(), dim=1)
    b = F.normalize(cond_vec.float(), dim=1)
    logits = a @ b.t() / tau
    target = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def _distinct(n: int, paired: bool) -> slice:
    """Rows with distinct conditions: with mode seeking the batch's second half repeats the first."""
    return slice(0, n // 2) if paired else slice(0, n)


def tree_step(tr: Any, reals: list[torch.Tensor], wrongs: list[torch.Tensor], emb: torch.Tensor,
              z: torch.Tensor, eps: torch.Tensor, aug: Callable, autocast: Callable) -> dict[str, Any]:
    """D_s then G update of ``tr`` (a :class:`s2ilib.training.gan_trainer._Trainer` with the tree);
    returns the losses for the log. ``autocast()`` gives the bf16 context or a null one."""
    cfg = tr.cfg
    con = cfg.contrastive > 0
    rows = _distinct(len(emb), cfg.mode_seeking > 0)
    with autocast():
        fakes, mu, logvar = tr.G_fwd(z, emb, eps=eps)
    c_d = mu.detach()  # D is conditioned on mu, as StackGAN-v2
    # the InfoNCE term's condition: mu (default), or the encoder's embedding (gan.contrastive_cond)
    c_con = emb if con and cfg.contrastive_cond == "embedding" else None
    d_losses, d_con = [], []
    for D, opt, real, wrong, fake in zip(tr.Ds_fwd, tr.opt_Ds, reals, wrongs, fakes):
        opt.zero_grad(set_to_none=True)
        with autocast():
            # Separate passes keep BatchNorm statistics per kind of batch, as the authors.
            r_c, r_u, *pair = D(aug(real), c_d, pair=con, c_pair=c_con)
            w_c, _ = D(aug(wrong), c_d)
            f_c, f_u = D(aug(fake.detach()), c_d)
        loss, _ = d_loss(r_c, f_c, w_c, r_u, f_u, cfg.uncond_loss, kind=cfg.d_loss)
        if con:
            d_con.append(info_nce(pair[0][0][rows], pair[0][1][rows]))
            loss = loss + cfg.contrastive * d_con[-1]
        loss.backward()
        opt.step()
        d_losses.append(float(loss.detach()))

    tr.opt_G.zero_grad(set_to_none=True)
    tr.Ds.requires_grad_(False)  # no D weight gradients in the G pass (saves a third of D backward)
    with autocast():
        # mu not detached: CA learns from D
        outs = [D(aug(fake), mu, pair=con, c_pair=c_con) for D, fake in zip(tr.Ds, fakes)]
    g_adv = [g_adv_loss(o[0], o[1], cfg.uncond_loss, kind=cfg.d_loss) for o in outs]
    g_con = [info_nce(o[2][0][rows], o[2][1][rows]) for o in outs] if con else []
    kl = kl_loss(mu, logvar)
    color = color_consistency_loss(fakes, cfg.color_coef)
    ms = mode_seeking_term(fakes[-1], z, cfg.mode_seeking)
    g_total = sum(g_adv) + cfg.kl_coef * kl + color + ms + cfg.contrastive * sum(g_con)
    g_total.backward()
    tr.opt_G.step()
    tr.Ds.requires_grad_(True)
    out = {"d_loss": d_losses, "g_adv": [float(x.detach()) for x in g_adv], "g_loss": float(g_total.detach()),
           "kl": float(kl.detach()), "color": float(color.detach())}
    if cfg.mode_seeking > 0:
        out["mode_seeking"] = float(ms.detach())
    if con:
        out["d_contrastive"] = [float(x.detach()) for x in d_con]
        out["g_contrastive"] = [float(x.detach()) for x in g_con]
    return out
