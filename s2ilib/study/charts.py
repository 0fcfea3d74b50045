"""Metric charts with the house conventions (notebooks 04-06).

Every chart: a bar per method (or row) with its 95% interval as an error bar where the study
computed one; floor, ceiling and chance as labelled reference lines; the metric's name with its
direction (``FID ↓``); the sample size in the x label (and which bars differ); x labels wrapped
and rotated; the dataset in every title. Registered with a caption in :mod:`s2ilib.study.captions`.
"""
from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import matplotlib.pyplot as plt  # the runner sets MPLBACKEND=agg for headless runs

from s2ilib.study.captions import register_figure, save_figure


@dataclass(frozen=True)
class Metric:
    label: str
    higher_is_better: bool
    counts: str  # what its N counts

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"


METRICS: dict[str, Metric] = {
    "fid": Metric("FID", False, "generated images"),
    "fid_half": Metric("FID at half size", False, "generated images"),
    "kid": Metric("KID", False, "generated images"),
    "is": Metric("IS", True, "generated images"),
    "r_precision": Metric("R-precision", True, "generated images"),
    "attr_acc": Metric("attribute accuracy", True, "captions"),
    "recall@10": Metric("R@10 (speech to image)", True, "utterances"),
    "ap": Metric("mAP (speech to image)", True, "utterances"),
}
CONDITIONS = {"seen": "seen voices", "unseen": "held-out voices", "groundtruth_text": "ground-truth text"}
REF_STYLE = {"floor": {"color": "0.35", "ls": "--"}, "ceiling": {"color": "tab:green", "ls": "-."},
             "chance": {"color": "tab:red", "ls": ":"}}


def metric_label(metric: str) -> str:
    """``"FID ↓"``, ``"attribute accuracy ↑"``; an unknown metric keeps its name."""
    m = METRICS.get(metric)
    return f"{m.label} {m.arrow}" if m else metric


def display_name(name: str) -> str:
    """``one_stage`` -> ``one stage``, ``norm+jel`` -> ``norm + jel`` (so labels wrap at words)."""
    return str(name).replace("_", " ").replace("+", " + ")


@dataclass(frozen=True)
class Reference:
    """A horizontal reference line: ``kind`` floor / ceiling / chance, with its label."""
    value: float
    label: str
    kind: str


@dataclass
class Bar:
    label: str
    value: float
    low: float = math.nan
    high: float = math.nan
    n: int | None = None
    group: str = ""
    floor: float = math.nan  # this bar's own floor (e.g. its shuffled-caption score), drawn as a tick
    extra: dict[str, Any] = field(default_factory=dict)


def _finite(*xs) -> bool:
    return all(x is not None and math.isfinite(float(x)) for x in xs)


def _n_note(bars: Sequence[Bar], counts: str, wrap: int = 70) -> str:
    """``N = 400 generated images per bar (two stage: 100)``: the common N and the bars that differ
    (a label whose bars share one N is named once)."""
    ns = [b.n for b in bars if b.n]
    if not ns:
        return ""
    common = max(set(ns), key=ns.count)
    odd: dict[str, set] = {}
    for b in bars:
        odd.setdefault(b.label, set()).add(b.n)
    parts = []
    for lab, values in odd.items():
        if values == {common} or not any(values):
            continue
        if len(values) == 1:
            parts.append(f"{display_name(lab)}: {next(iter(values))}")
        else:
            parts += [f"{display_name(lab)}, {CONDITIONS.get(b.group, b.group)}: {b.n}" for b in bars
                      if b.label == lab and b.n and b.n != common]
    note = f"N = {common} {counts} per bar" + (" (" + "; ".join(parts) + ")" if parts else "")
    return "\n".join(textwrap.wrap(note, wrap))


def _x_labels(ax, labels: Sequence[str], fontsize: float = 7) -> None:
    """Tick labels wrapped at word boundaries to the width of their slot; rotated only when a single
    word is wider than the slot (so labels never overlap)."""
    slot_pt = ax.figure.get_figwidth() * ax.get_position().width * 72 / max(1, len(labels))
    chars = max(4, int(slot_pt / (0.7 * fontsize)))
    wrapped = [textwrap.wrap(display_name(lab), chars, break_long_words=False) or [" "] for lab in labels]
    rotate = any(len(line) > chars for w in wrapped for line in w)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(["\n".join(w) for w in wrapped], fontsize=fontsize, rotation=30 if rotate else 0,
                       ha="right" if rotate else "center", rotation_mode="anchor")


