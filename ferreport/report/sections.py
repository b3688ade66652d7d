"""Section builders shared by the evaluation and audit reports: numbers -> what a section shows.

Each ``*_section`` returns the ``data`` of one :class:`~ferreport.report.context.Section`
(a plain dict its template reads); ``{"available": False}`` when its inputs are missing.
:class:`Faces` picks and encodes the thumbnails of the face grids, :func:`run_warnings`
the notices shown above the first section.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from ferreport.constants import CLASS_NAMES, MONITORS
from ferreport.evaluation.face_pool import order_asc, order_desc
from ferreport.evaluation.metrics import MetricsBundle, ci_key, confused_pairs
from ferreport.evaluation.stored_run import RunArtifacts
from ferreport.report import plots, words
from ferreport.report.context import Headline, Notice, Thumb, ThumbnailLimits
from ferreport.report.text import as_int, as_text, duration, first_present, short
from ferreport.runs import folder as files

__all__ = [
    "Faces",
    "calibration_section",
    "confusion_section",
    "data_section",
    "gallery_section",
    "gates_section",
    "overview_section",
    "pairs_section",
    "per_class_section",
    "provenance_section",
    "model_contract",
    "model_input_fact",
    "run_warnings",
    "scored_labels",
    "started_from_fact",
    "score_headline",
    "training_section",
]


# =========================================================================== faces


class Faces:
    """Thumbnails of pooled faces, encoded once per row."""

    def __init__(self, art: RunArtifacts, t: np.ndarray, p: np.ndarray, conf: np.ndarray,
                 limits: ThumbnailLimits):
        self.index = {int(r): i for i, r in enumerate(art.pool_rows)} if art.pool_faces is not None else {}
        self.faces = art.pool_faces
        df = art.predictions
        self.sources = df["source"].astype(str).tolist() if "source" in df.columns else [""] * len(df)
        self.face_ids = df["face_id"].astype(str).tolist() if "face_id" in df.columns else [""] * len(df)
        self.t, self.p, self.conf, self.limits = t, p, conf, limits
        self.saliency = art.saliency.by_row() if art.saliency is not None and art.saliency.available else {}
        self._cache: dict[int, Thumb] = {}

    def has(self, row: int) -> bool:
        return int(row) in self.index

    def thumb(self, row: int) -> Thumb | None:
        row = int(row)
        if row in self._cache:
            return self._cache[row]
        i = self.index.get(row)
        if i is None or self.faces is None:
            return None
        try:
            uri = plots.thumbnail_data_uri(self.faces[i], size=self.limits.size, quality=self.limits.quality,
                                           max_bytes=self.limits.max_uri_bytes)
        except ValueError:
            return None
        heat = self.saliency.get(row)
        overlay = None
        if heat is not None:
            try:
                overlay = plots.saliency_overlay_data_uri(self.faces[i], heat, size=self.limits.size,
                                                          quality=self.limits.saliency_quality,
                                                          max_bytes=self.limits.max_uri_bytes)
            except ValueError:
                overlay = None
        t = int(self.t[row])
        thumb = Thumb(
            uri=uri, row=row, source=self.sources[row], face_id=self.face_ids[row],
            true=CLASS_NAMES[t] if t >= 0 else None, pred=CLASS_NAMES[int(self.p[row])],
            confidence=float(self.conf[row]), correct=(t == int(self.p[row])) if t >= 0 else None,
            short_source=short(self.sources[row]), saliency_uri=overlay,
        )
        self._cache[row] = thumb
        return thumb

    def pick(self, rows: Iterable[int], limit: int) -> list[Thumb]:
        """Thumbnails of the first ``limit`` of ``rows`` whose face is in the pool."""
        out: list[Thumb] = []
        for r in rows:
            if len(out) >= limit:
                break
            th = self.thumb(int(r)) if self.has(int(r)) else None
            if th is not None:
                out.append(th)
        return out

    def mistakes(self) -> np.ndarray:
        """Rows of labelled mistakes, most confident first."""
        order = order_desc(self.conf)
        return order[(self.t[order] >= 0) & (self.t[order] != self.p[order])]


# =========================================================================== header


def score_headline(bundle: MetricsBundle) -> tuple[Headline, ...]:
    """Accuracy, macro-F1, weighted-F1 (with their intervals) and the faces scored; () without labels."""
    m, ci = bundle.classification, bundle.ci or {}
    if m is None:
        return ()

    def head(key: str, label: str, value: Any, kind: str) -> Headline:
        iv = ci.get(key)
        return Headline(key, label, value, iv.low if iv else None, iv.high if iv else None, kind)

    return (
        head("accuracy", "Accuracy", m.accuracy, "pct"),
        head("macro_f1", "Macro-F1", m.macro_f1, "num"),
        head("weighted_f1", "Weighted-F1", m.weighted_f1, "num"),
        Headline("n", "Faces scored", m.n, kind="int"),
    )


def overview_section(bundle: MetricsBundle, facts: list[tuple[str, str]]) -> dict[str, Any]:
    return {"facts": facts, "has_labels": bundle.classification is not None}


# =========================================================================== data and training


#: Split names of data_summary.json as the page writes them (table columns, figure legend).
SPLIT_NAMES = {"train": "training", "train_balanced": "training, balanced", "val": "validation", "test": "test"}


def data_section(summary: Mapping[str, Any] | None) -> dict[str, Any]:
    """Faces per class and split (data_summary.json), with the rows skipped by reason."""
    if not summary:
        return {"available": False}
    splits_in = summary.get("splits") if isinstance(summary.get("splits"), Mapping) else {}
    columns: list[tuple[str, Mapping[str, Any]]] = []
    order = ["train", "train_balanced", "val", "test"]
    merged: dict[str, Mapping[str, Any]] = {}
    for name, counts in splits_in.items():
        if isinstance(counts, Mapping):
            merged[str(name)] = counts
    if isinstance(summary.get("train_balanced"), Mapping):
        merged["train_balanced"] = summary["train_balanced"]
    for name in order + sorted(k for k in merged if k not in order):
        if name in merged:
            columns.append((SPLIT_NAMES.get(name, name), merged[name]))

    classes = list(CLASS_NAMES) + sorted({str(c) for _, cnt in columns for c in cnt if c not in CLASS_NAMES})
    rows = [{"name": c, "counts": [as_int(cnt.get(c, 0)) for _, cnt in columns]} for c in classes]
    totals = [sum(as_int(v) for v in cnt.values()) for _, cnt in columns]
    figure = None
    if columns:
        figure = plots.figure_to_data_uri(plots.class_distribution_figure(
            {label: {c: as_int(v) for c, v in cnt.items()} for label, cnt in columns}, classes))

    skipped = words.skipped_rows(summary)
    facts = words.data_facts(summary)
    return {
        "available": True, "columns": [label for label, _ in columns], "rows": rows,
        "totals": totals, "figure": figure, "skipped": skipped, "facts": facts,
    }


def _monitor(art: RunArtifacts) -> str:
    """The validation metric that chose the run's best epoch (``val_loss`` before --monitor existed)."""
    monitor = (art.config or {}).get("monitor")
    return monitor if isinstance(monitor, str) and monitor in MONITORS else "val_loss"


