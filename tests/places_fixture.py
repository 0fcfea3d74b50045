"""A tiny Places audio-caption dataset whose wavs are *recorded* at test time by a TTS engine
(espeak-ng in process, written with soundfile), in exactly the layout of the real subset:
``train.json`` / ``val.json`` with ``image_base_path``, ``audio_base_path`` and ``data[]`` of
``{wav, image, speaker, uttid, asr_text}``, images under ``images/<l>/<class>/`` and wavs under
``wavs/``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# class folder -> (base colour, things a caption says about the scene)
SCENES = {
    "b/bedroom": ((70, 90, 200), ["a bed with white sheets", "a small lamp", "blue curtains"]),
    "k/kitchen": ((200, 70, 60), ["a red stove", "a wooden table", "pots on the wall"]),
    "l/living_room": ((80, 170, 80), ["a green sofa", "a large window", "a soft carpet"]),
}
SPEAKERS = ["en-us+m3", "en-gb-x-rp+f2", "en-us+f4", "en-gb-scotland+m1"]  # espeak voices as recorded speakers


def _scene_image(path: Path, colour, seed: int, size=(48, 40)) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = np.array(colour, dtype=np.float32)[None, None] * rng.uniform(0.6, 1.1, (size[1], 1, 1))
    arr = np.clip(base + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, quality=90)


def make_recorded_places(root: Path, train_per_class: int = 4, test_per_class: int = 2, utts: int = 2,
                         sr: int = 22050) -> Path:
    """Write the dataset into ``root``; returns ``root``. Wavs are 16-bit PCM at ``sr`` Hz."""
    import soundfile as sf

    from s2ilib.speech.tts import Voice, get_engine

    engine = get_engine("espeak")
    n = 0
    for json_name, per_class in (("train.json", train_per_class), ("val.json", test_per_class)):
        stem, data = Path(json_name).stem, []
        for c, (cdir, (colour, things)) in enumerate(SCENES.items()):
            room = cdir.split("/")[1].replace("_", " ")
            for k in range(per_class):
                img = f"{cdir}/{stem}_{k:08d}.jpg"
                _scene_image(root / "images" / img, colour, seed=1000 * c + 10 * k + len(stem))
                for u in range(utts):
                    n += 1
                    text = f"a {room} with {things[(k + u) % len(things)]}"
                    speaker = SPEAKERS[n % len(SPEAKERS)]
                    wave = engine.synthesize(text, Voice("espeak", speaker, 160 + 10 * (n % 3)), sr=sr)
                    wav = f"wav/{stem}/utt_{n:05d}.wav"
                    (root / "wavs" / wav).parent.mkdir(parents=True, exist_ok=True)
                    sf.write(str(root / "wavs" / wav), wave, sr, subtype="PCM_16")
                    data.append({"wav": wav, "image": img, "speaker": f"A{speaker}", "uttid": f"U{n:05d}",
                                 "asr_text": text.upper()})
        meta = {"image_base_path": "images", "audio_base_path": "wavs", "data": data}
        (root / json_name).write_text(json.dumps(meta, indent=1))
    return root
