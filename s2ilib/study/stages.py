"""Stages of the study as library calls, so every notebook only sets parameters and calls these.

Each stage is idempotent and cached by its configuration: rerunning a notebook skips work
already done in ``runs/<preset>/``. Every stage writes into the variant folder of its
configuration (:class:`RunPaths`), leaves ``variant.json`` there, and runs on ``cfg.device``.
The training stages return whether they reused a finished run folder and which commit and machine
trained it (:func:`s2ilib.core.runkit.reuse_info`); the notebooks' payloads put it in ``results.json``.
Analysis of the trained models is in :mod:`s2ilib.study.analysis`, the results payloads and the
paper's claims in :mod:`s2ilib.study.report`.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from s2ilib.core import registry
from s2ilib.core.config import StudyConfig
from s2ilib.core.io import atomic_write_text
from s2ilib.core.runkit import reuse_info
from s2ilib.data.images import load_images_uint8
from s2ilib.models import embedding
from s2ilib.study.paths import RunPaths, device_of, provenance, write_variant_config  # noqa: F401 (notebook API)
from s2ilib.training.distributed import is_lead


def load_embeddings(paths: RunPaths, dataset: str, kind: str, method: str | None = None) -> dict[str, Any]:
    """``embeddings.pt`` of the encoder ``kind`` of ``dataset`` in this run (a safe weights file)."""
    return embedding.load_embeddings(paths.encoder(dataset, kind, method))


# ------------------------------------------------------------------------------------------------
# 01 data


def dataset_dir(name: str, cfg: StudyConfig | None) -> Path | None:
    """The folder in a real layout that ``data.dataset_dirs`` studies as ``name``; None for an
    embedded dataset (``synth-birds``, ``synth-flowers``). Any other name is an error."""
    from s2ilib.data.synth import DATASETS

    dirs = {Path(p).name: Path(p).expanduser().resolve() for p in (cfg.data.dataset_dirs if cfg else [])}
    if name in dirs:
        return dirs[name]
    if name in DATASETS:
        return None
    raise FileNotFoundError(f"dataset {name!r} is neither embedded ({', '.join(sorted(DATASETS))}) nor the name "
                            f"of a folder in data.dataset_dirs ({sorted(dirs) or 'none given'}): "
                            f"--set 'data.dataset_dirs=[\"/path/to/{name}\"]'")


def build_dataset(name: str, cfg: StudyConfig, paths: RunPaths, progress: bool = True):
    """Render + caption + speak one embedded dataset, or read one in a real layout from
    ``data.dataset_dirs`` and featurise its recorded wavs (Places) or speak its captions (CUB,
    Oxford-102) into the run's data folder (cached); returns (dataset, timings)."""
    from s2ilib.data.datasets import featurize_wavs, has_recorded_speech, load_dataset, open_user_dataset
    from s2ilib.data.spoken import synthesize_dataset_speech
    from s2ilib.data.synth import build_synthetic_dataset

    root = paths.data(name)
    source = dataset_dir(name, cfg)
    t0 = time.time()
    if source is None:
        build_synthetic_dataset(name, root, cfg.data, cfg.seed, progress=progress)
        ds = load_dataset(root)
    else:
        ds = open_user_dataset(name, source)
    t1 = time.time()
    d = cfg.data
    if has_recorded_speech(ds):  # Places: the recorded wavs are the speech
        ds.speech = featurize_wavs(ds, root / "speech", sr=d.sample_rate, n_mels=d.n_mels, min_frames=d.min_frames,
                                   workers=d.workers, progress=progress)
    else:
        ds.speech = synthesize_dataset_speech(ds, root / "speech", d, cfg.seed, progress=progress)
    t2 = time.time()
    if source is not None:  # what load_built_dataset opens
        atomic_write_text(root / SOURCE_FILE, json.dumps({"name": name, "source": str(source), "layout": ds.layout,
                                                          "fingerprint": ds.fingerprint()}, indent=2) + "\n")
    write_variant_config(root, cfg, "data", dataset=name)
    return ds, {"images_and_text_s": round(t1 - t0, 2), "speech_s": round(t2 - t1, 2)}


