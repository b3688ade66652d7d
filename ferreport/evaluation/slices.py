"""Slices: where the model errs. Accuracy and macro-F1 per slice of the faces, with bootstrap intervals.

The faces are cut by what the pipeline knows or measures cheaply (:mod:`ferreport.evaluation.facestats`):
face size in the source image, ExpW's box confidence, brightness, contrast, blur, a
grayscale source, a box clipped at the border, one or several faces in the image, and in
audits how the face was found. Bins:

* **face size**: fixed edges 48, 96 and 192 source pixels (the shorter box side). Fixed
  because a pixel count means the same in every dataset: below 48 px the 64x64 face is
  upsampled from less detail than the model sees, above 192 px it is downsampled 3x or more.
* **box confidence, brightness, contrast, blur**: tertiles of the faces scored (edges
  recorded). Their scales depend on the dataset and the annotator (ExpW's confidence is its
  detector's score, no fixed meaning), and tertiles keep every bin a third of the faces, so
  each interval is as narrow as the data allows.
* the rest are categories (colour / grayscale, clipped or not, 1 / several faces, found).

Per slice: faces, accuracy and macro-F1 with percentile bootstrap intervals (the confusion
matrix resampled as :func:`ferreport.evaluation.metrics.bootstrap_ci` does, seeded, recorded), and the gap
to the whole. Macro-F1 is averaged over the classes with a true face in the slice (in the
slice and in the whole alike), so a slice is not charged for a class it does not hold.
A slice is **weak** when it has at least ``min_faces`` faces and the upper end of its accuracy
interval lies below the overall accuracy; weak slices are ranked by their accuracy gap.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ferreport.config import SliceConfig
from ferreport.constants import CLASS_NAMES
from ferreport.evaluation.metrics import predictions_arrays, resampled_stats, round_metric, stats_from_cms
from ferreport.progress import echo, mode
from ferreport.runs.folder import SLICES, RunFolder

__all__ = ["FACE_SIZE_EDGES", "SliceAttribute", "SliceReport", "SliceScore", "compute_slices", "read_slices",
           "slices_for_run", "summary_line", "write_slices"]

#: Fixed edges of the face-size slices (shorter box side, source pixels).
FACE_SIZE_EDGES: tuple[float, ...] = (48.0, 96.0, 192.0)

#: (column, title, binning, names of the bins low -> high or by category value)
_ATTRIBUTES: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("box_side", "Face size in the source", "fixed", ()),
    ("box_confidence", "ExpW box confidence", "tertiles", ("low", "middle", "high")),
    ("brightness", "Brightness", "tertiles", ("dark", "middle", "bright")),
    ("contrast", "Contrast", "tertiles", ("flat", "middle", "contrasty")),
    ("blur", "Sharpness (Laplacian variance)", "tertiles", ("blurry", "middle", "sharp")),
    ("grayscale", "Source colour", "categories", ("colour", "grayscale")),
    ("clipped", "Box at the border", "categories", ("inside the image", "clipped at the border")),
    ("faces_in_image", "Faces in the image", "categories", ("one face", "several faces")),
    ("found", "How the face was found", "categories", ()),
)


@dataclass(frozen=True)
class SliceAttribute:
    """One attribute the faces are cut by, and how."""

    key: str
    title: str
    binning: str                    # fixed | tertiles | categories
    edges: tuple[float, ...]        # the bin edges (fixed, tertiles); () for categories


@dataclass(frozen=True)
class SliceScore:
    """One slice's scores, intervals and gaps to the whole."""

    attribute: str
    attribute_title: str
    name: str
    faces: int
    accuracy: float
    accuracy_ci: tuple[float, float]
    macro_f1: float
    macro_f1_ci: tuple[float, float]
    accuracy_gap: float
    macro_f1_gap: float
    weak: bool
    rank: int | None                # 1 = weakest; None when not weak
    worst_rows: tuple[int, ...]     # predictions.csv rows of its most confident mistakes

    @property
    def label(self) -> str:
        return f"{self.attribute_title}: {self.name}"


