"""Metrics equal scikit-learn's; bootstrap intervals and calibration behave."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)

from ferreport.constants import CLASS_NAMES
from ferreport.errors import DatasetError
from ferreport.evaluation.metrics import (
    bootstrap_ci,
    calibration,
    ci_key,
    classification_metrics,
    confused_pairs,
    metrics_from_predictions,
    metrics_to_dict,
)

K = len(CLASS_NAMES)
LABELS = list(range(K))


def _random(n: int, seed: int, *, drop_class: int | None = None, acc: float = 0.6):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, K, n)
    if drop_class is not None:
        t[t == drop_class] = (drop_class + 1) % K
    p = np.where(rng.random(n) < acc, t, rng.integers(0, K, n))
    logits = rng.normal(size=(n, K))
    logits[np.arange(n), p] += 2.0
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return t, p, proba


@pytest.mark.parametrize("seed,drop", [(0, None), (1, 2), (2, 5)])
def test_classification_metrics_equal_sklearn(seed, drop):
    t, p, proba = _random(500, seed, drop_class=drop)
    m = classification_metrics(t, p, proba)
    assert m.n == 500
    assert m.accuracy == pytest.approx(accuracy_score(t, p), abs=1e-12)
    assert m.macro_f1 == pytest.approx(f1_score(t, p, labels=LABELS, average="macro", zero_division=0), abs=1e-12)
    assert m.weighted_f1 == pytest.approx(
        f1_score(t, p, labels=LABELS, average="weighted", zero_division=0), abs=1e-12)
    mp, mr, _, _ = precision_recall_fscore_support(t, p, labels=LABELS, average="macro", zero_division=0)
    assert (m.macro_precision, m.macro_recall) == pytest.approx((mp, mr), abs=1e-12)
    prec, rec, f1, sup = precision_recall_fscore_support(t, p, labels=LABELS, zero_division=0)
    for c, cm in enumerate(m.per_class):
        assert cm.name == CLASS_NAMES[c]
        assert (cm.precision, cm.recall, cm.f1, cm.support) == pytest.approx((prec[c], rec[c], f1[c], sup[c]))
        pos = (t == c).astype(int)
        if pos.sum() == 0:
            assert cm.support == 0 and cm.roc_auc is None and cm.average_precision is None
            assert cm.recall == 0.0 and cm.f1 == 0.0
        else:
            assert cm.roc_auc == pytest.approx(roc_auc_score(pos, proba[:, c]), abs=1e-12)
            assert cm.average_precision == pytest.approx(average_precision_score(pos, proba[:, c]), abs=1e-12)
    assert np.array_equal(np.array(m.confusion_matrix), confusion_matrix(t, p, labels=LABELS))
    assert m.labels == CLASS_NAMES


def test_metrics_without_probabilities_leave_auc_empty():
    t, p, _ = _random(100, 3)
    m = classification_metrics(t, p)
    assert all(c.roc_auc is None and c.average_precision is None for c in m.per_class)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError):
        classification_metrics(np.array([0, 1]), np.array([0]))
    with pytest.raises(ValueError):
        classification_metrics(np.array([0, 9]), np.array([0, 1]))
    with pytest.raises(ValueError):
        classification_metrics(np.array([], dtype=int), np.array([], dtype=int))


def test_bootstrap_ci_contains_estimate_and_is_deterministic():
    t, p, _ = _random(800, 4)
    m = classification_metrics(t, p)
    ci = bootstrap_ci(t, p, n_resamples=500, seed=7)
    assert ci == bootstrap_ci(t, p, n_resamples=500, seed=7)
    assert ci != bootstrap_ci(t, p, n_resamples=500, seed=8)
    assert ci["accuracy"].contains(m.accuracy)
    assert ci["macro_f1"].contains(m.macro_f1)
    assert ci["weighted_f1"].contains(m.weighted_f1)
    for c in m.per_class:
        for metric in ("precision", "recall", "f1"):
            iv = ci[ci_key(metric, c.name)]
            assert iv.low <= iv.high
            assert iv.low - 1e-9 <= getattr(c, metric) <= iv.high + 1e-9
    assert ci["accuracy"].n_resamples == 500 and ci["accuracy"].seed == 7 and ci["accuracy"].confidence == 0.95
    assert len(ci) == 3 + 3 * K


def test_bootstrap_ci_narrows_with_more_data():
    small = bootstrap_ci(*_random(200, 5)[:2], n_resamples=400)
    large = bootstrap_ci(*_random(5000, 5)[:2], n_resamples=400)
    for key in ("accuracy", "macro_f1", "weighted_f1"):
        assert large[key].high - large[key].low < small[key].high - small[key].low


def test_bootstrap_matches_row_resampling_in_distribution():
    """Multinomial cell draws give the same intervals as resampling rows (within noise)."""
    t, p, _ = _random(1000, 6)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, t.size, size=(2000, t.size))
    accs = (t[idx] == p[idx]).mean(axis=1)
    lo, hi = np.percentile(accs, [2.5, 97.5])
    iv = bootstrap_ci(t, p, n_resamples=2000, seed=1)["accuracy"]
    assert iv.low == pytest.approx(lo, abs=0.006) and iv.high == pytest.approx(hi, abs=0.006)


def test_bootstrap_is_fast_for_a_full_test_split():
    t, p, _ = _random(13_800, 7)
    start = time.perf_counter()
    bootstrap_ci(t, p, n_resamples=1000, seed=0)
    assert time.perf_counter() - start < 2.0


def test_calibration_of_calibrated_data_is_near_zero():
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.full(K, 0.6), size=5000)
    # labels drawn from the stated probabilities: calibrated by construction
    t = (rng.random((5000, 1)) > np.cumsum(proba, axis=1)).sum(axis=1).clip(0, K - 1)
    cal = calibration(t, proba, n_bins=10)
    assert cal.ece < 0.03
    assert sum(b.count for b in cal.bins) == 5000
    assert cal.brier == pytest.approx(brier_score_loss(t, proba, labels=LABELS), abs=1e-12)
    assert cal.log_loss == pytest.approx(log_loss(t, proba, labels=LABELS), abs=1e-12)


def test_calibration_of_overconfident_model_and_bins():
    rng = np.random.default_rng(1)
    n = 2000
    t = rng.integers(0, K, n)
    proba = np.full((n, K), 0.01 / (K - 1))
    proba[np.arange(n), rng.integers(0, K, n)] = 0.99  # 99% sure, right 1 time in 7
    cal = calibration(t, proba, n_bins=15)
    assert cal.ece > 0.7 and cal.mce >= cal.ece
    full = [b for b in cal.bins if b.count]
    assert len(full) == 1 and full[0].upper == 1.0 and full[0].confidence == pytest.approx(0.99)
    assert all(b.accuracy is None for b in cal.bins if not b.count)
    # probabilities with a zero entry: log loss stays finite
    hard = np.eye(K)[(t + 1) % K]
    assert np.isfinite(calibration(t, hard).log_loss)


def test_confused_pairs_orders_by_count():
    cm = np.zeros((K, K), int)
    np.fill_diagonal(cm, 50)
    cm[4, 6], cm[6, 4], cm[2, 5], cm[0, 1] = 30, 12, 12, 1
    pairs = confused_pairs(cm, top=3)
    assert [(x.true, x.pred, x.count) for x in pairs] == [("sad", "neutral", 30), ("fear", "surprise", 12),
                                                           ("neutral", "sad", 12)]
    assert pairs[0].share_of_true == pytest.approx(30 / 80)
    assert len(confused_pairs(np.eye(K, dtype=int) * 5)) == 0


def _frame(t, p, proba, unknown: int = 0) -> pd.DataFrame:
    names = np.asarray(CLASS_NAMES, dtype=object)
    true = names[t].astype(object)
    true[:unknown] = ""
    df = pd.DataFrame({"source": "x.jpg", "face_id": "0", "true_label": true, "pred_label": names[p],
                       "confidence": proba.max(axis=1)})
    for j, name in enumerate(CLASS_NAMES):
        df[f"p_{name}"] = proba[:, j]
    return df


def test_metrics_from_predictions_and_json_are_deterministic():
    t, p, proba = _random(300, 8)
    p = proba.argmax(axis=1)
    df = _frame(t, p, proba, unknown=20)
    b1 = metrics_from_predictions(df, n_resamples=200, seed=1)
    b2 = metrics_from_predictions(df.copy(), n_resamples=200, seed=1)
    assert b1.n_unlabelled == 20 and b1.n_rows == 300 and b1.classification.n == 280
    assert b1.classification.accuracy == pytest.approx(accuracy_score(t[20:], p[20:]))
    d = b1.to_dict()
    s1 = json.dumps(d, sort_keys=True, allow_nan=False)
    assert s1 == json.dumps(b2.to_dict(), sort_keys=True, allow_nan=False)
    for key in ("n", "accuracy", "macro_f1", "weighted_f1", "per_class", "confusion_matrix", "labels",
                "ci", "calibration"):
        assert key in d
    assert list(d["per_class"]) == list(CLASS_NAMES)
    assert set(d["per_class"]["angry"]) == {"precision", "recall", "f1", "support", "roc_auc", "average_precision"}
    assert d["ci"]["n_resamples"] == 200 and len(d["ci"]["accuracy"]) == 2
    assert sum(d["prediction_counts"].values()) == 300
    assert d["accuracy"] == round(d["accuracy"], 6)


def test_metrics_to_dict_minimal():
    t, p, _ = _random(50, 9)
    d = metrics_to_dict(classification_metrics(t, p))
    assert "ci" not in d and "calibration" not in d
    assert d["labels"] == list(CLASS_NAMES) and len(d["confusion_matrix"]) == K


def test_unlabelled_frame_and_unknown_names():
    t, p, proba = _random(30, 10)
    df = _frame(t, proba.argmax(axis=1), proba, unknown=30)
    b = metrics_from_predictions(df)
    assert b.classification is None and b.n_unlabelled == 30 and b.to_dict()["n"] == 0
    df.loc[0, "pred_label"] = "contempt"
    with pytest.raises(DatasetError):
        metrics_from_predictions(df)