SOURCE_FILE = "source.json"  # in the run's data folder of a dataset read from data.dataset_dirs


def load_built_dataset(name: str, paths: RunPaths):
    """Open a dataset built by notebook 01 (clear error if it was not built)."""
    from s2ilib.data.datasets import load_dataset, open_user_dataset

    root = paths.data(name)
    source = dataset_dir(name, paths.cfg)
    built = (root / SOURCE_FILE) if source is not None else (root / "dataset.json")
    if not built.is_file() or not (root / "speech" / "index.csv").is_file():
        raise FileNotFoundError(f"{root}: dataset or its speech is not built; run notebook 01 "
                                f"(s2i study --only 01) with this preset and these overrides first")
    if source is None:
        return _split_view(load_dataset(root), paths.cfg)
    ds = open_user_dataset(name, source, root / "speech")
    if json.loads((root / SOURCE_FILE).read_text()).get("fingerprint") != ds.fingerprint():
        raise FileNotFoundError(f"{source}: the dataset changed since notebook 01 featurised it into {root}; "
                                f"run notebook 01 again")
    return _split_view(ds, paths.cfg)


def validation_split(ds, cfg: StudyConfig) -> dict[str, Any]:
    """The validation classes of ``ds`` under ``cfg`` (what ``split=val`` holds out), for results.json;
    a dataset too small to hold any out says so instead."""
    from s2ilib.data.validation import ValidationSplitError, split_record

    try:
        return {"used": cfg.split == "val", **split_record(ds, cfg.val_fraction, cfg.seed)}
    except ValidationSplitError as exc:
        return {"used": False, "unavailable": str(exc)}


def _split_view(ds, cfg: StudyConfig):
    """``split=val``: the validation view (s2ilib.data.validation), whose test classes are validation
    classes and whose real test classes nothing can reach; ``split=test``: the dataset itself."""
    from s2ilib.data.validation import validation_view

    return validation_view(ds, cfg.val_fraction, cfg.seed) if cfg.split == "val" else ds


def speak_utterance(ds, row: int, sr: int = 16000):
    """Row ``row`` of the dataset's speech store as audio: the recorded wav (Places), else the
    utterance re-synthesised with its voice (deterministic); float32 mono at ``sr`` Hz."""
    from s2ilib.data.datasets import has_recorded_speech, recorded_utterance
    from s2ilib.data import spoken

    if has_recorded_speech(ds):
        return recorded_utterance(ds, row, sr=sr)
    return spoken.speak_utterance(ds, row, sr=sr)


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


def teacher_features(ds, cfg: StudyConfig, paths: RunPaths, progress: bool = True):
    """Frozen teacher's pooled features of every image over several views, cached on disk.

    Returns (n_images, views, D) float32.
    """
    from s2ilib.models.teacher import compute_teacher_features

    e = cfg.encoder
    crop = "_bbox" if e.teacher_bbox_crop else ""
    cache = paths.data(ds.name) / "teacher" / f"{e.teacher}_v{e.teacher_views}_{e.teacher_image_size}{crop}.pt"
    return compute_teacher_features(ds, e, cache_path=cache, progress=progress, device=device_of(cfg))


def encoder_runs(kinds, methods=None) -> list[tuple[str, str | None]]:
    """(encoder kind, method) pairs to train: every kind with the run's config, plus the variant of
    each method in ``methods`` (default: every registered method) whose registry overrides change
    its encoder's run (``method`` None: the run's own config)."""
    from s2ilib.core.variants import in_stage

    runs: list[tuple[str, str | None]] = [(k, None) for k in kinds]
    for m in registry.method_names() if methods is None else methods:
        spec = registry.method(m)
        changes = any(in_stage(k, "encoder") for k in spec.overrides)  # gan.* keys share the base encoder
        if spec.encoder in kinds and changes and (spec.encoder, m) not in runs:
            runs.append((spec.encoder, m))
    return runs