@dataclass(frozen=True)
class SliceReport:
    """Every slice of a run, the weak ones ranked, and the settings that made them."""

    n: int
    accuracy: float
    accuracy_ci: tuple[float, float]
    macro_f1: float
    macro_f1_ci: tuple[float, float]
    attributes: tuple[SliceAttribute, ...]
    slices: tuple[SliceScore, ...]
    min_faces: int
    n_resamples: int
    seed: int
    confidence: float

    @property
    def weakest(self) -> tuple[SliceScore, ...]:
        return tuple(sorted((s for s in self.slices if s.weak), key=lambda s: s.rank or 0))

    @property
    def min_slice_accuracy(self) -> float | None:
        """The lowest accuracy of a slice with at least ``min_faces`` faces (the gate's value)."""
        sized = [s.accuracy for s in self.slices if s.faces >= self.min_faces]
        return min(sized) if sized else None

    def to_dict(self) -> dict[str, Any]:
        def score(s: SliceScore) -> dict[str, Any]:
            d = asdict(s)
            for k in ("accuracy", "macro_f1", "accuracy_gap", "macro_f1_gap"):
                d[k] = round_metric(d[k])
            for k in ("accuracy_ci", "macro_f1_ci"):
                d[k] = [round_metric(v) for v in d[k]]
            d["worst_rows"] = list(s.worst_rows)
            return d

        return {
            "n": self.n,
            "overall": {"accuracy": round_metric(self.accuracy),
                        "accuracy_ci": [round_metric(v) for v in self.accuracy_ci],
                        "macro_f1": round_metric(self.macro_f1),
                        "macro_f1_ci": [round_metric(v) for v in self.macro_f1_ci]},
            "min_faces": self.min_faces,
            "min_slice_accuracy": round_metric(self.min_slice_accuracy) if self.min_slice_accuracy is not None
            else None,
            "interval": {"method": "percentile bootstrap (confusion matrix resampled)", "confidence": self.confidence,
                         "n_resamples": self.n_resamples, "seed": self.seed},
            "macro_f1_over": "classes with a true face in the slice",
            "weak_rule": f"at least {self.min_faces} faces and the accuracy interval's upper end below the "
                         "overall accuracy; ranked by accuracy gap",
            "attributes": [asdict(a) | {"edges": [round(e, 3) for e in a.edges]} for a in self.attributes],
            "weakest": [f"{s.attribute}={s.name}" for s in self.weakest],
            "slices": [score(s) for s in self.slices],
        }


def _fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def _bins(key: str, binning: str, names: tuple[str, ...], values: pd.Series
          ) -> tuple[tuple[float, ...], list[tuple[str, np.ndarray]]]:
    """The attribute's edges and its (bin name, mask) pairs, empty bins left out."""
    if binning == "categories":
        if key == "found":
            text = values.astype(str).fillna("")
            cats = [c for c in ("detected", "fallback", "whole") if (text == c).any()]
            return (), [(c, (text == c).to_numpy()) for c in cats]
        x = pd.to_numeric(values, errors="coerce").to_numpy(np.float64)
        if key == "faces_in_image":
            return (), [(names[0], x == 1), (names[1], x > 1)]
        return (), [(names[0], x == 0), (names[1], x == 1)]
    x = pd.to_numeric(values, errors="coerce").to_numpy(np.float64)
    known = np.isfinite(x)
    if not known.any():
        return (), []
    if binning == "fixed":
        edges = FACE_SIZE_EDGES
        labels = [f"under {_fmt(edges[0])} px"] \
            + [f"{_fmt(a)}–{_fmt(b)} px" for a, b in itertools.pairwise(edges)] \
            + [f"{_fmt(edges[-1])} px and over"]
    else:
        edges = tuple(float(e) for e in np.quantile(x[known], [1 / 3, 2 / 3]))
        labels = [f"{names[0]} (under {_fmt(edges[0])})", f"{names[1]} ({_fmt(edges[0])}–{_fmt(edges[1])})",
                  f"{names[2]} ({_fmt(edges[1])} and over)"]
    lows = (-np.inf, *edges)
    highs = (*edges, np.inf)
    return tuple(edges), [(lab, known & (x >= lo) & (x < hi)) for lab, lo, hi in zip(labels, lows, highs, strict=True)]


def _scores(t: np.ndarray, p: np.ndarray, k: int, n_resamples: int, rng: np.random.Generator,
            confidence: float) -> tuple[float, tuple[float, float], float, tuple[float, float]]:
    """Accuracy and macro-F1 (over the classes present in ``t``) with percentile bootstrap intervals,
    drawn as :func:`ferreport.evaluation.metrics.bootstrap_ci` draws them."""
    cells = np.bincount(t * k + p, minlength=k * k).astype(np.float64)
    present = np.bincount(t, minlength=k) > 0
    point = stats_from_cms(cells.reshape(1, k, k))
    stats = resampled_stats(t, p, k, n_resamples, rng)
    alpha = (1.0 - confidence) / 2.0
    q = [100 * alpha, 100 * (1 - alpha)]
    acc_lo, acc_hi = np.percentile(stats["accuracy"], q)
    f1 = stats["f1"][:, present].mean(axis=1)
    f1_lo, f1_hi = np.percentile(f1, q)
    return (float(point["accuracy"][0]), (float(acc_lo), float(acc_hi)),
            float(point["f1"][0, present].mean()), (float(f1_lo), float(f1_hi)))


