"""Folder scanning, shared by both audit engines: walk a folder, then decode, detect and crop each file.

:func:`walk_folder` lists the files, :func:`scan_files` turns a batch of them into face
crops and skip reasons. The local engine (:mod:`ferreport.audit.predict`) runs ``scan_files`` in
a process pool, the Ray engine (:mod:`ferreport.audit.ray_engine`) in Ray tasks, so both see
the same files in the same order and crop the same faces.

* **Walk.** ``os.walk`` (symlinked folders are not followed, so links cannot loop;
  they are listed as skipped), every directory listing sorted, so the order of
  predictions.csv is deterministic. An output folder inside FOLDER is left out.
* **Decode.** Files whose suffix is not an image suffix (``.jpg .jpeg .png .bmp .webp
  .tif .tiff``, any case) are skipped as ``unsupported type``; files whose content is
  not JPEG, PNG, BMP, WebP or TIFF (a text file named ``.jpg``, a GIF renamed) as
  :data:`NOT_AN_IMAGE`; FIFOs, sockets and devices (or links to them) as
  :data:`NOT_REGULAR`, checked with ``stat`` before anything is opened; empty, unreadable,
  truncated or undecodable ones with the reason :func:`~ferreport.datasets.decode.decode_image`
  gives. Skipped files are counted
  by reason and listed in ``skipped.csv`` (``path,reason``); one bad file never stops
  the run. EXIF orientation is applied.
* **Faces** (``--faces``): ``whole`` - the image is one face crop; ``detect`` - one
  face per box found by the detector (``--detector``: BlazeFace by default, or OpenCV's Haar
  cascade; :mod:`ferreport.audit.detection`), images
  without a face produce no prediction (listed in skipped.csv as ``no face found``);
  ``auto`` (the default) - detect, and predict on the whole image when nothing is found,
  flagged ``fallback`` in the ``found`` column. ``auto`` is the default because an audit
  folder may hold either photographs (which need a face box: a whole photo squeezed to
  64x64 is not what the model was trained on) or already-cropped faces (where the
  cascade, which needs some context around a face, misses some: 13% of a sample of
  faces-real's crops, a third of faces-sample's tiny ones);
  with ``auto`` both get a prediction, and the fallback ones are marked so they can be
  filtered.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import cv2
import numpy as np

from ferreport.audit.detection import DEFAULT_PARAMS, DetectorParams, aligned_crop, find_faces
from ferreport.constants import FACE_SIZE, IMAGE_SUFFIXES
from ferreport.datasets.crop import crop_face
from ferreport.datasets.decode import MAX_IMAGE_BYTES, decode_image
from ferreport.datasets.workers import exit_with_parent
from ferreport.runs.cells import name_text
from ferreport.safe_io import NOT_REGULAR, NotRegularFile, open_regular

__all__ = [
    "FOLDER_LINK", "FOLDER_UNREADABLE", "FOUND_DETECTED", "FOUND_FALLBACK", "FOUND_WHOLE", "NOT_AN_IMAGE",
    "NOT_REGULAR", "NO_FACE", "UNSUPPORTED", "ScanResult", "ScanTask", "display_path", "init_scan_worker", "scan_files",
    "sniff", "walk_folder",
]

#: Skip reasons (besides :data:`NOT_REGULAR` - a FIFO, socket or device, never opened - and
#: decode_image's "empty file", "file too large", "cannot read (...)", "truncated JPEG",
#: the corrupt-JPEG reasons and "cannot decode").
UNSUPPORTED = "unsupported type"
NOT_AN_IMAGE = "content is not JPEG, PNG, BMP, WebP or TIFF"
FOLDER_LINK = "link to a folder (not followed)"
FOLDER_UNREADABLE = "folder unreadable"
NO_FACE = "no face found"
#: How a face was found (the ``found`` column of predictions.csv).
FOUND_DETECTED, FOUND_WHOLE, FOUND_FALLBACK = "detected", "whole", "fallback"


# =========================================================================== walk


def display_path(path: str) -> str:
    """A path as text that can always be written and read back (:func:`ferreport.runs.cells.name_text`)."""
    return name_text(path)


def _rel(root: str, full: str) -> str:
    rel = os.path.relpath(full, root)
    return display_path(rel.replace(os.sep, "/") if os.sep != "/" else rel)


def _same_path(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def walk_folder(root: str | os.PathLike[str], on_skip: Callable[[str, str], None], *,
                exclude: str | os.PathLike[str] | None = None) -> Iterator[tuple[str, str]]:
    """``(relative display path, full path)`` of every file below ``root``, in sorted order.

    Symlinked folders are reported through ``on_skip`` and not entered; unreadable folders
    too. ``exclude`` (the output folder) is left out silently.
    """
    root_s = os.fspath(root)
    excl = os.fspath(exclude) if exclude is not None else None

    def onerror(exc: OSError) -> None:
        name = exc.filename if isinstance(exc.filename, str) else root_s
        on_skip(_rel(root_s, name) if name != root_s else ".", f"{FOLDER_UNREADABLE} ({exc.strerror or exc})")

    for dirpath, dirnames, filenames in os.walk(root_s, onerror=onerror, followlinks=False):
        keep = []
        for d in sorted(dirnames):
            full = os.path.join(dirpath, d)
            if os.path.islink(full):
                on_skip(_rel(root_s, full), FOLDER_LINK)
            elif excl is not None and _same_path(full, excl):
                continue
            else:
                keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            yield _rel(root_s, full), full


# =========================================================================== decode, detect, crop


_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "jpeg"), (b"\x89PNG\r\n\x1a\n", 0, "png"), (b"BM", 0, "bmp"),
    (b"II*\x00", 0, "tiff"), (b"MM\x00*", 0, "tiff"), (b"WEBP", 8, "webp"),
)


def sniff(head: bytes) -> str | None:
    """The image format from a file's first bytes, or None when it is not one the tool takes."""
    for sig, offset, kind in _SIGNATURES:
        if head[offset:offset + len(sig)] == sig and (kind != "webp" or head[:4] == b"RIFF"):
            return kind
    return None


