"""Careless and hostile input (issue 10): config ranges, the CLI's one-line errors, `s2i generate` checks.

Fast: no training; pipelines are tiny fake folders built here (a 1-branch 8 px generator and a
tiny speech encoder). Every error must name the key or the file it is about.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from s2ilib import inference
from s2ilib.cli import main
from s2ilib.core.config import ConfigError, get_config

pytestmark = pytest.mark.usefixtures("one_thread")

# ----------------------------------------------------------------------------- config ranges

RANGE_CASES = [
    ("gan.steps", -5), ("gan.steps", 0),  # an untrained generator was written and reported
    ("gan.ema_decay", 5.0), ("gan.ema_decay", 1.0), ("gan.ema_decay", -0.1),  # 0 <= decay < 1
    ("data.images_per_class", 0),  # an empty dataset
    ("gan.batch_size", 0), ("gan.batch_size", -4), ("gan.batch_size", 1),
    ("encoder.batch_size", 0), ("encoder.batch_size", -1),
    ("gan.branches", 0), ("gan.branches", 4),  # 1-3
    ("gan.base_size", 24), ("gan.base_size", 4), ("data.image_size", 100),  # powers of two
    ("encoder.lr", 0.0), ("gan.lr_g", -1e-4), ("encoder.lr", float("nan")), ("gan.lr_d", float("inf")),
    ("data.unseen_voice_fraction", 1.5), ("data.birds_train_classes", 0), ("data.flowers_test_classes", -1),
    ("encoder.epochs", 0), ("encoder.teacher_views", 11), ("eval.fid_image_size", 32),
    ("eval.rprec_candidates", 1), ("data.sample_rate", 8000), ("encoder.cnn_channels", [8, 8, 0, 16, 16, 32, 32, 64]),
    ("seed", -1),
]


@pytest.mark.parametrize("key, value", RANGE_CASES, ids=[f"{k}={v}" for k, v in RANGE_CASES])
def test_config_range_violation_names_key_value_and_range(key, value):
    with pytest.raises(ConfigError) as info:
        get_config("smoke", {key: value})
    msg = str(info.value)
    assert key in msg and "out of range" in msg and "must be" in msg, msg
    shown = value[2] if isinstance(value, list) else value
    assert repr(float(shown) if isinstance(shown, float) else shown) in msg, msg


@pytest.mark.parametrize("overrides, names", [
    ({"gan.branches": 3, "gan.gf_dim": 2}, ["gan.gf_dim", "gan.branches"]),  # each next stage halves channels
    ({"encoder.max_frames": 64, "data.min_frames": 128}, ["encoder.max_frames", "data.min_frames"]),
    ({"encoder.cnn_channels": [8, 8]}, ["encoder.cnn_channels"]),
])
def test_config_keys_that_constrain_each_other(overrides, names):
    with pytest.raises(ConfigError) as info:
        get_config("smoke", overrides)
    assert all(n in str(info.value) for n in names), info.value


def test_config_from_dict_checks_ranges(tmp_path):
    from s2ilib.core.config import config_from_dict

    d = get_config("smoke").to_dict()
    d["gan"]["steps"] = 0
    with pytest.raises(ConfigError, match="gan.steps"):
        config_from_dict(d)


def test_boundary_values_are_accepted():
    cfg = get_config("smoke", {"gan.steps": 1, "gan.ema_decay": 0.0, "gan.branches": 1, "gan.base_size": 8,
                               "data.unseen_voice_fraction": 0.0, "encoder.max_steps": 0, "eval.max_eval_images": 0})
    assert cfg.gan.steps == 1 and cfg.gan.branches == 1


# ----------------------------------------------------------------------------- CLI: one line, exit codes


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("argv, status, names", [
    (["config", "--set", "gan.steps=-5"], 2, ["gan.steps", "-5", "in [1, 10000000]"]),
    (["config", "--set", "gan.steps=0"], 2, ["gan.steps"]),
    (["config", "--set", "gan.ema_decay=5.0"], 2, ["gan.ema_decay", "[0, 1)"]),
    (["config", "--set", "data.images_per_class=0"], 2, ["data.images_per_class"]),
    (["config", "--set", "gan.branches=0"], 2, ["gan.branches"]),
    (["config", "--set", "encoder.batch_size=-1"], 2, ["encoder.batch_size"]),
    (["config", "--set", "gan.stepz=3"], 2, ["gan.stepz"]),  # unknown key
    (["config", "--set", "gan.steps=ten"], 2, ["gan.steps", "integer"]),  # wrong type
    (["config", "--set", "gan.steps"], 2, ["--set", "gan.steps"]),  # not key=value
    (["config", "--preset", "huge"], 2, ["huge"]),
    (["study", "--preset", "smoke", "-p", "novalue"], 2, ["-p", "novalue"]),
    (["config", "--bogus"], 2, ["--bogus"]),  # argparse's own error, on one line
    (["generate", "--model", "x", "--n", "two", "--say", "hi"], 2, ["--n"]),
])
def test_cli_errors_are_one_line_with_exit_code(argv, status, names, capsys):
    assert _run(argv) == status
    captured = capsys.readouterr()
    line = _one_line(captured.err)
    assert line.startswith("s2i"), line
    assert all(n in line for n in names), line
    assert captured.out == ""


def _run(argv) -> int:
    """main()'s status, or the status of the SystemExit argparse raises for a bad command line."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def test_cli_config_subprocess_one_line_exit_2():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "s2ilib.cli", "config", "--set", "gan.steps=-5"],
                          capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    line = _one_line(proc.stderr)
    assert line.startswith("s2i config: gan.steps = -5") and "in [1, 10000000]" in line, line


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(where, capsys):
    argv = ["config", "--set", "gan.ema_decay=5.0"]
    argv = ["--debug", *argv] if where == "before" else [*argv, "--debug"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "ConfigError" in err and "gan.ema_decay" in err


def test_error_classification():
    from s2ilib.speech.audio import AudioError
    from s2ilib.core.errors import UsageError, exit_status, one_line

    assert exit_status(ConfigError("k")) == 2 and exit_status(UsageError("x")) == 2
    assert exit_status(AudioError("a.wav: bad")) == 1 and exit_status(inference.PipelineError("p")) == 1
    assert exit_status(PermissionError(13, "Permission denied", "/out/x.png")) == 1
    assert exit_status(RuntimeError("a bug")) is None and exit_status(KeyError("k")) is None
    assert one_line(PermissionError(13, "Permission denied", "/out/x.png")) == "/out/x.png: Permission denied"
    assert one_line(inference.PipelineError("a\n  b\n")) == "a b"


# ----------------------------------------------------------------------------- s2i generate: a fake pipeline

DIM = 6


def _encoder(dim: int = DIM):
    from s2ilib.models.encoders import SpeechEncoder

    torch.manual_seed(0)
    return SpeechEncoder(cnn_channels=[2] * 8, rnn_type="gru", rnn_hidden=4, out_dim=dim, n_mels=40).eval()


def _save_generator(path: Path, cond_dim: int = DIM) -> None:
    from s2ilib.models.gan import StackGenerator

    torch.manual_seed(0)
    G = StackGenerator(branches=1, base_size=8, gf_dim=4, z_dim=4, ca_dim=4, cond_dim=cond_dim, r_num=0)
    torch.save({"state_dict": G.state_dict(), "kwargs": G.kwargs, "config": {}}, path)


@pytest.fixture
def pipeline(tmp_path, monkeypatch):
    """A generator folder + encoder folder; the encoder loader is replaced by a tiny model."""
    enc_dir = tmp_path / "encoders" / "synth-birds" / "speech_ts"
    enc_dir.mkdir(parents=True)
    (enc_dir / "checkpoint.pt").write_bytes(b"stand-in: the loader is replaced")
    (enc_dir / "config.json").write_text(json.dumps({"kind": "speech_ts", "dataset": "synth-birds"}))
    gan = tmp_path / "gan" / "synth-birds" / "one_stage"
    gan.mkdir(parents=True)
    _save_generator(gan / "generator_ema.pt")
    (gan / "pipeline.json").write_text(json.dumps({"dataset": "synth-birds", "method": "one_stage",
                                                   "encoder": "speech_ts", "encoder_dir": str(enc_dir)}))
    state = {"dim": DIM}
    monkeypatch.setattr("s2ilib.models.loading.load_trained_encoder",
                        lambda d, map_location="cpu": (_encoder(state["dim"]), "speech_ts", None))
    import soundfile as sf

    t = np.arange(16000) / 16000
    wave = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32) / 2
    sf.write(tmp_path / "speech.wav", wave, 16000)
    return {"gan": gan, "enc": enc_dir, "wav": tmp_path / "speech.wav", "state": state, "tmp": tmp_path}


