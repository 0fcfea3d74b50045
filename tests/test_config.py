import json

import pytest

from s2ilib.core.config import (PRESETS, ConfigError, config_from_dict, config_hash, get_config,
                           save_config)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_resolve_and_round_trip(preset, tmp_path):
    cfg = get_config(preset)
    assert cfg.preset == preset
    path = save_config(cfg, tmp_path / "config.json")
    again = config_from_dict(json.loads(path.read_text()))
    assert again == cfg
    assert config_hash(again) == config_hash(cfg)


def test_paper_preset_has_paper_values():
    cfg = get_config("paper")
    assert cfg.encoder.lambda_norm == 5 and cfg.encoder.lambda_kdl == 1000
    assert (cfg.gan.branches, cfg.gan.base_size, cfg.gan.gf_dim, cfg.gan.df_dim) == (3, 64, 64, 64)
    assert (cfg.data.birds_train_classes, cfg.data.birds_test_classes) == (150, 50)
    assert (cfg.data.flowers_train_classes, cfg.data.flowers_test_classes) == (82, 20)


def test_small_keeps_real_class_counts():
    cfg = get_config("small")
    assert cfg.data.birds_train_classes + cfg.data.birds_test_classes == 200
    assert cfg.data.flowers_train_classes + cfg.data.flowers_test_classes == 102


def test_overrides_dotted_and_nested():
    cfg = get_config("smoke", {"gan.steps": 3, "encoder": {"lr": 1}})
    assert cfg.gan.steps == 3 and cfg.encoder.lr == 1.0 and isinstance(cfg.encoder.lr, float)


@pytest.mark.parametrize("overrides, message", [
    ({"gan.stepz": 3}, "unknown config key 'gan.stepz'"),
    ({"nonsense": 1}, "unknown config key 'nonsense'"),
    ({"gan.steps": "10"}, "gan.steps: expected an integer"),
    ({"gan.steps": 1.5}, "gan.steps: expected an integer"),
    ({"gan.bf16": 1}, "gan.bf16: expected bool"),
    ({"encoder.cnn_channels": 3}, "expected a list"),
    ({"encoder.cnn_channels": [1, "a"]}, r"cnn_channels\[1\]"),
    ({"gan": 5}, "expected a mapping"),
])
def test_bad_overrides_are_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        get_config("small", overrides)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset"):
        get_config("huge")


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_numeric_key_has_a_range(preset):
    """A new numeric key must declare its valid range in RANGES (and the presets lie inside them)."""
    from s2ilib.core.config import RANGES, numeric_keys, validate

    keys = numeric_keys(get_config(preset))
    assert "gan.steps" in keys and "seed" in keys and "encoder.cnn_channels" in keys
    missing = sorted(set(keys) - set(RANGES))
    assert not missing, f"numeric config keys without a declared range: {missing}"
    assert not sorted(set(RANGES) - set(keys)), "RANGES names keys the config does not have"
    for key, value in keys.items():
        for v in value if isinstance(value, list) else [value]:
            assert RANGES[key].contains(v), (preset, key, v, RANGES[key].describe())
    validate(get_config(preset))


def test_range_descriptions():
    from s2ilib.core.config import RANGES

    assert RANGES["gan.ema_decay"].describe() == "in [0, 1)"
    assert RANGES["gan.steps"].describe() == ">= 1"
    assert RANGES["encoder.lr"].describe() == "> 0"
    assert RANGES["gan.base_size"].describe().startswith("a power of two >= 8")
    assert not RANGES["gan.base_size"].contains(24) and RANGES["gan.base_size"].contains(64)
