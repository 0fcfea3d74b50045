"""Teacher-student loss of the speech encoder (paper §III-B, eq. 6-9).

``L_TSL = L_JEL + lambda_norm * L_norm + lambda_KDL * L_KDL`` with the semantics of the
authors' code (``Audio_to_Image/jel.py`` and ``LossFunc`` in ``train_audio_encoder.py``):

* JEL (eq. 7), the joint embedding (hinge ranking) loss. ``S = f_v @ f_s.T`` so
  ``S[i, j] = f_v[i] . f_s[j]`` and ``S_abs[i, j] = S[i, j] - S[j, j]``. The ANCHOR is the
  speech embedding of column ``j``; ``S[j, j]`` is its score with its own (paired) image and
  ``S[i, j]`` its score with the image of row ``i``, so each term reads as the paper's
  ``max(0, f_s_j . f_v_i - f_s_j . f_v_j + m)``. Pairs of different classes get margin
  ``margin_diff`` (1) and weight ``weight_diff`` (1); pairs of the same class but a different row
  (``i != j``) get margin ``margin_same`` (0 in the code, 0.1 in the paper's text) and weight
  ``weight_same`` (0.1). The sum is divided by ``B**2`` as in the code.
* norm (eq. 8): mean absolute difference between ``f_s / ||f_s||`` and ``f_v / ||f_v||``.
  The authors normalise by the norm of the WHOLE batch matrix (``torch.norm(source)``), not per
  row. We keep that default (``norm_mode="batch"``): it preserves the teacher's relative
  magnitudes between the images of a batch (which a per-row norm would discard) and lambda_norm = 5
  was tuned for that scale. ``norm_mode="row"`` is offered for ablations.
* KDL (eq. 9): ``kl_div(log_softmax(f_s), softmax(f_v / T))`` with the temperature applied to the
  teacher only and PyTorch's old default reduction (mean over all ``B * D`` elements), which is
  why lambda_KDL is as large as 1000.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def jel_loss(f_s: torch.Tensor, f_v: torch.Tensor, labels: torch.Tensor, margin_diff: float = 1.0,
             margin_same: float = 0.0, weight_diff: float = 1.0, weight_same: float = 0.1) -> torch.Tensor:
    """Joint embedding loss (eq. 7). ``f_s``, ``f_v``: (B, D); ``labels``: (B,) class ids."""
    b = f_s.shape[0]
    score = f_v @ f_s.T  # (B_img, B_speech)
    s_abs = score - score.diag()[None, :]  # column j is the speech anchor
    same = labels[:, None] == labels[None, :]
    off_diag = ~torch.eye(b, dtype=torch.bool, device=f_s.device)
    loss_diff = F.relu(margin_diff + s_abs)[~same].sum()
    loss_same = F.relu(margin_same + s_abs)[same & off_diag].sum()
    return (weight_diff * loss_diff + weight_same * loss_same) / (b * b)


def norm_loss(f_s: torch.Tensor, f_v: torch.Tensor, mode: str = "batch") -> torch.Tensor:
    """L1 between normalised embeddings (eq. 8); ``mode`` "batch" (authors) or "row"."""
    if mode == "batch":
        return F.l1_loss(f_s / f_s.norm(), f_v / f_v.norm())
    if mode == "row":
        return F.l1_loss(F.normalize(f_s, dim=1), F.normalize(f_v, dim=1))
    raise ValueError(f"norm_loss: unknown mode {mode!r} (choose 'batch' or 'row')")


def kdl_loss(f_s: torch.Tensor, f_v: torch.Tensor, temperature: float = 2.0) -> torch.Tensor:
    """Knowledge distillation loss (eq. 9), element-mean KL(softmax(f_v / T) || softmax(f_s))."""
    # = the authors' kl_div(..., reduction="mean"), spelled out: that reduction is deprecated
    kl = F.kl_div(F.log_softmax(f_s, dim=1), F.softmax(f_v / temperature, dim=1), reduction="sum")
    return kl / f_s.numel()


def batch_retrieval_acc(f_s: torch.Tensor, f_v: torch.Tensor) -> torch.Tensor:
    """Fraction of speech rows whose best-scoring image in the batch is their own (authors' 'accu')."""
    score = f_v @ f_s.T
    return (score.argmax(dim=0) == torch.arange(f_s.shape[0], device=f_s.device)).float().mean()


class TeacherStudentLoss(nn.Module):
    """``L_TSL = L_JEL + lambda_norm * L_norm + lambda_KDL * L_KDL`` (eq. 6), each term switchable.

    ``forward(f_s (B, D), f_v (B, D), labels (B,)) -> (total, terms)``; ``terms`` holds the
    unweighted ``jel``, ``norm``, ``kdl`` (those enabled), the ``total`` and ``batch_acc``, all as
    detached floats. Computed in float32 even under autocast.
    """

    def __init__(self, use_jel: bool = True, use_norm: bool = True, use_kdl: bool = True,
                 lambda_norm: float = 5.0, lambda_kdl: float = 1000.0, margin_diff: float = 1.0,
                 margin_same: float = 0.0, weight_diff: float = 1.0, weight_same: float = 0.1,
                 temperature: float = 2.0, norm_mode: str = "batch"):
        super().__init__()
        if not (use_jel or use_norm or use_kdl):
            raise ValueError("TeacherStudentLoss: at least one of use_jel, use_norm, use_kdl must be True")
        self.use_jel, self.use_norm, self.use_kdl = use_jel, use_norm, use_kdl
        self.lambda_norm, self.lambda_kdl = lambda_norm, lambda_kdl
        self.margin_diff, self.margin_same = margin_diff, margin_same
        self.weight_diff, self.weight_same = weight_diff, weight_same
        self.temperature, self.norm_mode = temperature, norm_mode

    @classmethod
    def from_config(cls, cfg) -> "TeacherStudentLoss":
        """Build from an :class:`s2ilib.core.config.EncoderConfig`."""
        return cls(use_jel=cfg.use_jel, use_norm=cfg.use_norm, use_kdl=cfg.use_kdl,
                   lambda_norm=cfg.lambda_norm, lambda_kdl=cfg.lambda_kdl,
                   margin_diff=cfg.jel_margin_diff, margin_same=cfg.jel_margin_same,
                   weight_diff=cfg.jel_weight_diff, weight_same=cfg.jel_weight_same,
                   temperature=cfg.kdl_temperature)

    def forward(self, f_s: torch.Tensor, f_v: torch.Tensor, labels: torch.Tensor):
        f_s, f_v = f_s.float(), f_v.float()
        terms: dict[str, float] = {}
        total = f_s.new_zeros(())
        if self.use_jel:
            jel = jel_loss(f_s, f_v, labels, self.margin_diff, self.margin_same, self.weight_diff, self.weight_same)
            total = total + jel
            terms["jel"] = jel.item()
        if self.use_norm:
            nrm = norm_loss(f_s, f_v, self.norm_mode)
            total = total + self.lambda_norm * nrm
            terms["norm"] = nrm.item()
        if self.use_kdl:
            kdl = kdl_loss(f_s, f_v, self.temperature)
            total = total + self.lambda_kdl * kdl
            terms["kdl"] = kdl.item()
        with torch.no_grad():
            terms["batch_acc"] = batch_retrieval_acc(f_s, f_v).item()
        terms["total"] = total.item()
        return total, terms
