"""Read the committed report, not the working copy a rerun of the study has just rewritten.

``make study`` rewrites ``reports/<preset>/`` (and so would any user following the README), so a
test of *the committed report* must read the files as they are in the commit under test: through
``git show HEAD:<path>``. Outside a git checkout (an unpacked archive) the working copy is all there
is and it is read as it stands; :func:`source` says which was read.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _git_show(rel: str) -> str | None:
    try:
        out = subprocess.run(["git", "show", f"HEAD:{rel}"], cwd=ROOT, capture_output=True, text=True, check=False)
    except FileNotFoundError:  # no git on the machine
        return None
    if out.returncode == 0:
        return out.stdout
    inside = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=ROOT, capture_output=True, text=True)
    if inside.returncode == 0:  # a checkout whose HEAD lacks the file: that is a failure, not a fallback
        raise FileNotFoundError(f"{rel} is not in the commit under test (HEAD): {out.stderr.strip()}")
    return None


def source() -> str:
    """'HEAD' when the committed files are read through git, else 'working copy'."""
    return "HEAD" if _git_show("README.md") is not None else "working copy"


def text(rel: str) -> str:
    """The committed text of ``rel`` (a path relative to the project root)."""
    shown = _git_show(rel)
    return shown if shown is not None else (ROOT / rel).read_text()


def results(preset: str = "small") -> dict[str, Any]:
    """The committed ``reports/<preset>/results.json``."""
    return json.loads(text(f"reports/{preset}/results.json"))
