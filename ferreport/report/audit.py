"""The audit report: an audit folder's artefacts -> the same page (and PDF) as the evaluation report.

Shares the evaluation report's section builders (:mod:`ferreport.report.sections`:
confusion matrix, per-class metrics, most-confused pairs, calibration, training
curves, provenance, quality gates), its thumbnails, its templates and its HTML/PDF
rendering. What is its own are the audit sections
(``templates/sections/audit_*.html.j2``): overview tiles, the folder scan (images read,
faces found, images without a face, files skipped by reason), predicted-class
distribution beside the training distribution, confidence histogram and the face grids
(least confident; most confident per predicted class; most confident mistakes when
labels are known).

Memory: predictions.csv is read in chunks. Only the face-pool rows are kept whole; the
scores of a labelled audit need the labels and probabilities of every face.

Re-rendering (``ferreport report AUDIT_DIR``) reads only the audit folder: no images,
no TensorFlow.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ferreport.constants import CLASS_NAMES
from ferreport.errors import DatasetError, UsageError
from ferreport.evaluation.drift import read_drift
from ferreport.evaluation.face_pool import ids_and_conf, order_asc, order_desc
from ferreport.evaluation.metrics import MetricsBundle
from ferreport.evaluation.saliency import SaliencyMaps, read_saliency
from ferreport.evaluation.slices import read_slices
from ferreport.evaluation.stored_run import RunArtifacts, stored_bundle, stored_label_noise
from ferreport.report import plots, words
from ferreport.report import sections as sec
from ferreport.report.context import Notice, ReportContext, Section, ThumbnailLimits, numbered_sections
from ferreport.report.evaluation import stored_scores
from ferreport.report.explain import labels_section, saliency_summary
from ferreport.report.render import check_formats, render_html, write_pages
from ferreport.report.slicing import drift_section, slices_section
from ferreport.report.text import as_int, duration, fmt_pct
from ferreport.runs.folder import (
    AUDIT_SUMMARY,
    PREDICTION_COLUMNS,
    PREDICTIONS,
    REPORT_HTML,
    REPORT_PDF,
    RunFolder,
)

__all__ = ["audit_notices", "build_audit_context", "is_audit_dir", "write_audit_report"]

READ_CHUNK = 65536
LIMITS = ThumbnailLimits(per_class=8, misclassified=24, per_pair=6, least_confident=24)

FACES_MODE_TEXT = {
    "auto": "auto: faces found by {detector}; an image where none is found is predicted whole "
            "(marked fallback)",
    "detect": "detect: faces found by {detector}; images without a face get no prediction",
    "whole": "whole: every image is taken as one face crop (no detection)",
}
DETECTOR_NAMES = {"blazeface": "BlazeFace (MediaPipe)", "haar": "OpenCV's Haar cascade"}


def _faces_text(mode: str, detector: Any) -> str:
    """How faces were taken, naming the detector (audits before BlazeFace recorded none: the cascade)."""
    name = detector.get("name", "haar") if isinstance(detector, Mapping) else "haar"
    return FACES_MODE_TEXT.get(mode, mode or "—").replace("{detector}", DETECTOR_NAMES.get(str(name), str(name)))


def is_audit_dir(run_dir: str | os.PathLike[str]) -> bool:
    """Whether ``run_dir`` is a folder audit: it has an audit_summary.json (even one its reader will refuse)."""
    return RunFolder(run_dir).present(AUDIT_SUMMARY)


# =========================================================================== reading


@dataclass(frozen=True)
class AuditFolder:
    """What an audit folder holds, read once: the pool rows in full, counts of every row."""

    run: Path
    summary: Mapping[str, Any]
    pool_rows: np.ndarray              # row numbers of the stored faces (faces_pool.npz)
    pool_faces: np.ndarray | None
    pool_frame: pd.DataFrame           # the predictions.csv records of those rows (column ``row``)
    n_rows: int
    pred_counts: dict[str, int]        # faces per predicted class
    found: dict[str, int]              # faces per ``found`` value (detected, whole, fallback)


def _read_predictions(run: RunFolder, pool_rows: np.ndarray) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(pool rows' full records, running counts) from one chunked pass over predictions.csv."""
    wanted = np.unique(np.asarray(pool_rows, dtype=np.int64))
    pool_parts: list[pd.DataFrame] = []
    pred = np.zeros(len(CLASS_NAMES), np.int64)
    found: dict[str, int] = {}
    n = 0
    reader = run.read_predictions(chunksize=READ_CHUNK, text_columns=("found",))
    try:
        for chunk in reader:
            rows = np.arange(n, n + len(chunk))
            chunk.index = rows
            if wanted.size:
                hit = chunk[np.isin(rows, wanted)]
                if len(hit):
                    pool_parts.append(hit.assign(row=hit.index.to_numpy()))
            codes = pd.Categorical(chunk["pred_label"], categories=CLASS_NAMES).codes
            pred += np.bincount(codes[codes >= 0], minlength=len(CLASS_NAMES))
            if "found" in chunk.columns:
                for k, v in chunk["found"].value_counts().items():
                    found[str(k)] = found.get(str(k), 0) + int(v)
            n += len(chunk)
    except pd.errors.EmptyDataError:
        pass
    except DatasetError:
        raise  # already names the file and the reason
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{run.file(PREDICTIONS)}: cannot read predictions ({exc})") from exc
    cols = [*PREDICTION_COLUMNS, "found", "row"]
    pool = pd.concat(pool_parts, ignore_index=True) if pool_parts else pd.DataFrame(columns=cols)
    return pool, {"n": n, "pred": pred, "found": found}


