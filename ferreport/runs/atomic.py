"""Atomic file output: write to a temporary name in the same folder, then rename.

A reader (or a crash) therefore sees either the whole final file or none.

Temporaries are hidden and carry the writer's process id:
``.NAME.PID.RANDOM.partSUFFIX``. A process killed mid-write leaves one behind;
:func:`remove_stale_parts` (called by every command that writes into a run folder)
removes those whose process is no longer alive, and those without a process id
(older versions) once older than :data:`STALE_PART_AGE_S`. A live process's
temporaries are never touched (a recycled pid only delays the removal).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ferreport.errors import OutputError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()

#: Temporaries without a process id in their name are removed once this old (seconds).
STALE_PART_AGE_S = 3600
_PART = re.compile(r"^\..+\.part(\.[^.]*)?$")
_PART_PID = re.compile(r"^\..+\.(\d+)\.[A-Za-z0-9_]+\.part(\.[^.]*)?$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0  # someone else's live process (or a nonsense pid: treated as alive only if positive)
    return True


def remove_stale_parts(folder: str | os.PathLike[str], *, max_age_s: float = STALE_PART_AGE_S) -> list[Path]:
    """Remove the temporaries an interrupted writer left in ``folder`` (not recursive); returns them.

    A temporary ``.NAME.PID.RANDOM.part*`` goes when process PID is not alive; one
    without a pid when it is older than ``max_age_s``. Errors are ignored (best effort).
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        if not _PART.match(entry.name):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            m = _PART_PID.match(entry.name)
            if m is not None and _alive(int(m.group(1))):
                continue
            if m is None and now - entry.stat(follow_symlinks=False).st_mtime < max_age_s:
                continue
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def write_error(path: Path, exc: OSError) -> OutputError:
    """The OutputError for a failed write of ``path``: what the user can do about it (disk full, not writable).

    An OutputError already says which file and why: it is passed on as it is, never wrapped again."""
    if isinstance(exc, OutputError):
        return OutputError(str(exc))
    if exc.errno == errno.ENOSPC:
        why = "the disk is full; free space or choose another --out"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = "the folder is not writable; choose another --out"
    else:
        why = exc.strerror or str(exc)
    return OutputError(f"{path}: cannot write ({why})")


#: The signals a user or a scheduler sends to stop a job; held (not lost) while files are swapped.
HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while the block runs, then act on them: a step of several renames
    (a report's HTML and PDF, a folder swapped in) is never stopped half-way by Ctrl-C or ``kill``.

    Python runs signal handlers in the main thread, so the handlers are swapped there for ones that
    only record the signal; a recorded signal is raised again, with the old handler back, on exit.
    Off the main thread (no handler can be set) the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    old = {sig: signal.signal(sig, lambda signum, _frame: caught.append(signum)) for sig in HELD_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(caught):
            signal.raise_signal(sig)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    Use when a library insists on writing a file by name (Keras, NumPy, WeasyPrint).
    """
    final = Path(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.{os.getpid()}.", suffix=".part" + final.suffix,
                                        dir=final.parent)
        os.close(fd)
        os.chmod(tmp_name, 0o666 & ~_UMASK)  # mkstemp makes 0600; final files follow the umask
    except OSError as exc:
        raise write_error(final, exc) from exc
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise write_error(final, exc) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temporary file for writing; it replaces ``path`` only when the block succeeds."""
    if "b" in mode:
        encoding = None
    with atomic_path(path) as tmp:
        try:
            with open(tmp, mode, encoding=encoding, newline="" if encoding else None) as fh:
                yield fh
        except OSError as exc:
            raise write_error(Path(path), exc) from exc


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_open(path, "w") as fh:
        fh.write(text)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write JSON deterministically (sorted keys, fixed indent) and atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n")


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(src, dst)


class FolderReplacement:
    """A new ``final`` folder is built under a hidden sibling and swapped in only when complete.

    :attr:`staged` (``PARENT/.NAME.replace-PID-RANDOM/NAME``, the same name, so reports show the right run
    id) is where the command writes; with ``copy_of`` it starts as a hard-linked copy of that folder (a
    run re-evaluated in place). :meth:`commit` rewrites the staged path to the final one in the
    folder's JSON files, moves the old folder aside, renames the new one into place (SIGINT and SIGTERM
    held across both renames) and only then deletes the old one; :meth:`abort` deletes the staged
    folder and leaves the old one as it was. A kill at any moment leaves the old folder whole (only a
    SIGKILL between the two renames leaves it beside, in the hidden sibling); a later replacement of
    the same folder removes the siblings whose process is gone.
    """

    def __init__(self, final: str | os.PathLike[str], *, copy_of: str | os.PathLike[str] | None = None):
        self.final = Path(final)
        try:
            self.final.parent.mkdir(parents=True, exist_ok=True)
            self._remove_abandoned()
            self.holder = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.replace-{os.getpid()}-",
                                                dir=self.final.parent))
            self.staged = self.holder / self.final.name
            if copy_of is not None:  # work on a copy: hard links, since every write replaces a file by rename
                shutil.copytree(copy_of, self.staged, symlinks=True, copy_function=_link_or_copy)
        except OSError as exc:
            raise write_error(self.final, exc) from exc

    def commit(self) -> Path:
        """Swap the staged folder in for the old one; returns the final path."""

        self.repoint()
        aside = self.holder / f".{self.final.name}.old"
        with signals_held():  # the two renames as one step: Ctrl-C or kill waits for both
            try:
                if self.final.exists():
                    os.rename(self.final, aside)
                os.rename(self.staged, self.final)
            except OSError as exc:
                if aside.exists() and not self.final.exists():
                    os.rename(aside, self.final)  # put the old folder back
                raise write_error(self.final, exc) from exc
        shutil.rmtree(self.holder, ignore_errors=True)  # the old folder, now replaced
        return self.final

    def _remove_abandoned(self) -> None:
        """Staged folders of killed earlier replacements of ``final`` (their writer's pid is gone)."""

        for holder in self.final.parent.glob(f".{self.final.name}.replace-*"):
            pid = holder.name[len(f".{self.final.name}.replace-"):].split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(holder, ignore_errors=True)

    def abort(self) -> None:
        """Drop the staged folder; the old one stays untouched."""

        shutil.rmtree(self.holder, ignore_errors=True)

    def repoint(self) -> None:
        """Paths recorded while staged (config.json's ``out``, provenance's model) name the final folder.

        Called before a report is rendered in the staged folder (so the page names the final paths) and
        again by :meth:`commit`."""
        staged, final = str(self.staged), str(self.final)

        def fix(value: Any) -> Any:
            if isinstance(value, str) and value.startswith(staged):
                return final + value[len(staged):]
            if isinstance(value, list):
                return [fix(v) for v in value]
            if isinstance(value, dict):
                return {k: fix(v) for k, v in value.items()}
            return value

        for path in sorted(self.staged.glob("*.json")):
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            fixed = fix(doc)
            if fixed != doc:
                write_json(path, fixed)
