"""One writer per folder: an exclusive, non-blocking ``fcntl.flock`` on a lock file beside it.

The lock belongs to the open file, so the kernel drops it when its process ends, however it ends:
a killed job never blocks the next one (its lock file may stay behind; it is reused). The lock
file holds the PID of its holder, so a second writer is told who holds the folder.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from ferreport.errors import OutputError, UsageError

try:  # POSIX; elsewhere no lock is taken (the writes themselves stay atomic)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["exclusive_lock"]


def _holder(lock_file: Path) -> str:
    try:
        text = lock_file.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return "another process"
    return f"PID {text}" if text.isdigit() else "another process"


@contextlib.contextmanager
def exclusive_lock(lock_file: Path, what: Path, *, option: str = "--out") -> Iterator[None]:
    """Hold ``lock_file`` exclusively while the block runs; a UsageError (exit 2) naming ``what`` and
    the holder's PID when another process holds it. The file is removed when released."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    while True:
        try:
            lock_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise OutputError(f"{what}: cannot create its lock {lock_file} ({exc.strerror}); choose another "
                              f"{option}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UsageError(f"{what}: in use by {_holder(lock_file)} (another ferreport command is writing it); "
                             f"wait for it to finish or choose another {option}") from None
        try:  # the file may have been removed by its last holder between our open and our flock: retry
            same = os.fstat(fd).st_ino == os.stat(lock_file, follow_symlinks=False).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode("ascii"))
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_file)  # still ours: unlinked before the lock is dropped
        os.close(fd)
