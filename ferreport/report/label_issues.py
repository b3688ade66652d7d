"""The page of ``ferreport label-issues``: label_issues.html, the most suspect faces and the noise table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ferreport.constants import CLASS_NAMES
from ferreport.evaluation.face_pool import ids_and_conf
from ferreport.evaluation.label_noise import LabelIssues
from ferreport.evaluation.stored_run import RunArtifacts
from ferreport.report.context import Headline, ReportContext, ThumbnailLimits, numbered_sections
from ferreport.report.explain import labels_section
from ferreport.report.render import render_html
from ferreport.report.sections import Faces
from ferreport.runs.folder import PROBA_COLUMNS

__all__ = ["label_audit_page"]


def label_audit_page(out: Path, faces: np.ndarray, index: pd.DataFrame, proba: np.ndarray, found: LabelIssues,
                     summary: dict[str, Any]) -> str:
    """label_issues.html: what was run, the grid of the most suspect faces and the noise table (one offline file)."""
    limits = ThumbnailLimits()
    names = np.asarray(CLASS_NAMES, dtype=object)
    frame = pd.DataFrame({"source": index["source"].astype(str), "face_id": index["face_id"].astype(str),
                          "true_label": names[index["label"].to_numpy(dtype=np.int64)],
                          "pred_label": names[proba.argmax(axis=1)], "confidence": proba.max(axis=1)})
    for i, col in enumerate(PROBA_COLUMNS):
        frame[col] = proba[:, i]
    rows = np.array(sorted({i.row for i in found.issues[:limits.label_issues]}), dtype=np.int64)
    art = RunArtifacts(run_dir=out, predictions=frame, pool_rows=rows,
                       pool_faces=np.asarray(faces[rows]) if rows.size else None, label_noise=found)
    t, p, _, conf = ids_and_conf(frame)
    grid = labels_section(art, Faces(art, t, p, conf, limits), limits)
    grid["saliency"] = {"state": "absent"}
    acc = summary["fold_accuracy"]
    facts = [("Dataset", summary["data"]), ("Data fingerprint", summary["data_fingerprint"]),
             ("Faces", f"{summary['faces']:,}"),
             ("Model", "HOG + logistic regression (C=1e-3, balanced class weights)" if summary["model_kind"] ==
              "hog-logreg" else f"compact-std CNN, {summary.get('epochs')} epochs per fold"),
             ("Folds", str(summary["folds"])),
             ("Fold accuracy (against the given labels)", ", ".join(f"{a:.1%}" for a in acc)),
             ("Ranking", found.ranking.replace("_", "-")), ("Seed", str(summary["seed"])),
             ("Time", f"{summary['seconds']:.0f} s")]
    sections = numbered_sections([
        ("overview", "What was run", "sections/label_audit.html.j2", {"facts": facts, "folds": summary["folds"]}),
        ("label-issues", "Labels to check", "sections/label_issues.html.j2", grid),
    ])
    ctx = ReportContext(
        title="Labels to check", run_id=out.name, model_name=summary["model_kind"], model_sha256=None,
        dataset_name=summary["data"], dataset_fingerprint=summary["data_fingerprint"], created=None,
        headline=(Headline("flagged", "Faces flagged", len(found.issues), kind="int"),),
        n=found.n_checked, n_rows=found.n_checked, n_unlabelled=0, n_resamples=0, seed=int(summary["seed"]),
        confidence=0.95, warnings=(), sections=sections, kind="label-issues")
    return render_html(ctx)
