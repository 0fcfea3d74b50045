"""Tiny datasets in exactly the real on-disk layouts, created inside a test's ``tmp_path``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

COLOURS = ["red", "blue", "yellow", "white", "black", "brown", "grey", "orange", "green", "purple"]
PARTS = ["crown", "wings", "breast", "belly", "tail", "beak", "throat", "back", "nape", "eye ring"]


def captions(seed: int, n: int = 10, thing: str = "bird") -> list[str]:
    rng = np.random.default_rng(seed)
    return [f"this {thing} has a {rng.choice(COLOURS)} {rng.choice(PARTS)} and {rng.choice(COLOURS)} "
            f"{rng.choice(PARTS)}" for _ in range(n)]


def _jpg(path: Path, seed: int, size=(40, 30)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, quality=90)


def make_cub(root: Path, n_classes: int = 2, per_class: int = 2, n_captions: int = 10) -> Path:
    """CUB-200-2011 layout; the last class is the test class."""
    root.mkdir(parents=True, exist_ok=True)
    classes = [f"{c + 1:03d}.Bird_{chr(65 + c)}" for c in range(n_classes)]
    lines = {k: [] for k in ("images", "labels", "boxes", "split")}
    img_id = 0
    for c, cdir in enumerate(classes):
        for k in range(per_class):
            img_id += 1
            name = f"Bird_{chr(65 + c)}_{k + 1:04d}"
            _jpg(root / "images" / cdir / f"{name}.jpg", img_id)
            lines["images"].append(f"{img_id} {cdir}/{name}.jpg")
            lines["labels"].append(f"{img_id} {c + 1}")
            lines["boxes"].append(f"{img_id} 5.0 4.0 20.0 16.0")
            lines["split"].append(f"{img_id} {int(c < n_classes - 1)}")
            txt = root / "text_c10" / cdir / f"{name}.txt"
            txt.parent.mkdir(parents=True, exist_ok=True)
            txt.write_text("\n".join(captions(img_id, n_captions)) + "\n")
    (root / "images.txt").write_text("\n".join(lines["images"]) + "\n")
    (root / "image_class_labels.txt").write_text("\n".join(lines["labels"]) + "\n")
    (root / "bounding_boxes.txt").write_text("\n".join(lines["boxes"]) + "\n")
    (root / "train_test_split.txt").write_text("\n".join(lines["split"]) + "\n")
    (root / "classes.txt").write_text("".join(f"{c + 1} {d}\n" for c, d in enumerate(classes)))
    (root / "trainvalclasses.txt").write_text("".join(f"{d}\n" for d in classes[:-1]))
    (root / "testclasses.txt").write_text(f"{classes[-1]}\n")
    return root


def make_oxford(root: Path, n_classes: int = 2, per_class: int = 2, n_captions: int = 10) -> Path:
    """Oxford-102 layout with Reed et al.'s captions; the last class is the test class."""
    root.mkdir(parents=True, exist_ok=True)
    classes = [f"class_{c + 1:05d}" for c in range(n_classes)]
    n = 0
    for cdir in classes:
        for _ in range(per_class):
            n += 1
            _jpg(root / "jpg" / f"image_{n:05d}.jpg", 100 + n)
            txt = root / "text_c10" / cdir / f"image_{n:05d}.txt"
            txt.parent.mkdir(parents=True, exist_ok=True)
            txt.write_text("\n".join(captions(100 + n, n_captions, "flower")) + "\n")
    (root / "trainvalclasses.txt").write_text("".join(f"{d}\n" for d in classes[:-1]))
    (root / "testclasses.txt").write_text(f"{classes[-1]}\n")
    return root


def _tone_speech(seed: int, sr: int, seconds: float, channels: int = 1) -> np.ndarray:
    """A speech-like test signal: harmonics of a gliding pitch under a syllable-rate envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t))
    x = 0.3 * x / np.abs(x).max() + 0.003 * rng.standard_normal(len(t))
    return np.stack([x, 0.8 * x], axis=1).astype(np.float32) if channels == 2 else x.astype(np.float32)


def make_places(root: Path, classes=("b/bedroom", "k/kitchen"), per_class: int = 2, utts: int = 2,
                name: str = "train.json") -> Path:
    """Places audio-caption layout: ``<name>`` json + ``images/`` + ``wavs/`` (mixed rates and channels)."""
    import soundfile as sf

    data = []
    n, stem = 0, Path(name).stem
    for cdir in classes:
        for k in range(per_class):
            img = f"{cdir}/{stem}_{k:08d}.jpg"
            _jpg(root / "images" / img, 200 + n)
            for u in range(utts):
                n += 1
                wav = f"wav/{stem}_{n:04d}.wav"
                (root / "wavs" / wav).parent.mkdir(parents=True, exist_ok=True)
                sr, ch = ((16000, 1), (22050, 2), (8000, 1))[n % 3]
                sf.write(str(root / "wavs" / wav), _tone_speech(n, sr, 1.0 + 0.25 * u, ch), sr)
                data.append({"wav": wav, "image": img, "speaker": f"SPK{n % 3}", "uttid": f"{stem}_U{n:04d}",
                             "asr_text": f"a room with a {COLOURS[n % 10]} wall"})
    meta = {"image_base_path": "images", "audio_base_path": "wavs", "data": data}
    (root / name).write_text(json.dumps(meta, indent=1))
    return root


# A GAN small enough to train a few steps in a test (8 / 16 px), and data for it: 10 images of
# 3 classes, 25 conditions whose embeddings carry their image's class.
TINY_GAN = {"base_size": 8, "gf_dim": 8, "df_dim": 4, "z_dim": 8, "ca_dim": 6, "r_num": 1, "batch_size": 6,
            "bf16": False}


def tiny_gan_data():
    """(images uint8 (10, 3, 32, 32), cond_emb (25, 12), cond_image_idx (25,), image_class (10,))."""
    import torch

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8, generator=g)
    image_class = torch.arange(10) % 3
    cond_image_idx = torch.arange(25) % 10
    cond_emb = torch.randn(25, 12, generator=g) + image_class[cond_image_idx, None].float()
    return images, cond_emb, cond_image_idx, image_class
