"""Procedural rendering of bird and flower scenes (s2ilib.data.render)."""
import numpy as np
import pytest
from PIL import Image

from s2ilib.data.render import part_anchor, render_image, sample_scene, scene_bbox
from s2ilib.data.species import make_classes, sample_attributes
from s2ilib.data.vocab import COLOUR_ATTRIBUTES, nearest_colour


def _scenes(kind: str, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    species = make_classes(kind, 30, 10, rng)
    out = []
    for i in range(n):
        attrs = sample_attributes(species[i % 40].prototype, rng)
        out.append((attrs, sample_scene(kind, attrs, rng)))
    return out


@pytest.mark.parametrize("kind", ["birds", "flowers"])
def test_same_seed_same_image(kind):
    (a1, s1), = _scenes(kind, 1, seed=5)
    (a2, s2), = _scenes(kind, 1, seed=5)
    (_, s3), = _scenes(kind, 1, seed=6)
    x1, x2 = np.asarray(render_image(s1, 64)), np.asarray(render_image(s2, 64))
    assert a1 == a2 and x1.shape == (64, 64, 3) and x1.dtype == np.uint8
    assert np.array_equal(x1, x2)
    assert np.array_equal(x1, np.asarray(render_image(s1, 64)))  # rendering has no hidden randomness
    assert np.abs(x1.astype(int) - np.asarray(render_image(s3, 64)).astype(int)).mean() > 10


def _part_colour(img: Image.Image, xy, radius: int) -> str:
    arr = np.asarray(img)
    x, y = int(xy[0] * img.size[0]), int(xy[1] * img.size[1])
    patch = arr[y - radius:y + radius + 1, x - radius:x + radius + 1].reshape(-1, 3)
    return nearest_colour(np.median(patch, axis=0))


@pytest.mark.parametrize("kind", ["birds", "flowers"])
def test_same_scene_at_every_resolution(kind):
    for attrs, scene in _scenes(kind, 6, seed=1):
        big, small = render_image(scene, 256), render_image(scene, 64)
        down = np.asarray(big.resize((64, 64), Image.LANCZOS), float)
        assert np.abs(down - np.asarray(small, float)).mean() < 3.0  # measured ~0.6-1.4 of 255
        for part in COLOUR_ATTRIBUTES[kind]:  # each part shows its named colour at both sizes
            xy = part_anchor(scene, part)
            assert _part_colour(big, xy, 3) == attrs[part], (part, attrs)
            if part != "beak":  # the beak is a few pixels at 64 px
                assert _part_colour(small, xy, 1) == attrs[part], (part, attrs)


def test_part_colours_over_many_birds():
    wrong, total = 0, 0
    for attrs, scene in _scenes("birds", 30, seed=2):
        img = render_image(scene, 64)
        for part in ("head", "breast", "wings", "tail"):
            wrong += _part_colour(img, part_anchor(scene, part), 1) != attrs[part]
            total += 1
    assert wrong / total < 0.03


def test_bird_pose_size_and_bbox():
    scenes = _scenes("birds", 40, seed=3)
    assert {s.facing for _, s in scenes} == {-1, 1}
    small = [s.scale for a, s in scenes if a["size"] == "small"]
    large = [s.scale for a, s in scenes if a["size"] == "large"]
    assert small and large and max(small) < min(large)
    for attrs, s in scenes:
        x, y, w, h = scene_bbox(s)
        assert 0 <= x and 0 <= y and x + w <= 1 and y + h <= 1
        assert 0.2 < w < 0.95 and 0.2 < h < 0.95
        for part in COLOUR_ATTRIBUTES["birds"]:
            px, py = part_anchor(s, part)
            assert x <= px <= x + w and y <= py <= y + h
        long_beak = attrs["length"] == "long"
        assert (s.beak_length > 0.25) == long_beak


def test_flower_petal_count_and_shape():
    for attrs, s in _scenes("flowers", 20, seed=4):
        assert s.count == ["three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"].index(attrs["count"]) + 3
        assert s.pointed == (attrs["shape"] == "pointed")
        assert len(s.petal_jitter) == s.count


def test_images_have_texture_not_flat_colour():
    for kind in ("birds", "flowers"):
        _, scene = _scenes(kind, 1, seed=8)[0]
        arr = np.asarray(render_image(scene, 128)).reshape(-1, 3)
        assert len(np.unique(arr, axis=0)) > 2000  # gradients, shading, anti-aliasing
        assert arr.std(0).mean() > 20


def test_bad_size_is_an_error():
    _, scene = _scenes("birds", 1)[0]
    with pytest.raises(ValueError, match="image size"):
        render_image(scene, 512)
    with pytest.raises(ValueError, match="unknown dataset kind"):
        sample_scene("fish", {}, np.random.default_rng(0))
