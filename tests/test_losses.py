"""TeacherStudentLoss terms against direct loop computations (authors' code semantics)."""
import math

import pytest
import torch

from s2ilib.training.losses import TeacherStudentLoss, jel_loss, kdl_loss, norm_loss


def _jel_loop(f_s, f_v, labels, m_diff, m_same, w_diff, w_same):
    """Paper eq. 7 with the speech embedding as anchor: max(0, f_s_a.f_v_n - f_s_a.f_v_a + m)."""
    b = f_s.shape[0]
    total = 0.0
    for a in range(b):  # anchor speech
        pos = float(f_s[a] @ f_v[a])
        for n in range(b):  # other image
            hinge = float(f_s[a] @ f_v[n]) - pos
            if labels[a] != labels[n]:
                total += w_diff * max(0.0, m_diff + hinge)
            elif a != n:
                total += w_same * max(0.0, m_same + hinge)
    return total / b**2


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    f_s = torch.randn(6, 5, generator=g)
    f_v = torch.randn(6, 5, generator=g) * 2
    labels = torch.tensor([0, 0, 1, 2, 2, 2])  # same-class and different-class pairs
    return f_s, f_v, labels


@pytest.mark.parametrize("m_same,w_same", [(0.0, 0.1), (0.1, 0.5)])
def test_jel_matches_loop(batch, m_same, w_same):
    f_s, f_v, labels = batch
    got = jel_loss(f_s, f_v, labels, 1.0, m_same, 1.0, w_same).item()
    assert got == pytest.approx(_jel_loop(f_s, f_v, labels, 1.0, m_same, 1.0, w_same), rel=1e-5)


def test_jel_anchor_is_speech(batch):
    """Swapping the roles of speech and image changes the value: the orientation is tested."""
    f_s, f_v, labels = batch
    speech_anchor = _jel_loop(f_s, f_v, labels, 1.0, 0.1, 1.0, 0.1)
    image_anchor = _jel_loop(f_v, f_s, labels, 1.0, 0.1, 1.0, 0.1)
    assert abs(speech_anchor - image_anchor) > 1e-3
    assert jel_loss(f_s, f_v, labels, 1.0, 0.1, 1.0, 0.1).item() == pytest.approx(speech_anchor, rel=1e-5)


def test_jel_masks_same_class_diagonal_and_weights(batch):
    f_s, f_v, labels = batch
    # all one class, margin 0: only same-class off-diagonal pairs count, weighted by w_same
    one = torch.zeros(6, dtype=torch.long)
    assert jel_loss(f_s, f_v, one, 1.0, 0.0, 1.0, 0.3).item() == pytest.approx(
        _jel_loop(f_s, f_v, one, 1.0, 0.0, 1.0, 0.3), rel=1e-5)
    # with the diagonal wrongly included and m_same > 0 the value would grow by w * m_same * B / B^2
    assert jel_loss(f_s, f_v, one, 1.0, 0.2, 1.0, 1.0).item() == pytest.approx(
        _jel_loop(f_s, f_v, one, 1.0, 0.2, 1.0, 1.0), rel=1e-5)
    # all different classes, w_same irrelevant
    diff = torch.arange(6)
    assert jel_loss(f_s, f_v, diff, 1.0, 0.0, 1.0, 123.0).item() == pytest.approx(
        _jel_loop(f_s, f_v, diff, 1.0, 0.0, 1.0, 0.0), rel=1e-5)


def test_jel_zero_for_well_separated_pairs():
    f = torch.eye(4) * 3.0  # own score 9, others 0: every margin of 1 is met
    assert jel_loss(f, f, torch.arange(4)).item() == 0.0


def test_norm_loss_whole_batch_and_rows(batch):
    f_s, f_v, _ = batch
    a = f_s / math.sqrt(float((f_s**2).sum()))
    v = f_v / math.sqrt(float((f_v**2).sum()))
    assert norm_loss(f_s, f_v).item() == pytest.approx(float((a - v).abs().mean()), rel=1e-5)
    ar = f_s / f_s.norm(dim=1, keepdim=True)
    vr = f_v / f_v.norm(dim=1, keepdim=True)
    assert norm_loss(f_s, f_v, "row").item() == pytest.approx(float((ar - vr).abs().mean()), rel=1e-5)
    with pytest.raises(ValueError):
        norm_loss(f_s, f_v, "bogus")


def test_kdl_matches_elementwise_mean_kl(batch):
    f_s, f_v, _ = batch
    total = 0.0
    for i in range(f_s.shape[0]):
        p = torch.softmax(f_v[i] / 2.0, 0)
        logq = torch.log_softmax(f_s[i], 0)
        total += float((p * (p.log() - logq)).sum())
    assert kdl_loss(f_s, f_v, 2.0).item() == pytest.approx(total / f_s.numel(), rel=1e-5)


def test_teacher_student_total_and_switches(batch):
    f_s, f_v, labels = batch
    full, terms = TeacherStudentLoss()(f_s, f_v, labels)
    expected = terms["jel"] + 5 * terms["norm"] + 1000 * terms["kdl"]
    assert full.item() == pytest.approx(expected, rel=1e-5)
    only_norm, t2 = TeacherStudentLoss(use_jel=False, use_kdl=False)(f_s, f_v, labels)
    assert set(t2) == {"norm", "total", "batch_acc"}
    assert only_norm.item() == pytest.approx(5 * terms["norm"], rel=1e-5)
    with pytest.raises(ValueError):
        TeacherStudentLoss(False, False, False)


def test_loss_gradients_reach_student_only(batch):
    f_s, f_v, labels = batch
    f_s = f_s.clone().requires_grad_(True)
    loss, _ = TeacherStudentLoss()(f_s, f_v, labels)
    loss.backward()
    assert f_s.grad is not None and f_s.grad.abs().sum() > 0


def test_from_config_reads_encoder_config():
    from s2ilib.core.config import EncoderConfig

    cfg = EncoderConfig(use_kdl=False, lambda_norm=2.0, jel_margin_same=0.1)
    loss = TeacherStudentLoss.from_config(cfg)
    assert (loss.use_kdl, loss.lambda_norm, loss.margin_same) == (False, 2.0, 0.1)
