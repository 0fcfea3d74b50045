"""One configuration object per stage, grouped in a :class:`StudyConfig`, with named presets.

Presets (:data:`PRESETS`, in :mod:`s2ilib.core.presets`):

* ``smoke``  -- seconds to a few minutes; used by the tests. Fewer classes than the real
  datasets so the whole study runs in CI.
* ``small``  -- the default main job on a 2-core laptop CPU (the full 200 / 102 class sets,
  few images per class, small networks, bfloat16 autocast).
* ``paper``  -- the paper's sizes and hyperparameters (Li et al. 2020 and the authors' code),
  meant for a GPU.

Unknown keys, wrong types, values outside a key's valid range (:data:`RANGES`, checked by
:func:`validate`, both in :mod:`s2ilib.core.config_ranges`) and string values outside a key's allowed
set (:mod:`s2ilib.core.config_strings`) are errors (:class:`ConfigError`), never warnings.
Every stage writes its resolved config next to its outputs (:func:`save_config`).
"""
from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s2ilib.core.config_ranges import RANGES, ConfigError, Range, numeric_keys, validate
from s2ilib.core.presets import PRESETS

__all__ = ["PRESETS", "RANGES", "ConfigError", "DataConfig", "EncoderConfig", "EvalConfig", "GanConfig", "Range",
           "StudyConfig", "config_from_dict", "config_hash", "get_config", "numeric_keys", "save_config", "validate"]


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
    # Folders of datasets in a real layout (CUB-200-2011, Oxford-102, Places audio captions), each
    # studied under its folder's name, which data.datasets must list (s2ilib.study.stages.build_dataset).
    dataset_dirs: list[str] = field(default_factory=list)


@dataclass
class EncoderConfig:
    """Speech / text encoders trained by teacher-student learning (paper §III-B)."""

    teacher: str = "efficientnet-lite0"  # or "inception-fid", "googlenet" (user weights)
    teacher_weights: str = ""  # path to GoogLeNet weights when teacher == "googlenet"
    teacher_views: int = 10  # 5 crops x flip, as the authors
    teacher_image_size: int = 224
    # The teacher sees each image's bounding-box crop (the square the GAN trains on, see
    # gan.bbox_crop) instead of the whole image, so the bird's parts fill more of its view. The
    # authors' teacher saw the whole image (false). Datasets without boxes are not cropped.
    teacher_bbox_crop: bool = False
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
    # SpecAugment (Park et al. 2019) of the training utterances of both speech encoders: this many
    # frequency / time masks per utterance, each up to the given width (mel bins / frames), filled
    # with the utterance's band means (s2ilib.models.embedding.spec_augment). 0 masks: off, as in the
    # authors' code.
    specaug_freq_masks: int = 0
    specaug_freq_width: int = 8
    specaug_time_masks: int = 0
    specaug_time_width: int = 40


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
    # Recipe: "stackgan2" is the authors' StackGAN-v2 (every switch below off); "modern" sets the
    # switches of RECIPES["modern"] unless a preset or an override sets them itself.
    recipe: str = "stackgan2"
    d_loss: str = "bce"  # "bce" (StackGAN-v2) | "hinge" (SNGAN / BigGAN)
    spectral_norm: bool = False  # spectral normalisation of every D layer (replaces D's batch norm)
    projection: bool = False  # projection discriminator (Miyato & Koyama 2018) for the conditional logit
    diffaug: str = ""  # DiffAugment policy for D: "", "translation", "cutout", "translation,cutout"
    mode_seeking: float = 0.0  # MSGAN weight: pairs of noises per condition, 1 / (|G(z1)-G(z2)| / |z1-z2|)
    contrastive: float = 0.0  # XMC-GAN InfoNCE weight between D's image code and the condition (tree)
    # What the InfoNCE term pairs the image code with: "mu", the CA mean D is conditioned on (G's CA
    # also learns from the term); "embedding", the encoder's embedding itself, as XMC-GAN pairs
    # images with a fixed sentence embedding (G can then lower the term only through its images).
    # Recipe "contrastive" sets "embedding".
    contrastive_cond: str = "mu"
    # "stackgan2": the authors' tree of stages; "fusion": one stage whose every block is modulated by
    # the condition, with DF-GAN's one-logit discriminator at the output size (s2ilib.models.fusion_gan).
    arch: str = "stackgan2"
    ma_gp: float = 0.0  # matching-aware gradient penalty weight (DF-GAN: 2; fusion arch only)
    ma_gp_power: float = 6.0  # its exponent on the gradient norm (DF-GAN: 6)
    # Lazy regularisation (StyleGAN2): the penalty on every k-th step only, weighted by k (k = 1: every step).
    ma_gp_every: int = 1


