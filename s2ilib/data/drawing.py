"""Shapes of the two species kinds: a bird on a branch and a flower on its stem, from a scene."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from s2ilib.data.scenes import (BirdScene, FlowerScene, Pts, Shape, _detail_colour, _ellipse, _linear,
                                _radial, _rot, _sample_background, _scale_rgb, _smooth)
from s2ilib.data.vocab import NUMBER_WORDS, RGB, shade_colour

# ----------------------------------------------------------------------------- birds

# Anchor points (local bird units, facing right) well inside each part: used to read part colours.
BIRD_ANCHORS = {"head": (0.31, -0.40), "breast": (0.22, 0.14), "wings": (-0.22, -0.04),
                 "tail": (-0.66, 0.34), "beak": None}
_SMALL_SCALE, _LARGE_SCALE = (0.25, 0.28), (0.34, 0.38)


def bird_to_image(sc: BirdScene):
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


def bird_shapes(sc: BirdScene) -> list[Shape]:
    """Every shape of a bird scene in painting order (branch, tail, legs, body, head, wing, eye, beak)."""
    xf = bird_to_image(sc)
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


def flower_to_image(sc: FlowerScene):
    """Flower-head local (units of radius) -> image: foreshorten, tilt, scale, translate."""
    def xf(pts: Any) -> Pts:
        p = np.atleast_2d(np.asarray(pts, dtype=np.float64)).copy()
        p[:, 1] *= sc.squash
        return _rot(p, sc.tilt) * sc.radius + np.array([sc.x, sc.y])
    return xf


def petal_angles(sc: FlowerScene) -> list[float]:
    return [sc.rotation + 360.0 * i / sc.count + sc.petal_jitter[i][1] for i in range(sc.count)]


def flower_shapes(sc: FlowerScene) -> list[Shape]:
    """Stem, leaves, petals (with veins and outlines), centre disc with seed dots."""
    shapes: list[Shape] = []
    xf = flower_to_image(sc)
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
    for i, deg in enumerate(petal_angles(sc)):
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

