"""Attribute vocabulary of the embedded datasets ``synth-birds`` / ``synth-flowers``: attributes, values, colours.

Every value is a plain lowercase string (colour names, ``small``/``large``, number words...), so
attributes serialise to JSON as they are. Species live in :mod:`s2ilib.data.species`, captions in
:mod:`s2ilib.data.captions`.
"""
from __future__ import annotations

from typing import Any

import numpy as np

RGB = tuple[int, int, int]

# Base RGB of each named colour. Chosen far apart in RGB so that a shade jittered within its
# name (and lit by the renderer) is still nearest its own base (see :func:`nearest_colour`).
COLOURS: dict[str, RGB] = {
    "red": (205, 30, 35),
    "orange": (245, 135, 20),
    "yellow": (245, 220, 45),
    "green": (45, 155, 55),
    "blue": (35, 85, 215),
    "purple": (125, 45, 165),
    "pink": (245, 140, 190),
    "brown": (115, 70, 35),
    "black": (25, 25, 28),
    "white": (242, 242, 238),
    "grey": (130, 130, 132),
}

# Words that may stand for a colour in a caption (the reverse map is COLOUR_WORDS).
COLOUR_SYNONYMS: dict[str, list[str]] = {c: [c] for c in COLOURS}
COLOUR_SYNONYMS["grey"] = ["grey", "gray"]
COLOUR_WORDS: dict[str, str] = {w: c for c, ws in COLOUR_SYNONYMS.items() for w in ws}

NUMBER_WORDS = ["three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]

BEAK_COLOURS = ["black", "grey", "yellow", "orange", "red", "brown", "white", "pink"]
PETAL_COLOURS = ["red", "orange", "yellow", "blue", "purple", "pink", "white"]
CENTRE_COLOURS = ["yellow", "orange", "brown", "black", "green", "white", "red", "purple"]

VOCAB_BIRDS: dict[str, list[str]] = {
    "head": list(COLOURS),
    "breast": list(COLOURS),
    "wings": list(COLOURS),
    "tail": list(COLOURS),
    "beak": BEAK_COLOURS,
    "size": ["small", "large"],
    "length": ["short", "long"],  # beak length
}
VOCAB_FLOWERS: dict[str, list[str]] = {
    "petal": PETAL_COLOURS,
    "centre": CENTRE_COLOURS,
    "count": NUMBER_WORDS,
    "shape": ["pointed", "rounded"],
}
COLOUR_ATTRIBUTES = {"birds": ["head", "breast", "wings", "tail", "beak"], "flowers": ["petal", "centre"]}

# Other words a caption may use for an attribute value (used by tests and attribute readers).
VALUE_WORDS: dict[str, dict[str, str]] = {
    "size": {"small": "small", "tiny": "small", "little": "small", "large": "large", "big": "large"},
    "length": {"short": "short", "stubby": "short", "long": "long"},
    "shape": {"pointed": "pointed", "pointy": "pointed", "point": "pointed", "rounded": "rounded", "round": "rounded"},
    "count": {w: w for w in NUMBER_WORDS},
}


def vocabulary(kind: str) -> dict[str, list[str]]:
    """``{attribute: [values...]}`` of ``kind`` ("birds" or "flowers"); a fresh copy."""
    if kind == "birds":
        return {k: list(v) for k, v in VOCAB_BIRDS.items()}
    if kind == "flowers":
        return {k: list(v) for k, v in VOCAB_FLOWERS.items()}
    raise ValueError(f"unknown dataset kind {kind!r}; expected 'birds' or 'flowers'")


def attribute_names(kind: str) -> list[str]:
    """Attribute names of ``kind`` in a fixed order (the heads of an attribute reader)."""
    return list(vocabulary(kind))


# ----------------------------------------------------------------------------- colours

def shade_colour(name: str, rng: np.random.Generator) -> RGB:
    """A random shade of the named colour: brightness x[0.9, 1.08] and +-10 per channel.

    The jitter is small enough that :func:`nearest_colour` still returns ``name``.
    """
    base = np.array(COLOURS[name], dtype=np.float64)
    rgb = base * rng.uniform(0.9, 1.08) + rng.uniform(-10, 10, size=3)
    return tuple(int(v) for v in np.clip(np.round(rgb), 0, 255))


def nearest_colour(rgb: Any, names: list[str] | None = None) -> str:
    """Name of the vocabulary colour nearest (Euclidean RGB) to ``rgb`` (3 numbers, 0-255)."""
    names = names or list(COLOURS)
    x = np.asarray(rgb, dtype=np.float64)
    dists = [float(np.sum((x - np.array(COLOURS[n])) ** 2)) for n in names]
    return names[int(np.argmin(dists))]


def describe_colour(name: str, rng: np.random.Generator) -> str:
    """A word for a colour in a caption (``grey`` is sometimes ``gray``)."""
    return str(rng.choice(COLOUR_SYNONYMS[name]))