def _generate(p, *extra, out: str | None = "grid.png"):
    argv = ["generate", "--model", str(p["gan"]), *extra]
    if out is not None:
        argv += ["--out", str(p["tmp"] / out)]
    return main(argv)


def test_good_pipeline_generates(pipeline, capsys):
    assert _generate(pipeline, "--wav", str(pipeline["wav"]), "--n", "3") == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["n"] == 3 and out["size"] == 8 and (pipeline["tmp"] / "grid.png").stat().st_size > 50
    assert not list(pipeline["tmp"].glob(".grid.png.*.tmp"))
    assert _generate(pipeline, "--wav", str(pipeline["wav"]), "--n", "1", out="grid.JPG") == 0


@pytest.mark.parametrize("args, out, names", [
    (["--wav", "WAV", "--n", "0"], "g.png", ["--n", "at least 1"]),  # returned one image
    (["--wav", "WAV", "--n", "-3"], "g.png", ["--n"]),
    (["--say", ""], "g.png", ["--say", "empty"]),  # said "give exactly one of --wav or --say"
    (["--say", "   "], "g.png", ["--say", "empty"]),
    (["--wav", "WAV"], "g.txt", ["--out", "g.txt", ".png"]),  # unknown image extension
    (["--wav", "WAV"], "grid", ["--out", "grid"]),  # no extension
    (["--wav", "WAV", "--say", "hello"], "g.png", ["exactly one"]),  # both
    (["--say", "hello", "--voice", "espeak:en-us:r9999:p50:g50"], "g.png", ["--voice", "r9999"]),
    (["--say", "hello", "--voice", "nonsense"], "g.png", ["--voice", "nonsense"]),
])
def test_generate_usage_errors(pipeline, args, out, names, capsys):
    args = [str(pipeline["wav"]) if a == "WAV" else a for a in args]
    assert _generate(pipeline, *args, out=out) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("s2i generate:") and all(n in line for n in names), line
    assert not (pipeline["tmp"] / out).exists()


