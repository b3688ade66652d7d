"""Folder audits: what a model says about any folder of images, and where it is unsure.

``ferreport predict FOLDER --model RUN_DIR|FILE.keras`` runs :func:`run_audit`:

walk -> decode -> faces -> predict -> write, in chunks.

* **Walk, decode, faces**: :mod:`ferreport.audit.scanning` (the same for both engines).
* **Predict** with :func:`~ferreport.evaluation.prediction.predict_proba` (batched, uint8 in).
* **Write** ``predictions.csv`` (the evaluation columns ``source, face_id, true_label,
  pred_label, confidence, p_*`` so every evaluation section works unchanged, plus the
  box ``top, left, right, bottom`` in pixels of the (EXIF-rotated) image and ``found``:
  ``detected``, ``whole``, ``fallback`` or ``extra``, see below), ``faces_pool.npz`` (the faces a report may
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

One label, one face: a labelled image is scored once. When detection (``--faces auto`` or
``detect``) finds several faces in a labelled image, the largest
(:func:`ferreport.audit.detection.primary_face`) carries the label; the others are still
predicted and listed in predictions.csv, with ``found`` = ``extra`` and an empty
``true_label``, so they are not scored (metrics.json, ``labelled_faces``) and any reader of
predictions.csv leaves them out of the scores. audit_summary.json counts them in
``faces_by_method["extra"]``. Unlabelled images keep every detection as before.

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
import json
import os
import posixpath
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ferreport.runs import folder as artifacts
from ferreport.runs.atomic import atomic_open, atomic_path, write_json
from ferreport.audit.ray_engine import require_ray, scan_and_predict
from ferreport.datasets.classes import class_id
from ferreport.config import ENGINES, FACES_MODES, AuditConfig  # noqa: F401  (ENGINES, FACES_MODES: defined with the settings)
from ferreport.constants import CLASS_NAMES, FACE_SIZE
from ferreport.audit.detection import DetectorParams, aligned_crop, find_faces, primary_face, resolve_detector
from ferreport.evaluation.drift import DriftSample, drift_tests, sample_from_folder, write_drift
from ferreport.evaluation.slices import slices_for_run
from ferreport.errors import DatasetError, UsageError
from ferreport.config import DriftConfig, SliceConfig
from ferreport.evaluation.embeddings import embedder_for, write_embeddings
from ferreport.evaluation.evaluate import PROBA_DECIMALS, predictions_frame, read_predictions, write_label_issue_rows
from ferreport.evaluation.facestats import FACE_STATS_COLUMNS, IMAGE_MEASURES, face_stats_frame, read_face_stats
from ferreport.evaluation.metrics import metrics_from_predictions
from ferreport.datasets.preprocessing import crop_face, decode_image, pool_context
from ferreport.progress import Stage, echo, stage
from ferreport.progress import mode as progress_mode
from ferreport.runs.provenance import model_fingerprint, now_iso, provenance_record
from ferreport.report import select_pool_rows, write_audit_report
from ferreport.cli.stages import check_run_dir, new_run_id
from ferreport.datasets.loading import count_by_reason
from ferreport.audit.scanning import (
    FOUND_DETECTED,
    FOUND_FALLBACK,
    FOUND_WHOLE,
    NO_FACE,
    ScanResult,
    display_path,
    init_scan_worker,
    scan_files,
    walk_folder,
)

__all__ = [
    "AUDIT_COLUMNS", "AUDIT_SUMMARY", "AuditResult", "DEFAULT_FACES", "FACES_MODES", "FOUND_EXTRA", "SKIPPED_CSV",
    "audit_summary_line", "read_labels_csv", "resolve_model", "run_audit",
]

AUDIT_SUMMARY = artifacts.AUDIT_SUMMARY
SKIPPED_CSV = artifacts.SKIPPED

DEFAULT_FACES = AuditConfig.faces  # the settings' default (config.AuditConfig)
BOX_COLUMNS: tuple[str, ...] = ("top", "left", "right", "bottom")
AUDIT_COLUMNS: tuple[str, ...] = (*artifacts.PREDICTION_COLUMNS, *artifacts.AUDIT_EXTRA_COLUMNS)

#: ``found`` of a face detected in a labelled image beside its primary (largest) face: listed, not scored.
FOUND_EXTRA = "extra"

#: Files per task sent to a worker (files per chunk: AuditConfig.chunk_size).
TASK_SIZE = 16
EXAMPLES_PER_REASON = 5
HIST_BINS = 20


# =========================================================================== labels


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

    A SavedModel folder (it holds saved_model.pb) is the model itself.
    A model file whose folder holds a data_summary.json (a run directory) gets it too.
    """
    
    p = Path(model)
    run_dir: Path | None = None
    if p.is_dir() and (p / "saved_model.pb").is_file():  # a TensorFlow SavedModel folder
        return ResolvedModel(p, None, {})
    if p.is_dir():
        run_dir = p
        p = p / artifacts.MODEL
        if not p.is_file():
            raise UsageError(f"--model {run_dir}: a folder without {artifacts.MODEL} or saved_model.pb; pass a run "
                             "directory, a SavedModel folder or a model file (.keras, .h5, .onnx)")
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


