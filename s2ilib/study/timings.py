"""The study's wall time per notebook, as a table generated from ``results.json``.

The runner records, for every notebook it executes, ``seconds``, ``finished``, the git commit
and whether the tree was dirty (section ``notebooks``). :func:`timing_table` renders them as
Markdown; :func:`update_readme` writes that table between the markers
``<!-- timings:<preset>:begin -->`` and ``<!-- timings:<preset>:end -->`` of the README, so the
README's figures are always the committed report's (``python -m s2ilib.study.timings``).
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any


class TimingsError(ValueError):
    """No notebook timings in a results file, or a README without the table's markers."""


def _markers(preset: str) -> tuple[str, str]:
    return f"<!-- timings:{preset}:begin -->", f"<!-- timings:{preset}:end -->"


def notebook_timings(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per executed notebook, in notebook order: name, seconds, finished, commit."""
    books = results.get("notebooks") or {}
    rows = []
    for name in sorted(books):
        entry = books[name]
        if entry.get("status") != "ok" or "seconds" not in entry:
            raise TimingsError(f"notebook {name} has no successful timing (status {entry.get('status')!r})")
        commit = entry.get("commit")
        rows.append({"notebook": name, "seconds": float(entry["seconds"]), "finished": entry.get("finished", ""),
                     "commit": (commit[:7] if commit else "not recorded") + (" (dirty)" if entry.get("dirty") else ""),
                     "machine": (entry.get("machine") or {}).get("cpu")})
    if not rows:
        raise TimingsError("results file has no notebook timings (section 'notebooks' is empty)")
    return rows


def timing_table(results: dict[str, Any]) -> str:
    """Markdown table of :func:`notebook_timings` with a total row and the machine it ran on."""
    rows = notebook_timings(results)
    # the machine that ran the notebooks (the study's start), not the last writer of results.json
    # (a later post-processing step such as `python -m s2ilib.study.seeds` may run elsewhere)
    env = (results.get("study") or {}).get("environment") or results.get("environment") or {}
    for r in rows:  # a notebook recorded without its machine ran where the study's record says
        r["machine"] = r["machine"] or env.get("cpu", "unknown CPU")
    several = len({r["machine"] for r in rows}) > 1
    lines = ["| notebook | wall time | finished (UTC) | commit |" + (" machine |" if several else ""),
             "|---|---|---|---|" + ("---|" if several else "")]
    for r in rows:
        lines.append(f"| `{r['notebook']}` | {r['seconds'] / 60:.1f} min ({r['seconds']:.0f} s) "
                     f"| {r['finished'][:16].replace('T', ' ')} | `{r['commit']}` |"
                     + (f" {r['machine']} |" if several else ""))
    total = sum(r["seconds"] for r in rows)
    lines.append(f"| **all** | **{total / 60:.1f} min** | | |" + (" |" if several else ""))
    machine = ("several, per row" if several else rows[0]["machine"]) + f", {env.get('device', 'unknown device')}"
    lines.append("")
    lines.append(f"Machine: {machine}; torch {(env.get('packages') or {}).get('torch', '?')}. "
                 f"A notebook that reused cached work from an earlier run shows less than a fresh run.")
    return "\n".join(lines)


def update_readme(readme: str | Path, results_path: str | Path, preset: str) -> bool:
    """Replace the table between the preset's markers in ``readme``; True when the text changed."""
    readme, results_path = Path(readme), Path(results_path)
    try:
        results = json.loads(results_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise TimingsError(f"{results_path}: cannot read the results file ({exc})") from exc
    begin, end = _markers(preset)
    text = readme.read_text()
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise TimingsError(f"{readme}: no '{begin}' ... '{end}' block to hold the timing table")
    new = pattern.sub(lambda _: f"{begin}\n{timing_table(results)}\n{end}", text)
    if new != text:
        readme.write_text(new)
    return new != text


def readme_block(readme: str | Path, preset: str, text: str | None = None) -> str:
    """The text between the preset's markers (what :func:`update_readme` last wrote); ``text`` is the
    README's content when it does not come from the file (e.g. the committed version, from git)."""
    begin, end = _markers(preset)
    text = Path(readme).read_text() if text is None else text
    m = re.search(re.escape(begin) + r"\n(.*?)\n" + re.escape(end), text, re.S)
    if not m:
        raise TimingsError(f"{readme}: no '{begin}' ... '{end}' block")
    return m.group(1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Regenerate the README's timing table from results.json")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--readme", default="README.md")
    ap.add_argument("--results", default=None, help="default: reports/<preset>/results.json")
    args = ap.parse_args(argv)
    changed = update_readme(args.readme, args.results or f"reports/{args.preset}/results.json", args.preset)
    print(f"{args.readme}: timing table of {args.preset} {'updated' if changed else 'already current'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
