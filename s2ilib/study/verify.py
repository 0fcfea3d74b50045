"""``s2i verify``: does a rerun reproduce the committed report?

A rerun on the same hardware and software gives the committed numbers bit for bit. On another CPU
the kernels take other paths (bf16 native or emulated, oneDNN's and CTranslate2's instruction sets),
which moves the numbers the way another training seed does. So a rerun is compared with the spread
the committed report states for a *new training seed*:

- **numbers** (every cell of the main table): the 95% prediction interval for one more training seed,
  ``mean +- t(0.975, n-1) * sd * sqrt(1 + 1/n)`` over the ``n`` committed seeds
  (``main_table_seeds.csv``). A cell with one committed run only has that run's 95% interval (over
  test images: narrower, it leaves out the seed-to-seed variance; said in the ``spread`` column); a
  cell with neither (FID has no interval) is listed as ``no stated spread``. About 1 in 20 numbers
  falls outside a 95% interval by chance, so numbers outside are reported, not failed on.
- **verdicts** (every claim of notebook 04), at two levels:

  * *pooled over training seeds* (``pooled_claims``, written by ``make study-seeds``): what a rerun
    must reproduce. A rerun with pooled verdicts of its own (it ran ``make study-seeds`` too) that
    disagrees with a committed pooled verdict is a **flip**; a rerun without them is ``not run``.
  * *single seed* (``main.<dataset>.claims``): the rerun's one-seed verdict against the committed
    seeds' own verdicts (the main run's and the repeats' under ``seeds/``). Where the committed seeds
    all agree the claim is seed-stable and a different rerun verdict is a **flip**; where they
    disagree it is ``seed-dependent`` and any verdict is within what the report states.

Exit status 1 when a verdict flipped, 0 otherwise; the table lists every number and claim.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from s2ilib.core.errors import UsageError
from s2ilib.core.gitfiles import ReportFiles, ReportSourceError, is_git_checkout

LEVEL = 0.95
KEY = ("dataset", "method", "condition", "metric")


class VerifyError(UsageError):
    """A results file or committed report that cannot be compared (missing, not a study's, another
    preset): exit status 2, apart from 1 for a rerun that does not reproduce."""


@dataclass
class Reference:
    """What the committed report states: per-cell spreads and per-claim verdicts."""

    numbers: Any  # DataFrame: dataset, method, condition, metric, value, low, high, spread
    verdicts: dict[tuple[str, str], dict[str, str]]  # (dataset, claim) -> {seed label: single-seed verdict}
    pooled: dict[tuple[str, str], str]  # (dataset, claim) -> verdict pooled over the seeds
    source: str
    environment: dict[str, Any]


def prediction_interval_from(mean: float, sd: float, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Two-sided ``level`` prediction interval for one more draw of a normal variable whose ``n``
    draws (n >= 2) had sample mean ``mean`` and sample SD ``sd`` (ddof 1)."""
    from scipy import stats

    if n < 2:
        raise ValueError(f"a prediction interval needs two or more values, got {n}")
    half = stats.t.ppf(0.5 + level / 2, n - 1) * sd * math.sqrt(1 + 1 / n)
    return mean - half, mean + half


def prediction_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """:func:`prediction_interval_from` of the sample ``values``."""
    n = len(values)
    mean = sum(values) / n if n else float("nan")
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
    return prediction_interval_from(mean, sd, n, level)


def _main_long(results: dict[str, Any]):
    """The main table (long) of a results file's own run: datasets without a variant suffix."""
    from s2ilib.evaluation.tables import main_table_long

    main = {k: v for k, v in (results.get("main") or {}).items() if "@" not in k}
    return main_table_long(main)


