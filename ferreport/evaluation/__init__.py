"""Scoring a model and what is computed from its predictions, once, into the run folder: metrics
with intervals, slices, drift, label issues, saliency, embeddings; comparisons and quality gates.

The names below are the package's public API, each imported from its module on first use
(:mod:`ferreport.lazy`).
"""

from __future__ import annotations

from ferreport.lazy import lazy_exports

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

__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)
