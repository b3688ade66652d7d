"""A folder audit's scan: walk -> decode -> faces -> predict -> write, chunk after chunk, by either engine.

Memory stays flat whatever the folder size: files are taken ``chunk_size`` at a time (decoded and
cropped in a process pool while the previous chunk is predicted, or on Ray:
:mod:`ferreport.audit.ray_engine`), rows are appended to the (temporary) predictions.csv,
skipped.csv and face_stats.csv, and only the face-pool candidates
(:class:`~ferreport.audit.face_pool.FacePool`), a bounded sample of embeddings and the counters
(:class:`~ferreport.audit.counts.Counts`) are kept.

One label, one face: when detection finds several faces in a labelled image, the largest
(:func:`ferreport.audit.detection.primary_face`) carries the label; the others are predicted and
listed with ``found`` = :data:`~ferreport.audit.columns.FOUND_EXTRA` and an empty ``true_label``.
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ferreport.audit.columns import AUDIT_COLUMNS, BOX_COLUMNS, FOUND_EXTRA
from ferreport.audit.counts import Counts, progress_note
from ferreport.audit.detection import primary_face
from ferreport.audit.face_pool import FacePool, crop_pool_faces
from ferreport.audit.job import AuditJob
from ferreport.audit.labels import Labels
from ferreport.audit.ray_engine import scan_and_predict
from ferreport.audit.scanning import FOUND_FALLBACK, NO_FACE, ScanResult, init_scan_worker, scan_files, walk_folder
from ferreport.config import DriftConfig
from ferreport.constants import CLASS_NAMES, FACE_SIZE
from ferreport.datasets.workers import pool_context
from ferreport.evaluation.embeddings import embedder_for, write_embeddings
from ferreport.evaluation.facestats import FACE_STATS_COLUMNS, IMAGE_MEASURES, face_stats_frame
from ferreport.progress import Stage, stage
from ferreport.runs.cells import LINE_END, write_frame
from ferreport.runs.folder import FACE_STATS, PREDICTIONS, PROBA_DECIMALS, SKIPPED, RunFolder

__all__ = ["TASK_SIZE", "EmbeddingSample", "FaceRows", "Scan", "Scanner", "chunks", "count_files", "scan_folder"]

#: Files per task sent to a worker (files per chunk: AuditConfig.chunk_size).
TASK_SIZE = 16


@dataclass
class FaceRows:
    """The faces of one chunk, in predictions.csv order, before prediction."""

    sources: list[str] = field(default_factory=list)
    face_ids: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    found: list[str] = field(default_factory=list)


class EmbeddingSample:
    """A seeded uniform sample of at most ``cap`` faces' embeddings, whatever the folder size (Algorithm R)."""

    def __init__(self, cap: int, seed: int) -> None:
        self.cap, self.rng, self.seen = cap, np.random.default_rng(seed), 0
        self.rows: list[int] = []
        self.vectors: list[np.ndarray] = []

    def offer(self, rows: np.ndarray, embed: Callable[[np.ndarray], np.ndarray], faces: np.ndarray) -> None:
        """Offer a chunk's face ``rows``: the ones sampled are embedded (``embed``) and kept."""
        take: list[tuple[int, int]] = []  # (position in the chunk, slot: -1 appended)
        for j, _row in enumerate(rows):
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
        for (j, slot), v in zip(take, vectors, strict=True):
            if slot < 0:
                self.rows.append(int(rows[j]))
                self.vectors.append(v)
            else:
                self.rows[slot], self.vectors[slot] = int(rows[j]), v

    def write(self, run: RunFolder, layer: str) -> None:
        """The run's embeddings.npz, in row order."""
        order = np.argsort(self.rows)
        write_embeddings(run, np.asarray(self.rows, np.int64)[order],
                         np.asarray(self.vectors)[order] if self.vectors else np.zeros((0, 0), np.float16), layer)


