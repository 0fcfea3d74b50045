"""One configuration object per stage, grouped in a :class:`StudyConfig`, with named presets.

Presets:

* ``smoke``  -- seconds to a few minutes; used by the tests. Fewer classes than the real
  datasets so the whole study runs in CI.
* ``small``  -- the default main job on a 2-core laptop CPU (the full 200 / 102 class sets,
  few images per class, small networks, bfloat16 autocast).
* ``paper``  -- the paper's sizes and hyperparameters (Li et al. 2020 and the authors' code),
  meant for a GPU.

Unknown keys, wrong types and values outside a key's valid range (:data:`RANGES`, checked by
:func:`validate`) are errors (:class:`ConfigError`), never warnings.
Every stage writes its resolved config next to its outputs (:func:`save_config`).
"""
from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration key is unknown, a value has the wrong type or lies outside its valid range."""


@dataclass
class DataConfig:
    """Embedded datasets (``synth-birds``, ``synth-flowers``), speech synthesis and features."""

    datasets: list[str] = field(default_factory=lambda: ["synth-birds", "synth-flowers"])
    # Class counts of the real datasets (CUB-200: 150/50, Oxford-102: 82/20).
    birds_train_classes: int = 150
    birds_test_classes: int = 50
    flowers_train_classes: int = 82
    flowers_test_classes: int = 20
    images_per_class: int = 60  # CUB averages ~59 images/class, Oxford ~80
    image_size: int = 256  # stored resolution; lower resolutions are resized from it
    captions_per_image: int = 10
    # Speech: voices are settings of the espeak-ng engine (accent, variant, rate, pitch).
    tts_engine: str = "espeak"
    n_train_voices: int = 24
    n_unseen_voices: int = 6
    # Fraction of test images also spoken by the held-out voices ("unseen voices" condition).
    unseen_voice_fraction: float = 1.0
    sample_rate: int = 16000
    keep_wav: bool = False  # wav files cost disk; features are what training reads
    n_mels: int = 40
    min_frames: int = 64  # the encoder shortens time 64x
    workers: int = 2


@dataclass
class EncoderConfig:
    """Speech / text encoders trained by teacher-student learning (paper §III-B)."""

    teacher: str = "efficientnet-lite0"  # or "inception-fid", "googlenet" (user weights)
    teacher_weights: str = ""  # path to GoogLeNet weights when teacher == "googlenet"
    teacher_views: int = 10  # 5 crops x flip, as the authors
    teacher_image_size: int = 224
    # Speech encoder (CNN shortening time 64x + BiRNN), channel widths of the conv stack.
    cnn_channels: list[int] = field(default_factory=lambda: [64, 64, 128, 256, 256, 512, 512, 1024])
    rnn_type: str = "lstm"
    rnn_hidden: int = 512
    # Loss: L_TSL = L_JEL + lambda_norm * L_norm + lambda_KDL * L_KDL (eq. 6-9)
    use_jel: bool = True
    use_norm: bool = True
    use_kdl: bool = True
    lambda_norm: float = 5.0
    lambda_kdl: float = 1000.0
    jel_margin_diff: float = 1.0
    jel_margin_same: float = 0.0
    jel_weight_diff: float = 1.0
    jel_weight_same: float = 0.1
    kdl_temperature: float = 2.0
    # Optimisation (authors' code: Adam lr 1e-3, wd 1e-5, StepLR(200, 0.5), batch 64).
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-5
    lr_step_epochs: int = 200
    lr_gamma: float = 0.5
    epochs: int = 1000
    max_steps: int = 0  # 0: no cap beyond epochs
    text_epochs: int = 0  # 0: same as epochs
    val_every: int = 200  # steps
    ckpt_every: int = 200  # steps
    bf16: bool = True
    max_frames: int = 2048  # crop longer utterances (authors: 2048)
    classifier_lr: float = 1e-3


@dataclass
class GanConfig:
    """StackGAN-v2 conditioned on an encoder's embeddings (paper §III-C)."""

    branches: int = 3  # 1-3 scales
    base_size: int = 64  # first branch resolution; each next branch doubles it
    gf_dim: int = 64
    df_dim: int = 64
    z_dim: int = 100
    ca_dim: int = 128  # conditioning augmentation output
    r_num: int = 2  # residual blocks per next stage
    batch_size: int = 24
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    uncond_loss: float = 1.0
    kl_coef: float = 2.0
    color_coef: float = 0.0  # StackGAN-v2 colour-consistency term (50 in the authors' birds cfg)
    ema_decay: float = 0.999
    steps: int = 220000
    sample_every: int = 2000
    ckpt_every: int = 2000
    bf16: bool = True
    flip: bool = True
    # Train (and evaluate) on the square crop around each image's bounding box, half-side 0.75 x
    # max(w, h), as the authors do for CUB. Datasets without boxes (Oxford-102) are not cropped.
    bbox_crop: bool = True


