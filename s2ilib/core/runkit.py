"""One toolkit for every stage that writes a run folder (both trainers, caches, the study).

* :func:`safe_load` -- ``torch.load(weights_only=True)``: a file is read as tensors and plain
  Python types only, so a planted pickle payload is refused (never run) with the caller's error
  class and a message that names the file.
* :func:`save_checkpoint` / :func:`load_checkpoint` -- atomic write (a kill mid-write keeps the
  previous file) and safe read of a training checkpoint.
* :func:`rng_state` / :func:`set_rng_state` -- the global generators of Python, NumPy, torch CPU
  and CUDA (when present) as tensors and plain types, so a checkpoint stays a safe weights file.
* :func:`check_same_run` -- a run folder is resumed only with the configuration it was started
  with (keys that merely extend or re-time training aside).
* :func:`truncate_jsonl` -- drop log rows written after the checkpoint a run resumes from, so a
  resumed run logs every step once.
* :class:`RunLock` / :func:`writer` -- one writer per run folder (``fcntl.flock`` on
  ``<folder>/.lock``); a second writer is refused at once; a dead holder's lock is free (the
  kernel drops flock locks with the process). :func:`writer` also removes temp files of killed
  atomic writes (``.<name>.*.tmp``, see :mod:`s2ilib.core.io`).
* :func:`session_stamp` / :func:`trained_by` / :func:`reuse_info` -- who trained a run folder: each
  training session (start or resume) is kept in the checkpoint, and the finished folder's
  ``summary.json`` says under ``trained_by`` which commit and machine finished it.
* :func:`die_with_parent` -- a worker-process initializer: the worker gets SIGTERM when its parent
  dies (Linux), so killing a stage never leaves workers behind.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import pickle
import random
import re
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from s2ilib.core.io import torch_save_atomic

LOCK_NAME = ".lock"
# io._tmp_beside: tempfile.mkstemp(prefix=".<name>.", suffix=".tmp") -> ".<name>.<8 random chars>.tmp"
_TMP_RE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, unsafe or does not match the model being resumed."""


class RunLockedError(RuntimeError):
    """Another process is writing the run folder."""


# --------------------------------------------------------------------------------------------
# safe loading


RETRAIN = "if an older s2ilib wrote it, retrain into a new run folder"
RECOMPUTE = "if an older s2ilib wrote this cache, delete it: it is recomputed"


def safe_load(path: str | Path, error: type[Exception] = CheckpointError, what: str = "checkpoint",
              map_location: Any = "cpu", remedy: str = RETRAIN) -> Any:
    """``torch.load(path, weights_only=True)`` with every failure turned into ``error`` naming the file.

    A file holding anything but tensors and plain Python types (a pickled object: possibly code) is refused
    without running it (``remedy`` ends that message); random bytes or text: "not a PyTorch checkpoint"."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: no {what} file")
    if path.stat().st_size == 0:
        raise error(f"{path}: cannot read {what}: the file is empty (0 bytes)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if not _torch_format(path) or "unsupported operand" in str(exc).lower():
            raise error(f"{path}: cannot read {what}: not a PyTorch checkpoint (corrupt, or another kind of "
                        f"file); nothing in it was run") from None
        if "weights only" in str(exc).lower():
            raise error(f"{path}: not a safe weights file ({what}): it holds objects other than tensors and "
                        f"plain types, so it was refused without being run ({remedy})") from None
        raise error(f"{path}: cannot read {what} (not a torch file: {exc})") from None
    except Exception as exc:  # truncated, ...
        raise error(f"{path}: cannot read {what} ({type(exc).__name__}: {exc})") from None


def _torch_format(path: Path) -> bool:
    """Whether the file starts as ``torch.save`` writes: a zip (torch >= 1.6) or a protocol-2 pickle (legacy)."""
    with open(path, "rb") as f:
        head = f.read(4)
    return head == b"PK\x03\x04" or head[:2] == b"\x80\x02"


def require_keys(blob: Any, keys: Iterable[str], path: str | Path, error: type[Exception], what: str) -> dict:
    """``blob`` must be a dict holding ``keys``; else ``error`` naming the file and the missing keys."""
    keys = list(keys)
    if not isinstance(blob, dict):
        raise error(f"{path}: not a {what} (expected a dict with keys {keys}, got {type(blob).__name__})")
    missing = [k for k in keys if k not in blob]
    if missing:
        raise error(f"{path}: not a {what} (missing keys {missing})")
    return blob


# --------------------------------------------------------------------------------------------
# RNG states in safe types


def rng_state() -> dict[str, Any]:
    """States of Python's, NumPy's and torch's (CPU, and CUDA when present) global generators.

    Tensors and plain types only (loadable with ``weights_only=True``).
    """
    import torch

    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64),
                        "gauss": None if gauss is None else float(gauss)},
             "numpy": {"name": str(name), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured (CUDA only where CUDA is present)."""
    import torch

    py = state["python"]
    random.setstate((int(py["version"]), tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].cpu().numpy().astype(np.uint32), int(n["pos"]), int(n["has_gauss"]),
                         float(n["cached_gaussian"])))
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") and torch.cuda.is_available():
        cuda = [s.cpu() for s in state["cuda"]][: torch.cuda.device_count()]
        for i, s in enumerate(cuda):
            torch.cuda.set_rng_state(s, i)


