"""`s2i verify`: a rerun against the spread and the verdicts the committed report states."""
from __future__ import annotations

import copy
import json
import math
import shutil
import subprocess

import pandas as pd
import pytest

from s2ilib.cli import main as cli
from s2ilib.core.gitfiles import ReportFiles
from s2ilib.study import verify as V


def _cell(attr, fid):
    return {"attr_acc": attr, "attr_acc_ci": [attr - 0.01, attr + 0.01], "attr_acc_n": 400, "fid": fid,
            "n_images": 400}


def _results(attr=0.46, claim_verdicts=("holds", "undecided"), seed_tag=""):
    ds = "synth-birds" + seed_tag
    return {"schema_version": 1, "preset": "smoke", "study": {"seed": 1234},
            "environment": {"cpu": "Test CPU", "commit": "a" * 40,
                            "hardware": {"kernel_flags": ["avx2"], "bf16_native": False}},
            "main": {ds: {"dataset": "synth-birds", "one_stage": {"seen": _cell(attr, 200.0)},
                          "two_stage": {"seen": _cell(0.40, 230.0)},
                          "claims": [{"claim": "one-stage above two-stage", "verdict": claim_verdicts[0]},
                                     {"claim": "one-stage close to text", "verdict": claim_verdicts[1]}]}}}


def _report(tmp_path, seeds=True):
    """reports/smoke/ with a main run, two seed repeats and the seeds table (one-stage attr 0.46,
    0.44, 0.48: mean 0.46, sd 0.02; prediction interval 0.46 +- 4.303 * 0.02 * sqrt(4/3) = +-0.099)."""
    base = tmp_path / "ref" / "reports" / "smoke"
    base.mkdir(parents=True)
    (base / "results.json").write_text(json.dumps(_results()))
    if seeds:
        for s, attr, v in ((2, 0.44, ("holds", "holds")), (3, 0.48, ("holds", "undecided"))):
            d = base / "seeds" / f"train_seed={s}" / "smoke"
            d.mkdir(parents=True)
            (d / "results.json").write_text(json.dumps(_results(attr, v, f"@train_seed={s}")))
        rows = [["synth-birds", "one_stage", "seen", "attr_acc", 3, 0.46, 0.02, 0.44, 0.48, "1234;2;3", "0.46;0.44;0.48"],
                ["synth-birds", "two_stage", "seen", "attr_acc", 3, 0.40, 0.0, 0.40, 0.40, "1234;2;3", "0.4;0.4;0.4"]]
        pd.DataFrame(rows, columns=["dataset", "method", "condition", "metric", "n_seeds", "mean", "std", "min",
                                    "max", "seeds", "values"]).to_csv(base / "main_table_seeds.csv", index=False)
    return tmp_path / "ref"


def test_prediction_interval_textbook():
    lo, hi = V.prediction_interval([0.44, 0.46, 0.48])
    half = 4.302653 * 0.02 * math.sqrt(4 / 3)
    assert lo == pytest.approx(0.46 - half, abs=1e-6) and hi == pytest.approx(0.46 + half, abs=1e-6)
    with pytest.raises(ValueError, match="two or more"):
        V.prediction_interval([0.5])


def test_identical_rerun_reproduces(tmp_path, capsys):
    ref = _report(tmp_path)
    rerun = tmp_path / "rerun.json"
    rerun.write_text(json.dumps(_results()))
    assert cli(["verify", "--preset", "smoke", "--rerun", str(rerun), "--reference", str(ref)]) == 0
    out = capsys.readouterr().out
    assert "REPRODUCED: no pooled verdicts in the committed report; single-seed verdicts: 0 of 2 flipped (1 seed-dependent" in out
    assert "0 of 2 numbers outside" in out  # attr_acc: one-stage by its seed spread, two-stage (sd 0) by its CI
    nums, claims = V.compare(V.committed_reference(ReportFiles(ref, None), "smoke"), _results())
    spread = nums.set_index(["method", "metric"])["spread"]
    assert spread[("one_stage", "attr_acc")].startswith("new-seed 95% PI (n=3")
    assert spread[("two_stage", "attr_acc")].startswith("one run's 95% CI")
    assert spread[("one_stage", "fid")] == "none stated"
    assert set(claims["status"]) == {"same", "seed-dependent"}


