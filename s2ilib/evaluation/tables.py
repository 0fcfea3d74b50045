"""The main table as DataFrames and files: long (one row per metric), wide (one row per dataset,
method and condition, methods in the registry's order), CSV and Markdown."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from s2ilib.core import registry
from s2ilib.core.io import atomic_write_text


SCALAR_METRICS = ("fid", "fid_half", "kid", "kid_half", "is", "r_precision", "r_precision_speech", "attr_acc",
                  "attr_acc_shuffled", "wer")
LONG_COLUMNS = ["dataset", "method", "condition", "metric", "value", "low", "high", "n", "n_images"]
# bookkeeping keys of a cell: counts, interval bounds and subset sizes live in their own columns
_NOT_METRICS = ("n_images", "n_real", "fid_n", "is_n", "kid_subset", "kid_n", "fid_half_n", "kid_half_n",
                "n_utterances_asr", "r_precision_candidates")
_SUFFIXES = ("_ci", "_n", "_n_groups")


def _interval_of(m: dict[str, Any], metric: str) -> tuple[float, float, Any]:
    """(low, high, n) of one metric of a cell: its ``<metric>_ci`` and the number of items (or
    generated images) behind it."""
    ci = m.get(f"{metric}_ci")
    low, high = (float(ci[0]), float(ci[1])) if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(
        _is_number(v) for v in ci) else (float("nan"), float("nan"))
    n = m.get(f"{metric}_n")
    if n is None:
        n = {"fid": m.get("fid_n"), "kid": m.get("kid_n"), "is": m.get("is_n"), "fid_half": m.get("fid_half_n"),
             "kid_half": m.get("kid_half_n")}.get(metric, m.get("n_images"))
    return low, high, n


def main_table_long(results_by_dataset: dict[str, dict[str, Any]]):
    """{dataset: run_main_evaluation result} -> long DataFrame
    (dataset, method, condition, metric, value, low, high, n, n_images); one row per scalar metric
    with its 95% interval where it has one (attribute accuracy, R-precision: bootstrap over test
    images; KID: over subsets) and ``n``, the items or generated images behind it; plus the
    references: method ``real`` (reader on real test images, condition ``real_test``; the
    real-vs-real FID / KID floor between two halves of the real test images, condition
    ``real_vs_real``) and the reader / IS-head held-out accuracies."""
    import pandas as pd

    nan = float("nan")
    rows = []
    for dataset, res in results_by_dataset.items():
        for method in registry.method_names():
            for cond, m in (res.get(method) or {}).items():
                for metric, value in m.items():
                    if metric in _NOT_METRICS or metric.endswith(_SUFFIXES) or not _is_number(value):
                        continue
                    low, high, n = _interval_of(m, metric)
                    rows.append((dataset, method, cond, metric, float(value), low, high, n, m.get("n_images")))
        ref = res.get("reader") or {}
        if ref:
            ci = ref.get("real_test_attr_acc_ci") or [nan, nan]
            for metric, key in (("attr_acc", "real_test_attr_acc"), ("attr_acc_shuffled", "real_test_attr_acc_shuffled"),
                                ("reader_holdout_acc", "holdout_mean")):
                if _is_number(ref.get(key)):
                    lo, hi = (ci if metric == "attr_acc" else (nan, nan))
                    n = ref.get("real_test_attr_acc_n") if metric == "attr_acc" else ref.get("n_real")
                    rows.append((dataset, "real", "real_test", metric, float(ref[key]),
                                 nan if lo is None else lo, nan if hi is None else hi, n, ref.get("n_real")))
        head = res.get("is_head") or {}
        if _is_number(head.get("holdout_accuracy")):
            rows.append((dataset, "real", "real_test", "is_head_holdout_acc", float(head["holdout_accuracy"]),
                         nan, nan, head.get("n_holdout"), head.get("n_holdout")))
        floor = res.get("fid_floor") or {}
        if _is_number(floor.get("fid")):
            rows.append((dataset, "real", "real_vs_real", "fid_half", float(floor["fid"]), nan, nan,
                         floor.get("n_b"), floor.get("n_b")))
        if _is_number(floor.get("kid")):
            lo, hi = floor.get("kid_ci") or [nan, nan]
            rows.append((dataset, "real", "real_vs_real", "kid_half", float(floor["kid"]),
                         nan if lo is None else lo, nan if hi is None else hi, floor.get("kid_n"), floor.get("n_b")))
    df = pd.DataFrame(rows, columns=LONG_COLUMNS)
    for c in ("low", "high"):
        df[c] = df[c].astype(float)
    return df


def _fmt(v: Any, digits: int = 3) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def main_table_intervals(results_by_dataset: dict[str, dict[str, Any]], digits: int = 3):
    """The main table as printed in notebook 04: one row per (dataset, method, condition), each
    number with its 95% interval and its n: attribute accuracy and R-precision (bootstrap over test
    images, n items / test images, chance beside it), the shuffled floor, FID at N generated images
    against all real test images, FID of n_real/2 generated images against real half A beside the
    real-vs-real floor at the same n, KID with its interval, IS and WER."""
    import pandas as pd

    rows = []
    rank = {m: k for k, m in enumerate((*registry.method_names(), "real"))}
    for dataset, res in results_by_dataset.items():
        floor = res.get("fid_floor") or {}
        for method in registry.method_names():
            for cond, m in (res.get(method) or {}).items():
                row = {"dataset": dataset, "method": method, "condition": cond}
                for metric in ("attr_acc", "r_precision"):
                    if _is_number(m.get(metric)):
                        lo, hi, n = _interval_of(m, metric)
                        row[metric] = f"{_fmt(m[metric], digits)} [{_fmt(lo, digits)}, {_fmt(hi, digits)}]"
                        row[f"{metric} n (images)"] = f"{n} ({m.get(f'{metric}_n_groups')})"
                if _is_number(m.get("r_precision_chance")):
                    row["r_precision chance"] = round(float(m["r_precision_chance"]), 4)
                if _is_number(m.get("attr_acc_shuffled")):
                    row["attr_acc shuffled"] = round(float(m["attr_acc_shuffled"]), digits)
                if _is_number(m.get("fid")):
                    row["FID (N)"] = f"{_fmt(m['fid'], 1)} ({m.get('fid_n')})"
                if _is_number(m.get("fid_half")):
                    row["FID half (n) | floor"] = (f"{_fmt(m['fid_half'], 1)} ({m.get('fid_half_n')}) | "
                                                   f"{_fmt(floor.get('fid'), 1)}")
                if _is_number(m.get("kid")):
                    lo, hi, n = _interval_of(m, "kid")
                    row["KID [95%] (n)"] = f"{_fmt(m['kid'], 4)} [{_fmt(lo, 4)}, {_fmt(hi, 4)}] ({n})"
                if _is_number(m.get("kid_half")):
                    lo, hi, _ = _interval_of(m, "kid_half")
                    row["KID half | floor"] = (f"{_fmt(m['kid_half'], 4)} [{_fmt(lo, 4)}, {_fmt(hi, 4)}] | "
                                               f"{_fmt(floor.get('kid'), 4)}")
                if _is_number(m.get("is")):
                    row["IS"] = round(float(m["is"]), 2)
                if _is_number(m.get("wer")):
                    row["WER"] = round(float(m["wer"]), 3)
                rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df["_r"] = df["method"].map(lambda x: rank.get(x, 99))
    return df.sort_values(["dataset", "_r", "condition"]).drop(columns="_r").set_index(["dataset", "method", "condition"])


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool)


def main_table_wide(df_long, metrics: Sequence[str] | None = None):
    """Long table -> one row per (dataset, method, condition), one column per metric (+ n_images),
    methods in the registry's (the paper's) order."""
    df = df_long if metrics is None else df_long[df_long["metric"].isin(metrics)]
    wide = df.pivot_table(index=["dataset", "method", "condition"], columns="metric", values="value", aggfunc="first")
    n = df.groupby(["dataset", "method", "condition"])["n_images"].max()
    wide.insert(0, "n_images", n)
    order = list(metrics) if metrics else [m for m in SCALAR_METRICS if m in wide.columns]
    rest = [c for c in wide.columns if c not in order and c != "n_images"]
    wide = wide[["n_images"] + [c for c in order if c in wide.columns] + sorted(rest)]
    rank = {m: k for k, m in enumerate((*registry.method_names(), "real"))}
    wide = wide.reset_index()
    wide["_r"] = wide["method"].map(lambda m: rank.get(m, 99))
    wide = wide.sort_values(["dataset", "_r", "condition"]).drop(columns="_r")
    wide.columns.name = None
    return wide.set_index(["dataset", "method", "condition"])


def to_markdown(df, floatfmt: str = ".3f") -> str:
    """A DataFrame as a GitHub Markdown table (index included), without ``tabulate``."""
    flat = df.reset_index() if any(n is not None for n in df.index.names) else df

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "" if math.isnan(v) else format(v, floatfmt)
        return str(v)

    header = [str(c) for c in flat.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in flat.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def write_tables(df_long, out_dir: str | Path) -> dict[str, Path]:
    """Write main_table_long.csv, main_table.csv (wide) and main_table.md (wide) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    wide = main_table_wide(df_long)
    paths = {"long_csv": out / "main_table_long.csv", "csv": out / "main_table.csv", "md": out / "main_table.md"}
    atomic_write_text(paths["long_csv"], df_long.to_csv(index=False))
    atomic_write_text(paths["csv"], wide.to_csv())
    atomic_write_text(paths["md"], to_markdown(wide))
    return paths

