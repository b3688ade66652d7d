"""The evaluation report: artefacts -> numbers -> sections -> HTML (and PDF).

Three layers, like ydata-profiling:

1. **compute** - :func:`load_run` reads a run directory (see :mod:`ferreport.artifacts`)
   and :mod:`ferreport.metrics` turns predictions.csv into numbers;
2. **decide** - :func:`build_report_context` chooses what to show and returns one
   :class:`ReportContext` (plain data: strings, numbers, data-URI figures and
   thumbnails, a tuple of :class:`Section`);
3. **render** - :func:`render_html` fills ``templates/base.html.j2`` and one partial
   per section (``templates/sections/*.html.j2``) with Jinja2 (autoescape on,
   StrictUndefined); :func:`render_pdf` prints that HTML with WeasyPrint, which may
   only read ``data:`` URLs.

The page is a single self-contained file: inline CSS, figures and faces as
``data:`` URIs, no JavaScript, no network references. Nothing here imports TensorFlow.

Optional artefacts and what the report does without them:

* ``history.csv`` - the training-curves section says the model was evaluated
  without a training history;
* ``data_summary.json`` - the data section says the summary is unavailable;
* ``faces_pool.npz`` - image grids are empty (a face not in the pool is not shown);
* ``metrics.json`` - only read for warnings (``warnings`` list, ``collapse`` entry)
  and ``best_epoch``; all numbers are recomputed from predictions.csv;
* ``provenance.json`` / ``config.json`` - shown key by key when present.

``data_summary.json`` schema (every key optional; unknown classes/splits are shown too)::

    {
      "dataset": "ExpW",                       # display name
      "faces_read": 91793,                     # faces decoded from the dataset
      "balance": "smote",                      # balancing method of the training split
      "splits": {                              # faces per class in each split
        "train": {"angry": 2400, "disgust": 2900, ...},
        "val":   {"angry": 300, ...},
        "test":  {"angry": 300, ...}
      },
      "train_balanced": {"angry": 24000, ...}, # training split after balancing
      "skipped": {"unreadable image": 12, "face box outside image": 3}  # rows by reason
    }

Header facts are looked up in this order (first present wins):
run id ``provenance.run_id``, ``config.run_id``, the folder name; model
``provenance.model_name``/``model``, ``config.model``/``arch``; model SHA-256
``provenance.model_sha256``; dataset ``data_summary.dataset``, ``provenance.dataset``,
``config.data``; fingerprint ``provenance.data_fingerprint``; date
``provenance.finished``/``finished_at``/``created``/``started``, else the
modification time of predictions.csv.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import math
import os
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import __version__
from . import artifacts as _files
from .atomic import write_bytes, write_text
from .constants import CLASS_NAMES, MONITORS
from .errors import DatasetError, FerreportError, UsageError
from .metrics import MetricsBundle, ci_key, labels_to_ids, metrics_from_predictions

__all__ = [
    "Headline",
    "ReportContext",
    "RunArtifacts",
    "Section",
    "Thumb",
    "URLRefused",
    "ThumbnailLimits",
    "Notice",
    "build_report_context",
    "data_only_url_fetcher",
    "load_run",
    "render_html",
    "render_pdf",
    "select_pool_rows",
    "templates_dir",
    "write_report",
]

FORMATS: tuple[str, ...] = ("html", "pdf")
#: Rows kept in the face pool besides the per-cell ones (least confident overall,
#: most confident mistakes overall).
POOL_EXTRA = 24


# =========================================================================== artefacts


@dataclass(frozen=True, eq=False)
class RunArtifacts:
    """Everything a report is rendered from, read from one run directory."""

    run_dir: Path
    predictions: pd.DataFrame
    metrics: Mapping[str, Any] | None = None
    history: pd.DataFrame | None = None
    data_summary: Mapping[str, Any] | None = None
    provenance: Mapping[str, Any] | None = None
    config: Mapping[str, Any] | None = None
    #: Row numbers (into predictions) of the stored faces, and the faces (k,64,64,3) RGB.
    pool_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    pool_faces: np.ndarray | None = None
    #: Non-fatal problems met while loading (shown as warnings).
    problems: tuple[str, ...] = ()
    #: Quality-gate verdicts (``gates.json``, see :mod:`ferreport.gates`); None without gates.
    gates: Mapping[str, Any] | None = None


def _read_json(path: Path, problems: list[str]) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            obj = json.load(fh)
    except (OSError, ValueError) as exc:
        problems.append(f"{path.name} could not be read ({exc}); it is left out")
        return None
    if not isinstance(obj, dict):
        problems.append(f"{path.name} does not hold a JSON object; it is left out")
        return None
    return obj


def read_predictions_csv(path: Path) -> pd.DataFrame:
    """predictions.csv with text columns kept as text (empty true_label = unknown)."""
    try:
        df = pd.read_csv(
            path, keep_default_na=False, na_values={"confidence": [""]},
            dtype={"source": str, "face_id": str, "true_label": str, "pred_label": str},
        )
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read predictions ({exc})") from exc
    missing = [c for c in ("true_label", "pred_label") if c not in df.columns]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}")
    return df


def load_run(run_dir: str | os.PathLike[str]) -> RunArtifacts:
    """Read a run directory; only predictions.csv is required."""
    run = Path(run_dir)
    if not run.is_dir():
        raise UsageError(f"{run}: run directory not found")
    pred_path = run / _files.PREDICTIONS
    if not pred_path.is_file():
        raise UsageError(f"{run}: no {_files.PREDICTIONS}; evaluate a model into this folder first")
    problems: list[str] = []
    predictions = read_predictions_csv(pred_path)

    history = None
    hist_path = run / _files.HISTORY
    if hist_path.is_file():
        try:
            history = pd.read_csv(hist_path)
            if history.empty:
                history = None
        except (OSError, ValueError) as exc:
            problems.append(f"{_files.HISTORY} could not be read ({exc}); training curves left out")

    pool_rows = np.zeros(0, dtype=np.int64)
    pool_faces = None
    pool_path = run / _files.FACES_POOL
    if pool_path.is_file():
        try:
            with np.load(pool_path, allow_pickle=False) as npz:
                rows = np.asarray(npz["rows"], dtype=np.int64).reshape(-1)
                faces = np.asarray(npz["faces"])
            if faces.dtype != np.uint8 or faces.ndim != 4 or faces.shape[3] != 3 or len(faces) != len(rows):
                raise ValueError(f"expected rows (k,) and faces (k,h,w,3) uint8, got {rows.shape} and "
                                 f"{faces.shape} {faces.dtype}")
            keep = (rows >= 0) & (rows < len(predictions))
            pool_rows, pool_faces = rows[keep], faces[keep]
        except (OSError, ValueError, KeyError) as exc:
            problems.append(f"{_files.FACES_POOL} could not be read ({exc}); faces are not shown")

    return RunArtifacts(
        run_dir=run,
        predictions=predictions,
        metrics=_read_json(run / _files.METRICS, problems),
        history=history,
        data_summary=_read_json(run / _files.DATA_SUMMARY, problems),
        provenance=_read_json(run / _files.PROVENANCE, problems),
        config=_read_json(run / _files.CONFIG, problems),
        pool_rows=pool_rows,
        pool_faces=pool_faces,
        problems=tuple(problems),
        gates=_read_json(run / _files.GATES, problems),
    )


# =========================================================================== face pool


def _confidence(df: pd.DataFrame, proba: np.ndarray) -> np.ndarray:
    if "confidence" in df.columns:
        conf = pd.to_numeric(df["confidence"], errors="coerce").to_numpy(dtype=np.float64)
        return np.where(np.isfinite(conf), conf, proba.max(axis=1) if proba.size else 0.0)
    return proba.max(axis=1) if proba.size else np.zeros(len(df))


def _ids_and_conf(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    k = len(CLASS_NAMES)
    t = labels_to_ids(df["true_label"].tolist(), column="true_label")
    p = labels_to_ids(df["pred_label"].tolist(), column="pred_label")
    cols = list(_files.PROBA_COLUMNS)
    if all(c in df.columns for c in cols):
        proba = df[cols].apply(pd.to_numeric, errors="coerce").fillna(0.0).to_numpy(dtype=np.float64)
    else:
        proba = np.eye(k)[np.clip(p, 0, k - 1)]
    return t, p, proba, _confidence(df, proba)


def _order_desc(conf: np.ndarray) -> np.ndarray:
    """Row positions by confidence, highest first; ties by row number."""
    return np.lexsort((np.arange(conf.size), -conf))


def _order_asc(conf: np.ndarray) -> np.ndarray:
    return np.lexsort((np.arange(conf.size), conf))


def select_pool_rows(pred_df: pd.DataFrame, per_cell: int = 8) -> np.ndarray:
    """Rows of predictions.csv whose faces go into faces_pool.npz (sorted, unique, int64).

    The ``per_cell`` most confident rows of every (true, predicted) cell of the
    confusion matrix (rows without a true label: of every predicted class), plus the
    24 least confident rows overall and the 24 most confident mistakes overall, so
    every grid of the report can be filled.
    """
    n = len(pred_df)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    k = len(CLASS_NAMES)
    t, p, _, conf = _ids_and_conf(pred_df)
    cell = np.where(t >= 0, t * k + p, k * k + p)
    order = _order_desc(conf)
    # rank of each row within its cell, walking rows from most to least confident
    ordered_cells = cell[order]
    by_cell = np.argsort(ordered_cells, kind="stable")
    sorted_cells = ordered_cells[by_cell]
    starts = np.flatnonzero(np.r_[True, sorted_cells[1:] != sorted_cells[:-1]])
    run_start = np.repeat(starts, np.diff(np.r_[starts, sorted_cells.size]))
    rank = np.empty(n, dtype=np.int64)
    rank[by_cell] = np.arange(n) - run_start
    chosen = [order[rank < per_cell]]
    chosen.append(_order_asc(conf)[:POOL_EXTRA])
    wrong = order[(t[order] >= 0) & (t[order] != p[order])]
    chosen.append(wrong[:POOL_EXTRA])
    return np.unique(np.concatenate(chosen)).astype(np.int64)


# =========================================================================== context


@dataclass(frozen=True)
class ThumbnailLimits:
    per_class: int = 8          # most confident correct faces per class
    misclassified: int = 24     # most confident mistakes overall
    per_pair: int = 6           # most confident mistakes per confused pair
    least_confident: int = 12   # least confident faces overall
    size: int = 112             # pixels (square)
    quality: int = 80           # JPEG quality


@dataclass(frozen=True)
class Thumb:
    uri: str
    row: int
    source: str
    face_id: str
    true: str | None
    pred: str
    confidence: float
    correct: bool | None
    #: Short file name for the caption (full ``source`` goes in the tooltip).
    short_source: str


@dataclass(frozen=True)
class Headline:
    key: str
    label: str
    value: float | int | None
    low: float | None = None
    high: float | None = None
    kind: str = "num"   # "pct", "num" or "int"


@dataclass(frozen=True)
class Notice:
    """A message shown prominently at the top of the report."""

    title: str
    message: str
    level: str = "warning"   # "warning" or "info"


@dataclass(frozen=True)
class Section:
    id: str
    number: int
    title: str
    template: str
    data: Mapping[str, Any]


@dataclass(frozen=True)
class ReportContext:
    """The one object the templates receive."""

    title: str
    run_id: str
    model_name: str | None
    model_sha256: str | None
    dataset_name: str | None
    dataset_fingerprint: str | None
    created: str | None
    headline: tuple[Headline, ...]
    n: int
    n_rows: int
    n_unlabelled: int
    n_resamples: int
    seed: int
    confidence: float
    warnings: tuple[Notice, ...]
    sections: tuple[Section, ...]
    generator: str = f"ferreport {__version__}"
    #: What the page reports on: "evaluation", or "audit" (``ferreport predict``, see audit_report.py).
    kind: str = "evaluation"


# --------------------------------------------------------------------------- helpers


def _get(obj: Any, path: str) -> Any:
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _first(sources: Iterable[tuple[Any, str]]) -> Any:
    for obj, path in sources:
        v = _get(obj, path)
        if v is not None and v != "":
            return v
    return None


def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False, sort_keys=True)
    return str(v)


def _short(name: str, limit: int = 24) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1] or name
    if len(base) <= limit:
        return base
    keep = limit - 1
    return base[: keep - keep // 3] + "…" + base[len(base) - keep // 3:]


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested mapping -> sorted ``(dotted.key, text)`` pairs; every key is kept."""
    out: list[tuple[str, str]] = []
    if isinstance(obj, Mapping):
        if not obj and prefix:
            return [(prefix, "{}")]
        for key in sorted(obj, key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            out.extend(_flatten(obj[key], name))
        return out
    if isinstance(obj, (list, tuple)):
        leaf = prefix.rsplit(".", 1)[-1].lower()
        if obj and all(isinstance(x, str) for x in obj) and leaf in ("argv", "command", "command_line", "cmd"):
            return [(prefix, shlex.join(obj))]
        return [(prefix, json.dumps(obj, ensure_ascii=False, sort_keys=True, default=str))]
    if obj is None:
        return [(prefix, "—")]
    if isinstance(obj, float) and not math.isfinite(obj):
        return [(prefix, str(obj))]
    return [(prefix, str(obj))]


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


class _Faces:
    """Thumbnails of pooled faces, encoded once per row."""

    def __init__(self, art: RunArtifacts, t: np.ndarray, p: np.ndarray, conf: np.ndarray,
                 limits: ThumbnailLimits):
        self.index = {int(r): i for i, r in enumerate(art.pool_rows)} if art.pool_faces is not None else {}
        self.faces = art.pool_faces
        df = art.predictions
        self.sources = df["source"].astype(str).tolist() if "source" in df.columns else [""] * len(df)
        self.face_ids = df["face_id"].astype(str).tolist() if "face_id" in df.columns else [""] * len(df)
        self.t, self.p, self.conf, self.limits = t, p, conf, limits
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
        from .plots import thumbnail_data_uri

        try:
            uri = thumbnail_data_uri(self.faces[i], size=self.limits.size, quality=self.limits.quality)
        except ValueError:
            return None
        t = int(self.t[row])
        thumb = Thumb(
            uri=uri, row=row, source=self.sources[row], face_id=self.face_ids[row],
            true=CLASS_NAMES[t] if t >= 0 else None, pred=CLASS_NAMES[int(self.p[row])],
            confidence=float(self.conf[row]), correct=(t == int(self.p[row])) if t >= 0 else None,
            short_source=_short(self.sources[row]),
        )
        self._cache[row] = thumb
        return thumb

    def pick(self, rows: Iterable[int], limit: int) -> list[Thumb]:
        out: list[Thumb] = []
        for r in rows:
            if len(out) >= limit:
                break
            th = self.thumb(int(r)) if self.has(int(r)) else None
            if th is not None:
                out.append(th)
        return out


# --------------------------------------------------------------------------- sections


def _overview_section(bundle: MetricsBundle, facts: list[tuple[str, str]]) -> dict[str, Any]:
    return {"facts": facts, "has_labels": bundle.classification is not None}


def _data_section(summary: Mapping[str, Any] | None) -> dict[str, Any]:
    if not summary:
        return {"available": False}
    from .plots import class_distribution_figure, figure_to_data_uri

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
            label = "train (balanced)" if name == "train_balanced" else name
            columns.append((label, merged[name]))

    def count(v: Any) -> int:
        try:
            return int(v)
        except (TypeError, ValueError):
            return 0

    classes = list(CLASS_NAMES) + sorted({str(c) for _, cnt in columns for c in cnt if c not in CLASS_NAMES})
    rows = [{"name": c, "counts": [count(cnt.get(c, 0)) for _, cnt in columns]} for c in classes]
    totals = [sum(count(v) for v in cnt.values()) for _, cnt in columns]
    figure = None
    if columns:
        figure = figure_to_data_uri(class_distribution_figure(
            {label: {c: count(v) for c, v in cnt.items()} for label, cnt in columns}, classes))

    skipped_in = summary.get("skipped") if isinstance(summary.get("skipped"), Mapping) else {}
    skipped = sorted(((str(k), count(v)) for k, v in skipped_in.items()), key=lambda kv: (-kv[1], kv[0]))
    facts: list[tuple[str, str]] = []
    if summary.get("dataset") is not None:
        facts.append(("Dataset", str(summary["dataset"])))
    if summary.get("faces_read") is not None:
        fr = summary["faces_read"]
        facts.append(("Faces read", f"{fr:,}" if isinstance(fr, int) else str(fr)))
    if summary.get("balance") is not None:
        facts.append(("Balancing of the training split", str(summary["balance"])))
    facts.append(("Rows skipped", f"{sum(v for _, v in skipped):,}"))
    known = {"dataset", "faces_read", "balance", "splits", "train_balanced", "skipped"}
    for key in sorted(k for k in summary if k not in known):
        for k2, v2 in _flatten(summary[key], str(key)):
            facts.append((k2, v2))
    return {
        "available": True, "columns": [label for label, _ in columns], "rows": rows,
        "totals": totals, "figure": figure, "skipped": skipped, "facts": facts,
    }


def _monitor(art: RunArtifacts) -> str:
    """The validation metric that chose the run's best epoch (``val_loss`` before --monitor existed)."""
    monitor = (art.config or {}).get("monitor")
    return monitor if isinstance(monitor, str) and monitor in MONITORS else "val_loss"


def _best_epoch(history: pd.DataFrame, art: RunArtifacts) -> int | None:
    given = _first([(art.metrics, "best_epoch"), (art.provenance, "best_epoch"), (art.config, "best_epoch")])
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


def _training_section(art: RunArtifacts) -> dict[str, Any]:
    h = art.history
    if h is None or len(h) == 0:
        return {"available": False}
    from .plots import figure_to_data_uri, training_curves_figure

    best = _best_epoch(h, art)
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
        facts.append(("Training time", _duration(float(secs))))
    if "learning_rate" in h.columns and len(h):
        lr = pd.to_numeric(h["learning_rate"], errors="coerce")
        facts.append(("Learning rate (first → last)", f"{lr.iloc[0]:.2g} → {lr.iloc[-1]:.2g}"))
    cols = [c for c in ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "val_macro_f1", "learning_rate",
                        "seconds") if c in h.columns]
    table = None
    if len(h) <= 40:
        table = {"columns": cols, "rows": []}
        for _, r in h.iterrows():
            cells = []
            for c in cols:
                v = r[c]
                if c == "epoch":
                    cells.append(str(int(v)) if pd.notna(v) else "—")
                elif c in ("accuracy", "val_accuracy"):
                    cells.append(f"{float(v):.1%}" if pd.notna(v) else "—")
                elif c == "learning_rate":
                    cells.append(f"{float(v):.2g}" if pd.notna(v) else "—")
                elif c == "seconds":
                    cells.append(f"{float(v):.0f}" if pd.notna(v) else "—")
                else:
                    cells.append(f"{float(v):.4f}" if pd.notna(v) else "—")
            is_best = best is not None and "epoch" in h.columns and pd.notna(r["epoch"]) and int(r["epoch"]) == best
            table["rows"].append({"cells": cells, "best": is_best})
    return {
        "available": True,
        "figure": figure_to_data_uri(training_curves_figure(h, best)),
        "facts": facts,
        "table": table,
    }


