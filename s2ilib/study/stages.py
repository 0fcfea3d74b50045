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

from s2ilib.core.config import StudyConfig
from s2ilib.data.images import load_images_uint8
from s2ilib.data.spoken import speak_utterance  # noqa: F401 (notebook API)
from s2ilib.models import embedding


def load_embeddings(paths: "RunPaths", dataset: str, kind: str) -> dict[str, Any]:
    """``embeddings.pt`` of the encoder ``kind`` of ``dataset`` in this run (a safe weights file)."""
    return embedding.load_embeddings(paths.encoder(dataset, kind))


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
    from s2ilib.data.datasets import load_dataset
    from s2ilib.data.spoken import synthesize_dataset_speech
    from s2ilib.data.synth import build_synthetic_dataset

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
    from s2ilib.data.datasets import load_dataset

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
    from s2ilib.data.datasets import load_image

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


# ------------------------------------------------------------------------------------------------
# 02 encoders

ENCODERS = ("speech_ts", "speech_cls", "text_ts")
ENCODER_LABELS = {"speech_ts": "speech, teacher-student (ours)",
                  "speech_cls": "speech, classifier-based", "text_ts": "text, teacher-student"}


def teacher_features(ds, cfg: StudyConfig, paths: RunPaths, progress: bool = True):
    """Frozen teacher's pooled features of every image over several views, cached on disk.

    Returns (n_images, views, D) float32.
    """
    from s2ilib.models.teacher import compute_teacher_features

    e = cfg.encoder
    cache = paths.data(ds.name) / "teacher" / f"{e.teacher}_v{e.teacher_views}_{e.teacher_image_size}.pt"
    return compute_teacher_features(ds, e, cache_path=cache, progress=progress)


def train_encoder_stage(ds, kind: str, cfg: StudyConfig, paths: RunPaths, teacher_feats,
                        progress: bool = True) -> dict[str, Any]:
    """Train (or resume, or load when finished) one encoder of ``ENCODERS`` for ``ds``."""
    from s2ilib.training.encoder_trainer import train_encoder

    return train_encoder(kind, ds, teacher_feats, cfg.encoder, paths.encoder(ds.name, kind),
                         seed=cfg.seed, progress=progress)


def linear_probe(emb: dict[str, Any], ds, teacher_feats, ridge: float = 1.0) -> dict[str, Any]:
    """Map embeddings into the teacher's space by ridge regression fitted on TRAINING images only.

    The classifier-based encoder's output is not in the teacher's space, so retrieval against
    teacher features needs a map; a linear probe fitted on training classes (never on test
    classes) keeps the comparison with the teacher-student encoder fair and zero-shot.
    """
    import torch

    train = set(ds.split("train"))
    img = emb["image_idx"].numpy()
    rows = np.flatnonzero([i in train for i in img])
    x = emb["emb"][rows].double()
    y = torch.as_tensor(teacher_feats)[img[rows]].double().mean(dim=1)
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc = x - x_mean
    w = torch.linalg.solve(xc.T @ xc + ridge * len(xc) * torch.eye(x.shape[1], dtype=x.dtype), xc.T @ (y - y_mean))
    projected = ((emb["emb"].double() - x_mean) @ w + y_mean).float()
    return {**emb, "emb": projected}


def encoder_retrieval(ds, paths: RunPaths, teacher_feats, kinds=ENCODERS) -> dict[str, dict[str, dict]]:
    """Test-class retrieval per encoder and condition: {kind: {condition: {metric: value}}}.

    ``speech_cls`` is evaluated through :func:`linear_probe` (its raw output is not in the
    teacher's space); the others are evaluated as they are.
    """
    from s2ilib.training.encoder_trainer import evaluate_retrieval

    out = {}
    for kind in kinds:
        emb = load_embeddings(paths, ds.name, kind)
        if kind == "speech_cls":
            emb = linear_probe(emb, ds, teacher_feats)
        out[kind] = evaluate_retrieval(emb, ds, teacher_feats)
    return out


def retrieval_frame(results: dict[str, dict[str, dict]], metrics=("recall@1", "recall@5", "recall@10",
                                                                   "map_class", "centroid_acc", "ap@50")):
    """{kind: {condition: {metric}}} -> DataFrame rows (encoder, condition), columns metrics + chance."""
    import pandas as pd

    rows = []
    for kind, by_cond in results.items():
        for cond, m in by_cond.items():
            row = {"encoder": kind, "condition": cond, "n_queries": m.get("n_queries")}
            row.update({k: m.get(k) for k in metrics})
            row.update({f"chance {k}": m.get("chance", {}).get(k) for k in ("recall@10", "map_class")})
            rows.append(row)
    return pd.DataFrame(rows).set_index(["encoder", "condition"])


