"""Embeddings of a trained encoder: every utterance or caption of a dataset, exported and read back."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from s2ilib.core.io import torch_save_atomic
from s2ilib.models.encoders import Tokenizer
from s2ilib.models.loading import EncoderTrainError
from s2ilib.core.device import bf16_autocast


def _store_table(dataset: Any):
    store = dataset.speech
    if store is None:
        raise EncoderTrainError(f"dataset {dataset.name!r} ({dataset.root}) has no speech feature store")
    return store, store.index


def collate_speech(store: Any, rows: np.ndarray, max_frames: int = 0,
                   rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Store rows -> features (B, n_mels, T) zero-padded, lengths (B,).

    Utterances longer than ``max_frames`` are cropped: at a random offset with ``rng``
    (training), from the start without.
    """
    feats = [store.get(int(r)) for r in rows]
    out = []
    for f in feats:
        n = f.shape[1]
        if max_frames and n > max_frames:
            off = int(rng.integers(0, n - max_frames + 1)) if rng is not None else 0
            f = f[:, off : off + max_frames]
        out.append(torch.from_numpy(np.ascontiguousarray(f)))
    lengths = torch.tensor([f.shape[1] for f in out])
    x = torch.zeros(len(out), out[0].shape[0], int(lengths.max()))
    for i, f in enumerate(out):
        x[i, :, : f.shape[1]] = f
    return x, lengths


def spec_augment(x: torch.Tensor, lengths: torch.Tensor, rng: np.random.Generator, freq_masks: int = 0,
                 freq_width: int = 8, time_masks: int = 0, time_width: int = 40) -> torch.Tensor:
    """SpecAugment (Park et al. 2019) of a training batch: features (B, n_mels, T) -> same shape.

    Each utterance gets ``freq_masks`` bands of up to ``freq_width`` mel bins and ``time_masks``
    spans of up to ``time_width`` frames (inside its own length), each width drawn uniformly from
    0..max. Masked cells take the utterance's mean of their band over its valid frames, so a mask
    removes information without adding a value the features never hold. Draws come from ``rng``
    (the step's seeded generator): a resumed run masks as an uninterrupted one.
    """
    if freq_masks < 0 or time_masks < 0 or freq_width < 0 or time_width < 0:
        raise ValueError(f"spec_augment: mask counts and widths must be >= 0, got {freq_masks}, {freq_width}, "
                         f"{time_masks}, {time_width}")
    if not (freq_masks and freq_width) and not (time_masks and time_width):
        return x
    x = x.clone()
    n_mels = x.shape[1]
    for i in range(x.shape[0]):
        n = int(lengths[i])
        fill = x[i, :, :n].mean(dim=1, keepdim=True)  # (n_mels, 1)
        for _ in range(freq_masks):
            w = int(rng.integers(0, min(freq_width, n_mels) + 1))
            f0 = int(rng.integers(0, n_mels - w + 1))
            x[i, f0:f0 + w, :n] = fill[f0:f0 + w]
        for _ in range(time_masks):
            w = int(rng.integers(0, min(time_width, n) + 1))
            t0 = int(rng.integers(0, n - w + 1))
            x[i, :, t0:t0 + w] = fill
    return x


def specaug_kwargs(cfg: Any) -> dict[str, int]:
    """:func:`spec_augment`'s mask counts and widths from an EncoderConfig's ``specaug_*`` keys."""
    return dict(freq_masks=cfg.specaug_freq_masks, freq_width=cfg.specaug_freq_width,
                time_masks=cfg.specaug_time_masks, time_width=cfg.specaug_time_width)


def _embed(model: torch.nn.Module, kind: str, inputs: tuple) -> torch.Tensor:
    return model.embed(*inputs) if kind == "speech_cls" else model(*inputs)


