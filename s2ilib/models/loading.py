"""Loading trained models for inference: encoders from their run folder, the EMA generator, and
generating images from embeddings. Trainers import from here, never the other way round."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from s2ilib.core.runkit import CheckpointError
from s2ilib.core.runkit import load_checkpoint as _load_state
from s2ilib.models.encoders import ClassifierEncoder, SpeechEncoder, TextEncoder, Tokenizer
from s2ilib.models.gan import StackGenerator, make_generator


GENERATOR_EMA = "generator_ema.pt"


class GanCheckpointError(ValueError):
    """A GAN checkpoint is missing, malformed or belongs to another configuration / data."""


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255]."""
    return ((x.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


def load_generator(path: str | Path, device: str = "cpu") -> StackGenerator:
    """Rebuild the EMA generator saved by :func:`train_gan` (``generator_ema.pt``), in eval mode."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no generator checkpoint (train_gan writes generator_ema.pt)")
    blob = _load_state(path, GanCheckpointError, ("state_dict", "kwargs"), map_location=device,
                           what="generator checkpoint")
    try:
        G = make_generator(blob["kwargs"])
        G.load_state_dict(blob["state_dict"])
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise GanCheckpointError(f"{path}: generator weights do not fit its recorded architecture "
                                 f"({type(exc).__name__}: {exc})") from exc
    G.train_config = dict(blob.get("config") or {})  # the GanConfig it was trained with
    return G.to(device).eval().requires_grad_(False)


@torch.no_grad()
def generate(generator: StackGenerator, cond: torch.Tensor, n: int | None = None, seed: int = 0,
             all_branches: bool = False, batch_size: int = 64, use_mean: bool = False):
    """Images G(z, cond) as uint8, deterministic under ``seed``.

    cond: (D,) -> n images (default 1) of that condition with different noise; (B, D) -> one image
    per row (n must be None or B). Returns uint8 (n, 3, S, S) of the largest branch, or the list
    over branches when ``all_branches``. ``use_mean`` uses the CA mean instead of a CA sample.
    """
    cond = torch.as_tensor(cond).float()
    if cond.ndim == 1:
        cond = cond[None].expand(n or 1, -1)
    elif cond.ndim != 2 or (n is not None and n != len(cond)):
        raise ValueError(f"cond must be (D,) or (B, D) with n None or B, got {tuple(cond.shape)} and n={n}")
    if cond.shape[1] != generator.cond_dim:
        raise ValueError(f"cond has dimension {cond.shape[1]}, the generator expects {generator.cond_dim}")
    n = len(cond)
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, generator.z_dim, generator=g)
    eps = torch.zeros(n, generator.ca_dim) if use_mean else torch.randn(n, generator.ca_dim, generator=g)
    dev = next(generator.parameters()).device
    was_training = generator.training
    generator.eval()
    outs: list[list[torch.Tensor]] = []
    try:
        for i in range(0, n, batch_size):
            imgs, _, _ = generator(z[i: i + batch_size].to(dev), cond[i: i + batch_size].to(dev),
                                   eps=eps[i: i + batch_size].to(dev))
            outs.append([to_uint8(x).cpu() for x in imgs])
    finally:
        generator.train(was_training)
    branches = [torch.cat([o[k] for o in outs]) for k in range(len(outs[0]))]
    return branches if all_branches else branches[-1]


KINDS = ("speech_ts", "speech_cls", "text_ts")


TEXT_EMB_DIM = 300


class EncoderTrainError(ValueError):
    """Bad trainer inputs or a run folder that belongs to another configuration."""


def build_model(kind: str, cfg: Any, out_dim: int, n_mels: int = 40, n_classes: int = 0,
                vocab_size: int = 0) -> torch.nn.Module:
    """The encoder of ``kind`` with the sizes of ``cfg`` (an EncoderConfig)."""
    speech = dict(cnn_channels=cfg.cnn_channels, rnn_type=cfg.rnn_type, rnn_hidden=cfg.rnn_hidden,
                  out_dim=out_dim, n_mels=n_mels)
    if kind == "speech_ts":
        return SpeechEncoder(**speech)
    if kind == "speech_cls":
        return ClassifierEncoder(n_classes, **speech)
    if kind == "text_ts":
        return TextEncoder(vocab_size, out_dim=out_dim, rnn_type=cfg.rnn_type, rnn_hidden=cfg.rnn_hidden,
                           emb_dim=TEXT_EMB_DIM)
    raise EncoderTrainError(f"unknown encoder kind {kind!r}; choose one of {KINDS}")


def load_trained_encoder(out_dir: str | Path, map_location: str = "cpu"):
    """Rebuild a trained encoder from its run folder -> (model in eval mode, kind, tokenizer or None)."""
    from s2ilib.core.config import EncoderConfig

    path = Path(out_dir) / "checkpoint.pt"
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint file")
    st = _load_state(path, CheckpointError, ("model", "extra"), map_location=map_location, what="encoder checkpoint")
    try:
        ex = st["extra"]
        cfg = EncoderConfig(**ex["config"]["encoder"])
        model = build_model(ex["kind"], cfg, **ex["model_args"])
        model.load_state_dict(st["model"])
        tok = Tokenizer.from_state_dict(ex["tokenizer"]) if ex.get("tokenizer") else None
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a trained-encoder checkpoint ({type(exc).__name__}: {exc})") from exc
    return model.eval(), ex["kind"], tok
