"""What a folder audit writes after its scan: audit_summary.json, metrics.json, slices.json, the labels to
check, drift.json and provenance.json.

The labelled sections (metrics, slices, labels to check) need the labels and probabilities of
every face (about 70 bytes a face): predictions.csv is read back from the run folder for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ferreport.audit.columns import FOUND_EXTRA
from ferreport.audit.counts import EXAMPLES_PER_REASON, Counts, confidence_summary
from ferreport.audit.face_pool import add_to_pool
from ferreport.audit.job import AuditJob
from ferreport.audit.model import ResolvedModel
from ferreport.audit.scan import Scan
from ferreport.audit.scanning import FOUND_DETECTED, FOUND_FALLBACK, FOUND_WHOLE, display_path
from ferreport.config import DriftConfig, SliceConfig
from ferreport.constants import CLASS_NAMES
from ferreport.errors import UsageError
from ferreport.evaluation.drift import DriftSample, drift_tests, sample_from_folder, write_drift
from ferreport.evaluation.facestats import read_face_stats
from ferreport.evaluation.label_noise import write_label_issue_rows
from ferreport.evaluation.metrics import metrics_from_predictions
from ferreport.evaluation.slices import slices_for_run
from ferreport.progress import echo
from ferreport.progress import mode as progress_mode
from ferreport.runs.folder import AUDIT_SUMMARY, PREDICTIONS, PROBA_COLUMNS, RunFolder
from ferreport.runs.provenance import now_iso, provenance_record

__all__ = ["check_drift", "drift_reference", "labelled_sections", "provenance", "score", "summarise"]


def summarise(job: AuditJob, scan: Scan) -> dict[str, Any]:
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
        "confidence": confidence_summary(c),
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


def score(job: AuditJob, c: Counts, scored: tuple[str, ...] = CLASS_NAMES) -> dict[str, Any]:
    """Every evaluation metric (written to metrics.json) when faces have labels; else the prediction counts."""
    if not c.labelled:
        return {"n": 0, "n_rows": c.faces, "n_unlabelled": c.faces,
                "prediction_counts": {n: int(c.pred[i]) for i, n in enumerate(CLASS_NAMES)}}
    frame = job.run.read_predictions(usecols=["true_label", "pred_label", "confidence", *PROBA_COLUMNS],
                                     face_id_text=False)
    metrics = metrics_from_predictions(frame, n_resamples=job.n_resamples, seed=job.seed, labels=scored).to_dict()
    del frame
    job.run.write_metrics(metrics)
    return metrics


def labelled_sections(job: AuditJob, scan: Scan, scored: tuple[str, ...]) -> None:
    """slices.json and the faces whose label is probably wrong (:mod:`ferreport.evaluation.label_noise`) of a
    labelled audit; the faces they show join the face pool."""
    frame = job.run.read_predictions(face_id_text=False)
    stats = read_face_stats(job.run, len(frame))
    report = slices_for_run(job.run_dir, frame, stats, labels=scored, settings=SliceConfig(),
                            n_resamples=job.n_resamples, seed=job.seed)
    shown = {int(r) for s in (report.weakest if report is not None else ()) for r in s.worst_rows}
    shown |= set(write_label_issue_rows(frame, job.run, scored).tolist())
    add_to_pool(job, scan.pool, shown, frame)


def drift_reference(given: Path | None, model: ResolvedModel) -> DriftSample | None:
    """The drift reference: ``--reference``, else the model's run folder when it was evaluated, else none."""
    if given is not None:
        if not Path(given).is_dir():
            raise UsageError(f"--reference {given}: not a folder; give an evaluated run folder or an audit folder")
        return sample_from_folder(given)
    run = model.run_dir
    if run is not None and RunFolder(run).has(PREDICTIONS) and not RunFolder(run).has(AUDIT_SUMMARY):
        return sample_from_folder(run)
    return None


def check_drift(job: AuditJob, reference: DriftSample) -> None:
    """drift.json: this folder against the reference."""
    result = drift_tests(reference, sample_from_folder(job.run_dir, option="predict"), DriftConfig(), seed=job.seed)
    write_drift(result, job.run)
    if progress_mode() != "off" and not result.drift_detected:  # a stage line: --no-progress silences it
        echo(f"drift against {reference.name}: none detected")  # detected drift: a report notice, always printed


def provenance(job: AuditJob, summary: dict[str, Any], scan: Scan, started: str,
               contract: dict[str, Any]) -> dict[str, Any]:
    """provenance.json's record of the audit (before any saliency note is added)."""
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
