"""Folder audits: what a model says about any folder of images, and where it is unsure.

``ferreport predict FOLDER --model RUN_DIR|FILE.keras`` runs :func:`run_audit`:

walk -> decode -> faces -> predict -> write, in chunks.

* **Walk.** ``os.walk`` (symlinked folders are not followed, so links cannot loop;
  they are listed as skipped), every directory listing sorted, so the order of
  predictions.csv is deterministic. An output folder inside FOLDER is left out.
* **Decode.** Files whose suffix is not an image suffix (``.jpg .jpeg .png .bmp .webp
  .tif .tiff``, any case) are skipped as ``unsupported type``; files whose content is
  not JPEG, PNG, BMP, WebP or TIFF (a text file named ``.jpg``, a GIF renamed) as
  :data:`NOT_AN_IMAGE`; empty, unreadable, truncated or undecodable ones with the
  reason :func:`~ferreport.preprocessing.decode_image` gives. Skipped files are counted
  by reason and listed in ``skipped.csv`` (``path,reason``); one bad file never stops
  the run. EXIF orientation is applied.
* **Faces** (``--faces``): ``whole`` - the image is one face crop; ``detect`` - one
  face per box found by OpenCV's Haar cascade (:mod:`ferreport.detection`), images
  without a face produce no prediction (listed in skipped.csv as ``no face found``);
  ``auto`` (the default) - detect, and predict on the whole image when nothing is found,
  flagged ``fallback`` in the ``found`` column. ``auto`` is the default because an audit
  folder may hold either photographs (which need a face box: a whole photo squeezed to
  64x64 is not what the model was trained on) or already-cropped faces (where the
  cascade, which needs some context around a face, misses some: 13% of a sample of
  faces-real's crops, a third of faces-sample's tiny ones);
  with ``auto`` both get a prediction, and the fallback ones are marked so they can be
  filtered.
* **Predict** with :func:`~ferreport.prediction.predict_proba` (batched, uint8 in).
* **Write** ``predictions.csv`` (the evaluation columns ``source, face_id, true_label,
  pred_label, confidence, p_*`` so every evaluation section works unchanged, plus the
  box ``top, left, right, bottom`` in pixels of the (EXIF-rotated) image and ``found``:
  ``detected``, ``whole`` or ``fallback``), ``faces_pool.npz`` (the faces a report may
  show), ``audit_summary.json``, ``skipped.csv``, ``config.json``, ``provenance.json``,
  ``metrics.json`` (when labels are known) and ``report.html`` / ``report.pdf``.

Labels (``--labels``): ``subfolders`` - a file under a top-level sub-folder named after
a class (``angry/``, ``Happy/``, ...; any depth below it) has that true label;
``FILE.csv`` - columns ``path,label`` (``path`` relative to FOLDER with ``/``, ``label`` a
class name or id 0-6); a malformed labels file is an error naming the file and line
(exit 3) before any image is read, because a typo in a file written on purpose should
not silently drop labels. ``none`` - no labels. Default: ``subfolders`` when FOLDER has
a class-named sub-folder, else none. Files without a label get an empty ``true_label``
and are left out of the scores.

Memory stays flat whatever the folder size: files are taken ``chunk_size`` at a time
(decoded and cropped in a process pool while the previous chunk is predicted), rows
are appended to the (temporary) predictions.csv, and only the face-pool candidates (a
bounded top-k/bottom-k selection, exactly :func:`ferreport.report.select_pool_rows`
of the whole folder) and counters are kept. The labelled metrics need the labels and
probabilities of every face (about 70 bytes a face) and the report reads predictions.csv
back in chunks.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import csv
import hashlib
import os
import posixpath
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import artifacts
from .atomic import atomic_open, atomic_path, write_json
from .constants import CLASS_NAMES, FACE_SIZE, IMAGE_SUFFIXES
from .config import ENGINES, FACES_MODES, AuditConfig  # noqa: F401  (ENGINES, FACES_MODES: defined with the settings)
from .detection import DEFAULT_PARAMS, DetectorParams
from .errors import DatasetError, UsageError

__all__ = [
    "AUDIT_COLUMNS", "AUDIT_SUMMARY", "AuditResult", "DEFAULT_FACES", "FACES_MODES", "SKIPPED_CSV",
    "read_labels_csv", "resolve_model", "run_audit", "walk_folder",
]

AUDIT_SUMMARY = artifacts.AUDIT_SUMMARY
SKIPPED_CSV = artifacts.SKIPPED

DEFAULT_FACES = AuditConfig.faces  # the settings' default (config.AuditConfig)
FOUND_DETECTED, FOUND_WHOLE, FOUND_FALLBACK = "detected", "whole", "fallback"
BOX_COLUMNS: tuple[str, ...] = ("top", "left", "right", "bottom")
AUDIT_COLUMNS: tuple[str, ...] = (*artifacts.PREDICTION_COLUMNS, *artifacts.AUDIT_EXTRA_COLUMNS)

#: Skip reasons (besides decode_image's "empty file", "file too large", "cannot read (...)",
#: "truncated JPEG", "cannot decode").
UNSUPPORTED = "unsupported type"
NOT_AN_IMAGE = "content is not JPEG, PNG, BMP, WebP or TIFF"
FOLDER_LINK = "link to a folder (not followed)"
FOLDER_UNREADABLE = "folder unreadable"
NO_FACE = "no face found"

#: Files per task sent to a worker (files per chunk: AuditConfig.chunk_size).
TASK_SIZE = 16
EXAMPLES_PER_REASON = 5
HIST_BINS = 20


# =========================================================================== paths


def display_path(path: str) -> str:
    """A path as text that can always be written (undecodable bytes as ``\\xNN``)."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")


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


