"""The audit report rendered from an audit folder's files alone (no TensorFlow, no images)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ferreport.errors import UsageError
from ferreport.report.audit import build_audit_context, is_audit_dir, write_audit_report
from ferreport.report.render import render_html
from ferreport.runs import folder as artifacts
from tests.report.run_dirs import make_run_dir


def make_audit_dir(root: Path, *, labelled: bool, mode: str = "auto") -> Path:
    """A run folder (predictions.csv, face pool, provenance) plus the audit's summary."""
    run = make_run_dir(root / "audit", n=120, labelled=labelled, history=False, summary=False)
    model_run = make_run_dir(root / "model", n=60)  # its history.csv gives a labelled audit training curves
    (run / artifacts.AUDIT_SUMMARY).write_text(json.dumps({
        "folder": "/photos <&>", "faces_mode": mode, "labels": "subfolders" if labelled else "none",
        "files_seen": 140, "images_read": 118, "images_with_face": 100, "images_without_face": 18,
        "faces_found": 120, "files_skipped": 22, "labelled_faces": 120 if labelled else 0,
        "skipped": {"not an image": 20, "unreadable": 2}, "skipped_examples": {"not an image": ["notes.txt"]},
        "seconds": 75.0, "images_per_second": 1.6, "model": "model.keras", "model_run_dir": str(model_run),
        "confidence": {"mean": 0.61, "below_0.5": 30,
                       "histogram": {"edges": [i / 10 for i in range(11)], "counts": [0, 2, 8, 10, 10, 20, 20,
                                                                                     20, 20, 10]}},
        "training_distribution": {"train": {"happy": 50, "sad": 20}},
    }))
    return run


def test_labelled_audit_shows_the_scores_and_the_models_training_curves(tmp_path):
    run = make_audit_dir(tmp_path, labelled=True)
    assert is_audit_dir(run)
    ctx = build_audit_context(run)
    assert ctx.kind == "audit" and ctx.n == 120 and ctx.n_rows == 120
    assert [s.id for s in ctx.sections] == ["overview", "scan", "distribution", "confidence", "faces", "training",
                                            "confusion", "per-class", "confused-pairs", "calibration", "label-issues",
                                            "provenance"]
    assert [s.number for s in ctx.sections] == list(range(1, 13))
    assert {h.key for h in ctx.headline} == {"accuracy", "macro_f1", "weighted_f1", "n"}
    titles = [w.title for w in ctx.warnings]
    assert "Images without a detected face" in titles and "Files skipped" in titles
    html = render_html(ctx)
    assert "/photos &lt;&amp;&gt;" in html and "<script" not in html


def test_unlabelled_audit_leaves_the_scores_out(tmp_path):
    run = make_audit_dir(tmp_path, labelled=False, mode="detect")
    ctx = build_audit_context(run)
    assert [s.id for s in ctx.sections] == ["overview", "scan", "distribution", "confidence", "faces", "provenance"]
    assert ctx.headline == () and ctx.n == 0
    assert "Faces without a true label" not in [w.title for w in ctx.warnings]
    faces = next(s for s in ctx.sections if s.id == "faces").data
    assert faces["available"] and faces["least_confident"] and faces["misclassified"] == []
    paths = write_audit_report(run, ("html",))
    assert paths == {"html": run / artifacts.REPORT_HTML} and paths["html"].read_text().startswith("<!DOCTYPE html>")


def test_an_audit_report_needs_the_audit_summary(tmp_path):
    run = make_run_dir(tmp_path / "run", n=60, history=False)
    assert not is_audit_dir(run)
    with pytest.raises(UsageError):
        build_audit_context(run)
    with pytest.raises(UsageError):
        write_audit_report(run, ("docx",))
