"""Scoring a model and what is computed from its predictions, once, into the run folder: metrics
with intervals, slices, drift, label issues, saliency, embeddings; comparisons and quality gates.

The names below are the package's public API; each is imported from its module on first use, so
importing the package loads nothing heavy (TensorFlow, OpenCV) until a name that needs it is used.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the module of this package that defines it.
EXPORTS: dict[str, str] = {
    "bootstrap_ci": "metrics",
    "calibration": "metrics",
    "classification_metrics": "metrics",
    "compare_document": "comparison",
    "compute_slices": "slices",
    "drift_tests": "drift",
    "DriftResult": "drift",
    "evaluate_faces": "evaluate",
    "evaluate_gates": "gates",
    "evaluate_model": "evaluate_stage",
    "evaluate_on_split": "evaluate_stage",
    "evaluate_run": "evaluate_stage",
    "find_label_issues": "label_noise",
    "grad_cam": "saliency",
    "label_audit": "label_issues",
    "LabelIssues": "label_noise",
    "load_run": "stored_run",
    "mcnemar_test": "comparison",
    "metrics_from_predictions": "metrics",
    "MetricsBundle": "metrics",
    "pair_runs": "comparison",
    "paired_bootstrap": "comparison",
    "parse_gate_specs": "gates",
    "RunArtifacts": "stored_run",
    "select_pool_rows": "face_pool",
    "SliceReport": "slices",
}
__all__ = sorted(EXPORTS)


def __getattr__(name: str) -> Any:
    if name in EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *EXPORTS})