def bar_panel(ax, bars: Sequence[Bar], metric: str, refs: Sequence[Reference] = (), title: str = "") -> dict[str, Any]:
    """Grouped bars on ``ax`` (one x position per label, one bar per group), error bars from
    ``low`` / ``high`` where finite, reference lines, labels. Returns what was drawn (for captions)."""
    labels = list(dict.fromkeys(b.label for b in bars))
    groups = list(dict.fromkeys(b.group for b in bars))
    colours = {g: plt.get_cmap("tab10")(k) for k, g in enumerate(groups)}
    per = max(sum(1 for b in bars if b.label == lab) for lab in labels) if bars else 1
    width = 0.8 / per
    n_err, seen = 0, set()
    for i, lab in enumerate(labels):
        mine = [b for b in bars if b.label == lab]
        for j, b in enumerate(mine):
            x = i + (j - (len(mine) - 1) / 2) * width
            legend = CONDITIONS.get(b.group, b.group) if b.group and b.group not in seen else None
            seen.add(b.group)
            ax.bar(x, b.value, width * 0.92, color=colours[b.group], label=legend)
            if _finite(b.value, b.low, b.high):
                ax.errorbar(x, b.value, yerr=[[max(0.0, b.value - b.low)], [max(0.0, b.high - b.value)]],
                            fmt="none", ecolor="black", elinewidth=0.9, capsize=2.5)
                n_err += 1
            if _finite(b.floor):
                ax.plot([x - width * 0.46, x + width * 0.46], [b.floor, b.floor], color="black", lw=1.6,
                        gid="bar_floor")
    for r in refs:
        if _finite(r.value):
            ax.axhline(r.value, lw=1, gid=f"ref:{r.kind}", label=None, **REF_STYLE.get(r.kind, {}))
    _x_labels(ax, labels)
    ax.set_ylabel(metric_label(metric))
    counts = METRICS[metric].counts if metric in METRICS else "items"
    ax.set_xlabel(_n_note(bars, counts) or " ", fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    if METRICS.get(metric) and METRICS[metric].higher_is_better and all(b.value >= 0 for b in bars):
        ax.set_ylim(bottom=0)
    if len(groups) > 1 or n_err or any(_finite(b.floor) for b in bars):
        handles, names = ax.get_legend_handles_labels()
        if n_err:
            handles.append(plt.Line2D([], [], color="black", marker="|", ls="none", markersize=8))
            names.append("95% interval")
        if any(_finite(b.floor) for b in bars):
            handles.append(plt.Line2D([], [], color="black", lw=1.6))
            names.append("own floor (shuffled captions)")
        ax.legend(handles, names, fontsize=6, loc="upper left", ncol=2, framealpha=0.9)
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, hi + (hi - lo) * 0.35)  # headroom for the legend above the bars and lines
    _ref_labels(ax, [r for r in refs if _finite(r.value)])
    return {"n_error_bars": n_err, "refs": [r for r in refs if _finite(r.value)]}


def _ref_labels(ax, refs: Sequence[Reference]) -> None:
    """Reference labels in the right margin (a label never covers a bar); two lines closer than
    8% of the axis get their labels above and below them instead of overlapping."""
    lo, hi = ax.get_ylim()
    refs = sorted(refs, key=lambda r: r.value)
    for k, r in enumerate(refs):
        near_below = k > 0 and r.value - refs[k - 1].value < 0.08 * (hi - lo)
        near_above = k + 1 < len(refs) and refs[k + 1].value - r.value < 0.08 * (hi - lo)
        va = "bottom" if near_below else "top" if near_above else "center"
        ax.annotate("\n".join(textwrap.wrap(r.label, 20)), xy=(1.01, r.value), xycoords=("axes fraction", "data"),
                    ha="left", va=va, fontsize=6, annotation_clip=False,
                    color=REF_STYLE.get(r.kind, {}).get("color", "black"))


def _refs_text(refs: Sequence[Reference]) -> str:
    return "; ".join(r.label for r in refs) if refs else "none"


# ------------------------------------------------------------------------------------------------
# notebook 04: one metric, every method, both datasets (main_table_long.csv rows)


def _row(df, dataset: str, method: str, condition: str | None, metric: str):
    sub = df[(df["dataset"] == dataset) & (df["method"] == method) & (df["metric"] == metric)]
    if condition is not None:
        sub = sub[sub["condition"] == condition]
    return sub.iloc[0] if len(sub) else None


