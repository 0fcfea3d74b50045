"""One trainer for the three encoders of the study, with exact resume.

Kinds:

* ``speech_ts``  -- SpeechEncoder trained by teacher-student learning (TeacherStudentLoss).
* ``speech_cls`` -- classifier-based speech encoder (the paper's baseline): cross-entropy over
  the training classes; its embedding is the SpeechEncoder output (teacher dim, not teacher space).
* ``text_ts``    -- TextEncoder on the captions' text, teacher-student (the text / two-stage baselines).

Data order is a pure function of ``(seed, epoch)`` and every random choice of a step (crop offsets,
SpecAugment masks, each image's teacher view) of ``(seed, step)``, so a run stopped anywhere and resumed
ends as an uninterrupted run. Under torchrun the ranks split each batch, rank 0 writes.

Folder (``out_dir``, locked while training, see :mod:`s2ilib.core.runkit`): ``config.json`` (written
before training), ``checkpoint.pt`` (every ``ckpt_every`` steps and at the end, atomic, a safe
weights file), ``log.jsonl`` (one line per step), ``metrics.jsonl`` (validation and final test
retrieval, one row per step and split/condition even across resumes), ``embeddings.pt`` (every
utterance or caption, schema in docs/ARCHITECTURE.md) and ``summary.json`` (its ``trained_by``: who finished it).
"""
from __future__ import annotations

import dataclasses
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from s2ilib.training import distributed
from s2ilib.training.checkpoint import load_checkpoint, save_checkpoint
from s2ilib.models.embedding import _embed, _store_table, collate_speech, export_embeddings, spec_augment, specaug_kwargs
from s2ilib.models.encoders import Tokenizer
from s2ilib.models.loading import KINDS, EncoderTrainError, build_model
from s2ilib.core.config import EncoderConfig
from s2ilib.core.io import atomic_write_text, seed_everything
from s2ilib.training.losses import TeacherStudentLoss
from s2ilib.core.results import append_jsonl
from s2ilib.evaluation.retrieval import retrieval_metrics
from s2ilib.core.runkit import check_same_run, session_stamp, trained_by, truncate_jsonl, with_defaults
from s2ilib.core.device import bf16_autocast, resolve_device

VAL_FRACTION = 0.05  # of the training images, held out for validation
VAL_MAX_IMAGES = 50
VAL_MIN_IMAGES = 2
MEGABATCH = 16  # bucketing: sort by length within groups of 16 batches, then shuffle batches
# Keys that may change between a run and its resume (they extend or re-time training).
RESUMABLE_KEYS = {"epochs", "max_steps", "text_epochs", "val_every", "ckpt_every"}


# items: what one epoch iterates over --------------------------------------------------------


@dataclasses.dataclass
class _Items:
    """Training or validation items: speech rows of the store or (image, caption) pairs."""

    image_idx: np.ndarray
    caption_idx: np.ndarray
    rows: np.ndarray  # FeatureStore row (speech) or -1 (text)
    n_frames: np.ndarray  # speech length in frames, or caption length in words
    texts: list[str]

    def __len__(self) -> int:
        return len(self.image_idx)

    def take(self, sel: np.ndarray) -> "_Items":
        return _Items(self.image_idx[sel], self.caption_idx[sel], self.rows[sel], self.n_frames[sel],
                      [self.texts[i] for i in sel])


def _speech_items(dataset: Any) -> _Items:
    """Utterances of seen (training) voices of training-split images."""
    _, table = _store_table(dataset)
    img = table["image_idx"].to_numpy().astype(np.int64)
    split = np.array([dataset.images[i].split for i in img])
    sel = np.flatnonzero((table["condition"].to_numpy() == "seen") & (split == "train"))
    return _Items(img[sel], table["caption_idx"].to_numpy().astype(np.int64)[sel], sel.astype(np.int64),
                  table["n_frames"].to_numpy().astype(np.int64)[sel], [""] * len(sel))


def _text_items(dataset: Any, split: str = "train") -> _Items:
    img, cap, texts = [], [], []
    for i in dataset.split(split):
        for c, t in enumerate(dataset.images[i].captions):
            img.append(i), cap.append(c), texts.append(t)
    n = np.array([len(Tokenizer.split(t)) for t in texts], dtype=np.int64)
    return _Items(np.array(img, dtype=np.int64), np.array(cap, dtype=np.int64), np.full(len(img), -1), n, texts)