# --------------------------------------------------------------------------------------------
# checkpoints


def save_checkpoint(path: str | Path, state: dict[str, Any], rng: bool = True) -> Path:
    """Write ``state`` (+ the RNG states under ``"rng"``) atomically."""
    return torch_save_atomic({**state, "rng": rng_state()} if rng else dict(state), path)


def load_checkpoint(path: str | Path, error: type[Exception] = CheckpointError, keys: Iterable[str] = (),
                    map_location: Any = "cpu", what: str = "checkpoint", remedy: str = RETRAIN) -> dict[str, Any]:
    """Safe read of a checkpoint written by :func:`save_checkpoint`; checks that ``keys`` are present."""
    blob = safe_load(path, error, what, map_location, remedy)
    return require_keys(blob, keys, path, error, what)


# --------------------------------------------------------------------------------------------
# resume check


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict) and d:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def config_diff(old: dict, new: dict, ignore: Iterable[str] = ()) -> list[str]:
    """Dotted keys whose values differ between two (nested) configs, ``ignore`` keys aside.

    Both sides go through JSON first, so a saved ``config.json`` compares equal to the dict it
    was written from (tuples vs lists, int keys vs str keys).
    """
    norm = lambda d: _flat(json.loads(json.dumps(d, sort_keys=True, default=str)))
    a, b = norm(old), norm(new)
    skip = set(ignore)
    return sorted(k for k in set(a) | set(b) if k not in skip and a.get(k, "<absent>") != b.get(k, "<absent>"))


def with_defaults(saved: Any, section: str, config_class: type) -> Any:
    """A saved run config whose ``saved[section]`` lacks keys of the dataclass ``config_class``
    added since it was written: those set to their defaults (the run had the default then), so a
    new switch does not orphan finished runs."""
    import dataclasses

    if not isinstance(saved, dict) or not isinstance(saved.get(section), dict):
        return saved
    return {**saved, section: {**json.loads(json.dumps(dataclasses.asdict(config_class()))), **saved[section]}}


def check_same_run(folder: str | Path, old: dict, new: dict, ignore: Iterable[str] = (),
                   error: type[Exception] = CheckpointError, hint: str = "") -> None:
    """Refuse to resume ``folder`` (saved config ``old``) with another config ``new``."""
    diff = config_diff(old, new, ignore)
    if not diff:
        return
    a, b = _flat(json.loads(json.dumps(old, default=str))), _flat(json.loads(json.dumps(new, default=str)))
    shown = "; ".join(f"{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}" for k in diff[:6])
    more = f"; and {len(diff) - 6} more" if len(diff) > 6 else ""
    raise error(f"{folder}: this run folder belongs to another configuration (differs in {diff}: "
                f"{shown}{more}){hint}; use a new run folder or delete this one")


# --------------------------------------------------------------------------------------------
# logs


def truncate_jsonl(path: str | Path, step: int, inclusive: bool = True) -> None:
    """Keep the rows of a jsonl log whose ``step`` is <= ``step`` (< with ``inclusive=False``).

    Rows written after the checkpoint a run resumes from are redone, so they would appear twice;
    a torn last line (a kill mid-write) is dropped too.
    """
    from s2ilib.core.io import atomic_write_text

    path = Path(path)
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        s = row.get("step", 0) if isinstance(row, dict) else 0
        if s < step or (inclusive and s == step):
            keep.append(line)
    atomic_write_text(path, "".join(ln + "\n" for ln in keep))


# --------------------------------------------------------------------------------------------
# one writer per folder