def train_encoder_stage(ds, kind: str, cfg: StudyConfig, paths: RunPaths, teacher_feats,
                        progress: bool = True, method: str | None = None) -> dict[str, Any]:
    """Train (or resume, or load when finished) one encoder (``registry.encoder_names()``) for ``ds``.

    ``method``: train the variant of the encoder that the method's registry overrides make.
    """
    from s2ilib.training.encoder_trainer import train_encoder

    registry.encoder(kind)  # unknown kinds fail here
    run_cfg = paths.config_for(method) or cfg
    if run_cfg is not cfg and run_cfg.encoder != cfg.encoder:
        teacher_feats = teacher_features(ds, run_cfg, paths, progress=progress)  # a cache hit if unchanged
    out = paths.encoder(ds.name, kind, method)
    summary = train_encoder(kind, ds, teacher_feats, run_cfg.encoder, out, seed=run_cfg.training_seed,
                            progress=progress, device=device_of(run_cfg))
    if not is_lead(run_cfg.device):  # under torchrun rank 0 writes
        return summary
    write_variant_config(out, run_cfg, "encoder", dataset=ds.name, encoder=kind, method=method)
    return {**summary, **reuse_info(summary)}


def read_log(run_dir: Path, name: str = "log.jsonl"):
    """A run folder's JSON-lines log as a DataFrame."""
    import pandas as pd

    path = Path(run_dir) / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no log (stage not run)")
    return pd.read_json(path, lines=True)


# ------------------------------------------------------------------------------------------------
# 03 generators


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


def study_methods(methods, cfg: StudyConfig, generators: bool = False) -> list[str]:
    """``methods`` checked against the registry (unknown names fail here, not later; with
    ``generators`` each must train its own generator), without the methods whose registry overrides
    leave ``cfg`` unchanged: their row would repeat another method's (one_stage_authors where the
    preset already uses the authors' recipe). Each one left out is printed with the reason."""
    from s2ilib.study.paths import with_overrides

    keep = []
    for m in methods:
        spec = generator_method(m) if generators else registry.method(m)
        if spec.overrides and with_overrides(cfg, spec.overrides) == cfg:
            print(f"{m}: left out -- its overrides {spec.overrides} are this run's own configuration")
            continue
        keep.append(spec.name)
    return keep


def generator_method(method: str) -> registry.Method:
    """The registry entry of a method that trains its own generator (others reuse one)."""
    spec = registry.method(method)
    if not spec.trains_generator:
        raise registry.RegistryError(f"method {method!r} reuses the generator of {spec.generator!r}; "
                                     f"generators are trained for {list(registry.generator_methods())}")
    return spec


def train_generator_stage(ds, method: str, cfg: StudyConfig, paths: RunPaths, progress: bool = True,
                          n_fixed: int = 16) -> dict[str, Any]:
    """Train (or resume) the StackGAN-v2 of ``method`` on the training images' embeddings."""
    import torch

    from s2ilib.training.gan_trainer import train_gan

    kind = generator_method(method).encoder
    run_cfg = paths.config_for(method) or cfg
    emb = load_embeddings(paths, ds.name, kind, method)
    train = ds.split("train")
    pos = {img: k for k, img in enumerate(train)}
    cond = np.asarray(emb["condition"])
    img = emb["image_idx"].numpy()
    keep = [r for r in range(len(img)) if img[r] in pos and cond[r] in ("seen", "text")]
    fixed = fixed_test_rows(emb, ds, n_fixed, run_cfg.seed, "text" if registry.encoder(kind).input == "text" else "seen")
    images = load_images_uint8(ds, train, gan_image_size(run_cfg), bbox_crop=run_cfg.gan.bbox_crop)
    out = paths.gan(ds.name, method)
    summary = train_gan(images, emb["emb"][keep], torch.tensor([pos[img[r]] for r in keep]),
                        torch.tensor([ds.images[i].class_index for i in train]), run_cfg.gan, out,
                        seed=run_cfg.training_seed, fixed_cond=emb["emb"][fixed], progress=progress,
                        device=device_of(run_cfg))
    if not is_lead(run_cfg.device):  # under torchrun rank 0 writes
        return {**summary, "n_train_images": len(train), "n_conditions": len(keep)}
    # What inference needs to go from speech to images with this generator.
    pipeline = {"dataset": ds.name, "method": method, "encoder": kind,
                "encoder_dir": str(paths.encoder(ds.name, kind, method)), "preset": run_cfg.preset,
                "fixed_rows": fixed, "fixed_texts": [ds.images[img[r]].captions[int(emb["caption_idx"][r])] for r in fixed],
                "n_train_images": len(train), "n_conditions": len(keep)}
    atomic_write_text(out / "pipeline.json", json.dumps(pipeline, indent=2) + "\n")
    write_variant_config(out, run_cfg, "gan", dataset=ds.name, method=method, encoder=kind)
    return {**summary, **reuse_info(summary), "n_train_images": len(train), "n_conditions": len(keep)}