def _best_epoch(history: pd.DataFrame, art: RunArtifacts) -> int | None:
    given = first_present([(art.metrics, "best_epoch"), (art.provenance, "best_epoch"), (art.config, "best_epoch")])
    if isinstance(given, (int, float)) and math.isfinite(given):
        return int(given)
    epochs = history["epoch"].to_numpy() if "epoch" in history.columns else np.arange(1, len(history) + 1)
    # the run's monitor first (runs without one in config.json chose by val_loss), then fallbacks
    directions = {**MONITORS, "val_accuracy": "max"}
    for col in dict.fromkeys((_monitor(art), *directions)):
        better = np.nanargmin if directions[col] == "min" else np.nanargmax
        if col in history.columns:
            vals = pd.to_numeric(history[col], errors="coerce").to_numpy(dtype=float)
            if np.isfinite(vals).any():
                return int(epochs[int(better(np.where(np.isfinite(vals), vals, np.nan)))])
    return None


def _training_facts(h: pd.DataFrame, art: RunArtifacts, best: int | None) -> list[tuple[str, str]]:
    facts: list[tuple[str, str]] = [("Epochs run", str(len(h)))]
    if best is not None:
        by = "highest validation macro-F1" if _monitor(art) == "val_macro_f1" else "lowest validation loss"
        facts.append((f"Best epoch ({by})", str(best)))
        if "epoch" in h.columns:
            hit = h[h["epoch"] == best]
            if len(hit):
                r = hit.iloc[0]
                for col, label, kind in (("val_loss", "Validation loss at best epoch", "num"),
                                         ("val_accuracy", "Validation accuracy at best epoch", "pct"),
                                         ("val_macro_f1", "Validation macro-F1 at best epoch", "num"),
                                         ("accuracy", "Training accuracy at best epoch", "pct")):
                    if col in h.columns and pd.notna(r[col]):
                        v = float(r[col])
                        facts.append((label, f"{v:.1%}" if kind == "pct" else f"{v:.4f}"))
    if "seconds" in h.columns:
        secs = pd.to_numeric(h["seconds"], errors="coerce").sum()
        facts.append(("Training time", duration(float(secs))))
    if "learning_rate" in h.columns and len(h):
        lr = pd.to_numeric(h["learning_rate"], errors="coerce")
        facts.append(("Learning rate (first → last)", f"{lr.iloc[0]:.2g} → {lr.iloc[-1]:.2g}"))
    return facts