# =========================================================================== the audit


@dataclass
class AuditResult:
    out_dir: Path
    summary: dict[str, Any]
    metrics: dict[str, Any]
    reports: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class _Job:
    """One audit's settings, checked and resolved: what the stages after the checks read."""

    folder: Path
    run_dir: Path
    faces: str
    label_of: _Labels
    model: ResolvedModel
    model_sha: str
    formats: tuple[str, ...]
    chunk_size: int
    batch_size: int
    workers: int
    unsafe_model: bool
    contract: dict[str, Any]       # the model's contract as resolved (outputs decided): what Ray's actors use
    unscored: frozenset[int]       # ExpW class ids the model cannot predict: their labels are not scored
    n_resamples: int
    seed: int
    progress: bool
    detector: DetectorParams
    engine: str
    ray_address: str | None

    def config_record(self) -> dict[str, Any]:
        """config.json: the settings as given (paths as text)."""
        return {"command": "predict", "folder": display_path(str(self.folder)), "model": str(self.model.path),
                "out": str(self.run_dir), "faces": self.faces, "labels": self.label_of.source or "none",
                "formats": list(self.formats), "chunk_size": self.chunk_size, "batch_size": self.batch_size,
                "workers": self.workers, "seed": self.seed, "n_resamples": self.n_resamples,
                "detector": self.detector.name if self.faces != "whole" else None,
                "align": bool(self.detector.align) if self.faces != "whole" else False,
                "unsafe_model": bool(self.unsafe_model), "engine": self.engine, "ray_address": self.ray_address,
                "model_contract": self.contract}


def run_audit(folder: str | os.PathLike[str], model: str | os.PathLike[str], config: AuditConfig | None = None, *,
              progress: bool = False) -> AuditResult:
    """Audit every image below ``folder`` with ``model``; see the module docstring for the outputs.

    ``config`` (:class:`ferreport.config.AuditConfig`, validated there) holds the settings;
    ``engine="ray"`` runs decoding, detection and prediction on Ray Data
    (:mod:`ferreport.audit.ray_engine`; ``ray_address`` joins an existing cluster) and writes
    the same outputs. Stages: check -> scan and predict -> summarise -> score -> write.
    """
    config = config if config is not None else AuditConfig()
    out, faces, labels, formats = config.out, config.faces, config.labels, config.formats
    reports_dir, chunk_size, batch_size, workers = config.reports_dir, config.chunk_size, config.batch_size, config.workers
    unsafe_model, n_resamples, seed, detector = config.unsafe_model, config.n_resamples, config.seed, config.detector
    engine, ray_address = config.engine, config.ray_address
    started = now_iso()
    folder = Path(folder)
    _check_request(folder, engine)
    if faces != "whole":  # --detector auto: BlazeFace when its weights are installed, else Haar (said here)
        detector, notice = resolve_detector(config.face_detector, detector, align=config.align)
        if notice:
            echo(f"notice: {notice}")
    label_of = _resolve_labels(labels, folder)
    resolved = resolve_model(model)
    run_dir = Path(out) if out else Path(reports_dir) / new_run_id()
    check_run_dir(run_dir)
    if config.saliency:  # before TensorFlow is imported: Grad-CAM's gradients must not crash oneDNN
        from ferreport.evaluation.saliency import prepare_onednn

        note = prepare_onednn(resolved.path)
        if note:
            echo(note)
    reference = _reference(config.reference, resolved)  # a bad --reference is a usage error before any work
    from ferreport.models.adapters import open_model  # TensorFlow from here on (not before the checks: they stay fast)

    adapter = open_model(resolved.path, config.contract_options(), safe_mode=not unsafe_model)
    if progress or not adapter.is_ferreport_contract():
        echo(f"{resolved.path}: {adapter.describe()}")
    if config.saliency and config.saliency_layer and adapter.keras_model is not None:
        from ferreport.evaluation.saliency import target_layer

        target_layer(adapter.keras_model, config.saliency_layer)  # a wrong --saliency-layer stops before the scan
    model_sha = model_fingerprint(resolved.path)
    run_dir.mkdir(parents=True, exist_ok=True)
    job = _Job(folder=folder, run_dir=run_dir, faces=faces, label_of=label_of, model=resolved, model_sha=model_sha,
               formats=formats, chunk_size=chunk_size, batch_size=batch_size,
               workers=workers if workers is not None else min(os.cpu_count() or 1, 8),
               unsafe_model=unsafe_model, contract=adapter.resolved_contract().to_dict(),
               unscored=frozenset(CLASS_NAMES.index(c) for c in adapter.contract.missing),
               n_resamples=n_resamples, seed=seed, progress=progress,
               detector=detector, engine=engine, ray_address=ray_address)
    write_json(run_dir / artifacts.CONFIG, job.config_record())

    scan = _scan_and_predict(job, adapter)
    summary = _summarise(job, scan)
    write_json(run_dir / AUDIT_SUMMARY, summary)
    metrics = _score(job, scan.counts, adapter.contract.scored)
    if scan.counts.labelled:  # slices, and the faces whose label is probably wrong (ferreport.evaluation.label_noise)
        frame = read_predictions(run_dir / artifacts.PREDICTIONS)
        shown = _slices(job, frame, adapter.contract.scored)
        shown |= set(write_label_issue_rows(frame, run_dir, adapter.contract.scored).tolist())
        _add_to_pool(job, scan, shown, frame)
        del frame
    if reference is not None and scan.counts.faces:
        _drift(job, reference)
    record = _provenance(job, summary, scan, started, adapter.record())
    if config.saliency:  # Grad-CAM of the pooled faces (ferreport.evaluation.saliency), as an evaluation stores it
        record["saliency"] = explain_pool_file(adapter, run_dir, config.saliency_layer)
    write_json(run_dir / artifacts.PROVENANCE, record)
    result = AuditResult(run_dir, summary, metrics)
    if formats:
        result.reports = write_audit_report(run_dir, formats, n_resamples=n_resamples, seed=seed)
    if scan.counts.faces == 0:
        c = scan.counts
        raise DatasetError(f"{folder}: no face to predict ({c.images_read} images read, "
                           f"{sum(c.skipped.values())} files skipped"
                           + (f": {count_by_reason(c.skipped, 'file')}" if c.skipped else "")
                           + f"); see {run_dir / SKIPPED_CSV}")
    return result