def _confusion_section(bundle: MetricsBundle) -> dict[str, Any]:
    m = bundle.classification
    if m is None:
        return {"available": False}
    from .plots import confusion_matrix_figure, figure_to_data_uri

    return {
        "available": True,
        "counts": figure_to_data_uri(confusion_matrix_figure(m.confusion_matrix, m.labels, normalize=False)),
        "normalized": figure_to_data_uri(confusion_matrix_figure(m.confusion_matrix, m.labels, normalize=True)),
    }


def _per_class_section(bundle: MetricsBundle) -> dict[str, Any]:
    m, ci = bundle.classification, bundle.ci or {}
    if m is None:
        return {"available": False}
    from .plots import figure_to_data_uri, per_class_figure

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
        "figure": figure_to_data_uri(per_class_figure(m, bundle.ci)),
    }


def _pairs_section(bundle: MetricsBundle, faces: _Faces, limits: ThumbnailLimits, top: int = 6) -> dict[str, Any]:
    m = bundle.classification
    if m is None:
        return {"available": False}
    from .metrics import confused_pairs

    order = _order_desc(faces.conf)
    pairs = []
    for pair in confused_pairs(m.confusion_matrix, top=top, labels=m.labels):
        ti, pi = m.labels.index(pair.true), m.labels.index(pair.pred)
        rows = order[(faces.t[order] == ti) & (faces.p[order] == pi)]
        pairs.append({"true": pair.true, "pred": pair.pred, "count": pair.count,
                      "share": pair.share_of_true, "thumbs": faces.pick(rows, limits.per_pair)})
    return {"available": True, "pairs": pairs, "n_errors": int(m.n - round(m.accuracy * m.n))}