def _history_cell(column: str, v: Any) -> str:
    if pd.isna(v):
        return "—"
    if column == "epoch":
        return str(int(v))
    if column in ("accuracy", "val_accuracy"):
        return f"{float(v):.1%}"
    if column == "learning_rate":
        return f"{float(v):.2g}"
    if column == "seconds":
        return f"{float(v):.0f}"
    return f"{float(v):.4f}"


#: history.csv's columns as the per-epoch table heads them.
HISTORY_COLUMNS = {"epoch": "Epoch", "loss": "Training loss", "accuracy": "Training accuracy",
                   "val_loss": "Validation loss", "val_accuracy": "Validation accuracy",
                   "val_macro_f1": "Validation macro-F1", "learning_rate": "Learning rate", "seconds": "Time (s)"}


def _history_table(h: pd.DataFrame, best: int | None) -> dict[str, Any] | None:
    """Every epoch as a table row (runs of at most 40 epochs), the best epoch marked."""
    if len(h) > 40:
        return None
    cols = [c for c in ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "val_macro_f1", "learning_rate",
                        "seconds") if c in h.columns]
    table: dict[str, Any] = {"columns": cols, "labels": [HISTORY_COLUMNS.get(c, c) for c in cols], "rows": []}
    for _, r in h.iterrows():
        cells = [_history_cell(c, r[c]) for c in cols]
        is_best = best is not None and "epoch" in h.columns and pd.notna(r["epoch"]) and int(r["epoch"]) == best
        table["rows"].append({"cells": cells, "best": is_best})
    return table


def training_section(art: RunArtifacts) -> dict[str, Any]:
    """Training curves, facts of the best epoch and the per-epoch table (history.csv)."""
    h = art.history
    if h is None or len(h) == 0:
        return {"available": False}
    best = _best_epoch(h, art)
    facts = _training_facts(h, art, best)
    table = _history_table(h, best)
    return {
        "available": True,
        "figure": plots.figure_to_data_uri(plots.training_curves_figure(h, best)),
        "facts": facts,
        "table": table,
    }


# =========================================================================== scores


