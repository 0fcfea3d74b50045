"""The HTML report: built from a small fixture report folder, loaded in a real headless Chromium
(from the system packages): no console errors, every image and audio element loads, every source
is a data URI or an existing file, and a screenshot of the right size is written."""
from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote

import numpy as np
import pytest

from s2ilib.core.results import record
from s2ilib.study import browser, html_report

ROOT = Path(__file__).resolve().parent.parent
NEEDS_BROWSER = pytest.mark.skipif(browser.find_browser() is None,
                                   reason=browser.INSTALL_HINT + " to run the headless-browser test")
VOICE = "espeak:en-us+m3:r170:p50:g50"


def _cell(acc: float) -> dict:
    return {"attr_acc": acc, "attr_acc_ci": [acc - 0.05, acc + 0.05], "attr_acc_n": 60, "attr_acc_n_groups": 20,
            "r_precision": 0.3, "r_precision_ci": [0.2, 0.4], "r_precision_chance": 0.01, "fid": 210.0,
            "fid_n": 60, "kid": 0.12, "kid_ci": [0.1, 0.14], "kid_n": 60, "is": 2.5, "n_images": 60}


def _png(path: Path, colour: str, title: str) -> None:
    import matplotlib

    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.imshow(np.zeros((4, 8, 3)) + matplotlib.colors.to_rgb(colour))
    ax.set_title(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=50)
    plt.close(fig)


def _fake_dataset(name: str):
    import pandas as pd

    index = pd.DataFrame({"text": ["a small red bird with a black beak", "a yellow bird with white wings"],
                          "voice": [VOICE, VOICE]})
    return SimpleNamespace(name=name, speech=SimpleNamespace(index=index))


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """A report folder as the notebooks leave it: results.json (main, environment, notebooks), two
    claims tables (new and old columns), Fig. 3 grids (one with audio), other figures."""
    rep = tmp_path_factory.mktemp("report") / "smoke"
    rep.mkdir()
    main = {"synth-birds": {"one_stage": {"seen": _cell(0.5), "unseen": _cell(0.45)},
                            "two_stage": {"seen": {**_cell(0.4), "wer": 0.3}}}}
    record(rep / "results.json", "main", main, preset="smoke")
    record(rep / "results.json", "notebooks", {"01_data_synthesis": {"status": "ok", "seconds": 7.5},
                                              "04_baselines": {"status": "ok", "seconds": 30.0}})
    (rep / "04_claims.csv").write_text("dataset,claim,metric,estimate,low,high,verdict\n"
                                       "synth-birds,one-stage above two-stage,attr_acc,0.1,0.02,0.18,holds\n"
                                       "synth-birds,one-stage KID below,kid,0.01,-0.02,0.03,undecided\n")
    (rep / "05_claims.csv").write_text("dataset,claim,metric,ours,other,holds\nsynth-birds,old style,fid,1,2,False\n")
    figs = rep / "figures"
    _png(figs / "03_synth-birds_fig3.png", "tab:blue", "fig3 birds")
    _png(figs / "03_synth-flowers_fig3.png", "tab:red", "fig3 flowers")
    _png(figs / "06_synth-birds_interpolation.png", "tab:green", "interpolation")
    _png(figs / "02_synth-birds_tsne.png", "tab:gray", "tsne")
    html_report.write_fig3_audio(_fake_dataset("synth-birds"), [1, 0], figs)
    return rep


def test_fig3_audio_is_written_beside_the_grid(report):
    side = json.loads((report / "figures" / "03_synth-birds_fig3_audio.json").read_text())
    assert [r["row"] for r in side["rows"]] == [1, 2]
    assert side["rows"][0]["text"] == "a yellow bird with white wings" and side["rows"][0]["voice"] == VOICE
    wav = report / "figures" / side["rows"][0]["wav"]
    assert wav.read_bytes()[:4] == b"RIFF" and wav.stat().st_size > 16000  # about 2 s of 16-bit speech


def test_page_holds_every_part_and_notes_what_is_missing(report):
    text = html_report.page_html(report)
    assert "Main table (95% intervals)" in text and "0.500 [0.450, 0.550]" in text
    assert "04_claims.csv" in text and "05_claims.csv" in text
    assert '<td style="background:#d4edda">holds</td>' in text and ">fails</td>" in text  # old 'holds' column
    assert text.count("<audio ") == 2  # one player per grid row of the birds grid
    assert "03_synth-flowers_fig3_audio.json is missing" in text  # flowers: no audio, said so
    assert "No robustness figure" in text  # absent: a visible note
    assert "06_synth-birds_interpolation.png" in text and "02_synth-birds_tsne.png" in text
    assert "01_data_synthesis" in text and "37.5" in text  # timings and their total
    assert "package torch" in text


