"""The true labels of an audited folder (``--labels``): class-named sub-folders, a ``path,label`` CSV, or none.

``subfolders`` - a file under a top-level sub-folder named after a class (``angry/``,
``Happy/``, ...; any depth below it) has that true label; ``FILE.csv`` - columns
``path,label`` (``path`` relative to FOLDER with ``/``, ``label`` a class name or id 0-6); a
malformed labels file is an error naming the file and line (exit 3) before any image is
read. ``none`` - no labels. Default: ``subfolders`` when FOLDER has a class-named sub-folder,
else none.
"""

from __future__ import annotations

import csv
import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from ferreport.audit.scanning import display_path
from ferreport.constants import CLASS_NAMES
from ferreport.datasets.classes import class_id
from ferreport.errors import DatasetError, UsageError
from ferreport.runs.guard import ArtefactError, read_inside

__all__ = ["Labels", "class_subfolders", "read_labels_csv", "resolve_labels"]


def _normalise_rel(path: str, root: Path) -> str | None:
    p = path.strip().replace("\\", "/")
    if not p or "\x00" in p:
        return None
    if p.startswith("/"):
        try:
            p = Path(p).resolve().relative_to(root.resolve()).as_posix()
        except (ValueError, OSError):
            return None
    p = posixpath.normpath(p)
    if p in (".", "") or p.startswith("../") or p == "..":
        return None
    return p


#: The most bytes a labels CSV is read at (a million rows of paths fit many times over).
MAX_LABELS_BYTES = 512 * 1024**2


def read_labels_csv(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> dict[str, int]:
    """``{relative path: class id}`` from a ``path,label`` CSV; DatasetError names file and line."""
    path, root = Path(path), Path(root)
    try:  # guarded: a regular file (never a FIFO or device), at most MAX_LABELS_BYTES
        text = read_inside(path, MAX_LABELS_BYTES).decode("utf-8-sig")
    except FileNotFoundError as exc:
        raise DatasetError(f"{path}: cannot read the labels file ({exc.strerror})") from exc
    except ArtefactError as exc:
        raise DatasetError(f"{path}: the labels file {exc.reason}") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: the labels file is not UTF-8 text ({exc.reason}); save it as UTF-8 CSV") from exc
    reader = csv.reader(text.splitlines(keepends=True))
    try:
        header = next(reader)
    except StopIteration:
        raise DatasetError(f"{path}: the labels file is empty; it needs a header line `path,label`") from None
    except csv.Error as exc:
        raise DatasetError(f"{path}:1: {exc}") from exc
    cols = [h.strip().lower() for h in header]
    if "path" not in cols or "label" not in cols:
        raise DatasetError(f"{path}:1: header {','.join(header)!r} lacks the columns `path` and `label`; "
                           "the first line must be `path,label`")
    ip, il = cols.index("path"), cols.index("label")
    labels: dict[str, int] = {}
    seen_line: dict[str, int] = {}
    try:
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) <= max(ip, il):
                raise DatasetError(f"{path}:{line}: {len(row)} field(s), expected at least {max(ip, il) + 1} "
                                   "(path,label)")
            rel = _normalise_rel(row[ip], root)
            if rel is None:
                raise DatasetError(f"{path}:{line}: path {row[ip]!r} is empty or outside {root}; "
                                   "give paths relative to the audited folder")
            lab = class_id(row[il])  # a class name, a synonym (anger, happiness ...) or an id 0-6
            if lab is None:
                raise DatasetError(f"{path}:{line}: label {row[il]!r} is not a class; use one of "
                                   f"{', '.join(CLASS_NAMES)} or an id 0-6")
            if rel in labels:
                raise DatasetError(f"{path}:{line}: path {rel!r} already labelled on line {seen_line[rel]}; "
                                   "remove the repeated row")
            labels[rel] = lab
            seen_line[rel] = line
    except csv.Error as exc:
        raise DatasetError(f"{path}:{reader.line_num}: {exc}") from exc
    return labels


def class_subfolders(root: str | os.PathLike[str]) -> dict[str, int]:
    """Top-level sub-folders named after a class (any case, or a synonym such as ``anger``): ``{folder: class id}``."""
    out: dict[str, int] = {}
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return out
    for e in entries:
        try:
            label = class_id(e.name) if not e.name.strip().isdigit() else None
            if e.is_dir(follow_symlinks=False) and label is not None:
                out[display_path(e.name)] = label
        except OSError:
            continue
    return out


@dataclass(frozen=True)
class Labels:
    """The true label of a file, by its path relative to the folder (``-1``: unknown)."""

    mode: str                                   # "none", "subfolders", "csv"
    source: str | None = None
    folders: dict[str, int] = field(default_factory=dict)
    table: dict[str, int] = field(default_factory=dict)

    def __call__(self, rel: str) -> int:
        if self.mode == "subfolders":
            return self.folders.get(rel.split("/", 1)[0], -1) if "/" in rel else -1
        if self.mode == "csv":
            return self.table.get(rel, -1)
        return -1


def resolve_labels(labels: str | os.PathLike[str] | None, folder: Path) -> Labels:
    """``--labels`` (``auto``/None, ``none``, ``subfolders`` or a CSV file) as the labels of ``folder``."""
    if labels is None or str(labels).strip().lower() in ("", "auto"):
        folders = class_subfolders(folder)
        return Labels("subfolders", "subfolders (auto)", folders) if folders else Labels("none")
    text = str(labels).strip()
    if text.lower() == "none":
        return Labels("none")
    if text.lower() == "subfolders":
        folders = class_subfolders(folder)
        if not folders:
            raise DatasetError(f"{folder}: --labels subfolders, but no sub-folder is named after a class "
                               f"({', '.join(CLASS_NAMES)})")
        return Labels("subfolders", "subfolders", folders)
    path = Path(labels)
    if not path.is_file():
        raise UsageError(f"--labels {text}: expected subfolders, none, or an existing CSV file (path,label)")
    return Labels("csv", str(path), table=read_labels_csv(path, folder))
