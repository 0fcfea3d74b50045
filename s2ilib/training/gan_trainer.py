"""Training of the conditional StackGAN-v2 on stored embeddings, and inference from embeddings.

The trainer takes plain tensors, so it does not depend on how embeddings or images were made:

* ``images_uint8`` (N, 3, S, S): the training images at S >= the largest branch size; smaller
  scales are area-resized from it once (antialiased bilinear).
* ``cond_emb`` (E, D): one condition embedding per utterance (the speech / text encoder's output),
  ``cond_image_idx`` (E,): its image, ``image_class`` (N,): the class of every image (wrong pairs
  are real images of a *different* class, paper §III-C).

Run folder (``out_dir``, locked while training, see :mod:`s2ilib.core.runkit`): ``config.json``,
``checkpoint.pt`` (G, Ds, EMA, optimisers, step, RNG states; a safe weights file),
``generator_ema.pt`` (what inference loads), ``log.jsonl`` (one line per step),
``samples/step_XXXXXXX_<size>.png`` and ``summary.json`` (its ``trained_by``: the commit and machine
that finished the run and every training session, :func:`s2ilib.core.runkit.trained_by`). Rerunning
with the same ``out_dir`` resumes from the checkpoint; a second writer on the folder is refused at
once. Every random draw of step t comes from a generator seeded by ``(seed, t)``, and the utterance
order of epoch e by ``(seed, e)``, so an interrupted and resumed run makes the same draws as an
uninterrupted one. Under torchrun every rank makes these global draws and trains on its rows of
the batch, rank 0 writes the folder (:mod:`s2ilib.training.distributed`: batch, learning rate,
resume on other rank counts).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from s2ilib.models.gan import StackGenerator, build_networks, output_sizes
from s2ilib.models.loading import GENERATOR_EMA, GanCheckpointError, generate
from s2ilib.training import distributed
from s2ilib.training.augment import diff_augment, parse_policy
from s2ilib.training.fusion_step import fusion_step
from s2ilib.training.tree_step import tree_step
from s2ilib.core.config import GanConfig, save_config
from s2ilib.core.device import bf16_autocast, resolve_device
from s2ilib.core.io import atomic_write_text, seed_everything, torch_save_atomic
from s2ilib.core.runkit import (check_same_run, config_diff, load_checkpoint, rng_state, session_stamp, set_rng_state,
                                trained_by, truncate_jsonl, with_defaults)

CHECKPOINT = "checkpoint.pt"
# Keys of GanConfig that may change between a run and its resumption (they do not change the model
# or the draws of any step).
_RESUMABLE_KEYS = {"steps", "sample_every", "ckpt_every"}
_CKPT_KEYS = ("G", "Ds", "G_ema", "opt_G", "opt_Ds", "step", "rng", "config", "data", "seed")
_LOSS_KEYS = ("d_loss", "g_adv", "g_loss", "kl", "color", "mode_seeking", "ma_gp", "d_contrastive", "g_contrastive")


class GanDataError(ValueError):
    """The tensors given to :func:`train_gan` are inconsistent."""


# ----------------------------------------------------------------------------- data


def image_pyramid(images_uint8: torch.Tensor, sizes: list[int], chunk: int = 256) -> list[torch.Tensor]:
    """uint8 (N, 3, S, S) -> [uint8 (N, 3, s, s) for s in sizes], antialiased resizes of the input."""
    out = []
    for s in sizes:
        if images_uint8.shape[-1] == s:
            out.append(images_uint8)
            continue
        parts = []
        for i in range(0, len(images_uint8), chunk):
            x = images_uint8[i: i + chunk].float()
            y = F.interpolate(x, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
            parts.append(y.round().clamp(0, 255).to(torch.uint8))
        out.append(torch.cat(parts))
    return out


def to_unit_range(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1] (the generator's tanh range)."""
    return x_uint8.float().div_(127.5).sub_(1.0)


