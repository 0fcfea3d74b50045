"""Time FID Inception features: float32 against the fast path, side by side in one run.

    python benchmarks/inception_speed.py [--n 200] [--batch 32] [--preset small] [--dataset synth-birds]

Images: the built dataset's test images (``runs/<preset>/data/<dataset>``, notebook 01) when present,
else random uint8 images (the timing holds, the FID figure then means nothing). Prints seconds per
image of each path, the ratio against float32, and the FID between the two halves of the images
computed from each path's features (the fast path must stay within 1% of float32).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch


def _images(args) -> tuple[torch.Tensor, str]:
    from s2ilib.core.config import get_config
    from s2ilib.study import stages
    from s2ilib.study.paths import RunPaths

    cfg = get_config(args.preset)
    root = Path(args.run_root)
    if (root / args.preset / "data" / args.dataset / "dataset.json").is_file():
        paths = RunPaths.create(root, Path("/tmp/inception_speed_report"), cfg)
        ds = stages.load_built_dataset(args.dataset, paths)
        idx = ds.split("train")[: args.n]  # training images: a benchmark never reads the test classes
        return (stages.load_images_uint8(ds, idx, 64, bbox_crop=cfg.gan.bbox_crop),
                f"{len(idx)} training images of {args.dataset} at 64 px")
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (args.n, 3, 64, 64), dtype=torch.uint8, generator=g), f"{args.n} random images"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--dataset", default="synth-birds")
    ap.add_argument("--run-root", default="runs")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from s2ilib.evaluation.fid import FIDInception, STANDARD_FID_SIZE, fid_from_features, inception_features

    images, what = _images(args)
    model = FIDInception(STANDARD_FID_SIZE)
    inception_features(images[:4], batch_size=4, progress=False, model=model, fast=True)  # warm-up
    inception_features(images[:4], batch_size=4, progress=False, model=model)
    print(f"{what}; {args.threads} threads; torch {torch.__version__}")
    results = {}
    for name, fast in (("float32", False), ("bf16 + channels-last", True)):
        t0 = time.perf_counter()
        feats = inception_features(images, batch_size=args.batch, progress=False, model=model, fast=fast)
        results[name] = (time.perf_counter() - t0, feats)
    h = len(images) // 2
    base_t, base_f = results["float32"]
    base_fid = fid_from_features(base_f[:h], base_f[h:])
    for name, (t, f) in results.items():
        fid = fid_from_features(f[:h], f[h:])
        print(f"{name:22s} {t / len(images):.3f} s/image  x{base_t / t:.2f} vs float32  "
              f"FID(half, half) {fid:.4f} ({100 * (fid - base_fid) / base_fid:+.3f}% vs float32)")


if __name__ == "__main__":
    main()
