"""Generator recipes under the same wall-clock budget, scored by the main evaluation.

    python benchmarks/gan_sweep.py --preset small --dataset synth-birds --minutes 4 \
        [--variants authors,modern,modern-kl0,authors-kl0] [--run-root runs] [--out reports/small/sweep]
    python benchmarks/gan_sweep.py --preset small --variants authors --steps 5000,7500,10000   # a curve

Needs the dataset and the teacher-student speech encoder of the preset (notebooks 01-02, e.g.
``s2i study --preset small --only 01,02``). For every variant (a set of config overrides on the
preset) it measures the training step's speed on this machine, sets ``gan.steps`` so training
takes about ``--minutes``, trains the one-stage generator into its own variant folder
(``runs/<preset>/gan/<dataset>/one_stage@...``; the baseline's folder is never touched) and scores
it with :func:`s2ilib.evaluation.main.run_main_evaluation` on the validation classes (``--split val``,
the default: a fixed part of the training classes that the encoder and generators never saw; the
encoder must be trained with ``--set split=val``, e.g. ``s2i study --preset small --only 01,02 --set
split=val``); ``--split test`` scores the unseen test classes instead, for a final report only: attribute
accuracy and R-precision (with intervals where the evaluation gives them), FID / KID, and the
noise-versus-speech variation. Prints a table and writes ``sweep.csv`` / ``sweep.md``.
The steps of each variant are recorded, so a rerun reproduces the same runs (and reuses them).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

VARIANTS: dict[str, dict[str, Any]] = {
    "authors": {"gan.recipe": "stackgan2"},  # StackGAN-v2 as the authors
    "authors-kl0": {"gan.recipe": "stackgan2", "gan.kl_coef": 0.0},
    "modern": {"gan.recipe": "modern"},
    "modern-kl0": {"gan.recipe": "modern", "gan.kl_coef": 0.0},
    "modern-kl0-w24": {"gan.recipe": "modern", "gan.kl_coef": 0.0, "gan.gf_dim": 24, "gan.df_dim": 24},
    "modern-kl0-noms": {"gan.recipe": "modern", "gan.kl_coef": 0.0, "gan.mode_seeking": 0.0},
    "authors-con": {"gan.recipe": "stackgan2", "gan.contrastive": 1.0},  # authors' + XMC-GAN contrastive term
    "authors-con-kl0": {"gan.recipe": "stackgan2", "gan.contrastive": 1.0, "gan.kl_coef": 0.0},
    "modern-con": {"gan.recipe": "modern", "gan.contrastive": 1.0, "gan.mode_seeking": 0.0},
    "contrastive": {"gan.recipe": "contrastive"},  # the same switches as modern-con, named once
    "dfgan": {"gan.recipe": "dfgan"},  # one 64 px stage of condition-modulated blocks, MA-GP
    "dfgan-da": {"gan.recipe": "dfgan", "gan.diffaug": "translation,cutout"},
    "dfgan-w24": {"gan.recipe": "dfgan", "gan.gf_dim": 24},
}
METRICS = ("attr_acc", "attr_acc_ci", "attr_acc_shuffled", "r_precision", "r_precision_ci", "fid", "kid")


def steps_per_second(gan_cfg: Any, cond_dim: int, n: int = 8, warmup: int = 3) -> float:
    """Training steps per second of ``gan_cfg`` on random data on this machine (CPU)."""
    import torch

    from s2ilib.training.gan_trainer import _Trainer

    sizes = [gan_cfg.base_size * 2 ** k for k in range(gan_cfg.branches)]
    b = gan_cfg.batch_size
    g = torch.Generator().manual_seed(0)
    reals = [torch.rand(b, 3, s, s, generator=g) * 2 - 1 for s in sizes]
    wrongs = [torch.rand(b, 3, s, s, generator=g) * 2 - 1 for s in sizes]
    emb = torch.randn(b, cond_dim, generator=g)
    tr = _Trainer(gan_cfg, cond_dim, torch.device("cpu"))
    step = lambda: tr.step(reals, wrongs, emb, torch.randn(b, gan_cfg.z_dim, generator=g),  # noqa: E731
                           torch.randn(b, gan_cfg.ca_dim, generator=g), g)
    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    return n / (time.perf_counter() - t0)


def _flat_scores(cell: dict[str, Any]) -> dict[str, Any]:
    return {m: cell.get(m) for m in METRICS if m in cell}


def warm_start(paths: Any, ds_name: str, overrides: dict[str, Any], steps: int, args: argparse.Namespace) -> str | None:
    """Copy the longest finished run of the same variant with fewer steps (the preset's own length
    included) into this run's empty folder, so training resumes from it: resumption is exact (every
    draw of step t is seeded by (seed, t)), so the result equals a run from scratch."""
    import shutil

    from s2ilib.core.config import get_config
    from s2ilib.study.paths import RunPaths

    dest = paths.gan(ds_name, "one_stage")
    if (dest / "checkpoint.pt").exists():
        return None
    shorter = sorted({*args.steps, get_config(args.preset, overrides).gan.steps} - {steps})
    for n in reversed([n for n in shorter if n < steps]):
        cfg_n = get_config(args.preset, {**overrides, "gan.steps": n})
        src = RunPaths.create(args.run_root, args.out, cfg_n).gan(ds_name, "one_stage")
        summary = src / "summary.json"
        if summary.is_file() and json.loads(summary.read_text()).get("steps") == n:
            shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".lock"), dirs_exist_ok=True)
            return str(src)
    return None


def run_variant(name: str, overrides: dict[str, Any], args: argparse.Namespace, steps: int | None = None) -> dict[str, Any]:
    from s2ilib.core.config import get_config
    from s2ilib.evaluation.main import run_main_evaluation
    from s2ilib.study import analysis, stages
    from s2ilib.study.paths import RunPaths

    overrides = {**split_overrides(args), **overrides}
    cfg = get_config(args.preset, overrides)
    base_paths = RunPaths.create(args.run_root, args.out, cfg)
    ds = stages.load_built_dataset(args.dataset, base_paths)
    emb = stages.load_embeddings(base_paths, ds.name, "speech_ts")
    rate = steps_per_second(cfg.gan, int(emb["emb"].shape[1]))
    if steps is None:
        steps = max(50, int(round(args.minutes * 60 * rate / 50)) * 50)
    cfg = get_config(args.preset, {**overrides, "gan.steps": steps,
                                   "gan.sample_every": max(1, steps // 4), "gan.ckpt_every": max(1, steps // 10)})
    paths = RunPaths.create(args.run_root, args.out, cfg)
    started_from = warm_start(paths, ds.name, overrides, steps, args) if steps and args.steps else None
    t0 = time.perf_counter()
    summary = stages.train_generator_stage(ds, "one_stage", cfg, paths, progress=args.progress)
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    main = run_main_evaluation(ds, cfg, paths, methods=["one_stage"], progress=args.progress)
    eval_s = time.perf_counter() - t1
    var = analysis.noise_vs_speech_variation(ds, paths, "one_stage", seed=cfg.seed)
    row = {"variant": name, "overrides": json.dumps(overrides), "steps": steps, "warm_start": started_from,
           "steps_per_s": round(rate, 3), "train_s": round(summary.get("total_seconds") or train_s, 1),
           "eval_s": round(eval_s, 1), "folder": str(paths.gan(ds.name, "one_stage")),
           "noise_std": round(var["pixel_std_over_noise"], 2), "speech_std": round(var["pixel_std_over_speech"], 2)}
    for cond in ("seen", "unseen"):
        for k, v in _flat_scores(main.get("one_stage", {}).get(cond, {})).items():
            row[f"{cond}_{k}"] = v
    row["reader_real"] = (main.get("reader") or {}).get("real_test_attr_acc")  # the ceiling: real test images
    return row


def split_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The split every run of the sweep trains and scores on (validation unless told otherwise)."""
    return {"split": args.split}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--dataset", default="synth-birds")
    ap.add_argument("--minutes", type=float, default=4.0, help="training wall-clock budget per variant")
    ap.add_argument("--variants", default="authors,modern,modern-kl0",
                    help=f"comma-separated, from {', '.join(VARIANTS)}")
    ap.add_argument("--steps", default="", help="comma-separated training lengths instead of --minutes (a curve "
                    "of the score against training time): each length resumes from the next shorter finished run")
    ap.add_argument("--run-root", default="runs")
    ap.add_argument("--out", default=None, help="folder for sweep.csv / sweep.md (default reports/<preset>/sweep)")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--split", choices=("val", "test"), default="val",
                    help="classes to score on: val (default; held out from the encoder and generators) or test "
                         "(the unseen test classes: for a final report, never for choosing)")
    args = ap.parse_args(argv)
    args.out = args.out or f"reports/{args.preset}/sweep" + ("" if args.split == "test" else "_val")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"gan_sweep: unknown variants {unknown}; choose from {list(VARIANTS)}")

    import pandas as pd

    args.steps = sorted(int(x) for x in args.steps.split(",") if x.strip())
    rows = []
    for name in names:
        for steps in args.steps or [None]:
            print(f"[gan_sweep] {name}: {VARIANTS[name]}" + (f", {steps} steps" if steps else ""), flush=True)
            rows.append(run_variant(name, VARIANTS[name], args, steps))
            print(json.dumps(rows[-1], default=str), flush=True)
    df = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df = df.assign(split=args.split)  # which classes scored it, recorded in every row
    df.to_csv(out / "sweep.csv", index=False)  # train_s: the run's whole training time, warm start included
    from s2ilib.evaluation.tables import to_markdown

    (out / "sweep.md").write_text(to_markdown(df.drop(columns=["folder", "overrides"])) + "\n")
    print(df.drop(columns=["folder"]).to_string(index=False))


if __name__ == "__main__":
    main()
