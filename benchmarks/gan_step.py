"""Time one StackGAN-v2 training step (all discriminators + generator + EMA) at a preset's sizes.

    python benchmarks/gan_step.py --preset small [--steps 30] [--threads 2] [--channels-last] [--compile]

Prints steps/s and achieved GFLOP/s in float32 and in bfloat16 autocast on random data (the step
cost does not depend on the images). FLOPs are counted once with torch.utils.flop_counter.
``--compile`` adds a bfloat16 run with G and every D wrapped in ``torch.compile`` (inductor), its
compilation time, and its speed-up over the eager bfloat16 step measured in the same process.
"""
from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--channels-last", action="store_true", help="networks and images in channels_last layout")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd G and Ds (bfloat16)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="gan config overrides, e.g. df_dim=32")
    args = ap.parse_args()

    from torch.utils.flop_counter import FlopCounterMode

    from s2ilib.core.config import get_config
    from s2ilib.training.gan_trainer import _Trainer

    torch.set_num_threads(args.threads)
    overrides = {f"gan.{k}": type(getattr(get_config(args.preset).gan, k))(v)
                 for k, v in (kv.split("=", 1) for kv in args.set)}
    base = get_config(args.preset, overrides).gan
    sizes = [base.base_size * 2 ** k for k in range(base.branches)]
    B, D = base.batch_size, 1280
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    g = torch.Generator().manual_seed(0)
    reals = [torch.rand(B, 3, s, s, generator=g).mul(2).sub(1).contiguous(memory_format=fmt) for s in sizes]
    wrongs = [torch.rand(B, 3, s, s, generator=g).mul(2).sub(1).contiguous(memory_format=fmt) for s in sizes]
    emb = torch.randn(B, D, generator=g)
    print(f"preset {args.preset}: sizes {sizes}, GF {base.gf_dim}, DF {base.df_dim}, batch {B}, "
          f"{args.threads} threads, channels_last {args.channels_last}")
    runs = [(False, False), (True, False)] + ([(True, True)] if args.compile else [])
    per_step = {}
    for bf16, compiled in runs:
        cfg = type(base)(**{**base.__dict__, "bf16": bf16})
        tr = _Trainer(cfg, D, torch.device("cpu"))
        if args.channels_last:
            for m in (tr.G, tr.Ds, tr.G_ema):
                m.to(memory_format=torch.channels_last)
        z = lambda: (torch.randn(B, cfg.z_dim, generator=g), torch.randn(B, cfg.ca_dim, generator=g))
        if compiled:  # the training passes call G_fwd / Ds_fwd (tree_step); the G pass's Ds stay eager
            tr.G_fwd, tr.Ds_fwd = torch.compile(tr.G), [torch.compile(d) for d in tr.Ds]
            # flops: the eager bfloat16 run's count (the same graph); FlopCounterMode would trace the compile
        else:
            with FlopCounterMode(display=False) as fc:
                tr.step(reals, wrongs, emb, *z())
            flops = fc.get_total_flops()
        t0 = time.perf_counter()
        for _ in range(args.warmup):
            tr.step(reals, wrongs, emb, *z())
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(args.steps):
            tr.step(reals, wrongs, emb, *z())
        dt = per_step[bf16, compiled] = (time.perf_counter() - t0) / args.steps
        name = ("bfloat16" if bf16 else "float32 ") + (" compiled" if compiled else "")
        extra = f", warm-up incl. compilation {warm:.0f} s" if compiled else ""
        print(f"{name}: {dt:.3f} s/step, {1 / dt:.2f} steps/s, "
              f"{flops / 1e9:.1f} GFLOP/step, {flops / dt / 1e9:.0f} GFLOP/s{extra}")
    if args.compile:
        print(f"torch.compile speed-up over eager bfloat16: x{per_step[True, False] / per_step[True, True]:.2f}")


if __name__ == "__main__":
    main()
