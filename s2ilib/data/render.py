"""Procedural pictures of birds on branches and of flowers, drawn with PIL.

A *scene* (:class:`BirdScene`, :class:`FlowerScene`) is a resolution-independent description:
colours in RGB and all geometry in unit image coordinates ([0, 1], x to the right, y down).
:func:`render_image` draws a scene at any size: shapes are drawn at ``SUPERSAMPLE`` times the
size and LANCZOS-downsampled (anti-aliasing); the blurred background is always computed at
``BG_RES`` and resized, so one scene gives the same picture at every resolution.

Scenes are sampled from attributes (:func:`sample_scene`) with variation in pose (facing
left/right, tilt), scale, position, lighting and background; rendering itself is deterministic.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from s2ilib.data.vocab import COLOURS, NUMBER_WORDS, RGB, shade_colour

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


class _Painter:
    """Draws shapes onto a supersampled PIL canvas; shading is computed per shape on its bbox crop."""

    def __init__(self, canvas: Image.Image):
        self.canvas = canvas
        self.s = canvas.size[0]
        self.draw = ImageDraw.Draw(canvas)

    def _shade(self, spec: tuple, x0: int, y0: int, w: int, h: int) -> np.ndarray:
        ys, xs = np.mgrid[y0:y0 + h, x0:x0 + w].astype(np.float32) / self.s
        if spec[0] == "radial":
            _, cx, cy, r, lo, hi = spec
            d2 = ((xs - cx) ** 2 + (ys - cy) ** 2) / (r * r)
            return np.clip(hi - (hi - lo) * d2, lo, hi)
        _, ax, ay, bx, by, lo, hi = spec
        dx, dy = bx - ax, by - ay
        t = ((xs - ax) * dx + (ys - ay) * dy) / max(dx * dx + dy * dy, 1e-9)
        return lo + (hi - lo) * np.clip(t, 0, 1)

    def paint(self, shape: Shape) -> None:
        px = shape.pts * self.s
        if shape.width > 0:
            w = max(1, int(round(shape.width * self.s)))
            self.draw.line([tuple(p) for p in px], fill=shape.rgb, width=w, joint="curve")
            r = w / 2  # round caps
            for p in (px[0], px[-1]):
                self.draw.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], fill=shape.rgb)
            return
        if shape.shade is None:
            self.draw.polygon([tuple(p) for p in px], fill=shape.rgb)
            return
        x0, y0 = np.floor(px.min(0)).astype(int)
        x1, y1 = np.ceil(px.max(0)).astype(int) + 1
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, self.s), min(y1, self.s)
        if x1 <= x0 or y1 <= y0:
            return
        mask = Image.new("L", (x1 - x0, y1 - y0), 0)
        ImageDraw.Draw(mask).polygon([(p[0] - x0, p[1] - y0) for p in px], fill=255)
        f = self._shade(shape.shade, x0, y0, x1 - x0, y1 - y0)
        col = np.clip(np.array(shape.rgb, np.float32)[None, None, :] * f[..., None], 0, 255).astype(np.uint8)
        self.canvas.paste(Image.fromarray(col, "RGB"), (x0, y0), mask)


def _radial(pts: Pts, light: float, lo: float = 0.8, hi: float = 1.1) -> tuple:
    """Spherical-looking shading of a blob: highlight shifted towards the light."""
    c = pts.mean(0)
    r = float(np.max(np.linalg.norm(pts - c, axis=1)))
    lx, ly = math.sin(math.radians(light)), -math.cos(math.radians(light))
    return ("radial", c[0] + 0.35 * r * lx, c[1] + 0.35 * r * ly, 1.25 * r, lo, hi)


def _linear(a: Pts, b: Pts, lo: float, hi: float) -> tuple:
    return ("linear", float(a[0]), float(a[1]), float(b[0]), float(b[1]), lo, hi)


# ----------------------------------------------------------------------------- background

def _render_background(bg: Background, size: int) -> Image.Image:
    """(size, size) RGB: gradient + blobs + strokes blurred at BG_RES, resized (same at every size)."""
    t = np.linspace(0, 1, BG_RES, dtype=np.float32)[:, None, None]
    grad = (1 - t) * np.array(bg.top, np.float32) + t * np.array(bg.bottom, np.float32)
    img = Image.fromarray(np.broadcast_to(grad, (BG_RES, BG_RES, 3)).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(img)
    for x, y, rx, ry, rgb in bg.blobs:
        d.ellipse([(x - rx) * BG_RES, (y - ry) * BG_RES, (x + rx) * BG_RES, (y + ry) * BG_RES], fill=rgb)
    for x0, y0, x1, y1, w, rgb in bg.strokes:
        d.line([(x0 * BG_RES, y0 * BG_RES), (x1 * BG_RES, y1 * BG_RES)], fill=rgb,
               width=max(1, int(round(w * BG_RES))))
    img = img.filter(ImageFilter.GaussianBlur(bg.blur * BG_RES))
    return img.resize((size, size), Image.BICUBIC)


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


# ----------------------------------------------------------------------------- birds

# Anchor points (local bird units, facing right) well inside each part: used to read part colours.
_BIRD_ANCHORS = {"head": (0.31, -0.40), "breast": (0.22, 0.14), "wings": (-0.22, -0.04),
                 "tail": (-0.66, 0.34), "beak": None}
_SMALL_SCALE, _LARGE_SCALE = (0.25, 0.28), (0.34, 0.38)


def _bird_to_image(sc: BirdScene):
    """Local (facing right) -> unit image coordinates: mirror, rotate by tilt, scale, translate."""
    def xf(pts: Any) -> Pts:
        p = np.atleast_2d(np.asarray(pts, dtype=np.float64)).copy()
        p[:, 0] *= sc.facing
        return _rot(p, sc.tilt * sc.facing) * sc.scale + np.array([sc.x, sc.y])
    return xf


def _branch_y(sc: BirdScene, x: float, feet_x: float, feet_y: float) -> float:
    return feet_y + (x - feet_x) * math.tan(math.radians(sc.branch_angle))


def _branch_shapes(sc: BirdScene, by) -> list[Shape]:
    """The perch: a tapered, shaded branch with bark lines, and side twigs with leaves."""
    bw, rad = sc.branch_width, math.radians(sc.branch_angle)
    xs = np.linspace(-0.1, 1.1, 13)
    centre = np.stack([xs, [by(x) for x in xs]], 1)
    nrm = np.array([-math.sin(rad), math.cos(rad)])
    taper = np.linspace(1.15, 0.85, len(xs))[:, None] * (bw / 2)
    if sc.facing < 0:
        taper = taper[::-1]
    outline = np.vstack([centre - nrm * taper, (centre + nrm * taper)[::-1]])
    top, bottom = centre[6] - nrm * bw / 2, centre[6] + nrm * bw / 2
    shapes = [Shape("branch", outline, sc.bark, shade=_linear(top, bottom, 1.15, 0.7))]
    for k in (-0.2, 0.15):  # bark texture
        shapes.append(Shape("branch", centre + nrm * bw * k, _detail_colour(sc.bark, 0.3), width=bw * 0.08))
    for tx, ang, ln in sc.twigs:  # sampled behind the bird, so leaves never hide it
        base = np.array([tx, by(tx)])
        d = np.array([math.cos(math.radians(ang)), math.sin(math.radians(ang))])
        twig = np.stack([base, base + d * ln * 0.5 + nrm * 0.02, base + d * ln])
        shapes.append(Shape("branch", twig, sc.bark, width=bw * 0.35))
        for j, (f, side) in enumerate([(0.45, 1), (0.7, -1), (1.0, 0)]):
            deg = math.degrees(math.atan2(d[1], d[0])) + side * 45
            shapes += _leaf(base + d * ln * f, deg, 0.09 + 0.02 * j, _scale_rgb(sc.leaf, 0.9 + 0.1 * j), "leaf")
    return shapes


def _tail_shapes(sc: BirdScene, xf) -> list[Shape]:
    """Three overlapping outlined feathers fanned backwards and down."""
    shapes, base = [], np.array([-0.30, 0.12])
    for spread in (-9, 9, 0):
        a = math.radians(180 - sc.tail_angle + spread)
        d = np.array([math.cos(a), math.sin(a)])
        f = xf(_ellipse(*(base + d * 0.32), 0.34, 0.075, math.degrees(a)))
        shapes.append(Shape("tail", f, sc.tail, shade=_linear(xf(base)[0], xf(base + d * 0.66)[0], 0.82, 1.08)))
        shapes.append(Shape("tail", np.vstack([f, f[:1]]), _detail_colour(sc.tail, 0.3), width=0.02 * sc.scale))
    return shapes


def _leg_shapes(sc: BirdScene, hips: Pts, by) -> list[Shape]:
    """Two legs from the hips down to the branch, three toes each gripping it."""
    shapes = []
    for hip in hips:
        foot = np.array([hip[0], by(hip[0]) - 0.45 * sc.branch_width])
        shapes.append(Shape("legs", np.stack([hip, foot]), sc.legs, width=0.06 * sc.scale))
        for dx in (0.035, 0.05, -0.03):
            toe = foot + np.array([dx * sc.facing * sc.scale / 0.3, 0.012])
            shapes.append(Shape("legs", np.stack([foot, toe]), sc.legs, width=0.033 * sc.scale))
    return shapes


def _body_head_shapes(sc: BirdScene, xf) -> list[Shape]:
    """Body in the breast colour (the wing covers the back; front and belly stay visible), neck, head."""
    body = xf(_ellipse(0.0, 0.0, 0.44, 0.31, -22))
    dy = sc.head_dy
    neck = xf(_smooth(np.array([(0.12, -0.15), (0.30, -0.45 + dy), (0.52, -0.30 + dy), (0.38, 0.0)]), 2))
    head = xf(_ellipse(0.40, -0.36 + dy, 0.21, 0.20))
    return [Shape("breast", body, sc.breast, shade=_radial(body, sc.light)),
            Shape("head", neck, sc.head, shade=_radial(neck, sc.light)),
            Shape("head", head, sc.head, shade=_radial(head, sc.light, 0.82, 1.12))]


def _wing_shapes(sc: BirdScene, xf) -> list[Shape]:
    """Folded wing with feather detail: a covert bar and four primaries towards the tip."""
    ctrl = np.array([(0.26, -0.20), (0.05, -0.31), (-0.25, -0.25), (-0.52, -0.06), (-0.80, 0.16),
                     (-0.48, 0.14), (-0.15, 0.17), (0.12, 0.10), (0.26, -0.04)])
    wing = xf(_smooth(ctrl, 3))
    line_col, lw = _detail_colour(sc.wings), 0.037 * sc.scale
    bar = xf(_smooth(np.array([(0.2, -0.16), (0.02, -0.05), (-0.18, 0.02), (-0.40, 0.04)]), 2, False))
    shapes = [Shape("wings", wing, sc.wings, shade=_radial(wing, sc.light, 0.8, 1.08)),
              Shape("wings", bar, line_col, width=lw)]
    for k in range(4):
        s = np.array([-0.08 - 0.09 * k, 0.11 - 0.045 * k])
        e = np.array([-0.62 + 0.03 * k, 0.13 - 0.03 * k])
        shapes.append(Shape("wings", xf(np.stack([s, (s + e) / 2 + np.array([0, 0.02]), e])), line_col, width=lw * 0.8))
    return shapes


def _eye_beak_shapes(sc: BirdScene, xf) -> list[Shape]:
    """Eye (light ring, pupil, highlight) and a two-mandible beak; long beaks are thinner."""
    head_y = -0.36 + sc.head_dy
    eye = (0.47, head_y - 0.05)
    bx, by, h, ln = 0.55, head_y + 0.04, sc.beak_height, sc.beak_length
    tip = (bx + 0.06 + ln, by + 0.02)
    beak = xf([(bx, by - h / 2), (bx + 0.25 * ln + 0.05, by - h / 2.2), tip,
               (bx + 0.25 * ln + 0.05, by + h / 2.4), (bx, by + h / 2)])
    top, bottom = xf([(bx, by - h / 2), (bx, by + h / 2)])
    return [Shape("eye", xf(_ellipse(*eye, 0.065, 0.065, n=24)), sc.eye_ring),
            Shape("eye", xf(_ellipse(*eye, 0.045, 0.045, n=24)), (15, 12, 10)),
            Shape("eye", xf(_ellipse(eye[0] + 0.013, eye[1] - 0.013, 0.014, 0.014, n=12)), (250, 250, 250)),
            Shape("beak", beak, sc.beak, shade=_linear(top, bottom, 1.08, 0.9)),
            Shape("beak", xf([(bx + 0.02, by + 0.01), tip]), _detail_colour(sc.beak, 0.45), width=0.027 * sc.scale)]


def _bird_shapes(sc: BirdScene) -> list[Shape]:
    """Every shape of a bird scene in painting order (branch, tail, legs, body, head, wing, eye, beak)."""
    xf = _bird_to_image(sc)
    hips = xf([(0.08, 0.22), (-0.08, 0.24)])
    feet = hips.mean(0) + np.array([0.0, 0.2 * sc.scale])  # where the legs meet the branch

    def by(x: float) -> float:  # y of the branch centre line at x
        return _branch_y(sc, x, feet[0], feet[1] + 0.45 * sc.branch_width)

    return (_branch_shapes(sc, by) + _tail_shapes(sc, xf) + _leg_shapes(sc, hips, by)
            + _body_head_shapes(sc, xf) + _wing_shapes(sc, xf) + _eye_beak_shapes(sc, xf))


def _leaf(base: np.ndarray, deg: float, length: float, rgb: RGB, part: str) -> list[Shape]:
    """A pointed leaf from ``base`` in direction ``deg`` (unit coordinates), with a midrib."""
    ctrl = np.array([(0, 0), (0.35, -0.22), (0.75, -0.12), (1.0, 0), (0.75, 0.12), (0.35, 0.22)]) * length
    outline = _rot(_smooth(ctrl, 2), deg) + base
    rib = _rot(np.array([(0.05, 0), (0.9, 0)]) * length, deg) + base
    return [Shape(part, outline, rgb, shade=_linear(rib[0], rib[1], 0.85, 1.1)),
            Shape(part, rib, _detail_colour(rgb, 0.3), width=length * 0.04)]


def sample_bird_scene(attrs: dict[str, str], rng: np.random.Generator) -> BirdScene:
    """A bird scene showing ``attrs`` (head, breast, wings, tail, beak colours; size; beak length)."""
    facing = int(rng.choice([-1, 1]))
    scale = float(rng.uniform(*(_SMALL_SCALE if attrs["size"] == "small" else _LARGE_SCALE)))
    long_beak = attrs["length"] == "long"
    x = 0.5 - facing * 0.04 + float(rng.uniform(-0.06, 0.06))
    y = 0.46 + float(rng.uniform(-0.05, 0.05)) + (0.04 if attrs["size"] == "small" else 0.0)
    # Side twigs on the side behind the bird so leaves never hide it.
    twigs = []
    for _ in range(int(rng.integers(0, 3))):
        tx = float(np.clip(x - facing * rng.uniform(0.32, 0.5), 0.02, 0.98))
        twigs.append((tx, float(rng.uniform(-160, -20)), float(rng.uniform(0.12, 0.22))))
    legs = [(60, 50, 45), (110, 90, 75), (200, 150, 130), (40, 40, 40)][int(rng.integers(4))]
    bark = [(105, 80, 60), (90, 75, 65), (125, 100, 75), (80, 65, 50)][int(rng.integers(4))]
    leaf = [(60, 140, 50), (90, 160, 60), (40, 110, 55)][int(rng.integers(3))]
    eye_ring = (235, 235, 225) if attrs["head"] not in ("white", "yellow") else (40, 40, 40)
    return BirdScene(
        background=_sample_background("birds", rng),
        head=shade_colour(attrs["head"], rng), breast=shade_colour(attrs["breast"], rng),
        wings=shade_colour(attrs["wings"], rng), tail=shade_colour(attrs["tail"], rng),
        beak=shade_colour(attrs["beak"], rng), legs=legs, eye_ring=eye_ring, bark=bark, leaf=leaf,
        x=x, y=y, scale=scale, facing=facing, tilt=float(rng.uniform(-12, 12)),
        beak_length=float(rng.uniform(0.3, 0.38) if long_beak else rng.uniform(0.1, 0.14)),
        beak_height=float(rng.uniform(0.11, 0.13) if long_beak else rng.uniform(0.15, 0.18)),
        tail_angle=float(rng.uniform(20, 45)), head_dy=float(rng.uniform(-0.05, 0.04)),
        light=float(rng.uniform(-50, 50)), branch_angle=float(rng.uniform(-12, 12)),
        branch_width=float(rng.uniform(0.035, 0.055)), twigs=tuple(twigs),
    )


# ----------------------------------------------------------------------------- flowers

def _petal_outline(pointed: bool, width: float, length: float, n: int = 24) -> Pts:
    """Petal along +x from the centre (x in [0.12, length]), half-width profile by shape."""
    t = np.linspace(0, 1, n)
    if pointed:  # lanceolate: widest at 40 %, straight taper to a sharp tip
        h = np.where(t < 0.4, (t / 0.4) ** 0.6, ((1 - t) / 0.6) ** 0.9)
    else:  # spatulate: widens to a round end
        h = np.where(t < 0.62, 0.45 + 0.55 * (t / 0.62), np.sqrt(np.clip(1 - ((t - 0.62) / 0.38) ** 2, 0, 1)))
    x = 0.12 + t * (length - 0.12)
    upper = np.stack([x, -width * h], 1)
    lower = np.stack([x, width * h], 1)[::-1]
    return np.vstack([upper, lower])


def _flower_to_image(sc: FlowerScene):
    """Flower-head local (units of radius) -> image: foreshorten, tilt, scale, translate."""
    def xf(pts: Any) -> Pts:
        p = np.atleast_2d(np.asarray(pts, dtype=np.float64)).copy()
        p[:, 1] *= sc.squash
        return _rot(p, sc.tilt) * sc.radius + np.array([sc.x, sc.y])
    return xf


def _petal_angles(sc: FlowerScene) -> list[float]:
    return [sc.rotation + 360.0 * i / sc.count + sc.petal_jitter[i][1] for i in range(sc.count)]


def _flower_shapes(sc: FlowerScene) -> list[Shape]:
    """Stem, leaves, petals (with veins and outlines), centre disc with seed dots."""
    shapes: list[Shape] = []
    xf = _flower_to_image(sc)
    # Stem: quadratic Bezier from the bottom edge to the flower head.
    p0, p2 = np.array([sc.stem_base, 1.08]), np.array([sc.x, sc.y])
    p1 = np.array([(p0[0] + p2[0]) / 2 + sc.stem_bend, (p0[1] + p2[1]) / 2])
    t = np.linspace(0, 1, 20)[:, None]
    stem = (1 - t) ** 2 * p0 + 2 * t * (1 - t) * p1 + t ** 2 * p2
    shapes.append(Shape("stem", stem, sc.stem, width=0.026))
    shapes.append(Shape("stem", stem + np.array([-0.006, 0]), _scale_rgb(sc.stem, 1.25), width=0.007))
    for tt, ang, ln in sc.leaves:
        i = int(tt * (len(stem) - 1))
        d = stem[min(i + 1, len(stem) - 1)] - stem[max(i - 1, 0)]
        stem_deg = math.degrees(math.atan2(d[1], d[0]))  # pointing up the stem (negative y)
        shapes += _leaf(stem[i], stem_deg + ang, ln, sc.leaf, "leaf")
    # Petals: darker at the base, lighter at the tip, with a vein and a thin outline.
    vein, outline_col = _detail_colour(sc.petal, 0.18), _detail_colour(sc.petal, 0.3)
    for i, deg in enumerate(_petal_angles(sc)):
        ln = sc.petal_jitter[i][0]
        local = _rot(_petal_outline(sc.pointed, sc.petal_width, ln), deg)
        pts = xf(local)
        base, tip = xf(_rot(np.array([[0.1, 0.0], [ln, 0.0]]), deg))
        shapes.append(Shape("petal", pts, sc.petal, shade=_linear(base, tip, 0.8, 1.1)))
        shapes.append(Shape("petal", np.vstack([pts, pts[:1]]), outline_col, width=0.005))
        shapes.append(Shape("petal", xf(_rot(np.array([[0.25, 0.0], [0.75 * ln, 0.0]]), deg)), vein, width=0.004))
    # Centre disc with a ring of seed dots.
    disc = xf(_ellipse(0, 0, sc.centre_ratio, sc.centre_ratio))
    shapes.append(Shape("centre", disc, sc.centre, shade=_radial(disc, sc.light, 0.75, 1.12)))
    dot_col, r = _detail_colour(sc.centre, 0.35), 0.028
    for a, f in sc.dots:
        c = np.array([math.cos(math.radians(a)), math.sin(math.radians(a))]) * f * sc.centre_ratio
        shapes.append(Shape("centre", xf(_ellipse(c[0], c[1], r, r, n=10)), dot_col))
    return shapes


def sample_flower_scene(attrs: dict[str, str], rng: np.random.Generator) -> FlowerScene:
    """A flower scene showing ``attrs`` (petal colour, centre colour, petal count, petal shape)."""
    count = NUMBER_WORDS.index(attrs["count"]) + 3
    pointed = attrs["shape"] == "pointed"
    radius = float(rng.uniform(0.27, 0.34))
    # Wide petals when few, narrow when many, so that each petal stays countable.
    width = float(np.clip(0.95 * math.sin(math.pi / count), 0.13, 0.34) * rng.uniform(0.9, 1.05))
    x, y = 0.5 + float(rng.uniform(-0.08, 0.08)), 0.4 + float(rng.uniform(-0.06, 0.06))
    stem_base = x + float(rng.uniform(-0.2, 0.2))
    leaves = []
    for k in range(int(rng.integers(1, 3))):
        side = 1 if (k % 2 == 0) == (rng.random() < 0.5) else -1
        leaves.append((float(rng.uniform(0.15, 0.45)), side * float(rng.uniform(35, 70)), float(rng.uniform(0.16, 0.24))))
    n_dots = int(rng.integers(7, 13))
    dots = tuple((float(360 * k / n_dots + rng.uniform(-8, 8)), float(rng.uniform(0.5, 0.72))) for k in range(n_dots))
    greens = [(50, 120, 45), (70, 135, 50), (45, 100, 55)]
    return FlowerScene(
        background=_sample_background("flowers", rng),
        petal=shade_colour(attrs["petal"], rng), centre=shade_colour(attrs["centre"], rng),
        stem=greens[int(rng.integers(3))], leaf=greens[int(rng.integers(3))], count=count, pointed=pointed,
        x=x, y=y, radius=radius, centre_ratio=float(rng.uniform(0.24, 0.3)), petal_width=width,
        rotation=float(rng.uniform(0, 360)), squash=float(rng.uniform(0.72, 1.0)), tilt=float(rng.uniform(-25, 25)),
        petal_jitter=tuple((float(rng.uniform(0.9, 1.0)), float(rng.uniform(-4, 4))) for _ in range(count)),
        stem_base=stem_base, stem_bend=float(rng.uniform(-0.12, 0.12)), leaves=tuple(leaves), dots=dots,
        light=float(rng.uniform(-50, 50)),
    )


# ----------------------------------------------------------------------------- public API

def sample_scene(kind: str, attrs: dict[str, str], rng: np.random.Generator) -> Scene:
    """A random scene of ``kind`` ("birds" / "flowers") that shows the attribute values ``attrs``."""
    if kind == "birds":
        return sample_bird_scene(attrs, rng)
    if kind == "flowers":
        return sample_flower_scene(attrs, rng)
    raise ValueError(f"unknown dataset kind {kind!r}; expected 'birds' or 'flowers'")


def scene_shapes(scene: Scene) -> list[Shape]:
    """All shapes of a scene in painting order (unit coordinates)."""
    return _bird_shapes(scene) if scene.kind == "birds" else _flower_shapes(scene)


def render_image(scene: Scene, size: int) -> Image.Image:
    """Draw ``scene`` as a (size, size) RGB image; anti-aliased by drawing at SUPERSAMPLE x size."""
    if not 8 <= size <= MAX_SIZE:
        raise ValueError(f"image size must be in [8, {MAX_SIZE}], got {size}")
    big = size * SUPERSAMPLE
    painter = _Painter(_render_background(scene.background, big))
    for shape in scene_shapes(scene):
        painter.paint(shape)
    return painter.canvas.resize((size, size), Image.LANCZOS)


def scene_bbox(scene: Scene) -> tuple[float, float, float, float]:
    """(x, y, w, h) in unit coordinates of the subject (bird without branch; flower head and stem)."""
    skip = {"branch", "leaf"}
    pts = np.vstack([s.pts for s in scene_shapes(scene) if s.part not in skip])
    x0, y0 = np.clip(pts.min(0), 0, 1)
    x1, y1 = np.clip(pts.max(0), 0, 1)
    return float(x0), float(y0), float(x1 - x0), float(y1 - y0)


def part_anchor(scene: Scene, part: str) -> tuple[float, float]:
    """A point (unit coordinates) well inside ``part``, where its colour can be read."""
    if scene.kind == "birds":
        if part == "beak":
            beak_y = -0.36 + scene.head_dy + 0.04  # as in _bird_shapes; above the mandible line
            local = (0.62 + 0.2 * scene.beak_length, beak_y - 0.22 * scene.beak_height)
        else:
            local = _BIRD_ANCHORS[part]
        return tuple(float(v) for v in _bird_to_image(scene)(local)[0])
    xf = _flower_to_image(scene)
    if part == "centre":
        return float(scene.x), float(scene.y)
    if part == "petal":
        deg = _petal_angles(scene)[0]
        return tuple(float(v) for v in xf(_rot(np.array([[0.62 * scene.petal_jitter[0][0], 0.0]]), deg))[0])
    raise ValueError(f"no anchor for part {part!r} of a {scene.kind} scene")


def contact_sheet(images: list[Image.Image], cols: int = 4, pad: int = 2) -> Image.Image:
    """Tile equally sized images into one sheet (for previews)."""
    w, h = images[0].size
    rows = -(-len(images) // cols)
    sheet = Image.new("RGB", (cols * (w + pad) + pad, rows * (h + pad) + pad), (255, 255, 255))
    for i, im in enumerate(images):
        sheet.paste(im, (pad + (i % cols) * (w + pad), pad + (i // cols) * (h + pad)))
    return sheet
