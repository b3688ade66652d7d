"""Guarded reading of regular files: a FIFO, socket or device is never opened, a file over its limit never read.

Used wherever ferreport reads a file it did not write (``label.lst``, dataset images, audited
files): each is checked with ``stat`` before opening and with ``fstat`` after.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from typing import BinaryIO

__all__ = ["NOT_REGULAR", "NotRegularFile", "open_regular", "read_regular", "regular_chunks"]

#: A FIFO, socket or device (or a symlink to one): never opened (a FIFO blocks ``open`` forever,
#: a device is an endless stream). Also the skip reason counted for such a file.
NOT_REGULAR = "not a regular file"


class NotRegularFile(OSError):
    """A path that is not a regular file, or is one larger than the caller's limit; ``reason`` says which."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(reason)
        self.path = os.fspath(path)
        self.reason = reason


def open_regular(path: str | os.PathLike[str], max_bytes: int, *,
                 too_large: str = "file too large") -> tuple[BinaryIO, int]:
    """``(binary file, size)`` of ``path`` when it is a regular file of at most ``max_bytes`` bytes.

    Checked from ``stat`` before opening (a FIFO would block ``open`` forever, a device is
    endless), and again from ``fstat`` of what was opened (opened non-blocking, so a path
    swapped for a FIFO in between cannot hang). Raises :class:`NotRegularFile` (reason
    :data:`NOT_REGULAR` or ``too_large``), or OSError when it cannot be read at all.
    """
    _check_regular(path, os.stat(path), max_bytes, too_large)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        _check_regular(path, st, max_bytes, too_large)
        return os.fdopen(fd, "rb"), st.st_size
    except BaseException:
        os.close(fd)
        raise


def _check_regular(path: str | os.PathLike[str], st: os.stat_result, max_bytes: int, too_large: str) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFile(path, NOT_REGULAR)
    if st.st_size > max_bytes:
        raise NotRegularFile(path, too_large)


def read_regular(path: str | os.PathLike[str], max_bytes: int, *, too_large: str = "file too large") -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (see :func:`open_regular`); never more than its
    stat size."""
    fh, size = open_regular(path, max_bytes, too_large=too_large)
    with fh:
        return fh.read(size)


def regular_chunks(path: str | os.PathLike[str], max_bytes: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    """The bytes of a regular file of at most ``max_bytes``, in chunks (memory stays at one chunk)."""
    fh, size = open_regular(path, max_bytes)
    with fh:
        left = size
        while left > 0:
            block = fh.read(min(chunk, left))
            if not block:
                return
            left -= len(block)
            yield block
