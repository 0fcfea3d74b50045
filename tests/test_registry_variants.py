"""Method registry, variants and the device switch (fast unit tests)."""
from __future__ import annotations

import pytest
import torch

from s2ilib.core import registry as R
from s2ilib.core.config import get_config
from s2ilib.core.device import DeviceError, resolve_device
from s2ilib.core.variants import config_diff, variant_dir, variant_name


def test_registry_declares_the_papers_methods_once():
    assert R.method_names() == ("one_stage", "two_stage", "classifier", "text", "one_stage_authors")
    assert R.method("two_stage").generator == "text" and R.method("two_stage").query == "asr"
    assert R.generator_methods() == ("one_stage", "classifier", "text", "one_stage_authors")
    assert R.method("one_stage_authors").overrides == {"gan.recipe": "stackgan2"}
    assert {R.method(m).encoder for m in R.method_names()} == set(R.encoder_names())


@pytest.mark.parametrize("bad, msg", [
    (dict(encoder="nope"), "unknown encoder"),
    (dict(query="speech", encoder="text_ts"), "cannot go through"),
    (dict(query="asr", encoder="speech_ts"), "cannot go through"),
    (dict(conditions=("loud",)), "conditions"),
])
def test_registry_refuses_inconsistent_methods(bad, msg):
    kw = dict(name="x", label="x", encoder="speech_ts", generator="x", query="speech", conditions=("seen",))
    kw.update(bad)
    with pytest.raises(R.RegistryError, match=msg):
        R.register_method(R.Method(**kw))
    assert "x" not in R.METHODS
    with pytest.raises(R.RegistryError, match="unknown method 'x'"):
        R.method("x")


def test_preset_has_no_variant_and_overrides_name_their_stage():
    base = get_config("smoke")
    assert all(variant_name(base, s) == "" for s in ("data", "encoder", "gan", "eval"))
    cfg = get_config("smoke", {"gan.steps": 8, "gan.kl_coef": 0.0})
    assert variant_name(cfg, "encoder") == ""  # the generator's variant reuses the baseline encoder
    assert variant_name(cfg, "gan") == "gan.kl_coef=0,gan.steps=8"
    assert variant_dir("runs/gan/synth-birds", "one_stage", cfg, "gan").name == "one_stage@gan.kl_coef=0,gan.steps=8"
    enc = get_config("smoke", {"encoder.use_jel": False})
    assert variant_name(enc, "encoder") == variant_name(enc, "gan") == "encoder.use_jel=false"
    assert variant_name(get_config("smoke", {"seed": 7}), "data") == "seed=7"


def test_neutral_keys_do_not_make_a_variant():
    cfg = get_config("smoke", {"gan.ckpt_every": 1, "data.workers": 1})
    assert config_diff(cfg, "eval") == {}


def test_long_variant_names_are_hashed_and_distinct():
    a = get_config("smoke", {"encoder.cnn_channels": [1] * 8, "encoder.lr": 0.5, "encoder.rnn_hidden": 7,
                             "encoder.lambda_kdl": 3.0, "encoder.jel_margin_diff": 0.25})
    b = get_config("smoke", {"encoder.cnn_channels": [2] * 8, "encoder.lr": 0.5, "encoder.rnn_hidden": 7,
                             "encoder.lambda_kdl": 3.0, "encoder.jel_margin_diff": 0.25})
    na, nb = variant_name(a, "encoder"), variant_name(b, "encoder")
    assert len(na) <= 80 and na != nb


def test_device_switch():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceError, match="choose one of"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA"):
            resolve_device("cuda")


def test_in_stage_names_the_keys_that_change_a_stage():
    from s2ilib.core.variants import in_stage

    assert in_stage("encoder.use_jel", "encoder") and in_stage("train_seed", "encoder") and in_stage("data.seed", "gan")
    assert not in_stage("gan.recipe", "encoder") and not in_stage("eval.fid_n", "gan")
    assert not in_stage("encoder.ckpt_every", "encoder") and not in_stage("device", "eval")  # neutral keys
