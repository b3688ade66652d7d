"""The sections "Where the model errs" (slices.json) and "Is this folder like the reference?" (drift.json).

Both read the JSON their computation wrote (:mod:`ferreport.evaluation.slices`, :mod:`ferreport.evaluation.drift`), so
the page shows exactly the numbers of the file, and ``ferreport report`` re-renders them without
the dataset or TensorFlow. Builders return plain dicts for ``sections/slices.html.j2`` and
``sections/drift.html.j2``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np

from ferreport.report import plots
from ferreport.report.sections import Faces

__all__ = ["drift_section", "slices_figure", "slices_section"]

WEAK_COLOR = "#c44e52"
OTHER_COLOR = "#3b6fb6"
SMALL_COLOR = "#9ca3af"
MAX_ROWS_IN_CHART = 24


def _label(s: Mapping[str, Any]) -> str:
    return f"{s.get('attribute_title', s.get('attribute'))}: {s.get('name')}"


def slices_figure(rows: Sequence[Mapping[str, Any]], overall: float, overall_ci: Sequence[float] | None,
                  min_faces: int) -> Any:
    """Accuracy of each slice with its interval (weak slices red and first), against the overall accuracy."""
    with matplotlib.rc_context(plots.STYLE):
        fig = plots.new_figure(8.6, 0.9 + 0.27 * max(len(rows), 1))
        ax = fig.add_subplot()
        y = np.arange(len(rows))[::-1]
        if overall_ci is not None and len(overall_ci) == 2:
            ax.axvspan(overall_ci[0], overall_ci[1], color=OTHER_COLOR, alpha=0.08, lw=0)
        ax.axvline(overall, color="#111827", lw=1.0, ls="--", label=f"overall {overall:.1%}")
        for yi, s in zip(y, rows, strict=True):
            color = WEAK_COLOR if s.get("weak") else (SMALL_COLOR if s["faces"] < min_faces else OTHER_COLOR)
            lo, hi = s["accuracy_ci"]
            ax.plot([lo, hi], [yi, yi], color=color, lw=2.0, solid_capstyle="butt")
            ax.plot([s["accuracy"]], [yi], "o", color=color, ms=4.5)
        ax.set_yticks(y)
        ax.set_yticklabels([f"{_label(s)} ({s['faces']:,})" for s in rows], fontsize=8)
        ax.set_xlim(0, 1)
        ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
        ax.set_xlabel("accuracy with its interval (faces in brackets)")
        ax.grid(True, axis="x")
        ax.set_axisbelow(True)
        ax.set_ylim(-0.7, len(rows) - 0.3)
        handles = [matplotlib.lines.Line2D([], [], color=WEAK_COLOR, marker="o", lw=2, label="weak"),
                   matplotlib.lines.Line2D([], [], color=OTHER_COLOR, marker="o", lw=2, label="not weak"),
                   matplotlib.lines.Line2D([], [], color=SMALL_COLOR, marker="o", lw=2,
                                           label=f"under {min_faces} faces"),
                   matplotlib.lines.Line2D([], [], color="#111827", ls="--", lw=1, label="overall")]
        fig.legend(handles=handles, loc="outside upper right", ncols=2, fontsize=8)
    return fig


def slices_section(doc: Mapping[str, Any] | None, faces: Faces | None,
                   row_of: Mapping[int, int] | None = None) -> dict[str, Any]:
    """What the slices section shows: the weak slices (chart, table, worst faces) first, then every slice.

    ``row_of`` maps predictions.csv rows to the rows of ``faces`` where they differ (the audit report
    numbers its pooled faces 0..k-1)."""
    if not doc or not doc.get("slices"):
        return {"available": False}
    slices = [s for s in doc["slices"] if isinstance(s, Mapping)]
    overall = doc.get("overall") or {}
    min_faces = int(doc.get("min_faces") or 0)
    weak = sorted((s for s in slices if s.get("weak")), key=lambda s: s.get("rank") or 0)
    others = [s for s in slices if not s.get("weak")]
    chart_rows = (weak + sorted(others, key=lambda s: s["accuracy_gap"]))[:MAX_ROWS_IN_CHART]
    figure = plots.figure_to_data_uri(slices_figure(chart_rows, float(overall.get("accuracy", 0.0)),
                                                    overall.get("accuracy_ci"), min_faces))
    grids = []
    for s in weak:
        worst = [int(r) for r in s.get("worst_rows") or []]
        if row_of is not None:
            worst = [row_of[r] for r in worst if r in row_of]
        thumbs = faces.pick(worst, len(worst)) if faces is not None else []
        grids.append({"label": _label(s), "rank": s.get("rank"), "thumbs": thumbs})
    attributes = {a.get("key"): a for a in doc.get("attributes") or [] if isinstance(a, Mapping)}
    groups = []
    for key, attr in attributes.items():
        groups.append({"title": attr.get("title", key), "binning": attr.get("binning"),
                       "rows": [s for s in slices if s.get("attribute") == key]})
    return {"available": True, "overall": overall, "n": doc.get("n"), "min_faces": min_faces,
            "min_slice_accuracy": doc.get("min_slice_accuracy"), "interval": doc.get("interval") or {},
            "weak": weak, "grids": grids, "groups": groups, "figure": figure, "n_chart": len(chart_rows),
            "n_slices": len(slices)}


def _class_mix_figure(parts: Sequence[Mapping[str, Any]]) -> Any:
    with matplotlib.rc_context(plots.STYLE):
        fig = plots.new_figure(8.6, 2.4)
        ax = fig.add_subplot()
        x = np.arange(len(parts))
        ax.bar(x - 0.2, [p["reference_share"] for p in parts], 0.4, color="#8fb3e0", label="reference")
        ax.bar(x + 0.2, [p["incoming_share"] for p in parts], 0.4, color=OTHER_COLOR, label="this folder")
        ax.set_xticks(x)
        ax.set_xticklabels([p["class"] for p in parts])
        ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
        ax.set_ylabel("share of faces")
        ax.grid(True, axis="y")
        ax.set_axisbelow(True)
        fig.legend(loc="outside upper right", ncols=2)
    return fig


def drift_section(doc: Mapping[str, Any] | None) -> dict[str, Any]:
    """What the drift section shows: the verdict, each test's statistic, p-value or threshold and verdict."""
    if not doc or not isinstance(doc.get("tests"), list):
        return {"available": False}
    tests = [t for t in doc["tests"] if isinstance(t, Mapping)]
    mix = next((t for t in tests if t.get("key") == "class_mix_chi2" and t.get("parts")), None)
    figure = plots.figure_to_data_uri(_class_mix_figure(mix["parts"])) if mix else None
    image = next((t for t in tests if t.get("key") == "image_stats" and t.get("parts")), None)
    return {"available": True, "detected": bool(doc.get("drift_detected")), "reference": doc.get("reference"),
            "n_reference": doc.get("n_reference"), "n_incoming": doc.get("n_incoming"), "tests": tests,
            "fired": [t.get("title") for t in tests if t.get("fired")], "settings": doc.get("settings") or {},
            "mix_figure": figure, "image_parts": list(image["parts"]) if image else []}
