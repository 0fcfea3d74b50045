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


def _to_hwc(img) -> np.ndarray:
    arr = np.asarray(img)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)
    return arr


def image_grid(images: Sequence, captions: Sequence[str] | None = None, ncols: int = 8,
               size: float = 1.6, wrap: int = 28, title: str | None = None,
               path: str | Path | None = None) -> plt.Figure:
    """Images (PIL, HWC or CHW uint8 arrays) in a grid, each with an optional caption below."""
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = max(1, int(np.ceil(n / ncols)))
    text_h = 0.9 if captions else 0.0
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * (size + text_h)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, img in enumerate(images):
        ax = axes.flat[i]
        ax.imshow(_to_hwc(img))
        if captions:
            ax.set_title("\n".join(textwrap.wrap(captions[i], wrap)), fontsize=6, y=-0.02, va="top")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path)


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


def bar_table(df, metric: str, path: str | Path | None = None, title: str | None = None) -> plt.Figure:
    """Grouped bars of ``metric`` from a long table with columns dataset, method, condition, value."""
    import seaborn as sns

    sub = df[df["metric"] == metric]
    g = sns.catplot(data=sub, x="method", y="value", hue="condition", col="dataset", kind="bar",
                    height=3, aspect=1.2, sharey=False)
    g.set_axis_labels("", metric)
    if title:
        g.fig.suptitle(title, y=1.03)
    return save(g.fig, path)
