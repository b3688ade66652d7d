"""Figures: built from metric dataclasses, encoded as self-contained data URIs."""

from __future__ import annotations

import base64

import cv2
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from ferreport.constants import CLASS_NAMES
from ferreport.evaluation.metrics import bootstrap_ci, calibration, classification_metrics
from ferreport.report.plots import (
    class_distribution_figure,
    confusion_matrix_figure,
    figure_to_data_uri,
    per_class_figure,
    reliability_figure,
    thumbnail_data_uri,
    training_curves_figure,
)

K = len(CLASS_NAMES)


@pytest.fixture(scope="module")
def scored():
    rng = np.random.default_rng(0)
    t = rng.integers(0, K, 400)
    p = np.where(rng.random(400) < 0.6, t, rng.integers(0, K, 400))
    proba = rng.dirichlet(np.ones(K), 400)
    proba[np.arange(400), p] += 1.0
    proba /= proba.sum(axis=1, keepdims=True)
    return classification_metrics(t, p, proba), bootstrap_ci(t, p, n_resamples=100), calibration(t, proba)


def _svg(uri: str) -> str:
    prefix = "data:image/svg+xml;base64,"
    assert uri.startswith(prefix)
    return base64.b64decode(uri[len(prefix):]).decode("utf-8")


def test_figures_are_figures_and_encode(scored):
    m, ci, cal = scored
    hist = pd.DataFrame({"epoch": [1, 2, 3], "loss": [1.5, 1.2, 1.1], "accuracy": [0.4, 0.5, 0.55],
                         "val_loss": [1.4, 1.3, 1.35], "val_accuracy": [0.45, 0.5, 0.49]})
    figs = [
        training_curves_figure(hist, best_epoch=2),
        training_curves_figure(hist[["epoch", "loss"]], best_epoch=None),
        confusion_matrix_figure(m.confusion_matrix, CLASS_NAMES, normalize=False),
        confusion_matrix_figure(m.confusion_matrix, CLASS_NAMES, normalize=True),
        per_class_figure(m, ci),
        per_class_figure(m),
        reliability_figure(cal),
        class_distribution_figure({"train": {"happy": 10, "sad": 3}, "test": {"happy": 4}}),
        class_distribution_figure({}),
    ]
    for fig in figs:
        assert isinstance(fig, Figure)
        svg = _svg(figure_to_data_uri(fig))
        assert svg.startswith("<?xml") and "<svg" in svg
        assert "DOCTYPE" not in svg and "<script" not in svg
        assert not fig.axes  # released after encoding


def test_svg_encoding_is_deterministic(scored):
    m, _, _ = scored
    a = figure_to_data_uri(confusion_matrix_figure(m.confusion_matrix, normalize=True))
    b = figure_to_data_uri(confusion_matrix_figure(m.confusion_matrix, normalize=True))
    assert a == b


def test_png_encoding(scored):
    m, _, _ = scored
    uri = figure_to_data_uri(per_class_figure(m), fmt="png", dpi=80)
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError):
        figure_to_data_uri(per_class_figure(m), fmt="gif")


def test_confusion_matrix_annotations_follow_rows(scored):
    cm = np.zeros((K, K), int)
    cm[0, 0], cm[0, 1] = 3, 1
    fig = confusion_matrix_figure(cm, normalize=True)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "75%" in texts and "25%" in texts
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == list(CLASS_NAMES)
    with pytest.raises(ValueError):
        confusion_matrix_figure(np.zeros((3, 3)))


def test_thumbnail_is_an_upscaled_jpeg_in_rgb_order():
    face = np.zeros((64, 64, 3), np.uint8)
    face[..., 0] = 220  # red in RGB
    uri = thumbnail_data_uri(face, size=112, quality=80)
    assert uri.startswith("data:image/jpeg;base64,")
    img = cv2.imdecode(np.frombuffer(base64.b64decode(uri.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (112, 112, 3)
    b, g, r = img[56, 56].astype(int)
    assert r > 180 and b < 50 and g < 50
    assert thumbnail_data_uri(np.zeros((64, 64), np.uint8)).startswith("data:image/jpeg")
    with pytest.raises(ValueError):
        thumbnail_data_uri(np.zeros((64, 64, 3), np.float32))