def _calibration_section(bundle: MetricsBundle) -> dict[str, Any]:
    cal = bundle.calibration
    if cal is None:
        return {"available": False}
    from .plots import figure_to_data_uri, reliability_figure

    return {
        "available": True, "figure": figure_to_data_uri(reliability_figure(cal)),
        "ece": cal.ece, "mce": cal.mce, "brier": cal.brier, "log_loss": cal.log_loss,
        "n_bins": cal.n_bins, "n": cal.n,
    }


def _gallery_section(bundle: MetricsBundle, faces: _Faces, limits: ThumbnailLimits) -> dict[str, Any]:
    t, p = faces.t, faces.p
    order = _order_desc(faces.conf)
    labelled = bundle.classification is not None
    top = []
    for c, name in enumerate(CLASS_NAMES):
        if labelled:
            rows = order[(t[order] == c) & (p[order] == c)]
        else:
            rows = order[p[order] == c]
        thumbs = faces.pick(rows, limits.per_class)
        top.append({"name": name, "thumbs": thumbs})
    wrong = order[(t[order] >= 0) & (t[order] != p[order])]
    mis = faces.pick(wrong, limits.misclassified)
    least = faces.pick(_order_asc(faces.conf), limits.least_confident)
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


def _gates_section(gates: Mapping[str, Any]) -> dict[str, Any]:
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


