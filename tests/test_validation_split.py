"""The validation split: held-out training classes that play the test classes for every choice, so
that no sweep, side run or benchmark reads the real test classes."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from s2ilib.core.config import ConfigError, get_config
from s2ilib.core.variants import variant_name
from s2ilib.data.records import ImageRecord, SpeechImageDataset
from s2ilib.data.validation import HELDOUT, ValidationSplitError, split_record, validation_classes, validation_view

ROOT = Path(__file__).resolve().parents[1]


def _ds(n_train=10, n_test=4, per_class=3):
    images = []
    for c in range(n_train + n_test):
        split = "train" if c < n_train else "test"
        for k in range(per_class):
            images.append(ImageRecord(f"images/{c}/{k}", Path(f"/x/{c}_{k}.png"), c, split, [f"caption {c} {k}"]))
    return SpeechImageDataset("toy", Path("/x"), "birds", [f"{c:03d}.class_{c}" for c in range(n_train + n_test)],
                              images)


def test_view_swaps_validation_for_test_and_hides_the_test_classes():
    ds = _ds()
    test_classes = {r.class_index for r in ds.images if r.split == "test"}
    view = validation_view(ds, 0.2, seed=1234)
    val = set(validation_classes(ds, 0.2, 1234))
    assert len(val) == 2 and not val & test_classes
    assert {view.images[i].class_index for i in view.split("test")} == val
    train = {view.images[i].class_index for i in view.split("train")}
    assert not train & (val | test_classes) and len(train) == 8
    assert all(view.images[i].split == HELDOUT for i, r in enumerate(ds.images) if r.class_index in test_classes)
    assert len(view.images) == len(ds.images) and ds.split("test") != view.split("test")  # indices kept, ds untouched
    assert view.info["validation"]["val_classes"] == [ds.classes[c] for c in sorted(val)]
    assert view.fingerprint() != ds.fingerprint()  # caches keyed by the split's fingerprint stay apart


def test_validation_classes_are_fixed_by_the_study_seed():
    ds = _ds(n_train=150, n_test=50, per_class=1)
    a, b = validation_classes(ds, 0.2, 1234), validation_classes(ds, 0.2, 1234)
    assert a == b and len(a) == 30 and validation_classes(ds, 0.2, 7) != a
    assert split_record(ds, 0.2, 1234)["n_train_classes_left"] == 120
    with pytest.raises(ValidationSplitError, match="too few"):
        validation_classes(_ds(n_train=1), 0.2, 0)
    with pytest.raises(ValidationSplitError, match="val_fraction"):
        validation_classes(ds, 1.0, 0)


def test_split_is_a_training_variant_but_not_a_data_variant():
    cfg = get_config("small", {"split": "val"})
    assert variant_name(cfg, "data") == ""  # the validation runs share the main run's data
    for stage in ("encoder", "gan", "eval"):
        assert variant_name(cfg, stage) == "split=val"
    assert variant_name(get_config("small", {"split": "val", "val_fraction": 0.3}), "encoder") == \
        "split=val,val_fraction=0.3"
    assert variant_name(get_config("small", {"val_fraction": 0.3}), "encoder") == ""  # unused with split=test
    with pytest.raises(ConfigError, match="split = 'validation'"):
        get_config("small", {"split": "validation"})
    with pytest.raises(ConfigError, match="val_fraction"):
        get_config("small", {"val_fraction": 1.5})


def test_encoder_training_items_exclude_validation_and_test_classes():
    from s2ilib.training.encoder_trainer import _text_items

    ds = _ds()
    view = validation_view(ds, 0.2, seed=3)
    seen = {view.images[int(i)].class_index for i in _text_items(view).image_idx}
    assert seen == {view.images[i].class_index for i in view.split("train")}
    assert not seen & set(validation_classes(ds, 0.2, 3))


def _benchmark(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_sweep_scores_on_validation_by_default():
    """No test class reaches the benchmark's scoring unless asked: its configuration holds split=val,
    under which the dataset's test images are validation-class images only."""
    sweep = _benchmark("gan_sweep")
    args = sweep.parse_args([])
    assert args.split == "val" and sweep.split_overrides(args) == {"split": "val"}
    assert args.out.endswith("sweep_val")
    cfg = get_config("small", {**sweep.split_overrides(args), **sweep.VARIANTS["contrastive"]})
    assert cfg.split == "val"
    ds = _ds()
    from s2ilib.study.stages import _split_view

    scored = {_split_view(ds, cfg).images[i].class_index for i in _split_view(ds, cfg).split("test")}
    assert not scored & {r.class_index for r in ds.images if r.split == "test"}
    assert sweep.parse_args(["--split", "test"]).out.endswith("sweep")


def test_no_benchmark_reads_the_test_split_by_name():
    offenders = [p.name for p in sorted((ROOT / "benchmarks").glob("*.py")) if 'split("test")' in p.read_text()]
    assert not offenders, f"benchmarks reading the test classes directly: {offenders}"
