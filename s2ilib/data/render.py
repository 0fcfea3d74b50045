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


import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from s2ilib.data.drawing import (BIRD_ANCHORS, bird_shapes, bird_to_image, flower_shapes, flower_to_image,
                                 petal_angles, sample_bird_scene, sample_flower_scene)
from s2ilib.data.scenes import (BG_RES, MAX_SIZE, SUPERSAMPLE, Background, BirdScene,  # noqa: F401
                                FlowerScene, Pts, Scene, Shape, _rot)


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
    return bird_shapes(scene) if scene.kind == "birds" else flower_shapes(scene)


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
            beak_y = -0.36 + scene.head_dy + 0.04  # as in bird_shapes; above the mandible line
            local = (0.62 + 0.2 * scene.beak_length, beak_y - 0.22 * scene.beak_height)
        else:
            local = BIRD_ANCHORS[part]
        return tuple(float(v) for v in bird_to_image(scene)(local)[0])
    xf = flower_to_image(scene)
    if part == "centre":
        return float(scene.x), float(scene.y)
    if part == "petal":
        deg = petal_angles(scene)[0]
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