def confusion_section(bundle: MetricsBundle) -> dict[str, Any]:
    m = bundle.classification
    if m is None:
        return {"available": False}
    return {
        "available": True,
        "counts": plots.figure_to_data_uri(plots.confusion_matrix_figure(m.confusion_matrix, m.labels,
                                                                         normalize=False)),
        "normalized": plots.figure_to_data_uri(plots.confusion_matrix_figure(m.confusion_matrix, m.labels,
                                                                             normalize=True)),
    }


def per_class_section(bundle: MetricsBundle) -> dict[str, Any]:
    m, ci = bundle.classification, bundle.ci or {}
    if m is None:
        return {"available": False}

    def iv(metric: str, name: str) -> tuple[float | None, float | None]:
        x = ci.get(ci_key(metric, name))
        return (x.low, x.high) if x is not None else (None, None)

    rows = []
    for c in m.per_class:
        rows.append({
            "name": c.name, "support": c.support,
            "precision": c.precision, "precision_ci": iv("precision", c.name),
            "recall": c.recall, "recall_ci": iv("recall", c.name),
            "f1": c.f1, "f1_ci": iv("f1", c.name),
            "roc_auc": c.roc_auc, "average_precision": c.average_precision,
        })
    macro_f1_ci = ci.get("macro_f1")
    weighted_f1_ci = ci.get("weighted_f1")
    return {
        "available": True,
        "rows": rows,
        "macro": {"precision": m.macro_precision, "recall": m.macro_recall, "f1": m.macro_f1,
                  "f1_ci": (macro_f1_ci.low, macro_f1_ci.high) if macro_f1_ci else (None, None)},
        "weighted": {"precision": m.weighted_precision, "recall": m.weighted_recall, "f1": m.weighted_f1,
                     "f1_ci": (weighted_f1_ci.low, weighted_f1_ci.high) if weighted_f1_ci else (None, None)},
        "n": m.n,
        "figure": plots.figure_to_data_uri(plots.per_class_figure(m, bundle.ci)),
    }


def pairs_section(bundle: MetricsBundle, faces: Faces, limits: ThumbnailLimits, top: int = 6) -> dict[str, Any]:
    """The most-confused (true, predicted) pairs with their most confident faces."""
    m = bundle.classification
    if m is None:
        return {"available": False}
    order = order_desc(faces.conf)
    pairs = []
    for pair in confused_pairs(m.confusion_matrix, top=top, labels=m.labels):
        ti, pi = CLASS_NAMES.index(pair.true), CLASS_NAMES.index(pair.pred)  # faces.t/p are ExpW ids
        rows = order[(faces.t[order] == ti) & (faces.p[order] == pi)]
        pairs.append({"true": pair.true, "pred": pair.pred, "count": pair.count,
                      "share": pair.share_of_true, "thumbs": faces.pick(rows, limits.per_pair)})
    return {"available": True, "pairs": pairs, "n_errors": int(m.n - round(m.accuracy * m.n))}


def calibration_section(bundle: MetricsBundle) -> dict[str, Any]:
    cal = bundle.calibration
    if cal is None:
        return {"available": False}
    return {
        "available": True, "figure": plots.figure_to_data_uri(plots.reliability_figure(cal)),
        "ece": cal.ece, "mce": cal.mce, "brier": cal.brier, "log_loss": cal.log_loss,
        "n_bins": cal.n_bins, "n": cal.n,
    }


# =========================================================================== faces, gates, provenance


def gallery_section(bundle: MetricsBundle, faces: Faces, limits: ThumbnailLimits) -> dict[str, Any]:
    """Example faces of an evaluation: best per class, worst mistakes, least confident."""
    t, p = faces.t, faces.p
    order = order_desc(faces.conf)
    labelled = bundle.classification is not None
    top = []
    for c, name in enumerate(CLASS_NAMES):
        if labelled:
            rows = order[(t[order] == c) & (p[order] == c)]
        else:
            rows = order[p[order] == c]
        thumbs = faces.pick(rows, limits.per_class)
        top.append({"name": name, "thumbs": thumbs})
    mis = faces.pick(faces.mistakes(), limits.misclassified)
    least = faces.pick(order_asc(faces.conf), limits.least_confident)
    return {
        "available": bool(faces.index),
        "labelled": labelled,
        "top": top,
        "top_title": "Most confident correct predictions, per class" if labelled
        else "Most confident predictions, per predicted class",
        "misclassified": mis,
        "least_confident": least,
        "pool_size": len(faces.index),
        "limits": limits,
    }


