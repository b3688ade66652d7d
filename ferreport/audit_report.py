"""The audit report: an audit folder's artefacts -> the same page (and PDF) as the evaluation report.

Reuses :mod:`ferreport.report` end to end: its section builders (confusion matrix,
per-class metrics, most-confused pairs, calibration, training curves, provenance,
quality gates), its thumbnails, its templates and its HTML/PDF rendering. What is new
are the audit sections (``templates/sections/audit_*.html.j2``): overview tiles, the
folder scan (images read, faces found, images without a face, files skipped by reason),
predicted-class distribution beside the training distribution, confidence histogram
and the face grids (least confident; most confident per predicted class; most
confident mistakes when labels are known).

Memory: predictions.csv is read in chunks. Only the face-pool rows are kept whole; the
scores of a labelled audit need the labels and probabilities of every face.

Re-rendering (``ferreport report AUDIT_DIR``) reads only the audit folder: no images,
no TensorFlow.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import artifacts as _files
from . import report as _report
from .atomic import write_bytes, write_text
from .constants import CLASS_NAMES
from .errors import UsageError
from .metrics import MetricsBundle, metrics_from_predictions
from .report import Headline, Notice, ReportContext, RunArtifacts, Section, ThumbnailLimits

__all__ = ["build_audit_context", "is_audit_dir", "write_audit_report"]

AUDIT_SUMMARY = _files.AUDIT_SUMMARY
READ_CHUNK = 65536
LIMITS = ThumbnailLimits(per_class=8, misclassified=24, per_pair=6, least_confident=24)

FACES_MODE_TEXT = {
    "auto": "auto: faces found by OpenCV's Haar cascade; an image where none is found is predicted whole "
            "(marked fallback)",
    "detect": "detect: faces found by OpenCV's Haar cascade; images without a face get no prediction",
    "whole": "whole: every image is taken as one face crop (no detection)",
}


def is_audit_dir(run_dir: str | os.PathLike[str]) -> bool:
    return (Path(run_dir) / AUDIT_SUMMARY).is_file()


# =========================================================================== loading


def _read_json(path: Path, problems: list[str]) -> dict[str, Any] | None:
    return _report._read_json(path, problems)


def _read_predictions(path: Path, pool_rows: np.ndarray, labelled: bool) -> tuple[pd.DataFrame, pd.DataFrame | None,
                                                                                   dict[str, Any]]:
    """(pool rows' full records, the scoring columns of every row when ``labelled``, running counts)."""
    wanted = np.unique(np.asarray(pool_rows, dtype=np.int64))
    pool_parts: list[pd.DataFrame] = []
    score_parts: list[pd.DataFrame] = []
    pred = np.zeros(len(CLASS_NAMES), np.int64)
    found: dict[str, int] = {}
    n = 0
    score_cols = ["true_label", "pred_label", "confidence", *_files.PROBA_COLUMNS]
    try:
        reader = pd.read_csv(path, keep_default_na=False, na_values={"confidence": [""]}, chunksize=READ_CHUNK,
                             dtype={"source": str, "face_id": str, "true_label": str, "pred_label": str,
                                    "found": str})
        for chunk in reader:
            rows = np.arange(n, n + len(chunk))
            chunk.index = rows
            if wanted.size:
                hit = chunk[np.isin(rows, wanted)]
                if len(hit):
                    pool_parts.append(hit.assign(row=hit.index.to_numpy()))
            if labelled:
                score_parts.append(chunk[[c for c in score_cols if c in chunk.columns]])
            codes = pd.Categorical(chunk["pred_label"], categories=CLASS_NAMES).codes
            pred += np.bincount(codes[codes >= 0], minlength=len(CLASS_NAMES))
            if "found" in chunk.columns:
                for k, v in chunk["found"].value_counts().items():
                    found[str(k)] = found.get(str(k), 0) + int(v)
            n += len(chunk)
    except pd.errors.EmptyDataError:
        pass
    except (OSError, ValueError) as exc:
        from .errors import DatasetError

        raise DatasetError(f"{path}: cannot read predictions ({exc})") from exc
    cols = [*_files.PREDICTION_COLUMNS, "found", "row"]
    pool = pd.concat(pool_parts, ignore_index=True) if pool_parts else pd.DataFrame(columns=cols)
    scores = (pd.concat(score_parts, ignore_index=True) if score_parts else pd.DataFrame(columns=score_cols)) \
        if labelled else None
    return pool, scores, {"n": n, "pred": pred, "found": found}


def _load_pool(path: Path, problems: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
    if not path.is_file():
        return np.zeros(0, np.int64), None
    try:
        with np.load(path, allow_pickle=False) as npz:
            rows = np.asarray(npz["rows"], dtype=np.int64).reshape(-1)
            faces = np.asarray(npz["faces"])
        if faces.dtype != np.uint8 or faces.ndim != 4 or len(faces) != len(rows):
            raise ValueError("expected rows (k,) and faces (k,h,w,3) uint8")
        return rows, faces
    except (OSError, ValueError, KeyError) as exc:
        problems.append(f"{_files.FACES_POOL} could not be read ({exc}); faces are not shown")
        return np.zeros(0, np.int64), None


# =========================================================================== figures


def distribution_figure(shares: Mapping[str, Mapping[str, float]], labels: Sequence[str] = CLASS_NAMES):
    """Grouped bars: share of each class (percent) per column (predicted, true, training...)."""
    import matplotlib
    import matplotlib.ticker

    from .plots import MUTED, SPLIT_COLORS, _figure, _STYLE

    cols = [c for c in shares if shares[c]]
    x = np.arange(len(labels))
    n = max(len(cols), 1)
    width = 0.8 / n
    with matplotlib.rc_context(_STYLE):
        fig = _figure(8.6, 3.0)
        ax = fig.add_subplot()
        for i, col in enumerate(cols):
            vals = [float(shares[col].get(c, 0.0)) for c in labels]
            ax.bar(x + (i - (n - 1) / 2) * width, vals, width * 0.92, color=SPLIT_COLORS[i % len(SPLIT_COLORS)],
                   label=col)
        ax.set_xticks(x, list(labels))
        ax.set_ylabel("share of faces")
        ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
        ax.grid(True, axis="y")
        ax.set_axisbelow(True)
        if cols:
            fig.legend(loc="outside upper right", ncols=min(len(cols), 4))
        else:
            ax.text(0.5, 0.5, "no faces", ha="center", va="center", transform=ax.transAxes, color=MUTED)
    return fig


def confidence_figure(edges: Sequence[float], counts: Sequence[int]):
    """Histogram of the predicted class's probability (confidence), with chance level 1/7 marked."""
    import matplotlib

    from .plots import MUTED, TRAIN_COLOR, VAL_COLOR, _figure, _STYLE

    edges = np.asarray(edges, dtype=float)
    counts = np.asarray(counts, dtype=float)
    with matplotlib.rc_context(_STYLE):
        fig = _figure(8.6, 2.6)
        ax = fig.add_subplot()
        if counts.size and counts.sum() > 0:
            ax.bar(edges[:-1], counts, np.diff(edges), align="edge", color=TRAIN_COLOR, edgecolor="white", lw=0.6)
        else:
            ax.text(0.5, 0.5, "no faces", ha="center", va="center", transform=ax.transAxes, color=MUTED)
        ax.axvline(1 / len(CLASS_NAMES), color=VAL_COLOR, lw=1.2, ls="--", label="chance (1/7)")
        ax.set_xlim(0, 1)
        ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
        ax.set_xlabel("confidence (probability of the predicted class)")
        ax.set_ylabel("faces")
        ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5, integer=True))
        ax.grid(True, axis="y")
        ax.set_axisbelow(True)
        fig.legend(loc="outside upper right")
    return fig


