"""CSV cells ferreport writes: safe to open in a spreadsheet, one row per record, read back as they were.

* A text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return would be a live
  formula in a spreadsheet (file names are chosen by whoever made the folder): it is written with a
  leading ``'`` (OWASP's advice). A cell that already starts with ``'`` gets one more, so
  :func:`from_cell` can always undo it exactly. Numbers are never touched.
* Rows end with CRLF (RFC 4180), so Python's csv quotes a cell holding a carriage return or a line
  feed: a name with either stays one row.
* Undecodable bytes in a file name are written as ``\\xNN`` and a backslash as ``\\\\``
  (:func:`name_text`); :func:`name_path` turns the text back into the name on disk.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

import pandas as pd

__all__ = ["FORMULA_STARTS", "LINE_END", "from_cell", "name_path", "name_text", "restore_frame", "safe_frame",
           "safe_row", "to_cell", "write_frame"]

#: First characters that make a spreadsheet treat a cell as a formula (or hide one after whitespace).
FORMULA_STARTS: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
#: The line ending of every CSV ferreport writes (RFC 4180).
LINE_END = "\r\n"
_ESCAPED = re.compile(r"\\(\\|x[0-9a-fA-F]{2})")


def to_cell(text: str) -> str:
    """``text`` as a CSV cell that no spreadsheet runs (see the module docstring)."""
    return "'" + text if text.startswith(FORMULA_STARTS) or text.startswith("'") else text


def from_cell(text: str) -> str:
    """The text :func:`to_cell` was given."""
    return text[1:] if text.startswith("'") else text


def _is_text(series: pd.Series) -> bool:
    return series.dtype == object or isinstance(series.dtype, pd.StringDtype)


def safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells are :func:`to_cell`-ed (missing values and numbers kept)."""
    out = frame.copy()
    for col in out.columns:
        if _is_text(out[col]):
            out[col] = out[col].map(lambda v: to_cell(v) if isinstance(v, str) else v)
    return out


def restore_frame(frame: pd.DataFrame, columns: Iterable[str] | None = None) -> pd.DataFrame:
    """``frame`` (as read back) with the text cells of ``columns`` (default: every text column) undone, in place."""
    for col in (columns if columns is not None else frame.columns):
        if col in frame.columns and _is_text(frame[col]):
            frame[col] = frame[col].map(lambda v: from_cell(v) if isinstance(v, str) else v)
    return frame


def safe_row(values: Sequence[Any]) -> list[Any]:
    """One csv.writer row with its text cells :func:`to_cell`-ed."""
    return [to_cell(v) if isinstance(v, str) else v for v in values]


def write_frame(frame: pd.DataFrame, fh: TextIO, *, header: bool = True, **options: Any) -> None:
    """``frame`` as CSV rows on ``fh``: safe cells, CRLF rows, no index."""
    safe_frame(frame).to_csv(fh, index=False, header=header, lineterminator=LINE_END, **options)


def name_text(path: str) -> str:
    """A file name (as ``os`` gives it: undecodable bytes as surrogates) as text that can always be written:
    each undecodable byte as ``\\xNN``, each backslash doubled. :func:`name_path` undoes it."""
    if "\\" not in path:
        try:
            path.encode("utf-8")
            return path
        except UnicodeEncodeError:
            pass
    return "".join("\\\\" if ch == "\\" else f"\\x{ord(ch) - 0xDC00:02x}" if 0xDC80 <= ord(ch) <= 0xDCFF else ch
                   for ch in path)


def name_path(text: str) -> str:
    """The file name :func:`name_text` wrote as ``text`` (for opening the file again)."""
    if "\\" not in text:
        return text
    return _ESCAPED.sub(lambda m: "\\" if m.group(1) == "\\" else os.fsdecode(bytes([int(m.group(1)[1:], 16)])),
                        text)