def main_references(long_df, dataset: str, metric: str) -> list[Reference]:
    """Floor / ceiling / chance of ``metric`` on ``dataset`` from a long table (``real`` rows and the
    R-precision chance): attribute ceiling = the reader on real test images, floor = shuffled
    captions on real test images; R-precision chance; FID / KID of real vs real (two halves)."""
    out = []
    if metric == "attr_acc":
        ceil = _row(long_df, dataset, "real", "real_test", "attr_acc")
        floor = _row(long_df, dataset, "real", "real_test", "attr_acc_shuffled")
        if ceil is not None:
            out.append(Reference(float(ceil["value"]), f"ceiling: real test images {ceil['value']:.2f}", "ceiling"))
        if floor is not None:
            out.append(Reference(float(floor["value"]), f"floor: shuffled captions {floor['value']:.2f}", "floor"))
    elif metric == "r_precision":
        sub = long_df[(long_df["dataset"] == dataset) & (long_df["metric"] == "r_precision_chance")]
        if len(sub):
            out.append(Reference(float(sub["value"].iloc[0]), f"chance {sub['value'].iloc[0]:.2g}", "chance"))
    elif metric in ("fid", "kid"):
        r = _row(long_df, dataset, "real", "real_vs_real", f"{metric}_half")
        if r is not None:
            fmt = ".0f" if metric == "fid" else ".3f"
            out.append(Reference(float(r["value"]), f"real vs real (N = {int(r['n'])} per half): "
                                 f"{r['value']:{fmt}}", "floor"))
    return out


def main_bars(long_df, dataset: str, metric: str, methods: Sequence[str] | None = None) -> list[Bar]:
    """One bar per (method, condition) of ``dataset`` (the ``real`` reference rows excluded)."""
    sub = long_df[(long_df["dataset"] == dataset) & (long_df["metric"] == metric) & (long_df["method"] != "real")]
    if methods is not None:
        sub = sub[sub["method"].isin(list(methods))]
        order = {m: k for k, m in enumerate(methods)}
        sub = sub.assign(_o=sub["method"].map(order)).sort_values(["_o", "condition"], kind="stable")
    out = []
    for _, r in sub.iterrows():
        floor = math.nan
        if metric == "attr_acc":
            f = _row(long_df, dataset, r["method"], r["condition"], "attr_acc_shuffled")
            floor = float(f["value"]) if f is not None else math.nan
        n = r.get("n")
        out.append(Bar(str(r["method"]), float(r["value"]), float(r.get("low", math.nan)),
                       float(r.get("high", math.nan)), int(n) if _finite(n) else None, str(r["condition"]), floor))
    return out


@register_figure("04_{metric}.png",
                 "{label} of every method on the test speech of unseen classes ({datasets}): point values"
                 "{interval_note}{n_note}. Reference lines: {refs}.")
def main_metric_figure(long_df, metric: str, methods: Sequence[str] | None = None, path=None):
    """Notebook 04's chart of one metric: a panel per dataset from a ``main_table_long.csv``-style
    frame (columns dataset, method, condition, metric, value, low, high, n)."""
    datasets = sorted(long_df.loc[long_df["metric"] == metric, "dataset"].unique())
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.6 * len(datasets), 3.6), squeeze=False)
    n_err, refs, notes = 0, [], []
    for ax, name in zip(axes[0], datasets):
        bars = main_bars(long_df, name, metric, methods)
        drawn = bar_panel(ax, bars, metric, main_references(long_df, name, metric), title=name)
        n_err += drawn["n_error_bars"]
        refs += [f"{name} {r.label}" for r in drawn["refs"]]
        notes.append(f"{name}: {ax.get_xlabel()}")
    label = metric_label(metric)
    fig.suptitle(f"{label} per method: {', '.join(datasets)}", fontsize=10)
    fig.tight_layout()
    differ = any("(" in n for n in notes)
    return save_figure(fig, path, "main_metric_figure", label=label, datasets=", ".join(datasets),
                       interval_note=" with their 95% intervals" if n_err else " (the study computes no interval "
                       "for this metric, so no error bars)", refs="; ".join(refs) or "none",
                       n_note="; sample sizes differ between bars (x label)" if differ else "")


# ------------------------------------------------------------------------------------------------
# notebooks 05 and 06: the ablation rows (ablation.loss_row / scale_row dicts)


def _row_bars(rows: Sequence[dict], metric: str, label_of) -> list[Bar]:
    out = []
    for r in rows:
        ci = r.get(f"{metric}_ci") or [math.nan, math.nan]
        n = r.get(f"{metric}_n") or (r.get("fid_half_n") if metric == "fid_half" else None) \
            or (r.get("fid_n") if metric in ("fid", "kid") else None)
        floor = r.get("attr_acc_shuffled") if metric == "attr_acc" else None
        out.append(Bar(label_of(r), float(r[metric]) if _finite(r.get(metric)) else math.nan,
                       float(ci[0]) if _finite(ci[0]) else math.nan, float(ci[1]) if _finite(ci[1]) else math.nan,
                       int(n) if n else None, "", float(floor) if _finite(floor) else math.nan))
    return out


