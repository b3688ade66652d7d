"""The model an audit runs (``--model``): a run folder, a SavedModel folder or a model file, and what it was
trained on (the training class distribution the audit report compares against)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ferreport.constants import CLASS_NAMES
from ferreport.errors import UsageError
from ferreport.runs.folder import DATA_SUMMARY, MODEL, RunFolder

__all__ = ["ResolvedModel", "resolve_model"]


@dataclass(frozen=True)
class ResolvedModel:
    """The model file (or SavedModel folder), its run folder when it has one, and its training class counts."""

    path: Path
    run_dir: Path | None
    training_distribution: dict[str, dict[str, int]]


def resolve_model(model: str | os.PathLike[str]) -> ResolvedModel:
    """RUN_DIR -> RUN_DIR/model.keras; the training class distribution from its data_summary.json.

    A SavedModel folder (it holds saved_model.pb) is the model itself.
    A model file whose folder holds a data_summary.json (a run directory) gets it too.
    """
    p = Path(model)
    run_dir: Path | None = None
    if p.is_dir() and (p / "saved_model.pb").is_file():  # a TensorFlow SavedModel folder
        return ResolvedModel(p, None, {})
    if p.is_dir():
        run_dir = p
        p = RunFolder(p).model_path
        if not p.is_file():
            raise UsageError(f"--model {run_dir}: a folder without {MODEL} or saved_model.pb; pass a run "
                             "directory, a SavedModel folder or a model file (.keras, .h5, .onnx)")
    elif RunFolder(p.parent).has(DATA_SUMMARY):
        run_dir = p.parent
    dist: dict[str, dict[str, int]] = {}
    if run_dir is not None and RunFolder(run_dir).has(DATA_SUMMARY):
        summary = RunFolder(run_dir).read_data_summary() or {}  # unreadable, or not an object: no distribution
        splits = summary.get("splits")
        for key, counts in (("train", splits.get("train") if isinstance(splits, dict) else None),
                            ("train_balanced", summary.get("train_balanced"))):
            if isinstance(counts, dict):
                clean = {c: int(counts.get(c, 0)) for c in CLASS_NAMES
                         if isinstance(counts.get(c, 0), (int, float))}
                if sum(clean.values()) > 0:
                    dist[key] = clean
    return ResolvedModel(p, run_dir, dist)