# =========================================================================== labels


def _label_id(value: str) -> int | None:
    v = value.strip()
    if v.isdigit() and int(v) < len(CLASS_NAMES):
        return int(v)
    low = v.lower()
    return CLASS_NAMES.index(low) if low in CLASS_NAMES else None


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


def read_labels_csv(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> dict[str, int]:
    """``{relative path: class id}`` from a ``path,label`` CSV; DatasetError names file and line."""
    path, root = Path(path), Path(root)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the labels file ({exc.strerror})") from exc
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
            lab = _label_id(row[il])
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
    """Top-level sub-folders named after a class (case-insensitive): ``{folder name: class id}``."""
    out: dict[str, int] = {}
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return out
    for e in entries:
        try:
            if e.is_dir(follow_symlinks=False) and e.name.lower() in CLASS_NAMES:
                out[display_path(e.name)] = CLASS_NAMES.index(e.name.lower())
        except OSError:
            continue
    return out


@dataclass(frozen=True)
class _Labels:
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


def _resolve_labels(labels: str | os.PathLike[str] | None, folder: Path) -> _Labels:
    if labels is None or str(labels).strip().lower() in ("", "auto"):
        folders = class_subfolders(folder)
        return _Labels("subfolders", "subfolders (auto)", folders) if folders else _Labels("none")
    text = str(labels).strip()
    if text.lower() == "none":
        return _Labels("none")
    if text.lower() == "subfolders":
        folders = class_subfolders(folder)
        if not folders:
            raise DatasetError(f"{folder}: --labels subfolders, but no sub-folder is named after a class "
                               f"({', '.join(CLASS_NAMES)})")
        return _Labels("subfolders", "subfolders", folders)
    path = Path(labels)
    if not path.is_file():
        raise UsageError(f"--labels {text}: expected subfolders, none, or an existing CSV file (path,label)")
    return _Labels("csv", str(path), table=read_labels_csv(path, folder))


# =========================================================================== model


@dataclass(frozen=True)
class ResolvedModel:
    path: Path
    run_dir: Path | None
    training_distribution: dict[str, dict[str, int]]


def resolve_model(model: str | os.PathLike[str]) -> ResolvedModel:
    """RUN_DIR -> RUN_DIR/model.keras; the training class distribution from its data_summary.json.

    A model file whose folder holds a data_summary.json (a run directory) gets it too.
    """
    import json

    p = Path(model)
    run_dir: Path | None = None
    if p.is_dir():
        run_dir = p
        p = p / artifacts.MODEL
        if not p.is_file():
            raise UsageError(f"--model {run_dir}: a folder without {artifacts.MODEL}; pass a run directory or a "
                             ".keras file")
    elif (p.parent / artifacts.DATA_SUMMARY).is_file():
        run_dir = p.parent
    dist: dict[str, dict[str, int]] = {}
    if run_dir is not None and (run_dir / artifacts.DATA_SUMMARY).is_file():
        try:
            summary = json.loads((run_dir / artifacts.DATA_SUMMARY).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            summary = {}
        splits = summary.get("splits") if isinstance(summary, dict) else None
        for key, counts in (("train", (splits or {}).get("train") if isinstance(splits, dict) else None),
                            ("train_balanced", summary.get("train_balanced") if isinstance(summary, dict) else None)):
            if isinstance(counts, dict):
                clean = {c: int(counts.get(c, 0)) for c in CLASS_NAMES
                         if isinstance(counts.get(c, 0), (int, float))}
                if sum(clean.values()) > 0:
                    dist[key] = clean
    return ResolvedModel(p, run_dir, dist)


# =========================================================================== worker


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
_Task = tuple[int, str]
_Result = tuple[int, str, list[tuple[int, int, int, int, str]]]


def _worker_init(parent_pid: int | None = None) -> None:
    import cv2

    from .preprocessing import exit_with_parent

    exit_with_parent(parent_pid)  # a killed audit leaves no decoding workers behind
    cv2.setNumThreads(1)  # the pool already uses every core


def scan_files(tasks: list[_Task], mode: str, params: DetectorParams = DEFAULT_PARAMS,
               size: int = FACE_SIZE) -> tuple[list[_Result], np.ndarray]:
    """Decode each file, find its faces, crop them: ``(results, faces (k, size, size, 3) RGB)``."""
    from .detection import detect_faces
    from .preprocessing import crop_face, decode_image

    results: list[_Result] = []
    faces: list[np.ndarray] = []
    for pos, path in tasks:
        if os.path.splitext(path)[1].lower() not in IMAGE_SUFFIXES:
            results.append((pos, UNSUPPORTED, []))
            continue
        try:
            with open(path, "rb") as fh:
                head = fh.read(16)
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
        if mode != "whole":
            try:
                boxes = [(*b, FOUND_DETECTED) for b in detect_faces(img, params)]
            except Exception:  # noqa: BLE001 - a detector failure on one image must not stop the run
                boxes = []
        if not boxes and mode != "detect":
            boxes = [(0, 0, w, h, FOUND_WHOLE if mode == "whole" else FOUND_FALLBACK)]
        kept = []
        for top, left, right, bottom, found in boxes:
            face, _ = crop_face(img, top, left, right, bottom, size)
            if face is not None:
                faces.append(face)
                kept.append((top, left, right, bottom, found))
        results.append((pos, "" if kept else NO_FACE, kept))
    stacked = np.stack(faces) if faces else np.zeros((0, size, size, 3), np.uint8)
    return results, stacked


# =========================================================================== the audit


@dataclass
class AuditResult:
    out_dir: Path
    summary: dict[str, Any]
    metrics: dict[str, Any]
    reports: dict[str, Path] = field(default_factory=dict)


class _Counts:
    """Running totals of the scan (everything audit_summary.json reports)."""

    def __init__(self) -> None:
        self.files = 0
        self.images_read = 0
        self.images_with_face = 0
        self.images_without_face = 0
        self.faces = 0
        self.found: collections.Counter[str] = collections.Counter()
        self.skipped: collections.Counter[str] = collections.Counter()
        self.examples: dict[str, list[str]] = {}
        self.pred = np.zeros(len(CLASS_NAMES), np.int64)
        self.true = np.zeros(len(CLASS_NAMES), np.int64)
        self.labelled = 0
        self.hist = np.zeros(HIST_BINS, np.int64)
        self.conf_sum = 0.0
        self.low_conf = 0
        self.fingerprint = hashlib.sha256()

    def skip(self, rel: str, reason: str, writer: Any) -> None:
        writer.writerow([rel, reason])
        if reason == NO_FACE:
            return
        self.skipped[reason] += 1
        ex = self.examples.setdefault(reason, [])
        if len(ex) < EXAMPLES_PER_REASON:
            ex.append(rel)


class _Pool:
    """The face-pool candidates: select_pool_rows of everything seen so far (bounded)."""

    def __init__(self) -> None:
        self.frame: pd.DataFrame | None = None
        self.faces = np.zeros((0, FACE_SIZE, FACE_SIZE, 3), np.uint8)

    def update(self, frame: pd.DataFrame, faces: np.ndarray) -> None:
        from .report import select_pool_rows

        cols = ["row", "true_label", "pred_label", "confidence", *artifacts.PROBA_COLUMNS]
        part = frame[cols]
        both = part if self.frame is None else pd.concat([self.frame, part], ignore_index=True)
        all_faces = faces if self.frame is None else np.concatenate([self.faces, faces])
        keep = select_pool_rows(both)
        self.frame = both.iloc[keep].reset_index(drop=True)
        self.faces = np.ascontiguousarray(all_faces[keep])

    def write(self, path: Path) -> int:
        rows = (self.frame["row"].to_numpy(dtype=np.int64) if self.frame is not None
                else np.zeros(0, dtype=np.int64))
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, rows=rows, faces=self.faces[: len(rows)])
        return int(rows.size)


def _chunks(it: Iterator[tuple[str, str]], size: int) -> Iterator[list[tuple[str, str]]]:
    chunk: list[tuple[str, str]] = []
    for item in it:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _count_files(folder: Path, exclude: Path | None) -> int:
    n = 0
    for _ in walk_folder(folder, lambda *_: None, exclude=exclude):
        n += 1
    return n


def _progress_line(c: _Counts, total: int | None, seconds: float) -> str:
    rate = c.images_read / seconds if seconds > 0 else 0.0
    of = f"/{total:,}" if total is not None else ""
    return (f"\rauditing: {c.files:,}{of} files, {c.images_read:,} images, {c.faces:,} faces, "
            f"{sum(c.skipped.values()):,} skipped, {rate:.1f} images/s ")


def run_audit(folder: str | os.PathLike[str], model: str | os.PathLike[str], config: AuditConfig | None = None, *,
              progress: bool = False) -> AuditResult:
    """Audit every image below ``folder`` with ``model``; see the module docstring for the outputs.

    ``config`` (:class:`ferreport.config.AuditConfig`, validated there) holds the settings;
    ``engine="ray"`` runs decoding, detection and prediction on Ray Data
    (:mod:`ferreport.audit_ray`; ``ray_address`` joins an existing cluster) and writes
    the same outputs.
    """
    from .provenance import now_iso, provenance_record, sha256_file
    from .stages import check_run_dir, new_run_id

    config = config if config is not None else AuditConfig()
    out, faces, labels, formats = config.out, config.faces, config.labels, config.formats
    reports_dir, chunk_size, batch_size, workers = config.reports_dir, config.chunk_size, config.batch_size, config.workers
    unsafe_model, n_resamples, seed, detector = config.unsafe_model, config.n_resamples, config.seed, config.detector
    engine, ray_address = config.engine, config.ray_address

    started = now_iso()
    folder = Path(folder)
    if not folder.exists():
        raise DatasetError(f"{folder}: folder not found; give the folder of images to audit")
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder; give the folder holding the images to audit")
    if engine == "ray":
        from .audit_ray import _require_ray

        _require_ray()  # a clear error before any work
    label_of = _resolve_labels(labels, folder)
    resolved = resolve_model(model)

    from .model import load_model  # TensorFlow from here on

    keras_model = load_model(resolved.path, safe_mode=not unsafe_model)
    model_sha = sha256_file(resolved.path)
    run_dir = Path(out) if out else Path(reports_dir) / new_run_id()
    check_run_dir(run_dir, resume=False)
    run_dir.mkdir(parents=True, exist_ok=True)
    workers = workers if workers is not None else min(os.cpu_count() or 1, 8)

    config = {"command": "predict", "folder": display_path(str(folder)), "model": str(resolved.path),
              "out": str(run_dir), "faces": faces, "labels": label_of.source or "none",
              "formats": list(formats), "chunk_size": chunk_size, "batch_size": batch_size, "workers": workers,
              "seed": seed, "n_resamples": n_resamples, "unsafe_model": bool(unsafe_model), "engine": engine,
              "ray_address": ray_address}
    write_json(run_dir / artifacts.CONFIG, config)

    counts = _Counts()
    pool = _Pool()
    total = _count_files(folder, run_dir) if progress else None
    matched: set[str] = set()
    t0 = time.perf_counter()
    last_progress = 0.0

    from .prediction import predict_proba

    with atomic_open(run_dir / artifacts.PREDICTIONS) as pred_fh, atomic_open(run_dir / SKIPPED_CSV) as skip_fh:
        skip_writer = csv.writer(skip_fh)
        skip_writer.writerow(["path", "reason"])
        pred_fh.write(",".join(AUDIT_COLUMNS) + "\n")
        files = walk_folder(folder, lambda rel, why: counts.skip(rel, why, skip_writer), exclude=run_dir)
        if engine == "ray":
            listed = list(files)
            cluster, face_pos, face_boxes = _absorb_ray(
                listed, faces, detector, resolved.path, unsafe_model, batch_size, ray_address, workers, run_dir,
                progress, chunk_size, counts, pool, label_of, matched, skip_writer, pred_fh)
            files = iter(())
        chunks = _chunks(files, chunk_size)
        executor: cf.ProcessPoolExecutor | None = None

        def submit(chunk: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[Any]]:
            nonlocal executor
            tasks = [(i, full) for i, (_, full) in enumerate(chunk)]
            parts = [tasks[i:i + TASK_SIZE] for i in range(0, len(tasks), TASK_SIZE)]
            if executor is None and workers > 1 and (len(chunk) >= 64 or len(chunk) == chunk_size):
                from .preprocessing import _pool_context

                executor = cf.ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context(),
                                                  initializer=_worker_init, initargs=(os.getpid(),))
            if executor is None:
                return chunk, [scan_files(p, faces, detector) for p in parts]
            return chunk, [executor.submit(scan_files, p, faces, detector) for p in parts]

        try:
            first = next(chunks, None)
            pending = submit(first) if first is not None else None
            while pending is not None:
                chunk, futures = pending
                nxt = next(chunks, None)
                results = [f.result() if isinstance(f, cf.Future) else f for f in futures]
                pending = submit(nxt) if nxt is not None else None  # decoded while this chunk is predicted
                _absorb_chunk(chunk, results, counts, pool, label_of, matched, skip_writer, pred_fh,
                              keras_model, batch_size, predict_proba)
                now = time.perf_counter()
                if progress and (now - last_progress > 0.5 or pending is None):
                    print(_progress_line(counts, total, now - t0), end="", file=sys.stderr, flush=True)
                    last_progress = now
        finally:
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)
        if progress:
            print(file=sys.stderr)
    seconds = time.perf_counter() - t0
    if engine == "ray":
        _crop_pool_faces(pool, [listed[int(i)][1] for i in face_pos], face_boxes)
    pool.write(run_dir / artifacts.FACES_POOL)

    unmatched = sorted(set(label_of.table) - matched) if label_of.mode == "csv" else []
    summary = _summary(folder, faces, label_of, resolved, model_sha, counts, seconds, unmatched, detector,
                       chunk_size, batch_size, workers)
    summary["engine"] = engine
    if engine == "ray":
        summary["ray"] = cluster
    write_json(run_dir / AUDIT_SUMMARY, summary)

    metrics: dict[str, Any]
    if counts.labelled:
        from .metrics import metrics_from_predictions

        frame = pd.read_csv(run_dir / artifacts.PREDICTIONS, keep_default_na=False, na_values={"confidence": [""]},
                            usecols=["true_label", "pred_label", "confidence", *artifacts.PROBA_COLUMNS],
                            dtype={"true_label": str, "pred_label": str})
        metrics = metrics_from_predictions(frame, n_resamples=n_resamples, seed=seed).to_dict()
        del frame
        write_json(run_dir / artifacts.METRICS, metrics)
    else:
        metrics = {"n": 0, "n_rows": counts.faces, "n_unlabelled": counts.faces,
                   "prediction_counts": {c: int(counts.pred[i]) for i, c in enumerate(CLASS_NAMES)}}
    record = provenance_record(seed=seed, data_fingerprint=summary["fingerprint"], model_sha256=model_sha,
                               started=started, finished=now_iso(),
                               extra={"run_id": run_dir.name, "model": str(resolved.path),
                                      "audit": {"folder": str(folder), "faces": faces,
                                                "labels": label_of.source or "none",
                                                "images_read": counts.images_read, "faces_found": counts.faces,
                                                "seconds": round(seconds, 3)}})
    write_json(run_dir / artifacts.PROVENANCE, record)
    result = AuditResult(run_dir, summary, metrics)
    if formats:
        from .audit_report import write_audit_report

        result.reports = write_audit_report(run_dir, formats, n_resamples=n_resamples, seed=seed)
    if counts.faces == 0:
        raise DatasetError(f"{folder}: no face to predict ({counts.images_read} images read, "
                           f"{sum(counts.skipped.values())} files skipped"
                           + (f": {dict(counts.skipped)}" if counts.skipped else "")
                           + f"); see {run_dir / SKIPPED_CSV}")
    return result