def gates_section(gates: Mapping[str, Any]) -> dict[str, Any]:
    """Quality gates of a scheduled job (gates.json): verdict per gate, baseline deltas."""
    rows = [g for g in gates.get("gates", []) if isinstance(g, Mapping)]
    baseline = gates.get("baseline") if isinstance(gates.get("baseline"), Mapping) else None
    deltas = []
    if baseline and isinstance(baseline.get("deltas"), Mapping):
        for key, d in baseline["deltas"].items():
            if isinstance(d, Mapping):
                deltas.append({"key": str(key), "baseline": d.get("baseline"), "actual": d.get("actual"),
                               "change": d.get("change")})
    return {"passed": bool(gates.get("passed", True)), "gates": rows,
            "n_failed": sum(1 for g in rows if not g.get("passed")),
            "baseline_path": str(baseline.get("path")) if baseline else None, "deltas": deltas}


def _trained_here(art: RunArtifacts) -> bool | None:
    """Whether the run trained its model: no when config.json names a model from elsewhere; None if unknown."""
    extra = (art.config or {}).get("extra")
    if isinstance(extra, Mapping) and extra.get("model"):
        return False
    prov = art.provenance or {}
    return True if "epochs_run" in prov or "best_epoch" in prov else None


def provenance_section(art: RunArtifacts) -> dict[str, Any]:
    """provenance.json and config.json in words, grouped (:func:`ferreport.report.words.provenance_groups`)."""
    sources = [{"file": name, "present": obj is not None, "empty": obj is not None and not obj}
               for name, obj in ((files.PROVENANCE, art.provenance), (files.CONFIG, art.config))]
    return {"groups": words.provenance_groups(art.provenance, art.config, trained=_trained_here(art)),
            "sources": sources,
            "missing": [s["file"] for s in sources if not s["present"]]}


# =========================================================================== warnings


def _collapse_notice(collapse: Any) -> Notice:
    if isinstance(collapse, Mapping) and ("reasons" in collapse or "likely_causes" in collapse):
        reasons = "; ".join(str(r) for r in collapse.get("reasons") or [])
        causes = "; ".join(str(c) for c in collapse.get("likely_causes") or [])
        detail = (f"training did not learn: {reasons}." if reasons else "training did not learn.") + (
            f" Likely causes: {causes}." if causes else "") + " Treat the numbers below as a failed run."
    elif isinstance(collapse, Mapping):
        detail = "; ".join(f"{k}: {as_text(v)}" for k, v in sorted(collapse.items(), key=lambda kv: str(kv[0])))
    elif isinstance(collapse, str):
        detail = collapse
    else:
        detail = "the model predicts (almost) a single class"
    return Notice("Prediction collapse", detail)


def _listed_notices(listed: Any) -> list[Notice]:
    """The ``warnings`` list of metrics.json (text or {title, message, level} objects)."""
    out: list[Notice] = []
    if isinstance(listed, (list, tuple)):
        for w in listed:
            if isinstance(w, Mapping):
                title = str(w.get("title") or w.get("code") or "")
                msg = str(w.get("message") or w.get("detail") or as_text(dict(w)))
                out.append(Notice(title, msg, str(w.get("level", "warning"))))
            elif w:
                out.append(Notice("", str(w)))
    return out


