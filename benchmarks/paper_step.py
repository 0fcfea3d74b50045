"""Steps/s and peak memory of one training step of the ``paper`` preset's encoder and GAN, here.

    python benchmarks/paper_step.py [--preset paper] [--steps N] [--warmup N] [--device auto|cpu|cuda]

Runs on CUDA when present (else the CPU, where a step of the paper sizes takes many seconds: use
``--steps 1``). Random inputs of the preset's shapes: the encoder step (SpeechEncoder, batch
``encoder.batch_size`` utterances of ``--frames`` 10 ms frames, teacher-student loss against
1280-d teacher features, Adam) and the GAN step (all discriminators + generator + EMA at
``gan.batch_size``, 64/128/256 px). Step cost does not depend on the data. Peak memory: CUDA's
``max_memory_allocated`` per step kind, or the process's peak resident set on the CPU (both models
together). bfloat16 autocast as the preset says (``bf16``). One process; under torchrun each rank
runs a step of ``batch_size / ranks`` rows plus the gradient all-reduce
(s2ilib.training.distributed).
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TEACHER_DIM = 1280  # efficientnet-lite0's pooled features (the preset's teacher)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def _peak_mib(dev: torch.device) -> float:
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _time(step, steps: int, warmup: int, dev: torch.device) -> tuple[float, float]:
    """-> (seconds per step, peak MiB) of ``step()`` after ``warmup`` untimed calls."""
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(warmup):
        step()
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(dev)
    return (time.perf_counter() - t0) / steps, _peak_mib(dev)


def encoder_step(cfg, dev: torch.device, frames: int):
    """A closure running one teacher-student step of the speech encoder on random log-mels."""
    from s2ilib.models.loading import build_model
    from s2ilib.training.losses import TeacherStudentLoss

    e = cfg.encoder
    model = build_model("speech_ts", e, out_dim=TEACHER_DIM).to(dev).train()
    opt = torch.optim.Adam(model.parameters(), lr=e.lr, weight_decay=e.weight_decay)
    loss_fn = TeacherStudentLoss.from_config(e)
    g = torch.Generator().manual_seed(0)
    b = e.batch_size
    x = torch.randn(b, 40, frames, generator=g).to(dev)
    lengths = torch.randint(frames // 2, frames + 1, (b,), generator=g)
    target = torch.randn(b, TEACHER_DIM, generator=g).to(dev)
    labels = torch.randint(0, 16, (b,), generator=g).to(dev)

    def step():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=e.bf16):
            out = model(x, lengths)
        loss, _ = loss_fn(out, target, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def gan_step(cfg, dev: torch.device):
    """A closure running one StackGAN-v2 iteration (Ds, G, EMA) on random images."""
    from s2ilib.training.gan_trainer import _Trainer

    c = cfg.gan
    tr = _Trainer(c, TEACHER_DIM, dev)
    g = torch.Generator().manual_seed(0)
    b = c.batch_size
    sizes = [c.base_size * 2**k for k in range(c.branches)]
    reals = [torch.rand(b, 3, s, s, generator=g).mul(2).sub(1).to(dev) for s in sizes]
    wrongs = [torch.rand(b, 3, s, s, generator=g).mul(2).sub(1).to(dev) for s in sizes]
    emb = torch.randn(b, TEACHER_DIM, generator=g).to(dev)

    def step():
        z = torch.randn(b, c.z_dim, generator=g).to(dev)
        eps = torch.randn(b, c.ca_dim, generator=g).to(dev)
        tr.step(reals, wrongs, emb, z, eps, g)

    return step, sizes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default: 20 on CUDA, 2 on the CPU)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 3 on CUDA, 1 on the CPU)")
    ap.add_argument("--frames", type=int, default=500, help="frames per utterance (10 ms; ~5 s captions)")
    ap.add_argument("--only", choices=["encoder", "gan"], default=None)
    args = ap.parse_args()

    from s2ilib.core.config import get_config
    from s2ilib.core.device import resolve_device

    dev = resolve_device(args.device)
    steps = args.steps or (20 if dev.type == "cuda" else 2)
    warmup = args.warmup if args.warmup is not None else (3 if dev.type == "cuda" else 1)
    cfg = get_config(args.preset)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"preset {args.preset} on {dev} ({name}), torch {torch.__version__}, {steps} timed steps after {warmup}")
    if args.only in (None, "encoder"):
        e = cfg.encoder
        dt, mib = _time(encoder_step(cfg, dev, args.frames), steps, warmup, dev)
        print(f"encoder speech_ts: batch {e.batch_size} x {args.frames} frames, bf16 {e.bf16}: "
              f"{dt:.3f} s/step, {1 / dt:.2f} steps/s, peak memory {mib:,.0f} MiB")
    if args.only in (None, "gan"):
        step, sizes = gan_step(cfg, dev)
        dt, mib = _time(step, steps, warmup, dev)
        c = cfg.gan
        print(f"GAN: {sizes} px, GF {c.gf_dim}, DF {c.df_dim}, batch {c.batch_size}, bf16 {c.bf16}: "
              f"{dt:.3f} s/step, {1 / dt:.2f} steps/s, peak memory {mib:,.0f} MiB; "
              f"{c.steps} steps would take {c.steps * dt / 3600:.1f} h")


if __name__ == "__main__":
    main()
