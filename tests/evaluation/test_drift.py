"""Drift (ferreport.evaluation.drift): identical folders do not fire, a darkened copy does; drift.json, gates,
report."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from ferreport.errors import UsageError
from ferreport.evaluation.drift import drift_tests, holm, population_stability_index, sample_from_arrays
from ferreport.evaluation.facestats import face_stats_frame
from ferreport.evaluation.gates import evaluate_gates, gate_inputs, parse_gate_specs
from ferreport.runs import folder as artifacts
from tests.model_zoo import faces as zoo_faces
from tests.model_zoo import keras_model


@pytest.fixture(autouse=True)
def _progress_mode_restored():
    """The CLI calls here pass --no-progress, which sets a process-wide mode: give later tests the default back."""
    from ferreport import progress

    yield
    progress.configure(None)


def _side(name: str, faces: np.ndarray, seed: int, *, emb_shift: float = 0.0):
    rng = np.random.default_rng(seed)
    proba = rng.dirichlet(np.ones(7), len(faces))
    emb = rng.normal(emb_shift, 1.0, (len(faces), 16)).astype(np.float32)
    return sample_from_arrays(name, proba, face_stats_frame(faces), emb, "sha")


def test_identical_samples_do_not_fire():
    faces = zoo_faces(80, seed=0)
    a = _side("a", faces, 1)
    result = drift_tests(a, a)
    assert not result.drift_detected
    assert all(t.fired is False for t in result.tests)
    assert result.value("class_mix_psi") == 0.0
    doc = result.to_dict()
    assert doc["drift_detected"] is False and doc["fired"] == []


def test_a_darkened_copy_fires_the_image_statistics():
    faces = zoo_faces(80, seed=0)
    result = drift_tests(_side("a", faces, 1), _side("b", (faces * 0.6).astype(np.uint8), 1))
    by_key = {t.key: t for t in result.tests}
    assert by_key["image_stats"].fired and result.drift_detected
    moved = {p["statistic"] for p in by_key["image_stats"].parts if p["fired"]}
    assert "brightness" in moved


def test_shifted_embeddings_fire_and_same_distribution_does_not():
    faces = zoo_faces(100, seed=2)
    ref = _side("a", faces, 1)
    assert not {t.key: t for t in drift_tests(ref, _side("b", faces, 2)).tests}["embedding_auc"].fired
    shifted = {t.key: t for t in drift_tests(ref, _side("b", faces, 2, emb_shift=0.8)).tests}["embedding_auc"]
    assert shifted.fired and shifted.statistic > 0.8


def test_another_model_skips_the_output_tests():
    faces = zoo_faces(40, seed=0)
    a = _side("a", faces, 1)
    b = sample_from_arrays("b", a.pred[:, None] == np.arange(7), a.stats, a.embeddings, "other-sha")
    result = drift_tests(a, b)
    by_key = {t.key: t for t in result.tests}
    assert by_key["class_mix_chi2"].fired is None and "another model" in by_key["class_mix_chi2"].verdict
    assert by_key["image_stats"].fired is False


def test_psi_and_holm():
    assert population_stability_index([50, 50], [50, 50]) == 0.0
    expected = (0.8 - 0.5) * np.log(0.8 / 0.5) + (0.2 - 0.5) * np.log(0.2 / 0.5)
    assert population_stability_index([5, 5], [8, 2]) == pytest.approx(expected)
    assert np.isfinite(population_stability_index([10, 0], [5, 5], epsilon=1e-4))
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_gate_keys_and_directions(tmp_path):
    (psi,) = parse_gate_specs("fail_over", ["drift_psi=0.2"])
    (auc,) = parse_gate_specs("fail_over", ["embedding_auc=0.7"])
    assert parse_gate_specs("fail_over", ["drift_psi=1.5"])[0].value == 1.5  # a PSI may exceed 1
    with pytest.raises(UsageError, match="better when lower"):
        parse_gate_specs("fail_under", ["drift_psi=0.2"])
    with pytest.raises(UsageError, match="better when higher"):
        parse_gate_specs("fail_over", ["min_slice_accuracy=0.3"])
    (tmp_path / artifacts.DRIFT).write_text(json.dumps({"drift_psi": 0.35, "embedding_auc": 0.55, "tests": []}))
    # no labels needed (metrics n = 0)
    results = evaluate_gates(gate_inputs(tmp_path, {"n": 0}), fail_over=(psi, auc))
    assert [r.passed for r in results] == [False, True]
    missing = evaluate_gates(gate_inputs(tmp_path / "none", {"n": 0}), fail_over=(psi,))[0]
    assert not missing.passed and "drift.json" in missing.message


# --------------------------------------------------------------------------- through the command line


def _folder(root, faces: np.ndarray):
    root.mkdir(parents=True)
    for i, f in enumerate(faces):
        cv2.imwrite(str(root / f"face_{i:03d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    return root


def _predict(*args: str):
    from ferreport.cli.main import main

    return CliRunner().invoke(main, ["predict", *args, "--faces", "whole", "--workers", "1", "--no-progress"])


@pytest.fixture(scope="module")
def audits(tmp_path_factory):
    """A reference audit, an audit of the same folder and one of a darkened copy, both against the reference."""
    tmp = tmp_path_factory.mktemp("drift")
    faces = zoo_faces(60, seed=3)
    same = _folder(tmp / "photos", faces)
    dark = _folder(tmp / "dark", (faces * 0.55).astype(np.uint8))
    model = keras_model(tmp)
    ref = tmp / "runs" / "ref"
    r = _predict(str(same), "--model", str(model), "--out", str(ref), "--format", "none")
    assert r.exit_code == 0, r.output
    out_same, out_dark = tmp / "runs" / "same", tmp / "runs" / "dark"
    r_same = _predict(str(same), "--model", str(model), "--reference", str(ref), "--out", str(out_same),
                      "--format", "none", "--fail-over", "drift_psi=0.2", "--fail-over", "embedding_auc=0.7")
    r_dark = _predict(str(dark), "--model", str(model), "--reference", str(ref), "--out", str(out_dark),
                      "--format", "none", "--fail-over", "drift_psi=0")
    return {"ref": ref, "same": (out_same, r_same), "dark": (out_dark, r_dark), "model": model, "photos": same}


def test_audit_of_the_same_folder_reports_no_drift(audits):
    out, r = audits["same"]
    assert r.exit_code == 0, r.output
    doc = json.loads((out / artifacts.DRIFT).read_text())
    assert doc["drift_detected"] is False
    assert doc["drift_psi"] == 0.0
    assert {t["key"] for t in doc["tests"]} == {"class_mix_chi2", "class_mix_psi", "confidence_ks", "image_stats",
                                              "embedding_auc"}
    assert all(t["fired"] is False for t in doc["tests"])  # every test ran (a Keras model has embeddings)
    assert (out / artifacts.EMBEDDINGS).is_file() and (out / artifacts.FACE_STATS).is_file()


def test_audit_of_a_darkened_copy_reports_drift(audits):
    out, r = audits["dark"]
    doc = json.loads((out / artifacts.DRIFT).read_text())
    assert doc["drift_detected"] is True
    assert "image_stats" in doc["fired"]
    # a verdict, not progress: printed even under --no-progress (a cron job's log must say it)
    assert "warning: Drift detected" in r.stderr and str(audits["ref"]) in r.stderr
    assert "Drift detected" not in audits["same"][1].stderr
    gates = json.loads((out / artifacts.GATES).read_text())
    psi_gate = gates["gates"][0]
    assert psi_gate["key"] == "drift_psi" and psi_gate["actual"] == doc["drift_psi"]
    assert r.exit_code == (1 if doc["drift_psi"] > 0 else 0)


def test_json_output_carries_the_drift_verdict(audits, tmp_path):
    r = _predict(str(audits["photos"]), "--model", str(audits["model"]), "--reference", str(audits["ref"]),
                 "--out", str(tmp_path / "out"), "--format", "none", "--json")
    assert r.exit_code == 0, r.output
    obj = json.loads(r.stdout)
    assert obj["drift"]["drift_detected"] is False and obj["drift"]["drift_psi"] == 0.0
    assert obj["outputs"]["drift"].endswith(artifacts.DRIFT)


def test_a_bad_reference_is_a_usage_error_before_any_work(audits, tmp_path):
    r = _predict(str(audits["photos"]), "--model", str(audits["model"]), "--reference", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "out"), "--format", "none")
    assert r.exit_code == 2 and "--reference" in r.output
    empty = tmp_path / "empty"
    empty.mkdir()
    r = _predict(str(audits["photos"]), "--model", str(audits["model"]), "--reference", str(empty),
                 "--out", str(tmp_path / "out2"), "--format", "none")
    assert r.exit_code == 2 and "predictions.csv" in r.output


@pytest.mark.slow
def test_the_audit_report_shows_the_drift_json(audits):
    from pypdf import PdfReader

    from ferreport.report import write_audit_report

    out, _ = audits["dark"]
    paths = write_audit_report(out, ("html", "pdf"))
    html = paths["html"].read_text()
    doc = json.loads((out / artifacts.DRIFT).read_text())
    assert "Is this folder like the reference?" in html and "Drift detected." in html
    for t in doc["tests"]:
        assert t["title"] in html.replace("&#39;", "'")
        if t["statistic"] is not None:
            assert f"{t['statistic']:.4f}" in html
    text = " ".join(" ".join(p.extract_text() or "" for p in PdfReader(str(paths["pdf"])).pages).split())
    assert "Is this folder like the reference?" in text and "Drift detected." in text


def test_embeddings_are_the_classifiers_input(tmp_path):
    import keras

    from ferreport.evaluation.embeddings import embedder_for
    from ferreport.models.adapters import open_model
    from ferreport.models.prediction import predict_proba

    path = keras_model(tmp_path)
    adapter = open_model(path, {})
    embedder = embedder_for(adapter)
    faces = zoo_faces(6)
    emb = embedder(faces)
    dense = keras.models.load_model(path).get_layer("scores")
    np.testing.assert_allclose(np.asarray(dense(emb)), predict_proba(adapter, faces), atol=1e-5)
    assert embedder.layer_name == "scores" and emb.shape == (6, 16)


def test_history_index_shows_drift_over_time_per_source(audits):
    from ferreport.report import update_index

    runs = audits["ref"].parent
    html = update_index(runs).read_text()
    assert "Drift over time" in html
    same, dark = audits["same"][0], audits["dark"][0]
    assert same.name in html and dark.name in html
    assert html.count('class="badge failed">drift<') == 1 and html.count('class="badge passed">none<') == 1
    assert f"<code>{audits['ref'].name}</code>" not in html.split("Drift over time", 1)[1]  # no drift.json