def _claims(results: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for key, entry in (results.get("main") or {}).items():
        dataset = entry.get("dataset", key.split("@")[0])
        for row in entry.get("claims") or []:
            out[(dataset, row["claim"])] = row
    return out


def _pooled(results: dict[str, Any]) -> dict[tuple[str, str], str]:
    rows = ((results.get("pooled_claims") or {}).get("04") or {}).get("rows") or []
    return {(r["dataset"], r["claim"]): r["verdict"] for r in rows}


def _read_json(files: ReportFiles, rel: str) -> dict[str, Any]:
    try:
        return json.loads(files.text(rel))
    except json.JSONDecodeError as exc:
        raise VerifyError(f"{rel} ({files}): not valid JSON ({exc})") from exc


def committed_reference(files: ReportFiles, preset: str) -> Reference:
    """The spreads and verdicts that ``reports/<preset>/`` states in ``files`` (a commit or a folder)."""
    import pandas as pd

    base = f"reports/{preset}"
    results = _read_json(files, f"{base}/results.json")
    long = _main_long(results)
    long["spread"] = "one run's 95% CI (test images)"
    long.loc[long["low"].isna(), "spread"] = "none stated"
    seeds_rel = f"{base}/main_table_seeds.csv"
    if files.exists(seeds_rel):
        from io import StringIO

        seeds = pd.read_csv(StringIO(files.text(seeds_rel)))
        # mean and std, not the rounded `values`; a cell equal in every seed (WER, the reader on real
        # images, the real-vs-real floor: they do not depend on the training seed) keeps its own interval
        for _, row in seeds[(seeds["n_seeds"] >= 2) & (seeds["std"] > 0)].iterrows():
            lo, hi = prediction_interval_from(float(row["mean"]), float(row["std"]), int(row["n_seeds"]))
            mask = (long[list(KEY)] == [row[k] for k in KEY]).all(axis=1)
            long.loc[mask, ["low", "high", "spread"]] = [lo, hi, f"new-seed 95% PI (n={int(row['n_seeds'])} seeds)"]
    verdicts: dict[tuple[str, str], dict[str, str]] = {}
    for key, row in _claims(results).items():
        verdicts[key] = {"main run": row.get("verdict")}
    for rel in files.glob(f"{base}/seeds", "results.json"):
        seed_name = Path(rel).parent.parent.name  # seeds/train_seed=<s>/<preset>/results.json
        for key, row in _claims(_read_json(files, rel)).items():
            verdicts.setdefault(key, {})[seed_name] = row.get("verdict")
    env = (results.get("study") or {}).get("environment") or results.get("environment") or {}
    return Reference(long, verdicts, _pooled(results), str(files), env)


def compare(reference: Reference, rerun: dict[str, Any]):
    """(numbers, claims) DataFrames: each committed cell with the rerun's value and its status
    (inside / outside / identical or differs without a stated spread / missing), each claim at each
    level with the rerun's verdict and its status (same / flipped / seed-dependent / not run / missing)."""
    import pandas as pd

    ref = reference.numbers.rename(columns={"value": "committed"})
    new = _main_long(rerun)[list(KEY) + ["value"]].rename(columns={"value": "rerun"})
    nums = ref[list(KEY) + ["committed", "low", "high", "spread"]].merge(new, on=list(KEY), how="left")

    def status(r):
        if pd.isna(r["rerun"]):
            return "missing"
        if pd.isna(r["low"]) or pd.isna(r["high"]):
            same = math.isclose(r["rerun"], r["committed"], rel_tol=1e-9, abs_tol=1e-12)
            return "identical (no stated spread)" if same else "differs (no stated spread)"
        return "inside" if r["low"] <= r["rerun"] <= r["high"] else "outside"

    nums["status"] = nums.apply(status, axis=1) if len(nums) else []
    got, got_pooled = _claims(rerun), _pooled(rerun)
    rows = []
    for (ds, claim), stated in sorted(reference.pooled.items()):
        new_v = got_pooled.get((ds, claim))
        st = "not run" if new_v is None else ("same" if new_v == stated else "flipped")
        rows.append({"dataset": ds, "claim": claim, "level": "pooled over seeds", "committed": stated,
                     "basis": "pooled", "rerun": new_v or "(make study-seeds not run)", "status": st})
    for (ds, claim), per_seed in sorted(reference.verdicts.items()):
        committed = {v for v in per_seed.values() if v is not None}
        stated = committed.pop() if len(committed) == 1 else None
        new_v = (got.get((ds, claim)) or {}).get("verdict")
        if new_v is None:
            st = "missing"
        else:
            st = "seed-dependent" if stated is None else ("same" if new_v == stated else "flipped")
        rows.append({"dataset": ds, "claim": claim, "level": "single seed", "committed": stated or "seed-dependent",
                     "basis": "seeds: " + ", ".join(str(v) for v in per_seed.values()), "rerun": new_v, "status": st})
    return nums, pd.DataFrame(rows, columns=["dataset", "claim", "level", "committed", "basis", "rerun", "status"])


def summary(nums, claims) -> str:
    counts = nums["status"].value_counts().to_dict() if len(nums) else {}
    compared = counts.get("inside", 0) + counts.get("outside", 0)
    unstated = counts.get("identical (no stated spread)", 0) + counts.get("differs (no stated spread)", 0)
    flips = claims[claims["status"] == "flipped"]
    missing = int((claims["status"] == "missing").sum()) + counts.get("missing", 0)
    verdict = "REPRODUCED" if flips.empty else "NOT REPRODUCED"
    pooled = claims[claims["level"] == "pooled over seeds"]
    single = claims[claims["level"] == "single seed"]
    pooled_note = (f"pooled verdicts: {int((pooled['status'] == 'flipped').sum())} of {len(pooled)} flipped"
                   + (" (the rerun has none: run make study-seeds)" if (pooled["status"] == "not run").all() else "")
                   if len(pooled) else "no pooled verdicts in the committed report")
    return (f"{verdict}: {pooled_note}; single-seed verdicts: {int((single['status'] == 'flipped').sum())} of "
            f"{len(single)} flipped ({int((single['status'] == 'seed-dependent').sum())} seed-dependent in the "
            f"committed report); "
            f"{counts.get('outside', 0)} of {compared} numbers outside the committed spread "
            f"(about {0.05 * compared:.0f} expected by chance at 95%); "
            f"{unstated} without a stated spread ({counts.get('differs (no stated spread)', 0)} of them differ); "
            f"{missing} missing in the rerun")


def format_tables(nums, claims) -> str:
    """Plain-text tables: the claims, then the numbers outside or missing (inside ones counted only)."""
    import pandas as pd

    with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", 200,
                           "display.max_colwidth", 80, "display.float_format", "{:.4g}".format):
        parts = ["Claims (committed verdict vs rerun):", claims.to_string(index=False) if len(claims) else "(none)"]
        bad = nums[nums["status"].isin(["outside", "missing", "differs (no stated spread)"])]
        parts += ["", f"Numbers outside the committed spread, differing without one, or missing "
                      f"({len(bad)} of {len(nums)}):",
                  bad.to_string(index=False) if len(bad) else "(none)"]
    return "\n".join(parts)


