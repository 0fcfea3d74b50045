"""Multi-scale triplet loss of the conditional StackGAN-v2 (paper eq. 10-14), on logits.

Per scale s the discriminator sees three pairs: (real image, its condition), (generated image,
condition) and (wrong image of a different class, condition). With BCE on pre-sigmoid logits:

    L_D_s = BCE(D(v, c), 1) + BCE(D(G(z, c), c), 0) + BCE(D(v_w, c), 0)            cond + wrong
            + uncond * [BCE(D(v), 1) + BCE(D(G(z, c)), 0)]                            uncond
    L_G_s = BCE(D(G(z, c), c), 1) + uncond * BCE(D(G(z, c)), 1)                       eq. 14

plus ``kl_coef * KL(N(mu, sigma) || N(0, I))`` for conditioning augmentation and StackGAN-v2's
optional colour-consistency term between neighbouring scales. Every term is computed in
float32 even when the networks ran under bf16 autocast.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F


def bce_logits(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Mean BCE of logits (B,) against a constant label, in float32."""
    logits = logits.float()
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def hinge(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Hinge loss of D (SNGAN): ``mean(relu(1 - x))`` for real (target 1), ``mean(relu(1 + x))`` for fake."""
    logits = logits.float()
    return F.relu(1.0 - logits).mean() if target > 0.5 else F.relu(1.0 + logits).mean()


def d_loss(real_cond: torch.Tensor, fake_cond: torch.Tensor, wrong_cond: torch.Tensor,
           real_uncond: torch.Tensor, fake_uncond: torch.Tensor, uncond_coef: float = 1.0,
           wrong_uncond: torch.Tensor | None = None, kind: str = "bce") -> tuple[torch.Tensor, dict[str, float]]:
    """Discriminator loss at one scale (eq. 10-13). All inputs are logits (B,).

    ``wrong_uncond``: StackGAN-v2's code also scores the wrong (still real) image
    unconditionally as real; pass its logits to add ``uncond_coef * BCE(D(v_w), 1)``.
    ``kind``: ``"bce"`` (StackGAN-v2) or ``"hinge"`` (the same three pairs, hinge terms).
    Returns ``(loss, terms)`` with the unweighted terms as floats for logging.
    """
    f = _D_TERM[kind]
    terms = {
        "real": f(real_cond, 1.0),
        "fake": f(fake_cond, 0.0),
        "wrong": f(wrong_cond, 0.0),
        "real_uncond": f(real_uncond, 1.0),
        "fake_uncond": f(fake_uncond, 0.0),
    }
    if wrong_uncond is not None:
        terms["wrong_uncond"] = f(wrong_uncond, 1.0)
    loss = terms["real"] + terms["fake"] + terms["wrong"]
    loss = loss + uncond_coef * sum(v for k, v in terms.items() if k.endswith("_uncond"))
    return loss, {k: float(v.detach()) for k, v in terms.items()}


_D_TERM = {"bce": bce_logits, "hinge": hinge}


def g_adv_loss(fake_cond: torch.Tensor, fake_uncond: torch.Tensor,
               uncond_coef: float = 1.0, kind: str = "bce") -> torch.Tensor:
    """Generator adversarial loss at one scale (eq. 14, non-saturating): fakes labelled real.

    With ``kind="hinge"`` the generator maximises D's logits: ``-mean(D(G(z), c))`` (SNGAN)."""
    if kind == "hinge":
        return -fake_cond.float().mean() - uncond_coef * fake_uncond.float().mean()
    return bce_logits(fake_cond, 1.0) + uncond_coef * bce_logits(fake_uncond, 1.0)


def mode_seeking_loss(img_a: torch.Tensor, img_b: torch.Tensor, z_a: torch.Tensor, z_b: torch.Tensor,
                      eps: float = 1e-5) -> torch.Tensor:
    """MSGAN (Mao et al. 2019): ``1 / (mean|G(z_a,c) - G(z_b,c)| / mean|z_a - z_b| + eps)``.

    Images of the same conditions under two noises; minimising it pushes them apart, against
    conditional mode collapse."""
    ratio = (img_a.float() - img_b.float()).abs().mean() / (z_a.float() - z_b.float()).abs().mean()
    return 1.0 / (ratio + eps)


def mode_seeking_term(fake: torch.Tensor, z: torch.Tensor, weight: float) -> torch.Tensor:
    """``weight`` x :func:`mode_seeking_loss` between the batch's halves (the trainer repeats the
    first half's conditions in the second under other noise); 0 when ``weight`` is 0."""
    if weight <= 0:
        return fake.new_zeros((), dtype=torch.float32)
    h = len(z) // 2
    return weight * mode_seeking_loss(fake[:h], fake[h:], z[:h], z[h:])


def kl_loss(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), averaged over batch and dimensions (as StackGAN-v2)."""
    mu, logvar = mu.float(), logvar.float()
    return -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp())


def mean_covariance(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image colour statistics: mean (B, 3) and covariance (B, 3, 3) over pixels."""
    img = img.float().flatten(2)  # (B, 3, P)
    mu = img.mean(dim=2)
    centred = img - mu[:, :, None]
    cov = centred @ centred.transpose(1, 2) / img.size(2)
    return mu, cov


def color_consistency_loss(images: list[torch.Tensor], coef: float) -> torch.Tensor:
    """StackGAN-v2 colour consistency: each scale's pixel mean / covariance match the next smaller's.

    ``coef * (MSE(mu_k, mu_{k-1}) + 5 * MSE(cov_k, cov_{k-1}))`` summed over k >= 1; the smaller
    scale is detached, so the larger image is pulled towards its lower-resolution sketch.
    """
    total = images[0].new_zeros((), dtype=torch.float32)
    if coef <= 0 or len(images) < 2:
        return total
    for big, small in zip(images[1:], images[:-1]):
        mu_b, cov_b = mean_covariance(big)
        mu_s, cov_s = mean_covariance(small.detach())
        total = total + coef * (F.mse_loss(mu_b, mu_s) + 5.0 * F.mse_loss(cov_b, cov_s))
    return total