class WrongImageSampler:
    """Draws, for each class in a batch, a training image uniformly among those of other classes."""

    def __init__(self, train_images: torch.Tensor, image_class: torch.Tensor):
        classes, inverse = torch.unique(image_class[train_images], return_inverse=True)
        if len(classes) < 2:
            raise GanDataError("wrong pairs need training images of at least two classes, "
                               f"got only class {classes.tolist()}")
        order = torch.argsort(inverse, stable=True)
        self.sorted_images = train_images[order]
        counts = torch.bincount(inverse, minlength=len(classes))
        self.start = torch.cumsum(counts, 0) - counts
        self.count = counts
        self.classes = classes
        self.total = len(train_images)

    def __call__(self, cls: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Class labels (B,) -> image indices (B,) whose class differs from ``cls``."""
        k = torch.searchsorted(self.classes, cls)
        start, n_same = self.start[k], self.count[k]
        # Uniform over the images outside the class block [start, start + n_same) of the sorted list.
        r = (torch.rand(len(cls), generator=generator) * (self.total - n_same)).long()
        r = torch.minimum(r, self.total - n_same - 1)
        pos = torch.where(r < start, r, r + n_same)
        return self.sorted_images[pos]


def _seeded(*keys: int) -> torch.Generator:
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """Permutation of the n utterances for one epoch, a function of (seed, epoch) only."""
    return torch.randperm(n, generator=_seeded(seed, epoch, 7))


# ----------------------------------------------------------------------------- EMA


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model for parameters; buffers (BN statistics) copied."""
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.lerp_(p.detach(), 1.0 - decay)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


# ----------------------------------------------------------------------------- training


def _autocast(enabled: bool, device: torch.device):
    return bf16_autocast(enabled, device)


def _check_inputs(images: torch.Tensor, cond_emb: torch.Tensor, cond_image_idx: torch.Tensor,
                  image_class: torch.Tensor, largest: int) -> None:
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
        raise GanDataError(f"images must be uint8 (N, 3, S, S), got {images.dtype} {tuple(images.shape)}")
    if images.shape[-1] < largest:
        raise GanDataError(f"images are {images.shape[-1]} px but the largest branch needs {largest} px")
    if cond_emb.ndim != 2 or len(cond_emb) != len(cond_image_idx):
        raise GanDataError(f"cond_emb {tuple(cond_emb.shape)} and cond_image_idx {tuple(cond_image_idx.shape)} "
                           "must be (E, D) and (E,)")
    if len(image_class) != len(images):
        raise GanDataError(f"image_class has {len(image_class)} entries for {len(images)} images")
    if len(cond_image_idx) and (int(cond_image_idx.min()) < 0 or int(cond_image_idx.max()) >= len(images)):
        raise GanDataError(f"cond_image_idx must lie in [0, {len(images)})")


def _fingerprint(images: torch.Tensor, cond_emb: torch.Tensor, cond_image_idx: torch.Tensor) -> dict[str, Any]:
    """Cheap identity of the training data, checked when a run resumes."""
    return {"n_images": len(images), "image_size": int(images.shape[-1]), "n_cond": len(cond_emb),
            "cond_dim": int(cond_emb.shape[1]), "emb_sum": round(float(cond_emb.double().sum()), 3),
            "idx_sum": int(cond_image_idx.sum())}


class _Trainer:
    """Holds the networks and optimisers of one run; :func:`train_gan` is the public entry point."""

    def __init__(self, cfg: Any, cond_dim: int, device: torch.device):
        self.cfg, self.device = cfg, device
        G, Ds = build_networks(cfg, cond_dim)
        self.G, self.Ds = G.to(device), Ds.to(device)
        self.policy = parse_policy(cfg.diffaug)
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=cfg.lr_g, betas=betas)
        self.opt_Ds = [torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=betas) for D in self.Ds]
        # What the training passes call: the networks themselves, or their DDP wrappers under torchrun
        # (the G pass calls the bare Ds: it needs no D gradients). shard: (rows, n) of DiffAugment.
        self.G_fwd, self.Ds_fwd, self.shard = self.G, list(self.Ds), None

    def state(self) -> dict[str, Any]:
        return {"G": self.G.state_dict(), "Ds": self.Ds.state_dict(), "G_ema": self.G_ema.state_dict(),
                "opt_G": self.opt_G.state_dict(), "opt_Ds": [o.state_dict() for o in self.opt_Ds]}

    def load(self, ckpt: dict[str, Any]) -> None:
        self.G.load_state_dict(ckpt["G"])
        self.Ds.load_state_dict(ckpt["Ds"])
        self.G_ema.load_state_dict(ckpt["G_ema"])
        self.opt_G.load_state_dict(ckpt["opt_G"])
        for opt, st in zip(self.opt_Ds, ckpt["opt_Ds"]):
            opt.load_state_dict(st)

    def step(self, reals: list[torch.Tensor], wrongs: list[torch.Tensor], emb: torch.Tensor,
             z: torch.Tensor, eps: torch.Tensor, g: torch.Generator | None = None) -> dict[str, Any]:
        """One iteration: all D_s on (real, fake, wrong), then G on every scale, then EMA.

        ``g``: the step's seeded generator, for DiffAugment's draws. With ``mode_seeking`` the
        batch's second half repeats the first half's conditions (and images) under other noise."""
        cfg, amp = self.cfg, self.cfg.bf16
        if cfg.mode_seeking > 0:
            h = len(emb) // 2
            pair = lambda t: torch.cat([t[:h], t[:h]])  # noqa: E731
            emb, eps, z = pair(emb), pair(eps), z[: 2 * h]
            reals, wrongs = [pair(r) for r in reals], [pair(w) for w in wrongs]
        aug = (lambda x: diff_augment(x, self.policy, g, self.shard)) if self.policy else (lambda x: x)  # noqa: E731
        autocast = lambda: _autocast(amp, self.device)  # noqa: E731
        step = fusion_step if cfg.arch == "fusion" else tree_step  # DF-GAN's objective, or StackGAN-v2's
        out = step(self, reals, wrongs, emb, z, eps, aug, autocast)
        ema_update(self.G_ema, self.G, cfg.ema_decay)
        return out


