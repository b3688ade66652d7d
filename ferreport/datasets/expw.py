"""The ExpW ``label.lst`` reader: each line becomes a row of the index table or a counted skip reason.

Never an exception for a bad line (unless ``strict`` is set, when the first unusable line is
an error naming the file and line). Nothing here decodes pixels; :mod:`ferreport.datasets.decode`
does that. The table's columns are :data:`ferreport.datasets.index_table.INDEX_COLUMNS`.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from ferreport.datasets.index_table import INDEX_COLUMNS, LabelIndex, finish_index
from ferreport.datasets.skips import BOX_OUTSIDE_IMAGE
from ferreport.errors import DatasetError
from ferreport.safe_io import NOT_REGULAR, NotRegularFile, read_regular

__all__ = ["BAD_LABEL", "DUPLICATE", "EMPTY_BOX", "MAX_LABEL_BYTES", "MISSING_IMAGE", "NEGATIVE_BOX", "NON_INTEGER_BOX",
           "NON_NUMERIC", "UNSAFE_PATH", "WRONG_FIELD_COUNT", "read_label_file"]

#: Skip reasons of label.lst lines, as counted in the data summary.
WRONG_FIELD_COUNT = "wrong field count"
NON_NUMERIC = "non-numeric field"
NON_INTEGER_BOX = "non-integer face id or box"
EMPTY_BOX = "empty box (top>=bottom or left>=right)"
NEGATIVE_BOX = "negative face id"
BAD_LABEL = "label outside 0-6"
UNSAFE_PATH = "image path outside the image folder"
MISSING_IMAGE = "image missing"
DUPLICATE = "duplicate face (same image and face id)"

#: The largest ``label.lst`` read (ExpW's is about 5 MB); a larger one is refused before reading.
MAX_LABEL_BYTES = 512 * 1024 * 1024

_FIX = {
    WRONG_FIELD_COUNT: ("each line needs 8 space-separated fields: "
                        "image_name face_id top left right bottom confidence label"),
    NON_NUMERIC: "face id, box, confidence and label must be numbers",
    NON_INTEGER_BOX: "face id and box coordinates must be whole numbers",
    EMPTY_BOX: "the box needs top<bottom and left<right",
    NEGATIVE_BOX: "face ids start at 0",
    BAD_LABEL: "labels are 0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral",
    UNSAFE_PATH: "image names must be relative paths inside image/origin",
    MISSING_IMAGE: "put the image under image/origin or remove the line",
    DUPLICATE: "remove the repeated line",
    BOX_OUTSIDE_IMAGE: "box coordinates are pixels from the image's top-left corner; right and bottom must be > 0",
    NOT_REGULAR: "image names must name regular files, not FIFOs, sockets or devices",
}


def _strict_error(label_file: Path, line_no: int, reason: str, text: str) -> DatasetError:
    shown = text if len(text) <= 80 else text[:77] + "..."
    fix = _FIX.get(reason, "fix or remove the line")
    return DatasetError(f"{label_file}:{line_no}: {reason}: {shown!r} ({fix})")


def _is_safe_relative(name: str) -> bool:
    if not name or "\x00" in name or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return False
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return ".." not in parts


def read_label_file(label_file: str | os.PathLike[str], image_dir: str | os.PathLike[str] | None = None,
                    *, strict: bool = False, check_images: bool = True, require_faces: bool = True) -> LabelIndex:
    """Parse and validate an ExpW ``label.lst``.

    Field order per line: ``image_name face_id top left right bottom confidence label``.
    Image names may contain spaces (the last seven fields are numeric, so the line is
    split from the right). A byte-order mark and CRLF endings are accepted.

    Stages: split the lines into fields, reject rows (bad numbers, unsafe paths,
    duplicates, missing images; the first reason found wins), count the rejects, build
    the index of the rest.
    """
    label_file = Path(label_file)
    image_dir = Path(image_dir) if image_dir is not None else label_file.parent.parent / "image" / "origin"
    text = _read_label_text(label_file)
    result = LabelIndex(index=pd.DataFrame(columns=list(INDEX_COLUMNS)), image_dir=image_dir,
                        label_file=label_file, kind="expw")
    skip = _LineSkipper(result, label_file, strict)
    good_lines, fields = _split_fields(text, skip)
    if not fields:
        if not result.skipped and require_faces:
            raise DatasetError(f"{label_file}: the label file has no lines (expected one face per line)")
        return finish_index(result, require_faces)
    rows = _label_rows(good_lines, fields)
    _reject_bad_numbers(rows)
    _reject_unsafe_paths(rows)
    _reject_duplicates(rows)
    if check_images:
        _reject_missing_images(rows, image_dir)
    rows.report_rejects(skip)
    result.index = _usable_index(rows)
    return finish_index(result, require_faces)


def _read_label_text(label_file: Path) -> str:
    """The label file as text: a regular file of at most :data:`MAX_LABEL_BYTES`, checked before reading."""
    limit_mib = MAX_LABEL_BYTES // (1024 * 1024)
    try:
        raw = read_regular(label_file, MAX_LABEL_BYTES, too_large="too large")
    except NotRegularFile as exc:
        if exc.reason == NOT_REGULAR:
            raise DatasetError(f"{label_file}: the label file is not a regular file (a FIFO, socket or device, "
                               f"or a link to one); point label/label.lst at a plain text file") from exc
        raise DatasetError(f"{label_file}: the label file is larger than the {limit_mib} MiB limit "
                           f"(ExpW's is about 5 MB); check that it is the right file") from exc
    except OSError as exc:
        raise DatasetError(f"{label_file}: cannot read the label file ({exc.strerror or exc})") from exc
    return raw.decode("utf-8-sig", errors="replace")


@dataclass
class _LineSkipper:
    """Counts an unusable line on ``result``, or with ``strict`` raises at it."""

    result: LabelIndex
    label_file: Path
    strict: bool

    def __call__(self, reason: str, line_no: int, line: str) -> None:
        if self.strict:
            raise _strict_error(self.label_file, line_no, reason, line)
        self.result.skip(reason, f"{self.label_file.name}:{line_no}")


def _split_fields(text: str, skip: _LineSkipper) -> tuple[list[int], list[list[str]]]:
    """(line numbers, fields) of the lines with eight fields; blank lines are ignored, others skipped."""
    good_lines: list[int] = []
    fields: list[list[str]] = []
    # Split on "\n" only (not str.splitlines, which also breaks at form feeds and Unicode
    # separators), so line numbers match what an editor shows.
    for line_no, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        parts = stripped.rsplit(None, 7)
        if len(parts) != 8:
            skip(WRONG_FIELD_COUNT, line_no, stripped)
            continue
        good_lines.append(line_no)
        fields.append(parts)
    return good_lines, fields


@dataclass
class _LabelRows:
    """The lines with eight fields, one row each, and why each row is unusable ("" while usable)."""

    fields: list[list[str]]
    frame: pd.DataFrame   # "source", the seven numeric fields as text, "line"
    numbers: np.ndarray   # (rows, 7) float64: face_id top left right bottom confidence label; NaN if not a number
    reasons: np.ndarray   # object array of skip reasons

    def usable(self) -> np.ndarray:
        return self.reasons == ""

    def reject(self, rows: np.ndarray, reason: str) -> None:
        """Give ``reason`` to those of ``rows`` that are still usable (an earlier reason wins)."""
        self.reasons[self.usable() & rows] = reason

    def report_rejects(self, skip: _LineSkipper) -> None:
        """Skip the rejected rows in line order (with ``strict``, the first one raises)."""
        lines = self.frame["line"]
        for i in np.flatnonzero(~self.usable()):
            skip(self.reasons[i], int(lines.iat[i]), " ".join(self.fields[i]))


def _label_rows(good_lines: list[int], fields: list[list[str]]) -> _LabelRows:
    frame = pd.DataFrame(fields, columns=["source", "face_id", "top", "left", "right", "bottom", "confidence", "label"])
    frame["line"] = np.asarray(good_lines, dtype=np.int64)
    numeric_cols = ["face_id", "top", "left", "right", "bottom", "confidence", "label"]
    numbers = frame[numeric_cols].apply(pd.to_numeric, errors="coerce").astype("float64").to_numpy()
    return _LabelRows(fields=fields, frame=frame, numbers=numbers, reasons=np.full(len(frame), "", dtype=object))


def _reject_bad_numbers(rows: _LabelRows) -> None:
    """Non-numeric fields, fractional ids or boxes, labels outside 0-6, negative face ids, empty boxes."""
    n = rows.numbers
    rows.reject(~np.isfinite(n).all(axis=1), NON_NUMERIC)
    ints = n[:, [0, 1, 2, 3, 4, 6]]  # all but the confidence
    with np.errstate(invalid="ignore"):
        rows.reject((np.abs(ints - np.round(ints)) > 0).any(axis=1), NON_INTEGER_BOX)
        rows.reject((n[:, 6] < 0) | (n[:, 6] > 6), BAD_LABEL)
        rows.reject(n[:, 0] < 0, NEGATIVE_BOX)
        rows.reject((n[:, 1] >= n[:, 4]) | (n[:, 2] >= n[:, 3]), EMPTY_BOX)
        # right or bottom at or left of 0: no pixel of the image is inside (and a negative
        # right/bottom must never reach the crop, where -1 stands for "the whole image")
        rows.reject((n[:, 3] <= 0) | (n[:, 4] <= 0), BOX_OUTSIDE_IMAGE)


def _reject_unsafe_paths(rows: _LabelRows) -> None:
    sources = rows.frame["source"]
    safe = np.fromiter((_is_safe_relative(s) for s in sources), dtype=bool, count=len(sources))
    rows.reject(~safe, UNSAFE_PATH)


def _reject_duplicates(rows: _LabelRows) -> None:
    """The same (image, face id) twice keeps the first."""
    ok = rows.usable()
    if not ok.any():
        return
    sub = pd.DataFrame({"s": rows.frame["source"][ok].to_numpy(), "f": rows.numbers[ok, 0]})
    dup = np.zeros(len(ok), dtype=bool)
    dup[np.flatnonzero(ok)] = sub.duplicated(keep="first").to_numpy()
    rows.reject(dup, DUPLICATE)


def _reject_missing_images(rows: _LabelRows, image_dir: Path) -> None:
    """Images that are missing (or outside the image folder), then those that are not regular files."""
    ok = rows.usable()
    if not ok.any():
        return
    sources = rows.frame["source"]
    plain = _plain_files(image_dir)
    found = {name: "" if name in plain else _image_problem(image_dir, name) for name in pd.unique(sources[ok])}
    why = sources.map(found).fillna(MISSING_IMAGE).to_numpy(dtype=object)
    rows.reject(why == MISSING_IMAGE, MISSING_IMAGE)
    rows.reject(why == NOT_REGULAR, NOT_REGULAR)


def _usable_index(rows: _LabelRows) -> pd.DataFrame:
    """The index table (:data:`INDEX_COLUMNS`) of the usable rows."""
    ok = rows.usable()
    kept = rows.frame[ok]
    nk = rows.numbers[ok]
    return pd.DataFrame({
        "key": kept["source"].to_numpy() + "#" + nk[:, 0].astype(np.int64).astype(str),
        "source": kept["source"].to_numpy(),
        "face_id": nk[:, 0].astype(np.int64),
        "top": nk[:, 1].astype(np.int64),
        "left": nk[:, 2].astype(np.int64),
        "right": nk[:, 3].astype(np.int64),
        "bottom": nk[:, 4].astype(np.int64),
        "confidence": nk[:, 5],
        "label": nk[:, 6].astype(np.int64),
        "group": kept["source"].to_numpy(),
        "line": kept["line"].to_numpy(),
    })


def _plain_files(image_dir: Path) -> frozenset[str]:
    """Names of the regular files (not links, not folders) directly inside ``image_dir``.

    One directory listing answers "inside and exists" for every plain top-level name at
    once; names with folders or pointing at links still go through
    :func:`_image_problem` one by one.
    """
    try:
        with os.scandir(image_dir) as entries:
            return frozenset(e.name for e in entries if e.is_file(follow_symlinks=False))
    except OSError:
        return frozenset()


def _image_problem(image_dir: Path, name: str) -> str:
    """"" when ``name`` is a regular file inside ``image_dir``, else :data:`MISSING_IMAGE` or :data:`NOT_REGULAR`."""
    path = image_dir / name
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError):  # missing, symlink loop
        return MISSING_IMAGE
    try:
        resolved.relative_to(image_dir.resolve())
    except ValueError:  # a symlink that points outside the dataset
        return MISSING_IMAGE
    try:
        mode = resolved.stat().st_mode
    except OSError:
        return MISSING_IMAGE
    if stat.S_ISDIR(mode):
        return MISSING_IMAGE
    return "" if stat.S_ISREG(mode) else NOT_REGULAR
