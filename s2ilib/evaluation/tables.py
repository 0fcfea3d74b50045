"""The main table as DataFrames and files: long (one row per metric), wide (one row per dataset,
method and condition, methods in the registry's order), CSV and Markdown."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from s2ilib.core import registry
from s2ilib.core.io import atomic_write_text


SCALAR_METRICS = ("fid", "kid", "is", "r_precision", "r_precision_speech", "attr_acc", "attr_acc_shuffled", "wer")


def main_table_long(results_by_dataset: dict[str, dict[str, Any]]):
    """{dataset: run_main_evaluation result} -> long DataFrame
    (dataset, method, condition, metric, value, n_images); one row per scalar metric, plus the
    references: method ``real`` (reader on real test images, condition ``real_test``) and the
    reader / IS-head held-out accuracies."""
    import pandas as pd

    rows = []
    for dataset, res in results_by_dataset.items():
        for method in registry.method_names():
            for cond, m in (res.get(method) or {}).items():
                for metric, value in m.items():
                    if metric in ("n_images", "n_real") or not _is_number(value):
                        continue
                    rows.append((dataset, method, cond, metric, float(value), m.get("n_images")))
        ref = res.get("reader") or {}
        if ref:
            for metric, key in (("attr_acc", "real_test_attr_acc"), ("attr_acc_shuffled", "real_test_attr_acc_shuffled"),
                                ("reader_holdout_acc", "holdout_mean")):
                if _is_number(ref.get(key)):
                    rows.append((dataset, "real", "real_test", metric, float(ref[key]), ref.get("n_real")))
        head = res.get("is_head") or {}
        if _is_number(head.get("holdout_accuracy")):
            rows.append((dataset, "real", "real_test", "is_head_holdout_acc", float(head["holdout_accuracy"]),
                         head.get("n_holdout")))
    return pd.DataFrame(rows, columns=["dataset", "method", "condition", "metric", "value", "n_images"])


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

