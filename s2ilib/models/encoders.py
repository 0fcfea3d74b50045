"""Speech, text and classifier-based encoders (paper §III-B; authors' ``CNNRNN``).

:class:`SpeechEncoder` follows the authors' ``CNNRNN``: a normalisation of the input along
frequency, a conv stack whose first kernel spans all mel bands (collapsing frequency) followed by
1-D convolutions along time with a total time reduction of 64x, a bidirectional RNN over the
shortened sequence and a mean over its outputs. Two deliberate differences:

* The mean is over VALID frames only (``lengths = n_frames // 64``, at least 1). The authors'
  code averages over the padded frames too, so an utterance's embedding depended on how much
  padding its batch had.
* Every normalisation uses the statistics of valid frames only and padded frames are zeroed
  after every block, so in eval mode an embedding does not change when more padding is appended
  (tested). The input normalisation is per mel band (``BatchNorm1d(n_mels)``, "normalise along
  frequency" in the paper) where the authors' code used one scalar ``BatchNorm2d(1)``.

The conv stack is written with ``Conv1d`` over (B, n_mels, T): a ``Conv2d`` whose kernel is
``(n_mels, 1)`` on a one-channel image is the same operator as a kernel-1 ``Conv1d`` over mel bands.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

# Authors' conv stack after the frequency-collapsing layer: (kernel, stride) per conv layer, with
# "pool" a max-pool (kernel 3, stride 2). Strides multiply to 64.
_TIME_LAYERS: list = [(3, 1), "pool", (17, 2), (13, 2), (3, 1), (9, 2), "pool", (3, 1), (5, 2)]
TIME_REDUCTION = 64


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm over (B, C, T) whose training statistics ignore padded frames (``mask`` 0).

    Written as sums over the zero-masked input (sum x, sum x^2, accumulated in float32) and one
    affine op: fused enough to cost little more than ``nn.BatchNorm1d`` on a CPU. Padded frames
    come out as ``bias``; the caller masks them again after the activation.
    """

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        m = mask[:, None, :].to(x.dtype)
        x = x * m
        if self.training:
            n = mask.sum().clamp_min(2).float()
            mean = x.sum(dim=(0, 2), dtype=torch.float32) / n
            var = ((x * x).sum(dim=(0, 2), dtype=torch.float32) / n - mean * mean).clamp_min(0)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_((var * n / (n - 1)).detach(), self.momentum)
                self.num_batches_tracked += 1
        else:
            mean, var = self.running_mean, self.running_var
        scale = self.weight * torch.rsqrt(var + self.eps)
        shift = self.bias - mean * scale
        return torch.addcmul(shift.to(x.dtype)[None, :, None], x, scale.to(x.dtype)[None, :, None])


def _frames_mask(lengths: torch.Tensor, t: int) -> torch.Tensor:
    """(B,) valid lengths -> (B, t) bool mask."""
    return torch.arange(t, device=lengths.device)[None, :] < lengths[:, None]


class _ConvBlock(nn.Module):
    """Conv1d (no bias) + masked BN + ReLU; padded frames are zeroed on the way out."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=False)
        self.bn = MaskedBatchNorm1d(c_out)
        self.stride = stride

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        x = self.conv(x)
        lengths = -(-lengths // self.stride)  # ceil: an odd kernel with padding k//2 gives ceil(T/s)
        mask = _frames_mask(lengths, x.shape[-1])
        x = F.relu(self.bn(x, mask))
        return x * mask[:, None, :].to(x.dtype), lengths


def _make_rnn(rnn_type: str, d_in: int, hidden: int) -> nn.Module:
    kinds = {"gru": nn.GRU, "lstm": nn.LSTM}
    if rnn_type not in kinds:
        raise ValueError(f"unknown rnn_type {rnn_type!r} (choose 'gru' or 'lstm')")
    return kinds[rnn_type](d_in, hidden, batch_first=True, bidirectional=True)


def _masked_rnn_mean(rnn: nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Bidirectional RNN over packed (B, T, C) then mean over each row's valid steps -> (B, 2H).

    The input is cast to float32 (a packed RNN rejects bf16 input next to float32 weights);
    under CPU autocast the RNN's matrix products still run in bf16 and its output is float32.
    """
    packed = pack_padded_sequence(x.float(), lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, _ = rnn(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])  # zeros past length
    out = out.float()
    return out.sum(dim=1) / lengths.to(out.device, out.dtype)[:, None]