def test_every_source_is_a_file_beside_the_page(report):
    page = html_report.build_page(report)
    sources = re.findall(r'<(?:img|audio|source)[^>]*\ssrc="([^"]*)"', page.read_text())
    assert len(sources) == 6  # 4 figures + 2 players
    for src in sources:
        assert src.startswith("figures/") and (page.parent / unquote(src)).is_file(), src
    assert page.stat().st_size < 100_000  # linked, not a second copy of every figure


def test_missing_results_is_a_clear_error(tmp_path):
    with pytest.raises(html_report.ReportError, match="no results file"):
        html_report.build_page(tmp_path)


@NEEDS_BROWSER
def test_page_loads_in_headless_chromium(report):
    page = html_report.build_page(report)
    check = browser.check_page(page)
    assert check["errors"] == [] and check["broken"] == []
    assert len(check["images"]) == 4 and all(ok for _, ok in check["images"])
    assert len(check["audio"]) == 2 and all(ok for _, ok in check["audio"])


@NEEDS_BROWSER
def test_the_check_catches_a_broken_page(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text('<html><body><img src="missing.png"><audio src="missing.wav"></audio>'
                    '<script>console.error("boom")</script></body></html>')
    check = browser.check_page(page)
    assert len(check["broken"]) == 2
    assert "boom" in check["errors"]
    assert {e.split("/")[-1] for e in check["errors"] if e.startswith("failed to load")} == {"missing.png", "missing.wav"}


@NEEDS_BROWSER
def test_publish_writes_a_screenshot(report):
    out = html_report.publish(report, size=(1000, 1400))
    shot = report / "index.png"
    assert out["checked"] and out["screenshot"] == "index.png" and out["loaded_audio"] == 2
    head = shot.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", head[16:24]) == (1000, 1400)
    assert shot.stat().st_size > 10_000


def test_publish_without_a_browser_says_so(report, monkeypatch):
    monkeypatch.setattr(browser, "find_browser", lambda: None)
    out = html_report.publish(report)
    assert out["browser"] is None and out["screenshot"] is None and not out["checked"]
    assert "apt-get install" in out["note"]


def test_ci_installs_the_browser():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "apt-get install" in ci and "chromium" in ci


@pytest.mark.slow
def test_notebook_09_writes_the_page_and_records_it(report, tmp_path):
    """Notebook 09 through the study runner on the fixture report (no built dataset: the birds
    grid keeps its audio, the run folder has no dataset to synthesise more from)."""
    import shutil

    from s2ilib.core.results import load_results
    from s2ilib.study.runner import run_study

    reports = tmp_path / "reports"
    shutil.copytree(report, reports / "smoke")
    out = run_study("smoke", run_root=tmp_path / "runs", report_root=reports, only=["09"], progress=False)
    res = load_results(out / "results.json")
    section = res["report"]
    assert section["page"] == "index.html" and (out / "index.html").stat().st_size == section["page_bytes"]
    assert section["n_audio"] == 2 and section["n_img"] == 4
    assert all("not built" in v for v in section["fig3_audio"].values())  # said, not silent
    assert res["notebooks"]["09_report"]["status"] == "ok"
    assert (out / "09_report.ipynb").exists()
    if browser.find_browser() is None:
        assert "apt-get install" in section["note"]
    else:
        assert section["checked"] and (out / "index.png").stat().st_size > 10_000


def test_robustness_and_interpolation_sections(report, tmp_path):
    """Notebook 08's verdicts per condition and figures, and notebook 07's figures (named by their
    notebook number), each in its own section, not under "Other figures"."""
    import shutil

    rep = tmp_path / "smoke"
    shutil.copytree(report, rep)
    cell = {**_cell(0.5), "wer": 0.25, "wer_ci": [0.2, 0.3]}
    entry = {"methods": ["one_stage", "two_stage"], "conditions": ["clean", "babble_0db"],
             "families": {"clean": "clean", "babble_0db": "noise"}, "n_queries": 48, "n_test_images": 47,
             "cells": {"one_stage": {"clean": _cell(0.5), "babble_0db": _cell(0.42)},
                       "two_stage": {"clean": cell,
                                     "babble_0db": {**cell, "attr_acc": 0.3, "wer": 0.9, "wer_ci": [0.85, 0.95]}}},
             "verdicts": [{"condition": "clean", "verdict": "undecided"},
                          {"condition": "babble_0db", "verdict": "holds"}]}
    record(rep / "results.json", "robustness", {"synth-birds": entry, "timings": {"total_s": 1.0}}, preset="smoke")
    _png(rep / "figures" / "08_synth-birds_robustness.png", "tab:purple", "curves")
    _png(rep / "figures" / "07_synth-birds_curves.png", "tab:olive", "interpolation curves")
    text = html_report.page_html(rep)
    robust = text[text.index("Robustness to unseen speech"):text.index("Other figures")]
    assert "08_synth-birds_robustness.png" in robust and "48 test utterances of 47 test images" in robust
    assert "0.420 [0.370, 0.470]" in robust and "0.900 [0.850, 0.950]" in robust  # attr_acc and WER cells
    assert '<td style="background:#d4edda">holds</td>' in robust
    interp = text[text.index("Interpolation between utterances"):text.index("Robustness to unseen speech")]
    assert "07_synth-birds_curves.png" in interp and "06_synth-birds_interpolation.png" in interp
    other = text[text.index("Other figures"):]
    assert "07_synth-birds_curves.png" not in other and "08_synth-birds" not in other


def test_seed_spread_section(report, tmp_path):
    """The main table over training seeds: a visible note before `make study-seeds`, then mean ±
    std [min, max] per cell; flagged when the main run's values no longer match the main table."""
    import shutil

    import pandas as pd

    from s2ilib.study import seeds as S

    rep = tmp_path / "smoke"
    shutil.copytree(report, rep)

    def section() -> str:
        text = html_report.page_html(rep)
        return text[text.index("Main table over training seeds"):text.index("The paper&#x27;s claims, checked")]

    assert "make study-seeds" in section() and 'class="note"' in section()
    key = ["dataset", "method", "condition", "metric"]
    rows = [("synth-birds", "one_stage", "seen", "attr_acc", v) for v in (0.30, 0.40, 0.35)]
    tables = {s: pd.DataFrame([r], columns=[*key, "value"]) for s, r in zip((1234, 2, 3), rows)}
    S.write_seed_tables(S.combine_seed_tables(tables), rep)
    pd.DataFrame([rows[0]], columns=[*key, "value"]).to_csv(rep / "main_table_long.csv", index=False)
    text = section()
    assert "0.350 ± 0.050 [0.300, 0.400]" in text and "3 training seeds (1234, 2, 3)" in text
    assert 'class="note"' not in text
    pd.DataFrame([(*rows[0][:4], 0.31)], columns=[*key, "value"]).to_csv(rep / "main_table_long.csv", index=False)
    assert "1 cells of the main run differ" in section() and "synth-birds/one_stage/seen/attr_acc" in section()


def test_pooled_claims_open_the_page(report, tmp_path):
    """The first section: notebook 04's claims pooled over training seeds, or a note saying how."""
    import shutil

    import pandas as pd

    from s2ilib.study import claims as C

    rep = tmp_path / "smoke"
    shutil.copytree(report, rep)
    text = html_report.page_html(rep)
    first = text[text.index("<h2>1."):text.index("<h2>2.")]
    assert "over training seeds" in first and "No verdicts over training seeds yet" in first
    row = {"dataset": "synth-birds", "claim": "A above B", "metric": "attr_acc", "rule": "higher",
           "margin": float("nan"), "estimate": 0.3, "low": 0.29, "high": 0.31, "verdict": "holds"}
    per_seed = {s: pd.DataFrame([{**row, "estimate": e, "low": e - 0.01, "high": e + 0.01}])
                for s, e in (("1234", 0.30), ("2", 0.31), ("3", 0.29))}
    C.write_pooled(C.pool_claims(per_seed), rep, C.POOLED_FILE)
    first = html_report.page_html(rep)
    first = first[first.index("<h2>1."):first.index("<h2>2.")]
    assert "A above B" in first and "holds, holds, holds" in first and "+0.300 [" in first
    assert f'background:{html_report.VERDICT_COLOURS["holds"]}' in first and "1 claims over 3 training seeds" in first


def test_figures_show_their_registered_captions(report, tmp_path):
    import json
    import shutil

    rep = tmp_path / "smoke"
    shutil.copytree(report, rep)
    figs = sorted((rep / "figures").glob("*.png"))
    assert figs, "the smoke report has figures"
    (rep / "figures" / "captions.json").write_text(json.dumps({figs[0].name: "A registered caption."}))
    text = html_report.page_html(rep)
    assert "<figcaption>A registered caption.</figcaption>" in text
