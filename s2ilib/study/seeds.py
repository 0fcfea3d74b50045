"""The main table over training seeds (issue 14, part 2): mean, spread, min and max of every cell.

The data stay fixed and only the trainers are reseeded: a repeat runs notebooks 02-04 with
``--set train_seed=<s>`` (:attr:`s2ilib.core.config.StudyConfig.training_seed`), whose encoder,
generator and evaluation folders are variants (``speech_ts@train_seed=2``) beside the main run's,
while the data folder, keyed by ``seed`` and ``data.*`` only, is the main run's. ``make
study-seeds`` writes each repeat's report into ``reports/<preset>/seeds/train_seed=<s>/`` (its own
``results.json``, so the main report's records stay untouched), then calls :func:`main`, which
combines the main run's ``main_table_long.csv`` with the repeats' into
``reports/<preset>/main_table_seeds.csv`` (one row per dataset, method, condition and metric:
``n_seeds``, ``mean``, ``std`` (sample, ddof 1), ``min``, ``max``, ``seeds``, ``values``) and
``main_table_seeds.md`` (mean +- std [min, max] of the headline metrics).

Runs are only combined when they differ in the training seed alone: each repeat's table is looked
up under the variant that the main run's configuration plus ``train_seed=<s>`` names, and its
``results.json`` must record that variant (a variant names the study seed and every override).
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from s2ilib.core.io import atomic_write_text

KEY = ["dataset", "method", "condition", "metric"]
SEED_COLUMNS = [*KEY, "n_seeds", "mean", "std", "min", "max", "seeds", "values"]
# The metrics of the Markdown table (the CSV keeps every metric of the main table).
HEADLINE = ("fid", "kid", "is", "r_precision", "attr_acc", "wer")
SEEDS_DIR = "seeds"


class SeedTableError(ValueError):
    """A per-seed table is missing, or the runs differ in more than the training seed."""


def seed_report_root(report_root: str | Path, preset: str, train_seed: int) -> Path:
    """The ``--report-root`` of the repeat with ``train_seed``: ``<report_root>/<preset>/seeds/train_seed=<s>``."""
    return Path(report_root) / preset / SEEDS_DIR / f"train_seed={int(train_seed)}"


def _check_recorded(report_dir: Path, variant: str) -> None:
    """The report's ``results.json`` holds a main-table entry of ``variant`` (which names the study
    seed and every override but the preset's own keys, so data and settings match)."""
    results = report_dir / "results.json"
    if not results.is_file():
        raise SeedTableError(f"{results}: missing (run notebooks 02-04 into this report first)")
    entries = [e for e in (json.loads(results.read_text()).get("main") or {}).values() if isinstance(e, dict)]
    mine = [e for e in entries if str(e.get("variant", "")) == variant]
    if not mine:
        found = sorted({str(e.get("variant", "")) for e in entries})
        raise SeedTableError(f"{results}: no main table of variant {variant or '(the preset)'!r} (found {found}); "
                             f"the run differs from the main run in more than train_seed, or notebook 04 has not run")


def _table(report_dir: Path, cfg) -> Path:
    from s2ilib.study.paths import report_subdir, variant_of

    _check_recorded(report_dir, variant_of(cfg, "eval"))
    path = report_dir / report_subdir(cfg) / "main_table_long.csv"
    if not path.is_file():
        raise SeedTableError(f"{path}: missing (notebook 04 writes it)")
    return path


def seed_tables(report_root: str | Path, preset: str, seeds: Sequence[int] | None = None, seed: int = 1234,
                overrides: Mapping[str, Any] | None = None) -> dict[int, Path]:
    """{training seed: main_table_long.csv}: the main run (``<report_root>/<preset>/``, the preset with
    ``overrides`` and study seed ``seed``, trained with its training seed) and each repeat in ``seeds``
    (default: every ``seeds/train_seed=<s>/`` found), which must be the same configuration with
    ``train_seed=<s>`` only: each table is looked up in its report under the variant that
    configuration names (:func:`s2ilib.study.paths.report_subdir`) and must be recorded there in
    ``results.json``. Raises :class:`SeedTableError` naming what is missing."""
    from s2ilib.core.config import get_config

    report_root = Path(report_root)
    overrides = dict(overrides or {})
    base = get_config(preset, {**overrides, "seed": seed})
    tables = {base.training_seed: _table(report_root / preset, base)}
    if seeds is None:
        found = sorted((report_root / preset / SEEDS_DIR).glob("train_seed=*"))
        seeds = sorted(int(p.name.split("=", 1)[1]) for p in found if p.name.split("=", 1)[1].isdigit())
    for s in seeds:
        if int(s) in tables:
            raise SeedTableError(f"train_seed={s} is already in the table (the main run trains with seed "
                                 f"{base.training_seed}): pick another")
        cfg = get_config(preset, {**overrides, "seed": seed, "train_seed": int(s)})
        tables[int(s)] = _table(seed_report_root(report_root, preset, s) / preset, cfg)
    return tables


