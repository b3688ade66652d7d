"""Classification metrics, bootstrap confidence intervals and calibration.

Compute only: every function takes arrays and returns plain frozen dataclasses
(drawing lives in :mod:`ferreport.report.plots`, presentation in :mod:`ferreport.report`).
Class ids are ``0..6`` in :data:`ferreport.constants.CLASS_NAMES` order; point
estimates are scikit-learn's (``labels=range(7)``, ``zero_division=0``), so a class
with no support still appears with zeros and counts in macro averages.

``metrics_to_dict`` / :meth:`MetricsBundle.to_dict` give the JSON written to
``metrics.json``: floats rounded to 6 decimals, so equal inputs give byte-identical
files.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    precision_recall_fscore_support,
    roc_auc_score,
)
from sklearn.metrics import (
    confusion_matrix as sk_confusion_matrix,
)
from sklearn.metrics import (
    log_loss as sk_log_loss,
)

from ferreport.constants import CLASS_NAMES
from ferreport.errors import DatasetError

__all__ = [
    "CalibrationMetrics",
    "ClassMetrics",
    "ClassificationMetrics",
    "ConfusedPair",
    "Interval",
    "MetricsBundle",
    "ReliabilityBin",
    "bootstrap_ci",
    "resampled_stats",
    "calibration",
    "ci_key",
    "classification_metrics",
    "confused_pairs",
    "labels_to_ids",
    "metrics_from_predictions",
    "metrics_to_dict",
    "round_metric",
    "stats_from_cms",
]

_DECIMALS = 6


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ClassMetrics:
    name: str
    precision: float
    recall: float
    f1: float
    support: int
    #: One-vs-rest ROC AUC; None without probabilities or when the class has no
    #: positives or no negatives.
    roc_auc: float | None
    #: One-vs-rest average precision; None without probabilities or positives.
    average_precision: float | None


@dataclass(frozen=True)
class ClassificationMetrics:
    n: int
    accuracy: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    weighted_precision: float
    weighted_recall: float
    weighted_f1: float
    per_class: tuple[ClassMetrics, ...]
    #: Rows are true classes, columns predicted classes, both in ``labels`` order.
    confusion_matrix: tuple[tuple[int, ...], ...]
    labels: tuple[str, ...]


@dataclass(frozen=True)
class Interval:
    """A percentile bootstrap interval."""

    low: float
    high: float
    confidence: float
    n_resamples: int
    seed: int

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True)
class ReliabilityBin:
    lower: float
    upper: float
    count: int
    #: Mean correctness / mean confidence of the faces in the bin; None when empty.
    accuracy: float | None
    confidence: float | None


@dataclass(frozen=True)
class CalibrationMetrics:
    n: int
    n_bins: int
    bins: tuple[ReliabilityBin, ...]
    #: Expected calibration error (count-weighted mean |accuracy - confidence|).
    ece: float
    #: Maximum calibration error over non-empty bins.
    mce: float
    #: Multiclass Brier score, sum over classes (range 0..2, scikit-learn's).
    brier: float
    log_loss: float


@dataclass(frozen=True)
class ConfusedPair:
    true: str
    pred: str
    count: int
    #: count / number of faces whose true class is ``true``.
    share_of_true: float


# --------------------------------------------------------------------------- helpers


def _as_ids(y: Any, name: str, k: int) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.mod(arr, 1) == 0):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"{name} must hold integer class ids 0..{k - 1}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and (arr.min() < 0 or arr.max() >= k):
        raise ValueError(f"{name} holds class ids outside 0..{k - 1}")
    return arr


def _check_pair(y_true: Any, y_pred: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    t = _as_ids(y_true, "y_true", k)
    p = _as_ids(y_pred, "y_pred", k)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length ({t.size} vs {p.size})")
    if t.size == 0:
        raise ValueError("no labelled predictions to score")
    return t, p


def _normalise_proba(proba: Any, n: int, k: int) -> np.ndarray:
    p = np.asarray(proba, dtype=np.float64)
    if p.shape != (n, k):
        raise ValueError(f"proba must have shape ({n}, {k}), got {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError("proba holds NaN or infinite values")
    p = np.clip(p, 0.0, 1.0)
    s = p.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(s > 0, p / np.where(s > 0, s, 1.0), 1.0 / k)
    return p


def round_metric(x: float | None) -> float | None:
    """A number as written to JSON: 6 decimals, no "-0.0", None for None, NaN or infinity."""
    if x is None:
        return None
    x = float(x)
    if not math.isfinite(x):
        return None
    v = round(x, _DECIMALS)
    return 0.0 if v == 0 else v  # no "-0.0"


def ci_key(metric: str, class_name: str | None = None) -> str:
    """Key of an interval in :func:`bootstrap_ci`'s result: ``accuracy``, ``f1/angry``..."""
    return metric if class_name is None else f"{metric}/{class_name}"