@dataclass
class Scan:
    """What the scan writes to and counts into: chunk after chunk is absorbed here, by either engine."""

    label_of: Labels
    pred_fh: Any                     # predictions.csv (being written)
    skip_writer: Any                 # csv writer of skipped.csv
    counts: Counts = field(default_factory=Counts)
    pool: FacePool = field(default_factory=FacePool)
    matched: set[str] = field(default_factory=set)  # --labels FILE.csv paths that were found
    unscored: frozenset[int] = frozenset()          # class ids the model cannot predict (labels not scored)
    seconds: float = 0.0
    cluster: dict[str, Any] | None = None           # the Ray cluster used (engine ray)
    stats_fh: Any = None                            # face_stats.csv (being written), one row per face
    pixels: bool = True                             # faces hold their pixels (not the Ray engine's placeholders)
    embed: Callable[[np.ndarray], np.ndarray] | None = None  # penultimate-layer embeddings (Keras models)
    embeddings: EmbeddingSample | None = None       # the sample of (row, embedding)

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
                     results: list[tuple[list[ScanResult], np.ndarray]]) -> FaceRows:
        """Count each file (skipped, read, with or without a face) and list its faces."""
        c, rows = self.counts, FaceRows()
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

    def _write_faces(self, rows: FaceRows, faces: np.ndarray, proba: np.ndarray) -> None:
        """Append the faces' rows to predictions.csv; update the face pool and the counts."""
        from ferreport.evaluation.evaluate import predictions_frame  # TensorFlow (evaluate loads it): after the checks

        table = pd.DataFrame({"source": rows.sources, "face_id": np.asarray(rows.face_ids, dtype=np.int64),
                              "label": np.asarray(rows.labels, dtype=np.int64)})
        frame = predictions_frame(proba, table)
        box = np.asarray(rows.boxes, dtype=np.int64).reshape(-1, 4)
        for i, col in enumerate(BOX_COLUMNS):
            frame[col] = box[:, i]
        frame["found"] = rows.found
        write_frame(frame[list(AUDIT_COLUMNS)], self.pred_fh, header=False, float_format=f"%.{PROBA_DECIMALS}f")
        frame["row"] = np.arange(self.counts.faces, self.counts.faces + len(frame), dtype=np.int64)
        if self.stats_fh is not None:
            self._write_stats(rows, faces, box)
        if self.embed is not None and self.embeddings is not None:
            self.embeddings.offer(frame["row"].to_numpy(), self.embed, faces)
        self.pool.update(frame, faces)
        self.counts.add_faces(frame, np.asarray(rows.labels))

    def _write_stats(self, rows: FaceRows, faces: np.ndarray, box: np.ndarray) -> None:
        """Append the chunk's face_stats.csv rows (a chunk holds every face of its images)."""
        sources = pd.Series(rows.sources)
        attributes = pd.DataFrame({
            "box_side": np.minimum(box[:, 3] - box[:, 0], box[:, 2] - box[:, 1]).astype(np.float64),
            "faces_in_image": sources.map(sources.value_counts()).to_numpy(np.float64)})
        stats = face_stats_frame(faces, attributes, np.asarray(rows.found, dtype=object))
        if not self.pixels:  # the Ray engine keeps no pixels on the driver: no pixel measures
            for col in ("grayscale", *IMAGE_MEASURES):
                stats[col] = np.nan
        write_frame(stats, self.stats_fh, header=False)


def scan_folder(job: AuditJob, adapter: Any) -> Scan:
    """Walk, decode, detect, predict and write predictions.csv, skipped.csv, face_stats.csv, embeddings.npz
    and faces_pool.npz."""
    run = job.run
    total = count_files(job.folder, job.run_dir) if job.progress else None
    t0 = time.perf_counter()
    embedder = embedder_for(adapter) if job.engine == "local" else None
    with stage("audit", total=total, unit="files") as bar, \
            run.open_for_writing(PREDICTIONS) as pred_fh, run.open_for_writing(SKIPPED) as skip_fh, \
            run.open_for_writing(FACE_STATS) as stats_fh:
        skip_writer = csv.writer(skip_fh, lineterminator=LINE_END)
        skip_writer.writerow(["path", "reason"])
        pred_fh.write(",".join(AUDIT_COLUMNS) + LINE_END)
        stats_fh.write(",".join(FACE_STATS_COLUMNS) + LINE_END)
        scan = Scan(job.label_of, pred_fh, skip_writer, stats_fh=stats_fh, pixels=job.engine == "local")
        scan.unscored = job.unscored
        if embedder is not None:
            scan.embed = lambda faces: embedder(faces, job.batch_size)
            scan.embeddings = EmbeddingSample(DriftConfig().max_embeddings, job.seed)
        files = walk_folder(job.folder, lambda rel, why: scan.counts.skip(rel, why, skip_writer),
                            exclude=job.run_dir)
        if job.engine == "ray":
            listed = list(files)
            face_paths, face_boxes = _absorb_ray(job, listed, scan)
        else:
            _absorb_local(job, files, scan, adapter, bar=bar)
        bar.summary = f"{progress_note(scan.counts)} in {bar.seconds:.1f} s"
    scan.seconds = time.perf_counter() - t0
    if job.engine == "ray":
        crop_pool_faces(scan.pool, face_paths, face_boxes, job.detector)
    scan.pool.write(run)
    if scan.embeddings is not None and embedder is not None:
        scan.embeddings.write(run, embedder.layer_name)
    return scan


