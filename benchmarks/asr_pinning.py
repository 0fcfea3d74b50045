"""Do Whisper's transcripts depend on the CPU? The two-stage queries under pinned ASR settings.

    python benchmarks/asr_pinning.py --preset small [--settings int8,int8-avx2,int8-generic,float32]
        [--datasets synth-birds,synth-flowers] [--conditions seen,unseen] [--out reports/small/asr_pinning]

Needs the dataset of the preset (notebook 01: ``s2i study --preset small --only 01``). For every
setting (a CTranslate2 compute type plus the environment that pins its kernels) a fresh process
transcribes the two-stage method's evaluation queries (the same ``eval.asr_max_queries`` subset
notebook 04 uses, re-synthesised as notebook 04 does) and prints, per dataset and condition: the
WER, the committed report's WER on the same queries (from another machine: the committed
``results.json``), how many transcripts equal the first setting's, and the seconds per utterance.
CTranslate2 picks its instruction set once per process, hence one process per setting.
The queries are the test classes' (the two-stage row of the main table), read only to compare ASR
settings: nothing is tuned on them.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SETTINGS = {  # name: (compute type, environment)
    "int8": ("int8", {}),  # the study's setting
    "int8-avx2": ("int8", {"CT2_FORCE_CPU_ISA": "AVX2"}),
    "int8-generic": ("int8", {"CT2_FORCE_CPU_ISA": "GENERIC"}),
    "float32": ("float32", {}),
    "float32-avx2-cbwr": ("float32", {"CT2_FORCE_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}),
}


def worker(args: argparse.Namespace) -> None:
    """One setting in this process: transcripts and timing per (dataset, condition) as JSON on stdout."""
    from s2ilib.core.config import get_config
    from s2ilib.data.spoken import speak_utterance
    from s2ilib.evaluation.main import method_queries
    from s2ilib.speech.asr import Transcriber
    from s2ilib.study import stages
    from s2ilib.study.paths import RunPaths

    compute_type, _ = SETTINGS[args.worker]
    cfg = get_config(args.preset)
    paths = RunPaths.create(args.run_root, "/tmp/asr_pinning_report", cfg)
    asr = Transcriber(compute_type=compute_type, use_cache=False)
    out = {}
    for name in args.datasets.split(","):
        ds = stages.load_built_dataset(name, paths)
        for cond in args.conditions.split(","):
            q = method_queries(ds, "two_stage", cond, cfg.eval, cfg.seed).drop_duplicates("utt_id")
            waves = [speak_utterance(ds, int(r)) for r in q["row"]]
            t0 = time.perf_counter()
            texts = [asr.transcribe(w) for w in waves]
            out[f"{name}/{cond}"] = {"utt_id": q["utt_id"].astype(str).tolist(), "reference": q["text"].tolist(),
                                     "transcript": texts, "s_per_utt": (time.perf_counter() - t0) / max(len(q), 1)}
    json.dump(out, sys.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--datasets", default="synth-birds,synth-flowers")
    ap.add_argument("--conditions", default="seen,unseen")
    ap.add_argument("--run-root", default="runs")
    ap.add_argument("--out", default=None, help="folder for asr_pinning.csv / .md (default reports/<preset>/asr_pinning)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    names = [s for s in args.settings.split(",") if s]
    unknown = [s for s in names if s not in SETTINGS]
    if unknown:
        raise SystemExit(f"asr_pinning: unknown settings {unknown}; choose from {list(SETTINGS)}")
    import jiwer
    import pandas as pd

    from s2ilib.core.hardware import hardware_info

    committed = json.loads(Path(f"reports/{args.preset}/results.json").read_text()).get("main", {})
    runs = {}
    for name in names:
        env = {**os.environ, **SETTINGS[name][1]}
        cmd = [sys.executable, __file__, "--worker", name, "--preset", args.preset, "--datasets", args.datasets,
               "--conditions", args.conditions, "--run-root", args.run_root]
        print(f"[asr_pinning] {name}: {SETTINGS[name]}", flush=True)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"asr_pinning: setting {name} failed:\n{done.stderr[-2000:]}")
        runs[name] = json.loads(done.stdout)
    rows = []
    for name, res in runs.items():
        for cell, r in res.items():
            ds, cond = cell.split("/")
            first = runs[names[0]][cell]["transcript"]
            rows.append({"setting": name, "compute_type": SETTINGS[name][0], "env": json.dumps(SETTINGS[name][1]),
                         "dataset": ds, "condition": cond, "n": len(r["transcript"]),
                         "wer": jiwer.wer(r["reference"], r["transcript"]),
                         "committed_wer": ((committed.get(ds) or {}).get("asr") or {}).get("wer", {}).get(cond),
                         f"same_as_{names[0]}": sum(a == b for a, b in zip(r["transcript"], first)),
                         "s_per_utt": round(r["s_per_utt"], 3)})
    df = pd.DataFrame(rows)
    hw = hardware_info()
    out = Path(args.out or f"reports/{args.preset}/asr_pinning")
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "asr_pinning.csv", index=False)
    # the transcripts themselves, so that a run on another machine can be compared text by text
    (out / "asr_pinning_transcripts.json").write_text(json.dumps({"hardware": hw, "runs": runs}, indent=1))
    note = (f"Machine: {hw['cpu_model']} ({hw['cpu_vendor']}; {', '.join(hw['kernel_flags'])}), "
            f"CTranslate2 {(hw.get('ctranslate2') or {}).get('version')}, {hw['torch_threads']} threads.")
    from s2ilib.evaluation.tables import to_markdown

    (out / "asr_pinning.md").write_text(to_markdown(df.drop(columns=["env"])) + "\n\n" + note + "\n")
    print(df.to_string(index=False))
    print(note)


if __name__ == "__main__":
    main()
