"""Data-parallel training over torchrun ranks (PyTorch DistributedDataParallel) for both trainers.

Launch: ``torchrun --nproc-per-node N -m s2ilib.cli train gan|encoder ...`` (see :mod:`s2ilib.cli`
and the README). Without torchrun (no ``WORLD_SIZE`` > 1) nothing here runs and the trainers take
their single-process path unchanged. Semantics of a run on W ranks:

* **Batch**: the config's ``batch_size`` stays the GLOBAL batch; each rank takes
  ``batch_size / W`` rows (an error if W does not divide it). Every rank makes the global step's
  random draws with the same seeded generators as a single process (data order, wrong images,
  flips, z, eps, DiffAugment offsets, crops, teacher views) and keeps its own contiguous rows, so
  the union of the ranks' batches is the single-process batch.
* **Learning rate** unchanged: DDP averages the gradients; GAN losses are means over equal
  shards, so the average is the gradient of the global batch's loss. The encoder's losses compare
  the items of a batch with each other (JEL), so every rank gathers all outputs (autograd
  ``all_gather``) and computes the global batch's loss: again the single-process gradient.
  An encoder batch (an epoch's last, say) of fewer items than ranks is run whole on every rank.
* **Batch norm** statistics are those of the global batch (:class:`GlobalBatchNorm`: the sums are
  all-reduced, with autograd), so a W-rank step equals the single-process step up to float
  rounding. ``torch.nn.SyncBatchNorm`` is not used: in torch 2.14 it refuses CPU tensors, and it
  does not know the encoder's masked batch norm.
* **Checkpoints**: rank 0 writes every file (atomic, as a single process would); every rank
  reads the checkpoint when resuming. The saved state is the global one (weights, optimisers, step,
  the draws are functions of the seed and the step), so a run resumes on any number of ranks,
  one process included. The EMA generator is updated from identical weights and buffers on
  every rank, so it is the same on all of them (tested).
* Backend: gloo on the CPU, NCCL on CUDA (one GPU per rank, ``LOCAL_RANK``); the process group
  is initialised from torchrun's environment variables.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn

from s2ilib.core.config import ConfigError
from s2ilib.core.device import resolve_device
from s2ilib.core.runkit import writer
from s2ilib.models.encoders import MaskedBatchNorm1d


class DistributedConfigError(ConfigError):
    """A run that cannot be split over the ranks as asked (e.g. a batch W does not divide)."""


@dataclasses.dataclass(frozen=True)
class Context:
    """This process's place in the group: rank in [0, world), world size, its device."""

    rank: int
    world: int
    device: torch.device

    @property
    def lead(self) -> bool:
        """Rank 0: the only writer of run-folder files."""
        return self.rank == 0

    def rows(self, n: int) -> slice:
        """This rank's contiguous rows of a global batch of ``n`` (W must divide ``n``)."""
        if n % self.world:
            raise DistributedConfigError(f"global batch {n} is not divisible by {self.world} ranks; "
                                         "choose a batch_size that the number of ranks divides")
        b = n // self.world
        return slice(self.rank * b, (self.rank + 1) * b)

    def counts(self, n: int) -> list[int]:
        """Items per rank of an encoder batch of ``n``: as even as possible, first ranks larger."""
        return [n // self.world + (r < n % self.world) for r in range(self.world)]


def init_from_env(device: str = "auto") -> Context | None:
    """Join torchrun's process group (``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR`` ...) -> Context.

    None when not launched by torchrun with more than one process (the single-process path).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    dev = resolve_device(device)
    if not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        # Rank 0 exports an encoder's embeddings while the others wait at a barrier: a long timeout.
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=timedelta(hours=1))
    return current(device)


def current(device: str | torch.device = "auto") -> Context | None:
    """The active group's Context, or None without one (or with a single rank)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return None
    dev = resolve_device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return Context(dist.get_rank(), dist.get_world_size(), dev)


def is_lead(device: str | torch.device = "auto") -> bool:
    """True in the process that writes run folders: rank 0, or the only process."""
    ctx = current(device)
    return ctx is None or ctx.lead


@contextlib.contextmanager
def run_folder(out: str | Path, device: str | torch.device = "auto") -> Iterator[None]:
    """The trainers' hold on their run folder: the writer lock (:func:`s2ilib.core.runkit.writer`)
    in the writing process; under torchrun the ranks also leave together (a barrier on success),
    so none starts a next call while rank 0 still writes the last checkpoint."""
    ctx = current(device)
    with writer(Path(out)) if ctx is None or ctx.lead else contextlib.nullcontext():
        yield
    if ctx is not None:
        dist.barrier()


def wrap(module: nn.Module, ctx: Context, batch_size: int | None = None) -> nn.parallel.DistributedDataParallel:
    """DDP around ``module`` (its batch norms made global first; same parameters, same state keys).

    ``batch_size``: the global batch, checked to split evenly over the ranks."""
    if batch_size is not None:
        ctx.rows(batch_size)
    globalise_batch_norm(module)
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


# ----------------------------------------------------------------------------- batch norm


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; backward: the sum of every rank's gradient (each rank's loss uses the sum)."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        dist.all_reduce(t)
        return t

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        g = g.clone()
        dist.all_reduce(g)
        return g