def read_audit_folder(run: Path, problems: list[str]) -> AuditFolder:
    """audit_summary.json, the face pool and one chunked pass over predictions.csv."""
    folder = RunFolder(run)
    # required: one that is there but refused is exit 3 naming the reason
    summary = folder.read_json_strict(AUDIT_SUMMARY) if folder.present(AUDIT_SUMMARY) else None
    if summary is None:
        raise UsageError(f"{run}: no readable {AUDIT_SUMMARY}; run `ferreport predict FOLDER --out {run}` first")
    if not folder.has(PREDICTIONS):
        raise UsageError(f"{run}: no {PREDICTIONS}; run `ferreport predict` into this folder first")
    pool_rows, pool_faces = folder.read_face_pool(None, problems)
    pool_frame, info = _read_predictions(folder, pool_rows)
    return AuditFolder(run, summary, pool_rows, pool_faces, pool_frame, int(info["n"]),
                       {c: int(info["pred"][i]) for i, c in enumerate(CLASS_NAMES)}, info["found"])


def _labelled(summary: Mapping[str, Any]) -> bool:
    return as_int(summary.get("labelled_faces")) > 0


# =========================================================================== numbers and the pool as a run


def _true_counts(bundle: MetricsBundle) -> dict[str, int] | None:
    if bundle.classification is None:
        return None
    cm = np.asarray(bundle.classification.confusion_matrix)
    return {c: int(cm[i].sum()) for i, c in enumerate(bundle.classification.labels)}


def _model_history(summary: Mapping[str, Any]) -> pd.DataFrame | None:
    """The audited model's training history, when its run folder is recorded and holds one."""
    model_dir = summary.get("model_run_dir")
    if not (_labelled(summary) and isinstance(model_dir, str)):
        return None
    return RunFolder(model_dir).read_history()


def _pool_as_run(folder: AuditFolder, problems: list[str]) -> RunArtifacts:
    """The face pool as a small run (row i of its predictions is pool face i) for the shared sections."""
    pos = {int(r): i for i, r in enumerate(folder.pool_rows)}
    pool_frame = folder.pool_frame
    if len(pool_frame) and folder.pool_faces is not None:
        pool_frame = pool_frame[pool_frame["row"].isin(pos)].sort_values("row").reset_index(drop=True)
        faces_arr = folder.pool_faces[[pos[int(r)] for r in pool_frame["row"]]]
    else:
        pool_frame, faces_arr = pool_frame.iloc[0:0], None
    run = folder.run
    stored = RunFolder(run)
    metrics = stored.read_metrics(problems)
    provenance = stored.read_provenance(problems)
    config = stored.read_config(problems)
    shown_problems = tuple(problems)  # as before the split: a gates.json problem is not listed
    return RunArtifacts(
        run_dir=run, predictions=pool_frame, metrics=metrics, provenance=provenance, config=config,
        pool_rows=np.arange(len(pool_frame), dtype=np.int64), pool_faces=faces_arr, problems=shown_problems,
        gates=stored.read_gates(problems), history=_model_history(folder.summary),
        bundle=stored_bundle(metrics), label_noise=stored_label_noise(stored),
        saliency=_pool_saliency(run, pool_frame, folder.n_rows, problems))