def _absorb_ray(listed: list[tuple[str, str]], faces: str, detector: DetectorParams, model_path: Path,
                unsafe_model: bool, batch_size: int, address: str | None, workers: int, run_dir: Path,
                progress: bool, chunk_size: int, c: _Counts, pool: _Pool, label_of: _Labels, matched: set[str],
                skip_writer: Any, pred_fh: Any) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """The Ray engine's scan and predictions, fed chunk by chunk to the local engine's writer.

    Returns the cluster description and, for every face row of predictions.csv, the
    position of its file in ``listed`` and its box (to crop the report's faces again).
    """
    from .audit_ray import scan_and_predict

    table, cluster = scan_and_predict([full for _, full in listed], mode=faces, detector=detector,
                                      model_path=model_path, unsafe_model=unsafe_model, batch_size=batch_size,
                                      address=address, workers=workers, scratch=run_dir, progress=progress)
    pos = table["pos"].to_numpy()
    proba_all = table[[f"p{j}" for j in range(len(CLASS_NAMES))]].to_numpy(dtype=np.float32)
    box_cols = table[["top", "left", "right", "bottom"]].to_numpy(dtype=np.int64)
    reasons, found = table["reason"].to_numpy(), table["found"].to_numpy()
    starts = np.searchsorted(pos, np.arange(0, len(listed) + chunk_size, chunk_size))
    for k, first in enumerate(range(0, len(listed), chunk_size)):
        chunk = listed[first:first + chunk_size]
        lo, hi = starts[k], starts[k + 1]
        results: list[_Result] = []
        keep: list[int] = []
        for i in range(lo, hi):
            p = int(pos[i]) - first
            if not results or results[-1][0] != p:
                results.append((p, str(reasons[i] or ""), []))
            if found[i]:
                results[-1][2].append((*map(int, box_cols[i]), str(found[i])))
                keep.append(i)
        placeholder = np.broadcast_to(np.zeros((1, FACE_SIZE, FACE_SIZE, 3), np.uint8),
                                      (len(keep), FACE_SIZE, FACE_SIZE, 3))
        _absorb_chunk(chunk, [(results, placeholder)], c, pool, label_of, matched, skip_writer, pred_fh,
                      None, batch_size, None, proba=proba_all[keep])
    has_face = table["found"].astype(bool).to_numpy()
    return cluster, pos[has_face], box_cols[has_face]