def labels_to_ids(values: Sequence[Any] | pd.Series, labels: Sequence[str] = CLASS_NAMES,
                  *, column: str = "label") -> np.ndarray:
    """Map class names to ids; empty / missing names become -1 (unknown)."""
    index = {name: i for i, name in enumerate(labels)}
    out = np.full(len(values), -1, dtype=np.int64)
    bad: set[str] = set()
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        s = str(v).strip()
        if not s:
            continue
        j = index.get(s)
        if j is None:
            j = index.get(s.lower())
        if j is None:
            bad.add(s)
        else:
            out[i] = j
    if bad:
        shown = ", ".join(repr(b) for b in sorted(bad)[:5])
        raise DatasetError(
            f"predictions.csv: unknown class name(s) {shown} in {column}; "
            f"expected one of {', '.join(labels)}"
        )
    return out


# --------------------------------------------------------------------------- metrics


def classification_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None = None,
    labels: Sequence[str] = CLASS_NAMES,
) -> ClassificationMetrics:
    """Accuracy, P/R/F1 (per class, macro, weighted), confusion matrix, OvR AUC/AP."""
    labels = tuple(labels)
    k = len(labels)
    t, p = _check_pair(y_true, y_pred, k)
    ids = list(range(k))
    prec, rec, f1, sup = precision_recall_fscore_support(
        t, p, labels=ids, average=None, zero_division=0
    )
    avgs = {}
    for avg in ("macro", "weighted"):
        avgs[avg] = precision_recall_fscore_support(
            t, p, labels=ids, average=avg, zero_division=0
        )[:3]
    cm = sk_confusion_matrix(t, p, labels=ids)

    aucs: list[float | None] = [None] * k
    aps: list[float | None] = [None] * k
    if proba is not None:
        pr = _normalise_proba(proba, t.size, k)
        for c in range(k):
            pos = t == c
            n_pos = int(pos.sum())
            if n_pos == 0:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                aps[c] = float(average_precision_score(pos.astype(int), pr[:, c]))
                if n_pos < t.size:
                    aucs[c] = float(roc_auc_score(pos.astype(int), pr[:, c]))

    per_class = tuple(
        ClassMetrics(
            name=labels[c],
            precision=float(prec[c]),
            recall=float(rec[c]),
            f1=float(f1[c]),
            support=int(sup[c]),
            roc_auc=aucs[c],
            average_precision=aps[c],
        )
        for c in range(k)
    )
    return ClassificationMetrics(
        n=int(t.size),
        accuracy=float(accuracy_score(t, p)),
        macro_precision=float(avgs["macro"][0]),
        macro_recall=float(avgs["macro"][1]),
        macro_f1=float(avgs["macro"][2]),
        weighted_precision=float(avgs["weighted"][0]),
        weighted_recall=float(avgs["weighted"][1]),
        weighted_f1=float(avgs["weighted"][2]),
        per_class=per_class,
        confusion_matrix=tuple(tuple(int(v) for v in row) for row in cm),
        labels=labels,
    )


