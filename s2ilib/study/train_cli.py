"""``s2i train encoder|gan``: one training stage outside the notebooks, on one process or under torchrun.

The run folders are the notebooks' (:class:`s2ilib.study.paths.RunPaths`, the same stage calls
of :mod:`s2ilib.study.stages`), so notebooks 03 and 04 find a model trained this way and skip it.
Under ``torchrun --nproc-per-node N -m s2ilib.cli train ...`` every rank joins the process group
(gloo on the CPU, NCCL on CUDA) and trains its share of each global batch; rank 0 writes the
files (:mod:`s2ilib.training.distributed`). The dataset must be built first (notebook 01).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from s2ilib.core import registry
from s2ilib.core.config import get_config
from s2ilib.core.io import seed_everything
from s2ilib.study import stages
from s2ilib.study.runner import REPO_ROOT, check_overrides
from s2ilib.training import distributed


def _lead_first(ctx: distributed.Context | None, fn):
    """``fn()`` on rank 0 first, then on the others (it fills a cache the others then read)."""
    import torch.distributed as dist

    if ctx is not None and not ctx.lead:
        dist.barrier()
    out = fn()
    if ctx is not None and ctx.lead:
        dist.barrier()
    return out


def cmd_train(args: argparse.Namespace, pairs: dict) -> int:
    cfg = get_config(args.preset, {"seed": args.seed, **check_overrides(args.preset, args.seed, pairs)})
    ctx = distributed.init_from_env(cfg.device)
    try:
        run_root = Path(args.run_root or REPO_ROOT / "runs")
        report_dir = Path(args.report_root or REPO_ROOT / "reports") / args.preset
        paths = stages.RunPaths.create(run_root, report_dir, cfg)
        lead = ctx is None or ctx.lead
        for name in args.dataset or cfg.data.datasets:
            seed_everything(cfg.seed)
            ds = stages.load_built_dataset(name, paths)
            if args.stage == "encoder":
                registry.encoder(args.kind)
                teacher = _lead_first(ctx, lambda: stages.teacher_features(ds, cfg, paths, progress=lead))
                s = stages.train_encoder_stage(ds, args.kind, cfg, paths, teacher, progress=lead, method=args.method)
                out = paths.encoder(name, args.kind, args.method)
            else:
                s = stages.train_generator_stage(ds, args.method or "one_stage", cfg, paths, progress=lead)
                out = paths.gan(name, args.method or "one_stage")
            if lead:
                ranks = 1 if ctx is None else ctx.world
                print(f"[s2i train] {args.stage} {name}: {s.get('steps')} steps on {ranks} rank(s), "
                      f"{s.get('steps_per_s')} steps/s -> {out}")
    finally:
        if ctx is not None:
            import torch.distributed as dist

            dist.destroy_process_group()
    return 0


def add_cli(sub, parse_pairs) -> None:
    """Register ``s2i train``; ``parse_pairs(list, flag)`` reads ``--set key=value`` options."""
    p = sub.add_parser("train", help="train one encoder or generator into the notebooks' run folders "
                                     "(one process, or N under torchrun)")
    p.add_argument("stage", choices=["encoder", "gan"])
    p.add_argument("--preset", default="small", help="smoke | small | paper (default: small)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--dataset", action="append", help="dataset name (repeatable; default: the preset's datasets)")
    p.add_argument("--kind", default="speech_ts", help="encoder kind (encoder stage): speech_ts | speech_cls | text_ts")
    p.add_argument("--method", default=None, help="gan: the generator's method (default one_stage); encoder: "
                                                   "the method whose overrides make the encoder variant")
    p.add_argument("--run-root", default=None, help="folder for data, checkpoints, caches (default: runs/)")
    p.add_argument("--report-root", default=None, help="folder for reports (default: reports/)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override, e.g. gan.steps=3000")
    p.set_defaults(func=lambda a: cmd_train(a, parse_pairs(a.set, "--set")))
