"""Every registered figure, rendered on small constructed data (no study run): labels, a title naming
the dataset, a caption written beside the PNG, error bars where the data has intervals, reference
lines where a floor, ceiling or chance exists, x labels that do not overlap, and image grids drawn
at an integer nearest-neighbour scale (the PNG holds the tiles' own pixels)."""
from __future__ import annotations

import math
import re

import matplotlib

matplotlib.use("agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer
from PIL import Image, ImageFilter

from s2ilib.study import captions, charts, grids, interpolation

DATASETS = ["synth-birds", "synth-flowers"]
RNG = np.random.default_rng(0)


# ------------------------------------------------------------------------------------------------
# constructed data


def _long_table() -> pd.DataFrame:
    """A main_table_long.csv-like frame: intervals on KID / R-precision / attribute accuracy, none on
    FID / IS; two-stage at N = 100 beside the rest at 400; the references of each dataset."""
    rows = []
    for ds in DATASETS:
        for method, cond in (("one_stage", "seen"), ("one_stage", "unseen"), ("two_stage", "seen"),
                             ("classifier", "seen"), ("text", "groundtruth_text")):
            n = 100 if method == "two_stage" else 400
            for metric, v, half in (("fid", 220.0, None), ("is", 3.0, None), ("kid", 0.25, 0.01),
                                    ("r_precision", 0.02, 0.01), ("attr_acc", 0.45, 0.02)):
                lo, hi = (v - half, v + half) if half else (math.nan, math.nan)
                rows.append((ds, method, cond, metric, v + RNG.normal(0, v / 20), lo, hi, n))
            rows.append((ds, method, cond, "attr_acc_shuffled", 0.21, math.nan, math.nan, n))
            rows.append((ds, method, cond, "r_precision_chance", 0.01, math.nan, math.nan, n))
        rows += [(ds, "real", "real_test", "attr_acc", 0.96, 0.95, 0.97, 400),
                 (ds, "real", "real_test", "attr_acc_shuffled", 0.22, math.nan, math.nan, 400),
                 (ds, "real", "real_vs_real", "fid_half", 32.0, math.nan, math.nan, 200),
                 (ds, "real", "real_vs_real", "kid_half", 0.0, -0.001, 0.001, 200)]
    return pd.DataFrame(rows, columns=["dataset", "method", "condition", "metric", "value", "low", "high", "n"])


def _ablation_rows(key: str, labels) -> list[dict]:
    out = []
    for k, lab in enumerate(labels):
        out.append({key: lab, "recall@10": 0.1 + k / 20, "recall@10_ci": [0.08 + k / 20, 0.12 + k / 20],
                    "recall@10_n": 400, "attr_acc": 0.25 + k / 50, "attr_acc_ci": [0.23 + k / 50, 0.27 + k / 50],
                    "attr_acc_n": 800, "attr_acc_shuffled": 0.21, "r_precision": 0.015,
                    "r_precision_ci": [0.005, 0.03], "r_precision_n": 200, "r_precision_chance": 0.01,
                    "fid": 300.0, "fid_n": 300, "fid_half": 310.0, "fid_half_n": 200, "fid_floor": 32.0})
    return out


def _images(n: int, size: int = 16) -> np.ndarray:
    return RNG.integers(0, 256, (n, 3, size, size), dtype=np.uint8)


def _interp_result(n_pairs: int = 5) -> dict:
    a = np.linspace(0, 1, 9)
    curve = pd.DataFrame({"a": a, "p1": a, "p1_low": a - 0.1, "p1_high": a + 0.1,
                          "p2": 1 - a, "p2_low": 0.9 - a, "p2_high": 1.1 - a})
    return {"dataset": "synth-birds", "alphas": a.tolist(),
            "pairs": [{"text_i": "a red bird", "text_j": "a blue bird"} for _ in range(n_pairs)],
            "mean_curves": {"one_stage": curve, "text": curve.assign(p1=curve["p1"] * 0.9)},
            "images": {"one_stage": [_images(9)], "text": [_images(9)]}}


# Each registered figure: a builder (tmp_path -> figure) and what the figure must show.
BUILDERS = {
    "main_metric_figure": (lambda p: charts.main_metric_figure(_long_table(), "attr_acc", path=p / "04_attr_acc.png"),
                           {"datasets": DATASETS, "error_bars": 10, "refs": {"floor", "ceiling"}, "arrow": "↑"}),
    "loss_ablation_figure": (lambda p: charts.loss_ablation_figure(
        "synth-birds", _ablation_rows("row", ["norm", "norm+jel", "norm+kdl", "norm+jel+kdl"]),
        path=p / "05_synth-birds_loss_ablation.png"),
        {"datasets": ["synth-birds"], "error_bars": 12, "refs": {"floor", "chance"}, "arrow": "↑"}),
    "scale_ablation_figure": (lambda p: charts.scale_ablation_figure(
        "synth-birds", [{**r, "branches": b, "output_size": 16 * 2 ** b}
                        for b, r in zip((1, 2, 3), _ablation_rows("x", range(3)))], 64,
        path=p / "06_synth-birds_scales.png"),
        {"datasets": ["synth-birds"], "error_bars": 6, "refs": {"floor", "chance"}, "arrow": "↓",
         "title_has": "scored at 64 px"}),
    "curve_figure": (lambda p: interpolation.curve_figure(_interp_result(), path=p / "07_synth-birds_curves.png"),
                     {"datasets": ["synth-birds"], "bands": True, "title_has": "95% bands over 5 pairs"}),
    "fig3_grid": (lambda p: grids.fig3_grid("synth-birds", ["a red bird", "a small blue bird with white wings"],
                                            list(_images(2)), [_images(4), _images(4)],
                                            path=p / "03_synth-birds_fig3.png"),
                  {"datasets": ["synth-birds"], "grid": True}),
    "matched_shuffled_grid": (lambda p: grids.matched_shuffled_grid(
        "synth-flowers", ["pink petals", "yellow petals", "white petals"], _images(3), _images(3), [2, 0, 1],
        path=p / "03_synth-flowers_matched_vs_shuffled.png"), {"datasets": ["synth-flowers"], "grid": True}),
    "method_grid": (lambda p: grids.method_grid(
        "synth-birds", [{"real": im, "text": "a red bird", "transcript": "a rat bird",
                         "images": {"one_stage": im, "two_stage": im}} for im in _images(3)],
        ["one_stage", "two_stage"], ["two_stage"], path=p / "04_synth-birds_methods.png"),
        {"datasets": ["synth-birds"], "grid": True}),
    "interpolation_grid": (lambda p: grids.interpolation_grid("synth-birds", _interp_result(), 0,
                                                              path=p / "07_synth-birds_pair0.png"),
                           {"datasets": ["synth-birds"], "grid": True, "title_has": "a = 0 (left): a blue bird"}),
}


# ------------------------------------------------------------------------------------------------
# checks (each returns the problems it finds, so a test can show that it fails on a bad figure)


def _sentences(text: str) -> int:
    return len(re.findall(r"[.!?](?:\s|$)", text.strip()))


def chart_problems(fig, expect: dict) -> list[str]:
    problems = []
    axes = [ax for ax in fig.axes if ax.get_visible()]
    # the figure's title, or the one panel's title when the figure has no title of its own
    title = fig._suptitle.get_text() if fig._suptitle else " ".join(ax.get_title() for ax in axes[:1])
    for ds in expect["datasets"]:
        if ds not in title:
            problems.append(f"title {title!r} does not name {ds}")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in axes:
        if not any(ds in ax.get_title() for ds in expect["datasets"]):
            problems.append(f"panel title {ax.get_title()!r} names no dataset")
        if not ax.get_ylabel().strip() or not ax.get_xlabel().strip():
            problems.append("a panel without axis labels")
        if "_" in ax.get_ylabel():
            problems.append(f"raw column name as y label: {ax.get_ylabel()!r}")
        if "arrow" in expect and not any(a in ax.get_ylabel() for a in "↑↓"):
            problems.append(f"y label without direction: {ax.get_ylabel()!r}")
        boxes = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text().strip()]
        if any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:]):
            problems.append("x tick labels overlap")
    n_err = sum(isinstance(c, ErrorbarContainer) for ax in axes for c in ax.containers)
    if n_err != expect.get("error_bars", 0):
        problems.append(f"{n_err} error bars, expected {expect.get('error_bars', 0)}")
    kinds = {str(ln.get_gid())[4:] for ax in axes for ln in ax.lines if str(ln.get_gid()).startswith("ref:")}
    if not expect.get("refs", set()) <= kinds:
        problems.append(f"reference lines {sorted(kinds)}, expected {sorted(expect['refs'])}")
    if expect.get("bands") and not any(ax.collections for ax in axes):
        problems.append("no interval bands")
    return problems