def _val_images(dataset: Any, seed: int) -> np.ndarray:
    """A few training images held out for validation (seeded, fixed for a dataset)."""
    train = np.array(dataset.split("train"))
    n = int(np.clip(round(VAL_FRACTION * len(train)), VAL_MIN_IMAGES, VAL_MAX_IMAGES))
    if len(train) <= n:
        raise EncoderTrainError(f"dataset {dataset.name!r}: {len(train)} training images, too few to hold out {n}")
    return np.sort(np.random.default_rng([seed, 7]).choice(train, n, replace=False))


def _split_items(items: _Items, val_images: np.ndarray) -> tuple[_Items, _Items]:
    is_val = np.isin(items.image_idx, val_images)
    return items.take(np.flatnonzero(~is_val)), items.take(np.flatnonzero(is_val))


# batches ------------------------------------------------------------------------------------


def epoch_batches(n_frames: np.ndarray, batch_size: int, seed: int, epoch: int, bucket: bool) -> list[np.ndarray]:
    """Batches of item positions for one epoch, a pure function of ``(seed, epoch)``.

    With ``bucket``: shuffle, sort by length within groups of ``MEGABATCH`` batches (less
    padding), cut into batches, shuffle the batches. Batches of one item are dropped (JEL and
    batch norm need two).
    """
    rng = np.random.default_rng([seed, epoch, 11])
    perm = rng.permutation(len(n_frames))
    batches = []
    group = batch_size * MEGABATCH if bucket else len(perm)
    for s in range(0, len(perm), max(group, 1)):
        chunk = perm[s : s + group]
        if bucket:
            chunk = chunk[np.argsort(n_frames[chunk], kind="stable")]
        batches += [chunk[b : b + batch_size] for b in range(0, len(chunk), batch_size)]
    order = rng.permutation(len(batches)) if bucket else np.arange(len(batches))
    return [batches[i] for i in order if len(batches[i]) >= 2]


# one training step --------------------------------------------------------------------------


