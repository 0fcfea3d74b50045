"""Feature interpolation (paper Fig. 5), measured: is the embedding space linear in attributes?

For a pair of test utterances (unseen classes) whose captions name the same attribute with
different values, the generator draws ``f = a f1 + (1 - a) f2`` for ``a`` in 0, 1/8, ..., 1 with
ONE fixed noise; the attribute reader gives, at every ``a``, the probability of utterance 1's value
``p1(a)`` and of utterance 2's value ``p2(a)``. The transition curve is ``s(a) = p1(a) - p2(a)``
(-1: image shows utterance 2's value, +1: utterance 1's). Per curve (:func:`curve_metrics`):

* ``spearman``: rank correlation of ``s`` with ``a`` (1: strictly increasing);
* ``monotone``: 1 if ``s`` never drops by more than ``tol`` from one ``a`` to the next;
* ``r2``: R^2 of a least-squares line through ``s(a)`` (1: exactly linear);
* ``chord_dev``: largest distance of ``s(a)`` from the chord between ``s(0)`` and ``s(1)``;
* ``swing``: ``s(1) - s(0)`` (does the attribute change at all between the endpoints?);
* ``transition``: 1 if ``swing >= SWING_MIN``: the endpoints show the two values clearly enough
  for the shape in between to mean something. A flat curve (the generator does not draw the
  attribute) has a Spearman and an R^2 of noise, so linearity is judged on transitions only.

Summaries carry 95% bootstrap intervals over pairs (:func:`summarise_curves`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from s2ilib.core.device import bf16_autocast
from s2ilib.study.captions import register_figure, save_figure

CURVE_METRICS = ("spearman", "monotone", "r2", "chord_dev", "swing", "transition")
SWING_MIN = 0.2


def alphas(n: int = 9) -> np.ndarray:
    """``a`` = 0, 1/(n-1), ..., 1 (the paper's 1/8 steps for n = 9)."""
    return np.linspace(0.0, 1.0, n)


def differing_pairs(ds, queries, n_pairs: int, seed: int) -> list[dict[str, Any]]:
    """``n_pairs`` pairs of query rows (positions in ``queries``, of different test images) whose
    captions mention at least one attribute with different values: [{"i", "j", "text_i", "text_j",
    "diffs": [(attribute, value of i, value of j), ...]}], drawn with ``seed``."""
    from s2ilib.evaluation.queries import query_mentions

    mentions = query_mentions(ds, queries)
    img = queries["image_idx"].to_numpy()
    text = queries["text"].astype(str).tolist()
    rng = np.random.default_rng([int(seed), 7])
    pairs, seen, tries = [], set(), 0
    n = len(queries)
    while len(pairs) < n_pairs and tries < 200 * max(n_pairs, 1) and n >= 2:
        tries += 1
        i, j = (int(x) for x in rng.choice(n, 2, replace=False))
        if img[i] == img[j] or (i, j) in seen:
            continue
        diffs = [(a, v, mentions[j][a]) for a, v in sorted(mentions[i].items())
                 if a in mentions[j] and mentions[j][a] != v]
        if diffs:
            seen.add((i, j))
            pairs.append({"i": i, "j": j, "text_i": text[i], "text_j": text[j], "diffs": diffs})
    return pairs


def interpolated(f1: torch.Tensor, f2: torch.Tensor, a: Sequence[float]) -> torch.Tensor:
    """(len(a), D) rows ``a f1 + (1 - a) f2``."""
    w = torch.as_tensor(np.asarray(a), dtype=torch.float32)[:, None]
    return w * f1.float()[None] + (1.0 - w) * f2.float()[None]


@torch.no_grad()
def fixed_noise_images(generator, cond: torch.Tensor, seed: int, bf16: bool = True) -> torch.Tensor:
    """uint8 (N, 3, S, S): the final branch of ``generator`` for every row of ``cond`` with ONE
    noise (z and the conditioning-augmentation sample) drawn from ``seed`` and shared by all rows."""
    from s2ilib.models.loading import to_uint8

    g = torch.Generator().manual_seed(int(seed))
    n = len(cond)
    z = torch.randn(1, generator.z_dim, generator=g).expand(n, -1)
    eps = torch.randn(1, generator.ca_dim, generator=g).expand(n, -1)
    dev = next(generator.parameters()).device
    with bf16_autocast(bf16, dev):
        imgs, _, _ = generator(z.to(dev).contiguous(), cond.float().to(dev), eps=eps.to(dev).contiguous())
    return to_uint8(imgs[-1]).cpu()


def reader_probabilities(reader) -> Callable[[torch.Tensor], dict[str, torch.Tensor]]:
    """``probs(uint8 images) -> {attribute: (N, n_values)}`` of the attribute reader."""
    from s2ilib.evaluation.attribute_reader import _predict

    return lambda images: _predict(reader, reader.prepare(images))


def transition_curves(generator, f1: torch.Tensor, f2: torch.Tensor, pairs: list[dict[str, Any]],
                      probs_fn: Callable[[torch.Tensor], dict[str, torch.Tensor]], vocabulary: dict[str, list[str]],
                      a: Sequence[float], seed: int, bf16: bool = True) -> list[dict[str, Any]]:
    """One curve per (pair, differing attribute): {"pair", "attribute", "v1", "v2", "p1", "p2"}
    (lists over ``a``). ``f1``, ``f2``: (P, D) embeddings of each pair's utterances 1 and 2; the
    noise of pair k is drawn from ``seed + k`` and is the same at every ``a``."""
    curves = []
    for k, pair in enumerate(pairs):
        images = fixed_noise_images(generator, interpolated(f1[k], f2[k], a), seed + k, bf16=bf16)
        probs = probs_fn(images)
        for attr, v1, v2 in pair["diffs"]:
            vals = list(vocabulary[attr])
            p = probs[attr].float()
            curves.append({"pair": k, "attribute": attr, "v1": v1, "v2": v2,
                           "p1": p[:, vals.index(v1)].tolist(), "p2": p[:, vals.index(v2)].tolist()})
    return curves


def curve_metrics(s: Sequence[float], a: Sequence[float], tol: float = 0.02) -> dict[str, float]:
    """Monotonicity and linearity of one transition curve ``s(a)`` (see the module docstring)."""
    from scipy.stats import spearmanr

    s, a = np.asarray(s, dtype=np.float64), np.asarray(a, dtype=np.float64)
    flat = np.ptp(s) == 0.0
    rho = 0.0 if flat else float(spearmanr(a, s).statistic)
    fit = np.polyval(np.polyfit(a, s, 1), a)
    ss_tot = float(((s - s.mean()) ** 2).sum())
    r2 = 1.0 if flat else 1.0 - float(((s - fit) ** 2).sum()) / ss_tot
    chord = s[0] + (a - a[0]) / (a[-1] - a[0]) * (s[-1] - s[0])
    return {"spearman": rho, "monotone": float(np.all(np.diff(s) >= -tol)), "r2": r2,
            "chord_dev": float(np.abs(s - chord).max()), "swing": float(s[-1] - s[0]),
            "transition": float(s[-1] - s[0] >= SWING_MIN)}


def curve_table(curves: list[dict[str, Any]], a: Sequence[float]):
    """One row per curve: pair, attribute, values and :func:`curve_metrics` of ``p1 - p2``."""
    import pandas as pd

    rows = [{"pair": c["pair"], "attribute": c["attribute"], "v1": c["v1"], "v2": c["v2"],
             **curve_metrics(np.subtract(c["p1"], c["p2"]), a)} for c in curves]
    return pd.DataFrame(rows, columns=["pair", "attribute", "v1", "v2", *CURVE_METRICS])


def summarise_curves(table, seed: int = 0) -> dict[str, Any]:
    """Mean of every curve metric with its 95% bootstrap interval over pairs (a pair's curves stay
    together): {metric: {"mean", "low", "high"}, "n_curves", "n_pairs"}."""
    from s2ilib.evaluation import stats

    out: dict[str, Any] = {"n_curves": int(len(table)), "n_pairs": int(table["pair"].nunique()) if len(table) else 0}
    for m in CURVE_METRICS:
        x = table[m].to_numpy(dtype=np.float64) if len(table) else np.zeros(0)
        if x.size == 0:
            out[m] = {"mean": float("nan"), "low": float("nan"), "high": float("nan")}
            continue
        g = table["pair"].to_numpy()
        if np.unique(g).size < 2 and np.ptp(x) > 0:
            out[m] = {"mean": float(x.mean()), "low": float("nan"), "high": float("nan")}
            continue
        ci = stats.bootstrap_ci(x, n_boot=1000, seed=seed, groups=g)
        out[m] = {"mean": ci.estimate, "low": ci.low, "high": ci.high}
    return out


def mean_curve(curves: list[dict[str, Any]], a: Sequence[float], seed: int = 0):
    """Mean ``p1(a)``, ``p2(a)`` and ``s(a)`` over curves with 95% intervals over pairs, one row per a."""
    import pandas as pd

    from s2ilib.evaluation import stats

    rows = []
    g = np.array([c["pair"] for c in curves])
    for k, ak in enumerate(a):
        row = {"a": float(ak)}
        for name, fn in (("p1", lambda c: c["p1"][k]), ("p2", lambda c: c["p2"][k]),
                         ("s", lambda c: c["p1"][k] - c["p2"][k])):
            x = np.array([fn(c) for c in curves], dtype=np.float64)
            if x.size and np.unique(g).size >= 2:
                ci = stats.bootstrap_ci(x, n_boot=500, seed=seed, groups=g)
                row.update({name: ci.estimate, f"{name}_low": ci.low, f"{name}_high": ci.high})
            else:
                row.update({name: float(x.mean()) if x.size else float("nan"),
                            f"{name}_low": float("nan"), f"{name}_high": float("nan")})
        rows.append(row)
    return pd.DataFrame(rows)


def interpolation_study(ds, cfg, paths, methods: Sequence[str] = ("one_stage", "text"), n_pairs: int = 150,
                        figure_pairs: int = 4, progress: bool = False) -> dict[str, Any]:
    """Fig. 5 of one dataset, measured: pairs of test utterances of unseen classes (seen voices)
    whose captions differ in named attributes, interpolated through each method's generator of
    notebook 03 (``methods``: a speech method and the text upper bound, which interpolates the
    text embeddings of the same captions) and read by notebook 04's attribute reader.

    Returns {"pairs", "alphas", "curves": {method: [...]}, "tables": {method: DataFrame},
    "summaries": {method: ...} (every curve), "summaries_transitions" (curves with ``transition``), "mean_curves": {method: DataFrame}, "images": {method: [uint8 rows]},
    "image_size", "timings"}."""
    import time

    from s2ilib.core import registry
    from s2ilib.evaluation.main import method_queries
    from s2ilib.evaluation.queries import embedding_cache, lookup_embeddings
    from s2ilib.evaluation.references import generators_bbox_crop, study_reader
    from s2ilib.evaluation.scoring import load_method_generator
    from s2ilib.study.paths import device_of

    t0 = time.perf_counter()
    device, ev = device_of(cfg), cfg.eval
    gens = {m: load_method_generator(paths, ds.name, m, device) for m in methods}
    crop = generators_bbox_crop(gens, ds)
    size = next(iter(gens.values())).sizes[-1]
    reader = study_reader(ds, paths, cfg, size, crop, progress=progress)
    q = method_queries(ds, methods[0], "seen", ev, cfg.seed)
    pairs = differing_pairs(ds, q, n_pairs, cfg.seed)
    qi, qj = (q.iloc[[p[k] for p in pairs]] for k in ("i", "j"))
    embs = embedding_cache(paths, ds.name)
    a = alphas()
    out: dict[str, Any] = {"dataset": ds.name, "pairs": pairs, "alphas": a.tolist(), "curves": {}, "tables": {}, "summaries": {},
                           "summaries_transitions": {}, "mean_curves": {}, "images": {}, "image_size": size,
                           "timings": {"setup_s": time.perf_counter() - t0}}
    probs = reader_probabilities(reader)
    for m in methods:
        t1 = time.perf_counter()
        kind = registry.method(m).encoder
        f1, f2 = lookup_embeddings(embs(kind), qi, kind), lookup_embeddings(embs(kind), qj, kind)
        curves = transition_curves(gens[m], f1, f2, pairs, probs, ds.vocabulary, a, cfg.seed, bf16=cfg.gan.bf16)
        table = curve_table(curves, a)
        out["curves"][m], out["tables"][m] = curves, table
        out["summaries"][m] = summarise_curves(table, seed=cfg.seed)
        out["summaries_transitions"][m] = summarise_curves(table[table["transition"] == 1.0], seed=cfg.seed)
        out["mean_curves"][m] = mean_curve(curves, a, seed=cfg.seed)
        out["images"][m] = [fixed_noise_images(gens[m], interpolated(f1[k], f2[k], a), cfg.seed + k, bf16=cfg.gan.bf16)
                            for k in range(min(figure_pairs, len(pairs)))]
        out["timings"][f"{m}_s"] = time.perf_counter() - t1
    return out


def interpolation_figure(result: dict[str, Any], k: int, path=None, dataset: str = ""):
    """Pair ``k``: one row of images per method along a = 0 .. 1 (:func:`s2ilib.study.grids.interpolation_grid`)."""
    from s2ilib.study.grids import interpolation_grid

    return interpolation_grid(dataset or result.get("dataset", ""), result, k, path=path)


@register_figure("07_{dataset}_curves.png",
                 "Interpolation on {dataset}: the attribute reader's mean probability of utterance 1's value "
                 "(solid) and utterance 2's (dashed) along a, per method; bands are 95% intervals over "
                 "{n_pairs} pairs.")
def curve_figure(result: dict[str, Any], path=None, dataset: str = ""):
    """Mean p(utterance 1's value) and p(utterance 2's value) along a, per method, with 95% bands."""
    import matplotlib.pyplot as plt

    dataset = dataset or result.get("dataset", "")
    n_pairs = len(result["pairs"])
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for m, df in result["mean_curves"].items():
        for name, style in (("p1", "-"), ("p2", "--")):
            line, = ax.plot(df["a"], df[name], style, label=f"{m}: p({'utt. 1' if name == 'p1' else 'utt. 2'} value)")
            ax.fill_between(df["a"], df[f"{name}_low"], df[f"{name}_high"], color=line.get_color(), alpha=0.15)
    ax.set_xlabel("a  (f = a f1 + (1 - a) f2)")
    ax.set_ylabel("reader probability")
    ax.set_title(f"{dataset}: transition curves, 95% bands over {n_pairs} pairs", fontsize=9)
    ax.legend(fontsize=6)
    fig.tight_layout()
    return save_figure(fig, path, "curve_figure", dataset=dataset, n_pairs=n_pairs)
