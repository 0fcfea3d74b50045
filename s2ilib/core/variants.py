"""Variants: run folders keyed by the config keys that differ from the preset.

Every stage's output folder is ``<method>`` for the preset's own configuration and
``<method>@<variant>`` otherwise, where the variant names the keys that change the stage's
result (``one_stage@gan.kl_coef=0,gan.steps=3000``). An ablation therefore never lands in the
baseline's folder, and a rerun of the same variant finds (and resumes) its own folder.

A stage depends on the keys of its own section and of every stage before it:
data -> encoder -> gan -> eval. Keys that only change how work is done, not what it produces
(device, worker count, checkpoint and sample cadence), are left out.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Any

# train_seed reseeds the trainers only, and split=val holds classes out of them: the data stays the same
_TRAINING = ("seed", "train_seed", "split", "val_fraction", "data")
STAGE_SECTIONS = {
    "data": ("seed", "data"),
    "encoder": (*_TRAINING, "encoder"),
    "gan": (*_TRAINING, "encoder", "gan"),
    "eval": (*_TRAINING, "encoder", "gan", "eval"),
}
# Keys that do not change a stage's result.
NEUTRAL_KEYS = {"device", "data.workers", "encoder.ckpt_every", "gan.ckpt_every", "gan.sample_every"}
MAX_NAME = 80


def in_stage(key: str, stage: str) -> bool:
    """Whether the dotted config ``key`` can change the result of ``stage`` (its folder name)."""
    return key.split(".")[0] in STAGE_SECTIONS[stage] and key not in NEUTRAL_KEYS


class VariantError(ValueError):
    """An unknown stage."""


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def config_diff(cfg: Any, stage: str) -> dict[str, Any]:
    """Keys (dotted) of ``cfg`` that differ from its preset and matter to ``stage``."""
    from s2ilib.core.config import get_config

    if stage not in STAGE_SECTIONS:
        raise VariantError(f"unknown stage {stage!r}; choose one of {list(STAGE_SECTIONS)}")
    preset = get_config(cfg.preset)
    recipe = cfg.gan.recipe
    # Another GAN recipe is named once (gan.recipe=modern), not by every switch it sets.
    base_cfg = preset if recipe == preset.gan.recipe else get_config(cfg.preset, {"gan.recipe": recipe})
    base = flatten(dataclasses.asdict(base_cfg))
    mine = flatten(dataclasses.asdict(cfg))
    diff = {k: v for k, v in mine.items() if in_stage(k, stage) and base.get(k) != v}
    if cfg.split == "test":  # the validation share matters only when validation classes are held out
        diff.pop("val_fraction", None)
    if recipe != preset.gan.recipe and "gan" in STAGE_SECTIONS[stage]:
        diff["gan.recipe"] = recipe
    return dict(sorted(diff.items()))


def _short_hash(v: Any) -> str:
    return hashlib.sha256(json.dumps(v, sort_keys=True).encode()).hexdigest()[:6]


def _fmt(v: Any) -> str:
    """A value as it reads in a folder name, exactly: two different values never read the same.

    Floats read as ``:g`` where that is exact (``0.0004``: the names of existing folders stay), else
    as their shortest exact repr (``0.00040000001``); strings with characters a folder name cannot
    hold (``/``, spaces, ...) and lists of several strings (``-`` joins them, ambiguously) read
    with ``~`` and a short hash of the whole value."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        short = f"{v:g}"
        return short if float(short) == v else repr(v)
    if isinstance(v, (list, tuple)):
        texts = [x for x in v if isinstance(x, str)]
        text = "-".join(_safe(x) if isinstance(x, str) else _fmt(x) for x in v)
        exact = all(_safe(x) == x for x in texts) and (len(v) < 2 or not texts)
        return text if exact else f"{text}~{_short_hash(list(v))}"
    text = _safe(str(v))
    return f"{text}~{_short_hash(v)}" if isinstance(v, str) and text != v else text


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]", "_", text)


def variant_name(cfg: Any, stage: str) -> str:
    """``""`` for the preset's configuration, else ``key=value,...`` (hashed when long)."""
    diff = config_diff(cfg, stage)
    if not diff:
        return ""
    name = ",".join(f"{k}={_fmt(v)}" for k, v in diff.items())
    if len(name) > MAX_NAME:
        digest = hashlib.sha256(name.encode()).hexdigest()[:10]
        name = f"{name[:MAX_NAME - 12]}~{digest}"
    return name


def variant_dir(parent: str | Path, name: str, cfg: Any, stage: str) -> Path:
    """``parent/name`` for the preset, ``parent/name@variant`` otherwise."""
    v = variant_name(cfg, stage)
    return Path(parent) / (f"{name}@{v}" if v else name)
