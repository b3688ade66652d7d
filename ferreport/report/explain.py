"""Why the model errs: the saliency note of the face grids and the "Labels to check" section.

* :func:`saliency_summary` - what ``saliency.npz`` says (shown, not available and why,
  or absent), for the sentence above every face grid;
* :func:`labels_section` - the faces whose given label is probably wrong
  (:mod:`ferreport.evaluation.label_noise`, cleanlab), as a grid of the first rows of
  label_issues.csv, plus the per-class estimated noise table.

Builders only: plain dicts for the templates; nothing here imports TensorFlow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ferreport.constants import CLASS_NAMES
from ferreport.evaluation.label_noise import label_issues_frame
from ferreport.evaluation.stored_run import RunArtifacts
from ferreport.report.context import ThumbnailLimits
from ferreport.report.sections import Faces
from ferreport.runs.folder import LABEL_ISSUES, LABEL_NOISE, RunFolder

__all__ = ["RANKING_WORDS", "labels_section", "saliency_summary"]

#: How each cleanlab ranking is said on the page.
RANKING_WORDS = {
    "self_confidence": "self-confidence (the model's probability of the given label, lowest first)",
    "normalized_margin": "normalized margin (probability of the given label minus the largest other, lowest first)",
}


def saliency_summary(art: RunArtifacts) -> dict[str, Any]:
    """``{"state": "shown" | "not_available" | "absent", ...}`` from saliency.npz's info."""
    sal = art.saliency
    if sal is None:
        return {"state": "absent"}
    info = sal.info
    if not sal.available:
        return {"state": "not_available", "reason": str(info.get("reason") or "no reason recorded")}
    faces = int(info.get("faces") or 0)
    seconds = float(info.get("seconds") or 0.0)
    size = info.get("map_size") or []
    return {"state": "shown", "layer": str(info.get("layer") or "?"), "target": str(info.get("target") or ""),
            "faces": faces, "ms_per_face": 1000.0 * seconds / faces if faces else None,
            "map_size": "×".join(str(int(v)) for v in size) if size else None}


def labels_section(art: RunArtifacts, faces: Faces, limits: ThumbnailLimits,
                   scored: tuple[str, ...] = CLASS_NAMES, *,
                   pool_position: Mapping[int, int] | None = None) -> dict[str, Any]:
    """Faces whose label is probably wrong (the first rows of label_issues.csv) and the per-class noise,
    as evaluation stored them (label_noise.json; rows = predictions.csv rows).

    ``pool_position``: predictions.csv row -> position of its face in ``faces`` (audits, whose
    report holds only the pooled faces); sources and face ids come from label_issues.csv.
    """
    found = art.label_noise
    if found is None:
        return {"available": False, "reason": f"{LABEL_NOISE} is missing or unreadable (evaluated by an older "
                                               "ferreport): evaluate the run again to see the labels to check"}
    issues_csv = RunFolder(art.run_dir).read_label_issues()
    frame = issues_csv if issues_csv is not None and len(issues_csv) == len(found.issues) else \
        label_issues_frame(found, _Blank(), _Blank())
    if not found.available:
        return {"available": False, "reason": found.reason}
    grid = []
    for issue, (_, row) in zip(found.issues[:limits.label_issues], frame.iterrows(), strict=False):
        at = issue.row if pool_position is None else pool_position.get(issue.row)
        grid.append({"thumb": faces.thumb(at) if at is not None and faces.has(at) else None,
                     "source": str(row["source"]), "face_id": str(row["face_id"]), "given": row["given"],
                     "suggested": row["suggested"], "score": float(row["score"])})
    noise = [{"name": c.name, "n_given": c.n_given, "rate": c.noise_rate, "n_wrong": c.n_wrong,
              "likely_true": c.likely_true} for c in found.noise]
    missing_classes = [c for c in scored if c not in found.classes]
    return {
        "available": True,
        "n_checked": found.n_checked,
        "n_flagged": len(found.issues),
        "share": len(found.issues) / found.n_checked if found.n_checked else 0.0,
        "ranking": RANKING_WORDS.get(found.ranking, found.ranking),
        "grid": grid,
        "n_shown": len(grid),
        "n_without_face": sum(1 for g in grid if g["thumb"] is None),
        "noise": noise,
        "csv": LABEL_ISSUES if RunFolder(art.run_dir).has(LABEL_ISSUES) else None,
        "classes_left_out": missing_classes,
    }


class _Blank:
    """Empty text for any row (an audit's label_issues.csv missing: sources unknown)."""

    def __getitem__(self, i: int) -> str:
        return ""