# A task: (position in the chunk, full path); a result: (position, reason, boxes) where
# boxes are (top, left, right, bottom, found).
ScanTask = tuple[int, str]
ScanResult = tuple[int, str, list[tuple[int, int, int, int, str]]]


def init_scan_worker(parent_pid: int | None = None) -> None:
    """Initialiser of a process that runs :func:`scan_files` (one of a pool using every core)."""
    exit_with_parent(parent_pid)  # a killed audit leaves no decoding workers behind
    cv2.setNumThreads(1)  # the pool already uses every core


def scan_files(tasks: list[ScanTask], mode: str, params: DetectorParams = DEFAULT_PARAMS,
               size: int = FACE_SIZE) -> tuple[list[ScanResult], np.ndarray]:
    """Decode each file, find its faces, crop them: ``(results, faces (k, size, size, 3) RGB)``."""
    results: list[ScanResult] = []
    faces: list[np.ndarray] = []
    for pos, path in tasks:
        if os.path.splitext(path)[1].lower() not in IMAGE_SUFFIXES:
            results.append((pos, UNSUPPORTED, []))
            continue
        try:  # regular files only, checked before opening: a FIFO named x.jpg would block open() forever
            fh, _ = open_regular(path, MAX_IMAGE_BYTES)
            with fh:
                head = fh.read(16)
        except NotRegularFile as exc:
            results.append((pos, exc.reason, []))
            continue
        except OSError as exc:
            results.append((pos, f"cannot read ({exc.strerror or type(exc).__name__})", []))
            continue
        if not head:
            results.append((pos, "empty file", []))
            continue
        if sniff(head) is None:
            results.append((pos, NOT_AN_IMAGE, []))
            continue
        img, why = decode_image(path)
        if img is None:
            results.append((pos, why or "cannot decode", []))
            continue
        h, w = img.shape[:2]
        boxes: list[tuple[int, int, int, int, str]] = []
        angles: list[float | None] = []
        if mode != "whole":
            try:
                found_faces = find_faces(img, params)
            except Exception:  # noqa: BLE001 - a detector failure on one image must not stop the run
                found_faces = []
            boxes = [(*f.box, FOUND_DETECTED) for f in found_faces]
            angles = [f.angle if params.align else None for f in found_faces]
        if not boxes and mode != "detect":
            boxes = [(0, 0, w, h, FOUND_WHOLE if mode == "whole" else FOUND_FALLBACK)]
            angles = [None]
        kept = []
        for (top, left, right, bottom, found), angle in zip(boxes, angles, strict=True):
            if angle is not None:  # --align: eyes level (the box stays the unturned square in predictions.csv)
                face = aligned_crop(img, (top, left, right, bottom), angle, size)
            else:
                face, _ = crop_face(img, top, left, right, bottom, size)
            if face is not None:
                faces.append(face)
                kept.append((top, left, right, bottom, found))
        results.append((pos, "" if kept else NO_FACE, kept))
    stacked = np.stack(faces) if faces else np.zeros((0, size, size, 3), np.uint8)
    return results, stacked
