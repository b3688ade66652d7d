"""Folder audits (`ferreport predict`): walk, skip with reasons, faces, predictions.csv, summary, report."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from ferreport.audit.columns import AUDIT_COLUMNS
from ferreport.audit.labels import read_labels_csv
from ferreport.audit.predict import run_audit
from ferreport.audit.scanning import FOLDER_LINK, NO_FACE, NOT_AN_IMAGE, UNSUPPORTED
from ferreport.config import AuditConfig
from ferreport.constants import CLASS_NAMES
from ferreport.datasets.sample import draw_face
from ferreport.errors import DatasetError
from ferreport.evaluation.face_pool import select_pool_rows
from ferreport.report import write_audit_report
from ferreport.runs import folder as artifacts
from ferreport.runs.folder import AUDIT_SUMMARY, RunFolder
from ferreport.runs.folder import SKIPPED as SKIPPED_CSV
from tests.audit.folders import EVIL, FAST, two_face_scene, write_image


def audit_and_render(folder, model, config: AuditConfig, **kwargs):
    """run_audit, then the audit report in ``config.formats``: the audit renders none, its caller does."""
    result = run_audit(folder, model, config, **kwargs)
    write_audit_report(result.out_dir, config.formats)
    return result


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def messy_audit(messy_folder, tiny_model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("messy_out") / "audit"
    audit_and_render(messy_folder, tiny_model, AuditConfig(out=out, **FAST))
    return out


# --------------------------------------------------------------------------- labels (no TensorFlow)


def test_labels_csv_accepts_names_ids_bom_and_reports_bad_rows_by_line(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    good = tmp_path / "labels.csv"
    good.write_text("\ufeffpath,label,comment\n./a/x.jpg,Happy,ok\nb.png,0,\n\n" + f"{root}/c d.png,6,abs\n",
                    encoding="utf-8")
    assert read_labels_csv(good, root) == {"a/x.jpg": 3, "b.png": 0, "c d.png": 6}
    cases = {
        "path,label\na.png,joyful\n": ":2: label 'joyful' is not a class",
        "path,label\na.png,3\nb.png,7\n": ":3: label '7'",
        "path,label\na.png,3\na.png,4\n": ":3: path 'a.png' already labelled on line 2",
        "path,label\n../up.png,3\n": ":2: path '../up.png' is empty or outside",
        "file,class\na.png,3\n": ":1: header",
        "path,label\nonly-one-field\n": ":2: 1 field(s)",
        "": "empty",
    }
    for i, (text, message) in enumerate(cases.items()):
        bad = tmp_path / f"bad{i}.csv"
        bad.write_text(text)
        with pytest.raises(DatasetError) as err:
            read_labels_csv(bad, root)
        assert str(bad) in str(err.value) and message in str(err.value), str(err.value)


# --------------------------------------------------------------------------- audits


def test_messy_folder_audit_writes_every_output_and_skips_with_reasons(messy_audit, messy_folder):
    out = messy_audit
    for name in (artifacts.PREDICTIONS, AUDIT_SUMMARY, SKIPPED_CSV, artifacts.FACES_POOL, artifacts.CONFIG,
                 artifacts.PROVENANCE, artifacts.REPORT_HTML):
        assert (out / name).is_file(), name
    assert not (out / artifacts.METRICS).exists()  # no labels, no scores
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [artifacts.MARKER]  # no temporaries left

    pred = RunFolder(out).read_predictions()
    assert tuple(pred.columns) == AUDIT_COLUMNS
    assert set(pred["found"]) <= {"detected", "fallback"}
    assert (pred["true_label"] == "").all()
    proba = pred[list(artifacts.PROBA_COLUMNS)].to_numpy()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-4)
    assert (pred["pred_label"] == np.asarray(CLASS_NAMES)[proba.argmax(axis=1)]).all()
    assert (pred["bottom"] > pred["top"]).all() and (pred["right"] > pred["left"]).all()
    sources = set(pred["source"])
    assert f"{EVIL} ünïcødé & co.png" in sources and "new\nline.jpg" in sources  # quoted in the CSV, read back
    assert "png_named.jpg" in sources and "crops/deeper/face_b.bmp" in sources and "crops/face_d.TIFF" in sources
    assert "bad\\xffname.png" in sources  # undecodable name bytes shown as \xNN
    assert not any(s.startswith("loop/") for s in sources)
    assert pred.loc[pred["source"] == "plain wall.jpg", "found"].tolist() == ["fallback"]

    with open(out / SKIPPED_CSV, newline="", encoding="utf-8") as fh:
        skipped = {row["path"]: row["reason"] for row in csv.DictReader(fh)}
    assert skipped["notes.txt"] == UNSUPPORTED and skipped["anim.gif"] == UNSUPPORTED
    assert skipped["text.jpg"] == NOT_AN_IMAGE
    assert skipped["zero.png"] == "empty file"
    assert skipped["truncated.jpg"] in ("truncated JPEG", "cannot decode")
    assert skipped["loop"] == FOLDER_LINK

    summary = json.loads((out / AUDIT_SUMMARY).read_text(encoding="utf-8"))
    assert summary["images_read"] == len(sources) == 12
    assert summary["faces_found"] == len(pred)
    assert summary["images_with_face"] + summary["images_without_face"] == summary["images_read"]
    assert summary["images_without_face"] == int((pred["found"] == "fallback").sum())
    assert summary["files_skipped"] == sum(summary["skipped"].values()) == len(skipped) == 6
    assert summary["skipped"][UNSUPPORTED] == 2
    assert summary["faces_mode"] == "auto" and summary["labels"] == "none"
    assert summary["predicted_counts"] == {c: int((pred["pred_label"] == c).sum()) for c in CLASS_NAMES}
    assert summary["training_distribution"]["train"]["neutral"] == 70
    assert sum(summary["confidence"]["histogram"]["counts"]) == len(pred)
    assert summary["images_per_second"] > 0 and len(summary["model_sha256"]) == 64

    html = (out / artifacts.REPORT_HTML).read_text(encoding="utf-8")
    for sid in ("overview", "scan", "distribution", "confidence", "faces", "provenance"):
        assert f'id="{sid}"' in html
    assert "audit report" in html and "Least confident faces" in html
    assert "Most confident faces, per predicted class" in html
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'id="confusion"' not in html  # no labels: no evaluation sections
    assert "training split" in html and NOT_AN_IMAGE in html


def test_the_face_pool_is_the_whole_folder_selection_whatever_the_chunking(messy_folder, messy_audit, tiny_model,
                                                                          tmp_path):
    out = tmp_path / "chunked"
    run_audit(messy_folder, tiny_model,
              AuditConfig(out=out, chunk_size=3, batch_size=2, **{**FAST, "formats": ()}))
    a, pred = RunFolder(messy_audit).read_predictions(), RunFolder(out).read_predictions()
    numbers = [*artifacts.PROBA_COLUMNS, "confidence"]
    pd.testing.assert_frame_equal(a.drop(columns=numbers), pred.drop(columns=numbers))
    # the same faces, boxes and labels; probabilities within float32 rounding of batches of 2 vs 256
    # (oneDNN may sum in another order for another batch size, moving the sixth decimal)
    np.testing.assert_allclose(a[numbers].to_numpy(), pred[numbers].to_numpy(), atol=2e-6)
    with np.load(out / artifacts.FACES_POOL) as npz:
        rows = npz["rows"]
        faces = npz["faces"]
    np.testing.assert_array_equal(rows, select_pool_rows(pred))
    assert faces.shape == (len(rows), 64, 64, 3) and faces.dtype == np.uint8


def test_a_process_pool_gives_the_same_predictions(messy_folder, messy_audit, tiny_model, tmp_path, monkeypatch):
    import ferreport.audit.scan as audit_mod

    pools = []

    class Counting(audit_mod.cf.ProcessPoolExecutor):
        def __init__(self, *args, **kwargs):
            pools.append(kwargs.get("mp_context").get_start_method())
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(audit_mod.cf, "ProcessPoolExecutor", Counting)
    out = tmp_path / "pooled"
    run_audit(messy_folder, tiny_model,
              AuditConfig(out=out, chunk_size=8, **{**FAST, "formats": (), "workers": 2}))
    assert pools == ["spawn"]  # TensorFlow is loaded: workers are spawned, not forked
    pd.testing.assert_frame_equal(RunFolder(out).read_predictions(),
                                  RunFolder(messy_audit).read_predictions())
    assert (out / SKIPPED_CSV).read_bytes() == (messy_audit / SKIPPED_CSV).read_bytes()


def test_whole_and_detect_modes(messy_folder, tiny_model, tmp_path):
    run_audit(messy_folder, tiny_model,
              AuditConfig(out=tmp_path / "whole", faces="whole", **{**FAST, "formats": ()}))
    pred = RunFolder(tmp_path / "whole").read_predictions()
    assert set(pred["found"]) == {"whole"} and (pred["face_id"] == "0").all() and (pred["top"] == 0).all()
    summary = json.loads((tmp_path / "whole" / AUDIT_SUMMARY).read_text())
    assert summary["images_without_face"] == 0 and summary["faces_found"] == summary["images_read"] == 12

    run_audit(messy_folder, tiny_model,
              AuditConfig(out=tmp_path / "detect", faces="detect", **{**FAST, "formats": ()}))
    pred = RunFolder(tmp_path / "detect").read_predictions()
    assert set(pred["found"]) <= {"detected"}
    summary = json.loads((tmp_path / "detect" / AUDIT_SUMMARY).read_text())
    with open(tmp_path / "detect" / SKIPPED_CSV, newline="", encoding="utf-8") as fh:
        no_face = [row["path"] for row in csv.DictReader(fh) if row["reason"] == NO_FACE]
    assert "plain wall.jpg" in no_face and "plain wall.jpg" not in set(pred["source"])
    assert summary["images_without_face"] == len(no_face) and NO_FACE not in summary["skipped"]
    assert summary["images_with_face"] == pred["source"].nunique()


def _sklearn_check(out: Path) -> pd.DataFrame:
    pred = pd.read_csv(out / artifacts.PREDICTIONS, keep_default_na=False)
    metrics = json.loads((out / artifacts.METRICS).read_text())
    known = pred[pred["true_label"] != ""]
    y, p = known["true_label"], known["pred_label"]
    assert metrics["n"] == len(known)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y, p), abs=1e-6)
    assert metrics["macro_f1"] == pytest.approx(f1_score(y, p, labels=list(CLASS_NAMES), average="macro",
                                                         zero_division=0), abs=1e-6)
    assert metrics["weighted_f1"] == pytest.approx(f1_score(y, p, labels=list(CLASS_NAMES), average="weighted",
                                                            zero_division=0), abs=1e-6)
    assert metrics["confusion_matrix"] == confusion_matrix(y, p, labels=list(CLASS_NAMES)).tolist()
    return pred


def test_labelled_subfolders_give_every_metric_equal_to_scikit_learn(labelled_folder, tiny_model, tmp_path):
    out = tmp_path / "lab"
    result = audit_and_render(labelled_folder, tiny_model / artifacts.MODEL,
                              AuditConfig(out=out, faces="whole", **FAST))
    pred = _sklearn_check(out)
    assert (pred.loc[pred["source"].str.startswith("Happy/"), "true_label"] == "happy").all()  # case-insensitive
    assert pred.loc[pred["source"] == "unsorted/extra.png", "true_label"].tolist() == [""]
    summary = result.summary
    assert summary["labels"] == "subfolders (auto)" and summary["labelled_faces"] == 21
    assert summary["true_counts"] == {c: 3 for c in CLASS_NAMES}
    html = (out / artifacts.REPORT_HTML).read_text(encoding="utf-8")
    for sid in ("scan", "distribution", "confidence", "faces", "confusion", "per-class", "confused-pairs",
                "calibration"):
        assert f'id="{sid}"' in html, sid
    assert "true (this folder)" in html


def test_labels_csv_audit_and_labels_none(labelled_folder, tiny_model, tmp_path, capsys):
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\nangry/angry_0.png,angry\nsad/sad_1.png,4\nmissing/gone.png,happy\n")
    out = tmp_path / "csv"
    result = audit_and_render(labelled_folder, tiny_model, AuditConfig(out=out, faces="whole", labels=labels, **FAST))
    pred = _sklearn_check(out)
    assert (pred["true_label"] != "").sum() == 2
    assert result.summary["labels_not_found"] == 1
    assert result.summary["labels_not_found_examples"] == ["missing/gone.png"]
    assert "Labelled paths not found" in (out / artifacts.REPORT_HTML).read_text(encoding="utf-8")

    capsys.readouterr()
    run_audit(labelled_folder, tiny_model,
              AuditConfig(out=tmp_path / "none", faces="whole", labels="none", **{**FAST, "formats": ()}),
              progress=True)
    assert not (tmp_path / "none" / artifacts.METRICS).exists()
    assert "audit: 22 files, 22 images, 22 faces, 0 skipped in " in capsys.readouterr().err  # the stage line


def test_cli_predict_and_its_exit_codes(labelled_folder, tiny_model, tmp_path):
    from ferreport.cli.main import main

    out = tmp_path / "cli"
    result = CliRunner().invoke(main, ["predict", str(labelled_folder), "--model", str(tiny_model), "--out", str(out),
                                       "--faces", "whole", "--format", "html", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "22 images, 22 faces" in result.output and "accuracy" in result.output
    assert (out / artifacts.REPORT_HTML).is_file()
    again = CliRunner().invoke(main, ["report", str(out), "--format", "html"])  # re-render: the audit report
    assert again.exit_code == 0, again.output
    assert 'id="scan"' in (out / artifacts.REPORT_HTML).read_text(encoding="utf-8")

    missing = CliRunner().invoke(main, ["predict", str(tmp_path / "nope"), "--model", str(tiny_model)])
    assert missing.exit_code == 3 and "folder not found" in missing.output
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("path,label\nx.png,grumpy\n")
    bad = CliRunner().invoke(main, ["predict", str(labelled_folder), "--model", str(tiny_model), "--labels",
                                    str(bad_csv), "--out", str(tmp_path / "x")])
    assert bad.exit_code == 3 and "bad.csv:2" in bad.output and not (tmp_path / "x").exists()
    not_model = tmp_path / "m.keras"
    not_model.write_text("nope")
    bad_model = CliRunner().invoke(main, ["predict", str(labelled_folder), "--model", str(not_model)])
    assert bad_model.exit_code == 4
    used = CliRunner().invoke(main, ["predict", str(labelled_folder), "--model", str(tiny_model), "--out", str(out)])
    assert used.exit_code == 2


def test_an_empty_folder_is_exit_3_with_the_outputs_written(tiny_model, tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "readme.md").write_text("no images here")
    with pytest.raises(DatasetError, match="no face to predict"):
        run_audit(folder, tiny_model, AuditConfig(out=tmp_path / "o", **FAST))
    write_audit_report(tmp_path / "o", FAST["formats"])  # its caller renders the report from the outputs written
    summary = json.loads((tmp_path / "o" / AUDIT_SUMMARY).read_text())
    assert summary["images_read"] == 0 and summary["skipped"] == {UNSUPPORTED: 1}
    assert (tmp_path / "o" / artifacts.REPORT_HTML).is_file()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_file_is_skipped_with_its_reason(tiny_model, tmp_path):
    folder = tmp_path / "perm"
    write_image(folder / "ok.png", draw_face(np.random.default_rng(0), 3, 64))
    write_image(folder / "secret.png", draw_face(np.random.default_rng(1), 3, 64))
    os.chmod(folder / "secret.png", 0)
    try:
        result = run_audit(folder, tiny_model, AuditConfig(out=tmp_path / "o", **{**FAST, "formats": ()}))
    finally:
        os.chmod(folder / "secret.png", 0o644)
    assert result.summary["images_read"] == 1
    assert any(k.startswith("cannot read") for k in result.summary["skipped"])


def test_faces_sample_detection_and_labelled_audit(faces_sample_dir, tiny_model, tmp_path):
    """Real photographs: the cascade finds a face in most; the audit's metrics equal scikit-learn's."""
    out = tmp_path / "real"
    result = run_audit(faces_sample_dir, tiny_model, AuditConfig(out=out, n_resamples=20, formats=(), workers=2))
    summary = result.summary
    images = summary["images_read"]
    assert images >= 150 and summary["labels"] == "subfolders (auto)"
    # measured: 151 of 171 (88%); small tight crops are the misses
    assert summary["images_with_face"] / images >= 0.8, summary
    pred = _sklearn_check(out)
    assert len(pred) == summary["faces_found"] and (pred["true_label"] != "").all()


def test_predict_quality_gate_fails_with_exit_1_after_writing_everything(labelled_folder, tiny_model, tmp_path):
    from ferreport.cli.main import main

    out = tmp_path / "gated"
    junit = tmp_path / "gates.xml"
    result = CliRunner().invoke(main, ["predict", str(labelled_folder), "--model", str(tiny_model), "--out", str(out),
                                       "--format", "html", "--fail-under", "accuracy=0.999", "--json",
                                       "--junit", str(junit)])
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "failed" and summary["exit_code"] == 1
    assert (out / "report.html").is_file() and (out / "predictions.csv").is_file()
    assert "accuracy" in junit.read_text() and "Quality gates" in (out / "report.html").read_text()


# --------------------------------------------------------------------------- messages (issue 20, point 7)


def test_no_face_to_predict_counts_skips_in_words_not_a_dict_repr(tiny_model, tmp_path):
    """The 'no face to predict' error lists skip reasons as words ("2 unsupported type"), never
    ``{'unsupported type': 2}``."""
    folder = tmp_path / "nothing"
    folder.mkdir()
    (folder / "a.txt").write_text("no image")
    (folder / "b.md").write_text("no image")
    (folder / "zero.png").write_bytes(b"")
    with pytest.raises(DatasetError) as info:
        run_audit(folder, tiny_model, AuditConfig(out=tmp_path / "o", **{**FAST, "formats": ()}))
    message = str(info.value)
    assert "3 files skipped: unsupported type (2 files), empty file (1 file))" in message, message
    assert "{" not in message and "'" not in message


def test_a_full_disk_while_writing_predictions_is_one_cannotwrite_image(labelled_folder, tiny_model, tmp_path,
                                                                   monkeypatch):
    """ENOSPC inside predictions.csv's atomic write: one "cannot write (the disk is full ...)", not
    "cannot write (... cannot write (...))" (atomic_open's error re-wrapped by atomic_path); exit 5, one line."""
    import errno

    from ferreport.audit import scan as audit
    from ferreport.cli.main import main
    from ferreport.errors import OutputError

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(audit.Scan, "_write_faces", full)
    with pytest.raises(OutputError) as info:
        run_audit(labelled_folder, tiny_model, AuditConfig(out=tmp_path / "o", **{**FAST, "formats": ()}))
    message = str(info.value)
    assert message.count("cannot write") == 1 and message.count("(") == 1, message
    # (the error surfaces through the innermost open output, skipped.csv; a full disk is a full disk)
    assert message.endswith(".csv: cannot write (the disk is full; free space or choose another --out)"), message
    result = CliRunner().invoke(main, ["predict", str(labelled_folder), "--model", str(tiny_model), "--out",
                                       str(tmp_path / "cli"), "--format", "none", "--workers", "1"])
    assert result.exit_code == 5, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].count("cannot write") == 1, result.output


