"""Reading the files of a dataset layout: UTF-8 text, JSON and id tables with line-numbered
:class:`~s2ilib.data.records.DatasetError` messages, and the path-safety checks (every listed path
stays inside its base folder; class names are single folder names)."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from s2ilib.data.records import DatasetError


def _need(path: Path) -> Path:
    if not path.is_file():
        raise DatasetError(f"{path}: required file is missing")
    return path


def _read_text(path: Path) -> str:
    """A UTF-8 text file without its byte-order mark, if any."""
    try:
        return _need(path).read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc})") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None


def _read_table(path: Path, n_fields: int, types: tuple, unique: bool = True) -> list[tuple]:
    """Whitespace-separated lines with ``n_fields`` fields (the last may contain spaces if str).

    ``unique``: the first field is an id that may appear once (a repeat is an error naming both lines).
    """
    rows, seen = [], {}
    text_last = types[-1] is str
    for lineno, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=n_fields - 1) if text_last else line.split()
        if len(parts) != n_fields:
            raise DatasetError(f"{path}:{lineno}: expected {n_fields} fields, got {len(parts)}: {line!r}")
        try:
            row = tuple(t(p) for t, p in zip(types, parts))
        except ValueError as exc:
            raise DatasetError(f"{path}:{lineno}: bad value in {line!r} ({exc})") from None
        if unique:
            if row[0] in seen:
                raise DatasetError(f"{path}:{lineno}: duplicate id {row[0]} (first on line {seen[row[0]]})")
            seen[row[0]] = lineno
        rows.append(row + (lineno,))
    return rows


def _read_lines(path: Path) -> list[str]:
    return [ln.strip() for ln in _read_text(path).splitlines() if ln.strip()]


def _read_captions(path: Path) -> list[str]:
    try:
        raw = _need(path).read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: captions are not UTF-8 text ({exc})") from None
    caps = [ln.strip() for ln in raw.splitlines() if ln.strip()]
    if not caps:
        raise DatasetError(f"{path}: caption file has no captions")
    return caps


def _check_class_name(name: str, where: str) -> str:
    """A class folder name: one path component, not ``.`` / ``..``, no separators or NUL."""
    if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise DatasetError(f"{where}: bad class name {name!r} (must be one folder name: no path separator, "
                           "not '.' or '..')")
    return name


def _safe_rel(rel: str, where: str, what: str = "path") -> str:
    """A relative path with no ``..`` component, not absolute: lexical check of a listed path."""
    if not isinstance(rel, str) or not rel.strip():
        raise DatasetError(f"{where}: {what} must be a non-empty string, got {rel!r}")
    pure = Path(rel)
    if pure.is_absolute() or rel.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", rel) or "\0" in rel \
            or any(part == ".." for part in re.split(r"[/\\]", rel)):
        raise DatasetError(f"{where}: {what} {rel!r} leads outside the dataset folder "
                           "(absolute or with '..')")
    return rel


def _inside(base: Path, rel: str, where: str, what: str = "path", base_real: Path | None = None) -> Path:
    """``base / rel`` after checking that it stays inside ``base`` (lexically and after
    following symlinks). Returns the unresolved path ``base / rel``."""
    _safe_rel(rel, where, what)
    path = base / rel
    real_base = base_real if base_real is not None else base.resolve()
    try:
        path.resolve().relative_to(real_base)
    except ValueError:
        raise DatasetError(f"{where}: {what} {rel!r} leads outside {base} (through a symlink to "
                           f"{path.resolve()})") from None
    return path


def _class_split(root: Path, classes: list[str]) -> dict[str, str]:
    """class dir -> split from ``trainvalclasses.txt`` / ``testclasses.txt``."""
    train, test = _read_lines(root / "trainvalclasses.txt"), _read_lines(root / "testclasses.txt")
    split = {c: "train" for c in train}
    for c in test:
        if c in split:
            raise DatasetError(f"{root / 'testclasses.txt'}: class {c!r} is also in trainvalclasses.txt")
        split[c] = "test"
    unknown = [c for c in split if c not in classes]
    if unknown:
        raise DatasetError(f"{root / 'trainvalclasses.txt'} / testclasses.txt name unknown classes {unknown[:5]}")
    return split
