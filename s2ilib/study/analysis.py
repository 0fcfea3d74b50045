"""Analyses of the trained models the notebooks show: retrieval, embedding maps, generated images,
noise-versus-speech variation and inference latency. Every model is loaded from the run's variant
folders (:class:`s2ilib.study.paths.RunPaths`) onto ``cfg.device``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from s2ilib.core import registry
from s2ilib.core.config import StudyConfig
from s2ilib.data.images import load_images_uint8
from s2ilib.study.paths import RunPaths, device_of
from s2ilib.study.stages import gan_image_size, load_embeddings
from s2ilib.data.validation import record_splits

RETRIEVAL_METRICS = ("recall@1", "recall@5", "recall@10", "map_class", "centroid_acc", "ap@50")


# ------------------------------------------------------------------------------------------------
# encoders (notebook 02)


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


def needs_probe(kind: str) -> bool:
    """Encoders whose output is not in the teacher's space (classifier-based) are probed."""
    return registry.encoder(kind).objective != "teacher_student"


def encoder_retrieval(ds, paths: RunPaths, teacher_feats, kinds=None) -> dict[str, dict[str, dict]]:
    """Test-class retrieval per encoder and condition: {kind: {condition: {metric: value}}}.

    Classifier-based encoders are evaluated through :func:`linear_probe` (their raw output is not
    in the teacher's space); the others as they are. ``kinds`` default: every registered encoder.
    """
    from s2ilib.training.encoder_trainer import evaluate_retrieval

    out = {}
    for kind in registry.encoder_names() if kinds is None else kinds:
        emb = load_embeddings(paths, ds.name, kind)
        if needs_probe(kind):
            emb = linear_probe(emb, ds, teacher_feats)
        out[kind] = evaluate_retrieval(emb, ds, teacher_feats)
    return out


def retrieval_frame(results: dict[str, dict[str, dict]], metrics=RETRIEVAL_METRICS):
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
# generators (notebook 03)


def test_utterance_rows(ds, n: int, seed: int, condition: str = "seen") -> list[int]:
    """``n`` store rows of test utterances from distinct unseen classes (deterministic)."""
    idx = ds.speech.index
    rng = np.random.default_rng(seed)
    rows = idx.index[(record_splits(ds, idx) == "test") & (idx["condition"] == condition)].to_numpy()
    by_class: dict[int, list[int]] = {}
    for r in rows:
        by_class.setdefault(ds.images[int(idx.at[r, "image_idx"])].class_index, []).append(int(r))
    classes = sorted(by_class)
    rng.shuffle(classes)
    return [int(rng.choice(by_class[c])) for c in classes[:n]]


def load_generator_for(paths: RunPaths, dataset: str, method: str, device: str = "cpu"):
    from s2ilib.models.loading import GENERATOR_EMA, load_generator

    path = paths.gan(dataset, registry.method(method).generator) / GENERATOR_EMA
    if not path.is_file():
        raise FileNotFoundError(f"{path}: generator {method!r} not trained; run notebook 03 with this "
                                f"preset and these overrides")
    return load_generator(path, device=device)


def speech_embedding_rows(paths: RunPaths, dataset: str, kind: str, store_rows: list[int],
                          method: str | None = None):
    """Embeddings (len(rows), D) of store rows (speech encoders export rows in store order)."""
    emb = load_embeddings(paths, dataset, kind, method)
    return emb["emb"][list(store_rows)]


def real_images_for_utterances(ds, rows: list[int], cfg: StudyConfig):
    """uint8 (len(rows), 3, S, S): the real image each store row describes, as the generators see
    it (their resolution; the bounding-box crop when ``cfg.gan.bbox_crop``)."""
    image_idx = [int(ds.speech.index.at[r, "image_idx"]) for r in rows]
    return load_images_uint8(ds, image_idx, gan_image_size(cfg), bbox_crop=cfg.gan.bbox_crop)