# --------------------------------------------------------------------------- one label, one face (issue 20, point 6)


def test_a_two_face_scene_is_found_twice():
    from ferreport.audit.detection import detect_faces, primary_face

    boxes = detect_faces(two_face_scene())
    assert len(boxes) == 2, boxes
    (t0, l0, r0, b0), (t1, l1, r1, b1) = boxes
    assert r0 <= 320 <= l1                                   # the large face (left), then the small one (right)
    assert primary_face(boxes) == 0 and primary_face(boxes[::-1]) == 1
    assert primary_face([(0, 0, 10, 10), (5, 5, 15, 15)]) == 0     # a tie: the first
    assert primary_face([]) == -1


@pytest.mark.parametrize("faces", ["auto", "detect"])
def test_a_labelled_image_is_scored_once_extra_faces_are_listed(two_face_folder, tiny_model, tmp_path, faces):
    """One label, one face: the labelled two-face image gives one scored face (the largest) and one
    ``extra`` row with no true label; the unlabelled copy keeps both faces as detected."""
    out = tmp_path / faces
    result = run_audit(two_face_folder, tiny_model, AuditConfig(out=out, faces=faces, **FAST))
    pred = _sklearn_check(out)
    two = pred[pred["source"] == "happy/two.png"]
    assert two["face_id"].tolist() == [0, 1] and two["found"].tolist() == ["detected", "extra"]
    assert two["true_label"].tolist() == ["happy", ""]
    assert int(two.iloc[0]["right"]) <= 320 <= int(two.iloc[1]["left"])      # the scored face is the large one
    group = pred[pred["source"] == "group.png"]
    assert group["found"].tolist() == ["detected", "detected"] and (group["true_label"] == "").all()
    labelled_images = pred.loc[pred["true_label"] != "", "source"]
    assert labelled_images.is_unique                                          # one scored face per labelled image
    summary, metrics = result.summary, result.metrics
    assert summary["labelled_faces"] == metrics["n"] == len(labelled_images) == (3 if faces == "auto" else 2)
    assert summary["faces_by_method"]["extra"] == 1 and summary["faces_found"] == len(pred)
    assert sum(summary["true_counts"].values()) == metrics["n"]
    from ferreport.audit.predict import audit_summary_line

    assert "1 extra in labelled images, listed but not scored" in audit_summary_line(summary, metrics)
    from ferreport.cli.main import main

    again = CliRunner().invoke(main, ["report", str(out), "--format", "html"])        # the report still renders
    assert again.exit_code == 0, again.output
    html = (out / "report.html").read_text()
    assert "Further faces in labelled images (listed, not scored)" in html