def grid_problems(fig, path, inputs: list[np.ndarray]) -> list[str]:
    """The PNG holds every tile enlarged by an integer k with repeated pixels, at its offset."""
    problems = []
    meta = getattr(fig, "s2i_grid", None)
    if meta is None:
        return ["not a tile grid"]
    k, (th, tw) = meta["scale"], meta["tile_px"]
    if not (isinstance(k, int) and k >= 1):
        problems.append(f"scale {k} is not a positive integer")
    png = np.asarray(Image.open(path).convert("RGB"))
    flat = [xy for row in meta["offsets"] for xy in row]
    for tile, (x, y) in zip(inputs, flat):
        block = png[y:y + th * k, x:x + tw * k]
        if block.shape[:2] != (th * k, tw * k) or not np.array_equal(block, grids.nearest_scale(tile, k)):
            problems.append(f"tile at {(x, y)} is not the input enlarged {k}x by nearest neighbour")
            break
    title = fig._suptitle.get_text() if fig._suptitle else ""
    if f"{th} x {tw} px" not in title or f"{k}x" not in title:
        problems.append(f"title {title!r} does not state the pixel size and scale")
    return problems


# ------------------------------------------------------------------------------------------------
# tests


def test_every_registered_figure_has_a_builder_here():
    assert set(captions.FIGURES) == set(BUILDERS), "a figure registered without a test (or a stale builder)"


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_registered_figure(name, tmp_path, monkeypatch):
    seen_tiles = []
    real_tile_grid = grids.tile_grid

    def recording(rows, *args, **kwargs):  # keep the tiles the figure was built from
        seen_tiles.extend(grids.to_hwc_uint8(im) for row in rows for im in row)
        return real_tile_grid(rows, *args, **kwargs)

    monkeypatch.setattr(grids, "tile_grid", recording)
    build, expect = BUILDERS[name]
    fig = build(tmp_path)
    path = fig.s2i_path
    try:
        assert path.is_file() and path.name == captions.FIGURES[name].pattern.format(
            metric="attr_acc", dataset=expect["datasets"][0], k=0)
        # caption: registered, one or two sentences, written beside the PNG for the HTML page
        assert fig.s2i_figure == name
        assert fig.s2i_caption and 1 <= _sentences(fig.s2i_caption) <= 2, fig.s2i_caption
        assert captions.figure_caption(path) == fig.s2i_caption
        assert any(ds in fig.s2i_caption for ds in expect["datasets"])
        if "title_has" in expect:
            titles = [fig._suptitle.get_text() if fig._suptitle else ""] + [ax.get_title() for ax in fig.axes]
            assert any(expect["title_has"] in t for t in titles), titles
        if expect.get("grid"):
            assert grid_problems(fig, path, seen_tiles) == []
            title = fig._suptitle.get_text()
            assert all(ds in title for ds in expect["datasets"])
        else:
            assert chart_problems(fig, expect) == []
    finally:
        plt.close(fig)