def _speech_generator(paths: RunPaths, dataset: str, method: str, rows: list[int]):
    spec = registry.method(method)
    if spec.query != "speech":
        raise registry.RegistryError(f"method {method!r} is not queried with speech embeddings")
    dev = device_of(paths.cfg) if paths.cfg is not None else "cpu"
    gen = load_generator_for(paths, dataset, method, dev)
    return gen, speech_embedding_rows(paths, dataset, spec.encoder, rows, method)


def images_for_utterances(ds, paths: RunPaths, method: str, rows: list[int], n: int = 8, seed: int = 0):
    """For each store row: uint8 (n, 3, S, S) images from ``n`` noise draws (same noise per row)."""
    from s2ilib.models.loading import generate

    gen, cond = _speech_generator(paths, ds.name, method, rows)
    return [generate(gen, c, n=n, seed=seed) for c in cond]


def matched_vs_shuffled(ds, paths: RunPaths, method: str, rows: list[int], seed: int = 0):
    """Same noise per column; row 0: matched speech, row 1: speech of another row (a derangement).

    Returns (matched uint8 (k,3,S,S), shuffled uint8 (k,3,S,S), shuffled order).
    """
    from s2ilib.models.loading import generate

    gen, cond = _speech_generator(paths, ds.name, method, rows)
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


def inference_latency(gan_dir: Path, text: str, n: int = 8, repeats: int = 3, device: str = "auto") -> dict[str, Any]:
    """Seconds from a spoken sentence's waveform to ``n`` images (median of ``repeats``) on ``device``."""
    import time

    from s2ilib.models.pipeline import SpeechToImage
    from s2ilib.speech.tts import Voice, get_engine

    t0 = time.time()
    pipe = SpeechToImage(gan_dir, device=device)
    load_s = time.time() - t0
    wave = get_engine("espeak").synthesize(text, Voice(), sr=16000)
    times = []
    for k in range(repeats):
        t = time.time()
        pipe.from_wave(wave, n=n, seed=k)
        times.append(time.time() - t)
    return {"load_s": round(load_s, 3), "wave_to_images_s": round(float(np.median(times)), 4),
            "n_images": n, "utterance_s": round(len(wave) / 16000, 2), "device": str(pipe.device)}


def latency_sentence(dataset_kind: str) -> str:
    """A spoken sentence typical of a dataset (``birds`` / ``flowers``) for the latency figure."""
    if dataset_kind == "birds":
        return "this bird has a red head and a white belly"
    return "this flower has pink petals and a yellow center"


# ------------------------------------------------------------------------------------------------
# main results (notebook 04)


def method_comparison_grid(examples: list[dict[str, Any]], methods, title: str, path=None):
    """One row per method (+ the real image), one column per test utterance (same noise per column);
    ``title`` is the dataset (:func:`s2ilib.study.grids.method_grid`)."""
    from s2ilib.study.grids import method_grid

    asr = [m for m in methods if registry.method(m).query == "asr"]
    return method_grid(title, examples, list(methods), asr, path=path)


# ------------------------------------------------------------------------------------------------
# where the information goes (notebook 04)


def _probe_hits(x_train, y_train, x_test, y_test, C: float, seed: int, max_train: int) -> np.ndarray:
    """Per test row 1 / 0: does a linear probe (multinomial logistic regression on standardised
    features, fitted on the training rows) predict the row's value?"""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    if len(x_train) > max_train:
        keep = np.sort(np.random.default_rng(seed).choice(len(x_train), max_train, replace=False))
        x_train, y_train = x_train[keep], y_train[keep]
    if len(np.unique(y_train)) < 2:  # one value in training: the probe predicts it
        return (y_test == y_train[0]).astype(np.float64)
    scaler = StandardScaler().fit(x_train)
    clf = LogisticRegression(C=C, max_iter=300, random_state=seed)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence notices: the probe is a measurement, not a model
        clf.fit(scaler.transform(x_train), y_train)
    return (clf.predict(scaler.transform(x_test)) == y_test).astype(np.float64)