def _prediction_notices(bundle: MetricsBundle, collapsed: bool) -> list[Notice]:
    """Predictions concentrated on one class, classes never predicted or absent, unlabelled faces."""
    out: list[Notice] = []
    counts = bundle.prediction_counts
    total = sum(counts.values())
    if total >= 50 and not collapsed:
        name, top = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
        if top / total >= 0.8:
            out.append(Notice("Predictions concentrated on one class",
                              f"{top / total:.0%} of all predictions are “{name}”."))
    m = bundle.classification
    if m is not None and m.n >= 50:
        never = [c.name for c in m.per_class if c.support > 0 and counts.get(c.name, 0) == 0]
        if never:
            out.append(Notice("Classes never predicted", ", ".join(never)))
        absent = [c.name for c in m.per_class if c.support == 0]
        if absent:
            out.append(Notice("Classes absent from the evaluated faces",
                              f"{', '.join(absent)}: their precision, recall and F1 are reported as 0 "
                              "and pull the macro averages down.", "info"))
    if bundle.n_unlabelled:
        out.append(Notice("Faces without a true label",
                          f"{bundle.n_unlabelled:,} of {bundle.n_rows:,} faces have no true label; "
                          "they are shown in the image grids but left out of every score.", "info"))
    return out


def model_contract(art: RunArtifacts) -> Mapping[str, Any]:
    """The model's input contract as provenance.json recorded it (empty for runs written before contracts)."""
    contract = (art.provenance or {}).get("model_contract")
    return contract if isinstance(contract, Mapping) else {}


def model_input_fact(art: RunArtifacts) -> list[tuple[str, str]]:
    """``[("Model input", "64×64 grayscale, [-1, 1]; outputs: ...")]`` when the run recorded a contract."""
    summary = model_contract(art).get("summary")
    if not isinstance(summary, str) or not summary:
        return []
    return [("Model input", summary.removeprefix("Model input: "))]


def started_from_fact(art: RunArtifacts) -> list[tuple[str, str]]:
    """``[("Started from", "emotion_model.hdf5 (SHA-256 5953…); head: ...")]`` for a fine-tuned run."""
    start = (art.provenance or {}).get("init_from")
    if not isinstance(start, Mapping):
        return []
    text = f"{as_text(start.get('model'))} (SHA-256 {str(start.get('sha256') or '—')[:12]}…)"
    head = start.get("head")
    if isinstance(head, Mapping):
        parts = [f"{len(head.get('kept') or [])} classes kept"]
        if head.get("fresh"):
            parts.append(f"{', '.join(map(str, head['fresh']))} initialised fresh")
        if head.get("dropped"):
            parts.append(f"{', '.join(map(str, head['dropped']))} dropped")
        text += f"; classifier re-mapped by class name: {'; '.join(parts)}"
    return [("Started from", text)]


def scored_labels(art: RunArtifacts) -> tuple[str, ...]:
    """The classes scored: all seven, unless the model could not predict some (their faces were left out)."""
    missing = model_contract(art).get("classes")
    if not isinstance(missing, (list, tuple)):
        return CLASS_NAMES
    scored = tuple(c for c in CLASS_NAMES if c in missing)
    return scored if len(scored) >= 2 else CLASS_NAMES


def _classes_notice(art: RunArtifacts) -> list[Notice]:
    """Say which classes the model's outputs did not line up with, and what that removed."""
    contract = model_contract(art)
    classes = contract.get("classes")
    if not isinstance(classes, (list, tuple)):
        return []
    dropped = [str(c) for c in classes if c not in CLASS_NAMES]
    missing = [c for c in CLASS_NAMES if c not in classes]
    info = (art.metrics or {}).get("classes")
    removed = as_int(info.get("faces_removed")) if isinstance(info, Mapping) else None
    if not dropped and not missing:
        return []
    parts = []
    if dropped:
        parts.append(f"the model's output{'s' if len(dropped) > 1 else ''} {', '.join(dropped)} "
                     f"{'are' if len(dropped) > 1 else 'is'} not an ExpW class: dropped, and each face's "
                     f"probabilities renormalised over the {len(classes) - len(dropped)} scored classes")
    if missing:
        parts.append(f"the model has no output for {', '.join(missing)}: "
                     + (f"{removed:,} test faces of {'that class' if len(missing) == 1 else 'those classes'} were "
                        "left out of the scores, and the averages are over the classes it can predict"
                        if removed is not None else "faces of those classes are not scored"))
    title = f"Classes: {len(classes) - len(dropped)} of {len(classes)} model outputs scored" if dropped else \
        f"Classes: the model predicts {len(CLASS_NAMES) - len(missing)} of the {len(CLASS_NAMES)} ExpW classes"
    text = "; ".join(parts) + "."
    return [Notice(title, text[0].upper() + text[1:], level="info")]


