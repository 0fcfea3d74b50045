"""Unit tests of the ablation helpers: gradient magnitudes per loss term on a case with a known
answer, the interpolation metrics on a toy generator whose transition is known, the schedules."""
import numpy as np
import pytest
import torch
from torch import nn

from s2ilib.study import interpolation as I
from s2ilib.training.loss_balance import term_gradient_norms
from s2ilib.training.losses import TeacherStudentLoss


def test_gradient_norms_match_the_analytic_gradients():
    """f_s = 0, labels all different: every JEL hinge is active (margin 1), so
    d JEL / d f_s[j] = (sum_{i != j} f_v[i] - (B - 1) f_v[j]) / B^2; KDL at f_s = 0 (uniform softmax):
    d (lambda KDL) / d f_s = lambda (1/D - softmax(f_v / T)) / (B D)."""
    torch.manual_seed(0)
    b, d = 5, 7
    f_v = torch.randn(b, d) * 0.1
    f_s = torch.zeros(b, d)
    labels = torch.arange(b)
    loss = TeacherStudentLoss(lambda_norm=5.0, lambda_kdl=1000.0, temperature=2.0)
    got = term_gradient_norms(loss, f_s + 1e-12, f_v, labels)
    jel = (f_v.sum(0, keepdim=True) - f_v - (b - 1) * f_v) / b ** 2
    kdl = 1000.0 * (1.0 / d - torch.softmax(f_v / 2.0, dim=1)) / (b * d)
    assert got["jel"] == pytest.approx(float(jel.norm()), rel=1e-4)
    assert got["kdl"] == pytest.approx(float(kdl.norm()), rel=1e-4)
    # norm term: against a finite-difference gradient at a generic point
    x = torch.randn(b, d, dtype=torch.float64)
    fv64 = f_v.double()
    g_fd = torch.zeros_like(x)
    from s2ilib.training.losses import norm_loss
    for i in range(b):
        for j in range(d):
            e = torch.zeros_like(x)
            e[i, j] = 1e-6
            g_fd[i, j] = 5.0 * (norm_loss(x + e, fv64) - norm_loss(x - e, fv64)) / 2e-6
    got = term_gradient_norms(loss, x.float(), f_v, labels)
    assert got["norm"] == pytest.approx(float(g_fd.norm()), rel=1e-3)


def test_gradient_norms_scale_with_the_weights():
    torch.manual_seed(1)
    f_s, f_v, labels = torch.randn(6, 4), torch.randn(6, 4), torch.tensor([0, 0, 1, 1, 2, 2])
    a = term_gradient_norms(TeacherStudentLoss(lambda_norm=5.0, lambda_kdl=1000.0), f_s, f_v, labels)
    b = term_gradient_norms(TeacherStudentLoss(lambda_norm=10.0, lambda_kdl=10.0), f_s, f_v, labels)
    assert b["norm"] == pytest.approx(2 * a["norm"], rel=1e-5)
    assert b["kdl"] == pytest.approx(a["kdl"] / 100, rel=1e-5)
    assert b["jel"] == pytest.approx(a["jel"], rel=1e-6)


class ToyGenerator(nn.Module):
    """Image = a flat colour whose red channel is the condition's first coordinate (in [0, 1]),
    whatever the noise: the reader's p(red) is exactly linear in a."""

    z_dim, ca_dim = 3, 2

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, z, c, eps=None):
        red = c[:, :1].clamp(0, 1) * 2 - 1  # [-1, 1]
        img = torch.cat([red, -torch.ones_like(red), -torch.ones_like(red)], 1)[:, :, None, None].expand(-1, 3, 4, 4)
        return [img], None, None


def toy_reader(images):
    red = images[:, 0].float().mean(dim=(1, 2)) / 255.0
    return {"colour": torch.stack([red, 1 - red], 1)}