def _info_row(stage: str, source: str, hits: dict[str, np.ndarray], groups: dict[str, np.ndarray],
              families, seed: int) -> dict[str, Any]:
    """One row of the information table: accuracy per family, their mean, and the pooled accuracy
    over every (item, family) with its 95% bootstrap interval over test images."""
    from s2ilib.evaluation import stats

    row: dict[str, Any] = {"stage": stage, "source": source}
    pooled, pooled_g = [], []
    for a in families:
        h = np.asarray(hits.get(a, []), dtype=np.float64)
        g = np.asarray(groups.get(a, []))
        keep = np.isfinite(h)
        h, g = h[keep], g[keep]
        row[a] = float(h.mean()) if h.size else float("nan")
        pooled.append(h)
        pooled_g.append(g)
    fam = [row[a] for a in families if np.isfinite(row[a])]
    row["mean"] = float(np.mean(fam)) if fam else float("nan")
    h, g = np.concatenate(pooled) if pooled else np.zeros(0), np.concatenate(pooled_g) if pooled_g else np.zeros(0)
    if h.size and np.unique(g).size >= 2:
        ci = stats.bootstrap_ci(h, n_boot=1000, seed=seed, groups=g)
        row.update(pooled=ci.estimate, low=ci.low, high=ci.high, n=ci.n, n_test_images=ci.n_groups)
    else:
        row.update(pooled=float(h.mean()) if h.size else float("nan"), low=float("nan"), high=float("nan"),
                   n=int(h.size), n_test_images=int(np.unique(g).size))
    return row