def _check_request(folder: Path, engine: str) -> None:
    """DatasetError for a folder that cannot be audited, before any work (the settings are
    checked by AuditConfig)."""
    if not folder.exists():
        raise DatasetError(f"{folder}: folder not found; give the folder of images to audit")
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder; give the folder holding the images to audit")
    if engine == "ray":
        require_ray()  # a clear error before any work


# --------------------------------------------------------------------------- scan and predict


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
        self.unscored_labelled = 0  # labelled images of a class the model cannot predict (not scored)

    def skip(self, rel: str, reason: str, writer: Any) -> None:
        writer.writerow([rel, reason])
        if reason == NO_FACE:
            return
        self.skipped[reason] += 1
        ex = self.examples.setdefault(reason, [])
        if len(ex) < EXAMPLES_PER_REASON:
            ex.append(rel)

    def add_faces(self, frame: pd.DataFrame, labels: np.ndarray) -> None:
        """Count a chunk's predicted faces (``frame``: predictions.csv rows; ``labels``: true ids, -1 unknown)."""
        self.faces += len(frame)
        self.found.update(frame["found"])
        pred_ids = pd.Categorical(frame["pred_label"], categories=CLASS_NAMES).codes.astype(np.int64)
        self.pred += np.bincount(pred_ids, minlength=len(CLASS_NAMES))
        known = labels >= 0
        self.labelled += int(known.sum())
        self.true += np.bincount(labels[known], minlength=len(CLASS_NAMES))
        conf = frame["confidence"].to_numpy(dtype=np.float64)
        self.hist += np.histogram(np.clip(conf, 0, 1), bins=HIST_BINS, range=(0.0, 1.0))[0]
        self.conf_sum += float(conf.sum())
        self.low_conf += int((conf < 0.5).sum())


class _Pool:
    """The face-pool candidates: select_pool_rows of everything seen so far (bounded)."""

    def __init__(self) -> None:
        self.frame: pd.DataFrame | None = None
        self.faces = np.zeros((0, FACE_SIZE, FACE_SIZE, 3), np.uint8)

    def update(self, frame: pd.DataFrame, faces: np.ndarray) -> None:
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


@dataclass
class _FaceRows:
    """The faces of one chunk, in predictions.csv order, before prediction."""

    sources: list[str] = field(default_factory=list)
    face_ids: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    found: list[str] = field(default_factory=list)