def test_main_chart_without_intervals_says_so_and_names_differing_n(tmp_path):
    fig = charts.main_metric_figure(_long_table(), "fid", path=tmp_path / "04_fid.png")
    assert chart_problems(fig, {"datasets": DATASETS, "error_bars": 0, "refs": {"floor"}, "arrow": "↓"}) == []
    assert all("two stage: 100" in ax.get_xlabel() and "N = 400" in ax.get_xlabel() for ax in fig.axes)
    assert "no error bars" in fig.s2i_caption and "sample sizes differ" in fig.s2i_caption
    assert fig.axes[0].get_ylabel() == "FID ↓"
    plt.close(fig)
    fig = charts.main_metric_figure(_long_table(), "r_precision", path=tmp_path / "04_r_precision.png")
    assert chart_problems(fig, {"datasets": DATASETS, "error_bars": 10, "refs": {"chance"}, "arrow": "↑"}) == []
    plt.close(fig)


def test_grid_rows_without_text_leave_no_band_and_labels_sit_in_the_left_margin(tmp_path):
    fig = grids.tile_grid([list(_images(3)), list(_images(3))], row_labels=["one", "two"],
                          cell_text=[["", "", ""], ["", "", ""]], path=tmp_path / "g.png")
    (x0, y0), (_, y1) = fig.s2i_grid["offsets"][0][0], fig.s2i_grid["offsets"][1][0]
    k, (th, _) = fig.s2i_grid["scale"], fig.s2i_grid["tile_px"]
    assert y1 - y0 == th * k + grids.GAP  # no empty caption band between rows
    width = fig.s2i_grid["size"][1]
    labels = [t for t in fig.texts if t.get_text() in ("one", "two")]
    assert len(labels) == 2 and all(t.get_position()[0] * width < x0 for t in labels)
    plt.close(fig)


