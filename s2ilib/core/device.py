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