def hits_and_groups(col: dict[str, Any], families) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per-item scores of one method (``hit_<family>`` columns and ``image_idx``) -> the per-family
    hits and image groups of an information-table row."""
    from s2ilib.evaluation.items import HIT_PREFIX

    hits = {a: np.asarray(col[HIT_PREFIX + a], dtype=np.float64) for a in families if HIT_PREFIX + a in col}
    return hits, {a: np.asarray(col["image_idx"]) for a in hits}


def attribute_information_table(ds, teacher_feats=None, embeddings: dict[str, dict[str, Any]] | None = None,
                                items: dict[str, dict[str, Any]] | None = None, methods=None,
                                condition: str = "seen", C: float = 1.0, max_train: int = 8000, seed: int = 0):
    """How much of each attribute survives each step, on the UNSEEN (test) classes: one row per
    source, one column per attribute family (accuracy), their ``mean``, and the ``pooled`` accuracy
    over every (item, family) with its 95% interval over test images (``low``, ``high``, ``n``).

    * (a) ``teacher_feats`` (n_images, views, D) or (n_images, D): a linear probe per family
      (logistic regression fitted on the TRAINING classes' images) reads the image's own value
      from the teacher's features of the real test images;
    * (b) ``embeddings`` {kind: embeddings.pt dict} (e.g. speech_ts, speech_cls, text_ts): a probe
      per family fitted on the training captions' embeddings reads the value the CAPTION mentions
      (rows whose caption mentions the family; speech: test utterances of ``condition``);
    * (c) ``items`` {"method/condition": per-item scores of the main evaluation}: the attribute
      reader on each method's generated images against its caption's mentions (``hit_<family>``
      columns; text queries under ``groundtruth_text``), ``methods`` in order (default: all found).
    Returns a DataFrame (stage, source, families..., mean, pooled, low, high, n, n_test_images).
    """
    import pandas as pd

    families = list(ds.vocabulary)
    train, test = set(ds.split("train")), set(ds.split("test"))
    rows = []
    if teacher_feats is not None:
        import torch

        x = torch.as_tensor(teacher_feats).float()
        x = (x.mean(1) if x.dim() == 3 else x).numpy()
        tr = np.array(sorted(train))
        te = np.array(sorted(test))
        hits, groups = {}, {}
        for a in families:
            ytr = np.array([str(ds.images[i].attributes.get(a, "")) for i in tr])
            yte = np.array([str(ds.images[i].attributes.get(a, "")) for i in te])
            mtr, mte = ytr != "", yte != ""
            if mtr.sum() and mte.sum():
                hits[a] = _probe_hits(x[tr[mtr]], ytr[mtr], x[te[mte]], yte[mte], C, seed, max_train)
                groups[a] = te[mte]
        rows.append(_info_row("(a) teacher features of real images", "teacher", hits, groups, families, seed))
    for kind, emb in (embeddings or {}).items():
        x = emb["emb"].float().numpy()
        img = np.asarray(emb["image_idx"]).astype(int)
        cap = np.asarray(emb["caption_idx"]).astype(int)
        cond = np.asarray(emb.get("condition", ["text"] * len(img)))
        is_tr = np.array([i in train for i in img])
        is_te = np.array([i in test for i in img]) & ((cond == condition) | (cond == "text"))
        hits, groups = {}, {}
        for a in families:
            val = np.array([str((ds.images[i].caption_attributes[c] if c < len(ds.images[i].caption_attributes)
                                 else {}).get(a, "")) for i, c in zip(img, cap)])
            mtr, mte = is_tr & (val != ""), is_te & (val != "")
            if mtr.sum() and mte.sum():
                hits[a] = _probe_hits(x[mtr], val[mtr], x[mte], val[mte], C, seed, max_train)
                groups[a] = img[mte]
        rows.append(_info_row("(b) caption embeddings", kind, hits, groups, families, seed))
    parts = items or {}
    order = list(methods) if methods is not None else list(dict.fromkeys(k.split("/")[0] for k in parts))
    for method in order:
        key = next((k for k in (f"{method}/{condition}", f"{method}/{registry.TEXT_CONDITION}") if k in parts), None)
        if key is None:
            continue
        rows.append(_info_row("(c) reader on generated images", key, *hits_and_groups(parts[key], families),
                              families, seed))
    cols = ["stage", "source", *families, "mean", "pooled", "low", "high", "n", "n_test_images"]
    return pd.DataFrame(rows, columns=cols)


def information_tables(datasets: dict[str, Any], cfg: StudyConfig, paths: RunPaths, items: dict[str, dict],
                       methods, condition: str = "seen", train_queries: int = 2000):
    """:func:`attribute_information_table` of every dataset from the run's cached teacher features,
    its encoders' exported embeddings and the main evaluation's per-item scores: one DataFrame
    with a ``dataset`` column first. ``train_queries`` > 0 adds stage (d): the reader on images
    generated from that many captions of the TRAINING classes (one per caption; methods with a
    generator of their own, :func:`s2ilib.evaluation.train_classes.train_class_items`), whose
    interval is over training images; next to (c) it tells underfitting from a generalisation gap."""
    import pandas as pd

    from s2ilib.evaluation.train_classes import train_class_items
    from s2ilib.study.stages import teacher_features

    frames = []
    for name, ds in datasets.items():
        embs = {}
        for kind in registry.encoder_names():
            try:
                embs[kind] = load_embeddings(paths, name, kind)
            except FileNotFoundError:
                continue
        table = attribute_information_table(ds, teacher_features(ds, cfg, paths, progress=False), embs,
                                            items.get(name), methods, condition=condition, seed=cfg.seed)
        if train_queries > 0 and ds.vocabulary:
            extra = [_info_row("(d) reader on images from training-class captions", f"{m}/train",
                               *hits_and_groups(col, list(ds.vocabulary)), list(ds.vocabulary), cfg.seed)
                     for m, col in train_class_items(ds, cfg, paths, methods, n=train_queries).items()]
            table = pd.concat([table, pd.DataFrame(extra, columns=table.columns)], ignore_index=True)
        frames.append(table.assign(dataset=name))
    out = pd.concat(frames, ignore_index=True)
    return out[["dataset", *[c for c in out.columns if c != "dataset"]]]