def test_interpolation_metrics_on_a_toy_generator():
    vocab = {"colour": ["red", "blue"]}
    a = I.alphas()
    assert np.allclose(a, np.arange(9) / 8)
    f1 = torch.tensor([[1.0, 0.0], [0.0, 0.0]])  # pair 0: utterance 1 red, utterance 2 blue
    f2 = torch.tensor([[0.0, 0.0], [1.0, 0.0]])  # pair 1: the other way round
    pairs = [{"i": 0, "j": 1, "text_i": "", "text_j": "", "diffs": [("colour", "red", "blue")]},
             {"i": 1, "j": 0, "text_i": "", "text_j": "", "diffs": [("colour", "blue", "red")]}]
    curves = I.transition_curves(ToyGenerator(), f1, f2, pairs, toy_reader, vocab, a, seed=0, bf16=False)
    table = I.curve_table(curves, a)
    # s(a) = p1 - p2 = 2a - 1 for both pairs (up to uint8 rounding): monotone, linear, full swing
    assert np.allclose(np.subtract(curves[0]["p1"], curves[0]["p2"]), 2 * a - 1, atol=0.01)
    assert table["spearman"].tolist() == pytest.approx([1.0, 1.0])
    assert table["monotone"].tolist() == [1.0, 1.0]
    assert table["r2"].min() > 0.999 and table["chord_dev"].max() < 0.01
    assert table["swing"].tolist() == pytest.approx([2.0, 2.0], abs=0.01)
    assert table["transition"].tolist() == [1.0, 1.0]
    summary = I.summarise_curves(table)
    assert summary["n_pairs"] == 2 and summary["r2"]["mean"] > 0.999
    mean = I.mean_curve(curves, a)
    assert mean["p1"].iloc[0] == pytest.approx(0.0, abs=0.01) and mean["p1"].iloc[-1] == pytest.approx(1.0, abs=0.01)


def test_curve_metrics_known_shapes():
    a = I.alphas()
    down = I.curve_metrics(1 - 2 * a, a)
    assert down["spearman"] == pytest.approx(-1.0) and down["monotone"] == 0.0 and down["r2"] == pytest.approx(1.0)
    step = I.curve_metrics(np.where(a < 0.5, -1.0, 1.0), a)
    assert step["monotone"] == 1.0 and step["chord_dev"] == pytest.approx(1.0) and step["r2"] < 0.9
    flat = I.curve_metrics(np.zeros(9), a)
    assert flat["spearman"] == 0.0 and flat["swing"] == 0.0 and flat["transition"] == 0.0


def test_schedules_are_variants_of_every_preset():
    """The ablation models never land in the main runs' folders."""
    from s2ilib.core.config import get_config
    from s2ilib.core.variants import variant_name
    from s2ilib.study import ablation
    from s2ilib.study.paths import with_overrides

    for preset in ablation.SCHEDULES:
        cfg = get_config(preset)
        sched = ablation.schedule(preset)
        for row, extra in ablation.LOSS_ROWS.items():
            vcfg = with_overrides(cfg, {**sched["loss_config"], **extra})
            assert variant_name(vcfg, "encoder") and variant_name(vcfg, "gan"), (preset, row)
        for b in sched["scale_branches"]:
            vcfg = with_overrides(cfg, {**sched["scale_config"], "gan.branches": b})
            assert variant_name(vcfg, "gan") and not variant_name(vcfg, "encoder"), (preset, b)
    with pytest.raises(KeyError):
        ablation.schedule("smoke", {"nope": 1})
    assert ablation.schedule("smoke", {"pairs": 3})["pairs"] == 3


def test_claim_frame_decides_every_row_by_the_one_rule():
    """The ablation claims files are decided in claim_frame (rule's p, Holm), not by their rows."""
    import math

    from s2ilib.study import ablation_report as AR

    rows = [AR._row("birds", "A above B", "a - b", "attr_acc", {"estimate": 0.1, "low": 0.05, "high": 0.15,
                                                                  "p_value": 0.001, "n": 40}),
            AR._row("birds", "lower KID", "64px - 32px", "kid", {"estimate": 0.02, "low": 0.01, "high": 0.03,
                                                                   "p_value": 0.004, "n": 40}, rule="lower"),
            AR._row("birds", "as linear", "s - t", "r2", {"estimate": 0.0, "low": -0.02, "high": 0.02, "n": 40},
                    rule="close", margin=0.1)]
    assert "verdict" not in rows[0]
    df = AR.claim_frame(rows)
    assert list(df.columns) == AR.CLAIM_COLUMNS
    assert df["verdict"].tolist() == ["holds", "fails", "holds"]
    # Holm over the file: the TOST p of the close row is smallest (x3), then 0.001 (x2), then 0.004 (x1)
    assert df["p_holm"].iloc[:2].tolist() == pytest.approx([0.002, 0.004])
    assert df["p_holm"].iloc[2] == pytest.approx(3 * df["p_rule"].iloc[2])
    assert math.isnan(df["margin"].iloc[0]) and df["margin"].iloc[2] == 0.1