def read_log(run_dir: Path, name: str = "log.jsonl"):
    """A run folder's JSON-lines log as a DataFrame."""
    import pandas as pd

    path = Path(run_dir) / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no log (stage not run)")
    return pd.read_json(path, lines=True)


def embedding_projection(emb: dict[str, Any], ds, condition: str = "seen", max_classes: int = 10,
                         method: str = "tsne", seed: int = 0):
    """2-D projection of test-class embeddings of one condition: DataFrame (x, y, class)."""
    import pandas as pd

    test = set(ds.split("test"))
    img = emb["image_idx"].numpy()
    cond = np.asarray(emb["condition"])
    rows = np.flatnonzero([(i in test) and c == condition for i, c in zip(img, cond)])
    classes = sorted({ds.images[img[r]].class_index for r in rows})[:max_classes]
    rows = [r for r in rows if ds.images[img[r]].class_index in classes]
    x = emb["emb"][rows].float().numpy()
    x = x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-8)
    if method == "tsne" and len(rows) > 10:
        from sklearn.manifold import TSNE

        xy = TSNE(2, perplexity=min(30, len(rows) // 4), random_state=seed, init="pca").fit_transform(x)
    else:
        from sklearn.decomposition import PCA

        xy = PCA(2, random_state=seed).fit_transform(x)
    names = [ds.class_names.get(ds.classes[ds.images[img[r]].class_index], ds.classes[ds.images[img[r]].class_index])
             for r in rows]
    return pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "class": names})


# ------------------------------------------------------------------------------------------------
# 03 generators

# Which encoder's embeddings condition each generator (two_stage reuses the text generator).
GAN_METHODS = {"one_stage": "speech_ts", "classifier": "speech_cls", "text": "text_ts"}


def gan_image_size(cfg: StudyConfig) -> int:
    return cfg.gan.base_size * 2 ** (cfg.gan.branches - 1)


def fixed_test_rows(emb: dict[str, Any], ds, n: int, seed: int, condition: str = "seen") -> list[int]:
    """``n`` embedding rows of distinct unseen test classes (the sample grids' fixed conditions)."""
    rng = np.random.default_rng(seed)
    test = set(ds.split("test"))
    img = emb["image_idx"].numpy()
    cond = np.asarray(emb["condition"])
    by_class: dict[int, list[int]] = {}
    for r in np.flatnonzero(cond == condition):
        if img[r] in test:
            by_class.setdefault(ds.images[img[r]].class_index, []).append(int(r))
    classes = sorted(by_class)
    rng.shuffle(classes)
    picks = [int(rng.choice(by_class[c])) for c in classes[:n]]
    while len(picks) < n and classes:  # fewer test classes than n: add more rows of the same classes
        c = classes[len(picks) % len(classes)]
        picks.append(int(rng.choice(by_class[c])))
    return picks


def train_generator_stage(ds, method: str, cfg: StudyConfig, paths: RunPaths, progress: bool = True,
                          n_fixed: int = 16) -> dict[str, Any]:
    """Train (or resume) the StackGAN-v2 of ``method`` on the training images' embeddings."""
    import json

    import torch

    from s2ilib.training.gan_trainer import train_gan

    if method not in GAN_METHODS:
        raise ValueError(f"unknown generator method {method!r}; choose one of {sorted(GAN_METHODS)}")
    kind = GAN_METHODS[method]
    emb = load_embeddings(paths, ds.name, kind)
    train = ds.split("train")
    pos = {img: k for k, img in enumerate(train)}
    cond = np.asarray(emb["condition"])
    img = emb["image_idx"].numpy()
    keep = [r for r in range(len(img)) if img[r] in pos and cond[r] in ("seen", "text")]
    fixed = fixed_test_rows(emb, ds, n_fixed, cfg.seed, "text" if kind == "text_ts" else "seen")
    images = load_images_uint8(ds, train, gan_image_size(cfg), bbox_crop=cfg.gan.bbox_crop)
    out = paths.gan(ds.name, method)
    summary = train_gan(images, emb["emb"][keep], torch.tensor([pos[img[r]] for r in keep]),
                        torch.tensor([ds.images[i].class_index for i in train]), cfg.gan, out,
                        seed=cfg.seed, fixed_cond=emb["emb"][fixed], progress=progress)
    # What inference needs to go from speech to images with this generator.
    pipeline = {"dataset": ds.name, "method": method, "encoder": kind,
                "encoder_dir": str(paths.encoder(ds.name, kind)), "preset": cfg.preset,
                "fixed_rows": fixed, "fixed_texts": [ds.images[img[r]].captions[int(emb["caption_idx"][r])] for r in fixed],
                "n_train_images": len(train), "n_conditions": len(keep)}
    from s2ilib.core.io import atomic_write_text

    atomic_write_text(out / "pipeline.json", json.dumps(pipeline, indent=2) + "\n")
    return {**summary, "n_train_images": len(train), "n_conditions": len(keep)}