@dataclass
class _Scan:
    """What the scan writes to and counts into: chunk after chunk is absorbed here, by either engine."""

    label_of: _Labels
    pred_fh: Any                     # predictions.csv (being written)
    skip_writer: Any                 # csv writer of skipped.csv
    counts: _Counts = field(default_factory=_Counts)
    pool: _Pool = field(default_factory=_Pool)
    matched: set[str] = field(default_factory=set)  # --labels FILE.csv paths that were found
    unscored: frozenset[int] = frozenset()          # class ids the model cannot predict (labels not scored)
    seconds: float = 0.0
    cluster: dict[str, Any] | None = None           # the Ray cluster used (engine ray)
    stats_fh: Any = None                            # face_stats.csv (being written), one row per face
    pixels: bool = True                             # faces hold their pixels (not the Ray engine's placeholders)
    embed: Callable[[np.ndarray], np.ndarray] | None = None  # penultimate-layer embeddings (Keras models)
    embeddings: Any = None                          # _Reservoir of (row, embedding)

    def absorb(self, chunk: list[tuple[str, str]], results: list[tuple[list[ScanResult], np.ndarray]],
               predict: Callable[[np.ndarray], np.ndarray]) -> None:
        """Count and write one chunk: its files' scan ``results`` and faces, predicted by ``predict``."""
        rows = self._tally_files(chunk, results)
        face_parts = [part_faces for _, part_faces in results]
        faces = np.concatenate(face_parts) if face_parts else np.zeros((0, FACE_SIZE, FACE_SIZE, 3), np.uint8)
        if len(faces) != len(rows.sources):  # defensive: the workers return one face per kept box
            raise RuntimeError(f"audit: {len(faces)} faces for {len(rows.sources)} boxes")
        if rows.sources:
            self._write_faces(rows, faces, predict(faces))

    def _tally_files(self, chunk: list[tuple[str, str]],
                     results: list[tuple[list[ScanResult], np.ndarray]]) -> _FaceRows:
        """Count each file (skipped, read, with or without a face) and list its faces."""
        c, rows = self.counts, _FaceRows()
        for part_results, _ in results:
            for pos, reason, kept in part_results:
                rel, full = chunk[pos]
                c.files += 1
                if self.label_of.mode == "csv" and rel in self.label_of.table:
                    self.matched.add(rel)
                if reason and reason != NO_FACE:
                    c.skip(rel, reason, self.skip_writer)
                    continue
                c.images_read += 1
                try:
                    size = os.path.getsize(full)
                except OSError:
                    size = -1
                c.fingerprint.update(f"{rel}\0{size}\n".encode("utf-8", "surrogateescape"))
                if reason == NO_FACE:
                    c.images_without_face += 1
                    c.skip(rel, NO_FACE, self.skip_writer)
                    continue
                if any(k[4] == FOUND_FALLBACK for k in kept):
                    c.images_without_face += 1
                else:
                    c.images_with_face += 1
                lab = self.label_of(rel)
                if lab >= 0 and lab in self.unscored:  # a class the model has no output for: not scored
                    c.unscored_labelled += 1
                    lab = -1
                # one label, one face: a labelled image's label goes to its largest face only
                primary = primary_face(kept) if lab >= 0 and len(kept) > 1 else -1
                for j, (top, left, right, bottom, how) in enumerate(kept):
                    extra = primary >= 0 and j != primary
                    rows.sources.append(rel)
                    rows.face_ids.append(j)
                    rows.labels.append(-1 if extra else lab)
                    rows.boxes.append((top, left, right, bottom))
                    rows.found.append(FOUND_EXTRA if extra else how)
        return rows

    def _write_faces(self, rows: _FaceRows, faces: np.ndarray, proba: np.ndarray) -> None:
        """Append the faces' rows to predictions.csv; update the face pool and the counts."""
        table = pd.DataFrame({"source": rows.sources, "face_id": np.asarray(rows.face_ids, dtype=np.int64),
                              "label": np.asarray(rows.labels, dtype=np.int64)})
        frame = predictions_frame(proba, table)
        box = np.asarray(rows.boxes, dtype=np.int64).reshape(-1, 4)
        for i, col in enumerate(BOX_COLUMNS):
            frame[col] = box[:, i]
        frame["found"] = rows.found
        frame[list(AUDIT_COLUMNS)].to_csv(self.pred_fh, header=False, index=False,
                                          float_format=f"%.{PROBA_DECIMALS}f")
        frame["row"] = np.arange(self.counts.faces, self.counts.faces + len(frame), dtype=np.int64)
        if self.stats_fh is not None:
            self._write_stats(rows, faces, box)
        if self.embed is not None and self.embeddings is not None:
            self.embeddings.offer(frame["row"].to_numpy(), self.embed, faces)
        self.pool.update(frame, faces)
        self.counts.add_faces(frame, np.asarray(rows.labels))

    def _write_stats(self, rows: _FaceRows, faces: np.ndarray, box: np.ndarray) -> None:
        """Append the chunk's face_stats.csv rows (a chunk holds every face of its images)."""
        sources = pd.Series(rows.sources)
        attributes = pd.DataFrame({
            "box_side": np.minimum(box[:, 3] - box[:, 0], box[:, 2] - box[:, 1]).astype(np.float64),
            "faces_in_image": sources.map(sources.value_counts()).to_numpy(np.float64)})
        stats = face_stats_frame(faces, attributes, np.asarray(rows.found, dtype=object))
        if not self.pixels:  # the Ray engine keeps no pixels on the driver: no pixel measures
            for col in ("grayscale", *IMAGE_MEASURES):
                stats[col] = np.nan
        stats.to_csv(self.stats_fh, header=False, index=False)