# Named bundles of GAN switches (gan.recipe). Keys a preset or an override sets explicitly win.
RECIPES: dict[str, dict[str, Any]] = {
    "stackgan2": {},
    "modern": {"d_loss": "hinge", "spectral_norm": True, "projection": True, "diffaug": "translation,cutout",
               "mode_seeking": 1.0, "lr_g": 2e-4, "lr_d": 4e-4, "beta1": 0.0, "beta2": 0.9},
    # "modern" with XMC-GAN's contrastive term instead of mode seeking: the best recipe of the
    # sweep at small (README, "Generator recipes at small"), the small preset's recipe. Its InfoNCE
    # pairs D's image code with the encoder's embedding (contrastive_cond "embedding"): in side runs
    # at small it read 0.45 / 0.51 / 0.42 (flowers speech / flowers text / birds speech) against
    # 0.39 / 0.36 / 0.36 when it paired them with the CA mean. Weight 2 instead of 1 raised all six
    # small generators by +0.025 to +0.056 (side runs of 2026-12-05; weight 4 on flowers speech read
    # as 2 did: README, "How the contrastive weight was chosen"). Learning rates 4e-4 / 8e-4 (twice
    # "modern"'s) raised one-stage speech on all three training seeds of both datasets (means 0.450 /
    # 0.513 against 0.432 / 0.474; README, "Generator side runs before the learning rates were adopted").
    "contrastive": {"d_loss": "hinge", "spectral_norm": True, "projection": True, "diffaug": "translation,cutout",
                    "contrastive": 2.0, "contrastive_cond": "embedding",
                    "lr_g": 4e-4, "lr_d": 8e-4, "beta1": 0.0, "beta2": 0.9},
    # DF-GAN (Tao et al. 2022): fusion blocks, hinge loss, MA-GP (2, power 6), lr 1e-4 / 4e-4, no CA.
    "dfgan": {"arch": "fusion", "d_loss": "hinge", "ma_gp": 2.0, "ma_gp_power": 6.0, "kl_coef": 0.0,
              "lr_g": 1e-4, "lr_d": 4e-4, "beta1": 0.0, "beta2": 0.9},
}


@dataclass
class EvalConfig:
    """Metrics of the main table (paper §IV, plus semantic consistency)."""

    images_per_caption: int = 1
    captions_per_image: int = 10  # test captions evaluated per test image (the authors: all 10)
    fid_image_size: int = 299
    reader_epochs: int = 30
    # The attribute reader: "rendered" trains it on freshly rendered images of every attribute value
    # (embedded datasets only; ceiling near 1, robust to blur), "real" on the training images.
    reader_source: str = "rendered"
    reader_images: int = 16000  # rendered training images (reader_source = "rendered")
    is_head_epochs: int = 30
    rprec_candidates: int = 100
    asr_model: str = "whisper-tiny.en"
    max_eval_images: int = 0  # 0: every test image
    # FID / KID / IS from a fixed random subset of this many generated images per (method,
    # condition); 0: every generated image. Attribute accuracy and R-precision use every image.
    fid_n: int = 0
    # FID Inception under bfloat16 autocast with channels-last inputs (FID within 0.1% of float32
    # on the same images, ~2x faster on CPUs with AMX / AVX512-BF16); real and generated
    # features always come from the same path. False: the standard float32 network.
    fid_bf16: bool = False
    # R-precision from a fixed random subset of this many generated images per (method,
    # condition), each against the pool of every query's caption (0: every generated image)
    rprec_n: int = 0
    # Methods queried through ASR (two_stage): transcribe at most this many utterances per
    # condition, a fixed random subset of the other methods' queries (so they pair with them by
    # query id; eval.fid_n / rprec_n pick inside it the same way); 0: every query.
    asr_max_queries: int = 0


