"""Stages of the study as library calls, so every notebook only sets parameters and calls these.

Each stage is idempotent and cached by its configuration: rerunning a notebook skips work
already done in ``runs/<preset>/``.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from s2ilib.config import StudyConfig


@dataclass(frozen=True)
class RunPaths:
    """Folders of one preset's run (``runs/<preset>/``) and report (``reports/<preset>/``)."""

    run: Path
    report: Path

    @classmethod
    def create(cls, run_root: str | Path, report_dir: str | Path, preset: str) -> "RunPaths":
        paths = cls(Path(run_root).resolve() / preset, Path(report_dir).resolve())
        for p in (paths.run, paths.report, paths.figures):
            p.mkdir(parents=True, exist_ok=True)
        return paths

    @property
    def figures(self) -> Path:
        return self.report / "figures"

    @property
    def results(self) -> Path:
        return self.report / "results.json"

    def data(self, dataset: str) -> Path:
        return self.run / "data" / dataset

    def encoder(self, dataset: str, encoder: str) -> Path:
        return self.run / "encoders" / dataset / encoder

    def gan(self, dataset: str, method: str) -> Path:
        return self.run / "gan" / dataset / method

    def eval(self, dataset: str) -> Path:
        return self.run / "eval" / dataset


def provenance(cfg: StudyConfig, section: Any = None) -> dict[str, Any]:
    """What every results entry carries: preset, seed and the config section it came from."""
    out: dict[str, Any] = {"preset": cfg.preset, "seed": cfg.seed}
    if section is not None:
        out["config"] = dataclasses.asdict(section)
    return out


# ------------------------------------------------------------------------------------------------
# 01 data


def build_dataset(name: str, cfg: StudyConfig, paths: RunPaths, progress: bool = True):
    """Render + caption + speak one embedded dataset (cached); returns (dataset, timings)."""
    from s2ilib.datasets import load_dataset
    from s2ilib.speech import synthesize_dataset_speech
    from s2ilib.synth import build_synthetic_dataset

    root = paths.data(name)
    t0 = time.time()
    build_synthetic_dataset(name, root, cfg.data, cfg.seed, progress=progress)
    t1 = time.time()
    ds = load_dataset(root)
    ds.speech = synthesize_dataset_speech(ds, root / "speech", cfg.data, cfg.seed, progress=progress)
    t2 = time.time()
    return ds, {"images_and_text_s": round(t1 - t0, 2), "speech_s": round(t2 - t1, 2)}


def load_built_dataset(name: str, paths: RunPaths):
    """Open a dataset built by notebook 01 (clear error if it was not built)."""
    from s2ilib.datasets import load_dataset

    root = paths.data(name)
    if not (root / "dataset.json").is_file() or not (root / "speech" / "index.csv").is_file():
        raise FileNotFoundError(f"{root}: dataset or its speech is not built; run notebook 01 "
                                f"(s2i study --only 01) at this preset first")
    return load_dataset(root)


def dataset_summary(ds) -> dict[str, Any]:
    """Sizes of a dataset: classes, images, captions, utterances, hours of speech, voices."""
    store = ds.speech
    train, test = ds.split("train"), ds.split("test")
    idx = store.index
    info = store.info.get("totals", {})
    return {
        "classes_train": len({ds.images[i].class_index for i in train}),
        "classes_test": len({ds.images[i].class_index for i in test}),
        "images_train": len(train),
        "images_test": len(test),
        "captions": sum(len(r.captions) for r in ds.images),
        "utterances_seen": int((idx["condition"] == "seen").sum()),
        "utterances_unseen": int((idx["condition"] == "unseen").sum()),
        "hours_speech": round(store.hours(), 3),
        "voices_train": len(store.voices.get("train", [])),
        "voices_unseen": len(store.voices.get("unseen", [])),
        "speech_s_per_wall_s": round(info.get("speech_s_per_wall_s", float("nan")), 1),
    }


def sample_images(ds, n: int, seed: int, split: str = "train", size: int | None = None):
    """``n`` images of distinct classes with one caption each: (PIL images, captions, indices)."""
    from s2ilib.datasets import load_image

    rng = np.random.default_rng(seed)
    idx = ds.split(split)
    by_class: dict[int, list[int]] = {}
    for i in idx:
        by_class.setdefault(ds.images[i].class_index, []).append(i)
    classes = rng.permutation(sorted(by_class))[:n]
    chosen = [int(rng.choice(by_class[c])) for c in classes]
    images = [load_image(ds.images[i], size) for i in chosen]
    captions = [ds.images[i].captions[int(rng.integers(len(ds.images[i].captions)))] for i in chosen]
    return images, captions, chosen


def speak_utterance(ds, row: int, sr: int = 16000) -> np.ndarray:
    """Re-synthesise utterance ``row`` of the dataset's store (deterministic), 16 kHz float32."""
    from s2ilib.tts import Voice, get_engine

    r = ds.speech.index.iloc[int(row)]
    voice = Voice.from_id(r["voice"])
    return get_engine(voice.engine).synthesize(str(r["text"]), voice, sr=sr)


def attribute_table(ds):
    """Long table (split, attribute, value, images) of ground-truth attribute counts."""
    import pandas as pd

    rows = [(r.split, a, v) for r in ds.images for a, v in r.attributes.items()]
    df = pd.DataFrame(rows, columns=["split", "attribute", "value"])
    return df.groupby(["split", "attribute", "value"]).size().rename("images").reset_index()


def mention_table(ds):
    """How often captions mention each attribute: (attribute, mentions, share of captions)."""
    import pandas as pd

    counts: dict[str, int] = {}
    n = 0
    for r in ds.images:
        for mentioned in r.caption_attributes:
            n += 1
            for a in mentioned:
                counts[a] = counts.get(a, 0) + 1
    df = pd.DataFrame(sorted(counts.items()), columns=["attribute", "mentions"])
    df["share_of_captions"] = (df["mentions"] / max(n, 1)).round(3)
    return df