class _AllGather(torch.autograd.Function):
    """(n, ...) per rank -> (world * n, ...) in rank order; backward: this rank's rows of the summed
    gradients of every rank's copy."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, t.contiguous())
        ctx.rows = slice(dist.get_rank() * len(t), (dist.get_rank() + 1) * len(t))
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        g = g.contiguous().clone()
        dist.all_reduce(g)
        return g[ctx.rows]


def _all_reduce(t: torch.Tensor) -> torch.Tensor:
    """Sum over ranks with autograd (torch.distributed.nn.functional is deprecated in torch 2.14)."""
    return _AllReduceSum.apply(t)


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm1d / 2d whose training statistics are over the global batch (all ranks).

    One all-reduce of (sum x, sum x^2, count) per call, in float32; eval mode is plain batch norm.
    Running variance uses the unbiased global variance, as ``nn.BatchNorm``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not dist.is_initialized():
            return super().forward(x)
        c, dims = x.shape[1], [0, *range(2, x.dim())]
        xf = x.float()
        stats = _all_reduce(torch.cat([xf.sum(dims), (xf * xf).sum(dims), xf.new_tensor([x.numel() / c])]))
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0)
        with torch.no_grad():
            self.running_mean.lerp_(mean.detach(), self.momentum)
            self.running_var.lerp_((var * n / (n - 1).clamp_min(1)).detach(), self.momentum)
            self.num_batches_tracked += 1
        scale = torch.rsqrt(var + self.eps) * (self.weight if self.weight is not None else 1)
        shift = (self.bias if self.bias is not None else 0) - mean * scale
        shape = [1, c] + [1] * (x.dim() - 2)
        return (xf * scale.view(shape) + shift.view(shape)).to(x.dtype)


class GlobalMaskedBatchNorm1d(MaskedBatchNorm1d):
    """:class:`MaskedBatchNorm1d` with the masked sums all-reduced over the ranks."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if not self.training or not dist.is_initialized():
            return super().forward(x, mask)
        m = mask[:, None, :].to(x.dtype)
        x = x * m
        c = x.shape[1]
        stats = _all_reduce(torch.cat([x.sum(dim=(0, 2), dtype=torch.float32),
                                       (x * x).sum(dim=(0, 2), dtype=torch.float32), mask.sum().float()[None]]))
        n = stats[-1].clamp_min(2)
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0)
        with torch.no_grad():
            self.running_mean.lerp_(mean.detach(), self.momentum)
            self.running_var.lerp_((var * n / (n - 1)).detach(), self.momentum)
            self.num_batches_tracked += 1
        scale = self.weight * torch.rsqrt(var + self.eps)
        shift = self.bias - mean * scale
        return torch.addcmul(shift.to(x.dtype)[None, :, None], x, scale.to(x.dtype)[None, :, None])


class _GlobalBatchNorm1d(GlobalBatchNorm, nn.BatchNorm1d):
    pass


class _GlobalBatchNorm2d(GlobalBatchNorm, nn.BatchNorm2d):
    pass


