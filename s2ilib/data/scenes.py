"""Scenes of the procedural renderer: resolution-independent descriptions, shape primitives,
shading and background sampling.

All geometry is in unit image coordinates ([0, 1], x to the right, y down); colours are RGB.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from s2ilib.data.vocab import RGB


SUPERSAMPLE = 4  # shapes are drawn at 4x the output size, then LANCZOS-downsampled
BG_RES = 64  # the blurred background is computed at this size for every output size
MAX_SIZE = 256

Pts = np.ndarray  # (N, 2) unit image coordinates


# ----------------------------------------------------------------------------- scenes

@dataclass(frozen=True)
class Background:
    """Soft background: vertical gradient plus blurred blobs (foliage) and strokes (far twigs)."""

    top: RGB
    bottom: RGB
    blobs: tuple[tuple[float, float, float, float, RGB], ...]  # (x, y, rx, ry, colour)
    strokes: tuple[tuple[float, float, float, float, float, RGB], ...]  # (x0, y0, x1, y1, width, colour)
    blur: float  # Gaussian blur radius, fraction of the image size


@dataclass(frozen=True)
class BirdScene:
    """A bird perched on a branch. Local bird units are multiplied by ``scale`` (image units)."""

    background: Background
    head: RGB
    breast: RGB
    wings: RGB
    tail: RGB
    beak: RGB
    legs: RGB
    eye_ring: RGB
    bark: RGB
    leaf: RGB
    x: float  # body centre, unit coordinates
    y: float
    scale: float  # image units per local bird unit (body is ~0.84 local units long)
    facing: int  # +1 faces right, -1 faces left
    tilt: float  # degrees, positive turns clockwise
    beak_length: float  # local units beyond the head
    beak_height: float
    tail_angle: float  # degrees below the horizontal, pointing backwards
    head_dy: float  # local units, head raised (-) or lowered (+)
    light: float  # direction the light comes from, degrees (0 = from above)
    branch_angle: float  # degrees
    branch_width: float  # unit
    twigs: tuple[tuple[float, float, float], ...]  # (x along branch, angle deg, length) side twigs with leaves
    kind: str = "birds"


@dataclass(frozen=True)
class FlowerScene:
    """One flower head on a stem with leaves. Petal geometry is in units of ``radius``."""

    background: Background
    petal: RGB
    centre: RGB
    stem: RGB
    leaf: RGB
    count: int
    pointed: bool
    x: float  # flower head centre, unit coordinates
    y: float
    radius: float  # petal length, unit
    centre_ratio: float  # centre disc radius / radius
    petal_width: float  # petal half-width / radius
    rotation: float  # degrees of the first petal
    squash: float  # vertical foreshortening of the head (1 = seen face-on)
    tilt: float  # degrees
    petal_jitter: tuple[tuple[float, float], ...]  # per petal (length factor, angle offset deg)
    stem_base: float  # x where the stem leaves the bottom edge
    stem_bend: float  # x offset of the stem's control point
    leaves: tuple[tuple[float, float, float], ...]  # (t along stem, side +-1 * angle deg, length)
    dots: tuple[tuple[float, float], ...]  # seed dots on the centre: (angle deg, radius fraction)
    light: float
    kind: str = "flowers"


Scene = BirdScene | FlowerScene


# ----------------------------------------------------------------------------- geometry helpers

def _rot(pts: Pts, deg: float) -> Pts:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return pts @ np.array([[c, s], [-s, c]])  # row vectors: (x, y) -> (x c - y s, x s + y c)


def _ellipse(cx: float, cy: float, rx: float, ry: float, deg: float = 0.0, n: int = 48) -> Pts:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    pts = np.stack([rx * np.cos(t), ry * np.sin(t)], axis=1)
    return _rot(pts, deg) + np.array([cx, cy])


def _smooth(pts: Pts, iters: int = 3, closed: bool = True) -> Pts:
    """Chaikin corner cutting: a rounded outline through a few control points."""
    p = np.asarray(pts, dtype=np.float64)
    for _ in range(iters):
        q = np.roll(p, -1, axis=0) if closed else p[1:]
        a = p if closed else p[:-1]
        new = np.empty((2 * len(a), 2))
        new[0::2] = 0.75 * a + 0.25 * q
        new[1::2] = 0.25 * a + 0.75 * q
        p = new if closed else np.vstack([pts[:1], new, pts[-1:]])
    return p


def _scale_rgb(rgb: RGB, f: float) -> RGB:
    return tuple(int(v) for v in np.clip(np.array(rgb) * f, 0, 255))


def _detail_colour(rgb: RGB, amount: float = 0.35) -> RGB:
    """A line colour that shows on ``rgb``: darker on light colours, lighter on dark ones."""
    lum = 0.3 * rgb[0] + 0.59 * rgb[1] + 0.11 * rgb[2]
    if lum > 70:
        return _scale_rgb(rgb, 1 - amount)
    return tuple(int(min(255, v + 70)) for v in rgb)


# ----------------------------------------------------------------------------- painter

@dataclass
class Shape:
    """A filled polygon or a polyline, in unit coordinates, tagged with the part it belongs to."""

    part: str
    pts: Pts
    rgb: RGB
    width: float = 0.0  # > 0: a polyline of this width (unit); 0: a filled polygon
    shade: tuple | None = None  # ("radial", cx, cy, r, lo, hi) or ("linear", x0, y0, x1, y1, lo, hi)



def _radial(pts: Pts, light: float, lo: float = 0.8, hi: float = 1.1) -> tuple:
    """Spherical-looking shading of a blob: highlight shifted towards the light."""
    c = pts.mean(0)
    r = float(np.max(np.linalg.norm(pts - c, axis=1)))
    lx, ly = math.sin(math.radians(light)), -math.cos(math.radians(light))
    return ("radial", c[0] + 0.35 * r * lx, c[1] + 0.35 * r * ly, 1.25 * r, lo, hi)


def _linear(a: Pts, b: Pts, lo: float, hi: float) -> tuple:
    return ("linear", float(a[0]), float(a[1]), float(b[0]), float(b[1]), lo, hi)


# ----------------------------------------------------------------------------- background

def _sample_background(kind: str, rng: np.random.Generator) -> Background:
    """Sky or foliage gradient with blurred leaves and far twigs; muted so the subject stands out."""
    palettes = [  # (top, bottom): day sky, pale overcast, warm evening, deep foliage, misty green
        ((120, 170, 225), (205, 225, 240)),
        ((185, 195, 205), (225, 228, 230)),
        ((230, 190, 150), (245, 225, 200)),
        ((60, 95, 60), (120, 150, 95)),
        ((150, 185, 160), (210, 225, 200)),
    ]
    top, bottom = palettes[int(rng.integers(len(palettes)))]
    jit = lambda c: tuple(int(v) for v in np.clip(np.array(c) + rng.uniform(-15, 15, 3), 0, 255))  # noqa: E731
    greens = [(55, 100, 50), (85, 130, 60), (40, 75, 45), (110, 140, 80), (70, 90, 55)]
    blobs = []
    for _ in range(int(rng.integers(3, 9))):
        edge = rng.random() < 0.7  # foliage mostly along the edges and bottom
        x = float(rng.choice([rng.uniform(-0.1, 0.25), rng.uniform(0.75, 1.1)])) if edge else float(rng.uniform(0, 1))
        y = float(rng.uniform(0.0, 1.1)) if kind == "birds" else float(rng.uniform(0.4, 1.1))
        r = float(rng.uniform(0.08, 0.22))
        blobs.append((x, y, r, r * float(rng.uniform(0.6, 1.0)), jit(greens[int(rng.integers(len(greens)))])))
    strokes = []
    for _ in range(int(rng.integers(0, 4))):
        x0, y0 = float(rng.uniform(-0.2, 1.2)), float(rng.uniform(0, 1))
        a = rng.uniform(0, np.pi)
        ln = float(rng.uniform(0.3, 0.8))
        strokes.append((x0, y0, x0 + ln * math.cos(a), y0 + ln * math.sin(a), float(rng.uniform(0.01, 0.03)),
                        jit((90, 75, 60) if kind == "birds" else (70, 110, 55))))
    return Background(jit(top), jit(bottom), tuple(blobs), tuple(strokes), float(rng.uniform(0.025, 0.05)))

