"""The class-folder reader: a dataset of class sub-folders (``angry/``, ``happy/``, ...) as an index table.

One face per image file, the whole image (box ``0 0 -1 -1``); faces are grouped by person
(:func:`identity_group`) so one person's photos stay in one split. Files that cannot be used
are counted by reason. The table's columns are :data:`ferreport.datasets.index_table.INDEX_COLUMNS`.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from ferreport.constants import CLASS_NAMES, IMAGE_SUFFIXES
from ferreport.datasets.classes import class_id
from ferreport.datasets.index_table import INDEX_COLUMNS, LabelIndex, finish_index
from ferreport.errors import DatasetError
from ferreport.safe_io import NOT_REGULAR

__all__ = ["NOT_AN_IMAGE", "NOT_A_CLASS", "identity_group", "read_class_folders"]

#: Skip reasons of class-folder files, as counted in the data summary.
NOT_AN_IMAGE = "not an image file"
NOT_A_CLASS = "folder of a class ferreport does not score"

_TRAILING_NUMBER = re.compile(r"[_\-\s]*\d+$")


def identity_group(path: str) -> str:
    """Group key for a class-folder image: ``Name_Surname_0003.jpg`` -> ``Name_Surname``.

    Face datasets in class folders often hold several photos of one person, named by
    person and a counter (LFW style). Grouping by that stem keeps one person's photos in
    one split, so the test split measures generalisation to new people. Names without a
    trailing counter form a group of their own.
    """
    stem = PurePosixPath(path).stem
    base = _TRAILING_NUMBER.sub("", stem)
    return base if base else stem


def read_class_folders(root: str | os.PathLike[str], *, strict: bool = False) -> LabelIndex:
    """Index a dataset of class sub-folders (``angry/``, ``happy/``, ...) of face crops.

    Sub-folder names are matched to the seven ExpW classes case-insensitively and by
    common synonym (CK+'s ``anger``, ``sadness``; FER+'s ``happiness``: see
    :mod:`ferreport.datasets.classes`); files below them (recursively) with an image suffix
    become one face each. Images in a sub-folder of a class ferreport does not score
    (``contempt``) are counted as skipped, with that reason, never silently dropped.
    """
    root = Path(root)
    result = LabelIndex(index=pd.DataFrame(columns=list(INDEX_COLUMNS)), image_dir=root, label_file=None,
                        kind="folders")
    rows: list[tuple[str, int]] = []
    for folder in _children(root):
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        label = class_id(folder.name) if not folder.name.strip().isdigit() else None
        for path in _walk_files(folder):
            rel = path.relative_to(root).as_posix()
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                if strict:
                    raise DatasetError(f"{path}: not an image file (expected one of {sorted(IMAGE_SUFFIXES)})")
                result.skip(NOT_AN_IMAGE, rel)
                continue
            if label is None:
                result.skip(NOT_A_CLASS, rel)
                continue
            if not _is_regular(path):  # a FIFO named x.jpg, a device, a link to one: never opened
                if strict:
                    raise DatasetError(f"{path}: {NOT_REGULAR} (a FIFO, socket or device, or a link to one); "
                                       f"remove it or replace it with an image file")
                result.skip(NOT_REGULAR, rel)
                continue
            rows.append((rel, label))
    if not rows and not result.skipped:
        raise DatasetError(
            f"{root}: no dataset found: expected label/label.lst (ExpW layout) or class sub-folders "
            f"named {', '.join(CLASS_NAMES)}"
        )
    rows.sort()
    sources = [r[0] for r in rows]
    result.index = pd.DataFrame({
        "key": sources,
        "source": sources,
        "face_id": np.zeros(len(rows), dtype=np.int64),
        "top": np.zeros(len(rows), dtype=np.int64),
        "left": np.zeros(len(rows), dtype=np.int64),
        "right": np.full(len(rows), -1, dtype=np.int64),   # -1: the whole image
        "bottom": np.full(len(rows), -1, dtype=np.int64),
        "confidence": np.full(len(rows), np.nan),
        "label": np.asarray([r[1] for r in rows], dtype=np.int64),
        "group": [identity_group(s) for s in sources],
        "line": np.zeros(len(rows), dtype=np.int64),
    })
    return finish_index(result)


def _children(root: Path) -> list[Path]:
    try:
        return sorted(root.iterdir())
    except OSError as exc:
        raise DatasetError(f"{root}: cannot list the folder ({exc.strerror})") from exc


def _is_regular(path: Path) -> bool:
    """Whether ``path`` (links followed) is a regular file; a missing one is left to the decoder to report."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return True


def _walk_files(folder: Path) -> list[Path]:
    """Files below ``folder``, following no symlinked folders (so loops cannot recur)."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            out.append(Path(dirpath) / name)
    return out