def test_generate_needs_wav_or_say(pipeline, capsys):
    assert _generate(pipeline) == 2
    assert "exactly one of --wav" in _one_line(capsys.readouterr().err)


def _corrupt(kind: str, path: Path) -> None:
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "text":
        path.write_text("not a checkpoint\n")


@pytest.mark.parametrize("kind", ["empty", "random", "truncated", "text"])
def test_broken_generator_file_is_named(pipeline, kind, capsys):
    _corrupt(kind, pipeline["gan"] / "generator_ema.pt")
    assert _generate(pipeline, "--wav", str(pipeline["wav"])) == 1
    line = _one_line(capsys.readouterr().err)
    assert "generator_ema.pt" in line, line


@pytest.mark.parametrize("kind", ["empty", "random", "text"])
def test_broken_encoder_checkpoint_is_named(pipeline, kind, monkeypatch, capsys):
    monkeypatch.undo()  # the real loader reads the file
    _corrupt(kind, pipeline["enc"] / "checkpoint.pt")
    assert _generate(pipeline, "--wav", str(pipeline["wav"])) == 1
    line = _one_line(capsys.readouterr().err)
    assert str(pipeline["enc"] / "checkpoint.pt") in line, line


def test_missing_generator_and_encoder_files_are_named(pipeline, capsys):
    (pipeline["gan"] / "generator_ema.pt").unlink()
    assert _generate(pipeline, "--wav", str(pipeline["wav"])) == 1
    assert "generator_ema.pt" in _one_line(capsys.readouterr().err)
    (pipeline["enc"] / "checkpoint.pt").unlink()
    assert _generate(pipeline, "--wav", str(pipeline["wav"])) == 1
    assert "checkpoint.pt" in _one_line(capsys.readouterr().err)


