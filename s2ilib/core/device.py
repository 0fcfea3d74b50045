"""One device switch for every stage: the config key ``device`` (``auto`` | ``cpu`` | ``cuda``)."""
from __future__ import annotations

DEVICES = ("auto", "cpu", "cuda")


class DeviceError(ValueError):
    """A device that is unknown or not available on this machine."""


def resolve_device(name: str = "auto"):
    """``auto``: CUDA when present, else the CPU; ``cuda`` without a GPU is an error, never a fallback.

    Accepts ``cuda:N`` too. Returns a :class:`torch.device`.
    """
    import torch

    if isinstance(name, torch.device):
        return name
    base = str(name).split(":")[0]
    if base not in DEVICES:
        raise DeviceError(f"device {name!r}: choose one of {DEVICES} (or cuda:N)")
    if base == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if base == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {name!r} asked for, but torch sees no CUDA GPU "
                          f"(torch {torch.__version__}); use device=cpu or device=auto")
    return torch.device(name)


# ----------------------------------------------------------------------------- bfloat16 autocast

# Config keys ``bf16`` ask for bfloat16 autocast. It pays only where the hardware computes bf16
# natively: on a CPU with AVX-512 BF16 or AMX it is 2-6x faster than float32, but on a CPU without
# them (an AVX2-only AMD EPYC, measured: a `small` GAN step 0.50 s float32 vs 5.98 s bf16; a 2048^3
# matrix product 115 vs 0.3 GFLOP/s) oneDNN emulates it, more than 10x slower. So ``bf16=True`` means
# "bf16 where this device runs it natively"; elsewhere the stage runs float32 and says so once.
# ``S2I_BF16=force`` runs bf16 anyway (tests of the bf16 path), ``S2I_BF16=off`` never.
BF16_ENV = "S2I_BF16"
BF16_MODES = ("auto", "force", "off")
_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
_warned: set[str] = set()


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    from pathlib import Path

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def native_bf16(device="cpu") -> bool:
    """Whether ``device`` computes bfloat16 natively (CUDA: ``is_bf16_supported``; x86 CPU: the
    AVX-512 BF16 or AMX-BF16 flag; other CPUs: oneDNN's own bf16 check)."""
    import torch

    dev = resolve_device(device) if not isinstance(device, torch.device) else device
    if dev.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    flags = cpu_flags()
    if flags:
        return any(f in flags for f in _CPU_BF16_FLAGS)
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def bf16_mode() -> str:
    mode = __import__("os").environ.get(BF16_ENV, "auto").strip().lower() or "auto"
    if mode not in BF16_MODES:
        raise DeviceError(f"environment variable {BF16_ENV}={mode!r}: choose one of {BF16_MODES}")
    return mode


def use_bf16(requested: bool, device="cpu") -> bool:
    """The effective bf16 switch of a stage that asked for ``requested`` on ``device``: see the
    comment above. A request the device cannot serve natively is reported once per device type."""
    import warnings

    import torch

    if not requested:
        return False
    mode = bf16_mode()
    if mode != "auto":
        return mode == "force"
    dev = resolve_device(device) if not isinstance(device, torch.device) else device
    if native_bf16(dev):
        return True
    if dev.type not in _warned:
        _warned.add(dev.type)
        warnings.warn(f"bf16=True asked for bfloat16 autocast, but this {dev.type} has no native bfloat16 "
                      f"({'/'.join(_CPU_BF16_FLAGS)} absent): running float32, which is faster here. "
                      f"Set {BF16_ENV}=force to run bf16 anyway, or bf16=false to silence this.", stacklevel=2)
    return False


def bf16_autocast(requested: bool, device="cpu"):
    """``torch.autocast(bfloat16)`` when :func:`use_bf16` says so, else a null context."""
    from contextlib import nullcontext

    import torch

    dev = resolve_device(device) if not isinstance(device, torch.device) else device
    if not use_bf16(requested, dev):
        return nullcontext()
    return torch.autocast(dev.type, dtype=torch.bfloat16)