def _provenance_section(art: RunArtifacts) -> dict[str, Any]:
    blocks = []
    for name, obj in ((_files.PROVENANCE, art.provenance), (_files.CONFIG, art.config)):
        blocks.append({"file": name, "entries": _flatten(obj) if obj else [], "present": obj is not None})
    return {"blocks": blocks}


def _warnings(art: RunArtifacts, bundle: MetricsBundle) -> list[Notice]:
    out: list[Notice] = []
    metrics = art.metrics or {}
    collapse = metrics.get("collapse")
    if collapse:
        if isinstance(collapse, Mapping) and ("reasons" in collapse or "likely_causes" in collapse):
            reasons = "; ".join(str(r) for r in collapse.get("reasons") or [])
            causes = "; ".join(str(c) for c in collapse.get("likely_causes") or [])
            detail = (f"training did not learn: {reasons}." if reasons else "training did not learn.") + (
                f" Likely causes: {causes}." if causes else "") + " Treat the numbers below as a failed run."
        elif isinstance(collapse, Mapping):
            detail = "; ".join(f"{k}: {_text(v)}" for k, v in sorted(collapse.items(), key=lambda kv: str(kv[0])))
        elif isinstance(collapse, str):
            detail = collapse
        else:
            detail = "the model predicts (almost) a single class"
        out.append(Notice("Prediction collapse", detail))
    listed = metrics.get("warnings")
    if isinstance(listed, (list, tuple)):
        for w in listed:
            if isinstance(w, Mapping):
                title = str(w.get("title") or w.get("code") or "")
                msg = str(w.get("message") or w.get("detail") or _text(dict(w)))
                out.append(Notice(title, msg, str(w.get("level", "warning"))))
            elif w:
                out.append(Notice("", str(w)))
    for problem in art.problems:
        out.append(Notice("Incomplete run directory", problem))
    gate_rows = [g for g in (art.gates or {}).get("gates", []) if isinstance(g, Mapping)]
    failed = [g for g in gate_rows if not g.get("passed")]
    if failed:
        out.append(Notice(f"{len(failed)} of {len(gate_rows)} quality gates failed",
                          "; ".join(str(g.get("message") or g.get("name")) for g in failed)))
    counts = bundle.prediction_counts
    total = sum(counts.values())
    if total >= 50 and not collapse:
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