def _cfg_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)


def _check_resumable(ckpt: dict[str, Any], cfg_d: dict[str, Any], fp: dict[str, Any], seed: int,
                     path: Path) -> None:
    """The checkpoint's run (GAN config, seed, data fingerprint) must be this one, training length aside."""
    # A switch added after the checkpoint was written is absent from it: the run had its default.
    old = with_defaults({"gan": ckpt["config"], "seed": ckpt["seed"], "data": ckpt["data"]}, "gan", GanConfig)
    new = {"gan": cfg_d, "seed": seed, "data": fp}
    ignore = {f"gan.{k}" for k in _RESUMABLE_KEYS}
    changed = {k.split(".")[0] for k in config_diff(old, new, ignore)}
    hint = "".join([" (started with another seed)" if "seed" in changed else "",
                    " (trained on different data)" if "data" in changed else ""])
    check_same_run(path.parent, old, new, ignore=ignore, error=GanCheckpointError, hint=hint)


def _save_samples(G_ema: StackGenerator, fixed_cond: torch.Tensor, seed: int, out_dir: Path, step: int) -> None:
    from torchvision.utils import save_image

    images = generate(G_ema, fixed_cond, seed=seed, all_branches=True)
    nrow = max(1, int(math.ceil(math.sqrt(len(fixed_cond)))))
    (out_dir / "samples").mkdir(parents=True, exist_ok=True)
    for img in images:
        save_image(img.float() / 255.0, out_dir / "samples" / f"step_{step:07d}_{img.shape[-1]}.png", nrow=nrow)


def _save_generator(tr: _Trainer, path: Path, step: int, cfg_d: dict[str, Any]) -> None:
    torch_save_atomic({"state_dict": tr.G_ema.state_dict(), "kwargs": dict(tr.G.kwargs), "step": step,
                       "config": cfg_d}, path)


