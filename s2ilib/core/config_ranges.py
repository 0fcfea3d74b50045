"""Valid range of every numeric configuration key (:data:`RANGES`) and :func:`validate`, which
checks a resolved :class:`~s2ilib.core.config.StudyConfig` against them; :class:`ConfigError`
is the error of a bad key or value (re-exported by :mod:`s2ilib.core.config`)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


class ConfigError(ValueError):
    """A configuration key is unknown, a value has the wrong type or lies outside its valid range."""


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
        if isinstance(v, float) and not math.isfinite(v):  # NaN, +-inf (JSON "NaN" / "Infinity" parse as floats)
            return False
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        if self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi):
            return False
        if self.pow2 and not (float(v).is_integer() and v >= 1 and (int(v) & (int(v) - 1)) == 0):
            return False
        return True

    def describe(self) -> str:
        lo = None if self.lo is None else f"{'>' if self.lo_open else '>='} {_num(self.lo)}"
        hi = None if self.hi is None else f"{'<' if self.hi_open else '<='} {_num(self.hi)}"
        if self.lo is not None and self.hi is not None:
            a, b = _num(self.lo), _num(self.hi)
            text = (f"[{a}, {b}]" if self.lo == self.hi or not (self.lo_open or self.hi_open)
                    else f"{'(' if self.lo_open else '['}{a}, {b}{')' if self.hi_open else ']'}")
            text = a if self.lo == self.hi else f"in {text}"
        else:
            text = lo or hi or "any number"
        if self.pow2:
            text = f"a power of two {text}"
        return text + (f" ({self.why})" if self.why else "")


def _num(x: float) -> str:
    """A bound as written: integers in full (10000000, not 1e+07), other numbers as ``:g``."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e16 else f"{x:g}"


def _ge(lo: float, why: str = "", pow2: bool = False) -> Range:
    return Range(lo=lo, pow2=pow2, why=why)


def _count(lo: int, hi: int, why: str = "", pow2: bool = False) -> Range:
    """A count (steps, epochs, images, widths, ...): at least ``lo`` and at most a sane ``hi``, so a
    typo such as ``gan.steps=99999999999`` is refused instead of starting a run of centuries."""
    return Range(lo=lo, hi=hi, pow2=pow2, why=why)


_POS = Range(lo=0, lo_open=True)  # > 0
_NONNEG = Range(lo=0)  # >= 0
_UNIT = Range(lo=0, hi=1)  # [0, 1]
_DECAY = Range(lo=0, hi=1, hi_open=True)  # [0, 1)

# Upper bounds of the count keys: far above every preset (the paper's own values included) but low
# enough that a typo (an extra digit or five) is refused before a run starts, not after it has
# projected an ETA of centuries.
STEPS_MAX = 10_000_000  # the paper trains the GAN 220,000 steps; its encoder ~1.4 M (1,000 epochs)
EPOCHS_MAX = 10_000  # the paper: 1,000 encoder epochs
WIDTH_MAX = 8192  # channels, hidden units, embedding sizes
BATCH_MAX = 4096
IMAGES_MAX = 10_000_000  # images, queries, utterances per evaluation subset
SEED_MAX = 2**32 - 1  # numpy's seeds are 32-bit