def build_report_context(
    artifacts: RunArtifacts,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    max_thumbnails: int | ThumbnailLimits = ThumbnailLimits(),
    confidence: float = 0.95,
) -> ReportContext:
    """Compute the numbers and decide what the report shows."""
    art = artifacts
    limits = max_thumbnails if isinstance(max_thumbnails, ThumbnailLimits) else ThumbnailLimits(
        per_class=int(max_thumbnails), misclassified=3 * int(max_thumbnails),
        per_pair=min(6, int(max_thumbnails)), least_confident=min(12, 2 * int(max_thumbnails)))
    df = art.predictions
    bundle = metrics_from_predictions(df, n_resamples=n_resamples, seed=seed, confidence=confidence)
    t, p, _, conf = _ids_and_conf(df)
    faces = _Faces(art, t, p, conf, limits)

    prov, cfg, summ = art.provenance or {}, art.config or {}, art.data_summary or {}
    run_id = str(_first([(prov, "run_id"), (cfg, "run_id")]) or art.run_dir.resolve().name)
    model_name = _text(_first([(prov, "model_name"), (prov, "model"), (cfg, "model")]))
    if model_name is None and _get(cfg, "arch") is not None:
        model_name = f"{cfg['arch']} architecture"
    model_sha = _text(_first([(prov, "model_sha256"), (art.metrics or {}, "model_sha256")]))
    dataset = _first([(summ, "dataset"), (prov, "dataset"), (cfg, "data")])
    if dataset is None and "data" in cfg:
        dataset = "embedded generated sample"
    dataset = _text(dataset)
    fingerprint = _text(_first([(prov, "data_fingerprint"), (prov, "dataset_fingerprint"), (summ, "fingerprint")]))
    created = _text(_first([(prov, "finished"), (prov, "finished_at"), (prov, "created"), (prov, "created_at"),
                            (prov, "started"), (prov, "started_at")]))
    if created is None:
        with contextlib.suppress(OSError):
            mtime = (art.run_dir / _files.PREDICTIONS).stat().st_mtime
            created = _dt.datetime.fromtimestamp(mtime, _dt.timezone.utc).replace(microsecond=0).isoformat()

    m, ci = bundle.classification, bundle.ci or {}

    def head(key: str, label: str, value: Any, kind: str) -> Headline:
        iv = ci.get(key)
        return Headline(key, label, value, iv.low if iv else None, iv.high if iv else None, kind)

    if m is not None:
        headline = (
            head("accuracy", "Accuracy", m.accuracy, "pct"),
            head("macro_f1", "Macro-F1", m.macro_f1, "num"),
            head("weighted_f1", "Weighted-F1", m.weighted_f1, "num"),
            Headline("n", "Faces scored", m.n, kind="int"),
        )
    else:
        headline = (Headline("n", "Faces scored", 0, kind="int"),
                    Headline("n_rows", "Faces predicted", bundle.n_rows, kind="int"))

    facts: list[tuple[str, str]] = [
        ("Model", model_name or "—"),
        ("Model SHA-256", model_sha or "—"),
        ("Dataset", dataset or "—"),
        ("Data fingerprint", fingerprint or "—"),
        ("Run", run_id),
        ("Date", created or "—"),
        ("Faces in predictions.csv", f"{bundle.n_rows:,}"
         + (f" ({bundle.n_unlabelled:,} without a true label)" if bundle.n_unlabelled else "")),
    ]

    specs = [
        ("overview", "Overview", _overview_section(bundle, facts)),
        *([("gates", "Quality gates", _gates_section(art.gates))] if art.gates else []),
        ("data", "Data", _data_section(art.data_summary)),
        ("training", "Training curves", _training_section(art)),
        ("confusion", "Confusion matrix", _confusion_section(bundle)),
        ("per-class", "Per-class metrics", _per_class_section(bundle)),
        ("confused-pairs", "Most-confused pairs", _pairs_section(bundle, faces, limits)),
        ("calibration", "Calibration", _calibration_section(bundle)),
        ("faces", "Example faces", _gallery_section(bundle, faces, limits)),
        ("provenance", "Provenance", _provenance_section(art)),
    ]
    sections = tuple(
        Section(id=sid, number=i, title=title, template=f"sections/{sid.replace('-', '_')}.html.j2", data=data)
        for i, (sid, title, data) in enumerate(specs, start=1)
    )
    return ReportContext(
        title="Facial-expression classifier evaluation",
        run_id=run_id,
        model_name=model_name,
        model_sha256=model_sha,
        dataset_name=dataset,
        dataset_fingerprint=fingerprint,
        created=created,
        headline=headline,
        n=m.n if m is not None else 0,
        n_rows=bundle.n_rows,
        n_unlabelled=bundle.n_unlabelled,
        n_resamples=int(n_resamples),
        seed=int(seed),
        confidence=float(confidence),
        warnings=tuple(_warnings(art, bundle)),
        sections=sections,
    )


