"""Training checkpoints of a model + optimiser + scheduler that resume exactly (encoder trainer).

A thin layer over :mod:`s2ilib.core.runkit` (kept for the names other code imports): atomic write,
safe read (``weights_only=True``: tensors and plain types only; a file holding anything else is
refused with :class:`CheckpointError` naming it, never run), RNG states in safe types.
``position`` is the sampler position (epoch, batch within the epoch), so a resumed run continues
with the next batch of the same deterministic data order.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from s2ilib.core.runkit import CheckpointError, safe_load, set_rng_state
from s2ilib.core.runkit import save_checkpoint as _save_state

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint"]

_KEYS = ("model", "step", "epoch", "batch_in_epoch")


def save_checkpoint(path: str | Path, *, model: torch.nn.Module, optimizer=None, scheduler=None,
                    step: int = 0, epoch: int = 0, batch_in_epoch: int = 0, done: bool = False,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write everything needed to continue training at ``step`` (atomically)."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "step": step,
        "epoch": epoch,
        "batch_in_epoch": batch_in_epoch,
        "done": done,
        "extra": extra or {},
    }
    return _save_state(path, state)


def load_checkpoint(path: str | Path, model: torch.nn.Module | None = None, optimizer=None, scheduler=None,
                    restore_rng: bool = True, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint into the given objects; returns the whole checkpoint dict."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint file")
    state = safe_load(path, CheckpointError, "encoder checkpoint", map_location)
    if not isinstance(state, dict) or any(k not in state for k in _KEYS):
        raise CheckpointError(f"{path}: not an encoder checkpoint (expected keys {list(_KEYS)})")
    try:
        if model is not None:
            model.load_state_dict(state["model"])
        if optimizer is not None and state.get("optimizer") is not None:
            optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: weights do not fit this model ({exc})") from exc
    if restore_rng and "rng" in state:
        try:
            set_rng_state(state["rng"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"{path}: malformed RNG state ({exc})") from exc
    return state