# Valid range of every numeric key ("section.key"; "seed" at the top level). A numeric key without
# an entry here fails tests/test_config.py::test_every_numeric_key_has_a_range, and an integer key
# without an upper bound fails tests/test_config.py::test_every_count_key_has_a_maximum.
RANGES: dict[str, Range] = {
    "seed": _count(0, SEED_MAX, "numpy seeds are 32-bit and non-negative"),
    "train_seed": _count(0, SEED_MAX, "0: the same as seed; numpy seeds are 32-bit"),
    "val_fraction": Range(lo=0, hi=1, lo_open=True, hi_open=True, why="a share of the training classes"),
    # data
    "data.birds_train_classes": _count(1, 1000),
    "data.birds_test_classes": _count(1, 1000, "the zero-shot evaluation needs test classes"),
    "data.flowers_train_classes": _count(1, 500, "the flowers vocabulary holds 1120 distinct classes"),
    "data.flowers_test_classes": _count(1, 500, "the zero-shot evaluation needs test classes"),
    "data.images_per_class": _count(1, 1000),
    "data.image_size": _count(8, 1024, pow2=True, why="stored resolution; GAN and reader sizes are powers of two"),
    "data.captions_per_image": _count(1, 100),
    "data.n_train_voices": _count(1, 1000),
    "data.n_unseen_voices": _count(1, 1000, "the unseen-voices condition needs held-out voices"),
    "data.unseen_voice_fraction": _UNIT,
    "data.sample_rate": Range(lo=16000, hi=16000, why="the log-mel features are defined at 16 kHz"),
    "data.n_mels": _count(1, 512),
    "data.min_frames": _count(64, 65536, "the speech encoder shortens time 64x"),
    "data.workers": _count(1, 1024),
    # encoder
    "encoder.teacher_views": Range(lo=1, hi=10, why="5 crops x flip"),
    "encoder.teacher_image_size": _count(32, 2048),
    "encoder.cnn_channels": _count(1, WIDTH_MAX, "every conv width"),
    "encoder.rnn_hidden": _count(1, WIDTH_MAX),
    "encoder.lambda_norm": _NONNEG,
    "encoder.lambda_kdl": _NONNEG,
    "encoder.jel_margin_diff": _NONNEG,
    "encoder.jel_margin_same": _NONNEG,
    "encoder.jel_weight_diff": _NONNEG,
    "encoder.jel_weight_same": _NONNEG,
    "encoder.kdl_temperature": _POS,
    "encoder.batch_size": _count(1, BATCH_MAX),
    "encoder.lr": _POS,
    "encoder.weight_decay": _NONNEG,
    "encoder.lr_step_epochs": _count(1, EPOCHS_MAX),
    "encoder.lr_gamma": Range(lo=0, hi=1, lo_open=True),
    "encoder.epochs": _count(1, EPOCHS_MAX, "the paper trains 1000"),
    "encoder.max_steps": _count(0, STEPS_MAX, "0: no cap"),
    "encoder.text_epochs": _count(0, EPOCHS_MAX, "0: same as epochs"),
    "encoder.val_every": _count(0, STEPS_MAX, "0: never"),
    "encoder.ckpt_every": _count(0, STEPS_MAX, "0: only at the end"),
    "encoder.max_frames": _count(64, 65536, "the speech encoder shortens time 64x"),
    "encoder.classifier_lr": _POS,
    "encoder.specaug_freq_masks": _count(0, 100, "0: off"),
    "encoder.specaug_freq_width": _count(0, 512),
    "encoder.specaug_time_masks": _count(0, 100, "0: off"),
    "encoder.specaug_time_width": _count(0, 65536),
    # gan
    "gan.branches": Range(lo=1, hi=3, why="StackGAN-v2 scales"),
    "gan.base_size": _count(8, 1024, pow2=True, why="the generator doubles from 4 px, the discriminator needs 8 px"),
    "gan.gf_dim": _count(1, WIDTH_MAX),
    "gan.df_dim": _count(1, WIDTH_MAX),
    "gan.z_dim": _count(1, WIDTH_MAX),
    "gan.ca_dim": _count(1, WIDTH_MAX),
    "gan.r_num": _count(0, 64),
    "gan.batch_size": _count(2, BATCH_MAX, "batch norm of the generator's first layer needs 2 samples"),
    "gan.lr_g": _POS,
    "gan.lr_d": _POS,
    "gan.beta1": _DECAY,
    "gan.beta2": _DECAY,
    "gan.uncond_loss": _NONNEG,
    "gan.kl_coef": _NONNEG,
    "gan.color_coef": _NONNEG,
    "gan.ema_decay": _DECAY,
    "gan.steps": _count(1, STEPS_MAX, "the paper trains 220000"),
    "gan.sample_every": _count(1, STEPS_MAX),
    "gan.ckpt_every": _count(1, STEPS_MAX),
    "gan.mode_seeking": _NONNEG,
    "gan.ma_gp": _NONNEG,
    "gan.contrastive": _NONNEG,
    "gan.ma_gp_power": _POS,
    "gan.ma_gp_every": _count(1, STEPS_MAX),
    # eval
    "eval.images_per_caption": _count(1, 100),
    "eval.captions_per_image": _count(0, 100, "0: all"),
    "eval.fid_image_size": _count(75, 2048, "Inception-v3's smallest input is 75"),
    "eval.reader_epochs": _count(1, EPOCHS_MAX),
    "eval.reader_images": _count(8, IMAGES_MAX),
    "eval.is_head_epochs": _count(1, EPOCHS_MAX),
    "eval.rprec_candidates": _count(2, 100_000, "the true caption and at least one other"),
    "eval.max_eval_images": _count(0, IMAGES_MAX, "0: every test image"),
    "eval.fid_n": _count(0, IMAGES_MAX, "0: every generated image"),
    "eval.rprec_n": _count(0, IMAGES_MAX, "0: every generated image"),
    "eval.asr_max_queries": _count(0, IMAGES_MAX, "0: every query"),
}