# =========================================================================== rendering


def templates_dir() -> Path:
    """First existing of $FERREPORT_TEMPLATES, <package>/templates, <checkout>/templates."""
    import ferreport

    pkg = Path(ferreport.__file__).resolve().parent
    candidates = []
    env = os.environ.get("FERREPORT_TEMPLATES")
    if env:
        candidates.append(Path(env))
    candidates += [pkg / "templates", pkg.parent / "templates"]
    for c in candidates:
        if (c / "base.html.j2").is_file():
            return c
    raise FerreportError(
        "report templates not found (looked in "
        + ", ".join(str(c) for c in candidates)
        + "); set FERREPORT_TEMPLATES to the folder holding base.html.j2"
    )


def _fmt_num(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{float(x):.{digits}f}"


def _fmt_pct(x: Any, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{100 * float(x):.{digits}f}%"


def _fmt_conf(x: Any) -> str:
    """A probability as a percentage rounded down (0.9996 -> 99.9%, never a false 100%)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{math.floor(float(x) * 1000 + 1e-9) / 10:.1f}%"


def _fmt_int(x: Any) -> str:
    if x is None:
        return "—"
    return f"{int(x):,}"


def _environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html", "htm", "xml", "j2"), default_for_string=True, default=True
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["num"] = _fmt_num
    env.filters["pct"] = _fmt_pct
    env.filters["intc"] = _fmt_int
    env.filters["conf"] = _fmt_conf
    return env


def render_html(ctx: ReportContext) -> str:
    """The report as one self-contained HTML page."""
    return _environment().get_template("base.html.j2").render(ctx=ctx)


class URLRefused(ValueError):
    """WeasyPrint asked for something other than a ``data:`` URL."""


def _check_data_url(url: str) -> None:
    if not str(url).lower().startswith("data:"):
        raise URLRefused(f"refusing to fetch {str(url)[:80]!r}: the report only embeds data: URLs")


def data_only_url_fetcher():
    """A WeasyPrint URL fetcher that serves ``data:`` URLs and refuses everything else."""
    import weasyprint

    base = getattr(weasyprint, "URLFetcher", None)
    if base is not None:  # WeasyPrint >= 66: fetcher objects

        class DataOnlyURLFetcher(base):
            def fetch(self, url, headers=None):
                _check_data_url(url)
                return super().fetch(url, headers)

        return DataOnlyURLFetcher(allowed_protocols=("data",), allow_redirects=False)

    default = weasyprint.default_url_fetcher  # older WeasyPrint: plain functions

    def fetcher(url, *args, **kwargs):
        _check_data_url(url)
        return default(url, *args, **kwargs)

    return fetcher


def render_pdf(html: str) -> bytes:
    """Print the report HTML to PDF with WeasyPrint (data: URLs only, no base URL)."""
    import weasyprint

    logger = logging.getLogger("weasyprint")
    level = logger.level
    logger.setLevel(logging.ERROR)  # unsupported-CSS chatter is not the user's business
    try:
        doc = weasyprint.HTML(string=html, base_url=None, url_fetcher=data_only_url_fetcher())
        return doc.write_pdf()
    finally:
        logger.setLevel(level)


def write_report(
    run_dir: str | os.PathLike[str],
    formats: Sequence[str] = FORMATS,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Path]:
    """Render report.html / report.pdf from the run directory's saved artefacts (atomic writes)."""
    formats = tuple(dict.fromkeys(str(f).lower() for f in formats))
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise UsageError(f"report format(s) {', '.join(bad) or '(none)'}: choose from {', '.join(FORMATS)}")
    run = Path(run_dir)
    ctx = build_report_context(load_run(run), n_resamples=n_resamples, seed=seed)
    html = render_html(ctx)
    out: dict[str, Path] = {}
    if "html" in formats:
        write_text(run / _files.REPORT_HTML, html)
        out["html"] = run / _files.REPORT_HTML
    if "pdf" in formats:
        write_bytes(run / _files.REPORT_PDF, render_pdf(html))
        out["pdf"] = run / _files.REPORT_PDF
    return out