def remove_stale_tmp(folder: str | Path) -> list[Path]:
    """Remove temp files of killed atomic writes (``.<name>.XXXXXXXX.tmp``) directly in ``folder``.

    Call it only while holding the folder's lock: a live writer's temp file would go too.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    gone = []
    for p in folder.glob(".*.tmp"):
        if p.is_file() and _TMP_RE.match(p.name):
            p.unlink(missing_ok=True)
            gone.append(p)
    return gone


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        info = {}
    pid = info.get("pid")
    if pid is None:
        return "another process (pid unknown)"
    mine = " (this process)" if pid == os.getpid() and info.get("host") == socket.gethostname() else ""
    return f"pid {pid}{mine} on host {info.get('host', '?')} since {info.get('since', '?')}"


class RunLock:
    """Advisory exclusive lock on a run folder: ``<folder>/<name>`` locked with ``fcntl.flock``.

    The lock file holds the holder's pid, host and start time. A second writer (another process,
    or another lock object in this one) is refused at once with :class:`RunLockedError`. The kernel
    releases the lock when the holder dies, so a stale lock file is simply taken over.
    """

    def __init__(self, folder: str | Path, name: str = LOCK_NAME):
        self.folder = Path(folder)
        self.path = self.folder / name
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "RunLock":
        import fcntl

        if self._fd is not None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise RunLockedError(f"{self.folder}: another writer holds this run folder ({_holder(self.path)}); "
                                 f"wait for it to finish or stop it (lock file {self.path})") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "since": time.strftime("%Y-%m-%dT%H:%M:%S"), "argv": sys.argv[:3]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        import fcntl

        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # the file stays (unlinking a lock file races with a new locker)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self):  # pragma: no cover - a forgotten lock is released with its object
        with contextlib.suppress(Exception):
            self.release()


@contextlib.contextmanager
def writer(folder: str | Path, name: str = LOCK_NAME, clean: bool = True) -> Iterator[RunLock]:
    """Hold the folder's :class:`RunLock` for a stage; first remove temp files of killed writes."""
    with RunLock(folder, name) as lock:
        if clean:
            remove_stale_tmp(folder)
        yield lock


# --------------------------------------------------------------------------------------------
# who trained a run folder


NOT_RECORDED = "not recorded (trained before provenance was kept)"


def session_stamp(step: int = 0) -> dict[str, Any]:
    """One training session (a start at step 0 or a resume at ``step``): commit, dirty tree, start
    time and CPU, in plain types (the checkpoints keep the list of sessions)."""
    from s2ilib.core.results import _cpu_name, git_commit, now

    return {**git_commit(), "started": now(), "cpu": _cpu_name(), "from_step": int(step)}


def trained_by(sessions: Iterable[dict] = ()) -> dict[str, Any]:
    """``trained_by`` of a finished run folder's summary: the commit and machine that finished the
    training (``commit``, ``dirty``, ``finished``, ``cpu``, ``hardware``), ``started_by`` (the
    session that started it at step 0; None if its checkpoint predates provenance) and every
    session, oldest first."""
    from s2ilib.core.hardware import hardware_info
    from s2ilib.core.results import _cpu_name, git_commit, now

    sessions = [dict(s) for s in sessions]
    first = sessions[0] if sessions and sessions[0].get("from_step") == 0 else None
    return {**git_commit(), "finished": now(), "cpu": _cpu_name(), "hardware": hardware_info(),
            "started_by": first, "sessions": sessions}


def reuse_info(summary: dict[str, Any]) -> dict[str, Any]:
    """What a results entry says of a run folder: ``reused`` (finished earlier, not trained by this
    call) and the summary's ``trained_by``; None with ``trained_by_note`` if the folder lacks it."""
    by = summary.get("trained_by")
    out: dict[str, Any] = {"reused": bool(summary.get("reused", False)), "trained_by": by}
    if by is None:
        out["trained_by_note"] = NOT_RECORDED
    return out


# --------------------------------------------------------------------------------------------
# worker processes


PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None, sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux ``prctl``).

    For pool initializers. ``parent_pid``: the parent's pid seen before the fork; if the parent
    is already gone when this runs, the process exits at once. Returns whether it is armed.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if parent_pid is not None and os.getppid() != parent_pid:  # the parent died before prctl
        os._exit(1)
    return True


def parent_death_signal() -> int:
    """The signal this process gets when its parent dies (0: none); reads ``PR_GET_PDEATHSIG``."""
    if not sys.platform.startswith("linux"):
        return 0
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    out = ctypes.c_int(0)
    libc.prctl(2, ctypes.byref(out), 0, 0, 0)  # PR_GET_PDEATHSIG
    return int(out.value)
