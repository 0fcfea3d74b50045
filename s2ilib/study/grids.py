"""Image grids at an integer nearest-neighbour scale (notebooks 01, 03, 04, 07).

Tiles are enlarged by repeating pixels (``k`` x ``k`` blocks, no smoothing), composed into one
canvas and drawn 1:1 into the figure (``figimage``), so the saved PNG shows the generator's own
pixels: a reader can tell generator blur from display blur. Row labels sit in a left margin,
column labels above the columns, per-tile text only in rows that have some (no empty bands); the
title states the tiles' pixel size and the scale.
"""
from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt  # the runner sets MPLBACKEND=agg for headless runs
import numpy as np

from s2ilib.study.captions import register_figure, save_figure

DPI = 100
PT = DPI / 72  # pixels per point
GAP = 4  # px between tiles
PAD = 6  # px around text bands


def to_hwc_uint8(img) -> np.ndarray:
    """PIL image, HWC or CHW array (uint8, or float in [0, 1]) -> (H, W, 3) uint8."""
    arr = np.asarray(img)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)
    if arr.dtype != np.uint8:
        arr = np.clip(np.round(arr * 255 if arr.max() <= 1.0 else arr), 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = arr[..., None]
    return np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr[..., :3]


def nearest_scale(img: np.ndarray, k: int) -> np.ndarray:
    """(H, W, C) -> (k H, k W, C) by repeating each pixel k x k times."""
    return np.repeat(np.repeat(img, k, axis=0), k, axis=1)


def _lines(text: str, width_px: float, fontsize: float) -> list[str]:
    chars = max(6, int(width_px / (0.56 * fontsize * PT)))
    return textwrap.wrap(str(text), chars) if text else []


def _band(n_lines: int, fontsize: float) -> int:
    return int(np.ceil(n_lines * 1.3 * fontsize * PT)) + (PAD if n_lines else 0)


def tile_grid(rows: Sequence[Sequence[Any]], row_labels: Sequence[str] | None = None,
              col_labels: Sequence[str] | None = None, cell_text: Sequence[Sequence[str]] | None = None,
              title: str = "", display_px: int = 128, label_px: int = 170, path=None, figure: str | None = None,
              **caption_fields: Any):
    """A grid of ``rows`` (lists of images of one size) enlarged ``k = max(1, display_px // tile)``
    times by nearest neighbour. Returns the figure; ``fig.s2i_grid`` holds the tile size, the scale
    and every tile's (x, y) pixel offset in the saved PNG. ``figure``: the registered figure name
    whose caption is written beside ``path`` (``caption_fields`` fill it)."""
    tiles = [[to_hwc_uint8(im) for im in row] for row in rows]
    th, tw = tiles[0][0].shape[:2]
    if any(t.shape[:2] != (th, tw) for row in tiles for t in row):
        raise ValueError("every tile of a grid must have the same size")
    k = max(1, display_px // max(th, tw))
    ch, cw = th * k, tw * k
    ncols = max(len(r) for r in tiles)
    left = label_px if row_labels else PAD
    title = f"{title}\n" if title else ""
    title += f"{th} x {tw} px images shown at {k}x (nearest neighbour, no smoothing)"
    title_lines = [ln for part in title.split("\n") for ln in (_lines(part, left + ncols * (cw + GAP), 9) or [""])]
    col_lines = [_lines(c, cw, 7) for c in (col_labels or [])]
    cell_lines = [[_lines(t, cw, 6) for t in row] for row in (cell_text or [[] for _ in tiles])]
    y = _band(len(title_lines), 9)
    col_y = y
    y += _band(max((len(c) for c in col_lines), default=0), 7)
    offsets, text_y = [], []
    for r, row in enumerate(tiles):
        offsets.append([(left + c * (cw + GAP), y) for c in range(len(row))])
        y += ch
        lines = max((len(c) for c in cell_lines[r]), default=0) if r < len(cell_lines) else 0
        text_y.append(y)
        y += _band(lines, 6) + GAP
    height, width = y - GAP + PAD, left + ncols * (cw + GAP) - GAP + PAD
    canvas = np.full((height, width, 3), 255, np.uint8)
    for row, offs in zip(tiles, offsets):
        for t, (x0, y0) in zip(row, offs):
            canvas[y0:y0 + ch, x0:x0 + cw] = nearest_scale(t, k)
    fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    fig.figimage(canvas, 0, 0, origin="upper", resize=False)

    def put(x, y, lines, size, **kw):
        fig.text(x / width, 1 - y / height, "\n".join(lines), fontsize=size, va="top", **kw)

    fig.suptitle("\n".join(title_lines), x=0.5, y=1 - PAD / 2 / height, va="top", fontsize=9)
    for c, lines in enumerate(col_lines):
        put(left + c * (cw + GAP) + cw / 2, col_y, lines, 7, ha="center")
    for r, label in enumerate(row_labels or []):
        put(PAD, offsets[r][0][1], _lines(label, left - 2 * PAD, 7), 7, ha="left")
    for r, row in enumerate(cell_lines):
        for c, lines in enumerate(row):
            put(offsets[r][c][0] + cw / 2, text_y[r] + 2, lines, 6, ha="center")
    fig.s2i_grid = {"tile_px": (th, tw), "scale": k, "offsets": offsets, "size": (height, width)}
    if figure is None:
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=DPI)
            fig.s2i_path = Path(path)
        return fig
    return save_figure(fig, path, figure, dpi=DPI, tight=False, **caption_fields)


@register_figure("03_{dataset}_fig3.png",
                 "Spoken descriptions of unseen {dataset} classes (the paper's Fig. 3): each row is one test "
                 "utterance, the real image it describes, then the one-stage generator's images from "
                 "{n_noise} noise draws; the caption is shown for the reader only, the model hears speech.")
def fig3_grid(dataset: str, texts: Sequence[str], reals, images, path=None):
    """``reals``: one image per utterance; ``images``: per utterance the (n, 3, S, S) noise draws."""
    n = len(images[0])
    rows = [[real, *list(imgs)] for real, imgs in zip(reals, images)]
    return tile_grid(rows, row_labels=[f'"{t}"' for t in texts],
                     col_labels=["real image"] + [f"noise {k + 1}" for k in range(n)],
                     title=f"{dataset}: one-stage images from speech of unseen classes", path=path,
                     figure="fig3_grid", dataset=dataset, n_noise=n)


@register_figure("03_{dataset}_matched_vs_shuffled.png",
                 "The same noise in each column on {dataset}: the top row hears its column's utterance, the "
                 "bottom row another column's (its text under the tile); what follows the speech moves "
                 "with it, what stays put belongs to the noise.")
def matched_shuffled_grid(dataset: str, texts: Sequence[str], matched, shuffled, order: Sequence[int], path=None):
    """Notebook 03's matched-vs-shuffled grid: ``order[c]`` is the utterance heard in column c's
    bottom tile."""
    k = len(texts)
    return tile_grid([list(matched), list(shuffled)],
                     row_labels=["matched speech", "shuffled speech (same noise as above)"],
                     col_labels=[f"{c + 1}: {t}" for c, t in enumerate(texts)],
                     cell_text=[[""] * k, [f"hears {int(o) + 1}: {texts[int(o)]}" for o in order]],
                     title=f"{dataset}: same noise per column, matched vs shuffled speech", path=path,
                     figure="matched_shuffled_grid", dataset=dataset)


@register_figure("04_{dataset}_methods.png",
                 "One test utterance of an unseen {dataset} class per column, through every method with the "
                 "same noise; the first row is the real image, the two-stage row prints what the ASR heard.")
def method_grid(dataset: str, examples: Sequence[dict], methods: Sequence[str], asr_methods: Sequence[str] = (),
                path=None):
    """Notebook 04's grid: ``examples`` from :func:`s2ilib.evaluation.main.example_rows` (``real``,
    ``text``, ``images`` per method, ``transcript`` for ASR methods)."""
    rows = [[ex["real"] for ex in examples]] + [[ex["images"][m] for ex in examples] for m in methods]
    cell = [[""] * len(examples)] + [[f"asr: {ex.get('transcript', '')}" if m in asr_methods else ""
                                      for ex in examples] for m in methods]
    return tile_grid(rows, row_labels=["real image", *[m.replace("_", " ") for m in methods]],
                     col_labels=[ex["text"] for ex in examples], cell_text=cell,
                     title=f"{dataset}: the same test utterance through every method", path=path,
                     figure="method_grid", dataset=dataset)


@register_figure("07_{dataset}_pair{k}.png",
                 "Interpolation on {dataset} (the paper's Fig. 5): f = a f1 + (1 - a) f2 from utterance 2 "
                 "(a = 0, left) to utterance 1 (a = 1, right), one row per method, one fixed noise.")
def interpolation_grid(dataset: str, result: dict[str, Any], k: int, path=None):
    """Pair ``k`` of :func:`s2ilib.study.interpolation.interpolation_study`'s result."""
    a, pair = result["alphas"], result["pairs"][k]
    rows = [list(r[k]) for r in result["images"].values()]
    return tile_grid(rows, row_labels=[m.replace("_", " ") for m in result["images"]],
                     col_labels=[f"a = {x:.3g}" for x in a],
                     title=f"{dataset}, pair {k}. a = 0 (left): {pair['text_j']}\na = 1 (right): {pair['text_i']}",
                     path=path, figure="interpolation_grid", dataset=dataset, k=k)
