"""Evaluation: run a model over faces and write predictions.csv, metrics.json and the face pool.

The face pool (``faces_pool.npz``) keeps only the faces a report may show (the most
confident per confusion-matrix cell, the least confident overall), so a report can be
re-rendered from the run directory without the dataset or TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ferreport.config import DriftConfig, SliceConfig
from ferreport.constants import CLASS_NAMES
from ferreport.evaluation.embeddings import embedder_for, sample_rows, write_embeddings
from ferreport.evaluation.face_pool import store_face_pool
from ferreport.evaluation.facestats import face_stats_frame, write_face_stats
from ferreport.evaluation.label_noise import write_label_issue_rows
from ferreport.evaluation.metrics import metrics_from_predictions
from ferreport.evaluation.saliency import explain_pool
from ferreport.evaluation.slices import slices_for_run
from ferreport.models.adapters import adapter_for
from ferreport.models.prediction import predict_proba
from ferreport.progress import stage
from ferreport.runs.folder import EMBEDDINGS, PROBA_COLUMNS, PROBA_DECIMALS, RunFolder


@dataclass(frozen=True)
class EvaluationResult:
    predictions: pd.DataFrame
    metrics: dict[str, Any]
    out_dir: Path
    saliency: dict[str, Any] | None = None   # what saliency.npz holds (``info``), None when turned off


def predictions_frame(proba: np.ndarray, table: pd.DataFrame) -> pd.DataFrame:
    """One row per face: source, face id, true and predicted class names, confidence, probabilities.

    ``table`` needs ``source`` and ``face_id`` and may have ``label`` (int id, or -1 /
    missing when unknown). Probabilities are rounded to 6 decimals *before* anything is
    derived from them, so metrics recomputed from the CSV equal the ones written.
    """
    proba = np.round(np.asarray(proba, dtype=np.float64), PROBA_DECIMALS)
    pred = proba.argmax(axis=1)
    names = np.asarray(CLASS_NAMES, dtype=object)
    frame = pd.DataFrame({"source": table["source"].astype(str).to_numpy(),
                          "face_id": table["face_id"].to_numpy()})
    if "label" in table.columns:
        labels = table["label"].to_numpy()
        frame["true_label"] = np.where(labels >= 0, names[np.clip(labels, 0, None)], "")
    else:
        frame["true_label"] = ""
    frame["pred_label"] = names[pred]
    frame["confidence"] = proba.max(axis=1)
    for i, col in enumerate(PROBA_COLUMNS):
        frame[col] = proba[:, i]
    return frame


def evaluate_faces(model: Any, faces: np.ndarray, table: pd.DataFrame, out_dir: Path, *,
                   batch_size: int = 256, n_resamples: int = 1000, seed: int = 0,
                   extra_metrics: dict[str, Any] | None = None, source: str | Path = "model",
                   labels: tuple[str, ...] = CLASS_NAMES, attributes: pd.DataFrame | None = None,
                   saliency: bool = True, saliency_layer: str | None = None) -> EvaluationResult:
    """Predict every face, then write predictions.csv, metrics.json, faces_pool.npz and what the slices and
    drift tests read: face_stats.csv, slices.json, embeddings.npz.

    NaN/inf probabilities (a numerically broken model) raise ModelError naming ``source``
    before anything is written. ``labels``: the classes scored (all seven unless the model
    cannot predict some; their faces are already left out). ``attributes``: the faces' source
    attributes (:func:`ferreport.evaluation.facestats.source_attributes`, same rows), None when not known.
    With labels, the faces whose label is probably wrong go to label_issues.csv; ``saliency``:
    Grad-CAM of the pooled faces into saliency.npz (``saliency_layer``: the layer to read,
    default the last 4-D one).
    """
    out_dir = Path(out_dir)
    run = RunFolder(out_dir)
    adapter = adapter_for(model, source=str(source))  # one adapter: prediction, embeddings and Grad-CAM
    with stage("evaluate", total=len(faces), unit="faces") as bar:
        proba = predict_proba(adapter, faces, batch_size=batch_size, on_batch=bar.advance)
    frame = predictions_frame(proba, table)
    bundle = metrics_from_predictions(frame, n_resamples=n_resamples, seed=seed, labels=labels)
    metrics = bundle.to_dict()
    if extra_metrics:
        metrics.update(extra_metrics)
    run.write_predictions(frame)
    worst = keep_slices_and_embeddings(adapter, faces, frame, out_dir, attributes=attributes, labels=labels,
                                       n_resamples=n_resamples, seed=seed, batch_size=batch_size, source=source)
    to_check = write_label_issue_rows(frame, out_dir, labels)
    pool = store_face_pool(run, frame, faces, extra_rows=np.union1d(worst, to_check))
    saliency_info = None
    if saliency:
        with stage("saliency", total=len(pool), unit="faces") as bar:
            saliency_info = explain_pool(adapter, np.asarray(faces[pool]), pool, run,
                                         saliency_layer)
            bar.advance(len(pool))
    run.write_metrics(metrics)
    return EvaluationResult(frame, metrics, out_dir, saliency_info)


def keep_slices_and_embeddings(model: Any, faces: np.ndarray, frame: pd.DataFrame, out_dir: Path, *,
                               attributes: pd.DataFrame | None, labels: tuple[str, ...], n_resamples: int,
                               seed: int, batch_size: int = 256, source: str | Path = "model") -> np.ndarray:
    """face_stats.csv, slices.json and embeddings.npz of an evaluation; returns the weak slices' worst rows
    (kept in the face pool, so the report can show them)."""
    run = RunFolder(out_dir)
    stats = face_stats_frame(faces, attributes)
    write_face_stats(stats, run)
    report = slices_for_run(out_dir, frame, stats, labels=labels, settings=SliceConfig(), n_resamples=n_resamples,
                            seed=seed)
    embedder = embedder_for(adapter_for(model, source=str(source)))
    if embedder is not None:
        rows = sample_rows(len(faces), DriftConfig().max_embeddings, seed)
        write_embeddings(run, rows, embedder(np.asarray(faces[rows]), batch_size), embedder.layer_name)
    else:  # SavedModel, ONNX: no embeddings (a stale file would describe another model)
        run.remove(EMBEDDINGS)
    worst = [r for s in (report.weakest if report is not None else ()) for r in s.worst_rows]
    return np.asarray(sorted(set(worst)), dtype=np.int64)