def stats_from_cms(cms: np.ndarray) -> dict[str, np.ndarray]:
    """Metrics of stacked confusion matrices ``(B, k, k)`` (zero_division=0)."""
    cms = cms.astype(np.float64, copy=False)
    tp = np.diagonal(cms, axis1=1, axis2=2)
    true_n = cms.sum(axis=2)
    pred_n = cms.sum(axis=1)
    n = true_n.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(pred_n > 0, tp / np.where(pred_n > 0, pred_n, 1), 0.0)
        recall = np.where(true_n > 0, tp / np.where(true_n > 0, true_n, 1), 0.0)
        denom = true_n + pred_n
        f1 = np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 0.0)
        weights = true_n / np.where(n > 0, n, 1)[:, None]
    return {
        "accuracy": tp.sum(axis=1) / np.where(n > 0, n, 1),
        "macro_f1": f1.mean(axis=1),
        "weighted_f1": (f1 * weights).sum(axis=1),
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def resampled_stats(t: np.ndarray, p: np.ndarray, k: int, n_resamples: int,
                    rng: np.random.Generator) -> dict[str, np.ndarray]:
    """:func:`stats_from_cms` of ``n_resamples`` bootstrap resamples of the pairs (t, p), stacked.

    Resampling n faces with replacement gives confusion-matrix cells ~ Multinomial(n, cm / n),
    so the matrices are drawn directly, at a cost independent of n.
    """
    n = t.size
    cells = np.bincount(t * k + p, minlength=k * k).astype(np.float64)
    return stats_from_cms(rng.multinomial(n, cells / n, size=n_resamples).reshape(n_resamples, k, k))


def bootstrap_ci(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    labels: Sequence[str] = CLASS_NAMES,
) -> dict[str, Interval]:
    """Percentile bootstrap intervals for accuracy, macro/weighted F1 and per-class P/R/F1.

    Every metric is a function of the confusion matrix alone, and resampling n faces
    with replacement gives cell counts ~ Multinomial(n, cm / n). So the resampled
    confusion matrices are drawn directly (the same distribution as resampling
    rows and bincounting ``true * k + pred``, at a cost independent of n) and all
    metrics are computed from the stacked matrices at once. Deterministic for a seed.

    Keys: ``accuracy``, ``macro_f1``, ``weighted_f1`` and ``precision/<class>``,
    ``recall/<class>``, ``f1/<class>`` (see :func:`ci_key`).
    """
    labels = tuple(labels)
    k = len(labels)
    t, p = _check_pair(y_true, y_pred, k)
    if n_resamples < 1:
        raise ValueError("n_resamples must be at least 1")
    if not 0 < confidence < 1:
        raise ValueError("confidence must lie strictly between 0 and 1")
    stats = resampled_stats(t, p, k, n_resamples, np.random.default_rng(seed))
    alpha = (1.0 - confidence) / 2.0
    q = [100 * alpha, 100 * (1 - alpha)]

    def interval(values: np.ndarray) -> Interval:
        lo, hi = np.percentile(values, q, axis=0)
        return Interval(float(lo), float(hi), float(confidence), int(n_resamples), int(seed))

    out: dict[str, Interval] = {}
    for name in ("accuracy", "macro_f1", "weighted_f1"):
        out[ci_key(name)] = interval(stats[name])
    for metric in ("precision", "recall", "f1"):
        lohi = np.percentile(stats[metric], q, axis=0)
        for c in range(k):
            out[ci_key(metric, labels[c])] = Interval(
                float(lohi[0, c]), float(lohi[1, c]), float(confidence), int(n_resamples), int(seed)
            )
    return out


def calibration(
    y_true: np.ndarray,
    proba: np.ndarray,
    n_bins: int = 15,
    labels: Sequence[str] = CLASS_NAMES,
) -> CalibrationMetrics:
    """Top-label reliability bins (equal width, right-closed), ECE, MCE, Brier, log loss."""
    k = len(tuple(labels))
    t = _as_ids(y_true, "y_true", k)
    if t.size == 0:
        raise ValueError("no labelled predictions to score")
    if n_bins < 1:
        raise ValueError("n_bins must be at least 1")
    p = _normalise_proba(proba, t.size, k)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == t).astype(np.float64)
    idx = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins)
    sum_conf = np.bincount(idx, weights=conf, minlength=n_bins)
    sum_acc = np.bincount(idx, weights=correct, minlength=n_bins)
    bins = []
    ece = 0.0
    mce = 0.0
    for b in range(n_bins):
        c = int(counts[b])
        if c:
            acc_b = float(sum_acc[b] / c)
            conf_b = float(sum_conf[b] / c)
            gap = abs(acc_b - conf_b)
            ece += c / t.size * gap
            mce = max(mce, gap)
        else:
            acc_b = conf_b = None
        bins.append(ReliabilityBin(b / n_bins, (b + 1) / n_bins, c, acc_b, conf_b))
    # Multiclass Brier: mean over faces of the squared error summed over classes. This is
    # scikit-learn's brier_score_loss(labels=...) (>= 1.7, range 0..2), computed here so
    # older scikit-learn versions give the same number.
    onehot = np.zeros_like(p)
    onehot[np.arange(t.size), t] = 1.0
    brier = float(np.mean(np.sum((p - onehot) ** 2, axis=1)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ll = float(sk_log_loss(t, p, labels=list(range(k))))
    return CalibrationMetrics(
        n=int(t.size), n_bins=int(n_bins), bins=tuple(bins),
        ece=float(ece), mce=float(mce), brier=brier, log_loss=ll,
    )


def confused_pairs(
    cm: Sequence[Sequence[int]] | np.ndarray,
    top: int = 6,
    labels: Sequence[str] = CLASS_NAMES,
) -> tuple[ConfusedPair, ...]:
    """The ``top`` largest off-diagonal cells (ties in class order); empty cells skipped."""
    m = np.asarray(cm, dtype=np.int64)
    labels = tuple(labels)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] != len(labels):
        raise ValueError(f"confusion matrix must be {len(labels)}x{len(labels)}")
    row = m.sum(axis=1)
    cells = [
        (int(m[i, j]), i, j)
        for i in range(m.shape[0]) for j in range(m.shape[1])
        if i != j and m[i, j] > 0
    ]
    cells.sort(key=lambda c: (-c[0], c[1], c[2]))
    return tuple(
        ConfusedPair(labels[i], labels[j], c, float(c / row[i]) if row[i] else 0.0)
        for c, i, j in cells[: max(0, top)]
    )


# --------------------------------------------------------------------------- JSON


def _ci_to_dict(ci: Mapping[str, Interval], labels: Sequence[str]) -> dict[str, Any]:
    any_iv = next(iter(ci.values()), None)
    out: dict[str, Any] = {
        "method": "percentile bootstrap",
        "confidence": round_metric(any_iv.confidence) if any_iv else None,
        "n_resamples": any_iv.n_resamples if any_iv else None,
        "seed": any_iv.seed if any_iv else None,
    }
    for name in ("accuracy", "macro_f1", "weighted_f1"):
        if name in ci:
            out[name] = [round_metric(ci[name].low), round_metric(ci[name].high)]
    per: dict[str, Any] = {}
    for cls in labels:
        entry = {}
        for metric in ("precision", "recall", "f1"):
            iv = ci.get(ci_key(metric, cls))
            if iv is not None:
                entry[metric] = [round_metric(iv.low), round_metric(iv.high)]
        if entry:
            per[cls] = entry
    out["per_class"] = per
    return out


def _calibration_to_dict(cal: CalibrationMetrics) -> dict[str, Any]:
    return {
        "n": cal.n,
        "n_bins": cal.n_bins,
        "ece": round_metric(cal.ece),
        "mce": round_metric(cal.mce),
        "brier": round_metric(cal.brier),
        "log_loss": round_metric(cal.log_loss),
        "bins": [
            {"lower": round_metric(b.lower), "upper": round_metric(b.upper), "count": b.count,
             "accuracy": round_metric(b.accuracy), "confidence": round_metric(b.confidence)}
            for b in cal.bins
        ],
    }


def metrics_to_dict(
    m: ClassificationMetrics,
    ci: Mapping[str, Interval] | None = None,
    calibration: CalibrationMetrics | None = None,  # noqa: A002 - mirrors the function name
) -> dict[str, Any]:
    """JSON-ready dict for ``metrics.json`` (floats rounded to 6 decimals)."""
    out: dict[str, Any] = {
        "n": m.n,
        "accuracy": round_metric(m.accuracy),
        "macro_f1": round_metric(m.macro_f1),
        "weighted_f1": round_metric(m.weighted_f1),
        "macro_precision": round_metric(m.macro_precision),
        "macro_recall": round_metric(m.macro_recall),
        "weighted_precision": round_metric(m.weighted_precision),
        "weighted_recall": round_metric(m.weighted_recall),
        "per_class": {
            c.name: {
                "precision": round_metric(c.precision),
                "recall": round_metric(c.recall),
                "f1": round_metric(c.f1),
                "support": c.support,
                "roc_auc": round_metric(c.roc_auc),
                "average_precision": round_metric(c.average_precision),
            }
            for c in m.per_class
        },
        "confusion_matrix": [list(row) for row in m.confusion_matrix],
        "labels": list(m.labels),
    }
    if ci is not None:
        out["ci"] = _ci_to_dict(ci, m.labels)
    if calibration is not None:
        out["calibration"] = _calibration_to_dict(calibration)
    return out


# --------------------------------------------------------------------------- predictions.csv


@dataclass(frozen=True)
class MetricsBundle:
    """Everything computed from one predictions.csv frame.

    ``classification``/``ci``/``calibration`` are None when no row has a true label
    (folder audits); ``prediction_counts`` covers every row.
    """

    classification: ClassificationMetrics | None
    ci: Mapping[str, Interval] | None
    calibration: CalibrationMetrics | None
    n_rows: int
    n_unlabelled: int
    prediction_counts: Mapping[str, int]

    def to_dict(self) -> dict[str, Any]:
        if self.classification is not None:
            out = metrics_to_dict(self.classification, self.ci, self.calibration)
        else:
            out = {"n": 0, "labels": list(self.prediction_counts)}
        out["n_rows"] = self.n_rows
        out["n_unlabelled"] = self.n_unlabelled
        out["prediction_counts"] = dict(self.prediction_counts)
        return out

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> MetricsBundle:
        """Back from metrics.json (:meth:`to_dict`), so a report shows the stored numbers, never new ones.

        Raises KeyError, TypeError or ValueError when ``doc`` is not a metrics.json of this form.
        """
        counts = {str(k): int(v) for k, v in doc["prediction_counts"].items()}
        n_rows, n_unlabelled = int(doc["n_rows"]), int(doc["n_unlabelled"])
        if not doc.get("n"):
            return cls(None, None, None, n_rows, n_unlabelled, counts)
        labels = tuple(str(c) for c in doc["labels"])
        per = doc["per_class"]
        classes = tuple(ClassMetrics(c, float(per[c]["precision"]), float(per[c]["recall"]), float(per[c]["f1"]),
                                     int(per[c]["support"]), _optional_float(per[c]["roc_auc"]),
                                     _optional_float(per[c]["average_precision"])) for c in labels)
        m = ClassificationMetrics(int(doc["n"]), *(float(doc[k]) for k in (
            "accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_precision", "weighted_recall",
            "weighted_f1")), per_class=classes,
            confusion_matrix=tuple(tuple(int(v) for v in row) for row in doc["confusion_matrix"]), labels=labels)
        return cls(m, _ci_from_dict(doc.get("ci")), _calibration_from_dict(doc.get("calibration")), n_rows,
                   n_unlabelled, counts)


def _optional_float(x: Any) -> float | None:
    return None if x is None else float(x)


def _ci_from_dict(doc: Mapping[str, Any] | None) -> dict[str, Interval] | None:
    """The intervals of metrics.json's ``ci`` (:func:`_ci_to_dict`), keyed as :func:`bootstrap_ci` keys them."""
    if doc is None:
        return None
    conf, n_res, seed = float(doc["confidence"]), int(doc["n_resamples"]), int(doc["seed"])
    out = {name: Interval(float(doc[name][0]), float(doc[name][1]), conf, n_res, seed)
           for name in ("accuracy", "macro_f1", "weighted_f1") if name in doc}
    for cls_name, entry in doc.get("per_class", {}).items():
        for metric, (low, high) in entry.items():
            out[ci_key(metric, cls_name)] = Interval(float(low), float(high), conf, n_res, seed)
    return out


def _calibration_from_dict(doc: Mapping[str, Any] | None) -> CalibrationMetrics | None:
    if doc is None:
        return None
    bins = tuple(ReliabilityBin(float(b["lower"]), float(b["upper"]), int(b["count"]), _optional_float(b["accuracy"]),
                                _optional_float(b["confidence"])) for b in doc["bins"])
    nan = float("nan")  # written as null when not finite
    return CalibrationMetrics(int(doc["n"]), int(doc["n_bins"]), bins,
                              *(nan if doc[k] is None else float(doc[k]) for k in ("ece", "mce", "brier", "log_loss")))


def predictions_arrays(
    df: pd.DataFrame, labels: Sequence[str] = CLASS_NAMES
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(true_ids with -1 for unknown, pred_ids, proba)`` from a predictions.csv frame."""
    labels = tuple(labels)
    missing = [c for c in ("true_label", "pred_label") if c not in df.columns]
    if missing:
        raise DatasetError(f"predictions.csv: missing column(s) {', '.join(missing)}")
    t = labels_to_ids(df["true_label"].tolist(), labels, column="true_label")
    p = labels_to_ids(df["pred_label"].tolist(), labels, column="pred_label")
    if np.any(p < 0):
        bad = np.flatnonzero(p < 0)
        more = f" (and {bad.size - 1} more rows)" if bad.size > 1 else ""
        raise DatasetError(f"predictions.csv row {int(bad[0]) + 1}: empty pred_label{more}; the file is truncated or "
                           "was edited: evaluate again to rewrite it")
    cols = [f"p_{name}" for name in labels]
    if all(c in df.columns for c in cols):
        proba = df[cols].to_numpy(dtype=np.float64)
    else:
        proba = np.eye(len(labels))[p]
    return t, p, proba


def metrics_from_predictions(
    df: pd.DataFrame,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    n_bins: int = 15,
    confidence: float = 0.95,
    labels: Sequence[str] = CLASS_NAMES,
) -> MetricsBundle:
    """Compute metrics, intervals and calibration from a predictions.csv frame.

    Rows with an empty ``true_label`` are left out of the scores (and counted).
    """
    labels = tuple(labels)
    t, p, proba = predictions_arrays(df, labels)
    counts = np.bincount(p, minlength=len(labels))
    pred_counts = {labels[i]: int(counts[i]) for i in range(len(labels))}
    known = t >= 0
    n_lab = int(known.sum())
    has_proba = all(f"p_{name}" in df.columns for name in labels)
    if n_lab == 0:
        return MetricsBundle(None, None, None, int(len(df)), int(len(df)), pred_counts)
    tk, pk, prk = t[known], p[known], proba[known]
    cm = classification_metrics(tk, pk, prk if has_proba else None, labels)
    ci = bootstrap_ci(tk, pk, n_resamples=n_resamples, seed=seed, confidence=confidence, labels=labels)
    cal = calibration(tk, prk, n_bins=n_bins, labels=labels) if has_proba else None
    return MetricsBundle(cm, ci, cal, int(len(df)), int(len(df) - n_lab), pred_counts)
