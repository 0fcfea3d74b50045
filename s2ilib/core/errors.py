"""How the command line reports errors: one line naming the file or key, and an exit status.

* usage errors (exit 2): :class:`UsageError` (a bad command-line argument) and
  :class:`s2ilib.core.config.ConfigError` (a bad configuration key or value);
* failures (exit 1): every other exception defined in an ``s2ilib`` module (``AudioError``,
  ``DatasetError``, ``PipelineError``, ``TTSError``, ``EvaluationError``, ``StudyError``, ...) and
  ``OSError`` (a missing, unreadable, read-only or full file or folder; the message names the path).

Anything else is a bug and keeps its traceback; ``s2i --debug`` shows the traceback of every error.
"""
from __future__ import annotations

import os

EXIT_FAILURE = 1
EXIT_USAGE = 2


class UsageError(ValueError):
    """A command-line argument (or an API argument mirroring one) is invalid."""


def is_project_error(exc: BaseException) -> bool:
    """Defined in an ``s2ilib`` module (the project's own exception classes)."""
    return type(exc).__module__.split(".")[0] == "s2ilib"


def is_usage_error(exc: BaseException) -> bool:
    from s2ilib.core.config import ConfigError

    return isinstance(exc, (UsageError, ConfigError))


def exit_status(exc: BaseException) -> int | None:
    """2 for usage errors, 1 for other project errors and OSError, None for anything else (a bug)."""
    if is_usage_error(exc):
        return EXIT_USAGE
    if is_project_error(exc) or isinstance(exc, OSError):
        return EXIT_FAILURE
    return None


def one_line(exc: BaseException) -> str:
    """The exception's message on one line; an OSError names its path(s) and the problem."""
    if isinstance(exc, OSError) and not is_project_error(exc) and exc.filename is not None:
        problem = exc.strerror or (os.strerror(exc.errno) if exc.errno else "") or type(exc).__name__
        where = os.fsdecode(exc.filename)
        if exc.filename2 is not None:
            where += f" -> {os.fsdecode(exc.filename2)}"
        text = f"{where}: {problem}"
    else:
        text = str(exc)
        if isinstance(exc, KeyError) and len(exc.args) == 1:
            text = str(exc.args[0])
        if not text:
            text = type(exc).__name__
    return " ".join(part.strip() for part in text.splitlines() if part.strip())
