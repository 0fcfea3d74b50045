"""The study at the smoke preset, run headlessly through the runner, and the runner's refusals.

Asserts on the files the notebooks write (results.json, tables, figures), not on cell output.
"""
import hashlib
import json
import math

import nbformat
import pytest

from s2ilib.core.config import get_config
from s2ilib.study.runner import StudyError, run_notebook, run_study, study_notebooks

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    report = run_study(preset="smoke", run_root=root / "runs", report_root=root / "reports", progress=False)
    return report, root / "runs" / "smoke", json.loads((report / "results.json").read_text())


def test_every_notebook_ran_and_was_recorded(smoke_study):
    report, _, results = smoke_study
    books = study_notebooks()
    assert [b.stem for b in books][:3] == ["01_data_synthesis", "02_speech_encoder", "03_gan_training"]
    for nb in books:
        assert (report / nb.name).is_file()
        assert results["notebooks"][nb.stem]["status"] == "ok"
    env = results["environment"]
    assert env["packages"]["torch"].startswith("2.") and "commit" in env and env["device"]


def test_results_record_the_hardware_that_decides_the_kernels(smoke_study):
    from s2ilib.core.hardware import FIELDS

    _, _, results = smoke_study
    for env in (results["environment"], results["study"]["environment"]):
        hw = env["hardware"]
        assert set(FIELDS) <= set(hw), set(FIELDS) - set(hw)
        assert hw["cpu_vendor"] and isinstance(hw["bf16_native"], bool) and hw["aten_cpu_capability"]
    asr = results["main"]["synth-birds"]["asr"]
    assert asr["compute_type"] == "int8" and asr["decode"]["temperature"] == [0.0]


