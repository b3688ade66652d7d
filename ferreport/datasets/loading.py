"""Data loading: read an ExpW ``label.lst`` or a class-folder dataset into an index table.

Nothing here decodes pixels; :mod:`ferreport.datasets.preprocessing` does that. Every line of
``label.lst`` either becomes a row of the index or a counted skip reason, never an
exception (unless ``strict`` is set, when the first unusable line is an error naming
the file and line).

The index table has one row per face with the columns of :data:`INDEX_COLUMNS`:
``key`` (unique face id: ``image_name#face_id`` or the relative path), ``source``
(image path relative to the image folder), ``face_id``, the box ``top left right
bottom`` (pixels, as written), ``confidence`` (NaN for class folders), ``label``
(0..6), ``group`` (faces of one group never straddle splits) and ``line`` (1-based
line number in label.lst, 0 for class folders).
"""

from __future__ import annotations

import collections
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np
import pandas as pd

from ferreport.datasets.classes import class_id
from ferreport.constants import CLASS_NAMES, IMAGE_SUFFIXES
from ferreport.errors import DatasetError

INDEX_COLUMNS: tuple[str, ...] = (
    "key", "source", "face_id", "top", "left", "right", "bottom", "confidence", "label", "group", "line",
)

#: Skip reasons, as counted in the data summary.
WRONG_FIELD_COUNT = "wrong field count"
NON_NUMERIC = "non-numeric field"
NON_INTEGER_BOX = "non-integer face id or box"
EMPTY_BOX = "empty box (top>=bottom or left>=right)"
NEGATIVE_BOX = "negative face id"
BAD_LABEL = "label outside 0-6"
UNSAFE_PATH = "image path outside the image folder"
MISSING_IMAGE = "image missing"
DUPLICATE = "duplicate face (same image and face id)"
UNREADABLE_IMAGE = "image unreadable"
BOX_OUTSIDE_IMAGE = "box entirely outside the image"
NOT_AN_IMAGE = "not an image file"
NOT_A_CLASS = "folder of a class ferreport does not score"
#: A FIFO, socket or device (or a symlink to one): never opened (a FIFO blocks ``open`` forever,
#: a device is an endless stream).
NOT_REGULAR = "not a regular file"

#: The largest ``label.lst`` read (ExpW's is about 5 MB); a larger one is refused before reading.
MAX_LABEL_BYTES = 512 * 1024 * 1024

_FIX = {
    WRONG_FIELD_COUNT: "each line needs 8 space-separated fields: image_name face_id top left right bottom confidence label",
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


class NotRegularFile(OSError):
    """A path that is not a regular file, or is one larger than the caller's limit; ``reason`` says which."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(reason)
        self.path = os.fspath(path)
        self.reason = reason


def open_regular(path: str | os.PathLike[str], max_bytes: int, *, too_large: str = "file too large") -> tuple[BinaryIO, int]:
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
    """The bytes of a regular file of at most ``max_bytes`` (see :func:`open_regular`); never more than its stat size."""
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


@dataclass
class LabelIndex:
    """Result of loading: the usable faces, and what was skipped and why."""

    index: pd.DataFrame
    image_dir: Path
    label_file: Path | None
    kind: str  # "expw" or "folders"
    skipped: collections.Counter[str] = field(default_factory=collections.Counter)
    #: first offending location per reason, e.g. ``label.lst:17``
    examples: dict[str, str] = field(default_factory=dict)

    def skip(self, reason: str, where: str, count: int = 1) -> None:
        self.skipped[reason] += count
        self.examples.setdefault(reason, where)


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
        return _finish(result, require_faces)
    rows = _label_rows(good_lines, fields)
    _reject_bad_numbers(rows)
    _reject_unsafe_paths(rows)
    _reject_duplicates(rows)
    if check_images:
        _reject_missing_images(rows, image_dir)
    rows.report_rejects(skip)
    result.index = _usable_index(rows)
    return _finish(result, require_faces)


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


def count_by_reason(counts: collections.Counter[str] | dict[str, int], noun: str = "row") -> str:
    """Counts by reason as words for a message, most frequent first: ``unsupported type (2 files), empty file
    (1 file)`` with ``noun="file"`` (never a Python dict repr)."""
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{reason} ({n:,} {noun}{'' if n == 1 else 's'})" for reason, n in ordered)


def _finish(result: LabelIndex, require_faces: bool = True) -> LabelIndex:
    result.index = result.index.reset_index(drop=True)
    if result.index.empty and require_faces:
        raise DatasetError(
            f"{result.label_file or result.image_dir}: no usable faces "
            f"(skipped: {count_by_reason(result.skipped, 'row' if result.label_file else 'file') or 'none'}); "
            "check the file format"
        )
    return result


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
    result = LabelIndex(index=pd.DataFrame(columns=list(INDEX_COLUMNS)), image_dir=root, label_file=None, kind="folders")
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
    return _finish(result)


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


def expw_root_above(path: str | os.PathLike[str]) -> Path | None:
    """The ExpW dataset ``path`` lies inside (``DIR/image/origin``, ``DIR/image``, ``DIR/label`` or
    ``DIR/label/label.lst`` -> ``DIR``), or None: a kind hint for ``--data`` pointed one level too deep."""
    p = Path(path)
    for depth in (1, 2):
        root = p.parents[depth - 1] if len(p.parents) >= depth else None
        if root is None:
            continue
        inside = p.relative_to(root).as_posix()
        if inside in ({"image", "label"} if depth == 1 else {"image/origin", "label/label.lst"}):
            if (root / "label" / "label.lst").is_file() and (root / "image").is_dir():
                return root
    return None


def check_dataset_root(root: str | os.PathLike[str]) -> Path:
    """``root`` if it can be a dataset, else a DatasetError (exit 3) saying what to pass instead; cheap (no
    file is read), so commands call it before any expensive step."""
    root = Path(root)
    above = expw_root_above(root)
    if above is not None:
        raise DatasetError(f"{root}: this is inside the ExpW dataset {above}; did you mean --data {above}?")
    if not root.exists():
        raise DatasetError(f"{root}: dataset folder not found (run `ferreport sample --out {root}` for a sample)")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder; pass the dataset folder holding label/label.lst and image/origin, "
                           "or class folders")
    return root


def load_dataset(root: str | os.PathLike[str], *, strict: bool = False) -> LabelIndex:
    """Load an ExpW-layout dataset (``label/label.lst`` + ``image/origin/``) or class folders."""
    root = check_dataset_root(root)
    label_file = root / "label" / "label.lst"
    # Anything by that name but a folder is the label file (a FIFO or device is then refused
    # by read_label_file with its own message, rather than mistaken for "no label file").
    if os.path.lexists(label_file) and not label_file.is_dir():
        return read_label_file(label_file, root / "image" / "origin", strict=strict)
    return read_class_folders(root, strict=strict)
