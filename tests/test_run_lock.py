"""One writer per run folder, leftovers of killed runs, resumed logs without duplicate rows."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from s2ilib.core import runkit
from s2ilib.core.config import DataConfig, EncoderConfig, get_config
from s2ilib.core.runkit import RunLock, RunLockedError
from s2ilib.training.gan_trainer import GanCheckpointError, train_gan

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[1]


def _python(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")  # a zombie has ended (its new parent may not reap it in a container)


def test_second_writer_is_refused_naming_pid_and_folder(tmp_path):
    with RunLock(tmp_path):
        info = json.loads((tmp_path / ".lock").read_text())
        assert info["pid"] == os.getpid()
        with pytest.raises(RunLockedError) as err:
            RunLock(tmp_path).acquire()  # another lock object, even in this process
        assert str(tmp_path) in str(err.value) and f"pid {os.getpid()}" in str(err.value)
    with RunLock(tmp_path):  # released: free again
        pass


def test_stale_lock_of_a_killed_process_is_taken_over(tmp_path):
    child = _python(f"from s2ilib.core.runkit import RunLock; import time; lock = RunLock({str(tmp_path)!r}).acquire(); "
                    "print('locked', flush=True); time.sleep(60)")
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=f"pid {child.pid} "):
            RunLock(tmp_path).acquire()
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        with RunLock(tmp_path):  # the kernel dropped the dead holder's lock: taken over at once
            assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    finally:
        child.kill()
        child.wait()


def _gan_data():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8, generator=g)
    cls = torch.arange(8) % 2
    idx = torch.arange(12) % 8
    return images, torch.randn(12, 6, generator=g), idx, cls


def _gan_cfg(**kw):
    base = dict(base_size=8, gf_dim=8, df_dim=4, z_dim=8, ca_dim=6, r_num=1, batch_size=4, steps=4,
                sample_every=100, ckpt_every=2, branches=1)
    return dataclasses.replace(get_config("smoke").gan, **{**base, **kw})


def test_temp_files_of_killed_writes_are_removed_at_start(tmp_path):
    leftovers = [tmp_path / ".checkpoint.pt.k2j4_x9a.tmp", tmp_path / ".log.jsonl.abcdefgh.tmp"]
    keep = [tmp_path / "notes.tmp", tmp_path / ".hidden", tmp_path / ".checkpoint.pt.short.tmp"]
    for p in leftovers + keep:
        p.write_text("x")
    train_gan(*_gan_data(), _gan_cfg(), tmp_path, progress=False)
    assert not any(p.exists() for p in leftovers)
    assert all(p.exists() for p in keep)


def test_two_gan_trainings_on_one_folder_second_refused(tmp_path):
    data = _gan_data()
    started, go_on = threading.Event(), threading.Event()
    result: dict = {}

    def pause(step, record):
        if step == 1:
            started.set()
            go_on.wait(30)

    def first():
        try:
            result["a"] = train_gan(*data, _gan_cfg(), tmp_path, seed=1, progress=False, callback=pause)
        except BaseException as exc:  # pragma: no cover - reported below
            result["a"] = exc

    t = threading.Thread(target=first)
    t.start()
    try:
        assert started.wait(30)
        with pytest.raises(RunLockedError) as err:  # B, another config, while A trains
            train_gan(*data, _gan_cfg(gf_dim=16), tmp_path, seed=1, progress=False)
        assert str(tmp_path) in str(err.value) and f"pid {os.getpid()}" in str(err.value)
    finally:
        go_on.set()
        t.join(60)
    assert isinstance(result["a"], dict) and result["a"]["steps_run"] == 4
    # the folder is A's alone
    assert json.loads((tmp_path / "config.json").read_text())["gan"]["gf_dim"] == 8
    assert [json.loads(x)["step"] for x in (tmp_path / "log.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    with pytest.raises(GanCheckpointError, match=r"gan\.gf_dim"):  # and B later still is not A's run
        train_gan(*data, _gan_cfg(gf_dim=16), tmp_path, seed=1, progress=False)


def _metric_keys(path: Path) -> list[tuple]:
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    return [(r["step"], r["split"], r.get("condition")) for r in rows]


def test_resumed_encoder_run_has_no_duplicate_metrics_rows(tmp_path, monkeypatch):
    from test_train_encoder import DIM, VIEWS, FakeDataset, _cfg

    import s2ilib.training.encoder_trainer as TE

    ds = FakeDataset()
    feats = torch.randn(len(ds.images), VIEWS, DIM, generator=torch.Generator().manual_seed(2))
    TE.train_encoder("speech_ts", ds, feats, _cfg(), tmp_path / "full", seed=3, progress=False)
    ref = _metric_keys(tmp_path / "full" / "metrics.jsonl")
    assert len(ref) == len(set(ref)) and (8, "val", None) in ref and (8, "test", "seen") in ref

    # killed mid-way (after the val row of step 4, last checkpoint at 3), then resumed
    TE.train_encoder("speech_ts", ds, feats, _cfg(), tmp_path / "a", seed=3, progress=False, stop_at=5)
    TE.train_encoder("speech_ts", ds, feats, _cfg(), tmp_path / "a", seed=3, progress=False)
    assert _metric_keys(tmp_path / "a" / "metrics.jsonl") == ref

    # killed while exporting embeddings (after the final checkpoint and the final val row), then resumed
    real_export = TE.export_embeddings

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(TE, "export_embeddings", killed)
    with pytest.raises(KeyboardInterrupt):
        TE.train_encoder("speech_ts", ds, feats, _cfg(), tmp_path / "b", seed=3, progress=False)
    monkeypatch.setattr(TE, "export_embeddings", real_export)
    TE.train_encoder("speech_ts", ds, feats, _cfg(), tmp_path / "b", seed=3, progress=False)
    assert _metric_keys(tmp_path / "b" / "metrics.jsonl") == ref


def test_every_stage_holds_its_folder_lock(tmp_path):
    from dataclasses import dataclass

    from s2ilib.study.runner import run_study
    from s2ilib.data.spoken import synthesize_dataset_speech
    from s2ilib.models.teacher import compute_teacher_features
    from s2ilib.training.encoder_trainer import train_encoder

    def refused(folder: Path, call, name: str = ".lock"):
        with RunLock(folder, name):
            with pytest.raises(RunLockedError, match=str(folder)):
                call()

    refused(tmp_path / "enc", lambda: train_encoder("speech_ts", None, torch.zeros(1, 1, 2), EncoderConfig(),
                                                    tmp_path / "enc", progress=False))
    refused(tmp_path / "gan", lambda: train_gan(*_gan_data(), _gan_cfg(), tmp_path / "gan", progress=False))
    # two `s2i study` on one run folder: the second is refused before it touches anything
    refused(tmp_path / "runs" / "smoke", lambda: run_study("smoke", run_root=tmp_path / "runs",
                                                           report_root=tmp_path / "reports", progress=False))
    assert not (tmp_path / "reports").exists()

    @dataclass
    class Rec:
        key: str
        path: Path

    class Images:
        name, root = "tiny", tmp_path
        images = [Rec("a", tmp_path / "a.png")]

        def fingerprint(self):
            return "fp"

        def split(self, name):
            return []

    refused(tmp_path / "teacher", lambda: compute_teacher_features(Images(), EncoderConfig(),
                                                                   tmp_path / "teacher" / "t.pt", progress=False))
    refused(tmp_path / "data", lambda: synthesize_dataset_speech(Images(), tmp_path / "data" / "speech", DataConfig(),
                                                                 seed=1, progress=False), name=".speech.lock")


def test_speech_workers_die_with_their_parent():
    code = ("import os, time\n"
            "from s2ilib.data.spoken import synthesis_pool\n"
            "from s2ilib.core.runkit import parent_death_signal\n"
            "pool = synthesis_pool(2)\n"
            "sigs = set(pool.starmap(parent_death_signal, [()] * 8, chunksize=1))\n"
            "print(' '.join(str(p.pid) for p in pool._pool), *sigs, flush=True)\n"
            "time.sleep(60)\n")
    parent = _python(code)
    try:
        *pids, sig = map(int, parent.stdout.readline().split())
        assert sig == signal.SIGTERM and pids
        assert not any(_gone(p) for p in pids)
        parent.send_signal(signal.SIGKILL)  # as a killed study: no cleanup code runs in the parent
        parent.wait(10)
        deadline = time.time() + 10
        while time.time() < deadline and not all(_gone(p) for p in pids):
            time.sleep(0.1)
        assert all(_gone(p) for p in pids), "speech workers outlived their parent"
    finally:
        parent.kill()
        parent.wait()


def test_truncate_jsonl_and_config_diff(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"step": 4, "x"')  # torn last line
    runkit.truncate_jsonl(log, 2)
    assert log.read_text() == '{"step": 1}\n{"step": 2}\n'
    runkit.truncate_jsonl(log, 2, inclusive=False)
    assert log.read_text() == '{"step": 1}\n'
    old = {"encoder": {"lr": 1, "epochs": 3, "sizes": (1, 2)}, "seed": 1}
    assert runkit.config_diff(old, {"encoder": {"lr": 1, "epochs": 5, "sizes": [1, 2]}, "seed": 1},
                              ignore={"encoder.epochs"}) == []
    with pytest.raises(ValueError, match=r"run folder belongs to another configuration.*encoder\.lr.*seed"):
        runkit.check_same_run(tmp_path, old, {"encoder": {"lr": 2, "epochs": 3, "sizes": [1, 2]}, "seed": 2},
                              error=ValueError)
