"""Slices (ferreport.evaluation.slices, ferreport.evaluation.facestats): a slice built to be worse is found and
ranked first."""

from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pandas as pd
import pytest

from ferreport.config import SliceConfig
from ferreport.constants import CLASS_NAMES
from ferreport.evaluation.facestats import face_stats_frame, image_measures, source_attributes
from ferreport.evaluation.gates import evaluate_gates, gate_inputs, parse_gate_specs
from ferreport.evaluation.slices import compute_slices, read_slices, write_slices
from ferreport.runs import folder as artifacts
from tests.model_zoo import faces as zoo_faces


@pytest.fixture(autouse=True)
def _progress_mode_restored():
    """The CLI calls here pass --no-progress, which sets a process-wide mode: give later tests the default back."""
    from ferreport import progress

    yield
    progress.configure(None)


def _frame(n: int, seed: int, wrong_share) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``n`` labelled predictions and face stats; ``wrong_share(stats)`` -> each face's chance of a mistake."""
    rng = np.random.default_rng(seed)
    stats = pd.DataFrame({
        "box_side": rng.uniform(20, 300, n), "box_confidence": rng.uniform(0, 100, n),
        "clipped": rng.integers(0, 2, n).astype(float), "faces_in_image": rng.integers(1, 4, n).astype(float),
        "grayscale": rng.integers(0, 2, n), "brightness": rng.uniform(0, 255, n),
        "contrast": rng.uniform(10, 80, n), "blur": rng.uniform(50, 900, n), "found": ""})
    true = rng.integers(0, 7, n)
    wrong = rng.random(n) < wrong_share(stats)
    pred = np.where(wrong, (true + rng.integers(1, 7, n)) % 7, true)
    names = np.asarray(CLASS_NAMES)
    proba = np.full((n, 7), 0.05)
    proba[np.arange(n), pred] = 0.7
    frame = pd.DataFrame({"source": [f"img{i}.jpg" for i in range(n)], "face_id": 0, "true_label": names[true],
                          "pred_label": names[pred], "confidence": 0.7})
    for i, c in enumerate(artifacts.PROBA_COLUMNS):
        frame[c] = proba[:, i]
    return frame, stats


def test_a_slice_built_worse_is_found_and_ranked_first():
    # dark faces (the lowest third of brightness) err 70% of the time, small faces 40%, the rest 15%
    frame, stats = _frame(1500, 0, lambda s: np.where(s["brightness"] < 85, 0.7,
                                                      np.where(s["box_side"] < 48, 0.4, 0.15)))
    report = compute_slices(frame, stats, n_resamples=300, seed=0)
    weakest = report.weakest
    assert weakest[0].attribute == "brightness" and weakest[0].name.startswith("dark")
    assert weakest[0].rank == 1
    assert weakest[0].accuracy_ci[1] < report.accuracy
    assert any(s.attribute == "box_side" and s.name == "under 48 px" for s in weakest)
    # slices with no built-in difference are not called weak
    assert not any(s.attribute in ("grayscale", "clipped", "faces_in_image") and s.weak for s in report.slices)
    # worst faces: mistakes of the slice, most confident first
    dark = np.flatnonzero(stats["brightness"].to_numpy() < report.attributes[2].edges[0])
    assert set(weakest[0].worst_rows) <= set(dark)
    assert all(frame["true_label"][r] != frame["pred_label"][r] for r in weakest[0].worst_rows)
    assert report.min_slice_accuracy == min(s.accuracy for s in report.slices if s.faces >= report.min_faces)


def test_no_weak_slice_when_errors_are_even():
    frame, stats = _frame(1200, 1, lambda s: np.full(len(s), 0.3))
    report = compute_slices(frame, stats, n_resamples=300, seed=0)
    assert len(report.weakest) <= 1  # at most a chance finding at 95%


def test_small_slices_are_never_weak_and_not_gated():
    frame, stats = _frame(400, 2, lambda s: np.where(s["box_side"] < 30, 0.95, 0.1))
    settings = SliceConfig(min_faces=60)
    report = compute_slices(frame, stats, settings=settings, n_resamples=200, seed=0)
    small = [s for s in report.slices if s.faces < 60]
    assert small and not any(s.weak for s in small)
    assert report.min_slice_accuracy == min(s.accuracy for s in report.slices if s.faces >= 60)