class EncoderRun:
    """Everything a step needs: data, model, loss, optimiser (also built by training.loss_balance)."""

    def __init__(self, kind: str, dataset: Any, teacher_feats: torch.Tensor, cfg: Any, seed: int,
                 device: torch.device):
        self.kind, self.dataset, self.cfg, self.seed = kind, dataset, cfg, seed
        self.teacher = torch.as_tensor(teacher_feats).float()
        if self.teacher.dim() != 3 or self.teacher.shape[0] != len(dataset.images):
            raise EncoderTrainError(f"teacher_feats must be (n_images={len(dataset.images)}, views, D), "
                                    f"got {tuple(self.teacher.shape)}")
        self.device = device
        self.store = dataset.speech if kind != "text_ts" else None
        items = _text_items(dataset) if kind == "text_ts" else _speech_items(dataset)
        self.val_images = _val_images(dataset, seed)
        self.train, self.val = _split_items(items, self.val_images)
        if len(self.train) < 2:
            raise EncoderTrainError(f"dataset {dataset.name!r}: only {len(self.train)} training items for {kind}")
        train_classes = sorted({dataset.images[i].class_index for i in dataset.split("train")})
        self.class_of = {int(c): k for k, c in enumerate(train_classes)}  # dataset class -> contiguous id
        self.tokenizer = (Tokenizer.build(t for i in dataset.split("train") for t in dataset.images[i].captions)
                          if kind == "text_ts" else None)
        n_mels = getattr(self.store, "n_mels", 40) if self.store is not None else 40
        # plain ints: the checkpoint must stay a safe (weights_only) file
        self.model_args = dict(out_dim=int(self.teacher.shape[2]), n_mels=int(n_mels), n_classes=len(train_classes),
                               vocab_size=len(self.tokenizer) if self.tokenizer else 0)
        self.model = build_model(kind, cfg, **self.model_args).to(self.device)
        self.ctx = distributed.current(device)  # None: one process; else DDP over the ranks
        self.lead = self.ctx is None or self.ctx.lead  # writes the run folder
        self.ddp = None if self.ctx is None else distributed.wrap(self.model, self.ctx, cfg.batch_size)
        lr = cfg.classifier_lr if kind == "speech_cls" else cfg.lr
        self.opt = torch.optim.Adam(self.model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.StepLR(self.opt, step_size=cfg.lr_step_epochs, gamma=cfg.lr_gamma)
        self.loss_fn = TeacherStudentLoss.from_config(cfg)
        self.n_epochs = (cfg.text_epochs or cfg.epochs) if kind == "text_ts" else cfg.epochs

    def batches(self, epoch: int) -> list[np.ndarray]:
        return epoch_batches(self.train.n_frames, self.cfg.batch_size, self.seed, epoch, bucket=self.kind != "text_ts")

    def inputs(self, items: _Items, sel: np.ndarray, rng: np.random.Generator | None) -> tuple:
        if self.kind == "text_ts":
            tokens, lengths = self.tokenizer.batch([items.texts[i] for i in sel])
            return tokens.to(self.device), lengths
        x, lengths = collate_speech(self.store, items.rows[sel], self.cfg.max_frames, rng)
        if rng is not None:  # training batches only (encoder.specaug_*, off by default)
            x = spec_augment(x, lengths, rng, **specaug_kwargs(self.cfg))
        return x.to(self.device), lengths

    def labels(self, image_idx: np.ndarray) -> torch.Tensor:
        cls = [self.dataset.images[i].class_index for i in image_idx]
        if self.kind == "speech_cls":
            cls = [self.class_of[c] for c in cls]
        return torch.tensor(cls, device=self.device)

    def autocast(self):
        return bf16_autocast(self.cfg.bf16, self.device)

    def forward(self, inputs: tuple) -> torch.Tensor:
        """The batch's outputs; in training under torchrun each rank encodes its rows, all gathered."""
        if self.ddp is None or not self.model.training:
            return self.model(*inputs)
        return distributed.sharded_forward(self.ddp, inputs, self.ctx)

    def loss(self, items: _Items, sel: np.ndarray, rng: np.random.Generator | None, views: np.ndarray):
        """Loss of a batch. ``views``: teacher view of each item's image."""
        inputs = self.inputs(items, sel, rng)
        labels = self.labels(items.image_idx[sel])
        with self.autocast():
            out = self.forward(inputs)
        if self.kind == "speech_cls":
            out = out.float()
            loss = F.cross_entropy(out, labels)
            return loss, {"ce": loss.item(), "acc": (out.argmax(1) == labels).float().mean().item(),
                          "total": loss.item()}
        target = self.teacher[items.image_idx[sel], views].to(self.device)
        return self.loss_fn(out, target, labels)

    def step(self, sel: np.ndarray, step: int) -> dict:
        self.model.train()
        rng = np.random.default_rng([self.seed, step, 13])
        views = rng.integers(0, self.teacher.shape[1], size=len(sel))  # one sampled view per image
        loss, terms = self.loss(self.train, sel, rng, views)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return terms

    @torch.no_grad()
    def validate(self) -> dict:
        """Loss terms (centre view) and retrieval among the held-out training images."""
        if len(self.val) < 2:
            return {}
        self.model.eval()
        bs = self.cfg.batch_size
        sums: dict[str, float] = {}
        embs, n = [], 0
        for s in range(0, len(self.val), bs):
            sel = np.arange(s, min(s + bs, len(self.val)))
            if len(sel) >= 2:  # JEL needs a pair
                _, terms = self.loss(self.val, sel, None, np.zeros(len(sel), dtype=np.int64))
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + v * len(sel)
                n += len(sel)
            with self.autocast():
                embs.append(_embed(self.model, self.kind, self.inputs(self.val, sel, None)).float().cpu())
        out = {f"val_{k}": v / max(n, 1) for k, v in sums.items()}
        if self.kind != "speech_cls":
            gal = self.teacher[self.val_images].mean(dim=1)
            m = retrieval_metrics(torch.cat(embs), self.val.image_idx, gal, self.val_images, ks=(1, 5))
            out.update({f"val_{k}": m[k] for k in ("recall@1", "recall@5", "mrr")})
        return out


# -------------------------------------------------------------------------- run folder bookkeeping


def _resolved_config(kind: str, cfg: Any, seed: int, dataset: Any, teacher_feats: torch.Tensor) -> dict:
    return {"kind": kind, "seed": seed, "dataset": getattr(dataset, "name", ""),
            "teacher_shape": list(teacher_feats.shape), "encoder": dataclasses.asdict(cfg)}


def _check_same_run(path: Path, new: dict) -> None:
    """A run folder may be resumed only with the same configuration (training length aside)."""
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EncoderTrainError(f"{path}: unreadable run config ({exc}); use a new out_dir or delete it") from exc
    if not isinstance(old, dict):
        raise EncoderTrainError(f"{path}: not a run config (a JSON object); use a new out_dir or delete it")
    old = with_defaults(old, "encoder", EncoderConfig)  # keys added since: at their defaults
    check_same_run(path.parent, old, new, ignore={f"encoder.{k}" for k in RESUMABLE_KEYS}, error=EncoderTrainError)


# public API ---------------------------------------------------------------------------------


@dataclasses.dataclass
class _Progress:
    """Where training stands: steps done, sampler position (epoch, batch), seconds spent, sessions."""

    step: int = 0
    epoch: int = 0
    pos: int = 0
    train_seconds: float = 0.0
    killed: bool = False
    sessions: list = dataclasses.field(default_factory=list)  # runkit.session_stamp of each start / resume


def _save(run: EncoderRun, path: Path, p: _Progress, resolved: dict, done: bool = False) -> None:
    extra = {"train_seconds": p.train_seconds, "kind": run.kind, "model_args": run.model_args,
             "tokenizer": run.tokenizer.state_dict() if run.tokenizer else None,
             "class_of": run.class_of, "config": resolved, "sessions": p.sessions}
    save_checkpoint(path, model=run.model, optimizer=run.opt, scheduler=run.sched, step=p.step,
                    epoch=p.epoch, batch_in_epoch=p.pos, done=done, extra=extra)


def _train_loop(run: EncoderRun, p: _Progress, out: Path, resolved: dict, stop_at: int, bar) -> None:
    """Steps until max_steps / the last epoch / ``stop_at``; logs, validates and checkpoints."""
    cfg = run.cfg
    at_cap = lambda: cfg.max_steps > 0 and p.step >= cfg.max_steps
    while not at_cap() and p.epoch < run.n_epochs:
        batches = run.batches(p.epoch)
        while p.pos < len(batches) and not at_cap():
            t0 = time.perf_counter()
            terms = run.step(batches[p.pos], p.step)
            p.train_seconds += time.perf_counter() - t0
            p.step, p.pos = p.step + 1, p.pos + 1
            if run.lead:
                append_jsonl(out / "log.jsonl", {"step": p.step, "epoch": p.epoch, "lr": run.opt.param_groups[0]["lr"],
                                                  "time_s": round(p.train_seconds, 3), **terms})
            bar.update(1)
            bar.set_postfix(loss=f"{terms['total']:.4f}")
            if run.lead and cfg.val_every > 0 and p.step % cfg.val_every == 0:
                append_jsonl(out / "metrics.jsonl", {"step": p.step, "split": "val", **run.validate()})
            if run.lead and cfg.ckpt_every > 0 and p.step % cfg.ckpt_every == 0:
                _save(run, out / "checkpoint.pt", p, resolved)
            if stop_at and p.step >= stop_at:
                p.killed = True
                return
        if at_cap():
            return
        p.epoch, p.pos = p.epoch + 1, 0
        with warnings.catch_warnings():  # after a resume at an epoch end no optimiser step came first
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            run.sched.step()  # StepLR counts epochs


def train_encoder(kind: str, dataset: Any, teacher_feats: torch.Tensor, cfg: Any, out_dir: str | Path,
                  seed: int = 1234, progress: bool = True, stop_at: int = 0, device: str = "auto") -> dict:
    """Train (or resume, or just return) the encoder ``kind`` in ``out_dir``; returns the summary.

    ``teacher_feats``: (n_images, views, D) from :func:`s2ilib.models.teacher.compute_teacher_features`.
    Stops at ``cfg.max_steps`` if > 0, else after the epochs (``cfg.text_epochs`` for text).
    ``stop_at`` > 0 stops after that step like a kill would (no final checkpoint, no export):
    used to test resuming and to time-box a run. A finished run folder returns its summary.
    One writer per folder: a second call on a folder in use fails at once with
    :class:`s2ilib.core.runkit.RunLockedError`. ``device``: ``auto`` | ``cpu`` | ``cuda``
    (:func:`s2ilib.core.device.resolve_device`); a run may resume on another device.
    """
    if kind not in KINDS:
        raise EncoderTrainError(f"unknown encoder kind {kind!r}; choose one of {KINDS}")
    out = Path(out_dir)
    teacher_feats = torch.as_tensor(teacher_feats)
    resolved = _resolved_config(kind, cfg, seed, dataset, teacher_feats)
    with distributed.run_folder(out, device):  # one writer per run folder; temp files of killed writes removed
        return _train_locked(kind, dataset, teacher_feats, cfg, out, seed, progress, stop_at, resolved,
                             resolve_device(device))


def _train_locked(kind: str, dataset: Any, teacher_feats: torch.Tensor, cfg: Any, out: Path, seed: int,
                  progress: bool, stop_at: int, resolved: dict, device: torch.device) -> dict:
    from tqdm.auto import tqdm

    _check_same_run(out / "config.json", resolved)
    if (out / "summary.json").is_file() and (out / "embeddings.pt").is_file():
        done = json.loads((out / "summary.json").read_text())
        if with_defaults(done.get("config"), "encoder", EncoderConfig) == resolved:
            return {**done, "reused": True}  # finished earlier: its trained_by says where
    seed_everything(seed)
    run = EncoderRun(kind, dataset, teacher_feats, cfg, seed, device)
    if run.lead:
        atomic_write_text(out / "config.json", json.dumps(resolved, indent=2, sort_keys=True) + "\n")
    p = _Progress()
    if (out / "checkpoint.pt").is_file():
        st = load_checkpoint(out / "checkpoint.pt", run.model, run.opt, run.sched)
        p = _Progress(st["step"], st["epoch"], st["batch_in_epoch"], st["extra"].get("train_seconds", 0.0),
                      sessions=list(st["extra"].get("sessions", [])))
        if run.lead:
            truncate_jsonl(out / "log.jsonl", p.step), truncate_jsonl(out / "metrics.jsonl", p.step)
    resumed_from = p.step
    p.sessions.append(session_stamp(p.step))
    per_epoch = len(run.batches(0))
    total = cfg.max_steps if cfg.max_steps > 0 else per_epoch * run.n_epochs
    with tqdm(total=total, initial=p.step, desc=kind, unit="step", disable=not (progress and run.lead)) as bar:
        _train_loop(run, p, out, resolved, stop_at, bar)
    summary = {"kind": kind, "steps": p.step, "epoch": p.epoch, "batch_in_epoch": p.pos,
               "resumed_from": resumed_from, "train_seconds": round(p.train_seconds, 2),
               "steps_per_s": round(p.step / p.train_seconds, 3) if p.train_seconds > 0 else None,
               "n_train_items": len(run.train), "n_val_items": len(run.val), "steps_per_epoch": per_epoch,
               "n_params": sum(x.numel() for x in run.model.parameters()), "device": str(run.device),
               "bf16": cfg.bf16, "stopped_early": p.killed}
    if p.killed or not run.lead:
        return summary
    _save(run, out / "checkpoint.pt", p, resolved, done=True)
    summary.update(_final_outputs(run, out, p.step, progress), config=resolved, trained_by=trained_by(p.sessions))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return {**summary, "reused": False}


def _final_outputs(run: EncoderRun, out: Path, step: int, progress: bool) -> dict:
    """Last validation, embeddings.pt and test retrieval per condition (into metrics.jsonl).

    The rows of the final step are written once: a validation the loop logged at this step, or
    the rows of an earlier attempt killed during the export, are replaced.
    """
    truncate_jsonl(out / "metrics.jsonl", step, inclusive=False)
    val = run.validate()
    append_jsonl(out / "metrics.jsonl", {"step": step, "split": "val", **val})
    emb = export_embeddings(run.model, run.kind, run.dataset, out / "embeddings.pt", tokenizer=run.tokenizer,
                            batch_size=run.cfg.batch_size, bf16=run.cfg.bf16, progress=progress)
    # speech_cls embeddings are not in the teacher's space: retrieval against it means nothing
    test = evaluate_retrieval(emb, run.dataset, run.teacher) if run.kind != "speech_cls" else {}
    for cond, m in test.items():
        append_jsonl(out / "metrics.jsonl", {"step": step, "split": "test", "condition": cond, **m})
    return {"val": val, "test": test}


def evaluate_retrieval(emb: dict, dataset: Any, teacher_feats: torch.Tensor) -> dict:
    """Retrieval metrics on the test images per condition; gallery = view-averaged teacher features."""
    test = np.array(dataset.split("test"))
    if len(test) == 0:
        return {}
    gallery = torch.as_tensor(teacher_feats)[test].float().mean(dim=1)
    gal_cls = [dataset.images[i].class_index for i in test]
    img = emb["image_idx"].numpy()
    cond = np.array(emb["condition"])
    is_test = np.isin(img, test)
    out = {}
    for c in sorted({str(c) for c in cond[is_test]}):
        sel = np.flatnonzero(is_test & (cond == c))
        out[c] = retrieval_metrics(emb["emb"][sel], img[sel], gallery, test,
                                   query_class=[dataset.images[i].class_index for i in img[sel]],
                                   gallery_class=gal_cls)
    return out


