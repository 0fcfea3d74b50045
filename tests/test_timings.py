"""The README's timing table is generated from results.json, and the committed one is current."""
from __future__ import annotations

import json

import committed
import pytest

from s2ilib.study import timings



def _results(**books):
    return {"environment": {"cpu": "Test CPU", "device": "cpu (2 cores)", "packages": {"torch": "9.9"}},
            "notebooks": {name: {"status": "ok", "seconds": s, "finished": "2026-11-25T10:00:00+00:00",
                                 "commit": "abcdef0123456789", "dirty": False} for name, s in books.items()}}


def test_table_rows_in_order_with_total():
    table = timings.timing_table(_results(**{"02_b": 120.0, "01_a": 60.0}))
    lines = table.splitlines()
    assert lines[2].startswith("| `01_a` | 1.0 min (60 s)")
    assert lines[3].startswith("| `02_b` | 2.0 min (120 s)")
    assert "**3.0 min**" in lines[4]
    assert "`abcdef0`" in lines[2] and "Test CPU" in table


def test_failed_or_missing_timings_are_errors():
    res = _results(**{"01_a": 5.0})
    res["notebooks"]["01_a"]["status"] = "failed"
    with pytest.raises(timings.TimingsError, match="01_a"):
        timings.timing_table(res)
    with pytest.raises(timings.TimingsError, match="empty"):
        timings.timing_table({"notebooks": {}})


def test_update_readme_replaces_only_the_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- timings:small:begin -->\nold\n<!-- timings:small:end -->\nafter\n")
    results = tmp_path / "results.json"
    results.write_text(json.dumps(_results(**{"01_a": 30.0})))
    assert timings.update_readme(readme, results, "small") is True
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("after\n") and "old" not in text
    assert timings.readme_block(readme, "small") == timings.timing_table(json.loads(results.read_text()))
    assert timings.update_readme(readme, results, "small") is False  # idempotent
    with pytest.raises(timings.TimingsError, match="no '<!-- timings:paper:begin -->'"):
        timings.update_readme(readme, results, "paper")


@pytest.mark.committed_report
def test_committed_readme_table_matches_committed_report():
    """Both sides as committed (git HEAD): `make study` rewrites the working copy's results.json with
    the rerun's own timings, and that must not turn the committed README's table red."""
    block = timings.readme_block("README.md", "small", text=committed.text("README.md"))
    assert block == timings.timing_table(committed.results("small")), (
        f"README's timing table is stale against the committed report ({committed.source()}): "
        "run `python -m s2ilib.study.timings --preset small` and commit both")


def test_report_outputs_do_not_make_the_tree_dirty(tmp_path):
    import subprocess

    from s2ilib.core.results import git_commit

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    git("init", "-q")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "results.json").write_text("{}")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("commit", "-qm", "init")
    assert git_commit(tmp_path)["dirty"] is False
    (tmp_path / "reports" / "results.json").write_text('{"a": 1}')  # a study writing its report
    assert git_commit(tmp_path)["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path)["dirty"] is True


def test_table_names_each_notebooks_machine_when_they_differ(tmp_path):
    res = _results(**{"01_a": 60.0, "09_b": 6.0})
    res["notebooks"]["09_b"]["machine"] = {"cpu": "Other CPU"}
    table = timings.timing_table(res)
    assert "| machine |" in table and "| Test CPU |" in table and "| Other CPU |" in table
    assert "Machine: several, per row" in table
    assert "machine" not in timings.timing_table(_results(**{"01_a": 60.0}))  # one machine: footer only


def test_a_new_study_record_keeps_the_machine_of_earlier_notebooks(tmp_path):
    """A notebook rerun on another machine must not relabel the others: before the study record is
    replaced, notebooks without a machine get the one of the record they were made under."""
    from s2ilib.study.runner import _stamp_old_machines

    path = tmp_path / "results.json"
    res = {"schema_version": 1, "preset": "small", **_results(**{"01_a": 60.0})}
    res["study"] = {"environment": {"cpu": "Intel Xeon"}}
    path.write_text(json.dumps(res))
    _stamp_old_machines(path)
    stamped = json.loads(path.read_text())["notebooks"]["01_a"]["machine"]
    assert stamped == {"cpu": "Intel Xeon", "inferred_from": "the study record"}