def row_references(rows: Sequence[dict], metric: str, ceiling: float | None = None) -> list[Reference]:
    """Reference lines of an ablation panel: the shuffled-caption floor (mean over the rows; each
    bar also shows its own), the attribute ``ceiling`` when given, the R-precision chance, the
    real-vs-real FID floor at the half size."""
    def mean(key):
        v = [float(r[key]) for r in rows if _finite(r.get(key))]
        return sum(v) / len(v) if v else math.nan

    out = []
    if metric == "attr_acc":
        if _finite(ceiling):
            out.append(Reference(float(ceiling), f"ceiling: real test images {ceiling:.2f}", "ceiling"))
        fl = mean("attr_acc_shuffled")
        if _finite(fl):
            out.append(Reference(fl, f"floor: shuffled captions {fl:.2f}", "floor"))
    elif metric == "r_precision" and _finite(mean("r_precision_chance")):
        out.append(Reference(mean("r_precision_chance"), f"chance {mean('r_precision_chance'):.2g}", "chance"))
    elif metric == "fid_half" and _finite(mean("fid_floor")):
        n = next((r.get("fid_half_n") for r in rows if r.get("fid_half_n")), None)
        out.append(Reference(mean("fid_floor"), f"real vs real{f' (N = {n} per half)' if n else ''}: "
                             f"{mean('fid_floor'):.0f}", "floor"))
    return out


def _row_figure(dataset: str, rows: Sequence[dict], metrics: Sequence[str], label_of, suptitle: str,
                ceiling: float | None = None):
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.7 * len(metrics), 3.4), squeeze=False)
    n_err, refs = 0, []
    for ax, metric in zip(axes[0], metrics):
        drawn = bar_panel(ax, _row_bars(rows, metric, label_of), metric, row_references(rows, metric, ceiling),
                          title=f"{dataset}: {metric_label(metric)}")
        n_err += drawn["n_error_bars"]
        refs += [r.label for r in drawn["refs"]]
    fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig, n_err, refs


@register_figure("05_{dataset}_loss_ablation.png",
                 "Loss-term ablation on {dataset} (ablation schedule, shorter than the main runs): retrieval, "
                 "attribute accuracy and R-precision per loss row with 95% intervals over test images. "
                 "Reference lines: {refs}; a bar on its floor or at chance shows no effect of the terms.")
def loss_ablation_figure(dataset: str, rows: Sequence[dict], ceiling: float | None = None, path=None):
    """Notebook 05's chart: ``rows`` are :func:`s2ilib.study.ablation.loss_row` dicts of one dataset."""
    metrics = [m for m in ("recall@10", "attr_acc", "r_precision") if any(m in r for r in rows)]
    fig, _, refs = _row_figure(dataset, rows, metrics, lambda r: r["row"],
                               f"{dataset}: loss-term ablation (Table IV), one encoder and generator per row",
                               ceiling)
    return save_figure(fig, path, "loss_ablation_figure", dataset=dataset, refs="; ".join(refs) or "none")


@register_figure("06_{dataset}_scales.png",
                 "Generators with {branches} scales on {dataset}; every final output was resized to and scored "
                 "at {scored_at} px, the main generator's size, with 95% intervals over test images. "
                 "Reference lines: {refs}.")
def scale_ablation_figure(dataset: str, rows: Sequence[dict], scored_at: int, path=None):
    """Notebook 06's chart: ``rows`` are :func:`s2ilib.study.ablation.scale_row` dicts of one dataset."""
    rows = sorted(rows, key=lambda r: r["branches"])
    fid = "fid_half" if all(_finite(r.get("fid_half")) for r in rows) else "fid"
    metrics = [m for m in ("attr_acc", "r_precision", fid) if any(m in r for r in rows)]
    fig, _, refs = _row_figure(
        dataset, rows, metrics, lambda r: f"{r['output_size']} px ({r['branches']} branch"
                                          f"{'es' if r['branches'] > 1 else ''})",
        f"{dataset}: generator scales (Table V), every output scored at {scored_at} px (the main generator's size)")
    return save_figure(fig, path, "scale_ablation_figure", dataset=dataset, scored_at=scored_at,
                       branches=" / ".join(str(r["branches"]) for r in rows), refs="; ".join(refs) or "none")