_GLOBAL = {MaskedBatchNorm1d: GlobalMaskedBatchNorm1d, nn.BatchNorm1d: _GlobalBatchNorm1d,
           nn.BatchNorm2d: _GlobalBatchNorm2d}


def globalise_batch_norm(module: nn.Module) -> nn.Module:
    """Make every batch norm of ``module`` global, in place.

    The class of each layer is swapped, so its parameters stay the objects the optimisers hold and
    the state-dict keys do not change (checkpoints load into single-process models)."""
    for m in module.modules():
        if type(m) in _GLOBAL:
            if m.momentum is None:
                raise DistributedConfigError("batch norm with momentum=None is not supported across ranks")
            m.__class__ = _GLOBAL[type(m)]
    return module


# ----------------------------------------------------------------------------- collectives


def gather_rows(local: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """Concatenate every rank's (counts[r], ...) rows in rank order, with autograd -> (sum, ...)."""
    width = max(counts)
    pad = local.float()
    if len(pad) < width:
        pad = torch.cat([pad, pad.new_zeros((width - len(pad), *pad.shape[1:]))])
    parts = _AllGather.apply(pad).split(width)
    return torch.cat([p[:c] for p, c in zip(parts, counts)]).to(local.dtype)


def mean_over_ranks(record: dict[str, Any], keys: tuple[str, ...], ctx: Context) -> dict[str, Any]:
    """Average the numbers (floats or lists of floats) under ``keys`` over the ranks: the global batch's
    losses when they are means over equal shards."""
    present = [k for k in keys if k in record]
    flat = [float(v) for k in present for v in (record[k] if isinstance(record[k], list) else [record[k]])]
    t = torch.tensor(flat, dtype=torch.float64 if ctx.device.type == "cpu" else torch.float32, device=ctx.device)
    dist.all_reduce(t)
    vals = (t / ctx.world).tolist()
    out, i = dict(record), 0
    for k in present:
        if isinstance(record[k], list):
            out[k], i = vals[i: i + len(record[k])], i + len(record[k])
        else:
            out[k], i = vals[i], i + 1
    return out


def same_on_all_ranks(module: nn.Module, ctx: Context) -> bool:
    """True when every parameter and buffer of ``module`` is bit-identical on all ranks."""
    flat = torch.cat([t.detach().reshape(-1).double() for t in [*module.parameters(), *module.buffers()]])
    lo, hi = flat.clone(), flat.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    return bool(torch.equal(lo, hi))


# ----------------------------------------------------------------------------- GAN sharding


def gan_rows(batch: int, paired: bool, ctx: Context) -> torch.Tensor:
    """Positions of this rank's rows in the GAN's global batch.

    With mode seeking (``paired``) the trainer pairs row i of the first half with row i + h; a
    rank keeps its share of the first half and the partner of each, so the pairs are those of a
    single process (the MSGAN ratio is then a per-rank mean, not the global batch's)."""
    if not paired:
        s = ctx.rows(batch)
        return torch.arange(s.start, s.stop)
    h = batch // 2
    if h % ctx.world:
        raise DistributedConfigError(f"mode seeking pairs the {batch} rows of a batch: {ctx.world} ranks must divide "
                                     f"the {h} pairs; choose a batch_size divisible by {2 * ctx.world}")
    s = ctx.rows(h)
    first = torch.arange(s.start, s.stop)
    return torch.cat([first, first + h])


# ----------------------------------------------------------------------------- encoder sharding


def sharded_forward(model: nn.Module, inputs: tuple[torch.Tensor, ...], ctx: Context) -> torch.Tensor:
    """Outputs of the global batch ``inputs`` (every tensor (B, ...)), this rank encoding its rows.

    The others' rows come by an autograd all-gather, so the loss of the whole batch can be computed
    on every rank (JEL compares the items of a batch). A batch of fewer items than ranks is run
    whole on every rank; the gradients are the same either way."""
    n = len(inputs[0])
    if n < ctx.world:
        return model(*inputs)
    counts = ctx.counts(n)
    start = sum(counts[: ctx.rank])
    local = model(*(t[start: start + counts[ctx.rank]] for t in inputs))
    return gather_rows(local, counts)