def test_verify_passes_the_smoke_report_against_itself(smoke_study, capsys):
    from s2ilib.cli import main as cli

    report, _, _ = smoke_study
    root = report.parent.parent  # <root>/reports/smoke
    assert cli(["verify", "--preset", "smoke", "--rerun", str(report / "results.json"), "--reference", str(root)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith("REPRODUCED: no pooled verdicts") and "single-seed verdicts: 0 of" in out


def test_data_section_matches_the_smoke_config(smoke_study):
    report, run, results = smoke_study
    cfg = get_config("smoke")
    birds = results["data"]["synth-birds"]
    assert birds["classes_train"] == cfg.data.birds_train_classes
    assert birds["classes_test"] == cfg.data.birds_test_classes
    n_images = (cfg.data.birds_train_classes + cfg.data.birds_test_classes) * cfg.data.images_per_class
    assert birds["images_train"] + birds["images_test"] == n_images
    assert birds["captions"] == n_images * cfg.data.captions_per_image == birds["utterances_seen"]
    assert birds["utterances_unseen"] == birds["images_test"] * cfg.data.captions_per_image
    assert birds["voices_train"] == 24 and birds["voices_unseen"] == 6
    assert 0 < birds["hours_speech"] < 1 and birds["seed"] == 1234 and birds["config"]["image_size"] == 64
    flowers = results["data"]["synth-flowers"]
    assert flowers["classes_train"] == cfg.data.flowers_train_classes
    for name in ("synth-birds", "synth-flowers"):
        assert (report / "figures" / f"01_{name}_grid.png").stat().st_size > 10_000
        assert (run / "data" / name / "speech" / "features.npy").is_file()


def test_encoder_section(smoke_study):
    report, run, results = smoke_study
    cfg = get_config("smoke")
    for name in ("synth-birds", "synth-flowers"):
        enc = results["encoders"][name]
        for kind in ("speech_ts", "speech_cls"):
            for cond in ("seen", "unseen"):
                m = enc[kind][cond]
                assert 0.0 <= m["recall@1"] <= m["recall@5"] <= m["recall@10"] <= 1.0
                assert m["n_queries"] > 0
            assert enc[kind]["steps"] == cfg.encoder.max_steps
        assert "text" in enc["text_ts"]
        assert (run / "encoders" / name / "speech_ts" / "embeddings.pt").is_file()
    assert (report / "02_encoder_retrieval.csv").is_file()


def test_generator_section(smoke_study):
    report, run, results = smoke_study
    cfg = get_config("smoke")
    for name in ("synth-birds", "synth-flowers"):
        for method in ("one_stage", "classifier", "text"):
            g = results["generators"][name][method]
            assert g["steps"] == cfg.gan.steps and g["sizes"] == [16, 32]
            assert (run / "gan" / name / method / "generator_ema.pt").is_file()
        assert results["generators"][name]["one_stage"]["latency"]["wave_to_images_s"] > 0
        assert (report / "figures" / f"03_{name}_fig3.png").is_file()


def _finite_numbers(obj):
    """Every number in a nested results entry (bools excluded)."""
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _finite_numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _finite_numbers(v)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield obj


def test_main_section_and_claims(smoke_study):
    """Notebook 04's `main` section: every method and condition of the registry, with sample
    counts and finite metrics, provenance, and a verdict for each of the paper's claims."""
    from s2ilib.core import registry
    from s2ilib.study import report as study_report

    report, run, results = smoke_study
    cfg = get_config("smoke")
    for name in cfg.data.datasets:
        entry = results["main"][name]
        assert (entry["preset"], entry["seed"], entry["variant"]) == ("smoke", 1234, "")
        assert entry["config"]["captions_per_image"] == cfg.eval.captions_per_image
        for method in registry.method_names():
            for cond in registry.method(method).conditions:
                cell = entry[method][cond]
                assert cell["n_images"] >= 2 and cell["n_real"] >= 2, (name, method, cond)
                for metric in ("fid", "kid", "is", "r_precision", "attr_acc"):
                    assert math.isfinite(cell[metric]), (name, method, cond, metric)
                assert cell["fid"] >= 0 and 0 <= cell["attr_acc"] <= 1
        assert all(math.isfinite(x) for x in _finite_numbers({m: entry[m] for m in registry.method_names()}))
        assert set(entry["asr"]["wer"]) == set(registry.SPEECH_CONDITIONS)
        claims = entry["claims"]
        assert [c["claim"] for c in claims] == [c.name for c in study_report.CLAIMS]
        for c in claims:
            # decided from the interval of the difference, never from point values
            assert c["verdict"] in ("holds", "fails", "undecided"), c
            assert math.isfinite(c["ours"]) and math.isfinite(c["estimate"]), c
            assert c["low"] <= c["estimate"] <= c["high"] and c["n"] >= 1, c
        assert (run / "eval" / name / "variant.json").is_file()
    assert (report / "04_claims.csv").is_file() and (report / "figures" / "04_fid.png").is_file()


def test_a_variant_trains_beside_the_baseline_without_touching_it(smoke_study, capsys):
    """`s2i study --only 03 --set gan.steps=8` on the smoke run folder: the generators train into
    `gan/<ds>/<method>@gan.steps=8`, read the baseline's data and encoders, record their own
    entries, and leave the baseline's files and numbers as they were."""
    from s2ilib.cli import main

    report, run, results = smoke_study
    base = run / "gan" / "synth-birds" / "one_stage"
    files = sorted(p for p in base.rglob("*") if p.is_file())
    before = {p: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest()) for p in files}
    executed_before = (report / "03_gan_training.ipynb").stat().st_mtime_ns
    assert main(["study", "--preset", "smoke", "--only", "03", "--set", "gan.steps=8",
                 "--run-root", str(run.parent), "--report-root", str(report.parent)]) == 0
    assert {p: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest()) for p in files} == before
    assert sorted(p for p in base.rglob("*") if p.is_file()) == files
    assert (report / "03_gan_training.ipynb").stat().st_mtime_ns == executed_before
    assert (report / "variants" / "gan.steps=8" / "03_gan_training.ipynb").is_file()

    after = json.loads((report / "results.json").read_text())
    for name in ("synth-birds", "synth-flowers"):
        for method in ("one_stage", "classifier", "text"):
            variant = run / "gan" / name / f"{method}@gan.steps=8"
            assert (variant / "generator_ema.pt").is_file()
            written = json.loads((variant / "variant.json").read_text())
            assert written["variant"] == "gan.steps=8" and written["config"]["gan"]["steps"] == 8
            g = after["generators"][name][f"{method}@gan.steps=8"]
            assert g["steps"] == 8 and g["variant"] == "gan.steps=8"
            assert after["generators"][name][method] == results["generators"][name][method]
        pipeline = json.loads((run / "gan" / name / "one_stage@gan.steps=8" / "pipeline.json").read_text())
        assert pipeline["encoder_dir"] == str(run / "encoders" / name / "speech_ts")  # the baseline's encoder
    assert after["notebooks"]["03_gan_training"]["parameters"]["overrides"] == ["gan.steps=8"]

    assert main(["study", "--preset", "smoke", "--only", "03", "--set", "gan.nope=1",
                 "--run-root", str(run.parent), "--report-root", str(report.parent)]) == 2
    assert "unknown config key 'gan.nope'" in capsys.readouterr().err