class _Reservoir:
    """A seeded uniform sample of at most ``cap`` faces' embeddings, whatever the folder size (Algorithm R)."""

    def __init__(self, cap: int, seed: int) -> None:
        self.cap, self.rng, self.seen = cap, np.random.default_rng(seed), 0
        self.rows: list[int] = []
        self.vectors: list[np.ndarray] = []

    def offer(self, rows: np.ndarray, embed: Callable[[np.ndarray], np.ndarray], faces: np.ndarray) -> None:
        take: list[tuple[int, int]] = []  # (position in the chunk, slot: -1 appended)
        for j, row in enumerate(rows):
            if self.seen < self.cap:
                take.append((j, -1))
            else:
                slot = int(self.rng.integers(0, self.seen + 1))
                if slot < self.cap:
                    take.append((j, slot))
            self.seen += 1
        if not take:
            return
        vectors = embed(np.asarray(faces[[j for j, _ in take]])).astype(np.float16)
        for (j, slot), v in zip(take, vectors):
            if slot < 0:
                self.rows.append(int(rows[j]))
                self.vectors.append(v)
            else:
                self.rows[slot], self.vectors[slot] = int(rows[j]), v

    def write(self, path: Path, layer: str) -> None:
        order = np.argsort(self.rows)
        write_embeddings(path, np.asarray(self.rows, np.int64)[order],
                         np.asarray(self.vectors)[order] if self.vectors else np.zeros((0, 0), np.float16), layer)


def explain_pool_file(adapter: Any, run_dir: Path, layer: str | None = None) -> dict[str, Any]:
    """Grad-CAM of the faces in ``run_dir``'s faces_pool.npz into saliency.npz; returns what it recorded."""
    from ferreport.evaluation.saliency import SALIENCY_FILE, explain_pool

    pool = run_dir / artifacts.FACES_POOL
    with np.load(pool, allow_pickle=False) as npz:
        rows, faces = np.asarray(npz["rows"], dtype=np.int64), np.asarray(npz["faces"])
    with stage("saliency", total=len(rows), unit="faces") as bar:
        info = explain_pool(adapter, faces, rows, run_dir / SALIENCY_FILE, layer)
        bar.advance(len(rows))
    return info


def _scan_and_predict(job: _Job, adapter: Any) -> _Scan:
    """Walk, decode, detect, predict and write predictions.csv, skipped.csv, face_stats.csv, embeddings.npz
    and faces_pool.npz."""
    run_dir = job.run_dir
    total = _count_files(job.folder, run_dir) if job.progress else None
    t0 = time.perf_counter()
    embedder = embedder_for(adapter) if job.engine == "local" else None
    with stage("audit", total=total, unit="files") as bar, \
            atomic_open(run_dir / artifacts.PREDICTIONS) as pred_fh, atomic_open(run_dir / SKIPPED_CSV) as skip_fh, \
            atomic_open(run_dir / artifacts.FACE_STATS) as stats_fh:
        skip_writer = csv.writer(skip_fh)
        skip_writer.writerow(["path", "reason"])
        pred_fh.write(",".join(AUDIT_COLUMNS) + "\n")
        stats_fh.write(",".join(FACE_STATS_COLUMNS) + "\n")
        scan = _Scan(job.label_of, pred_fh, skip_writer, stats_fh=stats_fh, pixels=job.engine == "local")
        scan.unscored = job.unscored
        if embedder is not None:
            scan.embed = lambda faces: embedder(faces, job.batch_size)
            scan.embeddings = _Reservoir(DriftConfig().max_embeddings, job.seed)
        files = walk_folder(job.folder, lambda rel, why: scan.counts.skip(rel, why, skip_writer), exclude=run_dir)
        if job.engine == "ray":
            listed = list(files)
            face_paths, face_boxes = _absorb_ray(job, listed, scan)
        else:
            _absorb_local(job, files, scan, adapter, bar=bar)
        bar.summary = f"{_progress_note(scan.counts)} in {bar.seconds:.1f} s"
    scan.seconds = time.perf_counter() - t0
    if job.engine == "ray":
        _crop_pool_faces(scan.pool, face_paths, face_boxes, job.detector)
    scan.pool.write(run_dir / artifacts.FACES_POOL)
    if scan.embeddings is not None and embedder is not None:
        scan.embeddings.write(run_dir / artifacts.EMBEDDINGS, embedder.layer_name)
    return scan


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


def _progress_note(c: _Counts) -> str:
    """What the audit has read so far: files, images, faces, skipped files."""
    return (f"{c.files:,} files, {c.images_read:,} images, {c.faces:,} faces, "
            f"{sum(c.skipped.values()):,} skipped")


