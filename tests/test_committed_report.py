"""The README's order, `make study` then `make test`, must leave the tests green.

`make study` rewrites the working copy's ``reports/small/`` with the rerun's own timings and numbers.
Tests of the committed report (marker ``committed_report``) read it through git (tests/committed.py);
this module checks that they do, by simulating a rerun in a clone and running them there.
"""
from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import committed

ROOT = Path(__file__).resolve().parents[1]
REPORT = Path("reports") / "small"


def _perturb(obj, depth=0):
    """Every float moved by 7% and every notebook's timing changed, as another machine's rerun would."""
    if isinstance(obj, dict):
        out = {k: _perturb(v, depth + 1) for k, v in obj.items()}
        if "seconds" in out and isinstance(out["seconds"], (int, float)):
            out["seconds"] = float(out["seconds"]) * 1.37 + 11.0
        return out
    if isinstance(obj, list):
        return [_perturb(v, depth + 1) for v in obj]
    if isinstance(obj, float):
        return obj * 1.07
    return obj


def simulate_rerun(report_dir: Path) -> None:
    """Rewrite a report folder as a rerun on other hardware would: results.json, tables, Markdown."""
    res = json.loads((report_dir / "results.json").read_text())
    res = _perturb(res)
    res["environment"] = {**res.get("environment", {}), "cpu": "Simulated rerun CPU", "commit": "0" * 40}
    (report_dir / "results.json").write_text(json.dumps(res, indent=1))
    for csv in report_dir.glob("*.csv"):
        df = pd.read_csv(csv)
        for col in df.select_dtypes("float").columns:
            df[col] = df[col] * 1.07
        df.to_csv(csv, index=False)
    for md in report_dir.glob("*.md"):
        md.write_text(md.read_text().translate(str.maketrans("0123456789", "1234567890")))


def test_simulated_rerun_changes_what_the_readme_table_is_built_from(tmp_path):
    """The simulation is strong enough: a test reading the working copy would now fail."""
    from s2ilib.study import timings

    shutil.copytree(ROOT / REPORT, tmp_path / "small", ignore=shutil.ignore_patterns("*.ipynb", "figures", "seeds"))
    simulate_rerun(tmp_path / "small")
    rerun = json.loads((tmp_path / "small" / "results.json").read_text())
    committed_block = timings.readme_block("README.md", "small", text=committed.text("README.md"))
    assert timings.timing_table(rerun) != committed_block


@pytest.mark.slow
def test_committed_report_tests_pass_after_a_simulated_rerun(tmp_path):
    """Clone the commit, put this working copy's code and tests in, rewrite reports/small as a rerun would,
    then run every ``committed_report`` test there: all must pass (and there must be some)."""
    if committed.source() != "HEAD":
        pytest.skip("not a git checkout: there is no committed report apart from the working copy")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, capture_output=True)
    for code in ("tests", "s2ilib"):  # the code under test is this working copy's
        shutil.rmtree(clone / code)
        shutil.copytree(ROOT / code, clone / code, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy2(ROOT / "pyproject.toml", clone / "pyproject.toml")  # the marker's declaration
    simulate_rerun(clone / REPORT)
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "committed_report",
                          "tests"], cwd=clone, capture_output=True, text=True)
    assert out.returncode == 0, f"committed-report tests fail after a rerun:\n{out.stdout[-3000:]}{out.stderr[-2000:]}"
    assert " passed" in out.stdout and " failed" not in out.stdout, out.stdout[-1000:]


def _reads_report_folder(tree: ast.AST) -> bool:
    """A test module that builds a path into the project's reports/<preset>/ folder (a path handed
    to ``committed.<function>(...)`` is read from the commit, and is fine)."""
    through_git = {id(n) for call in ast.walk(tree) if isinstance(call, ast.Call)
                   and isinstance(call.func, ast.Attribute) and isinstance(call.func.value, ast.Name)
                   and call.func.value.id == "committed" for arg in call.args for n in ast.walk(arg)}
    for node in ast.walk(tree):
        if id(node) in through_git:
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value.startswith("reports/small") or node.value.startswith("reports/paper"):
                return True
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            names = [n.id for n in ast.walk(node.left) if isinstance(n, ast.Name)]
            right = node.right
            if "ROOT" in names and isinstance(right, ast.Constant) and right.value == "reports":
                return True
    return False


def test_no_test_reads_the_working_copy_report():
    """Only tests/committed.py may open the project's report folder; tests go through it."""
    offenders = [p.name for p in sorted((ROOT / "tests").glob("*.py"))
                 if p.name not in {"committed.py", Path(__file__).name}
                 and _reads_report_folder(ast.parse(p.read_text()))]
    assert not offenders, f"these tests read reports/ from the working copy, not the commit: {offenders}"


def test_the_report_folder_check_can_fail():
    assert _reads_report_folder(ast.parse('p = ROOT / "reports" / "small"'))
    assert _reads_report_folder(ast.parse('p = open("reports/small/results.json")'))
    assert not _reads_report_folder(ast.parse('p = tmp_path / "reports"'))
    assert not _reads_report_folder(ast.parse('t = committed.text(f"reports/small/{n}_claims.csv")'))