def _machine(env: dict[str, Any]) -> str:
    hw = env.get("hardware") or {}
    isa = ",".join(hw.get("kernel_flags") or []) or "flags not recorded"
    bf16 = {True: "native bf16", False: "no native bf16"}.get(hw.get("bf16_native"), "bf16 not recorded")
    return f"{env.get('cpu', 'unknown CPU')} ({isa}; {bf16}); commit {str(env.get('commit'))[:7]}"


def verify(rerun_path: str | Path, files: ReportFiles, preset: str, out=None) -> int:
    out = out or sys.stdout
    rerun_path = Path(rerun_path)
    if not rerun_path.is_file():
        raise VerifyError(f"{rerun_path}: no results file; run `make study` (or s2i study --preset {preset}) first")
    try:
        rerun = json.loads(rerun_path.read_text())
    except json.JSONDecodeError as exc:
        raise VerifyError(f"{rerun_path}: not valid JSON ({exc})") from exc
    if rerun.get("preset") not in (None, preset):
        raise VerifyError(f"{rerun_path}: a {rerun.get('preset')!r} study, not {preset!r} (pass --preset)")
    if not rerun.get("main"):
        raise VerifyError(f"{rerun_path}: no main table (section 'main'); notebook 04 has not run")
    reference = committed_reference(files, preset)
    nums, claims = compare(reference, rerun)
    print(f"committed: {reference.source} -- {_machine(reference.environment)}", file=out)
    print(f"rerun:     {rerun_path} -- {_machine(rerun.get('environment') or {})}", file=out)
    print(format_tables(nums, claims), file=out)
    print(summary(nums, claims), file=out)
    return 1 if (claims["status"] == "flipped").any() else 0


def add_cli(sub) -> None:
    p = sub.add_parser("verify", help="compare a rerun's results.json with the committed report "
                                      "(numbers against the stated spread, verdicts against the committed ones)")
    p.add_argument("--preset", default="small")
    p.add_argument("--rerun", default=None, help="the rerun's results file (default: reports/<preset>/results.json)")
    p.add_argument("--reference", default="HEAD",
                   help="the committed report: a git revision of the project (default HEAD) or a folder holding "
                        "reports/<preset>/ (e.g. an unpacked copy)")
    p.add_argument("--root", default=".", help="the project checkout (default: the current folder)")
    p.set_defaults(func=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    root = Path(args.root)
    ref = Path(args.reference)
    try:
        if ref.is_dir():
            files = ReportFiles(ref, None)
        elif is_git_checkout(root):
            files = ReportFiles(root, args.reference)
        else:
            raise VerifyError(f"{root}: not a git checkout, so --reference {args.reference!r} cannot be read; "
                              f"pass --reference <folder holding reports/{args.preset}/>")
        return verify(args.rerun or root / "reports" / args.preset / "results.json", files, args.preset)
    except ReportSourceError as exc:
        raise VerifyError(str(exc)) from exc