@torch.no_grad()
def export_embeddings(model: torch.nn.Module, kind: str, dataset: Any, path: str | Path | None = None,
                      tokenizer: Tokenizer | None = None, batch_size: int = 64, bf16: bool = False,
                      max_frames: int = 0, progress: bool = True) -> dict:
    """Embeddings of EVERY utterance of the dataset's store (speech kinds) or every caption (text).

    Returns (and saves atomically to ``path``) ``{"emb" (N, D), "image_idx" (N,), "caption_idx" (N,),
    "condition" list[str], "utt_id" list[str], "encoder": kind, "dim": D}``. Speech rows follow the
    store's row order; captions follow (image, caption) order. Utterances are not cropped unless
    ``max_frames`` > 0.
    """
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    model.eval()
    if kind == "text_ts":
        if tokenizer is None:
            raise EncoderTrainError("export_embeddings: text_ts needs the tokenizer of the trained encoder")
        items = [(i, c, t) for i, rec in enumerate(dataset.images) for c, t in enumerate(rec.captions)]
        meta = {"image_idx": [i for i, _, _ in items], "caption_idx": [c for _, c, _ in items],
                "condition": ["text"] * len(items),
                "utt_id": [f"{dataset.images[i].key}#{c}" for i, c, _ in items]}
        lengths = np.array([len(Tokenizer.split(t)) for _, _, t in items])
    else:
        store, table = _store_table(dataset)
        meta = {"image_idx": table["image_idx"].astype(int).tolist(),
                "caption_idx": table["caption_idx"].astype(int).tolist(),
                "condition": table["condition"].astype(str).tolist(), "utt_id": table["utt_id"].astype(str).tolist()}
        lengths = table["n_frames"].to_numpy()
    order = np.argsort(lengths, kind="stable")  # similar lengths together: little padding
    dim = int(model.out_dim if hasattr(model, "out_dim") else model.encoder.out_dim)
    emb = torch.zeros(len(order), dim)
    for s in tqdm(range(0, len(order), batch_size), desc=f"embed {kind}", disable=not progress):
        sel = order[s : s + batch_size]
        if kind == "text_ts":
            tokens, lens = tokenizer.batch([items[i][2] for i in sel])
            inputs = (tokens.to(device), lens)
        else:
            x, lens = collate_speech(store, sel, max_frames, None)
            inputs = (x.to(device), lens)
        with bf16_autocast(bf16, device):
            emb[torch.from_numpy(sel)] = _embed(model, kind, inputs).float().cpu()
    result = {"emb": emb, "image_idx": torch.tensor(meta["image_idx"], dtype=torch.long),
              "caption_idx": torch.tensor(meta["caption_idx"], dtype=torch.long), "condition": meta["condition"],
              "utt_id": meta["utt_id"], "encoder": kind, "dim": dim}
    if path is not None:
        torch_save_atomic(result, path)
    return result


EMBEDDING_KEYS = ("emb", "image_idx", "caption_idx", "condition", "utt_id", "encoder", "dim")


class EmbeddingsError(ValueError):
    """An ``embeddings.pt`` is unreadable, unsafe (not plain tensors and types) or malformed."""


def load_embeddings(encoder_dir: str | Path) -> dict[str, Any]:
    """``embeddings.pt`` of a trained encoder run folder (schema in docs/ARCHITECTURE.md).

    Read as a safe weights file: one holding anything but tensors and plain types is refused with
    :class:`EmbeddingsError` naming it (never run).
    """
    import torch

    from s2ilib.core.runkit import load_checkpoint

    path = Path(encoder_dir) / "embeddings.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: encoder {Path(encoder_dir).name!r} not trained; run notebook 02 at this preset")
    emb = load_checkpoint(path, EmbeddingsError, EMBEDDING_KEYS, what="embeddings file")
    if not isinstance(emb["emb"], torch.Tensor) or emb["emb"].ndim != 2 or len(emb["image_idx"]) != len(emb["emb"]):
        raise EmbeddingsError(f"{path}: malformed embeddings (emb must be (N, D) with one image_idx per row)")
    return emb
