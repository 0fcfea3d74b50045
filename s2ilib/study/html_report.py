"""One page a reader can open: ``reports/<preset>/index.html``, built from the report folder.

The page holds, in this order: the main table with 95% intervals (``results.json`` section
``main``, :func:`s2ilib.evaluation.tables.main_table_intervals`), its spread over training seeds
(``main_table_seeds.csv``, ``make study-seeds``), every claims table
(``NN_claims.csv``) with its verdicts, the Fig. 3 grids (``figures/03_<dataset>_fig3.png``) with
an audio player per grid row, the interpolation figures (notebook 07), the robustness verdicts per
condition and figures (notebook 08, section ``robustness``), the other figures, the
environment (``environment``) and the notebook timings (``notebooks``). Images and audio are
linked by relative paths into ``figures/`` beside the page (the files the notebooks already
committed), so the page adds a few hundred kB, not a second copy of every figure; copy the report
folder, not the page alone.
A missing part is a visible note on the page, never a silent gap.

The audio of a Fig. 3 grid lives beside its figure: ``figures/03_<dataset>_fig3_audio.json``
(one entry per grid row: caption, voice, wav file) and the wavs, written by
:func:`write_fig3_audio` from the same rows notebook 03 drew (same seed and count).

:func:`publish` writes the page, loads it in a headless Chromium from the system packages
(:mod:`s2ilib.study.browser`; ``apt-get install chromium``) to check that every image and audio
element loads and the console is clean, and writes a screenshot ``index.png`` beside it; without
a browser it says so in its result and skips the check and the screenshot.
"""
from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from s2ilib.core.io import atomic_write_text
from s2ilib.core.results import load_results

PAGE = "index.html"
FIG3_ROWS = 4  # notebook 03's default n_utterances: the rows of its Fig. 3 grid
SHOT = "index.png"
SHOT_SIZE = (1280, 2000)
FIG3 = re.compile(r"^03_(?P<dataset>.+)_fig3\.png$")
# figures with their own section: key -> (heading, file patterns): the notebook's figures by its number,
# and any figure named after the key
NAMED_FIGURES = {"interpolation": ("Interpolation between utterances", ("07_*.png", "*interpolation*.png")),
                 "robustness": ("Robustness to unseen speech", ("08_*.png", "*robustness*.png"))}
VERDICT_COLOURS = {"holds": "#d4edda", "fails": "#f8d7da", "undecided": "#fff3cd"}

CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
table{border-collapse:collapse;font-size:0.85em;margin:0.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3} img{max-width:100%} .note{color:#8a5a00;background:#fff8e1;padding:6px}
.fig3{display:flex;gap:1em;align-items:flex-start} .fig3 figure{flex:3} .fig3 table{flex:2}
.fig3 td:nth-child(2){min-width:14em} figure{margin:0 0 1.5em}
figcaption{font-size:0.85em;color:#555} audio{width:260px}
"""


class ReportError(ValueError):
    """The report folder cannot be turned into a page (no results.json, a bad audio sidecar)."""


# ------------------------------------------------------------------------------------------------
# pieces of the page


def figure_src(path: Path, figures: Path) -> str:
    """``path`` (a file under the report's ``figures`` folder) as a URL relative to the page."""
    return "figures/" + quote(Path(path).relative_to(figures).as_posix())


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _figure(path: Path, caption: str | None = None) -> str:
    """The image with the caption registered beside it (``figures/captions.json``), else its name."""
    from s2ilib.study.captions import figure_caption

    cap = html.escape(caption or figure_caption(path) or path.name)
    return f'<figure><img src="{figure_src(path, path.parent)}" alt="{cap}"><figcaption>{cap}</figcaption></figure>'


def main_table_html(results: dict[str, Any]) -> str:
    """The main table of notebook 04 (each number with its 95% interval and n)."""
    from s2ilib.evaluation.tables import main_table_intervals

    main = results.get("main") or {}
    if not main:
        return _note("No main table yet: results.json has no `main` section (notebook 04 has not run).")
    df = main_table_intervals(main)
    if df.empty:
        return _note("The `main` section of results.json holds no method results.")
    return df.to_html(na_rep="", border=0)


def seeds_html(report_dir: Path) -> str:
    """The main table over training seeds (``main_table_seeds.csv``, ``make study-seeds``): mean ± std
    [min, max] per cell, flagged where the main run's values no longer match the main table."""
    import pandas as pd

    from s2ilib.study import seeds as S

    path = report_dir / "main_table_seeds.csv"
    if not path.is_file():
        return _note("No spread over training seeds yet: `make study-seeds` retrains the encoders and "
                     "generators with other training seeds and writes main_table_seeds.csv (about an hour "
                     "of CPU per seed at small).")
    combined = pd.read_csv(path)
    stale = S.stale_cells(combined, report_dir / "main_table_long.csv")
    warn = (_note(f"{len(stale)} cells of the main run differ from the main table now "
                  f"(e.g. {', '.join(stale[:3])}): the main table changed after the seeds were combined; "
                  f"rerun `make study-seeds`.") if stale else "")
    return (warn + f"<p>{html.escape(S.seeds_note(combined))}</p>"
            + S.seeds_wide(combined).to_html(index=False, border=0))


def _verdict_column(df) -> Any:
    """Claims files name their verdict ``verdict``; older ones a boolean ``holds``."""
    if "verdict" in df.columns:
        return df["verdict"].astype(str)
    if "holds" in df.columns:
        return df["holds"].map(lambda v: "holds" if str(v).lower() == "true" else "fails")
    return None


def claims_html(report_dir: Path) -> str:
    """Every ``NN_claims.csv`` of the report folder, the verdict column coloured."""
    import pandas as pd

    files = sorted(report_dir.glob("[0-9][0-9]_claims.csv"))
    if not files:
        return _note("No claims tables (NN_claims.csv) in the report folder yet.")
    parts = []
    for f in files:
        df = pd.read_csv(f)
        verdicts = _verdict_column(df)
        if verdicts is not None:
            df = df.drop(columns=[c for c in ("verdict", "holds") if c in df.columns])
            df.insert(0, "verdict", verdicts)
            counts = verdicts.value_counts().to_dict()
            summary = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
        else:
            summary = "no verdict column"
        table = df.to_html(index=False, na_rep="", border=0, float_format=lambda v: f"{v:.4g}")
        for verdict, colour in VERDICT_COLOURS.items():
            table = table.replace(f"<td>{verdict}</td>", f'<td style="background:{colour}">{verdict}</td>')
        parts.append(f"<h3>{html.escape(f.name)} ({html.escape(summary)})</h3>{table}")
    return "\n".join(parts)


def fig3_audio_path(figures: Path, dataset: str) -> Path:
    return figures / f"03_{dataset}_fig3_audio.json"


def _audio_rows(figures: Path, dataset: str) -> list[dict[str, Any]] | None:
    side = fig3_audio_path(figures, dataset)
    if not side.exists():
        return None
    try:
        rows = json.loads(side.read_text())["rows"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ReportError(f"{side}: not a Fig. 3 audio list ({exc})") from exc
    for r in rows:
        wav = figures / r["wav"]
        if not wav.exists():
            raise ReportError(f"{side}: row {r.get('row')} names {wav}, which does not exist")
    return rows


def fig3_html(figures: Path) -> str:
    """Each Fig. 3 grid with a table beside it: grid row, caption, voice, audio player."""
    grids = sorted(p for p in figures.glob("03_*_fig3.png") if FIG3.match(p.name)) if figures.exists() else []
    if not grids:
        return _note("No Fig. 3 grid (figures/03_<dataset>_fig3.png) yet: notebook 03 has not run.")
    parts = []
    for grid in grids:
        dataset = FIG3.match(grid.name)["dataset"]
        rows = _audio_rows(figures, dataset)
        if rows is None:
            side = _note(f"No audio for this grid ({fig3_audio_path(figures, dataset).name} is missing; "
                         "notebook 09 writes it when the built dataset is in the run folder).")
        else:
            cells = "".join(
                f"<tr><td>{k + 1}</td><td>{html.escape(str(r.get('text', '')))}</td>"
                f"<td><code>{html.escape(str(r.get('voice', '')))}</code></td>"
                f'<td><audio controls preload="metadata" src="{figure_src(figures / r["wav"], figures)}"></audio></td></tr>'
                for k, r in enumerate(rows))
            side = f"<table><tr><th>grid row</th><th>caption</th><th>voice</th><th>speech</th></tr>{cells}</table>"
        parts.append(f"<h3>{html.escape(dataset)}</h3><div class=\"fig3\">{_figure(grid)}{side}</div>")
    return "\n".join(parts)


def named_figures(figures: Path, key: str) -> list[Path]:
    """The figures of section ``key`` of :data:`NAMED_FIGURES` (its notebook's and any named after it)."""
    if not figures.exists():
        return []
    found = {p for pattern in NAMED_FIGURES[key][1] for p in figures.glob(pattern)}
    return sorted(found, key=lambda p: ("curves" not in p.name and "robustness" not in p.name, p.name))


def named_figures_html(figures: Path, key: str) -> str:
    """The figures of section ``key`` (interpolation, robustness), or a note that none exist."""
    found = named_figures(figures, key)
    if not found:
        where = " or ".join(f"figures/{p}" for p in NAMED_FIGURES[key][1])
        return _note(f"No {key} figure ({where}) in the report folder yet.")
    return "\n".join(_figure(p) for p in found)


def robustness_html(results: dict[str, Any]) -> str:
    """Notebook 08's verdicts per condition beside each method's attribute accuracy and the WER
    (``robustness`` section of results.json), or a note that it has not run."""
    import pandas as pd

    sec = {k: v for k, v in (results.get("robustness") or {}).items() if isinstance(v, dict) and "cells" in v}
    if not sec:
        return _note("No robustness table yet: results.json has no `robustness` section (notebook 08 has not run).")
    parts = []
    for name, entry in sec.items():
        verdict = {v["condition"]: v["verdict"] for v in entry.get("verdicts") or []}
        rows = []
        for cond in entry["conditions"]:
            row = {"condition": cond, "family": entry.get("families", {}).get(cond, "")}
            for m in entry["methods"]:
                row[f"{m} attr_acc"] = _with_ci(entry["cells"][m].get(cond, {}), "attr_acc")
            for m in entry["methods"]:
                if entry["cells"][m].get(cond, {}).get("wer") is not None:
                    row[f"{m} WER"] = _with_ci(entry["cells"][m][cond], "wer")
            row["one-stage beats two-stage"] = verdict.get(cond, "")
            rows.append(row)
        table = pd.DataFrame(rows).to_html(index=False, na_rep="", border=0)
        for v, colour in VERDICT_COLOURS.items():
            table = table.replace(f"<td>{v}</td>", f'<td style="background:{colour}">{v}</td>')
        parts.append(f"<h3>{html.escape(name)} ({entry.get('n_queries')} test utterances of "
                     f"{entry.get('n_test_images')} test images per condition)</h3>{table}")
    return "\n".join(parts)


def _with_ci(cell: dict[str, Any], metric: str) -> str:
    v, ci = cell.get(metric), cell.get(f"{metric}_ci") or [None, None]
    if v is None:
        return ""
    if any(x is None for x in ci):
        return f"{v:.3f}"
    return f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def other_figures_html(figures: Path) -> str:
    """Every other figure of the report, folded away under one <details>."""
    if not figures.exists():
        return _note("No figures folder.")
    named = {p for key in NAMED_FIGURES for p in named_figures(figures, key)}
    rest = [p for p in sorted(figures.glob("*.png")) if not FIG3.match(p.name) and p not in named]
    if not rest:
        return _note("No other figures.")
    return f"<details><summary>{len(rest)} figures</summary>{''.join(_figure(p) for p in rest)}</details>"


def _kv_table(pairs: list[tuple[str, Any]]) -> str:
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in pairs)
    return f"<table>{rows}</table>"


def environment_html(results: dict[str, Any]) -> str:
    env = results.get("environment") or {}
    if not env:
        return _note("results.json records no environment.")
    pairs = [(k, env[k]) for k in ("device", "python", "platform", "cpu", "cpu_count", "torch_threads", "cuda",
                                   "commit", "dirty") if k in env]
    pairs += [(f"package {k}", v) for k, v in sorted((env.get("packages") or {}).items())]
    return _kv_table(pairs)


def timings_html(results: dict[str, Any]) -> str:
    """The notebooks' wall times (:func:`s2ilib.study.timings.notebook_timings`, as in the README)."""
    from s2ilib.study.timings import TimingsError, notebook_timings

    try:
        rows = notebook_timings(results)
    except TimingsError as exc:
        return _note(f"No timing table: {exc}.")
    cells = "".join(f"<tr><td>{html.escape(r['notebook'])}</td><td>{r['seconds']:.1f}</td>"
                    f"<td>{html.escape(r['finished'])}</td><td><code>{html.escape(r['commit'])}</code></td></tr>"
                    for r in rows)
    total = sum(r["seconds"] for r in rows)
    return (f"<table><tr><th>notebook</th><th>seconds</th><th>finished</th><th>commit</th></tr>{cells}"
            f"<tr><th>total</th><th>{total:.1f}</th><td></td><td></td></tr></table>")


# ------------------------------------------------------------------------------------------------
# the page


def page_html(report_dir: str | Path, results_path: str | Path | None = None) -> str:
    """The whole page as one string (figures and audio linked from ``figures/``). ``results_path``: the results file
    (default ``<report_dir>/results.json``; a variant's report folder uses its preset's)."""
    report_dir = Path(report_dir)
    results_path = Path(results_path) if results_path else report_dir / "results.json"
    if not results_path.exists():
        raise ReportError(f"{results_path}: no results file; run the study's notebooks first")
    results = load_results(results_path)
    figures = report_dir / "figures"
    preset = results.get("preset", report_dir.name)
    env = results.get("environment") or {}
    head = (f"<p>Preset <b>{html.escape(str(preset))}</b>, results updated {html.escape(str(results.get('updated')))}, "
            f"commit <code>{html.escape(str(env.get('commit')))}</code>"
            f"{' (uncommitted changes)' if env.get('dirty') else ''}, device {html.escape(str(env.get('device')))}.</p>")
    from s2ilib.study.claims import pooled_html

    sections = [
        ("The paper's claims over training seeds (the findings)", pooled_html(report_dir, VERDICT_COLOURS)),
        ("Main table (95% intervals)", main_table_html(results)),
        ("Main table over training seeds", seeds_html(report_dir)),
        ("The paper's claims, checked in one run each (single seed)", claims_html(report_dir)),
        ("Fig. 3: spoken descriptions of unseen classes", fig3_html(figures)),
        (NAMED_FIGURES["interpolation"][0], named_figures_html(figures, "interpolation")),
        (NAMED_FIGURES["robustness"][0], robustness_html(results) + named_figures_html(figures, "robustness")),
        ("Other figures", other_figures_html(figures)),
        ("Environment", environment_html(results)),
        ("Notebook timings", timings_html(results)),
    ]
    body = "\n".join(f'<section id="s{k}"><h2>{k + 1}. {html.escape(t)}</h2>\n{b}</section>'
                     for k, (t, b) in enumerate(sections))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>s2i study: {html.escape(str(preset))}'
            f"</title><style>{CSS}</style></head><body><h1>Direct speech-to-image translation: study report "
            f"({html.escape(str(preset))})</h1>{head}\n{body}\n</body></html>\n")


def build_page(report_dir: str | Path, results_path: str | Path | None = None) -> Path:
    """Write ``<report_dir>/index.html`` (atomic) and return its path."""
    path = Path(report_dir) / PAGE
    atomic_write_text(path, page_html(report_dir, results_path))
    return path


def publish(report_dir: str | Path, size: tuple[int, int] = SHOT_SIZE,
            results_path: str | Path | None = None) -> dict[str, Any]:
    """Write the page, check it in a headless browser and screenshot it (``index.png``).

    Returns what notebook 09 records: page and screenshot paths and sizes, the number of images and
    audio players, the browser check (broken sources, console errors) and ``browser`` (its path,
    or None with ``note`` saying how to install one). A page that fails the check raises
    :class:`ReportError` naming the broken sources and errors."""
    from s2ilib.study import browser as _browser

    report_dir = Path(report_dir)
    page = build_page(report_dir, results_path)
    text = page.read_text()
    out: dict[str, Any] = {"page": page.name, "page_bytes": page.stat().st_size,
                           "n_img": text.count("<img "), "n_audio": text.count("<audio ")}
    exe = _browser.find_browser()
    out["browser"] = exe
    if exe is None:
        out.update(screenshot=None, checked=False, note=_browser.INSTALL_HINT + "; page not checked, no screenshot")
        return out
    check = _browser.check_page(page, exe)
    if check["broken"] or check["errors"]:
        raise ReportError(f"{page}: broken sources {check['broken']}, console errors {check['errors']}")
    shot = _browser.screenshot(page, report_dir / SHOT, size, exe)
    out.update(checked=True, loaded_images=len(check["images"]), loaded_audio=len(check["audio"]),
               console_messages=len(check["console"]), screenshot=shot.name, screenshot_size=list(size))
    return out


def write_fig3_audio(ds, rows: list[int], figures: str | Path, sr: int = 16000) -> Path:
    """The speech of each Fig. 3 grid row (store rows ``rows`` of ``ds``, in grid order) as wavs
    beside the figure, re-synthesised from the recorded caption and voice, and the sidecar
    ``03_<dataset>_fig3_audio.json`` listing them. Returns the sidecar's path."""
    from s2ilib.data.spoken import speak_utterance
    from s2ilib.speech.audio import save_wav

    figures = Path(figures)
    folder = figures / f"03_{ds.name}_fig3_audio"
    idx = ds.speech.index
    entries = []
    for k, r in enumerate(rows):
        wav = save_wav(folder / f"row{k + 1}.wav", speak_utterance(ds, int(r), sr=sr), sr=sr)
        entries.append({"row": k + 1, "store_row": int(r), "text": str(idx.at[r, "text"]),
                        "voice": str(idx.at[r, "voice"]), "wav": str(wav.relative_to(figures))})
    side = fig3_audio_path(figures, ds.name)
    atomic_write_text(side, json.dumps({"dataset": ds.name, "sr": sr, "rows": entries}, indent=1) + "\n")
    return side


def study_fig3_audio(paths, cfg) -> dict[str, str]:
    """Write the audio of every Fig. 3 grid of the study (:func:`write_fig3_audio`), for the rows
    notebook 03 drew: :func:`s2ilib.study.analysis.test_utterance_rows` with the run's seed and
    notebook 03's ``n_utterances`` (as recorded in ``results.json``, else its default).
    Returns {dataset: what was done, or why not (no grid, dataset not built)}."""
    from s2ilib.study.analysis import test_utterance_rows
    from s2ilib.study.stages import load_built_dataset

    books = load_results(paths.results).get("notebooks") or {}
    n = int(((books.get("03_gan_training") or {}).get("parameters") or {}).get("n_utterances", FIG3_ROWS))
    done = {}
    for name in cfg.data.datasets:
        if not (paths.figures / f"03_{name}_fig3.png").exists():
            done[name] = "no Fig. 3 grid (notebook 03 has not run)"
            continue
        try:
            ds = load_built_dataset(name, paths)
        except FileNotFoundError as exc:
            done[name] = f"no audio: {exc}"
            continue
        rows = test_utterance_rows(ds, n, seed=cfg.seed)
        side = write_fig3_audio(ds, rows, paths.figures, sr=cfg.data.sample_rate)
        done[name] = f"{len(rows)} utterances -> {side.name}"
    return done