@pytest.mark.parametrize("content, names", [
    ("{not json", ["pipeline.json", "not valid JSON"]),
    ("", ["pipeline.json", "not valid JSON"]),
    ('["a", "list"]', ["pipeline.json", "JSON object"]),
    ('{"dataset": "synth-birds", "method": "one_stage"}', ["pipeline.json", "encoder", "encoder_dir"]),
    ('{"dataset": "synth-birds", "method": "one_stage", "encoder": "speech_ts", "encoder_dir": 3}',
     ["pipeline.json", "encoder_dir"]),
    ('{"dataset": "synth-birds", "method": "x", "encoder": "wav2vec", "encoder_dir": "e"}',
     ["pipeline.json", "wav2vec"]),
])
def test_bad_pipeline_json_is_named(pipeline, content, names, capsys):
    (pipeline["gan"] / "pipeline.json").write_text(content)
    assert _generate(pipeline, "--wav", str(pipeline["wav"])) == 1
    line = _one_line(capsys.readouterr().err)
    assert all(n in line for n in names), line


def test_missing_pipeline_json(pipeline, capsys):
    (pipeline["gan"] / "pipeline.json").unlink()
    assert _generate(pipeline, "--wav", str(pipeline["wav"])) == 1
    assert "pipeline.json" in _one_line(capsys.readouterr().err)


def test_encoder_of_another_dataset_is_refused(pipeline, capsys):
    """A birds generator paired with the flowers encoder ran; now refused naming both."""
    (pipeline["enc"] / "config.json").write_text(json.dumps({"kind": "speech_ts", "dataset": "synth-flowers"}))
    assert _generate(pipeline, "--wav", str(pipeline["wav"])) == 1
    line = _one_line(capsys.readouterr().err)
    assert "synth-birds" in line and "synth-flowers" in line and "pipeline.json" in line, line


def test_embedding_size_mismatch_is_refused(pipeline, capsys):
    pipeline["state"]["dim"] = DIM + 2
    assert _generate(pipeline, "--wav", str(pipeline["wav"])) == 1
    line = _one_line(capsys.readouterr().err)
    assert f"{DIM + 2}-d" in line and f"{DIM}-d" in line and "generator_ema.pt" in line, line


def test_encoder_kind_mismatch_is_refused(pipeline, capsys):
    spec = json.loads((pipeline["gan"] / "pipeline.json").read_text())
    (pipeline["gan"] / "pipeline.json").write_text(json.dumps({**spec, "encoder": "speech_cls"}))
    assert _generate(pipeline, "--wav", str(pipeline["wav"])) == 1
    line = _one_line(capsys.readouterr().err)
    assert "speech_cls" in line and "speech_ts" in line, line


def test_unwritable_output_names_the_path(pipeline, capsys):
    blocker = pipeline["tmp"] / "a_file"
    blocker.write_text("x")  # a file where the output folder should be (root ignores read-only modes)
    assert _generate(pipeline, "--wav", str(pipeline["wav"]), out="a_file/sub/grid.png") == 1
    line = _one_line(capsys.readouterr().err)
    assert str(blocker) in line, line


def test_api_checks_n_and_text(pipeline):
    from s2ilib.core.errors import UsageError

    pipe = inference.SpeechToImage(pipeline["gan"])
    wave = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    assert pipe.from_wave(wave, n=2).shape == (2, 3, 8, 8)
    with pytest.raises(UsageError, match="at least 1"):
        pipe.from_wave(wave, n=0)
    with pytest.raises(UsageError, match="empty"):
        pipe.from_sentence("  ", n=1)


