"""What a report is rendered from: a run directory read into :class:`RunArtifacts`, and
the per-row view of predictions.csv every grid of faces sorts by (class ids, confidence).

:func:`select_pool_rows` decides which faces an evaluation stores in ``faces_pool.npz``,
so that every grid of the report can be filled later without the dataset.

Optional artefacts and what the report does without them:

* ``history.csv`` - the training-curves section says the model was evaluated
  without a training history;
* ``data_summary.json`` - the data section says the summary is unavailable;
* ``faces_pool.npz`` - image grids are empty (a face not in the pool is not shown);
* ``saliency.npz`` - faces are shown without Grad-CAM overlays;
* ``metrics.json`` - only read for warnings (``warnings`` list, ``collapse`` entry)
  and ``best_epoch``; all numbers are recomputed from predictions.csv;
* ``provenance.json`` / ``config.json`` - shown key by key when present.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ferreport.runs import folder as files
from ferreport.constants import CLASS_NAMES
from ferreport.errors import DatasetError, UsageError
from ferreport.evaluation.metrics import labels_to_ids
from ferreport.evaluation.saliency import SALIENCY_FILE, SaliencyMaps, read_saliency

__all__ = [
    "as_number",
    "parse_time",
    "POOL_EXTRA",
    "RunArtifacts",
    "confidence",
    "ids_and_conf",
    "load_run",
    "order_asc",
    "order_desc",
    "probabilities",
    "read_json",
    "read_predictions_csv",
    "select_pool_rows",
]

#: Rows kept in the face pool besides the per-cell ones (least confident overall,
#: most confident mistakes overall).
POOL_EXTRA = 24


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
    #: Quality-gate verdicts (``gates.json``, see :mod:`ferreport.runs.gates`); None without gates.
    gates: Mapping[str, Any] | None = None
    #: Grad-CAM maps of pooled faces (``saliency.npz``, :mod:`ferreport.evaluation.saliency`); None without the file.
    saliency: SaliencyMaps | None = None


# =========================================================================== reading


def read_json(path: Path, problems: list[str]) -> dict[str, Any] | None:
    """A JSON object file, or None when absent; unreadable files are noted in ``problems``."""
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


def _read_history(path: Path, problems: list[str]) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        history = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        problems.append(f"{files.HISTORY} could not be read ({exc}); training curves left out")
        return None
    return None if history.empty else history


def _read_face_pool(path: Path, n_rows: int, problems: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """(row numbers, faces) of faces_pool.npz, rows outside predictions.csv dropped."""
    if not path.is_file():
        return np.zeros(0, dtype=np.int64), None
    try:
        with np.load(path, allow_pickle=False) as npz:
            rows = np.asarray(npz["rows"], dtype=np.int64).reshape(-1)
            faces = np.asarray(npz["faces"])
        if faces.dtype != np.uint8 or faces.ndim != 4 or faces.shape[3] != 3 or len(faces) != len(rows):
            raise ValueError(f"expected rows (k,) and faces (k,h,w,3) uint8, got {rows.shape} and "
                             f"{faces.shape} {faces.dtype}")
        keep = (rows >= 0) & (rows < n_rows)
        return rows[keep], faces[keep]
    except (OSError, ValueError, KeyError) as exc:
        problems.append(f"{files.FACES_POOL} could not be read ({exc}); faces are not shown")
        return np.zeros(0, dtype=np.int64), None


def load_run(run_dir: str | os.PathLike[str]) -> RunArtifacts:
    """Read a run directory; only predictions.csv is required."""
    run = Path(run_dir)
    if not run.is_dir():
        raise UsageError(f"{run}: run directory not found")
    pred_path = run / files.PREDICTIONS
    if not pred_path.is_file():
        raise UsageError(f"{run}: no {files.PREDICTIONS}; evaluate a model into this folder first")
    problems: list[str] = []
    predictions = read_predictions_csv(pred_path)
    history = _read_history(run / files.HISTORY, problems)
    pool_rows, pool_faces = _read_face_pool(run / files.FACES_POOL, len(predictions), problems)
    metrics = read_json(run / files.METRICS, problems)
    data_summary = read_json(run / files.DATA_SUMMARY, problems)
    provenance = read_json(run / files.PROVENANCE, problems)
    config = read_json(run / files.CONFIG, problems)
    shown_problems = tuple(problems)  # as before the split: a gates.json problem is not listed
    return RunArtifacts(
        run_dir=run, predictions=predictions, metrics=metrics, history=history, data_summary=data_summary,
        provenance=provenance, config=config, pool_rows=pool_rows, pool_faces=pool_faces,
        problems=shown_problems, gates=read_json(run / files.GATES, problems),
        saliency=read_saliency(run / SALIENCY_FILE, len(predictions), problems),
    )


# =========================================================================== per-row view


def probabilities(df: pd.DataFrame, p: np.ndarray) -> np.ndarray:
    """(n, 7) class probabilities: the p_* columns (unreadable cells 0), else one-hot of ``p``."""
    k = len(CLASS_NAMES)
    cols = list(files.PROBA_COLUMNS)
    if all(c in df.columns for c in cols):
        return df[cols].apply(pd.to_numeric, errors="coerce").fillna(0.0).to_numpy(dtype=np.float64)
    return np.eye(k)[np.clip(p, 0, k - 1)]


def confidence(df: pd.DataFrame, proba: np.ndarray) -> np.ndarray:
    """The probability of each row's predicted class: its ``confidence`` cell where that is a
    number, else the row's largest probability (1 when predictions.csv has no probabilities)."""
    if "confidence" in df.columns:
        conf = pd.to_numeric(df["confidence"], errors="coerce").to_numpy(dtype=np.float64)
        return np.where(np.isfinite(conf), conf, proba.max(axis=1) if proba.size else 0.0)
    return proba.max(axis=1) if proba.size else np.zeros(len(df))


