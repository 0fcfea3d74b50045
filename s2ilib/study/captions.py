"""The figure registry: every report figure is one decorated function with its caption.

A figure function is declared once with :func:`register_figure` (its file-name pattern and a one-
or two-sentence caption template); it builds the figure, then :func:`save_figure` writes the PNG
and its caption into ``captions.json`` beside it (one file per figures folder, file name ->
caption), so the executed notebook (:func:`show`) and the HTML page (:func:`figure_caption`) print
the same sentence.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CAPTIONS_FILE = "captions.json"


@dataclass(frozen=True)
class FigureSpec:
    """One registered figure: ``pattern`` names its file (``04_{metric}.png``), ``caption`` is a
    ``str.format`` template filled by the figure function with its own numbers."""
    name: str
    pattern: str
    caption: str
    fn: Callable[..., Any]


FIGURES: dict[str, FigureSpec] = {}


def register_figure(pattern: str, caption: str):
    """Decorator: declare a figure function with its file pattern and caption template."""
    def deco(fn):
        if fn.__name__ in FIGURES:
            raise ValueError(f"figure {fn.__name__!r} registered twice")
        FIGURES[fn.__name__] = FigureSpec(fn.__name__, pattern, caption, fn)
        return fn
    return deco


def caption_text(name: str, **fields: Any) -> str:
    """The registered caption of figure ``name`` filled with ``fields``."""
    return " ".join(FIGURES[name].caption.format(**fields).split())


def _write_caption(path: Path, text: str) -> None:
    """Add ``path``'s caption to ``captions.json`` in its folder (atomic replace)."""
    file = path.parent / CAPTIONS_FILE
    data = read_captions(path.parent)
    data[path.name] = text
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(dict(sorted(data.items())), f, indent=1, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, file)


def read_captions(folder: str | Path) -> dict[str, str]:
    """``{file name: caption}`` of a figures folder (empty when it has none)."""
    file = Path(folder) / CAPTIONS_FILE
    return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}


def figure_caption(path: str | Path) -> str | None:
    """The caption written beside figure ``path`` (``captions.json`` of its folder), or None."""
    path = Path(path)
    return read_captions(path.parent).get(path.name)


def save_figure(fig, path: str | Path | None, name: str, dpi: int = 150, tight: bool = True, **fields: Any):
    """Attach the caption of registered figure ``name`` to ``fig`` (``fig.s2i_caption``) and, when
    ``path`` is given, save the PNG and its caption beside it. Returns ``fig``."""
    fig.s2i_caption = caption_text(name, **fields)
    fig.s2i_figure = name
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, **({"bbox_inches": "tight"} if tight else {}))
        fig.s2i_path = path
        _write_caption(path, fig.s2i_caption)
    return fig


def show(fig) -> None:
    """In a notebook: the figure as saved (its PNG when it has one, so a grid keeps its pixel
    scale), then its caption in italics; the figure is closed."""
    import matplotlib.pyplot as plt
    from IPython.display import Image, Markdown, display

    path = getattr(fig, "s2i_path", None)
    if path is not None and Path(path).is_file():
        display(Image(filename=str(path)))
    else:
        display(fig)
    plt.close(fig)
    caption = getattr(fig, "s2i_caption", None)
    if caption:
        display(Markdown(f"*{caption}*"))