def compute_slices(predictions: pd.DataFrame, stats: pd.DataFrame, *, labels: tuple[str, ...] = CLASS_NAMES,
                   settings: SliceConfig = SliceConfig(), n_resamples: int = 1000, seed: int = 0,
                   confidence: float = 0.95) -> SliceReport | None:
    """The slices of labelled faces (None when no face has a true label).

    ``predictions``: predictions.csv; ``stats``: its face_stats.csv (same rows, same order).
    """
    if len(stats) != len(predictions):
        raise ValueError(f"face stats have {len(stats)} rows for {len(predictions)} predictions")
    t_all, p_all, _ = predictions_arrays(predictions, labels)
    known = t_all >= 0
    if not known.any():
        return None
    rows = np.flatnonzero(known)
    t, p = t_all[known], p_all[known]
    conf = pd.to_numeric(predictions["confidence"], errors="coerce").to_numpy(np.float64)[known]
    part = stats.iloc[rows].reset_index(drop=True)
    k = len(labels)
    # the whole, drawn with metrics.json's generator: its intervals are metrics.json's (all classes present)
    acc, acc_ci, f1, f1_ci = _scores(t, p, k, n_resamples, np.random.default_rng(seed), confidence)
    attributes: list[SliceAttribute] = []
    raw: list[tuple[str, str, str, np.ndarray]] = []
    for key, title, binning, names in _ATTRIBUTES:
        if key not in part:
            continue
        edges, bins = _bins(key, binning, names, part[key])
        bins = [(name, mask) for name, mask in bins if mask.any()]
        if len(bins) < 2:  # one bin is the whole: nothing to compare
            continue
        attributes.append(SliceAttribute(key, title, binning, edges))
        raw += [(key, title, name, mask) for name, mask in bins]
    scored: list[SliceScore] = []
    for i, (key, title, name, mask) in enumerate(raw, start=1):
        s_acc, s_acc_ci, s_f1, s_f1_ci = _scores(t[mask], p[mask], k, n_resamples,
                                                 np.random.default_rng([seed, i]), confidence)
        n_s = int(mask.sum())
        weak = n_s >= settings.min_faces and s_acc_ci[1] < acc
        wrong = np.flatnonzero(mask & (t != p))
        worst = wrong[np.argsort(-conf[wrong], kind="stable")][: settings.worst_faces] if weak else wrong[:0]
        scored.append(SliceScore(key, title, name, n_s, s_acc, s_acc_ci, s_f1, s_f1_ci, s_acc - acc, s_f1 - f1,
                                 weak, None, tuple(int(rows[j]) for j in worst)))
    order = sorted((i for i, s in enumerate(scored) if s.weak),
                   key=lambda i: (scored[i].accuracy_gap, scored[i].macro_f1_gap))
    for rank, i in enumerate(order, start=1):
        scored[i] = replace(scored[i], rank=rank)
    return SliceReport(int(t.size), acc, acc_ci, f1, f1_ci, tuple(attributes), tuple(scored), settings.min_faces,
                       int(n_resamples), int(seed), float(confidence))


def summary_line(report: SliceReport) -> str:
    """One console line: how many slices are weak, and the weakest."""
    weak = report.weakest
    if not weak:
        return f"slices: none of {len(report.slices)} is weak (see slices.json)"
    w = weak[0]
    return (f"slices: {len(weak)} of {len(report.slices)} weak; weakest {w.label} ({w.faces} faces): accuracy "
            f"{w.accuracy:.3f} [{w.accuracy_ci[0]:.3f}, {w.accuracy_ci[1]:.3f}] against {report.accuracy:.3f} overall")


def write_slices(report: SliceReport | None, run_dir: RunFolder | str | os.PathLike[str]) -> Path | None:
    """The run's slices.json; a stale one is removed when there is nothing to slice."""
    run = RunFolder(run_dir)
    if report is None:
        run.remove(SLICES)
        return None
    return run.write_slices(report.to_dict())


def slices_for_run(run_dir: Path, predictions: pd.DataFrame, stats: pd.DataFrame | None, *,
                   labels: tuple[str, ...] = CLASS_NAMES, settings: SliceConfig = SliceConfig(),
                   n_resamples: int = 1000, seed: int = 0) -> SliceReport | None:
    """Compute and write the run's slices.json (None, and no file, without labels or face stats)."""
    report = compute_slices(predictions, stats, labels=labels, settings=settings, n_resamples=n_resamples,
                            seed=seed) if stats is not None else None
    write_slices(report, run_dir)

    if report is not None and mode() != "off":  # a stage line: --no-progress silences it
        echo(summary_line(report))
    return report


def read_slices(run_dir: RunFolder | str | os.PathLike[str]) -> dict[str, Any] | None:
    """slices.json as written, or None when absent or unreadable."""
    return RunFolder(run_dir).read_slices()
