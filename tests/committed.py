"""Read the committed report, not the working copy a rerun of the study has just rewritten.

``make study`` rewrites ``reports/<preset>/`` (and so would any user following the README), so a
test of *the committed report* must read the files as they are in the commit under test: through
``git show HEAD:<path>`` (:class:`s2ilib.core.gitfiles.ReportFiles`). Outside a git checkout (an
unpacked archive) the working copy is all there is and it is read as it stands; :func:`source` says
which was read.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from s2ilib.core.gitfiles import ReportFiles, is_git_checkout

ROOT = Path(__file__).resolve().parents[1]


def files() -> ReportFiles:
    return ReportFiles(ROOT, "HEAD" if is_git_checkout(ROOT) else None)


def source() -> str:
    """'HEAD' when the committed files are read through git, else 'working copy'."""
    return "HEAD" if is_git_checkout(ROOT) else "working copy"


def text(rel: str) -> str:
    """The committed text of ``rel`` (a path relative to the project root)."""
    return files().text(rel)


def results(preset: str = "small") -> dict[str, Any]:
    """The committed ``reports/<preset>/results.json``."""
    return json.loads(text(f"reports/{preset}/results.json"))