@dataclass
class StudyConfig:
    preset: str = "paper"
    seed: int = 1234  # everything: the data, the training, the evaluation's subsets and noise
    # Seed of the encoders' and generators' training only (0: ``seed``), so repeats over training
    # seeds share one dataset (``make study-seeds``); see :attr:`training_seed`.
    train_seed: int = 0
    # The classes the evaluation scores (s2ilib.data.validation): "test", the unseen test classes
    # (the study's final notebooks; encoders and generators train on every training class), or
    # "val", the validation classes: ``val_fraction`` of the training classes, fixed by ``seed``,
    # held out from the encoders and generators. Every sweep and side run scores on "val".
    split: str = "test"
    val_fraction: float = 0.2
    # One device switch for every stage (teacher features, both trainers, evaluation, inference):
    # "auto" picks CUDA when present, "cuda" without a GPU is an error (s2ilib.core.device).
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    gan: GanConfig = field(default_factory=GanConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def training_seed(self) -> int:
        """The seed the encoder and GAN trainers get: ``train_seed``, or ``seed`` when it is 0."""
        return self.train_seed or self.seed


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
        try:
            return float(value)
        except OverflowError:  # an integer of hundreds of digits
            raise ConfigError(f"{path} = {value!r} is out of range: too large for a floating-point number") from None
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
    nested = _nest(overrides or {})
    if "preset" in nested:
        raise ConfigError("'preset' cannot be overridden; pass it as the preset argument")
    _apply(cfg, nested)
    _apply_recipe(cfg, explicit=set(PRESETS[preset].get("gan", {})) | set(nested.get("gan", {})))
    _check_dataset_dirs(cfg.data)
    validate(cfg)
    _check_files(cfg)
    return cfg


def _check_files(cfg: StudyConfig) -> None:
    """Files a run will read, checked when its configuration is built (not by :func:`config_from_dict`,
    which rebuilds saved configurations, maybe on another machine)."""
    weights = cfg.encoder.teacher_weights
    if weights and not Path(weights).expanduser().is_file():
        raise ConfigError(f"encoder.teacher_weights = {weights!r}: no such file (the GoogLeNet weights, a "
                          "torchvision state_dict saved with torch.save)")


def _check_dataset_dirs(d: DataConfig) -> None:
    """Every folder of ``data.dataset_dirs`` is studied under its name, so data.datasets must list
    that name, and no two folders may share one (a folder never silently goes unused)."""
    names = [Path(p).name for p in d.dataset_dirs]
    for p, name in zip(d.dataset_dirs, names):
        if not Path(p).expanduser().is_absolute():  # notebooks run in notebooks/, the CLI wherever it is called
            raise ConfigError(f"data.dataset_dirs: {p!r} must be an absolute path")
        if not name or name in (".", ".."):
            raise ConfigError(f"data.dataset_dirs: {p!r} has no folder name to study it under")
        if names.count(name) > 1:
            raise ConfigError(f"data.dataset_dirs: two folders are named {name!r}; rename one")
        if name not in d.datasets:
            raise ConfigError(f"data.dataset_dirs has {p!r}, studied as {name!r}, which data.datasets "
                              f"({d.datasets}) does not list: add it (--set 'data.datasets=[\"{name}\"]')")


def _apply_recipe(cfg: StudyConfig, explicit: set[str]) -> None:
    """Set the switches of ``cfg.gan.recipe`` that the preset and the overrides left alone."""
    if cfg.gan.recipe not in RECIPES:
        raise ConfigError(f"gan.recipe = {cfg.gan.recipe!r}: choose one of {sorted(RECIPES)}")
    for key, value in RECIPES[cfg.gan.recipe].items():
        if key not in explicit:
            setattr(cfg.gan, key, value)


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
