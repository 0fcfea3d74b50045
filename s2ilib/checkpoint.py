"""Training checkpoints that resume exactly: model, optimiser, scheduler, counters, RNG states.

Written atomically (:func:`s2ilib.io.torch_save_atomic`): a kill during the write keeps the
previous checkpoint. ``position`` is the sampler position (epoch, batch within the epoch), so a
resumed run continues with the next batch of the same deterministic data order.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from s2ilib.io import torch_save_atomic


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or does not match the model being resumed."""


def rng_states() -> dict[str, Any]:
    """States of Python's, NumPy's and torch's (CPU and CUDA) global generators."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_states(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
        "rng": rng_states(),
        "extra": extra or {},
    }
    return torch_save_atomic(state, path)


def load_checkpoint(path: str | Path, model: torch.nn.Module | None = None, optimizer=None, scheduler=None,
                    restore_rng: bool = True, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint into the given objects; returns the whole checkpoint dict."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint file")
    try:
        # our own files hold RNG states (numpy arrays, tuples): not loadable with weights_only
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # a foreign or corrupt file
        raise CheckpointError(f"{path}: cannot read checkpoint ({exc})") from exc
    if model is not None:
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: model weights do not fit this model ({exc})") from exc
    if optimizer is not None and state.get("optimizer") is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    if restore_rng and "rng" in state:
        set_rng_states(state["rng"])
    return state