def test_full_disk_names_the_output(pipeline, monkeypatch, capsys):
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("torchvision.utils.save_image", full)
    assert _generate(pipeline, "--wav", str(pipeline["wav"]), out="grid.png") == 1
    line = _one_line(capsys.readouterr().err)
    assert str(pipeline["tmp"] / "grid.png") in line and "No space left" in line, line
    assert not list(pipeline["tmp"].glob(".grid.png.*"))


# ----------------------------------------------------------------------------- issue 30: hard edges
# Each case of issue 30 as a new user would try it: the exit status (2 for usage and configuration
# errors, 1 for failures), one line naming the key or file and the problem, and nothing left behind.


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def _roots(tmp_path: Path) -> list[str]:
    return ["--run-root", str(tmp_path / "runs"), "--report-root", str(tmp_path / "reports")]


@pytest.mark.parametrize("setting, names", [
    ("encoder.rnn_type=transformer", ["encoder.rnn_type", "'transformer'", "choose one of gru, lstm"]),
    ("data.tts_engine=nope", ["data.tts_engine", "'nope'", "choose one of espeak"]),
    ("eval.asr_model=../x", ["eval.asr_model", "'../x'", "whisper-tiny.en"]),
    ("encoder.teacher=resnet", ["encoder.teacher", "efficientnet-lite0"]),
    ('data.datasets=["kitchens"]', ["data.datasets", "kitchens", "neither an embedded dataset"]),
])
def test_case1_string_keys_are_checked_when_the_config_is_built(setting, names, capsys):
    """Was: accepted by `s2i config`; `s2i train` ended in a ValueError traceback in the model."""
    _config_refused(setting, names, capsys)


