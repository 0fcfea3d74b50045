"""Tables, claims, figures and the results section of notebook 08 (:mod:`s2ilib.study.robustness`).

The claim "one-stage beats two-stage" is decided per (dataset, condition, metric) from the paired
interval of the difference on the same utterances and noise
(:func:`s2ilib.evaluation.items.paired_comparison`, bootstrap over test images, sign-flip p-value,
:func:`s2ilib.evaluation.stats.verdict`); a condition's verdict holds when every metric holds and
fails when any fails (:func:`verdicts`).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from s2ilib.speech import perturb
from s2ilib.study.ablation_report import _num
from s2ilib.study.robustness_speech import ROOMS, family, robustness_dir

METRICS = ("attr_acc", "r_precision", "attr_acc_shuffled")  # per generated image, with intervals
CLAIM = "one-stage beats two-stage"
CLAIM_METRICS = ("attr_acc", "r_precision")
TABLE_COLUMNS = ["dataset", "method", "condition", "family", "metric", "value", "low", "high", "n", "n_groups"]


def long_table(results: dict[str, dict[str, Any]]):
    """One row per (dataset, method, condition, metric): value, 95% interval, n (items: generated
    images, or reference words for ``wer``) and n_groups (test images). ``results``: {dataset: study}."""
    import pandas as pd

    rows = []
    for name, r in results.items():
        for m, cells in r["cells"].items():
            for cond, c in cells.items():
                for metric in (*METRICS, "wer"):
                    if c.get(metric) is None and metric == "wer":
                        continue
                    lo, hi = (c.get(f"{metric}_ci") or [None, None])
                    n = c.get("wer_n_words") if metric == "wer" else c.get(f"{metric}_n")
                    rows.append({"dataset": name, "method": m, "condition": cond, "family": family(cond),
                                 "metric": metric, "value": _num(c.get(metric)), "low": _num(lo), "high": _num(hi),
                                 "n": n, "n_groups": c.get(f"{metric}_n_groups")})
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def wide_table(long, metric: str):
    """(dataset, method) x condition of one metric as ``value [low, high]`` strings."""
    df = long[long["metric"] == metric].copy()
    df["cell"] = [f"{v:.3f} [{lo:.3f}, {hi:.3f}]" for v, lo, hi in zip(df["value"], df["low"], df["high"])]
    order = list(dict.fromkeys(df["condition"]))
    wide = df.pivot_table(index=["dataset", "method"], columns="condition", values="cell", aggfunc="first")
    return wide[[c for c in order if c in wide.columns]]


def claims(results: dict[str, dict[str, Any]], seed: int = 0, ours: str = "one_stage", other: str = "two_stage"):
    """"One-stage beats two-stage" per (dataset, condition, metric): the paired difference on the same
    utterances and noise (:func:`s2ilib.evaluation.items.paired_comparison`, bootstrap over test
    images, sign-flip p-value), decided by :func:`s2ilib.study.claims.finalize` (Holm over the file)."""
    import pandas as pd

    from s2ilib.evaluation.items import paired_comparison
    from s2ilib.study.claims import finalize

    rows = []
    for name, r in results.items():
        if ours not in r["items"] or other not in r["items"]:
            continue
        for cond in r["conditions"]:
            for metric in CLAIM_METRICS:
                d = paired_comparison(r["items"][ours][cond], r["items"][other][cond], metric, seed=seed)
                lo, hi, p = float(d["low"]), float(d["high"]), float(d.get("p_value", math.nan))
                rows.append({"dataset": name, "condition": cond, "family": family(cond), "claim": CLAIM,
                             "comparison": f"{ours} - {other}", "metric": metric, "rule": "higher",
                             "margin": math.nan, "estimate": float(d["estimate"]), "low": lo, "high": hi,
                             "p_value": p, "n": int(d.get("n", 0))})
    columns = ["dataset", "condition", "family", "claim", "comparison", "metric", "rule", "margin", "estimate",
               "low", "high", "p_value", "p_rule", "p_holm", "n", "verdict"]
    return finalize(pd.DataFrame(rows, columns=[c for c in columns if c not in ("p_rule", "p_holm", "verdict")]))[columns]


def verdicts(claim_df):
    """One verdict per (dataset, condition): holds if every metric's comparison holds, fails if any fails."""
    import pandas as pd

    out = []
    for (name, cond), g in claim_df.groupby(["dataset", "condition"], sort=False):
        v = list(g["verdict"])
        verdict = "holds" if all(x == "holds" for x in v) else "fails" if "fails" in v else "undecided"
        out.append({"dataset": name, "condition": cond, "claim": CLAIM, "verdict": verdict,
                    **{f"{m}_verdict": x for m, x in zip(g["metric"], v)}})
    return pd.DataFrame(out, columns=["dataset", "condition", "claim", "verdict",
                                      *(f"{m}_verdict" for m in CLAIM_METRICS)])