def combine_seed_tables(tables: Mapping[Any, Any]):
    """{seed: long main table (DataFrame or CSV path)} -> one row per (dataset, method, condition,
    metric) with ``n_seeds``, ``mean``, ``std`` (sample std, ddof 1; NaN with one seed), ``min``,
    ``max``, ``seeds`` and ``values`` (``;``-joined, in the order of ``tables``). A cell missing from some seeds
    keeps the seeds that have it (``n_seeds`` says how many); NaN values do not count."""
    import pandas as pd

    frames = []
    for seed, t in tables.items():
        df = pd.read_csv(t) if isinstance(t, (str, Path)) else t
        missing = [c for c in (*KEY, "value") if c not in df.columns]
        if missing:
            raise SeedTableError(f"seed {seed}: the main table lacks columns {missing}")
        dup = df.duplicated(KEY)
        if dup.any():
            raise SeedTableError(f"seed {seed}: cell {tuple(df.loc[dup, KEY].iloc[0])} appears twice")
        frames.append(df[[*KEY, "value"]].assign(seed=seed))
    if not frames:
        raise SeedTableError("no tables to combine")
    long = pd.concat(frames, ignore_index=True)
    long = long[long["value"].notna()]
    rows = []
    for key, g in long.groupby(KEY, sort=False):
        v = g["value"].astype(float)
        rows.append((*key, len(v), v.mean(), v.std(ddof=1) if len(v) > 1 else math.nan, v.min(), v.max(),
                     ";".join(str(s) for s in g["seed"]), ";".join(f"{x:.6g}" for x in v)))
    return pd.DataFrame(rows, columns=SEED_COLUMNS)


def seeds_wide(combined, metrics: Sequence[str] = HEADLINE, digits: int = 3):
    """One row per (dataset, method, condition), one column per metric present:
    ``mean ± std [min, max]`` (``(n=k)`` appended where fewer seeds than the most have the cell)."""
    import pandas as pd

    df = combined[combined["metric"].isin(metrics)]
    present = [m for m in metrics if m in set(df["metric"])]
    n = int(combined["n_seeds"].max()) if len(combined) else 0

    def cell(r) -> str:
        std = "" if math.isnan(r["std"]) else f" ± {r['std']:.{digits}f}"
        few = "" if r["n_seeds"] == n else f" (n={r['n_seeds']})"
        return f"{r['mean']:.{digits}f}{std} [{r['min']:.{digits}f}, {r['max']:.{digits}f}]{few}"

    rows = []
    for key, g in df.groupby(["dataset", "method", "condition"], sort=False):
        by_metric = {r["metric"]: cell(r) for _, r in g.iterrows()}
        rows.append([*key, *(by_metric.get(m, "") for m in present)])
    return pd.DataFrame(rows, columns=["dataset", "method", "condition", *present])


def seeds_note(combined) -> str:
    """What the spread is over: the number of training seeds and which."""
    n = int(combined["n_seeds"].max()) if len(combined) else 0
    seeds = list(dict.fromkeys(s for v in combined["seeds"] for s in str(v).split(";")))
    return (f"Mean ± sample std [min, max] over {n} training seeds ({', '.join(seeds)}); data and evaluation "
            f"fixed, encoders and generators retrained per seed.")


def seeds_markdown(combined, metrics: Sequence[str] = HEADLINE, digits: int = 3) -> str:
    """One row per (dataset, method, condition), one column per metric: ``mean ± std [min, max]``."""
    wide = seeds_wide(combined, metrics, digits)
    header = list(wide.columns)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in wide.itertuples(index=False)]
    return "\n".join(lines) + "\n\n" + seeds_note(combined) + "\n"