def _audit_scores(folder: AuditFolder, art: RunArtifacts) -> MetricsBundle:
    """The stored scores of the labelled faces (metrics.json); counts only when no face had a label."""
    if as_int(folder.summary.get("labelled_faces")) > 0 or art.bundle is not None:
        return stored_scores(art)
    return MetricsBundle(None, None, None, folder.n_rows, folder.n_rows, folder.pred_counts)


def _pool_saliency(run: Path, pool_frame: pd.DataFrame, n_rows: int, problems: list[str]) -> SaliencyMaps | None:
    """saliency.npz with its rows (of predictions.csv) turned into positions in the pool frame."""
    sal = read_saliency(run, n_rows, problems)
    if sal is None or not sal.available or "row" not in pool_frame.columns:
        return sal
    position = {int(r): i for i, r in enumerate(pool_frame["row"])}
    keep = [i for i, r in enumerate(sal.rows) if int(r) in position]
    return SaliencyMaps(np.array([position[int(sal.rows[i])] for i in keep], dtype=np.int64),
                        sal.maps[keep], sal.info)


def _pool_faces(art: RunArtifacts) -> sec.Faces:
    pool_frame = art.predictions
    t, p, _, conf = ids_and_conf(pool_frame) if len(pool_frame) else (
        np.zeros(0, np.int64), np.zeros(0, np.int64), None, np.zeros(0))
    return sec.Faces(art, t, p, conf, LIMITS)


# =========================================================================== header


@dataclass(frozen=True)
class AuditHeader:
    run_id: str
    model_name: str | None
    model_sha256: Any
    created: Any


def _audit_header(folder: AuditFolder, art: RunArtifacts) -> AuditHeader:
    summary, prov = folder.summary, art.provenance or {}
    return AuditHeader(
        run_id=str(prov.get("run_id") or folder.run.resolve().name),
        model_name=str(summary.get("model") or prov.get("model") or "") or None,
        model_sha256=summary.get("model_sha256") or prov.get("model_sha256"),
        created=prov.get("finished") or prov.get("started"),
    )


def _overview_facts(folder: AuditFolder, header: AuditHeader, bundle: MetricsBundle,
                    art: RunArtifacts) -> list[tuple[str, str]]:
    summary, labelled = folder.summary, bundle.classification is not None
    return [
        ("Model", header.model_name or "—"),
        *sec.model_input_fact(art),
        ("Model SHA-256", str(header.model_sha256 or "—")),
        ("Folder", str(summary.get("folder", "—"))),
        ("Folder fingerprint", str(summary.get("fingerprint") or "—")),
        ("Run", header.run_id),
        ("Date", str(header.created or "—")),
        ("Faces in predictions.csv", f"{folder.n_rows:,}"
         + (f" ({bundle.n_unlabelled:,} without a true label)" if labelled and bundle.n_unlabelled else "")),
    ]


# =========================================================================== audit sections


def _shares(counts: Mapping[str, Any] | None) -> dict[str, float]:
    if not isinstance(counts, Mapping):
        return {}
    total = sum(as_int(counts.get(c, 0)) for c in CLASS_NAMES)
    return {c: as_int(counts.get(c, 0)) / total for c in CLASS_NAMES} if total else {}


def _overview_section(summary: Mapping[str, Any], bundle: MetricsBundle,
                      facts: list[tuple[str, str]]) -> dict[str, Any]:
    whole = summary.get("faces_mode") == "whole"
    tiles = [
        {"label": "Images read", "value": as_int(summary.get("images_read")), "note": "decoded without error"},
        {"label": "Faces found", "value": as_int(summary.get("faces_found")), "note": "one prediction each"},
        {"label": "Images without a face", "value": None if whole else as_int(summary.get("images_without_face")),
         "note": "not searched (--faces whole)" if whole else
         ("predicted whole (fallback)" if summary.get("faces_mode") == "auto" else "no prediction")},
        {"label": "Files skipped", "value": as_int(summary.get("files_skipped")), "note": "see the folder scan"},
    ]
    return {"tiles": tiles, "facts": facts, "has_labels": bundle.classification is not None}


