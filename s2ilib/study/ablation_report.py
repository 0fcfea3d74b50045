"""Tables and claims of the ablations (notebooks 05-07): the paper's §V claims decided from intervals.

Each comparison is "A better than B" on one metric: per-item metrics (R@10 and AP per utterance,
attribute accuracy and R-precision per generated image) are paired on the same utterances and
noise (:func:`s2ilib.evaluation.items.paired_comparison`, bootstrap over test images, sign-flip
p-value); KID by its subset intervals (unpaired). A claim made of several comparisons
*holds* when every comparison holds, *fails* when any fails, and is *undecided* otherwise.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from s2ilib.evaluation import stats

CLAIM_COLUMNS = ["dataset", "claim", "comparison", "metric", "rule", "margin", "estimate", "low", "high", "p_value",
                 "p_rule", "p_holm", "n", "verdict"]

# Table IV: (claim, [(A, B): A should beat B]); metrics: (column, where its items are)
LOSS_CLAIMS: tuple[tuple[str, list[tuple[str, str]]], ...] = (
    ("L_norm alone is worst", [("norm+jel", "norm"), ("norm+kdl", "norm"), ("norm+jel+kdl", "norm")]),
    ("JEL helps most (norm+jel above norm+kdl)", [("norm+jel", "norm+kdl")]),
    ("KDL helps slightly (all three above norm+jel)", [("norm+jel+kdl", "norm+jel")]),
)
LOSS_METRICS = (("recall@10", "retrieval"), ("ap", "retrieval"), ("attr_acc", "images"), ("r_precision", "images"))
SCALE_METRICS = ("attr_acc", "r_precision", "kid")
LINEAR_R2 = 0.8  # "the space is linear": mean R^2 of the transition curves at least this
TEXT_R2_MARGIN = 0.1  # speech "as linear as text": mean R^2 within this of the text upper bound's


def _row(dataset: str, claim: str, comparison: str, metric: str, diff: dict[str, Any],
         rule: str = "higher", margin: float = math.nan) -> dict:
    """One comparison of a claims file, undecided until :func:`claim_frame` decides the file's rows
    with :func:`s2ilib.study.claims.finalize` (the rule's p, Holm over the file)."""
    return {"dataset": dataset, "claim": claim, "comparison": comparison, "metric": metric, "rule": rule,
            "margin": margin, "estimate": float(diff["estimate"]), "low": float(diff["low"]),
            "high": float(diff["high"]), "p_value": float(diff.get("p_value", math.nan)), "n": int(diff.get("n", 0))}


def _num(v: Any) -> float:
    return math.nan if v is None else float(v)


def _kid_difference(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    ia, ib = (stats.Interval(_num(x.get("kid")), _num((x.get("kid_ci") or [None, None])[0]),
                             _num((x.get("kid_ci") or [None, None])[1]), int(x.get("fid_n") or 0),
                             int(x.get("fid_n") or 0), 0.95, "kid") for x in (a, b))
    if not all(math.isfinite(v) for v in (ia.low, ia.high, ib.low, ib.high)):
        return {"estimate": ia.estimate - ib.estimate, "low": math.nan, "high": math.nan, "n": 0}
    return stats.unpaired_difference(ia, ib)


def loss_claims(dataset: str, items: dict[str, dict[str, Any]], seed: int = 0) -> list[dict[str, Any]]:
    """Claim rows of Table IV for one dataset; ``items``: {row: {"retrieval": items, "images": items}}."""
    from s2ilib.evaluation.items import paired_comparison

    out = []
    for claim, pairs in LOSS_CLAIMS:
        for a, b in pairs:
            if a not in items or b not in items:
                continue
            for metric, where in LOSS_METRICS:
                diff = paired_comparison(items[a][where], items[b][where], metric, seed=seed)
                out.append(_row(dataset, claim, f"{a} - {b}", metric, diff))
    return out


def scale_claims(dataset: str, rows: dict[int, dict[str, Any]], items: dict[int, dict[str, Any]],
                 seed: int = 0) -> list[dict[str, Any]]:
    """"Higher resolution is better" for one dataset: each generator against the one with one
    branch fewer, on attribute accuracy, R-precision (paired) and KID (unpaired, lower is better)."""
    from s2ilib.evaluation.items import paired_comparison

    out = []
    claim = "higher resolution is better"
    branches = sorted(rows)
    for lo, hi in zip(branches[:-1], branches[1:]):
        comp = f"{rows[hi]['output_size']}px - {rows[lo]['output_size']}px"
        for metric in SCALE_METRICS:
            if metric == "kid":
                diff, direction = _kid_difference(rows[hi], rows[lo]), -1
            else:
                diff, direction = paired_comparison(items[hi], items[lo], metric, seed=seed), +1
            out.append(_row(dataset, claim, comp, metric, diff, rule="lower" if direction < 0 else "higher"))
    return out


def interpolation_claims(dataset: str, tables: dict[str, Any], summaries: dict[str, dict[str, Any]],
                         transitions: dict[str, dict[str, Any]], speech: str = "one_stage", text: str = "text",
                         seed: int = 0) -> list[dict[str, Any]]:
    """"The space is linear" for one dataset, from the curve tables of :mod:`s2ilib.study.interpolation`:
    the transition follows a (mean Spearman > 0 over every curve), it is linear (mean R^2 >=
    :data:`LINEAR_R2` over the curves that are transitions, ``transitions``' summaries), and the
    speech space is as linear as the text upper bound's (|mean R^2 difference| <= :data:`TEXT_R2_MARGIN`,
    paired on the same pairs and attributes, curves that are transitions for both)."""
    out = []
    if speech in summaries:
        s = summaries[speech]["spearman"]
        sp = {"estimate": s["mean"], "low": s["low"], "high": s["high"], "n": summaries[speech]["n_curves"]}
        out.append(_row(dataset, "the transition follows a (Spearman > 0)", speech, "spearman", sp))
        r2, n = transitions[speech]["r2"], transitions[speech]["n_curves"]
        d = {"estimate": _num(r2["mean"]) - LINEAR_R2, "low": _num(r2["low"]) - LINEAR_R2,
             "high": _num(r2["high"]) - LINEAR_R2, "n": n}
        out.append(_row(dataset, f"the space is linear (mean R^2 >= {LINEAR_R2} on transitions)", speech,
                        f"r2 - {LINEAR_R2}", d))
    if speech in tables and text in tables and len(tables[speech]) and len(tables[speech]) == len(tables[text]):
        a, b = tables[speech], tables[text]
        both = (a["transition"].to_numpy() == 1.0) & (b["transition"].to_numpy() == 1.0)
        x, y = a["r2"].to_numpy(np.float64)[both], b["r2"].to_numpy(np.float64)[both]
        g = a["pair"].to_numpy()[both]
        if np.unique(g).size >= 2:
            diff = stats.paired_difference(x, y, n_boot=1000, seed=seed, groups=g)
        else:
            diff = {"estimate": float(np.mean(x - y)) if x.size else math.nan, "low": math.nan, "high": math.nan,
                    "n": int(x.size)}
        out.append(_row(dataset, f"speech as linear as text (R^2 within {TEXT_R2_MARGIN})", f"{speech} - {text}",
                        "r2", diff, rule="close",
                        margin=TEXT_R2_MARGIN))
    return out


def claim_frame(rows: list[dict[str, Any]]):
    """The claims file of a notebook: every row decided by the one rule, Holm over the file."""
    import pandas as pd

    from s2ilib.study.claims import finalize

    base = [c for c in CLAIM_COLUMNS if c not in ("p_rule", "p_holm", "verdict")]
    return finalize(pd.DataFrame(rows, columns=base))[CLAIM_COLUMNS]


def overall(claims) -> list[dict[str, Any]]:
    """One verdict per (dataset, claim): holds if every comparison holds, fails if any fails."""
    from s2ilib.study.claims import overall as _overall

    return _overall(claims, ("dataset", "claim"))


def loss_table(rows: dict[str, dict[str, list[dict]]]):
    """Table IV: one line per (dataset, row) with R@10, mAP, probe, attribute accuracy, R-precision,
    FID / KID at N, each with its 95% interval where it has one."""
    import pandas as pd

    lines = []
    for ds, rs in rows.items():
        for r in rs:
            lines.append({"dataset": ds, "loss": r["row"], **_interval_columns(r, ("recall@10", "ap")),
                          "probe": r["probe"], "probe_ci": _fmt_ci(r["probe_ci"]),
                          **_interval_columns(r, ("attr_acc", "r_precision")), "fid": r["fid"], "fid_n": r["fid_n"],
                          "fid_half": r.get("fid_half"), "fid_floor": r["fid_floor"], "kid": r["kid"],
                          "kid_ci": _fmt_ci(r["kid_ci"])})
    return pd.DataFrame(lines)


def scale_table(rows: dict[str, list[dict]]):
    """Table V: one line per (dataset, generator) with its sizes, timing and metrics with intervals."""
    import pandas as pd

    lines = []
    for ds, rs in rows.items():
        for r in rs:
            lines.append({"dataset": ds, "branches": r["branches"], "output_px": r["output_size"],
                          "scored_at_px": r["scored_at"], "s_per_step": r["s_per_step"], "train_s": r["train_s"],
                          **_interval_columns(r, ("attr_acc", "r_precision")), "fid": r["fid"], "fid_n": r["fid_n"],
                          "fid_half": r.get("fid_half"), "fid_floor": r["fid_floor"], "kid": r["kid"],
                          "kid_ci": _fmt_ci(r["kid_ci"])})
    return pd.DataFrame(lines)


def _fmt_ci(ci) -> str:
    if ci is None or any(v is None or not math.isfinite(float(v)) for v in ci):
        return "[nan, nan]"
    return f"[{float(ci[0]):.3g}, {float(ci[1]):.3g}]"


def _interval_columns(r: dict[str, Any], metrics) -> dict[str, Any]:
    out = {}
    for m in metrics:
        out[m] = r.get(m)
        out[f"{m}_ci"] = _fmt_ci(r.get(f"{m}_ci"))
    return out


def gradient_table(grads: dict[str, dict[str, Any]]):
    """Mean gradient norm of each weighted term w.r.t. the speech embedding per dataset, and its ratio
    to the JEL term's."""
    import pandas as pd

    lines = []
    for ds, g in grads.items():
        for term in ("jel", "norm", "kdl"):
            lines.append({"dataset": ds, "term": term, "weight": g["weights"][term], "mean_grad_norm": g["mean"][term],
                          "std": g["std"][term], "ratio_to_jel": g["ratio_to_jel"][term],
                          "steps": f"{g['window'][0]}-{g['window'][1]}"})
    return pd.DataFrame(lines)


def section_payload(cfg, sched: dict[str, Any], per_dataset: dict[str, dict[str, Any]],
                    timings: dict[str, Any]) -> dict[str, Any]:
    """A results.json section: per dataset its entries with provenance (preset, seed, variant of the
    main configuration, eval config) and the ablation schedule; NaN stored as null."""
    from s2ilib.study.paths import provenance
    from s2ilib.study.report import _nan_to_none

    base = {**provenance(cfg, cfg.eval), "schedule": sched}
    out = {name: {**base, **entry} for name, entry in per_dataset.items()}
    out["timings"] = timings
    return _nan_to_none(out)
