"""Building the embedded datasets on disk (s2ilib.data.synth): layout, determinism, cache, resume."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from s2ilib.core.config import DataConfig
from s2ilib.data.synth import (
    DatasetConfigMismatch,
    DatasetFolderError,
    build_synthetic_dataset,
    dataset_meta,
)
from s2ilib.data.vocab import vocabulary

TINY = dict(birds_train_classes=6, birds_test_classes=4, flowers_train_classes=5, flowers_test_classes=3,
            images_per_class=2, image_size=64, workers=1)


def _cfg(**kw) -> DataConfig:
    return DataConfig(**{**TINY, **kw})


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("synth")
    return {n: build_synthetic_dataset(n, base / n, _cfg(), seed=11, progress=False)
            for n in ("synth-birds", "synth-flowers")}


def _read(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _text_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_birds_cub_layout(built):
    root = built["synth-birds"]
    meta = json.loads((root / "dataset.json").read_text())
    assert meta == dataset_meta("synth-birds", _cfg(), 11)
    assert meta["layout"] == "cub" and meta["synthetic"] is True
    classes = [line.split(" ", 1) for line in _read(root / "classes.txt")]
    assert [int(c[0]) for c in classes] == list(range(1, 11))
    class_dirs = [c[1] for c in classes]
    assert _read(root / "trainvalclasses.txt") == class_dirs[:6]
    assert _read(root / "testclasses.txt") == class_dirs[6:]
    images = [line.split(" ", 1) for line in _read(root / "images.txt")]
    labels = dict(line.split() for line in _read(root / "image_class_labels.txt"))
    split = dict(line.split() for line in _read(root / "train_test_split.txt"))
    boxes = {line.split()[0]: [float(v) for v in line.split()[1:]] for line in _read(root / "bounding_boxes.txt")}
    assert [int(i) for i, _ in images] == list(range(1, 21))
    attrs = json.loads((root / "attributes.json").read_text())
    assert attrs["kind"] == "birds" and attrs["vocabulary"] == vocabulary("birds")
    assert set(attrs["class_names"]) == set(class_dirs)
    for img_id, rel in images:
        class_dir, fname = rel.split("/")
        assert (root / "images" / rel).is_file()
        assert class_dirs[int(labels[img_id]) - 1] == class_dir
        assert split[img_id] == ("1" if class_dir in class_dirs[:6] else "0")
        x, y, w, h = boxes[img_id]
        assert 0 <= x and 0 <= y and 10 < w and 10 < h and x + w <= 64.01 and y + h <= 64.01
        with Image.open(root / "images" / rel) as im:
            assert im.size == (64, 64) and im.mode == "RGB" and im.format == "JPEG"
        caps = _read(root / "text_c10" / class_dir / fname.replace(".jpg", ".txt"))
        key = f"images/{rel[:-4]}"
        assert len(caps) == 10 and len(set(caps)) == 10
        assert len(attrs["captions"][key]) == 10
        truth = attrs["images"][key]
        assert set(truth) == set(vocabulary("birds"))
        for mentioned in attrs["captions"][key]:
            assert 2 <= len(mentioned) <= 5 and all(truth[a] == v for a, v in mentioned.items())
    assert not (root.parent / "synth-birds.partial").exists()
    assert not (root / ".build.json").exists()


def test_flowers_oxford_layout(built):
    root = built["synth-flowers"]
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["layout"] == "oxford" and meta["name"] == "synth-flowers"
    jpgs = sorted(p.name for p in (root / "jpg").iterdir())
    assert jpgs == [f"image_{i:05d}.jpg" for i in range(1, 17)]
    train, test = _read(root / "trainvalclasses.txt"), _read(root / "testclasses.txt")
    assert train == [f"class_{i:05d}" for i in range(1, 6)] and test == [f"class_{i:05d}" for i in range(6, 9)]
    txts = sorted(root.glob("text_c10/class_*/image_*.txt"))
    assert len(txts) == 16
    attrs = json.loads((root / "attributes.json").read_text())
    assert set(attrs["images"]) == {f"jpg/{n[:-4]}" for n in jpgs}
    for t in txts:
        assert len(_read(t)) == 10
        assert (root / "jpg" / t.name.replace(".txt", ".jpg")).is_file()
    assert not (root / "images.txt").exists()  # Oxford layout has no CUB index files


def test_every_test_value_seen_in_training(built):
    for name, root in built.items():
        attrs = json.loads((root / "attributes.json").read_text())
        train = set(_read(root / "trainvalclasses.txt"))
        seen: dict[str, set] = {}
        for key, values in attrs["images"].items():
            cls = key.split("/")[1] if name == "synth-birds" else None
            if name == "synth-flowers":
                cls = next(c for c in attrs["class_names"] if (root / "text_c10" / c / (key.split("/")[1] + ".txt")).exists())
            if cls in train:
                for a, v in values.items():
                    seen.setdefault(a, set()).add(v)
        for key, values in attrs["images"].items():
            for a, v in values.items():
                assert v in seen[a], (name, key, a, v)


def test_builder_is_deterministic_and_worker_independent(tmp_path, built):
    # 40 images take the process-pool path (2 workers); the module fixture used 1 worker.
    cfg1 = _cfg(images_per_class=4, image_size=32, workers=1)
    cfg2 = _cfg(images_per_class=4, image_size=32, workers=2)
    a = build_synthetic_dataset("synth-birds", tmp_path / "a", cfg1, seed=11, progress=False)
    b = build_synthetic_dataset("synth-birds", tmp_path / "b", cfg2, seed=11, progress=False)
    fa, fb = _text_files(a), _text_files(b)
    assert fa.keys() == fb.keys() and fa == fb  # identical bytes, JPEGs included
    # the first two images of each class do not depend on images_per_class
    small = built["synth-birds"]
    assert _read(small / "text_c10" / _read(small / "images.txt")[0].split()[1].replace(".jpg", ".txt")) == \
        _read(a / "text_c10" / _read(a / "images.txt")[0].split()[1].replace(".jpg", ".txt"))
    c = build_synthetic_dataset("synth-birds", tmp_path / "c", cfg1, seed=12, progress=False)
    assert (c / "attributes.json").read_bytes() != (a / "attributes.json").read_bytes()


def test_cache_hit_and_config_mismatch(built):
    root = built["synth-flowers"]
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    assert build_synthetic_dataset("synth-flowers", root, _cfg(workers=2), seed=11, progress=False) == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before  # nothing rewritten
    with pytest.raises(DatasetConfigMismatch, match="images_per_class.*delete"):
        build_synthetic_dataset("synth-flowers", root, _cfg(images_per_class=3), seed=11, progress=False)
    with pytest.raises(DatasetConfigMismatch, match=str(root)):
        build_synthetic_dataset("synth-flowers", root, _cfg(), seed=12, progress=False)
    with pytest.raises(DatasetConfigMismatch, match="name"):
        build_synthetic_dataset("synth-birds", root, _cfg(), seed=11, progress=False)


def test_refuses_foreign_folder_and_unknown_name(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(DatasetFolderError, match="not a synthetic dataset"):
        build_synthetic_dataset("synth-birds", tmp_path / "mine", _cfg(), seed=1, progress=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="unknown synthetic dataset"):
        build_synthetic_dataset("synth-fish", tmp_path / "x", _cfg(), seed=1, progress=False)


def test_interrupted_build_resumes(tmp_path, built):
    ref = built["synth-birds"]
    root = tmp_path / "synth-birds"
    partial = tmp_path / "synth-birds.partial"
    # A build killed mid-way: some images written, no index files, a half-written temporary file.
    shutil.copytree(ref, partial)
    for p in [*partial.glob("*.txt"), partial / "dataset.json", partial / "attributes.json"]:
        p.unlink()
    shutil.rmtree(partial / "text_c10")
    kept = sorted(partial.rglob("*.jpg"))[:5]
    for p in sorted(partial.rglob("*.jpg"))[5:]:
        p.unlink()
    (kept[0].parent / "x.jpg.tmp").write_bytes(b"half")
    (partial / ".build.json").write_text(json.dumps(dataset_meta("synth-birds", _cfg(), 11), sort_keys=True))
    mtimes = {p: p.stat().st_mtime_ns for p in kept}
    build_synthetic_dataset("synth-birds", root, _cfg(), seed=11, progress=False)
    assert not partial.exists()
    assert _text_files(root) == _text_files(ref)
    assert all((root / p.relative_to(partial)).stat().st_mtime_ns == t for p, t in mtimes.items())  # reused


def test_interrupted_build_of_other_settings_restarts(tmp_path, built):
    root = tmp_path / "synth-flowers"
    partial = tmp_path / "synth-flowers.partial"
    (partial / "jpg").mkdir(parents=True)
    (partial / "jpg" / "image_00001.jpg").write_bytes(b"not this build")
    (partial / ".build.json").write_text(json.dumps(dataset_meta("synth-flowers", _cfg(), 99)))
    build_synthetic_dataset("synth-flowers", root, _cfg(), seed=11, progress=False)
    assert _text_files(root) == _text_files(built["synth-flowers"])
    assert not partial.exists()


def test_bbox_crop_keeps_the_whole_bird_and_enlarges_it(built):
    """gan.bbox_crop trains on StackGAN's crop around each box: it must never cut the subject, and on
    the embedded birds it should make the bird fill much more of the frame; flowers have no boxes."""
    from s2ilib.data.datasets import bbox_crop_box, load_dataset
    from s2ilib.data.images import load_images_uint8

    birds = load_dataset(built["synth-birds"])
    gains = []
    for r in birds.images:
        x, y, w, h = r.bbox
        left, top, right, bottom = bbox_crop_box(r.bbox, 64, 64)
        assert left <= x + 1 and top <= y + 1 and x + w <= right + 1 and y + h <= bottom + 1, r.key
        gains.append(64 * 64 / ((right - left) * (bottom - top)))
    assert np.mean(gains) > 1.5, gains  # area of the frame over area of the crop
    whole, crop = (load_images_uint8(birds, [0, 1], 32, bbox_crop=c) for c in (False, True))
    assert whole.shape == crop.shape == (2, 3, 32, 32) and not (whole == crop).all()
    flowers = load_dataset(built["synth-flowers"])
    assert all(r.bbox is None for r in flowers.images)
    assert (load_images_uint8(flowers, [0, 1], 32, bbox_crop=True) == load_images_uint8(flowers, [0, 1], 32)).all()
