"""Folder audits: what a model says about any folder of images, and where it is unsure.

``ferreport predict FOLDER --model RUN_DIR|FILE.keras`` runs :func:`run_audit`:

check -> walk -> decode -> faces -> predict -> write, in chunks -> the after-scan sections.

* **Check** the folder, the labels (:mod:`ferreport.audit.labels`), the model
  (:mod:`ferreport.audit.model`) and the output folder, before any image is read.
* **Walk, decode, faces, predict, write**: :mod:`ferreport.audit.scan` (the files and faces:
  :mod:`ferreport.audit.scanning`, the same for both engines; predictions with
  :func:`~ferreport.models.prediction.predict_proba`, batched, uint8 in, or on Ray:
  :mod:`ferreport.audit.ray_engine`). It writes ``predictions.csv`` (the columns of
  :mod:`ferreport.audit.columns`), ``skipped.csv``, ``face_stats.csv``, ``embeddings.npz`` and
  ``faces_pool.npz`` (the faces a report may show: :mod:`ferreport.audit.face_pool`).
* **After the scan** (:mod:`ferreport.audit.after_scan`): ``audit_summary.json``,
  ``metrics.json``, ``slices.json`` and the labels to check (when labels are known),
  ``drift.json`` (with a reference), ``config.json``, ``provenance.json`` and, with
  ``saliency``, ``saliency.npz``.

The audit renders no report: its caller does (``ferreport predict`` through
:func:`ferreport.cli.outcome.finish`, after the quality gates), from the folder alone.

One label, one face: a labelled image is scored once. When detection (``--faces auto`` or
``detect``) finds several faces in a labelled image, the largest
(:func:`ferreport.audit.detection.primary_face`) carries the label; the others are still
predicted and listed in predictions.csv, with ``found`` = ``extra`` and an empty
``true_label``, so they are not scored (metrics.json, ``labelled_faces``) and any reader of
predictions.csv leaves them out of the scores. audit_summary.json counts them in
``faces_by_method["extra"]``. Unlabelled images keep every detection.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ferreport.audit.after_scan import check_drift, drift_reference, labelled_sections, provenance, score, summarise
from ferreport.audit.columns import FOUND_EXTRA
from ferreport.audit.detection import DEFAULT_PARAMS, resolve_detector
from ferreport.audit.face_pool import explain_pool_file
from ferreport.audit.job import AuditJob
from ferreport.audit.labels import resolve_labels
from ferreport.audit.model import resolve_model
from ferreport.audit.ray_engine import require_ray
from ferreport.audit.scan import scan_folder
from ferreport.config import AuditConfig
from ferreport.constants import CLASS_NAMES
from ferreport.datasets.skips import count_by_reason
from ferreport.errors import DatasetError
from ferreport.evaluation.saliency import prepare_onednn, target_layer
from ferreport.progress import echo
from ferreport.runs.folder import SKIPPED, RunFolder, check_run_dir, new_run_id
from ferreport.runs.provenance import model_fingerprint, now_iso

__all__ = ["AuditResult", "audit_summary_line", "run_audit"]


@dataclass
class AuditResult:
    """A finished audit: its folder, audit_summary.json and the metrics (metrics.json when labels were known)."""

    out_dir: Path
    summary: dict[str, Any]
    metrics: dict[str, Any]


def run_audit(folder: str | os.PathLike[str], model: str | os.PathLike[str], config: AuditConfig | None = None, *,
              progress: bool = False) -> AuditResult:
    """Audit every image below ``folder`` with ``model``; see the module docstring for the outputs.

    ``config`` (:class:`ferreport.config.AuditConfig`, validated there) holds the settings;
    ``engine="ray"`` runs decoding, detection and prediction on Ray Data
    (:mod:`ferreport.audit.ray_engine`; ``ray_address`` joins an existing cluster) and writes
    the same outputs. Stages: check -> scan and predict -> summarise -> score -> write.
    ``config.formats`` is only recorded: the caller renders the report.
    """
    config = config if config is not None else AuditConfig()
    out, faces, labels, formats = config.out, config.faces, config.labels, config.formats
    reports_dir, chunk_size, batch_size = config.reports_dir, config.chunk_size, config.batch_size
    workers = config.workers
    unsafe_model, n_resamples, seed = config.unsafe_model, config.n_resamples, config.seed
    detector = config.detector if config.detector is not None else DEFAULT_PARAMS  # None: the detector's defaults
    engine, ray_address = config.engine, config.ray_address
    started = now_iso()
    folder = Path(folder)
    _check_request(folder, engine)
    if faces != "whole":  # --detector auto: BlazeFace when its weights are installed, else Haar (said here)
        detector, notice = resolve_detector(config.face_detector, detector, align=config.align)
        if notice:
            echo(f"notice: {notice}")
    label_of = resolve_labels(labels, folder)
    resolved = resolve_model(model)
    run_dir = Path(out) if out else Path(reports_dir) / new_run_id()
    check_run_dir(run_dir)
    if config.saliency:  # before TensorFlow is imported: Grad-CAM's gradients must not crash oneDNN
        note = prepare_onednn(resolved.path)
        if note:
            echo(note)
    reference = drift_reference(config.reference, resolved)  # a bad --reference is a usage error before any work
    from ferreport.models.adapters import open_model  # TensorFlow from here on (not before the checks: they stay fast)

    adapter = open_model(resolved.path, config.contract_options(), safe_mode=not unsafe_model)
    if progress or not adapter.is_ferreport_contract():
        echo(f"{resolved.path}: {adapter.describe()}")
    for line in adapter.assumed_warnings():
        echo(f"warning: {resolved.path}: {line}")
    if config.saliency and config.saliency_layer and adapter.keras_model is not None:
        target_layer(adapter.keras_model, config.saliency_layer)  # a wrong --saliency-layer stops before the scan
    model_sha = model_fingerprint(resolved.path)
    RunFolder(run_dir).create("audit")
    job = AuditJob(folder=folder, run_dir=run_dir, faces=faces, label_of=label_of, model=resolved,
                   model_sha=model_sha, formats=formats, chunk_size=chunk_size, batch_size=batch_size,
                   workers=workers if workers is not None else min(os.cpu_count() or 1, 8),
                   unsafe_model=unsafe_model, contract=adapter.resolved_contract().to_dict(),
                   unscored=frozenset(CLASS_NAMES.index(c) for c in adapter.contract.missing),
                   n_resamples=n_resamples, seed=seed, progress=progress,
                   detector=detector, engine=engine, ray_address=ray_address,
                   model_timeout=adapter.timeout)
    run = RunFolder(run_dir)
    run.write_config(job.config_record())

    scan = scan_folder(job, adapter)
    summary = summarise(job, scan)
    run.write_audit_summary(summary)
    metrics = score(job, scan.counts, adapter.contract.scored)
    if scan.counts.labelled:  # slices, and the faces whose label is probably wrong (ferreport.evaluation.label_noise)
        labelled_sections(job, scan, adapter.contract.scored)
    if reference is not None and scan.counts.faces:
        check_drift(job, reference)
    record = provenance(job, summary, scan, started, adapter.record())
    if config.saliency:  # Grad-CAM of the pooled faces (ferreport.evaluation.saliency), as an evaluation stores it
        record["saliency"] = explain_pool_file(adapter, run, config.saliency_layer)
    run.write_provenance(record)
    if scan.counts.faces == 0:
        c = scan.counts
        raise DatasetError(f"{folder}: no face to predict ({c.images_read} images read, "
                           f"{sum(c.skipped.values())} files skipped"
                           + (f": {count_by_reason(c.skipped, 'file')}" if c.skipped else "")
                           + f"); see {run.file(SKIPPED)}")
    return AuditResult(run_dir, summary, metrics)


def _check_request(folder: Path, engine: str) -> None:
    """DatasetError for a folder that cannot be audited, before any work (the settings are
    checked by AuditConfig)."""
    if not folder.exists():
        raise DatasetError(f"{folder}: folder not found; give the folder of images to audit")
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder; give the folder holding the images to audit")
    if engine == "ray":
        require_ray()  # a clear error before any work


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