class _Scanner:
    """Submits chunks to :func:`~ferreport.audit.scanning.scan_files`: in this process, or in a process
    pool started for the first chunk big enough to need one (``workers > 1``)."""

    def __init__(self, job: _Job):
        self.job = job
        self.executor: cf.ProcessPoolExecutor | None = None

    def submit(self, chunk: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[Any]]:
        job = self.job
        tasks = [(i, full) for i, (_, full) in enumerate(chunk)]
        parts = [tasks[i:i + TASK_SIZE] for i in range(0, len(tasks), TASK_SIZE)]
        if (self.executor is None and job.workers > 1
                and (len(chunk) >= 64 or len(chunk) == job.chunk_size)):
            self.executor = cf.ProcessPoolExecutor(max_workers=job.workers, mp_context=pool_context(),
                                                   initializer=init_scan_worker, initargs=(os.getpid(),))
        if self.executor is None:
            return chunk, [scan_files(p, job.faces, job.detector) for p in parts]
        return chunk, [self.executor.submit(scan_files, p, job.faces, job.detector) for p in parts]

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)


def _finite(proba: np.ndarray, job: _Job) -> np.ndarray:
    """``proba`` from Ray's actors, checked again on the driver: a ModelError (exit 4) naming the model
    when any is NaN or infinite."""
    from ferreport.models.model_file import check_finite_outputs  # TensorFlow: already imported once a model is loaded

    check_finite_outputs(proba, job.model.path)
    return proba


def _absorb_local(job: _Job, files: Iterator[tuple[str, str]], scan: _Scan, adapter: Any, *, bar: Stage) -> None:
    """The local engine: chunk k+1 is decoded (in the pool) while chunk k is predicted here; ``bar``
    counts the files."""
    from ferreport.evaluation.prediction import predict_proba  # TensorFlow: imported once a model is loaded

    def predict(faces: np.ndarray) -> np.ndarray:
        return predict_proba(adapter, faces, batch_size=job.batch_size)  # NaN/inf refused by the adapter

    chunks = _chunks(files, job.chunk_size)
    scanner = _Scanner(job)
    try:
        first = next(chunks, None)
        pending = scanner.submit(first) if first is not None else None
        while pending is not None:
            chunk, futures = pending
            nxt = next(chunks, None)
            results = [f.result() if isinstance(f, cf.Future) else f for f in futures]
            pending = scanner.submit(nxt) if nxt is not None else None  # decoded while this chunk is predicted
            scan.absorb(chunk, results, predict)
            bar.advance(len(chunk), note=_progress_note(scan.counts))
    finally:
        scanner.close()


def _absorb_ray(job: _Job, listed: list[tuple[str, str]], scan: _Scan) -> tuple[list[str], np.ndarray]:
    """The Ray engine's scan and predictions, fed chunk by chunk to the local engine's writer.

    Returns, for every face row of predictions.csv, its file and its box (to crop the
    report's faces again).
    """
    table, scan.cluster = scan_and_predict(
        [full for _, full in listed], mode=job.faces, detector=job.detector, model_path=job.model.path,
        contract=job.contract, unsafe_model=job.unsafe_model, batch_size=job.batch_size, address=job.ray_address, workers=job.workers,
        scratch=job.run_dir, progress=job.progress)
    pos = table["pos"].to_numpy()
    proba_all = table[[f"p{j}" for j in range(len(CLASS_NAMES))]].to_numpy(dtype=np.float32)
    box_cols = table[["top", "left", "right", "bottom"]].to_numpy(dtype=np.int64)
    reasons, found = table["reason"].to_numpy(), table["found"].to_numpy()
    chunk_size = job.chunk_size
    starts = np.searchsorted(pos, np.arange(0, len(listed) + chunk_size, chunk_size))
    for k, first in enumerate(range(0, len(listed), chunk_size)):
        results: list[ScanResult] = []
        keep: list[int] = []
        for i in range(starts[k], starts[k + 1]):
            p = int(pos[i]) - first
            if not results or results[-1][0] != p:
                results.append((p, str(reasons[i] or ""), []))
            if found[i]:
                results[-1][2].append((*map(int, box_cols[i]), str(found[i])))
                keep.append(i)
        placeholder = np.broadcast_to(np.zeros((1, FACE_SIZE, FACE_SIZE, 3), np.uint8),
                                      (len(keep), FACE_SIZE, FACE_SIZE, 3))
        scan.absorb(listed[first:first + chunk_size], [(results, placeholder)],
                    lambda _faces, keep=keep: _finite(proba_all[keep], job))
    has_face = table["found"].astype(bool).to_numpy()
    return [listed[int(i)][1] for i in pos[has_face]], box_cols[has_face]


def _crop_pool_faces(pool: _Pool, paths: list[str], boxes: np.ndarray, detector: DetectorParams) -> None:
    """Crop the face pool's faces again from their files (the Ray engine keeps no pixels on the driver).

    ``paths[r]`` and ``boxes[r]`` are the file and box of face row ``r`` of predictions.csv. With
    ``--align`` the face's angle is found again by the same detector (the same box, the same angle).
    """
    if pool.frame is None or not len(pool.frame):
        return
    rows = pool.frame["row"].to_numpy(dtype=np.int64)
    pool.faces = recrop_faces([(paths[row], tuple(map(int, boxes[row]))) for row in rows], detector)