def _crop_pool_faces(pool: _Pool, paths: list[str], boxes: np.ndarray) -> None:
    """Crop the face pool's faces again from their files (the Ray engine keeps no pixels on the driver).

    ``paths[r]`` and ``boxes[r]`` are the file and box of face row ``r`` of predictions.csv.
    """
    from .preprocessing import crop_face, decode_image

    if pool.frame is None or not len(pool.frame):
        return
    rows = pool.frame["row"].to_numpy(dtype=np.int64)
    faces = np.zeros((len(rows), FACE_SIZE, FACE_SIZE, 3), np.uint8)
    for n, row in enumerate(rows):
        img, _ = decode_image(paths[row])
        if img is not None:
            face, _ = crop_face(img, *map(int, boxes[row]), FACE_SIZE)
            if face is not None:
                faces[n] = face
    pool.faces = faces


def _absorb_chunk(chunk: list[tuple[str, str]], results: list[tuple[list[_Result], np.ndarray]], c: _Counts,
                  pool: _Pool, label_of: _Labels, matched: set[str], skip_writer: Any, pred_fh: Any,
                  model: Any, batch_size: int, predict_proba: Callable[..., np.ndarray] | None,
                  proba: np.ndarray | None = None) -> None:
    from .evaluation import PROBA_DECIMALS, predictions_frame

    sources: list[str] = []
    face_ids: list[int] = []
    labels: list[int] = []
    boxes: list[tuple[int, int, int, int]] = []
    found: list[str] = []
    face_parts: list[np.ndarray] = []
    for part_results, part_faces in results:
        face_parts.append(part_faces)
        for pos, reason, kept in part_results:
            rel, full = chunk[pos]
            c.files += 1
            if label_of.mode == "csv" and rel in label_of.table:
                matched.add(rel)
            if reason and reason != NO_FACE:
                c.skip(rel, reason, skip_writer)
                continue
            c.images_read += 1
            try:
                size = os.path.getsize(full)
            except OSError:
                size = -1
            c.fingerprint.update(f"{rel}\0{size}\n".encode("utf-8", "surrogateescape"))
            if reason == NO_FACE:
                c.images_without_face += 1
                c.skip(rel, NO_FACE, skip_writer)
                continue
            if any(k[4] == FOUND_FALLBACK for k in kept):
                c.images_without_face += 1
            else:
                c.images_with_face += 1
            lab = label_of(rel)
            for j, (top, left, right, bottom, how) in enumerate(kept):
                sources.append(rel)
                face_ids.append(j)
                labels.append(lab)
                boxes.append((top, left, right, bottom))
                found.append(how)
    faces = np.concatenate(face_parts) if face_parts else np.zeros((0, FACE_SIZE, FACE_SIZE, 3), np.uint8)
    if len(faces) != len(sources):  # defensive: the workers return one face per kept box
        raise RuntimeError(f"audit: {len(faces)} faces for {len(sources)} boxes")
    if not sources:
        return
    if proba is None:
        proba = predict_proba(model, faces, batch_size=batch_size)
    table = pd.DataFrame({"source": sources, "face_id": np.asarray(face_ids, dtype=np.int64),
                          "label": np.asarray(labels, dtype=np.int64)})
    frame = predictions_frame(proba, table)
    box = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    for i, col in enumerate(BOX_COLUMNS):
        frame[col] = box[:, i]
    frame["found"] = found
    frame[list(AUDIT_COLUMNS)].to_csv(pred_fh, header=False, index=False, float_format=f"%.{PROBA_DECIMALS}f")

    frame["row"] = np.arange(c.faces, c.faces + len(frame), dtype=np.int64)
    pool.update(frame, faces)
    c.faces += len(frame)
    c.found.update(found)
    pred_ids = pd.Categorical(frame["pred_label"], categories=CLASS_NAMES).codes.astype(np.int64)
    c.pred += np.bincount(pred_ids, minlength=len(CLASS_NAMES))
    lab_arr = np.asarray(labels)
    known = lab_arr >= 0
    c.labelled += int(known.sum())
    c.true += np.bincount(lab_arr[known], minlength=len(CLASS_NAMES))
    conf = frame["confidence"].to_numpy(dtype=np.float64)
    c.hist += np.histogram(np.clip(conf, 0, 1), bins=HIST_BINS, range=(0.0, 1.0))[0]
    c.conf_sum += float(conf.sum())
    c.low_conf += int((conf < 0.5).sum())