def read_gan_log(run_dir: Path):
    """GAN log.jsonl as a DataFrame with one ``d_loss_<size>`` column per scale."""
    df = read_log(run_dir)
    sizes = json_load(Path(run_dir) / "summary.json").get("sizes") if (Path(run_dir) / "summary.json").is_file() else None
    d = np.array(df.pop("d_loss").tolist())
    for k in range(d.shape[1]):
        df[f"d_loss_{sizes[k] if sizes else k}px"] = d[:, k]
    return df


def json_load(path: Path) -> Any:
    import json

    return json.loads(Path(path).read_text())


def test_utterance_rows(ds, n: int, seed: int, condition: str = "seen") -> list[int]:
    """``n`` store rows of test utterances from distinct unseen classes (deterministic)."""
    idx = ds.speech.index
    rng = np.random.default_rng(seed)
    rows = idx.index[(idx["split"] == "test") & (idx["condition"] == condition)].to_numpy()
    by_class: dict[int, list[int]] = {}
    for r in rows:
        by_class.setdefault(ds.images[int(idx.at[r, "image_idx"])].class_index, []).append(int(r))
    classes = sorted(by_class)
    rng.shuffle(classes)
    return [int(rng.choice(by_class[c])) for c in classes[:n]]


def load_generator_for(paths: RunPaths, dataset: str, method: str):
    from s2ilib.models.loading import GENERATOR_EMA, load_generator

    path = paths.gan(dataset, method) / GENERATOR_EMA
    if not path.is_file():
        raise FileNotFoundError(f"{path}: generator {method!r} not trained; run notebook 03 at this preset")
    return load_generator(path)


def speech_embedding_rows(paths: RunPaths, dataset: str, kind: str, store_rows: list[int]):
    """Embeddings (len(rows), D) of store rows (speech encoders export rows in store order)."""
    emb = load_embeddings(paths, dataset, kind)
    return emb["emb"][list(store_rows)]


def real_images_for_utterances(ds, rows: list[int], cfg: StudyConfig):
    """uint8 (len(rows), 3, S, S): the real image each store row describes, as the generators see
    it (their resolution; the bounding-box crop when ``cfg.gan.bbox_crop``)."""
    image_idx = [int(ds.speech.index.at[r, "image_idx"]) for r in rows]
    return load_images_uint8(ds, image_idx, gan_image_size(cfg), bbox_crop=cfg.gan.bbox_crop)


def images_for_utterances(ds, paths: RunPaths, method: str, rows: list[int], n: int = 8, seed: int = 0):
    """For each store row: uint8 (n, 3, S, S) images from ``n`` noise draws (same noise per row)."""
    from s2ilib.models.loading import generate

    gen = load_generator_for(paths, ds.name, method)
    cond = speech_embedding_rows(paths, ds.name, GAN_METHODS[method], rows)
    return [generate(gen, c, n=n, seed=seed) for c in cond]


def matched_vs_shuffled(ds, paths: RunPaths, method: str, rows: list[int], seed: int = 0):
    """Same noise per column; row 0: matched speech, row 1: speech of another row (a derangement).

    Returns (matched uint8 (k,3,S,S), shuffled uint8 (k,3,S,S), shuffled order).
    """
    from s2ilib.models.loading import generate

    gen = load_generator_for(paths, ds.name, method)
    cond = speech_embedding_rows(paths, ds.name, GAN_METHODS[method], rows)
    order = np.roll(np.arange(len(rows)), 1)
    return generate(gen, cond, seed=seed), generate(gen, cond[order], seed=seed), order