#: The contract fields that change the numbers: how the report names each, and the flag that declares it.
CONTRACT_FIELD_TEXT = {"input_range": "the input range", "channel_order": "the channel order",
                       "classes": "the class order"}
CONTRACT_FLAGS = {"input_range": "--input-range", "channel_order": "--channel-order", "classes": "--classes"}


def _joined(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``; the first capitalised."""
    text = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
    return text[:1].upper() + text[1:]


def contract_assumed(provenance: Mapping[str, Any] | None) -> list[str]:
    """The number-changing contract fields provenance.json records as ``assumed``."""
    contract = (provenance or {}).get("model_contract")
    sources = contract.get("sources") if isinstance(contract, Mapping) else None
    if not isinstance(sources, Mapping):
        return []
    return [k for k in CONTRACT_FIELD_TEXT if sources.get(k) == "assumed"]


def left_out_notices(run_dir: str | os.PathLike[str], shown: Sequence[Notice]) -> list[Notice]:
    """A notice per artefact of ``run_dir`` that reading left out (refused or unreadable; see
    :meth:`~ferreport.runs.folder.RunFolder.note`), less those already in ``shown``."""
    said = {n.message for n in shown}
    return [Notice("Part of the run folder left out", text) for text in files.RunFolder(run_dir).notices()
            if text not in said]


def run_warnings(art: RunArtifacts, bundle: MetricsBundle) -> list[Notice]:
    """Notices shown above the first section, most serious first."""
    metrics = art.metrics or {}
    collapse = metrics.get("collapse")
    out: list[Notice] = [replace(_collapse_notice(collapse), kind="collapse")] if collapse else []
    training = metrics.get("training")
    if isinstance(training, Mapping) and training.get("complete") is False:
        out.append(Notice(f"Training interrupted after epoch {as_text(training.get('epochs_run'))} of "
                          f"{as_text(training.get('epochs'))}",
                          "The model was evaluated as it stood when training stopped (killed or crashed), not "
                          "after the planned epochs; resume it with: ferreport train --out RUN_DIR --resume."))
    out += _listed_notices(metrics.get("warnings"))
    assumed = contract_assumed(art.provenance)
    if assumed:
        out.append(Notice("Model contract assumed, not declared",
                          f"{_joined([CONTRACT_FIELD_TEXT[k] for k in assumed])} "
                          f"{'was' if len(assumed) == 1 else 'were'} assumed: neither the model file, its contract "
                          "file, a --model-spec nor a flag said so. The scores hold only if the model was trained "
                          f"that way; declare {'it' if len(assumed) == 1 else 'them'} with "
                          f"{', '.join(CONTRACT_FLAGS[k] for k in assumed)}.", kind="contract"))
    if (art.config or {}).get("unsafe_model") is True:
        out.append(Notice("Model loaded without the safety checks",
                          "--unsafe-model was given: the model's Lambda layers or SavedModel ops outside ferreport's "
                          "reviewed list ran as they are (they can read and write files on the host that scored it).",
                          kind="unsafe"))
    for problem in art.problems:
        out.append(Notice("Part of the run folder left out", problem))
    gate_rows = [g for g in (art.gates or {}).get("gates", []) if isinstance(g, Mapping)]
    failed = [g for g in gate_rows if not g.get("passed")]
    if failed:
        out.append(Notice(f"{len(failed)} of {len(gate_rows)} quality gates failed",
                          "; ".join(str(g.get("message") or g.get("name")) for g in failed), kind="gates"))
    return out + _prediction_notices(bundle, bool(collapse)) + _classes_notice(art)
