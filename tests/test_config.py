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
    assert RANGES["gan.steps"].describe().startswith("in [1, 10000000]")  # integers in full, not 1e+07
    assert RANGES["encoder.lr"].describe() == "> 0"
    assert RANGES["gan.base_size"].describe().startswith("a power of two in [8, 1024]")
    assert not RANGES["gan.base_size"].contains(24) and RANGES["gan.base_size"].contains(64)
    assert not RANGES["gan.steps"].contains(10**400)  # no OverflowError on a huge integer


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_count_key_has_a_maximum(preset):
    """Issue 30: every integer key (steps, epochs, images, widths, seeds) has a finite upper bound."""
    import typing

    from s2ilib.core.config import RANGES, numeric_keys

    cfg = get_config(preset)
    ints = [k for k, v in numeric_keys(cfg).items() if isinstance(v[0] if isinstance(v, list) else v, int)]
    assert "gan.steps" in ints and "encoder.epochs" in ints and "seed" in ints
    unbounded = [k for k in ints if RANGES[k].hi is None]
    assert not unbounded, f"count keys without a maximum: {unbounded}"
    assert typing.get_type_hints(type(cfg.gan))["steps"] is int


def _string_keys(preset="smoke"):
    from s2ilib.core.config_strings import string_keys

    return string_keys(get_config(preset))


def test_every_string_key_has_allowed_values_or_a_validator():
    """Issue 30: every string key (str or list of str) of the configuration declares its allowed values
    (CHOICES) or a validator (VALIDATORS); the presets' values pass them."""
    from s2ilib.core.config_strings import CHOICES, VALIDATORS, check_strings

    keys = _string_keys()
    expected = {"preset", "split", "device", "data.datasets", "data.tts_engine", "data.dataset_dirs", "encoder.teacher",
                "encoder.teacher_weights", "encoder.rnn_type", "gan.recipe", "gan.d_loss", "gan.diffaug",
                "gan.contrastive_cond", "gan.arch", "eval.reader_source", "eval.asr_model"}
    assert expected <= set(keys), sorted(expected - set(keys))  # the walk finds them all
    missing = sorted(k for k in keys if k not in CHOICES and k not in VALIDATORS)
    assert not missing, f"string config keys without allowed values or a validator: {missing}"
    assert not sorted((set(CHOICES) | set(VALIDATORS)) - set(keys)), "declared keys the config does not have"
    assert not set(CHOICES) & set(VALIDATORS)
    for preset in sorted(PRESETS):
        assert check_strings(get_config(preset)) is None, preset


@pytest.mark.parametrize("key", sorted(_string_keys()))
def test_every_string_key_refuses_a_bad_value(key):
    """A value outside the key's allowed set is a ConfigError naming the key and the value."""
    value = _string_keys()[key]
    bad = ["no-such-name"] if isinstance(value, list) else "no such/value"
    with pytest.raises(ConfigError) as info:
        if key == "preset":  # not an override: a saved config names it
            config_from_dict({**get_config("smoke").to_dict(), "preset": bad})
        else:
            get_config("smoke", {key: bad})
    msg = str(info.value)
    assert key in msg and ("no-such-name" in msg or "no such/value" in msg), msg


def test_string_choices_agree_with_the_modules_that_use_them():
    """The allowed sets repeat names defined in layers s2ilib.core may not import: they must agree."""
    from s2ilib.core.config import RECIPES
    from s2ilib.core.config_strings import CHOICES, EMBEDDED_DATASETS
    from s2ilib.data.synth import DATASETS
    from s2ilib.models.teacher import TEACHER_DIMS
    from s2ilib.speech import tts

    assert sorted(CHOICES["gan.recipe"][0]) == sorted(RECIPES)
    assert sorted(CHOICES["encoder.teacher"][0]) == sorted(TEACHER_DIMS)
    assert sorted(EMBEDDED_DATASETS) == sorted(DATASETS)
    assert sorted(CHOICES["preset"][0]) == sorted(PRESETS)
    assert set(CHOICES["data.tts_engine"][0]) <= set(tts.engine_names())
    # the dataset's voice pool speaks through data.tts_engine: its voices must be that engine's
    train, unseen = tts.voice_pool(2, 1)
    assert {v.engine for v in train + unseen} == set(CHOICES["data.tts_engine"][0])


@pytest.mark.parametrize("overrides, names", [
    ({"encoder.teacher_weights": "/w/g.pth"}, ["encoder.teacher_weights", "googlenet only"]),
    ({"encoder.teacher": "googlenet"}, ["encoder.teacher_weights", "needs the path"]),
    ({"encoder.teacher": "googlenet", "encoder.teacher_weights": "g.pth"}, ["encoder.teacher_weights", "absolute"]),
    ({"encoder.teacher": "googlenet", "encoder.teacher_weights": "/no/such/g.pth"}, ["/no/such/g.pth", "no such file"]),
    ({"data.datasets": []}, ["data.datasets", "empty"]),
    ({"data.datasets": ["synth-birds", "synth-birds"]}, ["data.datasets", "twice"]),
    ({"data.datasets": ["kitchens"]}, ["kitchens", "neither an embedded dataset"]),
    ({"device": "cuda:x"}, ["device", "cuda:N"]),
    ({"gan.diffaug": "color"}, ["gan.diffaug", "color"]),
])
def test_free_form_string_keys_are_checked(overrides, names):
    with pytest.raises(ConfigError) as info:
        get_config("smoke", overrides)
    assert all(n in str(info.value) for n in names), info.value


def test_config_from_dict_checks_strings():
    d = get_config("smoke").to_dict()
    d["encoder"]["rnn_type"] = "transformer"
    with pytest.raises(ConfigError, match="encoder.rnn_type = 'transformer': choose one of gru, lstm"):
        config_from_dict(d)


def test_googlenet_weights_that_exist_are_accepted(tmp_path):
    (tmp_path / "g.pth").write_bytes(b"x")
    cfg = get_config("smoke", {"encoder.teacher": "googlenet", "encoder.teacher_weights": str(tmp_path / "g.pth")})
    assert cfg.encoder.teacher_weights == str(tmp_path / "g.pth")