def _config_refused(setting, names, capsys):
    """`s2i config --set setting` exits 2 with one line naming every item of ``names``."""
    assert _run(["config", "--preset", "smoke", "--set", setting]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("s2i config: ") and all(n in line for n in names), line


def test_case1_train_refuses_a_bad_string_before_making_a_folder(tmp_path, capsys):
    """Was: a raw ValueError traceback and an empty `speech_ts@encoder.rnn_type=transformer/` with a `.lock`."""
    argv = ["train", "encoder", "--preset", "smoke", "--dataset", "synth-birds", *_roots(tmp_path),
            "--set", "encoder.rnn_type=transformer"]
    assert _run(argv) == 2
    line = _one_line(capsys.readouterr().err)
    assert line == "s2i train: encoder.rnn_type = 'transformer': choose one of gru, lstm", line
    assert _files(tmp_path) == []


def test_case2_variant_names_are_exact(tmp_path):
    """Was: 0.00040000001 and 0.00040000002 both named `one_stage@gan.lr_g=0.0004` (the smoke preset's own rate)."""
    from s2ilib.core.variants import variant_dir, variant_name

    a, b = (get_config("smoke", {"gan.lr_g": v}) for v in (0.00040000001, 0.00040000002))
    na, nb = variant_name(a, "gan"), variant_name(b, "gan")
    assert na == "gan.lr_g=0.00040000001" and nb == "gan.lr_g=0.00040000002"
    assert variant_dir(tmp_path, "one_stage", a, "gan") != variant_dir(tmp_path, "one_stage", b, "gan")
    assert variant_name(get_config("smoke", {"gan.lr_g": 4e-4}), "gan") == ""  # the preset's own rate
    # names of values `:g` writes exactly stay as they were, so existing run folders keep their names
    assert variant_name(get_config("paper", {"gan.lr_g": 4e-4}), "gan") == "gan.lr_g=0.0004"
    assert variant_name(get_config("paper", {"gan.kl_coef": 0.0, "gan.steps": 3000}), "gan") == "gan.kl_coef=0,gan.steps=3000"
    assert variant_name(get_config("smoke", {"encoder.lr": 1e-5}), "encoder") == "encoder.lr=1e-05"


def test_case2_neighbouring_values_never_share_a_folder():
    from s2ilib.core.variants import variant_name

    for v in (4e-4, 1 / 3, 0.1, 2.5e-7, 123456.789):
        up, down = np.nextafter(v, np.inf), np.nextafter(v, 0.0)
        names = {variant_name(get_config("paper", {"gan.lr_g": float(x)}), "gan") for x in (v, up, down)}
        assert len(names) == 3, names
    # strings a folder name cannot hold as they are: the same sanitised text, told apart by a hash
    d1, d2 = "/data/x/places", "/data_x/places"
    n1, n2 = (variant_name(get_config("smoke", {"data.datasets": ["places"], "data.dataset_dirs": [d]}), "data")
              for d in (d1, d2))
    assert n1 != n2 and "~" in n1, (n1, n2)
    n3, n4 = (variant_name(get_config("smoke", {"data.datasets": ds}), "data")
              for ds in (["synth-flowers", "synth-birds"], ["synth-birds"]))
    assert n3 != n4 and n4 == "data.datasets=synth-birds"


def test_case3_random_bytes_are_not_called_an_unsafe_pickle(pipeline, capsys):
    """Was: "not a safe weights file ... holds objects other than tensors" for random bytes."""
    _corrupt("random", pipeline["gan"] / "generator_ema.pt")
    assert _generate(pipeline, "--wav", str(pipeline["wav"])) == 1
    line = _one_line(capsys.readouterr().err)
    assert str(pipeline["gan"] / "generator_ema.pt") in line and "not a PyTorch checkpoint" in line, line
    assert "corrupt" in line and "safe weights" not in line, line
    assert not (pipeline["tmp"] / "grid.png").exists()


@pytest.mark.parametrize("kind", ["random", "text"])
def test_case3_corrupt_files_through_safe_load(tmp_path, kind):
    from s2ilib.core.runkit import CheckpointError, safe_load

    path = tmp_path / "c.pt"
    path.write_bytes(b"")
    _corrupt(kind, path)
    with pytest.raises(CheckpointError, match=r"c\.pt: cannot read checkpoint: not a PyTorch checkpoint"):
        safe_load(path)
    torch.save({"w": torch.zeros(2)}, path)  # a real checkpoint still loads
    assert safe_load(path)["w"].shape == (2,)


def test_case4_a_device_is_not_a_regular_audio_file(pipeline, tmp_path, capsys):
    """Was: "/dev/null: audio file not found" although the path exists."""
    assert _generate(pipeline, "--wav", "/dev/null") == 1
    line = _one_line(capsys.readouterr().err)
    assert line == "s2i generate: /dev/null: not a regular audio file (a character device)", line
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    assert _generate(pipeline, "--wav", str(fifo)) == 1
    assert "not a regular audio file (a named pipe)" in _one_line(capsys.readouterr().err)
    assert _generate(pipeline, "--wav", str(tmp_path / "none.wav")) == 1  # a missing file still says so
    assert "audio file not found" in _one_line(capsys.readouterr().err)
    assert not (pipeline["tmp"] / "grid.png").exists()


@pytest.mark.parametrize("args, names", [
    (["-p", "gan.steps=5"], ["-p gan.steps", "no selected notebook declares", "--set"]),
    (["-p", "preset=small"], ["-p preset", "own options", "--preset"]),
    (["--only", "99"], ["--only", "'99'", "03_gan_training"]),
])
def test_case5_study_usage_errors_exit_2_before_any_folder(args, names, tmp_path, capsys):
    """Was: exit 1, after `runs/<preset>/.lock` was made."""
    assert _run(["study", "--preset", "smoke", *_roots(tmp_path), *args]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("s2i study: ") and all(n in line for n in names), line
    assert _files(tmp_path) == []


@pytest.mark.parametrize("args, names", [
    (["--only", "03", "-p", "methods=5"], ["-p methods", "expected a list of names", "int 5"]),
    (["--only", "03", "-p", "n_noise=-3"], ["-p n_noise = -3", "out of range", "[1, 64]"]),
    (["--only", "03", "-p", "n_noise=2.5"], ["-p n_noise", "expected an integer", "2.5"]),
    (["--only", "03", "-p", 'methods=["two_stage"]'], ["-p methods", "two_stage", "one_stage"]),
    (["--only", "04", "-p", 'methods=["nope"]'], ["-p methods", "nope"]),
    (["--only", "04", "-p", "methods=[]"], ["-p methods", "empty"]),
    (["--only", "02", "-p", 'encoders=["wav2vec"]'], ["-p encoders", "wav2vec", "speech_ts"]),
    (["--only", "05", "-p", 'rows=["norm", "nope"]'], ["-p rows", "nope", "norm+jel"]),
    (["--only", "05", "-p", 'datasets=["kitchens"]'], ["-p datasets", "kitchens", "synth-birds"]),
    (["--only", "05", "-p", 'schedule={"bogus": 1}'], ["-p schedule", "bogus"]),
    (["--only", "05", "-p", 'schedule={"loss_config": {"gan.steps": -1}}'], ["-p schedule", "gan.steps = -1"]),
    (["--only", "05", "-p", 'schedule={"fid_n": "many"}'], ["-p schedule", "fid_n", "int"]),
    (["--only", "07", "-p", 'methods=["text", "one_stage"]'], ["-p methods", "speech method, then the text"]),
    (["--only", "08", "-p", 'robust_schedule={"conditions": ["loud"]}'], ["-p robust_schedule", "loud"]),
    (["--only", "08", "-p", 'robust_schedule={"queries": 0}'], ["-p robust_schedule", "queries = 0"]),
    (["--only", "08", "-p", 'methods=["text"]'], ["-p methods", "text"]),
    (["--only", "01", "-p", "n_show=0"], ["-p n_show = 0", "[1, 256]"]),
])
def test_case6_notebook_parameters_are_checked_before_papermill(args, names, tmp_path, capsys, monkeypatch):
    """Was: `-p methods=5` a TypeError in cell 4 of notebook 03, `-p n_noise=-3` an overflow in cell 10."""
    import papermill

    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: pytest.fail("papermill started"))
    assert _run(["study", "--preset", "smoke", *_roots(tmp_path), *args]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("s2i study: ") and all(n in line for n in names), line
    assert _files(tmp_path) == []


def test_case6_good_notebook_parameters_pass():
    from s2ilib.core.errors import UsageError
    from s2ilib.study.runner import check_study_arguments

    params = {"methods": ["one_stage"], "n_noise": 2, "n_utterances": 1, "schedule": {"pairs": 3},
              "robust_schedule": {"queries": 4, "conditions": ["clean", "white_0db"]}, "rows": ["norm"],
              "datasets": [], "encoders": ["speech_ts"], "n_show": 4, "n_audio": 1, "n_examples": 2}
    books, declared = check_study_arguments("smoke", 1234, {}, {k: v for k, v in params.items() if k != "methods"}, None)
    assert [b.stem[:2] for b in books] == ["01", "02", "03", "04", "05", "06", "07", "08", "09"]
    books, _ = check_study_arguments("smoke", 1234, {}, params, ["01", "02", "03", "04", "05", "06", "08"])
    assert len(books) == 7
    # one -p goes to every selected notebook that declares it, so it must suit each of them
    assert check_study_arguments("smoke", 1234, {}, {"methods": ["one_stage", "text"]}, ["07"])[0][0].stem[:2] == "07"
    with pytest.raises(UsageError, match="08_robustness"):
        check_study_arguments("smoke", 1234, {}, {"methods": ["one_stage", "text"]}, ["07", "08"])


@pytest.fixture
def fake_flite(tmp_path, monkeypatch):
    """A `flite` on PATH that behaves as Debian's: `-lv` lists its voices; any other -voice speaks
    with its default voice (what made an unknown voice pass unnoticed)."""
    from s2ilib.speech import tts

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    prog = bin_dir / "flite"
    prog.write_text(f"#!{sys.executable}\n" + '''import sys
args = sys.argv[1:]
if args == ["-lv"]:
    print("Voices available: kal awb_time kal16 awb rms slt ")
    sys.exit(0)
import numpy as np, soundfile as sf
t = np.arange(16000) / 16000
sf.write(args[args.index("-o") + 1], (0.3 * np.sin(2 * np.pi * 200 * t)).astype("float32"), 16000)
''')
    prog.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.delitem(tts._INSTANCES, "flite", raising=False)
    yield prog
    tts._INSTANCES.pop("flite", None)


def test_case7_unknown_voice_of_a_command_line_engine_is_refused(pipeline, fake_flite, capsys):
    """Was: `--voice flite:nope:...` ran with flite's default voice."""
    from s2ilib.speech.tts import TTSError, Voice, get_engine

    assert _generate(pipeline, "--say", "a small red bird", "--voice", "flite:nope:r170:p50:g50") == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("s2i generate: --voice 'flite:nope:r170:p50:g50': flite: unknown voice 'nope'"), line
    assert "kal16" in line and not (pipeline["tmp"] / "grid.png").exists()
    engine = get_engine("flite")
    with pytest.raises(TTSError, match="unknown voice 'nope'"):  # the API refuses it too
        engine.synthesize("a small red bird", Voice("flite", "nope"))
    assert engine.synthesize("a small red bird", Voice("flite", "kal16")).size > 1000


@pytest.mark.parametrize("voice", ["espeak:nope:r170:p50:g50", "espeak:en-us+zz9:r170:p50:g50",
                                   "piper:nope:r170:p50:g50", "piper:en_US-joe-medium:r170:p40:g50",
                                   "festival:kal:r170:p50:g50"])
def test_case7_unknown_voices_of_every_engine_are_usage_errors(pipeline, voice, capsys):
    assert _generate(pipeline, "--say", "a small red bird", "--voice", voice) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"s2i generate: --voice '{voice}': "), line
    assert not (pipeline["tmp"] / "grid.png").exists()


def test_case7_every_engine_checks_its_voices():
    from s2ilib.speech import tts

    tts.get_engine("piper")  # registers the lazy engine
    for name in tts.engine_names():
        cls = tts._ENGINES[name]
        assert cls.check_voice is not tts.TTSEngine.check_voice, f"engine {name!r} does not check voices"


@pytest.mark.parametrize("content", [None, "{}", '{"kind": "speech_ts", "dataset": ""}'])
def test_case8_an_encoder_folder_without_its_config_is_refused(pipeline, content, capsys):
    """Was: without config.json the dataset check was skipped and a flowers encoder drove a birds generator."""
    path = pipeline["enc"] / "config.json"
    path.unlink()
    if content is not None:
        path.write_text(content)
    assert _generate(pipeline, "--wav", str(pipeline["wav"])) == 1
    line = _one_line(capsys.readouterr().err)
    assert str(path) in line and ("missing" in line or "records no dataset" in line), line
    assert not (pipeline["tmp"] / "grid.png").exists()


@pytest.mark.parametrize("setting, names", [
    ("gan.steps=99999999999999999999999", ["gan.steps = 99999999999999999999999", "in [1, 10000000]"]),
    ("encoder.epochs=1000000", ["encoder.epochs", "in [1, 10000]"]),
    ("encoder.max_steps=123456789012", ["encoder.max_steps", "10000000"]),
    ("eval.fid_n=99999999999", ["eval.fid_n", "10000000"]),
    ("seed=4294967296", ["seed", "4294967295"]),
    ("gan.lr_g=1" + "0" * 400, ["gan.lr_g", "too large"]),  # was an OverflowError traceback
])
def test_case9_count_keys_have_a_maximum(setting, names, capsys):
    """Was: accepted; a run started and projected an ETA of about 10^18 hours."""
    _config_refused(setting, names, capsys)


def test_case9_train_refuses_a_huge_step_count_before_making_a_folder(tmp_path, capsys):
    argv = ["train", "gan", "--preset", "smoke", "--dataset", "synth-birds", *_roots(tmp_path),
            "--set", "gan.steps=99999999999999999999999"]
    assert _run(argv) == 2
    assert "gan.steps" in _one_line(capsys.readouterr().err)
    assert _files(tmp_path) == []