def test_the_template_is_not_a_step_of_the_study():
    books = study_notebooks()
    assert books and all(int(b.name[:2]) >= 1 for b in books)
    assert (books[0].parent / "00_template.ipynb").is_file()


def _notebook(path, params_src, body_src):
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell(params_src)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell(body_src)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_runner_refuses_undeclared_parameters(tmp_path):
    nb = _notebook(tmp_path / "01_x.ipynb", "preset = 'smoke'", "x = 1")
    with pytest.raises(StudyError, match=r"does not declare parameter\(s\) \['bogus'\]"):
        run_notebook(nb, tmp_path / "out.ipynb", {"bogus": 1}, progress=False)
    with pytest.raises(StudyError, match="no selected notebook declares"):
        run_study("smoke", run_root=tmp_path, report_root=tmp_path, parameters={"bogus": 1},
                  only=["01"], progress=False)


def test_runner_names_the_failing_notebook_and_cell(tmp_path):
    books = tmp_path / "nbs"
    books.mkdir()
    _notebook(books / "01_fails.ipynb", "preset = 'smoke'\nseed = 0\nrun_root = ''\nreport_dir = ''\noverrides = {}",
              "raise ValueError('boom')")
    with pytest.raises(StudyError, match=r"01_fails.ipynb failed in cell 2 .*ValueError: boom"):
        run_study("smoke", run_root=tmp_path / "r", report_root=tmp_path / "rep", notebook_dir=books,
                  progress=False)
    results = json.loads((tmp_path / "rep" / "smoke" / "results.json").read_text())
    assert results["notebooks"]["01_fails"]["status"] == "failed"


def test_nbval_reexecutes_the_executed_notebooks(smoke_study):
    """nbval (lax) reruns the executed copies; their injected parameters point at the same run
    folder, so every stage is a cache hit and the rerun checks that the notebooks run again cleanly."""
    import subprocess
    import sys

    report, _, _ = smoke_study
    books = sorted(str(p) for p in report.glob("[0-9][0-9]_*.ipynb"))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "--nbval-lax", "--nbval-current-env",
                           "-p", "no:cacheprovider", *books], capture_output=True, text=True, cwd=report)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and " failed" not in proc.stdout