FIGURE_METRICS = {"attr_acc": "attribute accuracy", "r_precision": "R-precision", "wer": "WER (ASR)"}


def _panels(conditions: Sequence[str]) -> list[tuple[str, list[str], list[str]]]:
    """(title, conditions, x labels) per figure column: one per noise kind along falling SNR (clean
    first), then the other conditions (clean, engine, reverb, rates)."""
    out = []
    for kind in perturb.NOISE_KINDS:
        conds = sorted((c for c in conditions if family(c) == "noise" and perturb.condition(c).noise == kind),
                       key=lambda c: -perturb.condition(c).snr_db)
        if conds:
            labels = ["clean", *(f"{perturb.condition(c).snr_db:g} dB" for c in conds)]
            out.append((f"{kind} noise", ["clean", *conds], labels))
    rest = [c for c in conditions if family(c) not in ("noise",)]
    if len(rest) > 1:
        out.append(("engine, room, rate", rest, rest))
    return out


def curve_figure(long, dataset: str, path=None, chance: float | None = None):
    """Attribute accuracy, R-precision and WER against condition, one line per method with its 95%
    interval (error bars), one column per noise kind along SNR plus one of the other conditions.
    Dotted: the shuffled-caption floor of attribute accuracy (one-stage, clean) and ``chance``, the
    R-precision of a random ranking (``r_precision_chance`` of a cell)."""
    import matplotlib.pyplot as plt

    from s2ilib.study import plots

    df = long[long["dataset"] == dataset]
    metrics = [m for m in FIGURE_METRICS if (df["metric"] == m).any()]
    panels = _panels(list(dict.fromkeys(df["condition"])))
    fig, axes = plt.subplots(len(metrics), len(panels), figsize=(3.4 * len(panels), 2.6 * len(metrics)),
                             squeeze=False, sharey="row")
    methods = list(dict.fromkeys(df["method"]))
    floor = df[(df["metric"] == "attr_acc_shuffled") & (df["method"] == methods[0]) & (df["condition"] == "clean")]
    for i, metric in enumerate(metrics):
        for j, (title, conds, labels) in enumerate(panels):
            ax = axes[i, j]
            for k, m in enumerate(methods):
                sel = df[(df["method"] == m) & (df["metric"] == metric)].set_index("condition").reindex(conds)
                if sel["value"].isna().all():
                    continue
                x = np.arange(len(conds)) + (k - (len(methods) - 1) / 2) * 0.08
                err = np.abs(np.stack([sel["value"] - sel["low"], sel["high"] - sel["value"]]).astype(float))
                ax.errorbar(x, sel["value"], yerr=np.nan_to_num(err), marker="o", ms=3, capsize=2, lw=1,
                            ls="-" if "noise" in title else "none", label=m, color=f"C{k}")
            if metric == "attr_acc" and len(floor):
                ax.axhline(float(floor["value"].iloc[0]), color="grey", ls=":", lw=1)
            if metric == "r_precision" and chance is not None:
                ax.axhline(float(chance), color="grey", ls=":", lw=1)
            ax.set_xticks(range(len(conds)), labels, rotation=30, fontsize=7)
            ax.set_title(title if i == 0 else "", fontsize=9)
            if j == 0:
                ax.set_ylabel(FIGURE_METRICS[metric], fontsize=8)
    axes[0, -1].legend(fontsize=7)
    fig.suptitle(f"{dataset}: speech the encoders never heard", fontsize=10)
    fig.tight_layout()
    return plots.save(fig, path)


def section(cfg, sched: dict[str, Any], results: dict[str, dict[str, Any]], claim_df, verdict_df,
            timings: dict[str, Any]) -> dict[str, Any]:
    """The ``robustness`` section of results.json: per dataset the cells (every metric with its
    interval and n), the claims and verdicts, the conditions, methods, query counts and timings,
    with provenance (preset, seed, variant, eval config) and the schedule; NaN stored as null."""
    from s2ilib.study.ablation_report import section_payload

    per_dataset = {}
    for name, r in results.items():
        per_dataset[name] = {"methods": r["methods"], "conditions": r["conditions"],
                             "families": {c: family(c) for c in r["conditions"]}, "n_queries": r["n_queries"],
                             "n_test_images": r["n_test_images"], "cells": r["cells"], "timings": r["timings"],
                             "claims": claim_df[claim_df["dataset"] == name].to_dict("records"),
                             "verdicts": verdict_df[verdict_df["dataset"] == name].to_dict("records")}
    return section_payload(cfg, sched, per_dataset, timings)


