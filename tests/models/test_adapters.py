"""Models from elsewhere: every format and contract scored equal to a hand-computed reference, or refused.

The models are real (Keras, legacy HDF5, SavedModel, ONNX built with onnx.helper), small
and built here (tests/model_zoo.py); the references are written without ferreport.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from ferreport.cli.main import main
from ferreport.constants import CLASS_NAMES
from ferreport.errors import ModelError, UsageError
from ferreport.models.adapters import open_model
from ferreport.models.prediction import predict_proba
from ferreport.runs import folder as artifacts
from tests import model_zoo as zoo

FER_PLUS = "neutral,happiness,surprise,sadness,anger,disgust,fear,contempt"


def _expw_order(proba: np.ndarray, names: list[str]) -> np.ndarray:
    """Reference: columns picked by name into ExpW order, renormalised over them."""
    from ferreport.datasets.classes import canonical_class

    canon = [canonical_class(n) or n for n in names]
    out = np.stack([proba[:, canon.index(c)] if c in canon else np.zeros(len(proba)) for c in CLASS_NAMES], axis=1)
    return out / out.sum(axis=1, keepdims=True)


KERAS_CASES = [  # (builder kwargs, options, reference kwargs)
    (dict(height=48, width=48, channels=1, name="gray48.h5"), {"input_range": "-1,1"}, dict(input_range="-1,1")),
    (dict(channels=1, name="gray64.hdf5"), {"input_range": "-1,1"}, dict(input_range="-1,1")),
    (dict(name="rgb.keras"), {}, dict()),
    (dict(name="bgr255.keras"), {"channel_order": "bgr", "input_range": "0,255"},
     dict(channel_order="bgr", input_range="0,255")),
    (dict(height=96, width=96, name="big.keras"), {"input_range": "standardize"}, dict(input_range="standardize")),
    (dict(activation=None, channels=1, height=48, width=48, name="logits.keras"), {}, dict(logits=True)),
]


@pytest.mark.parametrize("build,options,ref", KERAS_CASES, ids=[c[0]["name"] for c in KERAS_CASES])
def test_keras_and_hdf5_models_equal_the_reference(tmp_path, build, options, ref):
    path = zoo.keras_model(tmp_path, **build)
    faces = zoo.faces(10)
    adapter = open_model(path, options)
    got = predict_proba(adapter, faces, batch_size=4)  # several batches
    want = zoo.reference_keras_proba(path, faces, **ref)
    if ref.get("logits"):
        assert adapter.reader.kind == "logits" and "logits → softmax (detected)" in adapter.describe()
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert f"{adapter.contract.height}×{adapter.contract.width}" in adapter.describe()


def test_permuted_and_eight_class_models(tmp_path):
    faces = zoo.faces(8)
    permuted = ["happy", "sad", "angry", "neutral", "fear", "surprise", "disgust"]
    path = zoo.keras_model(tmp_path, name="perm.keras")
    got = open_model(path, {"classes": ",".join(permuted)}).predict(faces)
    np.testing.assert_allclose(got, _expw_order(zoo.reference_keras_proba(path, faces), permuted), atol=1e-5)

    eight = zoo.keras_model(tmp_path, outputs=8, activation=None, name="ferplus.keras")
    with pytest.raises(ModelError, match="has 8 outputs; pass --classes with its 8 class names"):
        open_model(eight, {})
    with pytest.raises(UsageError, match="--classes names 7 classes .* has 8 outputs"):
        open_model(eight, {"classes": ",".join(CLASS_NAMES)})
    adapter = open_model(eight, {"classes": FER_PLUS})
    want = _expw_order(zoo.reference_keras_proba(eight, faces, logits=True), FER_PLUS.split(","))
    np.testing.assert_allclose(adapter.predict(faces), want, atol=1e-5)
    assert "classes: 7 of 8 scored (contempt dropped)" in adapter.describe()


def test_savedmodel_folder(tmp_path):
    path = zoo.savedmodel(tmp_path, channels=1, height=48, width=48, activation=None)
    faces = zoo.faces(6)
    adapter = open_model(path, {"input_range": "-1,1"})
    assert adapter.format == "savedmodel" and adapter.keras_model is None
    want = zoo.reference_keras_proba(path, faces, input_range="-1,1", logits=True)
    np.testing.assert_allclose(adapter.predict(faces), want, atol=1e-5)
    empty = tmp_path / "not_a_model"
    empty.mkdir()
    with pytest.raises(ModelError, match="a folder without saved_model.pb"):
        open_model(empty)


@pytest.mark.parametrize("layout,channels,softmax", [("nchw", 1, True), ("nhwc", 1, False), ("nchw", 3, False)])
def test_onnx_models_nchw_and_nhwc(tmp_path, layout, channels, softmax):
    path = zoo.onnx_model(tmp_path, layout=layout, channels=channels, softmax=softmax)
    faces = zoo.faces(7)
    adapter = open_model(path, {"input_range": "-1,1"})
    assert adapter.contract.layout == layout and adapter.contract.channels == channels
    want = zoo.reference_onnx_proba(path, faces, input_range="-1,1", logits=not softmax)
    np.testing.assert_allclose(adapter.predict(faces), want, atol=1e-5)
    assert adapter.reader.kind == ("probabilities" if softmax else "logits")


def test_broken_models_are_refused_with_one_line(tmp_path):
    with pytest.raises(ModelError, match="holds 1 NaN/inf values"):
        open_model(zoo.keras_model(tmp_path, nan=True, name="nan.keras"))
    with pytest.raises(ModelError, match=r"output NaN/inf for \d+ of 8 faces"):  # a SavedModel has no weight check
        open_model(zoo.savedmodel(tmp_path, nan=True, name="nan_saved"))
    for name in ("model.h5", "model.onnx", "model.keras", "model.bin"):
        for make in (zoo.html_page, zoo.lfs_pointer):
            path = make(tmp_path, name)
            with pytest.raises(ModelError) as err:
                open_model(path)
            message = str(err.value)
            assert str(path) in message and "\n" not in message
            assert ("is an HTML page" in message) if make is zoo.html_page else ("is a Git LFS pointer" in message)
    leading = zoo.html_page(tmp_path, "lead.h5", kind="huggingface", leading_whitespace=True)
    with pytest.raises(ModelError, match="is an HTML page"):
        open_model(leading)
    zip_as_onnx = tmp_path / "really_keras.onnx"
    zip_as_onnx.write_bytes(zoo.keras_model(tmp_path, name="k.keras").read_bytes())
    with pytest.raises(ModelError, match="is a zip file named .onnx; rename it to .keras"):
        open_model(zip_as_onnx)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\x01not a protobuf" * 10)
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        open_model(garbage)


def test_spec_that_contradicts_the_model_is_refused(tmp_path):
    path = zoo.keras_model(tmp_path, channels=1, height=48, width=48, name="g.keras")
    spec = tmp_path / "spec.toml"
    spec.write_text('channels = 3\ninput_range = "-1,1"\n')
    with pytest.raises(ModelError, match="spec.toml says channels 3, but the model .* takes channels 1"):
        open_model(path, {"model_spec": spec})


# --------------------------------------------------------------------------- through the command line


def _evaluate(args, *more):
    result = CliRunner().invoke(main, ["evaluate", *map(str, args), *map(str, more)])
    return result


def test_evaluate_grayscale_hdf5_model_states_its_contract_everywhere(tmp_path, sample_dataset):
    model = zoo.keras_model(tmp_path, channels=1, height=48, width=48, name="mini_xception.h5")
    spec = tmp_path / "spec.toml"
    spec.write_text('input_range = "-1,1"\n')
    out = tmp_path / "gray"
    result = _evaluate(["--model", model, "--data", sample_dataset, "--out", out, "--model-spec", spec,
                        "--format", "html"])
    assert result.exit_code == 0, result.output
    assert "Model input: 48×48 grayscale, [-1, 1]; outputs: probabilities (detected)" in result.stderr
    contract = json.loads((out / artifacts.PROVENANCE).read_text())["model_contract"]
    assert contract["channels"] == 1 and contract["input_range"] == "-1,1" and contract["format"] == "hdf5"
    assert contract["outputs_detected"] == "probabilities"
    html = (out / artifacts.REPORT_HTML).read_text()
    assert "48×48 grayscale, [-1, 1]; outputs: probabilities (detected)" in html
    # the predictions are the reference pipeline's on exactly the faces scored
    from ferreport.datasets.face_cache import prepare_dataset

    pred = pd.read_csv(out / artifacts.PREDICTIONS, keep_default_na=False)
    dataset = prepare_dataset(sample_dataset)
    pos = pd.Series(np.arange(len(dataset.index)), index=dataset.index["source"] + "#" +
                    dataset.index["face_id"].astype(str))
    rows = pos[(pred["source"] + "#" + pred["face_id"].astype(str)).to_numpy()].to_numpy()
    want = zoo.reference_keras_proba(model, np.asarray(dataset.faces[rows]), input_range="-1,1")
    np.testing.assert_allclose(pred[list(artifacts.PROBA_COLUMNS)].to_numpy(), want, atol=1e-5 + 5e-7)


def test_logits_model_gives_probabilities_never_raw_scores(tmp_path, sample_dataset):
    model = zoo.keras_model(tmp_path, activation=None, name="logits.keras")
    out = tmp_path / "logits"
    result = _evaluate(["--model", model, "--data", sample_dataset, "--out", out, "--format", "none"])
    assert result.exit_code == 0, result.output
    pred = pd.read_csv(out / artifacts.PREDICTIONS)
    proba = pred[list(artifacts.PROBA_COLUMNS)].to_numpy()
    assert proba.min() >= 0 and np.allclose(proba.sum(axis=1), 1, atol=1e-5) and pred["confidence"].max() <= 1
    prov = json.loads((out / artifacts.PROVENANCE).read_text())["model_contract"]
    assert prov["outputs"] == "auto" and prov["outputs_detected"] == "logits"
    assert "negative values" in prov["outputs_evidence"]
    forced = _evaluate(["--model", model, "--data", sample_dataset, "--out", tmp_path / "forced", "--format", "none",
                        "--outputs", "probabilities"])
    assert forced.exit_code == 4 and "--outputs probabilities, but these outputs have" in forced.stderr
    assert not (tmp_path / "forced" / artifacts.PREDICTIONS).exists()


def test_model_without_a_class_is_scored_on_the_classes_it_has(tmp_path, sample_dataset):
    six = ["angry", "fear", "happy", "sad", "surprise", "neutral"]
    model = zoo.keras_model(tmp_path, outputs=6, name="six.keras")
    out = tmp_path / "six"
    result = _evaluate(["--model", model, "--data", sample_dataset, "--out", out, "--format", "html",
                        "--classes", ",".join(six)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / artifacts.METRICS).read_text())
    removed = metrics["classes"]["faces_removed"]
    assert metrics["classes"]["not_predicted"] == ["disgust"] and removed > 0
    assert f"{removed} test faces of that class are left out" in result.stderr
    assert set(metrics["per_class"]) == set(six)  # averages over the classes the model can predict
    pred = pd.read_csv(out / artifacts.PREDICTIONS, keep_default_na=False)
    assert "disgust" not in set(pred["true_label"]) and (pred["p_disgust"] == 0).all()
    html = (out / artifacts.REPORT_HTML).read_text()
    assert "The model has no output for disgust" in html and f"{removed:,} test faces" in html
    # the most-confused pairs show faces of exactly that pair (class ids are ExpW's, not the scored subset's)
    import re

    blocks = re.findall(r'<h3><span class="t">(\w+)</span> predicted as <span class="p">(\w+)</span></h3>'
                        r'(.*?)</div>\s*</div>', html, flags=re.S)
    assert blocks
    for true, pred, body in blocks:
        alts = re.findall(r'alt="face from [^"]*, true (\w+), predicted (\w+)"', body)
        assert alts and all(a == (true, pred) for a in alts), (true, pred, alts)


def test_split_of_scores_an_outside_model_on_a_runs_test_faces_and_compare_pairs_them(tmp_path, sample_dataset):
    base_model = zoo.keras_model(tmp_path, name="base.keras", seed=1)
    base = tmp_path / "base"
    assert _evaluate(["--model", base_model, "--data", sample_dataset, "--out", base,
                      "--format", "none"]).exit_code == 0
    before = {p.name: p.read_bytes() for p in base.iterdir()}
    onnx = zoo.onnx_model(tmp_path, height=64, width=64, channels=3, outputs=8, softmax=False, layout="nchw")
    other = tmp_path / "other"
    result = _evaluate(["--model", onnx, "--split-of", base, "--out", other, "--format", "none",
                        "--classes", FER_PLUS, "--json"])
    assert result.exit_code == 0, result.output
    assert {p.name: p.read_bytes() for p in base.iterdir()} == before  # the run given is untouched
    a = pd.read_csv(base / artifacts.PREDICTIONS, keep_default_na=False)
    b = pd.read_csv(other / artifacts.PREDICTIONS, keep_default_na=False)
    assert list(a["source"]) == list(b["source"]) and list(a["true_label"]) == list(b["true_label"])
    compared = CliRunner().invoke(main, ["compare", str(base), str(other), "--format", "none", "--json"])
    assert compared.exit_code == 0, compared.output
    assert json.loads(compared.stdout.strip().splitlines()[-1])["n"] == len(a)
    wrong = _evaluate(["--model", onnx, "--split-of", base, "--out", base, "--classes", FER_PLUS])
    assert wrong.exit_code == 2 and "is --split-of" in wrong.stderr and "never writes where it reads" in wrong.stderr
    # re-scoring the new run later needs no flags: its model and contract are recorded
    first = (other / artifacts.PREDICTIONS).read_bytes()
    again = _evaluate([other, "--format", "none"])
    assert again.exit_code == 0, again.output
    assert (other / artifacts.PREDICTIONS).read_bytes() == first


def test_hostile_model_files_exit_4_naming_the_file(tmp_path, sample_dataset):
    for path in (zoo.html_page(tmp_path, "model.h5"), zoo.lfs_pointer(tmp_path, "model.onnx")):
        result = _evaluate(["--model", path, "--data", sample_dataset, "--out", tmp_path / path.stem])
        assert result.exit_code == 4
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and str(path) in lines[0]
        assert not (tmp_path / path.stem).exists()


def test_folder_audit_with_an_onnx_model(tmp_path):
    import cv2

    folder = tmp_path / "folder"
    for i, face in enumerate(zoo.faces(6)):
        sub = folder / ("anger" if i % 2 else "happiness")  # class folders by synonym
        sub.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(sub / f"{i}.png"), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    (folder / "contempt").mkdir()
    model = zoo.onnx_model(tmp_path, height=48, width=48, channels=1, outputs=8, softmax=True)
    out = tmp_path / "audit"
    result = CliRunner().invoke(main, ["predict", str(folder), "--model", str(model), "--out", str(out), "--faces",
                                       "whole", "--format", "none", "--classes", FER_PLUS, "--input-range", "-1,1"])
    assert result.exit_code == 0, result.output
    pred = pd.read_csv(out / artifacts.PREDICTIONS, keep_default_na=False)
    assert sorted(set(pred["true_label"])) == ["angry", "happy"]
    faces = np.stack([cv2.cvtColor(cv2.imread(str(folder / s)), cv2.COLOR_BGR2RGB) for s in pred["source"]])
    want = _expw_order(zoo.reference_onnx_proba(model, faces, input_range="-1,1"), FER_PLUS.split(","))
    np.testing.assert_allclose(pred[list(artifacts.PROBA_COLUMNS)].to_numpy(), want, atol=1e-5 + 5e-7)
    prov = json.loads((out / artifacts.PROVENANCE).read_text())
    assert prov["model_contract"]["format"] == "onnx" and "contempt dropped" in prov["model_contract"]["summary"]
