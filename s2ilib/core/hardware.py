"""What a rerun needs to know to tell whether its numbers should match the committed report's.

Identical software on identical hardware gives bit-identical numbers; on another CPU, kernels that
take other code paths (oneDNN and MKL pick their instruction set at run time, bf16 runs natively or
is emulated, CTranslate2's int8 GEMMs use VNNI or not) move the numbers the way another training seed
does. :func:`hardware_info` records what decides those paths; ``results.json`` keeps it under
``environment.hardware``.
"""
from __future__ import annotations

import os
import platform
import re
from typing import Any

from s2ilib.core.device import BF16_ENV, cpu_flags, native_bf16

# Flags that select kernels in torch / oneDNN / MKL / CTranslate2.
KERNEL_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                "avx512_bf16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve")
# Environment variables that cap or pin those kernels (and this project's own bf16 switch).
KERNEL_ENV = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ONEDNN_DEFAULT_FPMATH_MODE", "MKL_CBWR",
              "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY", "CT2_FORCE_CPU_ISA", "CT2_USE_MKL",
              "OMP_NUM_THREADS", "MKL_NUM_THREADS", BF16_ENV)
FIELDS = ("cpu_vendor", "cpu_model", "cpu_family", "kernel_flags", "aten_cpu_capability", "bf16_native",
          "onednn", "mkl", "torch_threads", "env", "ctranslate2")


def _cpuinfo() -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if not line.strip():
                    break  # the first processor is enough
                key, _, value = line.partition(":")
                out.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return out


def _build_versions() -> dict[str, str | None]:
    import torch

    show = torch.__config__.show()
    onednn = re.search(r"MKL-DNN v([\w.]+)", show) or re.search(r"oneDNN v([\w.]+)", show)
    mkl = re.search(r"Math Kernel Library Version ([\w.-]+)", show)
    return {"onednn": onednn.group(1) if onednn else None, "mkl": mkl.group(1) if mkl else None}


def hardware_info() -> dict[str, Any]:
    """CPU vendor, model and the kernel-selecting flags, torch's dispatch level, native bf16, the
    oneDNN / MKL / CTranslate2 versions and the kernel-pinning environment. (The ASR's compute type
    and decoding settings are recorded with its transcripts: ``main.<dataset>.asr``.)"""
    import torch

    info = _cpuinfo()
    flags = cpu_flags()
    out: dict[str, Any] = {
        "cpu_vendor": info.get("vendor_id") or platform.machine(),
        "cpu_model": info.get("model name") or platform.processor() or "unknown",
        "cpu_family": "/".join(info[k] for k in ("cpu family", "model", "stepping") if k in info) or None,
        "kernel_flags": sorted(f for f in KERNEL_FLAGS if f in flags),
        "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16_native": native_bf16("cpu"),
        **_build_versions(),
        "torch_threads": torch.get_num_threads(),
        "env": {k: os.environ[k] for k in KERNEL_ENV if k in os.environ},
    }
    try:
        import ctranslate2

        out["ctranslate2"] = {"version": ctranslate2.__version__,
                              "cpu_compute_types": sorted(ctranslate2.get_supported_compute_types("cpu"))}
    except ImportError:
        out["ctranslate2"] = None
    return out
