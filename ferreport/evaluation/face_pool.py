"""Which faces a run stores for its report (faces_pool.npz), and the per-row view of predictions.csv
every grid of faces sorts by: class ids, probabilities, confidence.

:func:`select_pool_rows` decides which faces an evaluation stores, so that every grid of the
report can be filled later without the dataset.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from ferreport.constants import CLASS_NAMES
from ferreport.evaluation.metrics import labels_to_ids
from ferreport.runs.folder import PROBA_COLUMNS, RunFolder

__all__ = ["POOL_EXTRA", "confidence", "ids_and_conf", "order_asc", "order_desc", "probabilities",
           "select_pool_rows", "store_face_pool"]

#: Rows kept in the face pool besides the per-cell ones (least confident overall,
#: most confident mistakes overall).
POOL_EXTRA = 24


def probabilities(df: pd.DataFrame, p: np.ndarray) -> np.ndarray:
    """(n, 7) class probabilities: the p_* columns (unreadable cells 0), else one-hot of ``p``."""
    k = len(CLASS_NAMES)
    cols = list(PROBA_COLUMNS)
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


def store_face_pool(run: RunFolder | str | os.PathLike[str], frame: pd.DataFrame, faces: np.ndarray,
                    extra_rows: np.ndarray | None = None) -> np.ndarray:
    """Store the faces a report may show in the run's faces_pool.npz (plus ``extra_rows``: the labels to
    check, the weak slices' worst faces); returns their rows."""
    rows = np.asarray(select_pool_rows(frame), dtype=np.int64)
    if extra_rows is not None and len(extra_rows):
        rows = np.union1d(rows, np.asarray(extra_rows, dtype=np.int64))
    RunFolder(run).write_face_pool(rows, np.asarray(faces[rows], dtype=np.uint8))
    return rows