def _scan_facts(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    mode = str(summary.get("faces_mode", ""))
    found = summary.get("faces_by_method") if isinstance(summary.get("faces_by_method"), Mapping) else {}
    facts = [
        ("Folder", str(summary.get("folder", "—"))),
        ("Faces taken from", _faces_text(mode, summary.get("detector"))),
        ("True labels from", words.labels_source(summary.get("labels") or "none")),
        ("Files seen", f"{as_int(summary.get('files_seen')):,}"),
        ("Images read", f"{as_int(summary.get('images_read')):,}"),
        ("Images with a detected face", "—" if mode == "whole" else f"{as_int(summary.get('images_with_face')):,}"),
        ("Images without a face", "—" if mode == "whole" else f"{as_int(summary.get('images_without_face')):,}"),
        ("Faces found", f"{as_int(summary.get('faces_found')):,}"),
    ]
    if mode != "whole" and summary.get("detector") is not None:
        facts.insert(2, ("Face detector", words.detector_text(summary.get("detector"), short=True)))
    for key, label in (("detected", "Faces from a detected box"), ("whole", "Faces as the whole image"),
                       ("fallback", "Faces as the whole image after no detection (fallback)"),
                       ("extra", "Further faces in labelled images (listed, not scored)")):
        if as_int(found.get(key)):
            facts.append((label, f"{as_int(found.get(key)):,}"))
    if summary.get("labelled_faces") is not None and summary.get("labels") not in (None, "none"):
        facts.append(("Faces with a true label", f"{as_int(summary.get('labelled_faces')):,}"))
    if summary.get("labels_not_found"):
        ex = ", ".join(summary.get("labels_not_found_examples") or [])
        facts.append(("Labelled paths not found among the images", f"{as_int(summary['labels_not_found']):,}"
                      + (f" (first: {ex})" if ex else "")))
    secs = summary.get("seconds")
    if isinstance(secs, (int, float)) and math.isfinite(secs):
        rate = summary.get("images_per_second")
        facts.append(("Time", duration(float(secs)) + (f" ({float(rate):,.1f} images/s)" if rate else "")))
    return facts


def _scan_section(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The folder scan: what was read and found, files skipped by reason (with examples)."""
    skipped_in = summary.get("skipped") if isinstance(summary.get("skipped"), Mapping) else {}
    examples = summary.get("skipped_examples") if isinstance(summary.get("skipped_examples"), Mapping) else {}
    skipped = [{"reason": str(k), "count": as_int(v), "examples": [str(e) for e in (examples.get(k) or [])]}
               for k, v in sorted(skipped_in.items(), key=lambda kv: (-as_int(kv[1]), str(kv[0])))]
    return {"facts": _scan_facts(summary), "skipped": skipped, "n_skipped": sum(s["count"] for s in skipped)}


def _distribution_section(summary: Mapping[str, Any], pred_counts: Mapping[str, int],
                          true_counts: Mapping[str, int] | None) -> dict[str, Any]:
    """Predicted classes beside the true ones (labelled folders) and the training split's."""
    columns: list[tuple[str, Mapping[str, Any]]] = [("predicted", pred_counts)]
    if true_counts and sum(true_counts.values()):
        columns.append(("true (this folder)", true_counts))
    training = summary.get("training_distribution") if isinstance(summary.get("training_distribution"), Mapping) else {}
    if isinstance(training.get("train"), Mapping):
        columns.append(("training split", training["train"]))
    if isinstance(training.get("train_balanced"), Mapping):
        columns.append(("training split, balanced", training["train_balanced"]))
    shares = {label: _shares(c) for label, c in columns}
    rows = []
    for c in CLASS_NAMES:
        rows.append({"name": c, "cells": [{"count": as_int(cnt.get(c, 0)), "share": shares[label].get(c)}
                                          for label, cnt in columns]})
    totals = [sum(as_int(cnt.get(c, 0)) for c in CLASS_NAMES) for _, cnt in columns]
    figure = plots.figure_to_data_uri(plots.class_distribution_figure(shares, shares=True))
    return {"columns": [label for label, _ in columns], "rows": rows, "totals": totals,
            "figure": figure, "has_training": bool(training)}


def _confidence_histogram(summary: Mapping[str, Any]) -> tuple[list[float], list[int]]:
    conf_info = summary.get("confidence") if isinstance(summary.get("confidence"), Mapping) else {}
    hist = conf_info.get("histogram") if isinstance(conf_info.get("histogram"), Mapping) else {}
    edges = list(hist.get("edges") or np.linspace(0, 1, 21).tolist())
    counts = list(hist.get("counts") or [0] * (len(edges) - 1))
    return edges, counts


def _confidence_section(summary: Mapping[str, Any], n: int) -> dict[str, Any]:
    """Histogram of the predicted class's probability, its mean and median, faces below 50%."""
    edges, counts = _confidence_histogram(summary)
    info = summary.get("confidence") if isinstance(summary.get("confidence"), Mapping) else {}
    below = as_int(info.get("below_0.5"))
    c = np.asarray(counts, dtype=float)
    median = None
    if c.sum() > 0:
        cum = np.cumsum(c)
        i = int(np.searchsorted(cum, c.sum() / 2))
        median = (edges[i], edges[i + 1])
    facts = [("Faces", f"{n:,}"),
             ("Mean confidence", fmt_pct(info.get("mean")) if info.get("mean") is not None else "—"),
             ("Median confidence", f"{median[0]:.0%}–{median[1]:.0%}" if median else "—"),
             ("Faces below 50% confidence", f"{below:,}" + (f" ({below / n:.1%})" if n else ""))]
    return {"figure": plots.figure_to_data_uri(plots.confidence_figure(edges, counts)), "facts": facts}


def _faces_section(bundle: MetricsBundle, faces: sec.Faces, limits: ThumbnailLimits) -> dict[str, Any]:
    """Least confident faces, most confident per predicted class, most confident mistakes."""
    order = order_desc(faces.conf)
    top = [{"name": name, "thumbs": faces.pick(order[faces.p[order] == c], limits.per_class)}
           for c, name in enumerate(CLASS_NAMES)]
    labelled = bundle.classification is not None
    return {
        "available": bool(faces.index),
        "least_confident": faces.pick(order_asc(faces.conf), limits.least_confident),
        "top": top,
        "labelled": labelled,
        "misclassified": faces.pick(faces.mistakes(), limits.misclassified) if labelled else [],
    }


def _audit_sections(folder: AuditFolder, art: RunArtifacts, bundle: MetricsBundle,
                    facts: list[tuple[str, str]]) -> tuple[Section, ...]:
    """The audit's own sections, then (labelled folders) the evaluation report's score sections."""
    summary = folder.summary
    faces = _pool_faces(art)
    specs: list[tuple[str, str, str, Any]] = [
        ("overview", "Overview", "sections/audit_overview.html.j2", _overview_section(summary, bundle, facts)),
    ]
    if art.gates:
        specs.append(("gates", "Quality gates", "sections/gates.html.j2", sec.gates_section(art.gates)))
    drift = read_drift(folder.run)
    if drift is not None:
        specs.append(("drift", "Is this folder like the reference?", "sections/drift.html.j2", drift_section(drift)))
    specs += [
        ("scan", "Folder scan", "sections/audit_scan.html.j2", _scan_section(summary)),
        ("distribution", "Predicted classes", "sections/audit_distribution.html.j2",
         _distribution_section(summary, folder.pred_counts, _true_counts(bundle))),
        ("confidence", "Confidence", "sections/audit_confidence.html.j2", _confidence_section(summary, folder.n_rows)),
        ("faces", "Faces", "sections/audit_faces.html.j2",
         {**_faces_section(bundle, faces, LIMITS), "saliency": saliency_summary(art)}),
    ]
    pooled = art.predictions.get("row", [])
    row_of = {int(r): i for i, r in enumerate(pooled)}  # predictions.csv row -> pooled face
    slices = read_slices(folder.run) if bundle.classification is not None else None
    if slices:
        specs.append(("slices", "Where the model errs", "sections/slices.html.j2",
                      slices_section(slices, faces, row_of)))
    if bundle.classification is not None:
        if art.history is not None:
            specs.append(("training", "Training curves", "sections/training.html.j2", sec.training_section(art)))
        specs += [
            ("confusion", "Confusion matrix", "sections/confusion.html.j2", sec.confusion_section(bundle)),
            ("per-class", "Per-class metrics", "sections/per_class.html.j2", sec.per_class_section(bundle)),
            ("confused-pairs", "Most-confused pairs", "sections/confused_pairs.html.j2",
             {**sec.pairs_section(bundle, faces, LIMITS), "saliency": saliency_summary(art)}),
            ("calibration", "Calibration", "sections/calibration.html.j2", sec.calibration_section(bundle)),
        ]
        if art.label_noise is not None:
            specs.append(("label-issues", "Labels to check", "sections/label_issues.html.j2",
                          {**labels_section(art, faces, LIMITS, sec.scored_labels(art), pool_position=row_of),
                           "saliency": saliency_summary(art)}))
    specs.append(("provenance", "Provenance", "sections/provenance.html.j2", sec.provenance_section(art)))
    return numbered_sections(specs)


# =========================================================================== warnings


def _audit_warnings(folder: AuditFolder, art: RunArtifacts, bundle: MetricsBundle) -> list[Notice]:
    """The shared run warnings (less 'faces without a true label' in unlabelled audits), then the scan's."""
    summary = folder.summary
    warnings = [w for w in sec.run_warnings(art, bundle)
                if not (bundle.classification is None and w.title == "Faces without a true label")]
    mode = summary.get("faces_mode")
    without = as_int(summary.get("images_without_face"))
    if without and mode == "auto":
        warnings.append(Notice("Images without a detected face",
                               f"{without:,} of {as_int(summary.get('images_read')):,} images had no face the "
                               "detector could find; each was predicted as a whole image (found = fallback in "
                               "predictions.csv).", "info"))
    elif without and mode == "detect":
        warnings.append(Notice("Images without a detected face",
                               f"{without:,} of {as_int(summary.get('images_read')):,} images had no face the "
                               "detector could find and got no prediction (listed in skipped.csv).", "info"))
    if as_int(summary.get("files_skipped")):
        warnings.append(Notice("Files skipped", f"{as_int(summary['files_skipped']):,} files could not be used; the "
                               "folder scan lists them by reason (all of them in skipped.csv).", "info"))
    if summary.get("labels_not_found"):
        warnings.append(Notice("Labelled paths not found",
                               f"{as_int(summary['labels_not_found']):,} paths of the labels file match no image "
                               "read in the folder."))
    if not folder.found and not folder.n_rows:
        warnings.append(Notice("No face", "No face was predicted: the report has nothing to show."))
    drift = read_drift(folder.run)
    if drift is not None and drift.get("drift_detected"):
        fired = [t.get("title", t.get("key", "?")) for t in drift.get("tests", []) if t.get("fired")]
        warnings.insert(0, Notice("Drift detected",
                                  f"This folder does not look like the reference ({drift.get('reference', '?')}): "
                                  f"{'; '.join(fired)} fired (see 'Is this folder like the reference?').",
                                  kind="drift"))
    return warnings


# =========================================================================== context and files


def build_audit_context(run_dir: str | os.PathLike[str]) -> ReportContext:
    """Read an audit folder and decide what its report shows of its stored results."""
    problems: list[str] = []
    folder = read_audit_folder(Path(run_dir), problems)
    art = _pool_as_run(folder, problems)
    bundle = _audit_scores(folder, art)
    header = _audit_header(folder, art)
    summary, m = folder.summary, bundle.classification
    interval = next(iter(bundle.ci.values()), None) if bundle.ci else None
    sections = _audit_sections(folder, art, bundle, _overview_facts(folder, header, bundle, art))
    warnings = _audit_warnings(folder, art, bundle)
    return ReportContext(
        title="Folder audit", run_id=header.run_id, model_name=header.model_name,
        model_sha256=str(header.model_sha256) if header.model_sha256 else None,
        dataset_name=str(summary.get("folder")) if summary.get("folder") else None,
        dataset_fingerprint=str(summary.get("fingerprint")) if summary.get("fingerprint") else None,
        created=str(header.created) if header.created else None, headline=sec.score_headline(bundle),
        n=m.n if m is not None else 0, n_rows=folder.n_rows, n_unlabelled=bundle.n_unlabelled,
        n_resamples=interval.n_resamples if interval else 0, seed=interval.seed if interval else 0,
        confidence=interval.confidence if interval else 0.95,
        sections=sections, warnings=(*warnings, *sec.left_out_notices(run_dir, warnings)),
        kind="audit",
    )


def audit_notices(run_dir: str | os.PathLike[str]) -> list[Notice]:
    """The warnings and notes the audit's report shows above its first section, without building the page."""
    problems: list[str] = []
    folder = read_audit_folder(Path(run_dir), problems)
    art = _pool_as_run(folder, problems)
    return _audit_warnings(folder, art, _audit_scores(folder, art))


def write_audit_report(run_dir: str | os.PathLike[str], formats: Sequence[str] = ("html", "pdf")) -> dict[str, Path]:
    """Render report.html / report.pdf of an audit folder from its stored results (atomic writes)."""
    formats = check_formats(formats)
    run = Path(run_dir)
    html = render_html(build_audit_context(run))
    return write_pages(html, formats, run / REPORT_HTML, run / REPORT_PDF)