def recrop_faces(items: Sequence[tuple[str | Path, tuple[int, ...]]], detector: DetectorParams) -> np.ndarray:
    """The faces at ``(path, box)`` cropped again as the scan cropped them (zeros when unreadable), in order.

    Each file is decoded once, and with ``--align`` its faces are found once by the same detector: the same
    box gets the same angle as in the scan.
    """
    faces = np.zeros((len(items), FACE_SIZE, FACE_SIZE, 3), np.uint8)
    by_path: dict[str, list[int]] = {}
    for n, (path, _) in enumerate(items):
        by_path.setdefault(str(path), []).append(n)
    for path, positions in by_path.items():
        img, _ = decode_image(path)
        if img is None:
            continue
        angles = {f.box: f.angle for f in find_faces(img, detector)} if detector.align else {}
        for n in positions:
            box = items[n][1]
            angle = angles.get(box)
            if angle is not None:
                faces[n] = aligned_crop(img, box, angle, FACE_SIZE)
            else:
                face, _ = crop_face(img, *box, FACE_SIZE)
                if face is not None:
                    faces[n] = face
    return faces


# --------------------------------------------------------------------------- summarise, score, write


def _summarise(job: _Job, scan: _Scan) -> dict[str, Any]:
    """audit_summary.json: what was read, found, skipped and predicted, and how fast."""
    c, seconds, label_of = scan.counts, scan.seconds, job.label_of
    summary: dict[str, Any] = {
        "folder": display_path(str(job.folder)),
        "faces_mode": job.faces,
        "labels": label_of.source or "none",
        "files_seen": c.files,
        "images_read": c.images_read,
        "images_with_face": c.images_with_face,
        "images_without_face": c.images_without_face,
        "faces_found": c.faces,
        "faces_by_method": {k: int(c.found.get(k, 0))
                            for k in (FOUND_DETECTED, FOUND_WHOLE, FOUND_FALLBACK, FOUND_EXTRA)},
        "files_skipped": int(sum(c.skipped.values())),
        "skipped": dict(sorted(c.skipped.items())),
        "skipped_examples": {k: list(v) for k, v in sorted(c.examples.items())},
        "predicted_counts": {n: int(c.pred[i]) for i, n in enumerate(CLASS_NAMES)},
        "labelled_faces": c.labelled,
        "true_counts": {n: int(c.true[i]) for i, n in enumerate(CLASS_NAMES)} if c.labelled else None,
        "training_distribution": job.model.training_distribution or None,
        "confidence": _confidence_summary(c),
        "model": str(job.model.path),
        "model_run_dir": str(job.model.run_dir) if job.model.run_dir is not None else None,
        "model_sha256": job.model_sha,
        "fingerprint": c.fingerprint.hexdigest(),
        "seconds": round(seconds, 3),
        "images_per_second": round(c.images_read / seconds, 2) if seconds > 0 else None,
        "faces_per_second": round(c.faces / seconds, 2) if seconds > 0 else None,
        "detector": job.detector.to_dict() if job.faces != "whole" else None,
        "chunk_size": job.chunk_size,
        "batch_size": job.batch_size,
        "workers": job.workers,
    }
    if job.unscored:
        summary["classes_not_scored"] = {"classes": [CLASS_NAMES[i] for i in sorted(job.unscored)],
                                         "labelled_images": c.unscored_labelled}
    if label_of.mode == "csv":
        unmatched = sorted(set(label_of.table) - scan.matched)
        summary["labels_not_found"] = len(unmatched)
        summary["labels_not_found_examples"] = unmatched[:EXAMPLES_PER_REASON]
    summary["engine"] = job.engine
    if job.engine == "ray":
        summary["ray"] = scan.cluster
    return summary


def _confidence_summary(c: _Counts) -> dict[str, Any]:
    return {
        "mean": round(c.conf_sum / c.faces, 6) if c.faces else None,
        "below_0.5": c.low_conf,
        "histogram": {"edges": [round(i / HIST_BINS, 6) for i in range(HIST_BINS + 1)],
                      "counts": [int(v) for v in c.hist]},
    }


def _score(job: _Job, c: _Counts, scored: tuple[str, ...] = CLASS_NAMES) -> dict[str, Any]:
    """Every evaluation metric (written to metrics.json) when faces have labels; else the prediction counts."""
    if not c.labelled:
        return {"n": 0, "n_rows": c.faces, "n_unlabelled": c.faces,
                "prediction_counts": {n: int(c.pred[i]) for i, n in enumerate(CLASS_NAMES)}}
    frame = pd.read_csv(job.run_dir / artifacts.PREDICTIONS, keep_default_na=False, na_values={"confidence": [""]},
                        usecols=["true_label", "pred_label", "confidence", *artifacts.PROBA_COLUMNS],
                        dtype={"true_label": str, "pred_label": str})
    metrics = metrics_from_predictions(frame, n_resamples=job.n_resamples, seed=job.seed, labels=scored).to_dict()
    del frame
    write_json(job.run_dir / artifacts.METRICS, metrics)
    return metrics