def stale_cells(combined, main_long: str | Path) -> list[str]:
    """Cells whose main-run value differs from ``main_long`` (the main run is combined first, so its
    seed is the one most rows list first)."""
    import pandas as pd

    main_long = Path(main_long)
    if not main_long.is_file() or combined.empty:
        return []
    now = pd.read_csv(main_long).set_index(["dataset", "method", "condition", "metric"])["value"]
    firsts = combined["seeds"].astype(str).str.split(";").str[0]
    main_seed = firsts.mode().iloc[0]
    out = []
    for r, seed in zip(combined.itertuples(index=False), firsts):
        key = (r.dataset, r.method, r.condition, r.metric)
        if seed != main_seed:
            continue
        first = float(str(r.values).split(";")[0])
        if key in now.index and not pd.isna(now[key]) and abs(float(now[key]) - first) > 1e-5 * max(1.0, abs(first)):
            out.append("/".join(map(str, key)))
    return out


def write_seed_tables(combined, out_dir: str | Path, name: str = "main_table_seeds") -> dict[str, Path]:
    """Write ``<name>.csv`` (every metric) and ``<name>.md`` (the headline metrics) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / f"{name}.csv", "md": out / f"{name}.md"}
    atomic_write_text(paths["csv"], combined.to_csv(index=False))
    atomic_write_text(paths["md"], seeds_markdown(combined))
    return paths


def _overrides(pairs: Sequence[str], parser: argparse.ArgumentParser) -> dict[str, Any]:
    """``key=value`` as ``s2i study --set`` reads them: JSON where it parses, else a string."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            parser.error(f"--set expects key=value, got {pair!r}")
        try:
            out[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            out[key.strip()] = text
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m s2ilib.study.seeds --preset small [--seeds 2 3] [--seed 1234] [--set key=value]
    [--report-root reports]`` (``--seed`` / ``--set``: those the main run was made with)."""
    from s2ilib.study.runner import REPO_ROOT

    p = argparse.ArgumentParser(prog="python -m s2ilib.study.seeds",
                                description="combine the main tables of several training seeds")
    p.add_argument("--preset", default="small")
    p.add_argument("--report-root", default=str(REPO_ROOT / "reports"))
    p.add_argument("--seeds", type=int, nargs="*", default=None,
                   help="training seeds of the repeats (default: every reports/<preset>/seeds/train_seed=*)")
    p.add_argument("--seed", type=int, default=1234, help="the study seed of the main run (default 1234)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="an override the main run was made with")
    args = p.parse_args(argv)
    try:
        tables = seed_tables(args.report_root, args.preset, args.seeds, seed=args.seed,
                             overrides=_overrides(args.set or [], p))
    except SeedTableError as exc:
        p.exit(1, f"{p.prog}: {exc}\n")
    combined = combine_seed_tables(tables)
    out = write_seed_tables(combined, Path(args.report_root) / args.preset)
    print(f"[seeds] {len(tables)} training seeds ({', '.join(map(str, tables))}) -> {out['csv']}, {out['md']}")
    try:
        pooled = pool_seed_claims(tables, Path(args.report_root) / args.preset, args.preset)
    except SeedTableError as exc:
        p.exit(1, f"{p.prog}: {exc}\n")
    print(f"[seeds] claims of notebook 04 pooled over the seeds -> {pooled['csv']}, {pooled['md']}")
    return 0


CLAIMS_FILE = "04_claims.csv"


def pool_seed_claims(tables: Mapping[int, Path], out_dir: Path, preset: str) -> dict[str, Path]:
    """Pool notebook 04's claims over the training seeds (the ``04_claims.csv`` beside each seed's
    main table; :func:`s2ilib.study.claims.pool_claims`), write ``04_claims_pooled.{csv,md}`` into
    ``out_dir`` and record them in its ``results.json`` (section ``pooled_claims``, key ``04``)."""
    import pandas as pd

    from s2ilib.core.results import record
    from s2ilib.study import claims as C

    per_seed = {}
    for seed, table in tables.items():
        path = Path(table).parent / CLAIMS_FILE
        if not path.is_file():
            raise SeedTableError(f"{path}: missing (notebook 04 writes it beside {Path(table).name})")
        per_seed[str(seed)] = pd.read_csv(path)
    pooled = C.pool_claims(per_seed)
    paths = C.write_pooled(pooled, out_dir, C.POOLED_FILE)
    rows = json.loads(pooled.to_json(orient="records"))
    record(out_dir / "results.json", "pooled_claims",
           {"04": {"seeds": [int(s) for s in tables], "method": C.METHOD, "rows": rows,
                   "summary": C.pooled_summary(pooled)}}, preset=preset)
    return paths


if __name__ == "__main__":
    raise SystemExit(main())
