"""Every file the project reads back is loaded as a safe weights file (``weights_only=True``).

A pickle payload (an object whose ``__reduce__`` creates a marker file) is planted, with
``torch.save``, at the path each loader reads; the loader must refuse it with the project's error
for that file, naming the file, and the marker must not exist (the payload never ran).
"""
from __future__ import annotations

import dataclasses
import pathlib
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from s2ilib.evaluation import attribute_reader as AR
from s2ilib.evaluation import metrics as M
from s2ilib.core import runkit
from s2ilib.training.checkpoint import CheckpointError, load_checkpoint
from s2ilib.core.config import EncoderConfig, get_config
from s2ilib.models.embedding import EmbeddingsError
from s2ilib.study.stages import RunPaths, load_embeddings
from s2ilib.models.teacher import Teacher, TeacherError, compute_teacher_features
from s2ilib.models.loading import GanCheckpointError, load_generator, load_trained_encoder
from s2ilib.training.encoder_trainer import train_encoder
from s2ilib.training.gan_trainer import train_gan

pytestmark = pytest.mark.usefixtures("one_thread")


class Payload:
    """Unpickling this object creates ``marker`` (what a hostile file could do instead: anything)."""

    def __init__(self, marker: Path):
        self.marker = pathlib.Path(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def plant(path: Path, marker: Path) -> Path:
    """A file that looks like a checkpoint, with the payload nested inside."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {"w": torch.zeros(2)}, "state_dict": {}, "extra": {"x": [Payload(marker)]}}, path)
    return path


def test_the_payload_runs_when_loaded_unsafely(tmp_path):
    """The planted file really executes code under ``weights_only=False`` (so the tests below can fail)."""
    marker = tmp_path / "pwned"
    torch.load(plant(tmp_path / "f.pt", marker), weights_only=False)
    assert marker.exists()


# --------------------------------------------------------------------------------------------
# one loader per kind of file: (file name relative to tmp_path, call(tmp_path) -> loads it, error)


@dataclass
class _Rec:
    key: str
    path: Path


class _Images:
    name, root = "tiny", Path("/nonexistent")
    images = [_Rec("a", Path("/nonexistent/a.png")), _Rec("b", Path("/nonexistent/b.png"))]


def _gan_cfg():
    return dataclasses.replace(get_config("smoke").gan, base_size=8, gf_dim=8, df_dim=4, z_dim=8, ca_dim=6, r_num=1,
                               batch_size=4, steps=2, branches=1)


def _train_gan(root: Path):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8, generator=g)
    cls = torch.arange(6) % 2
    idx = torch.arange(6)
    return train_gan(images, torch.randn(6, 4, generator=g), idx, cls, _gan_cfg(), root / "gan", progress=False)


def _train_encoder(root: Path):
    from test_train_encoder import DIM, VIEWS, FakeDataset, _cfg

    ds = FakeDataset()
    return train_encoder("speech_ts", ds, torch.zeros(len(ds.images), VIEWS, DIM), _cfg(), root / "enc",
                         progress=False)


CASES = {
    "encoder checkpoint": ("enc/checkpoint.pt", lambda r: load_checkpoint(r / "enc/checkpoint.pt"), CheckpointError),
    "encoder resume": ("enc/checkpoint.pt", _train_encoder, CheckpointError),
    "trained encoder": ("enc/checkpoint.pt", lambda r: load_trained_encoder(r / "enc"), CheckpointError),
    "GAN resume": ("gan/checkpoint.pt", _train_gan, GanCheckpointError),
    "generator_ema": ("gan/generator_ema.pt", lambda r: load_generator(r / "gan/generator_ema.pt"),
                      GanCheckpointError),
    "teacher cache": ("teacher/cache.pt",
                      lambda r: compute_teacher_features(_Images(), EncoderConfig(), r / "teacher/cache.pt",
                                                         progress=False), TeacherError),
    "googlenet weights": ("g.pth", lambda r: Teacher("googlenet", weights=str(r / "g.pth")), TeacherError),
    "embeddings": ("run/encoders/ds/speech_ts/embeddings.pt",
                   lambda r: load_embeddings(RunPaths(r / "run", r / "rep"), "ds", "speech_ts"), EmbeddingsError),
    "real-feature cache": ("eval/real.pt",
                           lambda r: M.cached_real_features(r / "eval/real.pt", lambda: torch.zeros(3, 2)),
                           M.MetricsFileError),
    "IS head": ("eval/is_head.pt", lambda r: M.load_is_head(r / "eval/is_head.pt"), M.MetricsFileError),
    "attribute reader": ("eval/reader.pt", lambda r: AR.load_attribute_reader(r / "eval/reader.pt"),
                         AR.AttributeReaderError),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_payload_is_refused_and_never_runs(tmp_path, kind):
    rel, load, error = CASES[kind]
    marker = tmp_path / "pwned"
    path = plant(tmp_path / rel, marker)
    with pytest.raises(error) as info:
        load(tmp_path)
    msg = str(info.value)
    assert str(path) in msg and "not a safe weights file" in msg, msg
    assert not marker.exists(), f"{kind}: the payload ran"


def test_old_format_and_corrupt_files_get_clear_errors(tmp_path):
    old = tmp_path / "old.pt"  # what the trainers wrote before: RNG states as numpy arrays
    torch.save({"model": {}, "step": 3, "epoch": 0, "batch_in_epoch": 0, "rng": {"numpy": np.random.get_state()}}, old)
    with pytest.raises(CheckpointError, match="older s2ilib wrote it, retrain"):
        load_checkpoint(old)
    cut = tmp_path / "cut.pt"
    torch.save({"model": {"w": torch.zeros(100)}}, cut)
    cut.write_bytes(cut.read_bytes()[:50])
    with pytest.raises(CheckpointError, match=r"cut\.pt: cannot read"):
        load_checkpoint(cut)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(GanCheckpointError, match=r"empty\.pt: cannot read generator"):
        load_generator(tmp_path / "empty.pt")
    torch.save({"state_dict": {}}, tmp_path / "nokw.pt")
    with pytest.raises(GanCheckpointError, match=r"nokw\.pt: not a generator checkpoint \(missing keys \['kwargs'\]"):
        load_generator(tmp_path / "nokw.pt")


def test_rng_state_is_plain_and_restores_every_generator(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    runkit.save_checkpoint(tmp_path / "c.pt", {"step": 1})
    draws = (random.random(), float(np.random.rand()), float(torch.rand(1)), np.random.randn())
    blob = torch.load(tmp_path / "c.pt", weights_only=True)  # loadable as a safe file
    runkit.set_rng_state(blob["rng"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(1)), np.random.randn()) == draws
    # a cached Gaussian of NumPy's legacy generator survives too
    np.random.seed(5)
    np.random.randn()  # leaves the second value of the pair cached
    st = runkit.rng_state()
    expected = np.random.randn()
    runkit.set_rng_state(st)
    assert np.random.randn() == expected


def test_written_files_hold_only_plain_types(tmp_path):
    """embeddings.pt, both checkpoints and generator_ema.pt load with weights_only (tests above train)."""
    summary = _train_gan_ok(tmp_path)
    for name in ("checkpoint.pt", "generator_ema.pt"):
        torch.load(tmp_path / "gan" / name, weights_only=True)
    assert summary["steps"] == 2


def _train_gan_ok(root: Path):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8, generator=g)
    return train_gan(images, torch.randn(6, 4, generator=g), torch.arange(6), torch.arange(6) % 2, _gan_cfg(),
                     root / "gan", progress=False)