def ids_and_conf(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(true ids, -1 unknown; predicted ids; probabilities; confidence) of every row."""
    t = labels_to_ids(df["true_label"].tolist(), column="true_label")
    p = labels_to_ids(df["pred_label"].tolist(), column="pred_label")
    proba = probabilities(df, p)
    return t, p, proba, confidence(df, proba)


def order_desc(conf: np.ndarray) -> np.ndarray:
    """Row positions by confidence, highest first; ties by row number."""
    return np.lexsort((np.arange(conf.size), -conf))


def order_asc(conf: np.ndarray) -> np.ndarray:
    """Row positions by confidence, lowest first; ties by row number."""
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
    t, p, _, conf = ids_and_conf(pred_df)
    cell = np.where(t >= 0, t * k + p, k * k + p)
    order = order_desc(conf)
    # rank of each row within its cell, walking rows from most to least confident
    ordered_cells = cell[order]
    by_cell = np.argsort(ordered_cells, kind="stable")
    sorted_cells = ordered_cells[by_cell]
    starts = np.flatnonzero(np.r_[True, sorted_cells[1:] != sorted_cells[:-1]])
    run_start = np.repeat(starts, np.diff(np.r_[starts, sorted_cells.size]))
    rank = np.empty(n, dtype=np.int64)
    rank[by_cell] = np.arange(n) - run_start
    chosen = [order[rank < per_cell]]
    chosen.append(order_asc(conf)[:POOL_EXTRA])
    wrong = order[(t[order] >= 0) & (t[order] != p[order])]
    chosen.append(wrong[:POOL_EXTRA])
    return np.unique(np.concatenate(chosen)).astype(np.int64)


def parse_time(text: Any) -> _dt.datetime | None:
    """An ISO time from provenance.json (UTC when it names no zone); None when absent or unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        value = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=_dt.timezone.utc)


def as_number(x: Any) -> float | None:
    """``x`` as a float when it is a JSON number (not a bool), else None."""
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None
