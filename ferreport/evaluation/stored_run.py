"""A run folder read back: its predictions and stored results in one :class:`RunArtifacts`.

What the report renders and ``compare`` pairs. Optional artefacts and what the report does without them:

* ``history.csv`` - the training-curves section says the model was evaluated
  without a training history;
* ``data_summary.json`` - the data section says the summary is unavailable;
* ``faces_pool.npz`` - image grids are empty (a face not in the pool is not shown);
* ``saliency.npz`` - faces are shown without Grad-CAM overlays;
* ``metrics.json`` - the scores every section shows (required for a report: it never recomputes them);
* ``label_noise.json`` - the labels to check and the per-class noise (the section says it is missing);
* ``provenance.json`` / ``config.json`` - shown key by key when present.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ferreport.evaluation.label_noise import LabelIssues
from ferreport.evaluation.metrics import MetricsBundle
from ferreport.evaluation.saliency import SaliencyMaps, read_saliency
from ferreport.runs.folder import METRICS, RunFolder
from ferreport.runs.guard import ArtefactError

__all__ = ["RunArtifacts", "load_run", "stored_bundle", "stored_label_noise"]


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
    #: Quality-gate verdicts (``gates.json``, see :mod:`ferreport.evaluation.gates`); None without gates.
    gates: Mapping[str, Any] | None = None
    #: Grad-CAM maps of pooled faces (``saliency.npz``, :mod:`ferreport.evaluation.saliency`); None without the file.
    saliency: SaliencyMaps | None = None
    #: The scores as evaluation stored them (metrics.json); None when the run has none.
    bundle: MetricsBundle | None = None
    #: The labels to check as evaluation found them (label_noise.json); None when the run has none.
    label_noise: LabelIssues | None = None


# =========================================================================== reading


def load_run(run_dir: str | os.PathLike[str]) -> RunArtifacts:
    """Read a run directory through its :class:`~ferreport.runs.folder.RunFolder`; only predictions.csv is required."""
    run = RunFolder(run_dir)
    run.require_predictions()
    problems: list[str] = []
    predictions = run.read_predictions()
    history = run.read_history(problems)
    pool_rows, pool_faces = run.read_face_pool(len(predictions), problems)
    try:  # required: one that is there but refused is exit 3 naming the reason
        metrics = run.read_metrics_strict() if run.present(METRICS) else None
    except ArtefactError as exc:
        raise ArtefactError(exc.path, f"{exc.reason}; a report shows the scores evaluation stored: run "
                                      f"`ferreport evaluate {run.path}` again to rewrite it") from None
    data_summary = run.read_data_summary(problems)
    provenance = run.read_provenance(problems)
    config = run.read_config(problems)
    shown_problems = tuple(problems)  # as before the split: a gates.json problem is not listed
    return RunArtifacts(
        run_dir=run.path, predictions=predictions, metrics=metrics, history=history, data_summary=data_summary,
        provenance=provenance, config=config, pool_rows=pool_rows, pool_faces=pool_faces,
        problems=shown_problems, gates=run.read_gates(problems),
        saliency=read_saliency(run, len(predictions), problems),
        bundle=stored_bundle(metrics), label_noise=stored_label_noise(run),
    )


def stored_bundle(metrics: Mapping[str, Any] | None) -> MetricsBundle | None:
    """metrics.json's scores as a :class:`MetricsBundle`; None when absent or not of that form."""
    if metrics is None:
        return None
    try:
        return MetricsBundle.from_dict(metrics)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def stored_label_noise(run: RunFolder) -> LabelIssues | None:
    """label_noise.json as :class:`LabelIssues`; None when absent or not of that form."""
    doc = run.read_label_noise()
    if doc is None:
        return None
    try:
        return LabelIssues.from_dict(doc)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


