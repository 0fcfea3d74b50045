"""The study's claims: one row type, one verdict rule, Holm within a claims file, pooling over seeds.

A claim compares two numbers of the study (one-stage against two-stage, ...) under a rule:
``higher`` / ``lower`` (a difference with a sign), ``above_chance`` (a rate above its chance level)
or ``close`` (a difference within +-``margin``). Each training seed's notebook decides it on that
seed's test images (``NN_claims.csv``, written through :func:`finalize`: the rule's p-value, Holm's
adjustment over the file, the verdict); :func:`pool_claims` decides it over all seeds at once:

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
from s2ilib.evaluation.stats import ALPHA, RULES, decide  # noqa: F401  (the one verdict rule; re-exported)

METHOD = ("random-effects pooling of the seeds' estimates (DerSimonian-Laird tau^2, Hartung-Knapp t interval "
          "with k-1 df, never narrower than the model's); p two-sided (TOST for 'close'); Holm over the file")
POOLED_FILE = "04_claims_pooled"
POOLED_COLUMNS = ["dataset", "claim", "metric", "rule", "margin", "n_seeds", "seed_estimates", "seed_verdicts",
                  "estimate", "low", "high", "tau2", "p_value", "p_holm", "verdict", "seed_flip", "contradicts"]


def _finite(*xs: Any) -> bool:
    return all(isinstance(x, (int, float, np.floating)) and math.isfinite(x) for x in xs)


def tost_p(estimate: float, low: float, high: float, margin: float, df: int | None) -> float:
    """Two one-sided tests of |difference| < margin, from an estimate and its 95% interval."""
    from scipy import stats

    dist = stats.t(df) if df and df > 0 else stats.norm
    se = (high - low) / (2 * dist.ppf(0.975))
    if not _finite(estimate, se, margin) or se <= 0:
        return math.nan
    return float(max(dist.sf((estimate + margin) / se), dist.sf((margin - estimate) / se)))


def rule_p(rule: str, estimate: float, low: float, high: float, p_value: float = math.nan,
           margin: float | None = None) -> float:
    """The p-value of a row's rule: its test's own ``p_value`` for a signed difference or a rate above
    chance; the two one-sided tests against +-``margin`` for ``close``; where a row has no test, the
    normal approximation from its 95% interval (so every decided row is in Holm's family)."""
    from scipy import stats

    if rule == "close":
        return tost_p(estimate, low, high, margin if margin is not None else math.nan, None)
    if _finite(p_value):
        return float(p_value)
    if not _finite(estimate, low, high) or high <= low:
        return math.nan
    se = (high - low) / (2 * stats.norm.ppf(0.975))
    return float(2 * stats.norm.sf(abs(estimate) / se))


def finalize(rows, adjust: bool = True):
    """A claims file's rows (dicts or a DataFrame with at least dataset, claim, metric, rule, margin,
    estimate, low, high, p_value) -> DataFrame with ``p_rule`` (:func:`rule_p`), ``p_holm`` (Holm over
    the file's rows; ``adjust=False``: the raw p, as the single-claim verdicts before Holm) and
    ``verdict`` (:func:`decide`). The one writer of every ``NN_claims.csv``."""
    import pandas as pd

    df = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if df.empty:
        return df.assign(p_rule=[], p_holm=[], verdict=[])
    margins = [m if r == "close" else None for r, m in zip(df["rule"], df["margin"])]
    df["p_rule"] = [rule_p(r, e, lo, hi, p, m) for r, e, lo, hi, p, m in
                    zip(df["rule"], df["estimate"], df["low"], df["high"], df["p_value"], margins)]
    df["p_holm"] = holm(df["p_rule"].tolist()) if adjust else df["p_rule"]
    df["verdict"] = [decide(r, lo, hi, p, m) for r, lo, hi, p, m in
                     zip(df["rule"], df["low"], df["high"], df["p_holm"], margins)]
    return df


def overall(claims, keys: tuple[str, ...] = ("dataset", "claim")) -> list[dict[str, Any]]:
    """One verdict per group of comparisons (``keys``): holds if every comparison holds, fails if
    any fails, undecided otherwise; with the counts."""
    out = []
    for key, g in claims.groupby(list(keys), sort=False):
        v = list(g["verdict"])
        verdict = "holds" if all(x == "holds" for x in v) else "fails" if "fails" in v else "undecided"
        out.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,))), "verdict": verdict,
                    "comparisons": len(v), "holds": v.count("holds"), "fails": v.count("fails"),
                    "undecided": v.count("undecided")})
    return out


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