def noise_vs_speech_variation(ds, paths: RunPaths, method: str, n_utterances: int = 20, n_noise: int = 8,
                              seed: int = 0) -> dict[str, float]:
    """How much a generator's images change with the noise for one utterance versus with the
    utterance for one noise: mean per-pixel standard deviation (0-255 scale) over ``n_noise`` draws
    and over ``n_utterances`` test utterances of distinct unseen classes. StackGAN-v2 intends the
    noise to set pose and background; a small noise figure means the speech decides nearly all."""
    import torch

    rows = test_utterance_rows(ds, n_utterances, seed=seed)
    images = torch.stack(images_for_utterances(ds, paths, method, rows, n=n_noise, seed=seed)).float()
    return {"pixel_std_over_noise": float(images.std(1).mean()),
            "pixel_std_over_speech": float(images.std(0).mean()),
            "n_utterances": len(rows), "n_noise": n_noise}


def inference_latency(gan_dir: Path, text: str, n: int = 8, repeats: int = 3) -> dict[str, float]:
    """Seconds from a spoken sentence's waveform to ``n`` images (median of ``repeats``), CPU."""
    import time

    from s2ilib.models.pipeline import SpeechToImage
    from s2ilib.speech.tts import Voice, get_engine

    t0 = time.time()
    pipe = SpeechToImage(gan_dir)
    load_s = time.time() - t0
    wave = get_engine("espeak").synthesize(text, Voice(), sr=16000)
    times = []
    for k in range(repeats):
        t = time.time()
        pipe.from_wave(wave, n=n, seed=k)
        times.append(time.time() - t)
    return {"load_s": round(load_s, 3), "wave_to_images_s": round(float(np.median(times)), 4),
            "n_images": n, "utterance_s": round(len(wave) / 16000, 2)}


# ------------------------------------------------------------------------------------------------
# 04 main results


def paper_claims(main: dict[str, dict[str, Any]]):
    """The paper's Table II claims checked on our results: DataFrame (dataset, claim, ours, other, holds).

    ``main``: {dataset: run_main_evaluation result}. Lower FID is better; higher attribute
    accuracy is better. Seen-voice speech is compared (the paper used its TTS voices).
    """
    import pandas as pd

    def get(res, method, cond, metric):
        return res.get(method, {}).get(cond, {}).get(metric)

    rows = []
    for name, res in main.items():
        one = lambda m: get(res, "one_stage", "seen", m)
        checks = [
            ("one-stage FID below two-stage FID", "fid", one("fid"), get(res, "two_stage", "seen", "fid"), "lower"),
            ("one-stage FID below classifier-based FID", "fid", one("fid"), get(res, "classifier", "seen", "fid"), "lower"),
            ("one-stage FID close to text upper bound (within 20%)", "fid", one("fid"),
             get(res, "text", "groundtruth_text", "fid"), "close"),
            ("one-stage attribute accuracy above two-stage", "attr_acc", one("attr_acc"),
             get(res, "two_stage", "seen", "attr_acc"), "higher"),
            ("one-stage attribute accuracy above classifier-based", "attr_acc", one("attr_acc"),
             get(res, "classifier", "seen", "attr_acc"), "higher"),
            ("one-stage attribute accuracy above the shuffled-speech floor", "attr_acc", one("attr_acc"),
             one("attr_acc_shuffled"), "higher"),
            ("one-stage unseen voices within 20% of seen voices (FID)", "fid",
             get(res, "one_stage", "unseen", "fid"), one("fid"), "close"),
        ]
        for claim, metric, ours, other, rule in checks:
            if ours is None or other is None:
                holds = None
            elif rule == "lower":
                holds = ours < other
            elif rule == "higher":
                holds = ours > other
            else:
                holds = abs(ours - other) <= 0.2 * abs(other)
            rows.append({"dataset": name, "claim": claim, "metric": metric, "ours": ours, "other": other,
                         "holds": holds})
    return pd.DataFrame(rows)


def method_comparison_grid(examples: list[dict[str, Any]], methods, title: str, path=None):
    """One row per method (+ the real image), one column per test utterance (same noise per column)."""
    from s2ilib.study import plots

    images, captions = [], []
    order = ["real", *methods]
    for m in order:
        for k, ex in enumerate(examples):
            images.append(ex["real"] if m == "real" else ex["images"][m])
            label = m if k == 0 else ""
            if m == "real":
                label = f"real | {ex['text']}" if k == 0 else ex["text"]
            elif m == "two_stage":
                label = f"{label} | asr: {ex.get('transcript', '')}".strip(" |")
            captions.append(label)
    return plots.image_grid(images, captions, ncols=len(examples), size=1.6, wrap=30, title=title, path=path)