def test_labels_from_a_csv_and_no_labels(two_face_folder, tiny_model, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\ngroup.png,neutral\n")
    run_audit(two_face_folder, tiny_model, AuditConfig(out=tmp_path / "csv", labels=labels, **{**FAST, "formats": ()}))
    pred = _sklearn_check(tmp_path / "csv")
    group = pred[pred["source"] == "group.png"]
    assert group["found"].tolist() == ["detected", "extra"] and group["true_label"].tolist() == ["neutral", ""]
    assert (pred.loc[pred["source"] == "happy/two.png", "found"] == "detected").all()  # not labelled by this CSV

    result = run_audit(two_face_folder, tiny_model,
                       AuditConfig(out=tmp_path / "none", labels="none", **{**FAST, "formats": ()}))
    pred = pd.read_csv(tmp_path / "none" / artifacts.PREDICTIONS, keep_default_na=False)
    assert "extra" not in set(pred["found"]) and (pred["source"] == "happy/two.png").sum() == 2
    assert result.summary["faces_by_method"]["extra"] == 0


def test_faces_sample_with_two_face_composites_scores_each_labelled_photo_once(faces_sample_dir, tiny_model,
                                                                              tmp_path):
    """Real photographs: faces-sample (171 single-face photos in class folders) plus composites of two
    of its photos side by side, labelled and not. Every labelled image is scored once."""
    import shutil

    folder = tmp_path / "real"
    shutil.copytree(faces_sample_dir, folder)
    from ferreport.audit.detection import detect_faces

    photos = [cv2.imread(str(p)) for p in sorted((folder / "happy").glob("*"))]
    single = [img for img in photos if img is not None and len(detect_faces(img)) == 1][:2]
    assert len(single) == 2

    def framed(img: np.ndarray, side: int) -> np.ndarray:  # a crop with some context: its edges replicated
        return cv2.copyMakeBorder(cv2.resize(img, (side, side)), side // 3, side // 3, side // 3, side // 3,
                                  cv2.BORDER_REPLICATE)

    big, small = framed(single[0], 200), framed(single[1], 120)
    canvas = np.zeros((big.shape[0], big.shape[1] + small.shape[1], 3), np.uint8)
    canvas[:, :big.shape[1]] = big
    canvas[:small.shape[0], big.shape[1]:] = small
    assert len(detect_faces(canvas)) == 2
    write_image(folder / "happy" / "zz_two_photos.png", canvas)
    write_image(folder / "zz_unlabelled_two_photos.png", canvas)
    # the cascade finds both faces of the composite (checked above); BlazeFace the large one only
    result = run_audit(folder, tiny_model, AuditConfig(out=tmp_path / "out", n_resamples=20, formats=(), workers=2,
                                                       face_detector="haar"))
    pred = _sklearn_check(tmp_path / "out")
    labelled = pred[pred["true_label"] != ""]
    assert labelled["source"].is_unique
    assert result.metrics["n"] == result.summary["labelled_faces"] == result.summary["images_read"] - 1
    comp = pred[pred["source"] == "happy/zz_two_photos.png"]
    assert comp["found"].iloc[0] == "detected" and (comp["found"].iloc[1:] == "extra").all()
    assert int(comp.iloc[0]["right"]) <= big.shape[1]                          # the large photo's face is scored
    assert (pred.loc[pred["source"] == "zz_unlabelled_two_photos.png", "found"] == "detected").sum() >= 2