def pooled_html(report_dir: str | Path, colours: Mapping[str, str]) -> str:
    """The report page's first table: notebook 04's claims pooled over training seeds
    (``04_claims_pooled.csv``, :func:`pooled_markdown`'s columns), verdicts coloured by ``colours``;
    a note saying how to make it where it does not exist yet."""
    import html

    import pandas as pd

    path = Path(report_dir) / f"{POOLED_FILE}.csv"
    if not path.is_file():
        return ("<p><em>No verdicts over training seeds yet: `make study-seeds` trains the encoders and generators "
                "again with other training seeds and pools notebook 04's claims over them. The single-seed claims "
                "files below are one run each.</em></p>")
    pooled = pd.read_csv(path)
    s = pooled_summary(pooled)
    rows = []
    for _, r in pooled.iterrows():
        seeds = ", ".join(p.split("=", 1)[1] for p in str(r["seed_verdicts"]).split(";"))
        p = "" if not _finite(r["p_holm"]) else f"{r['p_holm']:.2g}"
        v = str(r["verdict"])
        rows.append(f"<tr><td>{html.escape(str(r['dataset']))}</td><td>{html.escape(str(r['claim']))}</td>"
                    f"<td>{html.escape(seeds)}</td><td>{_num(r['estimate'])} [{_num(r['low'])}, {_num(r['high'])}]</td>"
                    f"<td>{p}</td><td style=\"background:{colours.get(v, '')}\"><b>{html.escape(v)}</b></td></tr>")
    head = ("<tr><th>dataset</th><th>claim</th><th>per-seed verdicts</th><th>pooled estimate [95% interval]</th>"
            "<th>p (Holm)</th><th>pooled verdict</th></tr>")
    note = (f"<p>{s['claims']} claims over {int(pooled['n_seeds'].max())} training seeds: "
            + ", ".join(f"{k} {v}" for k, v in sorted(s["verdicts"].items()))
            + f". {s['seed_flips']} change verdict between seeds; these pooled verdicts are the study's findings.</p>")
    return note + f"<table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


# What the paper reports for each claim of notebook 04 (Table II and Fig. 3; FID on CUB / Oxford-102).
PAPER = {
    "one-stage KID below two-stage KID": "FID 18.37 vs 19.89 (CUB), 54.76 vs 57.73 (Oxford)",
    "one-stage KID below classifier-based KID": "FID 18.37 vs 43.76 (CUB), 54.76 vs 64.75 (Oxford)",
    "one-stage KID close to text upper bound": "FID 18.37 vs 15.37 (CUB); Oxford: text slightly above 54.76",
    "one-stage unseen voices close to seen voices": "not in the paper (Places, real voices: FID 83.06)",
    "one-stage attribute accuracy above two-stage": "no attribute metric; FID 18.37 vs 19.89 (CUB)",
    "one-stage attribute accuracy above classifier-based": "no attribute metric; FID 18.37 vs 43.76 (CUB)",
    "one-stage attribute accuracy above the shuffled-speech floor": "Fig. 3: images follow the speech (qualitative)",
    "one-stage attribute accuracy close to text upper bound": "no attribute metric; FID 18.37 vs 15.37 (CUB)",
    "one-stage R-precision above chance": "not reported",
    "one-stage attribute accuracy above the authors' GAN recipe": "the paper's row is the authors' recipe",
    "one-stage R-precision above the authors' GAN recipe": "the paper's row is the authors' recipe",
}


def paper_number(claim: str) -> str:
    """The paper's evidence for a claim of notebook 04 (matched on the name before its margin)."""
    return next((v for k, v in PAPER.items() if claim.startswith(k)), "")


def headline_table(report_dir: str | Path):
    """Notebook 04's opening table: each claim, the paper's number, the per-seed verdicts, the
    pooled verdict and estimate [interval] (``04_claims_pooled.csv`` of the last ``make
    study-seeds``); None where no pooling was made yet."""
    import pandas as pd

    path = Path(report_dir) / f"{POOLED_FILE}.csv"
    if not path.is_file():
        return None
    p = pd.read_csv(path)
    return pd.DataFrame({
        "dataset": p["dataset"], "claim": p["claim"], "the paper": [paper_number(c) for c in p["claim"]],
        "per-seed verdicts": [", ".join(x.split("=", 1)[1] for x in str(v).split(";")) for v in p["seed_verdicts"]],
        "pooled verdict": p["verdict"],
        "pooled estimate [95% interval]": [f"{_num(e)} [{_num(lo)}, {_num(hi)}]" for e, lo, hi in
                                           zip(p["estimate"], p["low"], p["high"])],
        "p (Holm)": [("" if not _finite(x) else f"{x:.2g}") for x in p["p_holm"]]})