def _reference(given: Path | None, model: ResolvedModel) -> DriftSample | None:
    """The drift reference: ``--reference``, else the model's run folder when it was evaluated, else none."""
    if given is not None:
        if not Path(given).is_dir():
            raise UsageError(f"--reference {given}: not a folder; give an evaluated run folder or an audit folder")
        return sample_from_folder(given)
    run = model.run_dir
    if run is not None and (run / artifacts.PREDICTIONS).is_file() and not (run / AUDIT_SUMMARY).is_file():
        return sample_from_folder(run)
    return None


def _slices(job: _Job, frame: pd.DataFrame, scored: tuple[str, ...]) -> set[int]:
    """slices.json of a labelled audit (the face method among the slices); returns the rows of its weak slices'
    worst faces (for the face pool)."""
    stats = read_face_stats(job.run_dir / artifacts.FACE_STATS, len(frame))
    report = slices_for_run(job.run_dir, frame, stats, labels=scored, settings=SliceConfig(),
                            n_resamples=job.n_resamples, seed=job.seed)
    return {int(r) for s in (report.weakest if report is not None else ()) for r in s.worst_rows}


def _add_to_pool(job: _Job, scan: _Scan, rows: Iterable[int], frame: pd.DataFrame) -> None:
    """Add the faces of predictions.csv ``rows`` a report section shows (a weak slice's worst faces, the labels
    to check) to the face pool, cropped again from their files as the scan cropped them."""
    pool = scan.pool
    have = set(pool.frame["row"].tolist()) if pool.frame is not None else set()
    rows = sorted(int(r) for r in set(rows) - have)
    if not rows:
        return
    items = [(job.folder / str(frame.at[row, "source"]), tuple(int(frame.at[row, c]) for c in BOX_COLUMNS))
             for row in rows]
    faces = recrop_faces(items, job.detector)
    extra = frame.iloc[rows][["true_label", "pred_label", "confidence", *artifacts.PROBA_COLUMNS]].copy()
    extra.insert(0, "row", np.asarray(rows, np.int64))
    pool.frame = pd.concat([pool.frame, extra], ignore_index=True) if pool.frame is not None else extra
    pool.faces = np.concatenate([pool.faces[: len(pool.frame) - len(rows)], faces])
    pool.write(job.run_dir / artifacts.FACES_POOL)


def _drift(job: _Job, reference: DriftSample) -> None:
    """drift.json: this folder against the reference."""
    result = drift_tests(reference, sample_from_folder(job.run_dir, option="predict"), DriftConfig(), seed=job.seed)
    write_drift(result, job.run_dir)
    if progress_mode() != "off" and not result.drift_detected:  # a stage line: --no-progress silences it
        echo(f"drift against {reference.name}: none detected")  # detected drift: a report notice, always printed


def _provenance(job: _Job, summary: dict[str, Any], scan: _Scan, started: str,
                contract: dict[str, Any]) -> dict[str, Any]:
    c = scan.counts
    return provenance_record(seed=job.seed, data_fingerprint=summary["fingerprint"], model_sha256=job.model_sha,
                             started=started, finished=now_iso(),
                             extra={"run_id": job.run_dir.name, "model": str(job.model.path),
                                    "model_contract": contract,
                                    "detector": summary["detector"],
                                    "audit": {"folder": str(job.folder), "faces": job.faces,
                                              "labels": job.label_of.source or "none",
                                              "images_read": c.images_read, "faces_found": c.faces,
                                              "seconds": round(scan.seconds, 3)}})


def audit_summary_line(summary: dict[str, Any], metrics: dict[str, Any]) -> str:
    """One console line: what was read and found (and the scores when labels were known)."""
    skipped = summary.get("files_skipped", 0)
    line = f"{summary['images_read']:,} images, {summary['faces_found']:,} faces"
    by_method = summary.get("faces_by_method")
    extra = by_method.get(FOUND_EXTRA, 0) if isinstance(by_method, dict) else 0
    notes = [f"{extra:,} extra in labelled images, listed but not scored"] if extra else []
    if summary.get("faces_mode") != "whole":
        notes.append(f"{summary['images_without_face']:,} images without a detected face")
    if notes:
        line += f" ({'; '.join(notes)})"
    line += f", {skipped:,} files skipped"
    if metrics.get("n"):
        line += f"; n {metrics['n']} accuracy {metrics['accuracy']:.3f} macro_f1 {metrics['macro_f1']:.3f}"
    rate = summary.get("images_per_second")
    if rate:
        line += f"; {rate:,.1f} images/s"
    return line
