"""An unexpected error, reported as one: the traceback saved to a file, a one-line message, exit 70.

A crash must never look like a verdict (exit 1 is "a quality gate failed"), and a cron job's
log should hold one readable line, not a screen of traceback; the whole traceback is kept
in a file the line names.
"""

from __future__ import annotations

import datetime as _dt
import os
import tempfile
import traceback
from pathlib import Path

from ferreport.config import default_cache_root
from ferreport.errors import InternalError
from ferreport.runs.atomic import write_text

__all__ = ["crash_dir", "internal_error"]


def crash_dir() -> Path:
    """``crashes/`` in the face cache's root (``$FERREPORT_CACHE``, ``$XDG_CACHE_HOME/ferreport`` or
    ``~/.cache/ferreport``); the temporary folder when even that cannot be found."""
    try:  # the cache's root may be unreadable (no home folder): the temporary folder then
        return default_cache_root() / "crashes"
    except Exception:  # noqa: BLE001
        return Path(tempfile.gettempdir())


def save_traceback(exc: BaseException, command: str | None) -> Path | None:
    """Write ``exc``'s traceback to a new file in :func:`crash_dir` (else the temporary folder); its path,
    or None when neither can be written."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    name = f"crash-{stamp}-{command or 'ferreport'}-{os.getpid()}.txt"
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    for folder in (crash_dir(), Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            write_text(path, text)
            return path
        except Exception:  # noqa: BLE001 - a crash report must not crash; try the next folder
            continue
    return None


def internal_error(exc: BaseException, command: str | None = None) -> InternalError:
    """The :class:`InternalError` that reports ``exc``: what it was and where its traceback is."""
    path = save_traceback(exc, command)
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    what = " ".join(what.split())  # one line, whatever the exception's message held
    where = f"traceback saved to {path}" if path else "the traceback could not be saved"
    error = InternalError(f"internal error ({what}); this is a bug in ferreport, not a verdict on the model; "
                          f"{where}; please report it with that file")
    error.traceback_path = path  # type: ignore[attr-defined]
    return error