def condition_table(conditions: Sequence[str]) -> list[dict[str, Any]]:
    """One row per condition: its family, source speech and parameters."""
    from s2ilib.speech.piper import default_voice

    rows = []
    for c in conditions:
        fam = family(c)
        p = perturb.condition(c) if fam != "engine" else None
        rows.append({"condition": c, "family": fam,
                     "speech": f"piper {default_voice().name}" if fam == "engine" else "espeak, training voices",
                     "noise": p.noise if p else None, "snr_db": p.snr_db if p else None,
                     "rate": p.rate if p else None,
                     "room": f"{ROOMS} rooms, RT60 {perturb.RT60_S} s nominal" if fam == "reverb" else None})
    return rows


def spectrogram_conditions(conditions: Sequence[str]) -> list[str]:
    """The conditions shown as spectrograms: clean, the engine, each noise at its lowest SNR, reverb, rates."""
    noisy = {}
    for c in conditions:
        if family(c) == "noise":
            k = perturb.condition(c).noise
            if k not in noisy or perturb.condition(c).snr_db < perturb.condition(noisy[k]).snr_db:
                noisy[k] = c
    return [c for c in conditions if family(c) != "noise" or c in noisy.values()]


def spectrogram_figure(paths, dataset: str, result: dict[str, Any], k: int = 0, path=None):
    """Log-mel features of the ``k``-th query utterance under the conditions of
    :func:`spectrogram_conditions`, read from the cached condition stores."""
    import matplotlib.pyplot as plt

    from s2ilib.speech.features import FeatureStore
    from s2ilib.study import plots

    utt = result["items"][result["methods"][0]]["clean"]["utt_id"][k]
    conds = spectrogram_conditions(result["conditions"])
    ncols = 3
    nrows = math.ceil(len(conds) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 1.9 * nrows), squeeze=False)
    for ax, c in zip(axes.flat, conds):
        store = FeatureStore.open(robustness_dir(paths, dataset) / c)
        row = int(np.flatnonzero(store.index["utt_id"].astype(str).to_numpy() == str(utt))[0])
        f = store.get(row)
        ax.imshow(f, origin="lower", aspect="auto", extent=(0, f.shape[1] / 100, 0, f.shape[0]), cmap="magma")
        ax.set_title(c, fontsize=8)
    for ax in axes.flat[len(conds):]:
        ax.axis("off")
    text = str(store.index.iloc[row]["text"])
    fig.suptitle(f"{dataset}, {utt}: \"{text}\" (x: s, y: mel band)", fontsize=9)
    fig.tight_layout()
    return plots.save(fig, path)


def verdict_summary(verdict_df) -> list[str]:
    """Per dataset: the conditions where one-stage beats two-stage on every metric, where two-stage is
    ahead on one, and where the intervals cannot tell; then the same per metric."""
    fmt = lambda cs: ", ".join(f"`{c}`" for c in cs) or "none"  # noqa: E731
    lines = []
    for name, g in verdict_df.groupby("dataset", sort=False):
        by = {v: list(g.loc[g["verdict"] == v, "condition"]) for v in ("holds", "fails", "undecided")}
        lines.append(f"**{name}**: one-stage beats two-stage in {len(by['holds'])} of {len(g)} conditions "
                     f"({fmt(by['holds'])}); two-stage is ahead on at least one metric in "
                     f"{len(by['fails'])} ({fmt(by['fails'])}); undecided in {len(by['undecided'])} "
                     f"({fmt(by['undecided'])}).")
        for m in CLAIM_METRICS:
            col = g[f"{m}_verdict"]
            lines.append(f"{name}, {m} alone: one-stage ahead in {fmt(g.loc[col == 'holds', 'condition'])}; "
                         f"two-stage ahead in {fmt(g.loc[col == 'fails', 'condition'])}.")
    return lines


def transcript_examples(results: dict[str, dict[str, Any]], conditions: Sequence[str], n: int = 2) -> list[dict]:
    """The first ``n`` (caption, transcript) pairs of the ASR method under each of ``conditions``."""
    rows = []
    for name, r in results.items():
        for m, cells in r["cells"].items():
            for c in conditions:
                for ref, hyp in (cells.get(c, {}).get("transcript_examples") or [])[:n]:
                    rows.append({"dataset": name, "method": m, "condition": c, "caption": ref, "whisper heard": hyp})
    return rows


def timing_table(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Seconds per (dataset, condition): making the speech, then each method (ASR, conditioning, scoring)."""
    rows = []
    for name, r in results.items():
        for c in r["conditions"]:
            t = r["timings"][c]
            rows.append({"dataset": name, "condition": c, "speech_s": t["speech_s"], "synthesised": t["synthesised"],
                         **{f"{m}_s": t[f"{m}_s"] for m in r["methods"]},
                         "asr_s": sum(t[f"{m}_parts"].get("asr", 0.0) for m in r["methods"]),
                         "wall_s": t.get("wall_s"), "cpu_s": t.get("cpu_s")})
    return rows