# =========================================================================== context


def _int(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


def _shares(counts: Mapping[str, Any] | None) -> dict[str, float]:
    if not isinstance(counts, Mapping):
        return {}
    total = sum(_int(counts.get(c, 0)) for c in CLASS_NAMES)
    return {c: _int(counts.get(c, 0)) / total for c in CLASS_NAMES} if total else {}


def _overview(summary: Mapping[str, Any], bundle: MetricsBundle, facts: list[tuple[str, str]]) -> dict[str, Any]:
    whole = summary.get("faces_mode") == "whole"
    tiles = [
        {"label": "Images read", "value": _int(summary.get("images_read")), "note": "decoded without error"},
        {"label": "Faces found", "value": _int(summary.get("faces_found")), "note": "one prediction each"},
        {"label": "Images without a face", "value": None if whole else _int(summary.get("images_without_face")),
         "note": "not searched (--faces whole)" if whole else
         ("predicted whole (fallback)" if summary.get("faces_mode") == "auto" else "no prediction")},
        {"label": "Files skipped", "value": _int(summary.get("files_skipped")), "note": "see the folder scan"},
    ]
    return {"tiles": tiles, "facts": facts, "has_labels": bundle.classification is not None}


def _scan(summary: Mapping[str, Any], pred_info: Mapping[str, Any]) -> dict[str, Any]:
    from .report import _duration

    mode = str(summary.get("faces_mode", ""))
    found = summary.get("faces_by_method") if isinstance(summary.get("faces_by_method"), Mapping) else {}
    facts = [
        ("Folder", str(summary.get("folder", "—"))),
        ("Faces", FACES_MODE_TEXT.get(mode, mode or "—")),
        ("Labels", str(summary.get("labels") or "none")),
        ("Files seen", f"{_int(summary.get('files_seen')):,}"),
        ("Images read", f"{_int(summary.get('images_read')):,}"),
        ("Images with a detected face", "—" if mode == "whole" else f"{_int(summary.get('images_with_face')):,}"),
        ("Images without a face", "—" if mode == "whole" else f"{_int(summary.get('images_without_face')):,}"),
        ("Faces found", f"{_int(summary.get('faces_found')):,}"),
    ]
    for key, label in (("detected", "Faces from a detected box"), ("whole", "Faces as the whole image"),
                       ("fallback", "Faces as the whole image after no detection (fallback)")):
        if _int(found.get(key)):
            facts.append((label, f"{_int(found.get(key)):,}"))
    if summary.get("labelled_faces") is not None and summary.get("labels") not in (None, "none"):
        facts.append(("Faces with a true label", f"{_int(summary.get('labelled_faces')):,}"))
    if summary.get("labels_not_found"):
        ex = ", ".join(summary.get("labels_not_found_examples") or [])
        facts.append(("Labelled paths not found among the images", f"{_int(summary['labels_not_found']):,}"
                      + (f" (first: {ex})" if ex else "")))
    secs = summary.get("seconds")
    if isinstance(secs, (int, float)) and math.isfinite(secs):
        rate = summary.get("images_per_second")
        facts.append(("Time", _duration(float(secs)) + (f" ({float(rate):,.1f} images/s)" if rate else "")))
    skipped_in = summary.get("skipped") if isinstance(summary.get("skipped"), Mapping) else {}
    examples = summary.get("skipped_examples") if isinstance(summary.get("skipped_examples"), Mapping) else {}
    skipped = [{"reason": str(k), "count": _int(v), "examples": [str(e) for e in (examples.get(k) or [])]}
               for k, v in sorted(skipped_in.items(), key=lambda kv: (-_int(kv[1]), str(kv[0])))]
    return {"facts": facts, "skipped": skipped, "n_skipped": sum(s["count"] for s in skipped)}


def _distribution(summary: Mapping[str, Any], pred_counts: Mapping[str, int], true_counts: Mapping[str, int] | None
                  ) -> dict[str, Any]:
    from .plots import figure_to_data_uri

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
        rows.append({"name": c, "cells": [{"count": _int(cnt.get(c, 0)), "share": shares[label].get(c)}
                                          for label, cnt in columns]})
    totals = [sum(_int(cnt.get(c, 0)) for c in CLASS_NAMES) for _, cnt in columns]
    return {"columns": [label for label, _ in columns], "rows": rows, "totals": totals,
            "figure": figure_to_data_uri(distribution_figure(shares)), "has_training": bool(training)}


def _confidence(summary: Mapping[str, Any], conf_hist: tuple[list[float], list[int]], n: int) -> dict[str, Any]:
    from .plots import figure_to_data_uri

    edges, counts = conf_hist
    info = summary.get("confidence") if isinstance(summary.get("confidence"), Mapping) else {}
    below = _int(info.get("below_0.5"))
    c = np.asarray(counts, dtype=float)
    median = None
    if c.sum() > 0:
        cum = np.cumsum(c)
        i = int(np.searchsorted(cum, c.sum() / 2))
        median = (edges[i], edges[i + 1])
    facts = [("Faces", f"{n:,}"),
             ("Mean confidence", _report._fmt_pct(info.get("mean")) if info.get("mean") is not None else "—"),
             ("Median confidence", f"{median[0]:.0%}–{median[1]:.0%}" if median else "—"),
             ("Faces below 50% confidence", f"{below:,}" + (f" ({below / n:.1%})" if n else ""))]
    return {"figure": figure_to_data_uri(confidence_figure(edges, counts)), "facts": facts}


def _faces(bundle: MetricsBundle, faces: Any, limits: ThumbnailLimits) -> dict[str, Any]:
    order = _report._order_desc(faces.conf)
    top = [{"name": name, "thumbs": faces.pick(order[faces.p[order] == c], limits.per_class)}
           for c, name in enumerate(CLASS_NAMES)]
    labelled = bundle.classification is not None
    wrong = order[(faces.t[order] >= 0) & (faces.t[order] != faces.p[order])]
    return {
        "available": bool(faces.index),
        "least_confident": faces.pick(_report._order_asc(faces.conf), limits.least_confident),
        "top": top,
        "labelled": labelled,
        "misclassified": faces.pick(wrong, limits.misclassified) if labelled else [],
    }


def build_audit_context(run_dir: str | os.PathLike[str], *, n_resamples: int = 1000, seed: int = 0,
                        confidence: float = 0.95) -> ReportContext:
    """Read an audit folder and decide what its report shows."""
    run = Path(run_dir)
    problems: list[str] = []
    summary = _read_json(run / AUDIT_SUMMARY, problems)
    if summary is None:
        raise UsageError(f"{run}: no readable {AUDIT_SUMMARY}; run `ferreport predict FOLDER --out {run}` first")
    pred_path = run / _files.PREDICTIONS
    if not pred_path.is_file():
        raise UsageError(f"{run}: no {_files.PREDICTIONS}; run `ferreport predict` into this folder first")
    pool_rows, pool_faces = _load_pool(run / _files.FACES_POOL, problems)
    labelled = _int(summary.get("labelled_faces")) > 0
    pool_frame, scores, info = _read_predictions(pred_path, pool_rows, labelled)
    n_rows = int(info["n"])
    pred_counts = {c: int(info["pred"][i]) for i, c in enumerate(CLASS_NAMES)}

    if scores is not None and len(scores):
        bundle = metrics_from_predictions(scores, n_resamples=n_resamples, seed=seed, confidence=confidence)
        bundle = MetricsBundle(bundle.classification, bundle.ci, bundle.calibration, n_rows, bundle.n_unlabelled,
                               bundle.prediction_counts)
    else:
        bundle = MetricsBundle(None, None, None, n_rows, n_rows, pred_counts)
    true_counts = None
    if bundle.classification is not None:
        cm = np.asarray(bundle.classification.confusion_matrix)
        true_counts = {c: int(cm[i].sum()) for i, c in enumerate(bundle.classification.labels)}
    del scores

    # the pool as a small "run": row i of pool_frame is pool face i
    pos = {int(r): i for i, r in enumerate(pool_rows)}
    if len(pool_frame) and pool_faces is not None:
        pool_frame = pool_frame[pool_frame["row"].isin(pos)].sort_values("row").reset_index(drop=True)
        faces_arr = pool_faces[[pos[int(r)] for r in pool_frame["row"]]]
    else:
        pool_frame, faces_arr = pool_frame.iloc[0:0], None
    kwargs: dict[str, Any] = dict(
        run_dir=run, predictions=pool_frame, metrics=_read_json(run / _files.METRICS, problems),
        provenance=_read_json(run / _files.PROVENANCE, problems), config=_read_json(run / _files.CONFIG, problems),
        pool_rows=np.arange(len(pool_frame), dtype=np.int64), pool_faces=faces_arr, problems=tuple(problems))
    fields = getattr(RunArtifacts, "__dataclass_fields__", {})
    if "gates" in fields:
        kwargs["gates"] = _read_json(run / "gates.json", problems)
    model_dir = summary.get("model_run_dir")
    history = None
    if labelled and isinstance(model_dir, str) and (Path(model_dir) / _files.HISTORY).is_file():
        try:
            history = pd.read_csv(Path(model_dir) / _files.HISTORY)
        except (OSError, ValueError):
            history = None
    kwargs["history"] = history if history is not None and len(history) else None
    art = RunArtifacts(**kwargs)
    t, p, _, conf = _report._ids_and_conf(pool_frame) if len(pool_frame) else (
        np.zeros(0, np.int64), np.zeros(0, np.int64), None, np.zeros(0))
    faces = _report._Faces(art, t, p, conf, LIMITS)

    prov, cfg = art.provenance or {}, art.config or {}
    run_id = str(prov.get("run_id") or run.resolve().name)
    model_name = str(summary.get("model") or prov.get("model") or "") or None
    model_sha = summary.get("model_sha256") or prov.get("model_sha256")
    created = prov.get("finished") or prov.get("started")
    m, ci = bundle.classification, bundle.ci or {}

    def head(key: str, label: str, value: Any, kind: str) -> Headline:
        iv = ci.get(key)
        return Headline(key, label, value, iv.low if iv else None, iv.high if iv else None, kind)

    headline: tuple[Headline, ...] = ()
    if m is not None:
        headline = (head("accuracy", "Accuracy", m.accuracy, "pct"), head("macro_f1", "Macro-F1", m.macro_f1, "num"),
                    head("weighted_f1", "Weighted-F1", m.weighted_f1, "num"),
                    Headline("n", "Faces scored", m.n, kind="int"))
    facts = [
        ("Model", model_name or "—"),
        ("Model SHA-256", str(model_sha or "—")),
        ("Folder", str(summary.get("folder", "—"))),
        ("Folder fingerprint", str(summary.get("fingerprint") or "—")),
        ("Run", run_id),
        ("Date", str(created or "—")),
        ("Faces in predictions.csv", f"{n_rows:,}"
         + (f" ({bundle.n_unlabelled:,} without a true label)" if m is not None and bundle.n_unlabelled else "")),
    ]
    found = info["found"]
    conf_info = summary.get("confidence") if isinstance(summary.get("confidence"), Mapping) else {}
    hist = conf_info.get("histogram") if isinstance(conf_info.get("histogram"), Mapping) else {}
    edges = list(hist.get("edges") or np.linspace(0, 1, 21).tolist())
    counts = list(hist.get("counts") or [0] * (len(edges) - 1))

    specs: list[tuple[str, str, str, Any]] = [
        ("overview", "Overview", "sections/audit_overview.html.j2", _overview(summary, bundle, facts)),
    ]
    gates = kwargs.get("gates")
    if gates and hasattr(_report, "_gates_section"):
        specs.append(("gates", "Quality gates", "sections/gates.html.j2", _report._gates_section(gates)))
    specs += [
        ("scan", "Folder scan", "sections/audit_scan.html.j2", _scan(summary, info)),
        ("distribution", "Predicted classes", "sections/audit_distribution.html.j2",
         _distribution(summary, pred_counts, true_counts)),
        ("confidence", "Confidence", "sections/audit_confidence.html.j2", _confidence(summary, (edges, counts), n_rows)),
        ("faces", "Faces", "sections/audit_faces.html.j2", _faces(bundle, faces, LIMITS)),
    ]
    if m is not None:
        if art.history is not None:
            specs.append(("training", "Training curves", "sections/training.html.j2", _report._training_section(art)))
        specs += [
            ("confusion", "Confusion matrix", "sections/confusion.html.j2", _report._confusion_section(bundle)),
            ("per-class", "Per-class metrics", "sections/per_class.html.j2", _report._per_class_section(bundle)),
            ("confused-pairs", "Most-confused pairs", "sections/confused_pairs.html.j2",
             _report._pairs_section(bundle, faces, LIMITS)),
            ("calibration", "Calibration", "sections/calibration.html.j2", _report._calibration_section(bundle)),
        ]
    specs.append(("provenance", "Provenance", "sections/provenance.html.j2", _report._provenance_section(art)))
    sections = tuple(Section(id=sid, number=i, title=title, template=tpl, data=data)
                     for i, (sid, title, tpl, data) in enumerate(specs, start=1))

    warnings = [w for w in _report._warnings(art, bundle)
                if not (m is None and w.title == "Faces without a true label")]
    mode = summary.get("faces_mode")
    without = _int(summary.get("images_without_face"))
    if without and mode == "auto":
        warnings.append(Notice("Images without a detected face",
                               f"{without:,} of {_int(summary.get('images_read')):,} images had no face the detector "
                               "could find; each was predicted as a whole image (found = fallback in "
                               "predictions.csv).", "info"))
    elif without and mode == "detect":
        warnings.append(Notice("Images without a detected face",
                               f"{without:,} of {_int(summary.get('images_read')):,} images had no face the detector "
                               "could find and got no prediction (listed in skipped.csv).", "info"))
    if _int(summary.get("files_skipped")):
        warnings.append(Notice("Files skipped", f"{_int(summary['files_skipped']):,} files could not be used; the "
                               "folder scan lists them by reason (all of them in skipped.csv).", "info"))
    if summary.get("labels_not_found"):
        warnings.append(Notice("Labelled paths not found",
                               f"{_int(summary['labels_not_found']):,} paths of the labels file match no image read "
                               "in the folder."))
    if not found and not n_rows:
        warnings.append(Notice("No face", "No face was predicted: the report has nothing to show."))
    return ReportContext(
        title="Folder audit", run_id=run_id, model_name=model_name, model_sha256=str(model_sha) if model_sha else None,
        dataset_name=str(summary.get("folder")) if summary.get("folder") else None,
        dataset_fingerprint=str(summary.get("fingerprint")) if summary.get("fingerprint") else None,
        created=str(created) if created else None, headline=headline, n=m.n if m is not None else 0, n_rows=n_rows,
        n_unlabelled=bundle.n_unlabelled, n_resamples=int(n_resamples), seed=int(seed), confidence=float(confidence),
        warnings=tuple(warnings), sections=sections,
        **({"kind": "audit"} if "kind" in getattr(ReportContext, "__dataclass_fields__", {}) else {}),
    )


def write_audit_report(run_dir: str | os.PathLike[str], formats: Sequence[str] = ("html", "pdf"), *,
                       n_resamples: int = 1000, seed: int = 0) -> dict[str, Path]:
    """Render report.html / report.pdf of an audit folder (atomic writes)."""
    formats = tuple(dict.fromkeys(str(f).lower() for f in formats))
    bad = [f for f in formats if f not in _report.FORMATS]
    if bad or not formats:
        raise UsageError(f"report format(s) {', '.join(bad) or '(none)'}: choose from {', '.join(_report.FORMATS)}")
    run = Path(run_dir)
    html = _report.render_html(build_audit_context(run, n_resamples=n_resamples, seed=seed))
    out: dict[str, Path] = {}
    if "html" in formats:
        write_text(run / _files.REPORT_HTML, html)
        out["html"] = run / _files.REPORT_HTML
    if "pdf" in formats:
        write_bytes(run / _files.REPORT_PDF, _report.render_pdf(html))
        out["pdf"] = run / _files.REPORT_PDF
    return out