def test_intervals_are_seeded_and_recorded(tmp_path):
    frame, stats = _frame(500, 3, lambda s: np.full(len(s), 0.3))
    a = compute_slices(frame, stats, n_resamples=200, seed=5).to_dict()
    b = compute_slices(frame, stats, n_resamples=200, seed=5).to_dict()
    assert a == b and a["interval"]["seed"] == 5 and a["interval"]["n_resamples"] == 200
    write_slices(compute_slices(frame, stats, n_resamples=200, seed=5), tmp_path)
    assert read_slices(tmp_path) == json.loads(json.dumps(a))
    assert not list(tmp_path.glob(".*part*"))  # written atomically: no temporary left


def test_the_whole_has_the_intervals_of_metrics_json():
    """The overall row a slice is measured against carries the same intervals as metrics.json (same draws)."""
    from ferreport.evaluation.metrics import bootstrap_ci

    frame, stats = _frame(600, 4, lambda s: np.full(len(s), 0.4))
    report = compute_slices(frame, stats, n_resamples=300, seed=7)
    names = list(CLASS_NAMES)
    ci = bootstrap_ci(frame["true_label"].map(names.index).to_numpy(), frame["pred_label"].map(names.index).to_numpy(),
                      n_resamples=300, seed=7)
    assert report.accuracy_ci == pytest.approx((ci["accuracy"].low, ci["accuracy"].high), abs=1e-12)
    assert report.macro_f1_ci == pytest.approx((ci["macro_f1"].low, ci["macro_f1"].high), abs=1e-12)


def test_unlabelled_faces_have_no_slices_and_no_file(tmp_path):
    frame, stats = _frame(100, 4, lambda s: np.full(len(s), 0.3))
    frame["true_label"] = ""
    assert compute_slices(frame, stats) is None
    (tmp_path / artifacts.SLICES).write_text("{}")
    write_slices(None, tmp_path)
    assert not (tmp_path / artifacts.SLICES).exists()


def test_min_slice_accuracy_gate(tmp_path):
    frame, stats = _frame(900, 5, lambda s: np.where(s["brightness"] < 85, 0.8, 0.1))
    report = compute_slices(frame, stats, n_resamples=200, seed=0)
    write_slices(report, tmp_path)
    specs = parse_gate_specs("fail_under", ["min_slice_accuracy=0.3"])
    (result,) = evaluate_gates(gate_inputs(tmp_path, {"n": 900}), specs)
    assert result.actual == pytest.approx(report.min_slice_accuracy, abs=1e-6) and not result.passed
    (result,) = evaluate_gates(gate_inputs(tmp_path, {"n": 900}), parse_gate_specs("fail_under",
                                                                                  ["min_slice_accuracy=0.1"]))
    assert result.passed


