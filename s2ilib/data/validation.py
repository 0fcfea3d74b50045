"""The validation split: a fixed part of the training classes, held out for choosing settings.

Every sweep, side run and recipe choice is scored on validation classes; the test classes are read
by the study's final notebooks only (the protocol of every benchmark; ``../shared/style.md``). With
the study key ``split=val`` (:class:`s2ilib.core.config.StudyConfig`) the dataset a stage loads is
:func:`validation_view`: the validation classes play the test classes (``split("test")``), the
remaining training classes train the encoders and generators, and the real test classes are
``heldout``: no ``split()`` returns them, so nothing trains or scores on them. ``split`` is part of
the encoder, generator and evaluation folders' names (``speech_ts@split=val``), never of the data
folder, so the validation runs share the main run's data.

With ``split=test`` (the default) the final encoders and generators train on every training class,
validation classes included (the usual protocol once the choices are fixed).
"""
from __future__ import annotations

import dataclasses

import numpy as np

HELDOUT = "heldout"  # the real test images, in a validation view


class ValidationSplitError(ValueError):
    """A dataset with too few training classes to hold some out, or a bad fraction."""


def validation_classes(ds, fraction: float, seed: int) -> list[int]:
    """Class indices of the validation classes: ``round(fraction * n_train_classes)`` (at least 1)
    of the training classes, drawn with ``seed`` (the study seed: the split is fixed per dataset)."""
    if not 0 < fraction < 1:
        raise ValidationSplitError(f"val_fraction = {fraction!r}: must be in (0, 1)")
    train = sorted({r.class_index for r in ds.images if r.split == "train"})
    n = max(1, int(round(fraction * len(train))))
    if n >= len(train):
        raise ValidationSplitError(f"dataset {ds.name!r}: {len(train)} training classes, too few to hold out {n} "
                                   f"for validation (val_fraction = {fraction}) and keep one to train on")
    rng = np.random.default_rng([int(seed), 11])
    return sorted(int(c) for c in rng.choice(train, n, replace=False))


def validation_view(ds, fraction: float, seed: int):
    """A copy of ``ds`` whose ``split("test")`` is the validation classes' images and whose
    ``split("train")`` is the other training classes'; the real test images are :data:`HELDOUT`.
    Records, speech store and image files are shared; ``info["validation"]`` names the split."""
    val = set(validation_classes(ds, fraction, seed))

    def relabel(r):
        if r.split == "test":
            return dataclasses.replace(r, split=HELDOUT)
        return dataclasses.replace(r, split="test") if r.class_index in val else r

    info = {**ds.info, "validation": split_record(ds, fraction, seed)}
    return dataclasses.replace(ds, images=[relabel(r) for r in ds.images], info=info, _speech=ds._speech)


def split_record(ds, fraction: float, seed: int) -> dict:
    """What ``results.json`` records of the split: the classes (directory names) and counts."""
    val = validation_classes(ds, fraction, seed)
    names = [ds.classes[c] if c < len(ds.classes) else str(c) for c in val]
    n_train = len({r.class_index for r in ds.images if r.split == "train"})
    return {"val_fraction": fraction, "seed": int(seed), "val_classes": names, "n_val_classes": len(val),
            "n_train_classes_left": n_train - len(val)}


def record_splits(ds, store_index):
    """The split of every speech-store row by its image's record (the store's own ``split`` column is
    the split at synthesis time, which a validation view relabels; outside a view it is the same)."""
    if not (getattr(ds, "info", None) or {}).get("validation"):
        return store_index["split"]
    return store_index["image_idx"].map(lambda i: ds.images[int(i)].split)