def numeric_keys(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """Every numeric key (int, float or a list of them) of a config object -> its value."""
    from s2ilib.core.config_walk import keys_of_type

    return keys_of_type(cfg, (int, float), prefix)


def validate(cfg: Any) -> Any:
    """Check every string key of a :class:`~s2ilib.core.config.StudyConfig` against its allowed values
    (:mod:`s2ilib.core.config_strings`), every numeric key against :data:`RANGES` and the keys that
    constrain each other; raise :class:`ConfigError` naming the key, the value and the valid values.
    Returns ``cfg``."""
    from s2ilib.core.config_strings import check_strings

    problem = check_strings(cfg)
    if problem:
        raise ConfigError(problem)
    for key, value in numeric_keys(cfg).items():
        rng = RANGES.get(key)
        if rng is None:
            raise ConfigError(f"{key}: no valid range declared in s2ilib.core.config_ranges.RANGES")
        for i, v in enumerate(value if isinstance(value, list) else [value]):
            if not rng.contains(v):
                name = f"{key}[{i}]" if isinstance(value, list) else key
                finite = "a finite number " if isinstance(v, float) and not math.isfinite(v) else ""
                raise ConfigError(f"{name} = {v!r} is out of range: must be {finite}{rng.describe()}")
    e, g, d = cfg.encoder, cfg.gan, cfg.data
    if len(e.cnn_channels) != 8:
        raise ConfigError(f"encoder.cnn_channels = {e.cnn_channels!r}: needs 8 widths (one per conv layer)")
    if g.branches > 1 and g.gf_dim < 2 ** (g.branches - 1):
        raise ConfigError(f"gan.gf_dim = {g.gf_dim} is out of range: must be >= {2 ** (g.branches - 1)} with "
                          f"gan.branches = {g.branches} (each next stage halves the channels, down to 2)")
    if g.contrastive > 0 and g.arch == "fusion":
        raise ConfigError(f"gan.contrastive = {g.contrastive} applies to gan.arch = stackgan2 only; set it to 0")
    if g.ma_gp > 0 and g.arch != "fusion":
        raise ConfigError(f"gan.ma_gp = {g.ma_gp} applies to gan.arch = fusion only (got {g.arch!r}); set it to 0")
    if g.mode_seeking > 0 and g.batch_size % 2:
        raise ConfigError(f"gan.batch_size = {g.batch_size} is out of range: must be even with "
                          f"gan.mode_seeking = {g.mode_seeking} (the batch holds pairs of noises per condition)")
    if e.max_frames < d.min_frames:
        raise ConfigError(f"encoder.max_frames = {e.max_frames} is out of range: must be >= "
                          f"data.min_frames = {d.min_frames}")
    return cfg