def test_image_measures_follow_what_was_done_to_the_face():
    faces = zoo_faces(20, seed=1)
    base = image_measures(faces)
    dark = image_measures((faces * 0.6).astype(np.uint8))
    blurred = image_measures(np.stack([cv2.GaussianBlur(f, (0, 0), 2.0) for f in faces]))
    gray = np.repeat(np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in faces])[..., None], 3, axis=3)
    assert (dark["brightness"] < base["brightness"]).all() and (dark["contrast"] < base["contrast"]).all()
    assert (blurred["blur"] < base["blur"]).all()
    assert not base["grayscale"].any() and image_measures(gray)["grayscale"].all()
    # a grayscale photo saved as a colour JPEG (chroma noise) still counts as grayscale
    ok, buf = cv2.imencode(".jpg", gray[0][..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
    jpeg = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    assert image_measures(jpeg[None])["grayscale"].all()


def test_source_attributes_from_the_index():
    index = pd.DataFrame({"source": ["a.jpg", "a.jpg", "b.jpg", "c.jpg"], "top": [0, 10, 5, 0],
                          "left": [0, 10, 5, 0], "right": [50, 200, 45, -1], "bottom": [40, 300, 105, -1],
                          "confidence": [10.0, 50.0, 70.0, np.nan], "clipped": [False, True, False, False]})
    attrs = source_attributes(index)
    assert attrs["box_side"].tolist()[:3] == [40.0, 190.0, 40.0] and np.isnan(attrs["box_side"][3])
    assert attrs["faces_in_image"].tolist() == [2.0, 2.0, 1.0, 1.0]
    assert attrs["clipped"].tolist() == [0.0, 1.0, 0.0, 0.0]
    frame = face_stats_frame(zoo_faces(4), attrs)
    assert list(frame["box_confidence"][:3]) == [10.0, 50.0, 70.0]


@pytest.mark.slow
def test_evaluate_writes_slices_and_the_report_shows_them(tmp_path, sample_dataset):
    """ferreport evaluate on ExpW-layout data: face_stats.csv with the box attributes, slices.json, and the
    report's section (HTML and PDF) with slices.json's numbers."""
    from click.testing import CliRunner
    from pypdf import PdfReader

    from ferreport.cli.main import main
    from tests.model_zoo import keras_model

    model = keras_model(tmp_path)
    out = tmp_path / "runs" / "eval"
    r = CliRunner().invoke(main, ["evaluate", "--model", str(model), "--data", str(sample_dataset), "--out", str(out),
                                  "--no-progress", "--fail-under", "min_slice_accuracy=0"])
    assert r.exit_code == 0, r.output
    stats = pd.read_csv(out / artifacts.FACE_STATS)
    preds = pd.read_csv(out / artifacts.PREDICTIONS)
    assert len(stats) == len(preds) and stats["box_side"].notna().all() and stats["box_confidence"].notna().all()
    doc = json.loads((out / artifacts.SLICES).read_text())
    assert "box_side" in {a["key"] for a in doc["attributes"]}
    assert (out / artifacts.EMBEDDINGS).is_file()
    gates = json.loads((out / artifacts.GATES).read_text())
    assert gates["gates"][0]["actual"] == doc["min_slice_accuracy"]
    html = (out / artifacts.REPORT_HTML).read_text()
    assert "Where the model errs" in html
    for s in doc["slices"]:
        assert f"{s['attribute_title']}: {s['name']}" in html
        assert f"{100 * s['accuracy']:.1f}%" in html
    text = " ".join(" ".join(p.extract_text() or "" for p in PdfReader(str(out / artifacts.REPORT_PDF)).pages).split())
    assert "Where the model errs" in text and "Every slice" in text


def test_labelled_audit_finds_the_worse_slice_and_shows_its_mistakes(tmp_path):
    """A labelled folder whose dark half is labelled against the model: the dark slice is weak, first, and its
    grid in the audit report shows only mistakes (faces cropped again from their files)."""
    from click.testing import CliRunner

    from ferreport.cli.main import main
    from ferreport.models.adapters import open_model
    from ferreport.models.prediction import predict_proba
    from tests.model_zoo import keras_model

    model = keras_model(tmp_path)
    faces = zoo_faces(90, seed=7)
    faces[:45] = (faces[:45] * 0.35).astype(np.uint8)
    pred = predict_proba(open_model(model, {}), faces).argmax(axis=1)
    labels = np.where(np.arange(90) < 45, (pred + 1) % 7, pred)  # dark faces: always wrong; the rest: right
    folder = tmp_path / "photos"
    for i, (face, lab) in enumerate(zip(faces, labels, strict=True)):
        path = folder / CLASS_NAMES[lab] / f"face_{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    out = tmp_path / "runs" / "audit"
    r = CliRunner().invoke(main, ["predict", str(folder), "--model", str(model), "--faces", "whole", "--out",
                                  str(out), "--format", "html", "--workers", "1", "--no-progress"])
    assert r.exit_code == 0, r.output
    doc = json.loads((out / artifacts.SLICES).read_text())
    first = next(s for s in doc["slices"] if s["rank"] == 1)
    assert first["attribute"] == "brightness" and first["name"].startswith("dark") and first["accuracy"] == 0.0
    html = (out / artifacts.REPORT_HTML).read_text()
    card = re.split(r'<div class="card|<h3>Every slice', html.split("Worst faces of weak slice 1:", 1)[1])[0]
    assert card.count('class="thumb bad"') == len(first["worst_rows"]) > 0
    assert 'class="thumb ok"' not in card