def read_gan_log(run_dir: Path):
    """GAN log.jsonl as a DataFrame with one ``d_loss_<size>`` column per scale."""
    df = read_log(run_dir)
    summary = Path(run_dir) / "summary.json"
    sizes = json.loads(summary.read_text()).get("sizes") if summary.is_file() else None
    d = np.array(df.pop("d_loss").tolist())
    for k in range(d.shape[1]):
        df[f"d_loss_{sizes[k] if sizes else k}px"] = d[:, k]
    return df


# ------------------------------------------------------------------------------------------------
# 04 evaluation


def evaluate_methods(ds, cfg: StudyConfig, paths: RunPaths, methods, progress: bool = True,
                     **kwargs: Any) -> dict[str, Any]:
    """The main table of one dataset (:func:`s2ilib.evaluation.main.run_main_evaluation`) on
    ``cfg.device``, with the variant's config written beside ``eval/<dataset>/main.json``.

    Recorded speech (Places) reaches the two-stage method's ASR as the recorded wavs. Metrics the
    dataset cannot give are named with the reason under ``"skipped_metrics"`` of the result and in
    ``eval/<dataset>/skipped_metrics.json`` (a dataset without attribute labels has no attribute
    accuracy); FID, KID, IS and R-precision are computed as usual."""
    from s2ilib.data.datasets import has_recorded_speech
    from s2ilib.evaluation import main as evaluate

    if has_recorded_speech(ds):
        kwargs.setdefault("speak", speak_utterance)
    result = evaluate.run_main_evaluation(ds, cfg, paths, methods=list(methods), progress=progress,
                                          device=device_of(cfg), **kwargs)
    skipped = skipped_metrics(ds, result)
    atomic_write_text(paths.eval(ds.name) / "skipped_metrics.json", json.dumps(skipped, indent=2) + "\n")
    if skipped:  # said in the executed notebook, not only in the run folder
        print(f"[{ds.name}] not computed: {', '.join(skipped)}: {next(iter(skipped.values()))}")
    write_variant_config(paths.eval(ds.name), cfg, "eval", dataset=ds.name, methods=list(methods))
    return {**result, "skipped_metrics": skipped}


ATTRIBUTE_METRICS = ("attr_acc", "attr_acc_shuffled", "reader")


def skipped_metrics(ds, result: dict[str, Any]) -> dict[str, str]:
    """{metric: why it is missing from this dataset's main table} (empty when nothing is missing)."""
    if result.get("reader") is not None:
        return {}
    layout = getattr(ds, "layout", "") or "embedded"
    why = (f"dataset {ds.name!r} ({layout} layout) has no attribute labels (no attributes.json with a "
           f"vocabulary), so there is no attribute reader to score generated images with")
    return {m: why for m in ATTRIBUTE_METRICS}


def example_rows(ds, cfg: StudyConfig, paths: RunPaths, methods, n: int = 6, **kwargs: Any):
    """:func:`s2ilib.evaluation.main.example_rows` on ``cfg.device`` with the run's seed (recorded
    speech reaches the ASR as the recorded wavs, as in :func:`evaluate_methods`)."""
    from s2ilib.data.datasets import has_recorded_speech
    from s2ilib.evaluation import main as evaluate

    if has_recorded_speech(ds):
        kwargs.setdefault("speak", speak_utterance)

    return evaluate.example_rows(ds, paths, list(methods), n=n, seed=cfg.seed, device=device_of(cfg), **kwargs)