def test_the_checks_can_fail(tmp_path):
    """A plain seaborn-style bar chart (raw column name, no intervals, no reference lines) and a
    smoothed grid are caught."""
    fig, ax = plt.subplots()
    ax.bar(["one_stage_authors_long_name", "two_stage_long_name", "classifier_long_name"], [0.3, 0.2, 0.25])
    ax.set_ylabel("attr_acc")
    fig.suptitle("attr_acc")
    problems = chart_problems(fig, {"datasets": ["synth-birds"], "error_bars": 3, "refs": {"floor"}, "arrow": "↑"})
    assert any("does not name" in p for p in problems)
    assert any("raw column name" in p for p in problems)
    assert any("direction" in p for p in problems)
    assert any("error bars" in p for p in problems)
    assert any("reference lines" in p for p in problems)
    assert any("overlap" in p for p in problems)
    plt.close(fig)

    tiles = list(_images(2))
    fig = grids.tile_grid([tiles], path=tmp_path / "g.png")
    assert grid_problems(fig, tmp_path / "g.png", [grids.to_hwc_uint8(t) for t in tiles]) == []
    # the same figure with display smoothing (what the old grids did): caught
    Image.open(tmp_path / "g.png").convert("RGB").filter(ImageFilter.SMOOTH).save(tmp_path / "g.png")
    assert grid_problems(fig, tmp_path / "g.png", [grids.to_hwc_uint8(t) for t in tiles])
    plt.close(fig)


def test_captions_file_keeps_every_figure_of_a_folder(tmp_path):
    a = charts.main_metric_figure(_long_table(), "kid", path=tmp_path / "04_kid.png")
    b = charts.main_metric_figure(_long_table(), "is", path=tmp_path / "04_is.png")
    assert captions.read_captions(tmp_path) == {"04_kid.png": a.s2i_caption, "04_is.png": b.s2i_caption}
    assert captions.figure_caption(tmp_path / "missing.png") is None
    plt.close(a)
    plt.close(b)


def test_show_displays_the_saved_png_then_its_caption(tmp_path, monkeypatch):
    import IPython.display as D

    shown = []
    monkeypatch.setattr(D, "display", lambda obj: shown.append(obj))
    fig = grids.fig3_grid("synth-birds", ["a red bird"], list(_images(1)), [_images(2)], path=tmp_path / "f.png")
    captions.show(fig)
    assert isinstance(shown[0], D.Image) and shown[0].data == (tmp_path / "f.png").read_bytes()
    assert isinstance(shown[1], D.Markdown) and fig.s2i_caption in shown[1].data