def _summary(folder: Path, faces: str, label_of: _Labels, resolved: ResolvedModel, model_sha: str, c: _Counts,
             seconds: float, unmatched: list[str], detector: DetectorParams, chunk_size: int, batch_size: int,
             workers: int) -> dict[str, Any]:
    names = list(CLASS_NAMES)
    summary: dict[str, Any] = {
        "folder": display_path(str(folder)),
        "faces_mode": faces,
        "labels": label_of.source or "none",
        "files_seen": c.files,
        "images_read": c.images_read,
        "images_with_face": c.images_with_face,
        "images_without_face": c.images_without_face,
        "faces_found": c.faces,
        "faces_by_method": {k: int(c.found.get(k, 0)) for k in (FOUND_DETECTED, FOUND_WHOLE, FOUND_FALLBACK)},
        "files_skipped": int(sum(c.skipped.values())),
        "skipped": dict(sorted(c.skipped.items())),
        "skipped_examples": {k: list(v) for k, v in sorted(c.examples.items())},
        "predicted_counts": {n: int(c.pred[i]) for i, n in enumerate(names)},
        "labelled_faces": c.labelled,
        "true_counts": {n: int(c.true[i]) for i, n in enumerate(names)} if c.labelled else None,
        "training_distribution": resolved.training_distribution or None,
        "confidence": {
            "mean": round(c.conf_sum / c.faces, 6) if c.faces else None,
            "below_0.5": c.low_conf,
            "histogram": {"edges": [round(i / HIST_BINS, 6) for i in range(HIST_BINS + 1)],
                          "counts": [int(v) for v in c.hist]},
        },
        "model": str(resolved.path),
        "model_run_dir": str(resolved.run_dir) if resolved.run_dir is not None else None,
        "model_sha256": model_sha,
        "fingerprint": c.fingerprint.hexdigest(),
        "seconds": round(seconds, 3),
        "images_per_second": round(c.images_read / seconds, 2) if seconds > 0 else None,
        "faces_per_second": round(c.faces / seconds, 2) if seconds > 0 else None,
        "detector": detector.to_dict() if faces != "whole" else None,
        "chunk_size": chunk_size,
        "batch_size": batch_size,
        "workers": workers,
    }
    if label_of.mode == "csv":
        summary["labels_not_found"] = len(unmatched)
        summary["labels_not_found_examples"] = unmatched[:EXAMPLES_PER_REASON]
    return summary


def audit_summary_line(summary: dict[str, Any], metrics: dict[str, Any]) -> str:
    """One console line: what was read and found (and the scores when labels were known)."""
    skipped = summary.get("files_skipped", 0)
    line = f"{summary['images_read']:,} images, {summary['faces_found']:,} faces"
    if summary.get("faces_mode") != "whole":
        line += f" ({summary['images_without_face']:,} images without a detected face)"
    line += f", {skipped:,} files skipped"
    if metrics.get("n"):
        line += f"; n {metrics['n']} accuracy {metrics['accuracy']:.3f} macro_f1 {metrics['macro_f1']:.3f}"
    rate = summary.get("images_per_second")
    if rate:
        line += f"; {rate:,.1f} images/s"
    return line