@dataclass
class EvalConfig:
    """Metrics of the main table (paper §IV, plus semantic consistency)."""

    images_per_caption: int = 1
    captions_per_image: int = 10  # test captions evaluated per test image (the authors: all 10)
    fid_image_size: int = 299
    reader_epochs: int = 30
    is_head_epochs: int = 30
    rprec_candidates: int = 100
    asr_model: str = "whisper-tiny.en"
    max_eval_images: int = 0  # 0: every test image


@dataclass
class StudyConfig:
    preset: str = "paper"
    seed: int = 1234
    # One device switch for every stage (teacher features, both trainers, evaluation, inference):
    # "auto" picks CUDA when present, "cuda" without a GPU is an error (s2ilib.core.device).
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    gan: GanConfig = field(default_factory=GanConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Presets are overrides on the defaults above (which are the paper's values).
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "small": {
        "data": {
            "images_per_class": 8,
            "image_size": 128,
            "n_unseen_voices": 6,
            "unseen_voice_fraction": 0.5,
        },
        "encoder": {
            # A narrower conv stack and a GRU keep a step near 0.1 s on 2 cores (bf16).
            "cnn_channels": [32, 32, 64, 128, 128, 256, 256, 512],
            "rnn_type": "gru",
            "rnn_hidden": 256,
            "teacher_views": 4,
            "epochs": 12,
            "max_steps": 1500,
            "text_epochs": 30,
            "lr_step_epochs": 6,
            "val_every": 250,
            "ckpt_every": 250,
            "max_frames": 1024,
        },
        "gan": {
            # 32 -> 64 with narrow networks: three generators per dataset must train in minutes on a
            # 2-core CPU. The discriminators dominate the step time (DF 32: 0.26 s/step bf16,
            # DF 16: 0.18 s/step), so DF is kept at GF's width. Birds on their bounding-box crop
            # (gan.bbox_crop) become bird-shaped by step 2000 and sharpen by 3000; 2500 steps keep
            # a generator near 8 minutes (benchmarks/gan_step.py).
            "branches": 2,
            "base_size": 32,
            "gf_dim": 16,
            "df_dim": 16,
            "batch_size": 32,
            "steps": 2500,
            "sample_every": 500,
            "ckpt_every": 250,
            "ema_decay": 0.99,
        },
        # Evaluation on a subset: 50 test images x 2 captions per condition keeps notebook 04 (FID
        # Inception at 299 px, ~0.2 s/image; Whisper ASR ~0.6 s/utterance) near 15 min on 2 cores.
        "eval": {"reader_epochs": 30, "is_head_epochs": 20, "max_eval_images": 50,
                 "captions_per_image": 2},
    },
    "smoke": {
        "data": {
            "birds_train_classes": 6,
            "birds_test_classes": 4,
            "flowers_train_classes": 5,
            "flowers_test_classes": 3,
            "images_per_class": 3,
            "image_size": 64,
            "captions_per_image": 10,
            "n_train_voices": 24,
            "n_unseen_voices": 6,
            "unseen_voice_fraction": 1.0,
            "keep_wav": True,
        },
        "encoder": {
            "cnn_channels": [8, 8, 16, 16, 16, 32, 32, 64],
            "rnn_type": "gru",
            "rnn_hidden": 32,
            "teacher_views": 2,
            "teacher_image_size": 128,
            "batch_size": 16,
            "epochs": 2,
            "max_steps": 12,
            "text_epochs": 2,
            "lr_step_epochs": 1,
            "val_every": 6,
            "ckpt_every": 6,
            "max_frames": 512,
        },
        "gan": {
            "branches": 2,
            "base_size": 16,
            "gf_dim": 8,
            "df_dim": 8,
            "batch_size": 8,
            "steps": 6,
            "sample_every": 3,
            "ckpt_every": 3,
            "ema_decay": 0.9,
        },
        "eval": {"reader_epochs": 2, "is_head_epochs": 2, "fid_image_size": 75,
                 "rprec_candidates": 10, "max_eval_images": 6, "captions_per_image": 2},
    },
}


@dataclass(frozen=True)
class Range:
    """Valid values of one numeric key: ``lo``/``hi`` bounds (None: unbounded), open or closed,
    optionally restricted to powers of two. For a list key the range applies to every item."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    pow2: bool = False
    why: str = ""

    def contains(self, v: float) -> bool:
        if not math.isfinite(v):  # NaN, +-inf (JSON "NaN" / "Infinity" parse as floats)
            return False
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        if self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi):
            return False
        if self.pow2 and not (float(v).is_integer() and v >= 1 and (int(v) & (int(v) - 1)) == 0):
            return False
        return True

    def describe(self) -> str:
        lo = None if self.lo is None else f"{'>' if self.lo_open else '>='} {self.lo:g}"
        hi = None if self.hi is None else f"{'<' if self.hi_open else '<='} {self.hi:g}"
        if self.lo is not None and self.hi is not None:
            text = (f"[{self.lo:g}, {self.hi:g}]" if self.lo == self.hi or not (self.lo_open or self.hi_open)
                    else f"{'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}")
            text = f"{self.lo:g}" if self.lo == self.hi else f"in {text}"
        else:
            text = lo or hi or "any number"
        if self.pow2:
            text = f"a power of two {text}"
        return text + (f" ({self.why})" if self.why else "")


def _ge(lo: float, why: str = "", pow2: bool = False) -> Range:
    return Range(lo=lo, pow2=pow2, why=why)


_POS = Range(lo=0, lo_open=True)  # > 0
_NONNEG = Range(lo=0)  # >= 0
_UNIT = Range(lo=0, hi=1)  # [0, 1]
_DECAY = Range(lo=0, hi=1, hi_open=True)  # [0, 1)

# Valid range of every numeric key ("section.key"; "seed" at the top level). A numeric key without
# an entry here fails tests/test_config.py::test_every_numeric_key_has_a_range.
RANGES: dict[str, Range] = {
    "seed": _ge(0, "numpy and torch seeds are non-negative"),
    # data
    "data.birds_train_classes": _ge(1),
    "data.birds_test_classes": _ge(1, "the zero-shot evaluation needs test classes"),
    "data.flowers_train_classes": _ge(1),
    "data.flowers_test_classes": _ge(1, "the zero-shot evaluation needs test classes"),
    "data.images_per_class": _ge(1),
    "data.image_size": _ge(8, pow2=True, why="stored resolution; GAN and reader sizes are powers of two"),
    "data.captions_per_image": _ge(1),
    "data.n_train_voices": _ge(1),
    "data.n_unseen_voices": _ge(1, "the unseen-voices condition needs held-out voices"),
    "data.unseen_voice_fraction": _UNIT,
    "data.sample_rate": Range(lo=16000, hi=16000, why="the log-mel features are defined at 16 kHz"),
    "data.n_mels": _ge(1),
    "data.min_frames": _ge(64, "the speech encoder shortens time 64x"),
    "data.workers": _ge(1),
    # encoder
    "encoder.teacher_views": Range(lo=1, hi=10, why="5 crops x flip"),
    "encoder.teacher_image_size": _ge(32),
    "encoder.cnn_channels": _ge(1, "every conv width"),
    "encoder.rnn_hidden": _ge(1),
    "encoder.lambda_norm": _NONNEG,
    "encoder.lambda_kdl": _NONNEG,
    "encoder.jel_margin_diff": _NONNEG,
    "encoder.jel_margin_same": _NONNEG,
    "encoder.jel_weight_diff": _NONNEG,
    "encoder.jel_weight_same": _NONNEG,
    "encoder.kdl_temperature": _POS,
    "encoder.batch_size": _ge(1),
    "encoder.lr": _POS,
    "encoder.weight_decay": _NONNEG,
    "encoder.lr_step_epochs": _ge(1),
    "encoder.lr_gamma": Range(lo=0, hi=1, lo_open=True),
    "encoder.epochs": _ge(1),
    "encoder.max_steps": _ge(0, "0: no cap"),
    "encoder.text_epochs": _ge(0, "0: same as epochs"),
    "encoder.val_every": _ge(0, "0: never"),
    "encoder.ckpt_every": _ge(0, "0: only at the end"),
    "encoder.max_frames": _ge(64, "the speech encoder shortens time 64x"),
    "encoder.classifier_lr": _POS,
    # gan
    "gan.branches": Range(lo=1, hi=3, why="StackGAN-v2 scales"),
    "gan.base_size": _ge(8, pow2=True, why="the generator doubles from 4 px, the discriminator needs 8 px"),
    "gan.gf_dim": _ge(1),
    "gan.df_dim": _ge(1),
    "gan.z_dim": _ge(1),
    "gan.ca_dim": _ge(1),
    "gan.r_num": _ge(0),
    "gan.batch_size": _ge(2, "batch norm of the generator's first layer needs 2 samples"),
    "gan.lr_g": _POS,
    "gan.lr_d": _POS,
    "gan.beta1": _DECAY,
    "gan.beta2": _DECAY,
    "gan.uncond_loss": _NONNEG,
    "gan.kl_coef": _NONNEG,
    "gan.color_coef": _NONNEG,
    "gan.ema_decay": _DECAY,
    "gan.steps": _ge(1),
    "gan.sample_every": _ge(1),
    "gan.ckpt_every": _ge(1),
    # eval
    "eval.images_per_caption": _ge(1),
    "eval.captions_per_image": _ge(0, "0: all"),
    "eval.fid_image_size": _ge(75, "Inception-v3's smallest input"),
    "eval.reader_epochs": _ge(1),
    "eval.is_head_epochs": _ge(1),
    "eval.rprec_candidates": _ge(2, "the true caption and at least one other"),
    "eval.max_eval_images": _ge(0, "0: every test image"),
}


def numeric_keys(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """Every numeric key (int, float or a list of them) of a config object -> its value."""
    out: dict[str, Any] = {}
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out.update(numeric_keys(value, f"{prefix}{f.name}."))
            continue
        ann = hints[f.name]
        item = typing.get_args(ann)[0] if typing.get_origin(ann) is list else ann
        if item in (int, float):
            out[f"{prefix}{f.name}"] = value
    return out


def validate(cfg: StudyConfig) -> StudyConfig:
    """Check every numeric key against :data:`RANGES` and the keys that constrain each other;
    raise :class:`ConfigError` naming the key, the value and the valid range."""
    for key, value in numeric_keys(cfg).items():
        rng = RANGES.get(key)
        if rng is None:
            raise ConfigError(f"{key}: no valid range declared in s2ilib.core.config.RANGES")
        for i, v in enumerate(value if isinstance(value, list) else [value]):
            if not rng.contains(v):
                name = f"{key}[{i}]" if isinstance(value, list) else key
                finite = "" if math.isfinite(v) else "a finite number "
                raise ConfigError(f"{name} = {v!r} is out of range: must be {finite}{rng.describe()}")
    if cfg.device.split(":")[0] not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device = {cfg.device!r}: choose one of auto, cpu, cuda (or cuda:N)")
    e, g, d = cfg.encoder, cfg.gan, cfg.data
    if len(e.cnn_channels) != 8:
        raise ConfigError(f"encoder.cnn_channels = {e.cnn_channels!r}: needs 8 widths (one per conv layer)")
    if g.branches > 1 and g.gf_dim < 2 ** (g.branches - 1):
        raise ConfigError(f"gan.gf_dim = {g.gf_dim} is out of range: must be >= {2 ** (g.branches - 1)} with "
                          f"gan.branches = {g.branches} (each next stage halves the channels, down to 2)")
    if e.max_frames < d.min_frames:
        raise ConfigError(f"encoder.max_frames = {e.max_frames} is out of range: must be >= "
                          f"data.min_frames = {d.min_frames}")
    return cfg


def _check_type(path: str, value: Any, annotation: Any) -> Any:
    """Return ``value`` converted to ``annotation`` where lossless, else raise ConfigError."""
    origin = typing.get_origin(annotation)
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__} {value!r}")
        return [_check_type(f"{path}[{i}]", v, item_type) for i, v in enumerate(value)]
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if annotation in (bool, str):
        if not isinstance(value, annotation):
            raise ConfigError(f"{path}: expected {annotation.__name__}, got {type(value).__name__} {value!r}")
        return value
    raise ConfigError(f"{path}: unsupported type {annotation!r}")


def _apply(obj: Any, overrides: dict[str, Any], prefix: str = "") -> None:
    hints = typing.get_type_hints(type(obj))
    for key, value in overrides.items():
        path = f"{prefix}{key}"
        if key not in hints:
            known = ", ".join(sorted(hints))
            raise ConfigError(f"unknown config key {path!r} (known here: {known})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: expected a mapping of {type(current).__name__} keys")
            _apply(current, value, prefix=f"{path}.")
        else:
            setattr(obj, key, _check_type(path, value, hints[key]))


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"gan.steps": 10}`` -> ``{"gan": {"steps": 10}}``; nested mappings pass through."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"config key {key!r} conflicts with a plain value")
        node[parts[-1]] = value
    return nested


def get_config(preset: str = "small", overrides: dict[str, Any] | None = None) -> StudyConfig:
    """Resolve a named preset plus overrides (dotted keys allowed: ``{"gan.steps": 10}``)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    cfg = StudyConfig(preset=preset)
    _apply(cfg, PRESETS[preset])
    if overrides:
        nested = _nest(overrides)
        if "preset" in nested:
            raise ConfigError("'preset' cannot be overridden; pass it as the preset argument")
        _apply(cfg, nested)
    return validate(cfg)


def config_from_dict(d: dict[str, Any]) -> StudyConfig:
    """Rebuild a config saved by :func:`save_config` (strictly: every key must be known)."""
    d = dict(d)
    preset = d.pop("preset", "paper")
    cfg = StudyConfig(preset=preset)
    _apply(cfg, d)
    return validate(cfg)


def save_config(cfg: Any, path: str | Path) -> Path:
    """Write a resolved config (a dataclass or dict) as JSON, atomically."""
    from s2ilib.core.io import atomic_write_text

    data = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else cfg
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def config_hash(cfg: Any) -> str:
    """Short stable hash of a config section, used to key caches by their configuration."""
    import hashlib

    data = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else cfg
    blob = json.dumps(data, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
