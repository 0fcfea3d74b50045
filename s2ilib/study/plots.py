"""Figures for the notebooks and reports (matplotlib / seaborn; headless-safe)."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt  # the runner sets MPLBACKEND=agg for headless runs
import numpy as np


def save(fig: plt.Figure, path: str | Path | None) -> plt.Figure:
    """Save ``fig`` as PNG (150 dpi) when a path is given; return it for display."""
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150, bbox_inches="tight")
    return fig


def image_grid(images: Sequence, captions: Sequence[str] | None = None, ncols: int = 8,
               size: float = 1.6, wrap: int = 28, title: str | None = None,
               path: str | Path | None = None) -> plt.Figure:
    """Images (PIL, HWC or CHW uint8 arrays) in rows of ``ncols`` at an integer nearest-neighbour
    scale (:func:`s2ilib.study.grids.tile_grid`), each with an optional caption below.
    ``size`` (inches at 100 dpi) sets the displayed tile size; ``wrap`` is kept for callers (the
    caption width follows the tile)."""
    from s2ilib.study.grids import tile_grid

    ncols = max(1, min(ncols, len(images)))
    rows = [list(images[i:i + ncols]) for i in range(0, len(images), ncols)]
    text = [list(captions[i:i + ncols]) for i in range(0, len(images), ncols)] if captions else None
    return tile_grid(rows, cell_text=text, title=title or "", display_px=int(size * 100), path=path)


def spectrograms(feats: Sequence[np.ndarray], titles: Sequence[str], path: str | Path | None = None) -> plt.Figure:
    """Log-mel spectrograms (40, T) stacked vertically, time in seconds (10 ms frames)."""
    fig, axes = plt.subplots(len(feats), 1, figsize=(8, 1.8 * len(feats)), squeeze=False)
    for ax, f, t in zip(axes[:, 0], feats, titles):
        ax.imshow(f, origin="lower", aspect="auto", extent=(0, f.shape[1] / 100, 0, f.shape[0]), cmap="magma")
        ax.set_title(textwrap.shorten(t, 110), fontsize=8)
        ax.set_ylabel("mel band")
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    return save(fig, path)


def loss_curves(logs: dict[str, "object"], keys: Sequence[str], path: str | Path | None = None,
                smooth: int = 20, title: str | None = None) -> plt.Figure:
    """One panel per key; each log is a DataFrame with a ``step`` column (e.g. from log.jsonl)."""
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for name, df in logs.items():
            if key in df:
                y = df[key].rolling(max(1, min(smooth, len(df) // 5 or 1)), min_periods=1).mean()
                ax.plot(df["step"], y, label=name)
        ax.set_title(key)
        ax.set_xlabel("step")
    axes[0, 0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path)
