"""Claims decided over training seeds: one row type, one verdict rule, Holm within a claims file.

A claim compares two numbers of the study (one-stage against two-stage, ...) under a rule:
``higher`` / ``lower`` (a difference with a sign), ``above_chance`` (a rate above its chance level)
or ``close`` (a difference within +-``margin``). Each training seed's notebook decides it on that
seed's test images (``NN_claims.csv``); :func:`pool_claims` decides it over all seeds at once:

- the pooled estimate and 95% interval come from a random-effects model over the seeds' estimates and
  intervals (:func:`s2ilib.evaluation.pooling.random_effects`), which carries the seed-to-seed
  variance into the interval (the per-image intervals of one seed leave it out);
- every row gets one p-value for its rule (two-sided for a signed difference, TOST for ``close``)
  and Holm's adjustment over the file's rows (:func:`s2ilib.evaluation.pooling.holm`);
- :func:`decide` is the one verdict rule: ``holds`` when the adjusted p is below 0.05 and the interval
  lies on the claimed side (inside the margin for ``close``); ``fails`` when the interval lies wholly
  on the other side (outside the margin for ``close``); ``undecided`` otherwise.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from s2ilib.core.io import atomic_write_text
from s2ilib.evaluation.pooling import holm, random_effects, se_from_interval

ALPHA = 0.05
METHOD = ("random-effects pooling of the seeds' estimates (DerSimonian-Laird tau^2, Hartung-Knapp t interval "
          "with k-1 df, never narrower than the model's); p two-sided (TOST for 'close'); Holm over the file")
RULES = ("higher", "lower", "above_chance", "close")
POOLED_COLUMNS = ["dataset", "claim", "metric", "rule", "margin", "n_seeds", "seed_estimates", "seed_verdicts",
                  "estimate", "low", "high", "tau2", "p_value", "p_holm", "verdict", "seed_flip", "contradicts"]


def _finite(*xs: Any) -> bool:
    return all(isinstance(x, (int, float, np.floating)) and math.isfinite(x) for x in xs)


def decide(rule: str, low: float, high: float, p_adjusted: float = math.nan, margin: float | None = None,
           alpha: float = ALPHA) -> str:
    """The verdict of one claim from its interval and its (adjusted) p-value; see the module doc.
    A NaN p leaves the interval alone to decide (claims without a test, e.g. from stored intervals)."""
    if rule not in RULES:
        raise ValueError(f"unknown claim rule {rule!r}; choose one of {RULES}")
    if not _finite(low, high):
        return "undecided"
    significant = not _finite(p_adjusted) or p_adjusted < alpha
    if rule == "close":
        if not _finite(margin):
            raise ValueError("a 'close' claim needs a finite margin")
        if -margin <= low and high <= margin and significant:
            return "holds"
        return "fails" if high < -margin or low > margin else "undecided"
    sign = -1.0 if rule == "lower" else 1.0
    lo, hi = sorted((sign * low, sign * high))
    if lo > 0 and significant:
        return "holds"
    if hi < 0 and significant:
        return "fails"
    return "undecided"


def tost_p(estimate: float, low: float, high: float, margin: float, df: int | None) -> float:
    """Two one-sided tests of |difference| < margin, from an estimate and its 95% interval."""
    from scipy import stats

    dist = stats.t(df) if df and df > 0 else stats.norm
    se = (high - low) / (2 * dist.ppf(0.975))
    if not _finite(estimate, se, margin) or se <= 0:
        return math.nan
    return float(max(dist.sf((estimate + margin) / se), dist.sf((margin - estimate) / se)))


def pool_claims(per_seed: Mapping[str, Any]):
    """{seed label: that seed's claims DataFrame (dataset, claim, metric, rule, margin, estimate, low,
    high, verdict, ...)} -> one pooled row per (dataset, claim), columns :data:`POOLED_COLUMNS`.

    ``seed_flip``: the seeds' own verdicts disagree. ``contradicts``: a seed said ``holds`` or
    ``fails`` and the pooled verdict says otherwise (what a reader of that seed alone was told)."""
    import pandas as pd

    frames = []
    for label, df in per_seed.items():
        frames.append(df.assign(_seed=str(label)))
    if not frames:
        raise ValueError("pool_claims: no per-seed claims tables")
    all_rows = pd.concat(frames, ignore_index=True)
    seeds = [str(s) for s in per_seed]
    rows = []
    for (dataset, claim), g in all_rows.groupby(["dataset", "claim"], sort=False):
        g = g.set_index("_seed").reindex([s for s in seeds if s in set(g["_seed"])])
        rule = str(g["rule"].iloc[0])
        ses = [se_from_interval(lo, hi) if _finite(lo, hi) else math.nan for lo, hi in zip(g["low"], g["high"])]
        pooled = random_effects(g["estimate"].astype(float).tolist(), ses)
        margin = float(g["margin"].astype(float).mean()) if rule == "close" else math.nan
        if rule == "close":
            p = tost_p(pooled.estimate, pooled.low, pooled.high, margin, pooled.n_seeds - 1 or None)
        else:
            p = pooled.p_value
        verdicts = [str(v) for v in g["verdict"]]
        rows.append({"dataset": dataset, "claim": claim, "metric": g["metric"].iloc[0], "rule": rule,
                     "margin": margin, "n_seeds": pooled.n_seeds,
                     "seed_estimates": ";".join(f"{s}={e:.4g}" for s, e in zip(g.index, g["estimate"])),
                     "seed_verdicts": ";".join(f"{s}={v}" for s, v in zip(g.index, verdicts)),
                     "estimate": pooled.estimate, "low": pooled.low, "high": pooled.high, "tau2": pooled.tau2,
                     "p_value": p, "_verdicts": verdicts})
    out = pd.DataFrame(rows)
    out["p_holm"] = holm(out["p_value"].tolist())
    final, flips, contra = [], [], []
    for _, r in out.iterrows():
        v = decide(r["rule"], r["low"], r["high"], r["p_holm"], r["margin"] if r["rule"] == "close" else None)
        final.append(v)
        flips.append(len(set(r["_verdicts"])) > 1)
        contra.append(any(s in ("holds", "fails") and s != v for s in r["_verdicts"]))
    out["verdict"], out["seed_flip"], out["contradicts"] = final, flips, contra
    return out[POOLED_COLUMNS]


def pooled_summary(pooled) -> dict[str, Any]:
    """Counts for the README and the report: verdicts, claims whose seeds disagree, contradictions."""
    return {"claims": int(len(pooled)), "verdicts": {k: int(v) for k, v in pooled["verdict"].value_counts().items()},
            "seed_flips": int(pooled["seed_flip"].sum()), "contradicted_seed_verdicts": int(pooled["contradicts"].sum())}


def write_pooled(pooled, out_dir: str | Path, name: str) -> dict[str, Path]:
    """``<name>.csv`` (every column) and ``<name>.md`` (the reader's table) in ``out_dir``."""
    out = Path(out_dir)
    paths = {"csv": out / f"{name}.csv", "md": out / f"{name}.md"}
    atomic_write_text(paths["csv"], pooled.to_csv(index=False))
    atomic_write_text(paths["md"], pooled_markdown(pooled) + "\n")
    return paths


def _num(x: float, digits: int = 3) -> str:
    return "" if not _finite(x) else f"{x:+.{digits}f}"


def pooled_markdown(pooled) -> str:
    """One line per claim: per-seed verdicts, pooled estimate [interval], Holm p, pooled verdict."""
    lines = ["| dataset | claim | per-seed verdicts | pooled estimate [95% interval] | p (Holm) | pooled verdict |",
             "|---|---|---|---|---|---|"]
    for _, r in pooled.iterrows():
        seeds = ", ".join(p.split("=", 1)[1] for p in str(r["seed_verdicts"]).split(";"))
        p = "" if not _finite(r["p_holm"]) else f"{r['p_holm']:.2g}"
        lines.append(f"| {r['dataset']} | {r['claim']} | {seeds} | {_num(r['estimate'])} "
                     f"[{_num(r['low'])}, {_num(r['high'])}] | {p} | **{r['verdict']}** |")
    s = pooled_summary(pooled)
    lines += ["", f"{s['claims']} claims over {int(pooled['n_seeds'].max())} training seeds; "
                  f"{s['seed_flips']} change verdict between seeds; the pooled verdict overrules a seed's own "
                  f"'holds' or 'fails' in {s['contradicted_seed_verdicts']}."]
    return "\n".join(lines)