def train_gan(images_uint8: torch.Tensor, cond_emb: torch.Tensor, cond_image_idx: torch.Tensor,
              image_class: torch.Tensor, cfg: Any, out_dir: str | Path, seed: int = 1234,
              fixed_cond: torch.Tensor | None = None, progress: bool = True, device: str = "auto",
              callback: Callable[[int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train G and the per-scale Ds for ``cfg.steps`` iterations (resuming from ``out_dir``).

    images_uint8: (N, 3, S, S) uint8 training images, S >= base_size * 2**(branches-1).
    cond_emb: (E, D) float condition embeddings; cond_image_idx: (E,) their image in [0, N);
    image_class: (N,) class of each image. fixed_cond: (K, D) conditions of the sample grids
    (default: the first 16 embeddings). callback(step, record) is called after each step
    (``step`` = steps done). Returns a summary dict (also written to ``summary.json``).
    ``device``: ``auto`` | ``cpu`` | ``cuda`` (:func:`s2ilib.core.device.resolve_device`).
    """
    out_dir = Path(out_dir)
    dev = resolve_device(device)
    cond_image_idx = torch.as_tensor(cond_image_idx).long().cpu()
    image_class = torch.as_tensor(image_class).long().cpu()
    cond_emb = torch.as_tensor(cond_emb).float().cpu()
    sizes = output_sizes(cfg)
    _check_inputs(images_uint8, cond_emb, cond_image_idx, image_class, sizes[-1])
    fixed_cond = cond_emb[:16] if fixed_cond is None else torch.as_tensor(fixed_cond).float().cpu()
    cfg_d = _cfg_dict(cfg)
    fp = _fingerprint(images_uint8, cond_emb, cond_image_idx)
    with distributed.run_folder(out_dir, dev):  # one writer per run folder; temp files of killed writes removed
        return _train_locked(images_uint8, cond_emb, cond_image_idx, image_class, cfg, out_dir, seed, fixed_cond,
                             progress, dev, callback, sizes, cfg_d, fp)


def _resume(tr: _Trainer, ckpt_path: Path, dev: torch.device, cfg_d: dict[str, Any], fp: dict[str, Any],
            seed: int) -> tuple[int, float, list]:
    """Load the checkpoint (safely) into ``tr`` and the global RNGs -> (step, elapsed seconds, sessions)."""
    ckpt = load_checkpoint(ckpt_path, GanCheckpointError, _CKPT_KEYS, map_location=dev, what="GAN checkpoint")
    _check_resumable(ckpt, cfg_d, fp, seed, ckpt_path)
    try:
        tr.load(ckpt)
        set_rng_state(ckpt["rng"])
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise GanCheckpointError(f"{ckpt_path}: does not fit this GAN ({type(exc).__name__}: {exc})") from exc
    return int(ckpt["step"]), float(ckpt.get("elapsed", 0.0)), list(ckpt.get("sessions", []))


def _train_locked(images_uint8, cond_emb, cond_image_idx, image_class, cfg, out_dir: Path, seed: int, fixed_cond,
                  progress: bool, dev: torch.device, callback, sizes: list[int], cfg_d: dict[str, Any],
                  fp: dict[str, Any]) -> dict[str, Any]:
    seed_everything(seed)
    tr = _Trainer(cfg, cond_emb.shape[1], dev)
    start, elapsed0, sessions = 0, 0.0, []  # sessions: runkit.session_stamp of each start / resume
    ckpt_path, log_path = out_dir / CHECKPOINT, out_dir / "log.jsonl"
    if ckpt_path.exists():
        start, elapsed0, sessions = _resume(tr, ckpt_path, dev, cfg_d, fp, seed)
    ctx = distributed.current(dev)
    lead = ctx is None or ctx.lead  # rank 0 (or the only process) writes the run folder
    if lead:
        save_config({"gan": cfg_d, "seed": seed, "data": fp}, out_dir / "config.json")  # after the resume check
    summary_path = out_dir / "summary.json"
    if start >= cfg.steps and summary_path.is_file() and (out_dir / GENERATOR_EMA).exists():
        done = json.loads(summary_path.read_text())
        if done.get("steps") == cfg.steps:  # finished earlier: keep the figures measured then
            return {**done, "reused": True}  # its trained_by says where
    sessions.append(session_stamp(start))
    if lead:
        truncate_jsonl(log_path, start)

    pyramid = image_pyramid(images_uint8, sizes)
    wrong_sampler = WrongImageSampler(torch.unique(cond_image_idx), image_class)
    n_cond = len(cond_emb)
    batch = min(cfg.batch_size, n_cond)
    steps_per_epoch = n_cond // batch
    mine = None if ctx is None else distributed.gan_rows(batch, cfg.mode_seeking > 0, ctx)
    if ctx is not None:
        tr.G_fwd, tr.Ds_fwd = distributed.wrap(tr.G, ctx), [distributed.wrap(D, ctx) for D in tr.Ds]
    take = (lambda t: t) if mine is None else (lambda t: t[mine])  # noqa: E731 (this rank's rows)
    orders: dict[int, torch.Tensor] = {}
    record: dict[str, Any] = {}
    t0 = time.perf_counter()
    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.steps, initial=min(start, cfg.steps), disable=not (progress and lead), desc="GAN", unit="step")
    with open(log_path if lead else os.devnull, "a") as log:
        for step in range(start, cfg.steps):
            epoch, pos = divmod(step, steps_per_epoch)
            if epoch not in orders:
                orders = {epoch: epoch_order(seed, epoch, n_cond)}
            rows = orders[epoch][pos * batch: (pos + 1) * batch]
            g = _seeded(seed, step)
            img_idx = cond_image_idx[rows]
            wrong_idx = wrong_sampler(image_class[img_idx], g)
            flip_r = (torch.rand(batch, generator=g) < 0.5) & cfg.flip
            flip_w = (torch.rand(batch, generator=g) < 0.5) & cfg.flip
            z = torch.randn(batch, cfg.z_dim, generator=g)
            eps = torch.randn(batch, cfg.ca_dim, generator=g)
            reals = [_batch_images(p, take(img_idx), take(flip_r), dev) for p in pyramid]
            wrongs = [_batch_images(p, take(wrong_idx), take(flip_w), dev) for p in pyramid]
            tr.shard, tr.step_no = (None if mine is None else (mine, batch)), step  # step_no: lazy MA-GP
            record = tr.step(reals, wrongs, take(cond_emb[rows]).to(dev), take(z).to(dev), take(eps).to(dev), g)
            if ctx is not None:  # the global batch's losses: means over equal shards
                record = distributed.mean_over_ranks(record, _LOSS_KEYS, ctx)
            done = step + 1
            record = {"step": done, **record, "time": round(elapsed0 + time.perf_counter() - t0, 3)}
            log.write(json.dumps(record) + "\n")
            if lead and (done % cfg.sample_every == 0 or done == cfg.steps):
                _save_samples(tr.G_ema, fixed_cond.to(dev), seed, out_dir, done)
            if lead and (done % cfg.ckpt_every == 0 or done == cfg.steps):
                log.flush()
                torch_save_atomic({**tr.state(), "step": done, "rng": rng_state(), "config": cfg_d, "data": fp,
                                   "seed": seed, "elapsed": record["time"], "sessions": sessions}, ckpt_path)
                _save_generator(tr, out_dir / GENERATOR_EMA, done, cfg_d)
            bar.update(1)
            bar.set_postfix(d=f"{sum(record['d_loss']):.2f}", g=f"{record['g_loss']:.2f}", kl=f"{record['kl']:.3f}",
                            refresh=False)
            if callback is not None:
                callback(done, record)
    bar.close()
    train_s = time.perf_counter() - t0  # this call only
    n_done = max(0, cfg.steps - start)
    if not record and log_path.exists() and log_path.stat().st_size:  # nothing left to run: report the log's end
        record = json.loads(log_path.read_text().splitlines()[-1])
    summary = {"steps": cfg.steps, "start_step": start, "steps_run": n_done, "train_seconds": round(train_s, 3),
               "steps_per_s": round(n_done / train_s, 4) if n_done else None,
               "total_seconds": record.get("time"),  # all calls of this run, resumptions included
               "final": {k: record.get(k) for k in ("d_loss", "g_adv", "g_loss", "kl", "color")} if record else None,
               "generator_ema": str(out_dir / GENERATOR_EMA), "sizes": sizes, "bf16": cfg.bf16}
    if not lead:
        return summary
    if not (out_dir / GENERATOR_EMA).exists():
        _save_generator(tr, out_dir / GENERATOR_EMA, start, cfg_d)
    summary["trained_by"] = trained_by(sessions)
    atomic_write_text(summary_path, json.dumps(summary, indent=2) + "\n")
    return {**summary, "reused": False}


def _batch_images(pyr: torch.Tensor, idx: torch.Tensor, flip: torch.Tensor, dev: torch.device) -> torch.Tensor:
    x = to_unit_range(pyr[idx])
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)  # same flip at every scale of an image
    return x.to(dev)


# ----------------------------------------------------------------------------- inference