class SpeechEncoder(nn.Module):
    """E_s: (B, n_mels, T) log-mel, 10 ms frames, + (B,) frame counts -> (B, out_dim) embedding.

    ``cnn_channels`` gives the 8 conv widths (authors: 64, 64, 128, 256, 256, 512, 512, 1024).
    Utterances shorter than 64 frames still get one RNN step (length clamped to 1).
    """

    def __init__(self, cnn_channels: Iterable[int] = (64, 64, 128, 256, 256, 512, 512, 1024),
                 rnn_type: str = "lstm", rnn_hidden: int = 512, out_dim: int = 1024, n_mels: int = 40):
        super().__init__()
        chans = list(cnn_channels)
        if len(chans) != 8:
            raise ValueError(f"SpeechEncoder: cnn_channels needs 8 widths (one per conv layer), got {chans}")
        self.n_mels, self.out_dim = n_mels, out_dim
        self.input_norm = MaskedBatchNorm1d(n_mels)
        blocks: list[nn.Module] = [_ConvBlock(n_mels, chans[0], 1, 1)]  # the (n_mels, 1) kernel
        c_in, k = chans[0], 1
        for layer in _TIME_LAYERS:
            if layer == "pool":
                blocks.append(nn.MaxPool1d(3, 2, padding=1))
            else:
                kernel, stride = layer
                blocks.append(_ConvBlock(c_in, chans[k], kernel, stride))
                c_in, k = chans[k], k + 1
        self.blocks = nn.ModuleList(blocks)
        self.rnn = _make_rnn(rnn_type, c_in, rnn_hidden)
        self.proj = nn.Linear(2 * rnn_hidden, out_dim) if 2 * rnn_hidden != out_dim else nn.Identity()

    def forward(self, x: torch.Tensor, n_frames: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != self.n_mels:
            raise ValueError(f"SpeechEncoder: expected (B, {self.n_mels}, T) features, got {tuple(x.shape)}")
        n_frames = n_frames.to(x.device).long().clamp(max=x.shape[-1])
        mask = _frames_mask(n_frames, x.shape[-1])
        h = self.input_norm(x, mask) * mask[:, None, :]  # padding becomes 0 = the band mean
        lengths = n_frames
        for block in self.blocks:
            if isinstance(block, nn.MaxPool1d):
                # values are post-ReLU (>= 0), so the zeros of padding never win a max; the window
                # at the end still spills a valid value one step past the new length: mask it
                lengths = -(-lengths // 2)
                h = block(h) * _frames_mask(lengths, -(-h.shape[-1] // 2))[:, None, :].to(h.dtype)
            else:
                h, lengths = block(h, lengths)
        rnn_len = (n_frames // TIME_REDUCTION).clamp(min=1, max=h.shape[-1])
        pooled = _masked_rnn_mean(self.rnn, h.transpose(1, 2), rnn_len)
        return self.proj(pooled)


class ClassifierEncoder(nn.Module):
    """Classifier-based speech encoder (paper's baseline): SpeechEncoder + Linear over classes.

    ``forward`` returns class logits (B, n_classes); ``embed`` the SpeechEncoder output (B, out_dim).
    """

    def __init__(self, n_classes: int, **speech_kwargs):
        super().__init__()
        self.encoder = SpeechEncoder(**speech_kwargs)
        self.classifier = nn.Linear(self.encoder.out_dim, n_classes)

    def embed(self, x: torch.Tensor, n_frames: torch.Tensor) -> torch.Tensor:
        return self.encoder(x, n_frames)

    def forward(self, x: torch.Tensor, n_frames: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x, n_frames))


class Tokenizer:
    """Word-level vocabulary built from training captions. Id 0 = padding, 1 = unknown word."""

    PAD, UNK = 0, 1
    _WORD = re.compile(r"[a-z0-9']+")

    def __init__(self, words: list[str]):
        self.words = ["<pad>", "<unk>"] + [w for w in words if w not in ("<pad>", "<unk>")]
        self.ids = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def split(cls, text: str) -> list[str]:
        return cls._WORD.findall(text.lower())

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 1) -> "Tokenizer":
        counts = Counter(w for t in texts for w in cls.split(t))
        return cls(sorted(w for w, c in counts.items() if c >= min_count))

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str) -> list[int]:
        """Word ids; an empty caption gives [UNK] so every sequence has length >= 1."""
        return [self.ids.get(w, self.UNK) for w in self.split(text)] or [self.UNK]

    def batch(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """-> tokens (B, L) long padded with 0, lengths (B,)."""
        seqs = [self.encode(t) for t in texts]
        lengths = torch.tensor([len(s) for s in seqs])
        tokens = torch.zeros(len(seqs), int(lengths.max()), dtype=torch.long)
        for i, s in enumerate(seqs):
            tokens[i, : len(s)] = torch.tensor(s)
        return tokens, lengths

    def state_dict(self) -> dict:
        return {"words": self.words[2:]}

    @classmethod
    def from_state_dict(cls, state: dict) -> "Tokenizer":
        return cls(list(state["words"]))


class TextEncoder(nn.Module):
    """Word embedding + bidirectional RNN, mean over valid tokens, projected to ``out_dim``.

    ``forward(tokens (B, L) long, lengths (B,)) -> (B, out_dim)``.
    """

    def __init__(self, vocab_size: int, out_dim: int = 1024, rnn_type: str = "lstm",
                 rnn_hidden: int = 512, emb_dim: int = 300):
        super().__init__()
        self.out_dim = out_dim
        self.embedding = nn.Embedding(vocab_size, emb_dim, padding_idx=Tokenizer.PAD)
        self.rnn = _make_rnn(rnn_type, emb_dim, rnn_hidden)
        self.proj = nn.Linear(2 * rnn_hidden, out_dim) if 2 * rnn_hidden != out_dim else nn.Identity()

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths = lengths.long().clamp(min=1, max=tokens.shape[1])
        return self.proj(_masked_rnn_mean(self.rnn, self.embedding(tokens), lengths))
