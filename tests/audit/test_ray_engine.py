"""The Ray Data audit engine gives the local engine's outputs (on a local 2-CPU Ray)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ferreport.audit.predict import run_audit
from ferreport.config import AuditConfig
from ferreport.errors import UsageError
from ferreport.report import write_audit_report
from ferreport.runs import folder as artifacts
from ferreport.runs.folder import SKIPPED as SKIPPED_CSV
from ferreport.runs.folder import RunFolder
from tests.audit.folders import FAST

ray = pytest.importorskip("ray", reason="the Ray engine needs the optional extra: pip install 'ferreport[ray]'")


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray (2 CPUs) for the module; the engine joins it instead of starting its own."""
    import os

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _same_outputs(local, remote) -> None:
    a = RunFolder(local).read_predictions()
    b = RunFolder(remote).read_predictions()
    proba = [c for c in a.columns if c.startswith("p_")]
    assert len(a) == len(b) > 0
    pd.testing.assert_frame_equal(a.drop(columns=proba + ["confidence"]), b.drop(columns=proba + ["confidence"]))
    np.testing.assert_allclose(a[proba].to_numpy(float), b[proba].to_numpy(float), atol=1e-5)
    assert (local / SKIPPED_CSV).read_bytes() == (remote / SKIPPED_CSV).read_bytes()
    sa = json.loads((local / artifacts.AUDIT_SUMMARY).read_text())
    sb = json.loads((remote / artifacts.AUDIT_SUMMARY).read_text())
    for key in ("files_seen", "images_read", "images_with_face", "images_without_face", "faces_found",
                "faces_by_method", "skipped", "predicted_counts", "fingerprint"):
        assert sa[key] == sb[key], key
    assert (sa["engine"], sb["engine"]) == ("local", "ray") and sb["ray"]["cpus"] == 2
    with np.load(local / artifacts.FACES_POOL) as pa, np.load(remote / artifacts.FACES_POOL) as pb:
        np.testing.assert_array_equal(pa["rows"], pb["rows"])
        np.testing.assert_array_equal(pa["faces"], pb["faces"])  # cropped again on the driver: same pixels
    assert not list(remote.glob(".ray-shards-*"))


def test_ray_engine_equals_the_local_engine_on_a_messy_folder(local_ray, messy_folder, tiny_model, tmp_path):
    opts = {**FAST, "formats": ()}
    run_audit(messy_folder, tiny_model, AuditConfig(out=tmp_path / "local", **opts))
    run_audit(messy_folder, tiny_model, AuditConfig(out=tmp_path / "ray", engine="ray", **opts))
    _same_outputs(tmp_path / "local", tmp_path / "ray")


def test_ray_engine_labelled_audit_and_report(local_ray, labelled_folder, tiny_model, tmp_path):
    local = run_audit(labelled_folder, tiny_model,
                      AuditConfig(out=tmp_path / "local", **{**FAST, "formats": ("html",)}))
    result = run_audit(labelled_folder, tiny_model,
                       AuditConfig(out=tmp_path / "ray", engine="ray", **{**FAST, "formats": ("html",)}))
    _same_outputs(tmp_path / "local", tmp_path / "ray")
    reports = {r.out_dir.name: write_audit_report(r.out_dir, ("html",)) for r in (local, result)}  # the caller renders
    a = json.loads((tmp_path / "local" / artifacts.METRICS).read_text())
    b = json.loads((tmp_path / "ray" / artifacts.METRICS).read_text())
    assert a["n"] == b["n"] > 0 and a["accuracy"] == b["accuracy"]
    import re

    def thumbnails(path):
        return re.findall(r'src="(data:image/jpeg;base64,[^"]+)"', path.read_text())

    faces = thumbnails(reports["ray"]["html"])
    assert len(faces) >= 7 and faces == thumbnails(reports["local"]["html"])  # the same faces, pixel for pixel


def test_ray_engine_reads_an_outside_model_with_the_drivers_contract(local_ray, labelled_folder, tmp_path):
    """A grayscale [-1, 1] logits model with FER+'s 8 classes: the actors get the driver's settled contract."""
    from tests import model_zoo as zoo

    model = zoo.keras_model(tmp_path, height=48, width=48, channels=1, outputs=8, activation=None, name="fp.h5")
    opts = {**FAST, "formats": (), "input_range": "-1,1",
            "classes": "neutral,happiness,surprise,sadness,anger,disgust,fear,contempt"}
    run_audit(labelled_folder, model, AuditConfig(out=tmp_path / "local", **opts))
    run_audit(labelled_folder, model, AuditConfig(out=tmp_path / "ray", engine="ray", **opts))
    _same_outputs(tmp_path / "local", tmp_path / "ray")
    contract = json.loads((tmp_path / "ray" / artifacts.CONFIG).read_text())["model_contract"]
    assert contract["outputs"] == "logits" and contract["channels"] == 1  # decided once, on the driver


def test_ray_engine_scores_one_face_per_labelled_image_like_the_local_engine(local_ray, two_face_folder, tiny_model,
                                                                            tmp_path):
    """One label, one face on Ray too: the labelled two-face image's extra face is listed, not scored."""
    opts = {**FAST, "formats": ()}
    run_audit(two_face_folder, tiny_model, AuditConfig(out=tmp_path / "local", **opts))
    run_audit(two_face_folder, tiny_model, AuditConfig(out=tmp_path / "ray", engine="ray", **opts))
    _same_outputs(tmp_path / "local", tmp_path / "ray")
    pred = RunFolder(tmp_path / "ray").read_predictions()
    two = pred[pred["source"] == "happy/two.png"]
    assert two["found"].tolist() == ["detected", "extra"] and two["true_label"].tolist() == ["happy", ""]
    a = json.loads((tmp_path / "local" / artifacts.METRICS).read_text())
    b = json.loads((tmp_path / "ray" / artifacts.METRICS).read_text())
    assert a["n"] == b["n"] == 3 and a["confusion_matrix"] == b["confusion_matrix"]


def test_ray_engine_uses_the_same_detector_and_alignment(local_ray, labelled_folder, tiny_model, tmp_path):
    """--detector and --align reach Ray's scan tasks; the report faces cropped again on the driver are
    turned by the same angle (the same pixels as the local engine's)."""
    for name, align in (("blazeface", True), ("haar", False)):
        opts = {**FAST, "formats": (), "face_detector": name, "align": align}
        run_audit(labelled_folder, tiny_model, AuditConfig(out=tmp_path / f"local-{name}", **opts))
        run_audit(labelled_folder, tiny_model, AuditConfig(out=tmp_path / f"ray-{name}", engine="ray", **opts))
        _same_outputs(tmp_path / f"local-{name}", tmp_path / f"ray-{name}")
        detector = json.loads((tmp_path / f"ray-{name}" / artifacts.PROVENANCE).read_text())["detector"]
        assert detector["name"] == name and detector["align"] is align


def test_ray_address_needs_the_ray_engine(labelled_folder, tiny_model, tmp_path):
    with pytest.raises(UsageError, match="--ray-address needs --engine ray"):
        run_audit(labelled_folder, tiny_model, AuditConfig(out=tmp_path / "x", ray_address="auto", **FAST))