def test_moved_number_and_flipped_verdict_fail_naming_both(tmp_path, capsys):
    ref = _report(tmp_path)
    moved = _results(attr=0.30, claim_verdicts=("fails", "holds"))  # 0.30 < 0.46 - 0.099; claim 1 was unanimous
    moved["main"]["synth-birds"]["one_stage"]["seen"]["fid"] = 201.0
    rerun = tmp_path / "rerun.json"
    rerun.write_text(json.dumps(moved))
    assert cli(["verify", "--preset", "smoke", "--rerun", str(rerun), "--reference", str(ref)]) == 1
    out = capsys.readouterr().out
    assert "NOT REPRODUCED: no pooled verdicts in the committed report; single-seed verdicts: 1 of 2 flipped" in out
    flipped = [ln for ln in out.splitlines() if "flipped" in ln and "one-stage above two-stage" in ln]
    assert flipped and "fails" in flipped[0]
    outside = [ln for ln in out.splitlines() if ln.split()[:4] == ["synth-birds", "one_stage", "seen", "attr_acc"]]
    assert outside and outside[0].endswith("outside")
    assert any("fid" in ln and "differs (no stated spread)" in ln for ln in out.splitlines())
    assert "one-stage close to text" not in [ln for ln in out.splitlines() if "flipped" in ln][0]


def _with_pooled(res, verdicts):
    res = copy.deepcopy(res)
    res["pooled_claims"] = {"04": {"rows": [{"dataset": "synth-birds", "claim": c, "verdict": v}
                                            for c, v in verdicts.items()]}}
    return res


def test_pooled_verdicts_must_reproduce(tmp_path):
    ref = _report(tmp_path)
    path = ref / "reports" / "smoke" / "results.json"
    path.write_text(json.dumps(_with_pooled(json.loads(path.read_text()),
                                            {"one-stage above two-stage": "undecided",
                                             "one-stage close to text": "holds"})))
    reference = V.committed_reference(ReportFiles(ref, None), "smoke")
    _, claims = V.compare(reference, _results())  # a `make study` rerun: no pooled verdicts of its own
    pooled = claims[claims["level"] == "pooled over seeds"]
    assert set(pooled["status"]) == {"not run"}
    rerun = _with_pooled(_results(), {"one-stage above two-stage": "undecided", "one-stage close to text": "fails"})
    _, claims = V.compare(reference, rerun)
    row = claims[(claims["level"] == "pooled over seeds")].set_index("claim")
    assert row.loc["one-stage close to text", "status"] == "flipped"
    assert row.loc["one-stage above two-stage", "status"] == "same"
    assert "NOT REPRODUCED: pooled verdicts: 1 of 2 flipped" in V.summary(*V.compare(reference, rerun))


def test_bad_inputs_are_usage_errors(tmp_path, capsys):
    ref = _report(tmp_path)
    assert cli(["verify", "--preset", "smoke", "--rerun", str(tmp_path / "nope.json"), "--reference", str(ref)]) == 2
    assert "nope.json: no results file" in capsys.readouterr().err
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**_results(), "preset": "small"}))
    assert cli(["verify", "--preset", "smoke", "--rerun", str(other), "--reference", str(ref)]) == 2
    assert "a 'small' study, not 'smoke'" in capsys.readouterr().err
    assert cli(["verify", "--preset", "smoke", "--rerun", str(other), "--reference", "no-such-rev"]) == 2
    assert "no-such-rev" in capsys.readouterr().err


def test_reads_the_committed_report_from_git(tmp_path):
    """--reference <rev>: the committed files, whatever the working copy holds now."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    ref = _report(tmp_path, seeds=False)

    def git(*a):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *a], cwd=ref, check=True, capture_output=True)

    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "report")
    work = ref / "reports" / "smoke" / "results.json"
    rewritten = copy.deepcopy(_results(attr=0.10))
    work.write_text(json.dumps(rewritten))  # a rerun overwrote the working copy
    got = V.committed_reference(ReportFiles(ref, "HEAD"), "smoke").numbers
    assert got.set_index(["method", "metric"]).loc[("one_stage", "attr_acc"), "value"] == pytest.approx(0.46)
