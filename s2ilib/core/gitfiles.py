"""Read a report as committed (``git show <rev>:<path>``) or from a folder, through one interface.

``make study`` rewrites ``reports/<preset>/`` in the working copy, so whoever compares a rerun with
*the committed report* (``s2i verify``, the tests of the committed report) reads it from git.
"""
from __future__ import annotations

import subprocess
from pathlib import Path


class ReportSourceError(FileNotFoundError):
    """A committed file or folder that does not exist where it was looked for."""


def project_root() -> Path:
    return Path(__file__).resolve().parents[2]


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:  # no git on the machine
        raise ReportSourceError(f"git is not installed, so {root} cannot be read at a commit") from exc


def is_git_checkout(root: str | Path | None = None) -> bool:
    try:
        return _git(Path(root or project_root()), "rev-parse", "--is-inside-work-tree").returncode == 0
    except ReportSourceError:
        return False


class ReportFiles:
    """Files under ``root`` either at git revision ``rev`` (``rev=None``: the folder as it stands)."""

    def __init__(self, root: str | Path | None = None, rev: str | None = "HEAD"):
        self.root, self.rev = Path(root or project_root()), rev
        if rev is not None and _git(self.root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").returncode:
            raise ReportSourceError(f"{self.root}: {rev!r} is not a commit of this repository")

    def __str__(self) -> str:
        return f"{self.root} at {self.rev}" if self.rev else str(self.root)

    def text(self, rel: str) -> str:
        if self.rev is None:
            path = self.root / rel
            if not path.is_file():
                raise ReportSourceError(f"{path}: no such file")
            return path.read_text()
        out = _git(self.root, "show", f"{self.rev}:{rel}")
        if out.returncode:
            raise ReportSourceError(f"{rel}: not in commit {self.rev} of {self.root} ({out.stderr.strip()})")
        return out.stdout

    def exists(self, rel: str) -> bool:
        if self.rev is None:
            return (self.root / rel).is_file()
        return _git(self.root, "cat-file", "-e", f"{self.rev}:{rel}").returncode == 0

    def glob(self, prefix: str, name: str) -> list[str]:
        """Relative paths under folder ``prefix`` whose file name is ``name``, sorted."""
        if self.rev is None:
            return sorted(str(p.relative_to(self.root)) for p in (self.root / prefix).rglob(name))
        out = _git(self.root, "ls-tree", "-r", "--name-only", self.rev, "--", prefix)
        return sorted(p for p in out.stdout.splitlines() if Path(p).name == name)