def chunks(it: Iterator[tuple[str, str]], size: int) -> Iterator[list[tuple[str, str]]]:
    """The items of ``it`` in lists of ``size`` (the last one shorter)."""
    chunk: list[tuple[str, str]] = []
    for item in it:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def count_files(folder: os.PathLike[str], exclude: os.PathLike[str] | None) -> int:
    """The files the scan of ``folder`` will see (a first, quick walk: the progress bar's total)."""
    n = 0
    for _ in walk_folder(folder, lambda *_: None, exclude=exclude):
        n += 1
    return n


class Scanner:
    """Submits chunks to :func:`~ferreport.audit.scanning.scan_files`: in this process, or in a process
    pool started for the first chunk big enough to need one (``workers > 1``)."""

    def __init__(self, job: AuditJob):
        self.job = job
        self.executor: cf.ProcessPoolExecutor | None = None

    def submit(self, chunk: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[Any]]:
        """Start scanning ``chunk``: the chunk and its parts' results (or futures of them)."""
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


def _finite(proba: np.ndarray, job: AuditJob) -> np.ndarray:
    """``proba`` from Ray's actors, checked again on the driver: a ModelError (exit 4) naming the model
    when any is NaN or infinite."""
    from ferreport.models.model_file import check_finite_outputs  # TensorFlow: already imported once a model is loaded

    check_finite_outputs(proba, job.model.path)
    return proba


def _absorb_local(job: AuditJob, files: Iterator[tuple[str, str]], scan: Scan, adapter: Any, *,
                  bar: Stage) -> None:
    """The local engine: chunk k+1 is decoded (in the pool) while chunk k is predicted here; ``bar``
    counts the files."""
    from ferreport.models.prediction import predict_proba  # TensorFlow: imported once a model is loaded

    def predict(faces: np.ndarray) -> np.ndarray:
        return predict_proba(adapter, faces, batch_size=job.batch_size)  # NaN/inf refused by the adapter

    pieces = chunks(files, job.chunk_size)
    scanner = Scanner(job)
    try:
        first = next(pieces, None)
        pending = scanner.submit(first) if first is not None else None
        while pending is not None:
            chunk, futures = pending
            nxt = next(pieces, None)
            results = [f.result() if isinstance(f, cf.Future) else f for f in futures]
            pending = scanner.submit(nxt) if nxt is not None else None  # decoded while this chunk is predicted
            scan.absorb(chunk, results, predict)
            bar.advance(len(chunk), note=progress_note(scan.counts))
    finally:
        scanner.close()


def _absorb_ray(job: AuditJob, listed: list[tuple[str, str]], scan: Scan) -> tuple[list[str], np.ndarray]:
    """The Ray engine's scan and predictions, fed chunk by chunk to the local engine's writer.

    Returns, for every face row of predictions.csv, its file and its box (to crop the
    report's faces again).
    """
    table, scan.cluster = scan_and_predict(
        [full for _, full in listed], mode=job.faces, detector=job.detector, model_path=job.model.path,
        contract=job.contract, unsafe_model=job.unsafe_model, batch_size=job.batch_size, address=job.ray_address,
        model_timeout=job.model_timeout,
        workers=job.workers, scratch=job.run, progress=job.progress)
    pos = table["pos"].to_numpy()
    proba_all = table[[f"p{j}" for j in range(len(CLASS_NAMES))]].to_numpy(dtype=np.float32)
    box_cols = table[list(BOX_COLUMNS)].to_numpy(dtype=np.int64)
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
