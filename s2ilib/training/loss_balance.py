"""How the paper's weights balance the teacher-student terms: gradient magnitudes per loss term.

The paper weights ``L_TSL = L_JEL + 5 L_norm + 1000 L_KDL`` (eq. 6) so that no term swamps the
others early in training. :func:`term_gradient_norms` measures, on one batch, the norm of the
gradient of each WEIGHTED term with respect to the speech embedding ``f_s``; :func:`gradient_balance`
trains the speech encoder for a short run with the full loss and averages those norms over a
window of steps (e.g. steps 50-150), so a reader sees whether 5 / 1 / 1000 balance them on our data.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from s2ilib.training.losses import TeacherStudentLoss, jel_loss, kdl_loss, norm_loss

TERMS = ("jel", "norm", "kdl")


def weighted_terms(loss_fn: TeacherStudentLoss, f_s: torch.Tensor, f_v: torch.Tensor,
                   labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """The weighted terms of ``loss_fn`` (every term, switched on or not): {jel, norm, kdl} scalars."""
    return {"jel": jel_loss(f_s, f_v, labels, loss_fn.margin_diff, loss_fn.margin_same, loss_fn.weight_diff,
                            loss_fn.weight_same),
            "norm": loss_fn.lambda_norm * norm_loss(f_s, f_v, loss_fn.norm_mode),
            "kdl": loss_fn.lambda_kdl * kdl_loss(f_s, f_v, loss_fn.temperature)}


def term_gradient_norms(loss_fn: TeacherStudentLoss, f_s: torch.Tensor, f_v: torch.Tensor,
                        labels: torch.Tensor) -> dict[str, float]:
    """Frobenius norm of d(weighted term) / d f_s for each term, on one batch.

    ``f_s`` (B, D) speech embeddings, ``f_v`` (B, D) teacher image features, ``labels`` (B,) class
    ids. ``f_s`` is detached here: the norms are of the gradient at the embedding, not of the
    parameters. Returns {"jel", "norm", "kdl"} floats.
    """
    x = f_s.detach().float().requires_grad_(True)
    terms = weighted_terms(loss_fn, x, f_v.detach().float(), labels)
    out = {}
    for name, value in terms.items():
        (g,) = torch.autograd.grad(value, x, retain_graph=True)
        out[name] = float(g.norm())
    return out


def gradient_balance(kind: str, dataset: Any, teacher_feats: torch.Tensor, cfg: Any, seed: int,
                     steps: int, window: tuple[int, int], device: str = "cpu") -> dict[str, Any]:
    """Train ``kind`` (a teacher-student speech encoder) for ``steps`` steps with ``cfg``'s loss
    (the full L_TSL unless ``cfg`` switches terms off) and record, at every step, the gradient
    norm of each weighted term w.r.t. the speech embeddings of the batch (:func:`term_gradient_norms`).

    Nothing is saved: the run is a measurement. Returns {"mean": {term: mean norm over steps
    ``window[0]`` .. ``window[1]``}, "std", "ratio_to_jel", "steps": [...], "per_step": {term: [...]},
    "seconds_per_step"}.
    """
    import time

    from s2ilib.training.encoder_trainer import EncoderRun

    run = EncoderRun(kind, dataset, teacher_feats, cfg, seed, torch.device(device))
    per_step: dict[str, list[float]] = {t: [] for t in TERMS}
    t0, step, epoch = time.perf_counter(), 0, 0
    while step < steps:
        for sel in run.batches(epoch):
            if step >= steps:
                break
            step += 1
            run.model.train()
            rng = np.random.default_rng([seed, step, 13])
            views = rng.integers(0, run.teacher.shape[1], size=len(sel))
            inputs = run.inputs(run.train, sel, rng)
            labels = run.labels(run.train.image_idx[sel])
            with run.autocast():
                f_s = run.model(*inputs)
            f_v = run.teacher[run.train.image_idx[sel], views].to(run.device)
            for name, v in term_gradient_norms(run.loss_fn, f_s, f_v, labels).items():
                per_step[name].append(v)
            loss, _ = run.loss_fn(f_s, f_v, labels)
            run.opt.zero_grad(set_to_none=True)
            loss.backward()
            run.opt.step()
        epoch += 1
        run.sched.step()  # StepLR counts epochs, as in the trainer
    lo, hi = window
    sl = slice(max(lo - 1, 0), min(hi, steps))
    mean = {t: float(np.mean(v[sl])) for t, v in per_step.items()}
    return {"mean": mean, "std": {t: float(np.std(v[sl])) for t, v in per_step.items()},
            "ratio_to_jel": {t: mean[t] / mean["jel"] if mean["jel"] > 0 else float("nan") for t in TERMS},
            "window": [lo, min(hi, steps)], "steps": steps, "per_step": per_step,
            "weights": {"jel": 1.0, "norm": run.loss_fn.lambda_norm, "kdl": run.loss_fn.lambda_kdl},
            "seconds_per_step": (time.perf_counter() - t0) / max(steps, 1)}
