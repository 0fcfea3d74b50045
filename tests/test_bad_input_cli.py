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
    (["config", "--set", "gan.steps=-5"], 2, ["gan.steps", "-5", ">= 1"]),
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
    assert line.startswith("s2i config: gan.steps = -5") and ">= 1" in line, line


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