def test_s2i_generate_on_good_and_bad_audio(smoke_study, tmp_path, capsys):
    """`s2i generate` from a stereo 44.1 kHz recording, from --say, and a clear error for bad audio."""
    import numpy as np
    import soundfile as sf

    from s2ilib.cli import main
    from s2ilib.speech.tts import Voice, get_engine

    _, run, _ = smoke_study
    model = run / "gan" / "synth-birds" / "one_stage"
    wave = get_engine("espeak").synthesize("this bird has a red head and a white belly", Voice(), sr=44100)
    sf.write(tmp_path / "stereo.wav", np.stack([wave, 0.5 * wave], axis=1), 44100)
    assert main(["generate", "--model", str(model), "--wav", str(tmp_path / "stereo.wav"), "--n", "4",
                 "--out", str(tmp_path / "a.png")]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["n"] == 4 and out["size"] == 32 and (tmp_path / "a.png").stat().st_size > 500
    assert main(["generate", "--model", str(model), "--say", "a blue bird with a long black beak",
                 "--seed", "3", "--out", str(tmp_path / "b.png")]) == 0
    (tmp_path / "empty.wav").write_bytes(b"")
    assert main(["generate", "--model", str(model), "--wav", str(tmp_path / "empty.wav"),
                 "--out", str(tmp_path / "c.png")]) == 1
    err = capsys.readouterr().err
    assert "empty.wav" in err and not (tmp_path / "c.png").exists()
    assert main(["generate", "--model", str(tmp_path), "--say", "hello", "--out", str(tmp_path / "d.png")]) == 1
    assert "pipeline.json" in capsys.readouterr().err


def _check_claims(entry, n_min=1):
    claims = entry["claims"]
    assert len(claims) >= n_min
    for c in claims:
        assert c["verdict"] in ("holds", "fails", "undecided"), c
        assert c["estimate"] is not None or c["n"] == 0, c  # nothing to compare (no transition) -> undecided
        assert c["n"] > 0 or c["verdict"] == "undecided", c
        if c["low"] is not None and c["high"] is not None:
            assert c["low"] <= c["high"], c
    assert {v["verdict"] for v in entry["verdicts"]} <= {"holds", "fails", "undecided"}


def test_loss_ablation_section(smoke_study):
    """Notebook 05: four loss rows per dataset in their own variant folders, retrieval / probe / image
    metrics with intervals, the gradient table and the Table IV claims."""
    from s2ilib.study.ablation import LOSS_ROWS, schedule

    report, run, results = smoke_study
    sched = schedule("smoke")
    for name in sched["loss_datasets"]:
        entry = results["ablation_loss"][name]
        assert (entry["preset"], entry["seed"], entry["variant"]) == ("smoke", 1234, "")
        assert entry["schedule"]["loss_config"] == sched["loss_config"]
        assert set(entry["rows"]) == set(LOSS_ROWS)
        for row, r in entry["rows"].items():
            assert r["encoder_steps"] == sched["loss_config"]["encoder.max_steps"], row
            assert r["gan_steps"] == sched["loss_config"]["gan.steps"], row
            assert "@" in r["encoder_dir"] and "@" in r["gan_dir"], row  # never the main runs' folders
            assert (run / "encoders" / name / r["encoder_dir"] / "embeddings.pt").is_file()
            for m in ("recall@10", "ap", "attr_acc", "r_precision"):
                assert 0.0 <= r[m] <= 1.0, (row, m)
                lo, hi = r[f"{m}_ci"]
                assert lo is None or lo - 1e-9 <= r[m] <= hi + 1e-9, (row, m)
            assert 0.0 <= r["probe"] <= 1.0 and r["fid"] >= 0 and r["fid_n"] == sched["fid_n"]
            assert r["fid_floor"] is not None and r["attr_acc_n"] == sched["eval_queries"]
            assert r["timings"]["encoder_s"] >= 0 and r["timings"]["evaluation_s"] >= 0
            assert entry["timings"][f"{row}_s"] >= r["timings"]["encoder_s"]
        grads = entry["gradients"]
        assert set(grads["mean"]) == {"jel", "norm", "kdl"} and all(v > 0 for v in grads["mean"].values())
        assert grads["weights"] == {"jel": 1.0, "norm": 5.0, "kdl": 1000.0}
        assert len(grads["per_step"]["jel"]) == sched["grad_steps"]
        _check_claims(entry, n_min=5 * 4)
    assert results["ablation_loss"]["timings"]["total_s"] > 0
    assert (report / "05_claims.csv").is_file() and (report / "05_loss_ablation.csv").is_file()
    assert (report / "05_gradients.csv").is_file()
    assert (run / "encoders" / "synth-birds" / "speech_ts" / "embeddings.pt").is_file()  # main run untouched


def test_scale_ablation_section(smoke_study):
    """Notebook 06: generators with 1, 2, 3 branches on the main encoder, scored at one size, with
    time per step and the "higher resolution" claim."""
    from s2ilib.study.ablation import schedule

    report, run, results = smoke_study
    sched = schedule("smoke")
    cfg = get_config("smoke")
    for name in sched["scale_datasets"]:
        entry = results["ablation_scales"][name]
        assert (entry["preset"], entry["seed"]) == ("smoke", 1234)
        rows = entry["rows"]
        assert sorted(int(b) for b in rows) == sched["scale_branches"]
        assert [rows[str(b)]["output_size"] for b in sched["scale_branches"]] == [16, 32, 64]
        for b, r in rows.items():
            assert r["scored_at"] == entry["scored_at"] == cfg.gan.base_size * 2 ** (cfg.gan.branches - 1)
            assert r["steps"] == sched["scale_config"]["gan.steps"] and r["s_per_step"] > 0 and r["train_s"] > 0
            assert len(r["sizes"]) == int(b) and "@" in r["gan_dir"]
            assert 0.0 <= r["attr_acc"] <= 1.0 and 0.0 <= r["r_precision"] <= 1.0 and r["fid"] >= 0
            assert entry["timings"][f"branches_{b}_s"] > 0
        _check_claims(entry, n_min=2 * 3)
    assert (report / "06_claims.csv").is_file() and (report / "06_scale_ablation.csv").is_file()


def test_interpolation_section(smoke_study):
    """Notebook 07: transition curves of the one-stage and text generators with intervals over pairs."""
    from s2ilib.study.interpolation import CURVE_METRICS

    report, run, results = smoke_study
    for name in get_config("smoke").data.datasets:
        entry = results["interpolation"][name]
        assert entry["preset"] == "smoke" and entry["alphas"] == [k / 8 for k in range(9)]
        assert entry["n_pairs"] >= 2
        for m in ("one_stage", "text"):
            s = entry["summaries"][m]
            assert s["n_curves"] >= s["n_pairs"] == entry["n_pairs"]
            for metric in CURVE_METRICS:
                assert s[metric]["mean"] is not None, (m, metric)
            assert -1.0 <= s["spearman"]["mean"] <= 1.0 and 0.0 <= s["monotone"]["mean"] <= 1.0
            assert entry["summaries_transitions"][m]["n_curves"] <= s["n_curves"]
            curve = entry["mean_curves"][m]
            assert len(curve["p1"]) == 9 and all(0.0 <= p <= 1.0 for p in curve["p1"])
        _check_claims(entry, n_min=3)
    assert (report / "07_claims.csv").is_file() and (report / "figures" / "07_synth-birds_pair0.png").is_file()


def test_robustness_section(smoke_study):
    """Notebook 08: every speech method under every condition of the smoke schedule on the same
    utterances, each metric with its interval and n, WER of the ASR per condition, a paired verdict
    per condition, the table, the claims and the curves, and the perturbed speech cached."""
    import pandas as pd

    from s2ilib.study import robustness, robustness_report, robustness_speech
    from s2ilib.study.paths import RunPaths
    from s2ilib.study.stages import load_built_dataset

    report, run, results = smoke_study
    sched = robustness.schedule("smoke")
    for name in sched["datasets"]:
        entry = results["robustness"][name]
        assert (entry["preset"], entry["seed"], entry["variant"]) == ("smoke", 1234, "")
        assert entry["conditions"] == sched["conditions"] and entry["methods"] == list(robustness.METHODS)
        assert entry["n_queries"] == sched["queries"] and entry["families"]["piper"] == "engine"
        for m in robustness.METHODS:
            for cond in sched["conditions"]:
                cell = entry["cells"][m][cond]
                for metric in ("attr_acc", "r_precision"):
                    lo, hi = cell[f"{metric}_ci"]
                    assert 0.0 <= lo <= cell[metric] <= hi <= 1.0, (m, cond, metric)
                    assert cell[f"{metric}_n"] == sched["queries"] and cell[f"{metric}_n_groups"] >= 2
                if m == "two_stage":
                    assert 0.0 <= cell["wer"] and cell["wer_n"] == sched["queries"] and cell["wer_n_words"] > 0
                    assert cell["wer_ci"][0] <= cell["wer"] <= cell["wer_ci"][1]
                else:
                    assert "wer" not in cell
        # the clean transcripts are notebook 04's (the same utterances, the same ASR cache)
        assert entry["cells"]["two_stage"]["clean"]["wer"] >= 0
        assert [(c["condition"], c["metric"]) for c in entry["claims"]] == \
            [(c, m) for c in sched["conditions"] for m in robustness_report.CLAIM_METRICS]
        for c in entry["claims"]:
            assert c["verdict"] in ("holds", "fails", "undecided") and c["n"] == sched["queries"], c
            assert c["low"] is None or c["low"] <= c["estimate"] <= c["high"], c
        assert [v["condition"] for v in entry["verdicts"]] == sched["conditions"]
        assert (report / "figures" / f"08_{name}_robustness.png").stat().st_size > 10_000
        # the perturbed speech is cached per condition and reused, not remade
        paths = RunPaths.create(run.parent, report, get_config("smoke"))
        ds = load_built_dataset(name, paths)
        q = robustness_speech.robustness_queries(ds, get_config("smoke"), sched["queries"])
        for cond in sched["conditions"]:
            store, waves = robustness_speech.condition_store(ds, get_config("smoke"), paths, q, cond, lambda: [])
            assert waves == {} and len(store) == sched["queries"], cond
        assert (paths.eval(name) / "robustness" / "two_stage__babble_5db.items.json").is_file()
    table = pd.read_csv(report / "08_robustness.csv")
    n_cells = len(sched["datasets"]) * len(sched["conditions"])
    assert len(table) == n_cells * (3 * len(robustness_report.METRICS) + 1)  # + the WER of two-stage
    assert set(table["metric"]) == {"attr_acc", "r_precision", "attr_acc_shuffled", "wer"}
    assert ((table["low"] <= table["value"] + 1e-9) & (table["value"] <= table["high"] + 1e-9)).all()
    claims = pd.read_csv(report / "08_claims.csv")
    assert len(claims) == n_cells * len(robustness_report.CLAIM_METRICS)
    assert results["robustness"]["timings"]["total_s"] > 0
