"""The input contract: faces -> model input, raw outputs -> probabilities, spec files (no TensorFlow)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ferreport.constants import CLASS_NAMES
from ferreport.datasets.classes import canonical_class, class_id, parse_classes
from ferreport.errors import ModelError, UsageError
from ferreport.models.contract import (
    ModelContract,
    OutputReader,
    contract_path,
    output_kind,
    read_spec,
    softmax,
    to_model_input,
    write_contract,
)
from tests import model_zoo as zoo

CASES = [
    dict(height=64, width=64, channels=3, input_range="0,1"),
    dict(height=48, width=48, channels=1, input_range="-1,1"),
    dict(height=64, width=64, channels=1, input_range="-1,1"),
    dict(height=96, width=96, channels=3, input_range="0,255", channel_order="bgr"),
    dict(height=48, width=96, channels=3, input_range="0,1"),
    dict(height=32, width=32, channels=1, input_range="0,255", layout="nchw"),
    dict(height=64, width=64, channels=3, input_range="0,1", layout="nchw", channel_order="bgr"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_model_input_equals_the_reference_pipeline_bit_for_bit(case):
    faces = zoo.faces(9)
    got = to_model_input(faces, ModelContract(**case))
    want = zoo.reference_input(faces, **case)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.array_equal(got, want)


def test_standardize_is_per_image_mean_and_std():
    faces = zoo.faces(5)
    got = to_model_input(faces, ModelContract(input_range="standardize"))
    want = zoo.reference_input(faces, height=64, width=64, channels=3, input_range="standardize")
    np.testing.assert_allclose(got, want, atol=1e-5)
    flat = got.reshape(5, -1).astype(np.float64)
    np.testing.assert_allclose(flat.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(flat.std(axis=1), 1, atol=1e-4)
    flat_face = np.full((1, 64, 64, 3), 77, np.uint8)  # zero variance: divided by the floor, not by 0
    assert np.array_equal(to_model_input(flat_face, ModelContract(input_range="standardize")), np.zeros((1, 64, 64, 3)))


def test_default_contract_is_exactly_x_over_255():
    """ferreport's own models were trained on x / 255: the conversion must not move a single bit."""
    faces = zoo.faces(4)
    assert np.array_equal(to_model_input(faces, ModelContract()), faces.astype(np.float32) / np.float32(255))
    assert to_model_input(faces[:0], ModelContract(height=48, width=48, channels=1)).shape == (0, 48, 48, 1)


def test_output_kind_tells_logits_from_probabilities():
    proba = softmax(np.random.default_rng(0).normal(size=(6, 7)))
    assert output_kind(proba)[0] == "probabilities"
    assert output_kind(proba * 0.9)[0] == "logits"               # rows sum to 0.9
    assert output_kind(np.abs(proba) - 1e-3)[0] == "logits"      # a negative value
    assert output_kind(proba + 1e-4 / 7)[0] == "probabilities"   # within the 1e-3 tolerance
    assert "negative" in output_kind(np.array([[-1.2, 4.9, 0, 0, 0, 0, 0]]))[1]


def test_reader_maps_model_order_drops_unknown_classes_and_renormalises():
    order = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
    contract = ModelContract(classes=order)
    assert contract.classes[:2] == ("neutral", "happy") and contract.dropped == ("contempt",)
    assert contract.scored == CLASS_NAMES and not contract.missing
    raw = np.random.default_rng(1).normal(size=(5, 8))
    reader = OutputReader(contract, "m.onnx")
    got = reader(raw)
    p = softmax(raw)
    canon = [canonical_class(c) or c for c in order]
    want = np.stack([p[:, canon.index(c)] for c in CLASS_NAMES], axis=1)
    want /= want.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert reader.kind == "logits" and "negative" in reader.evidence
    assert "7 of 8 scored (contempt dropped)" in contract.describe("logits")


def test_reader_for_a_model_without_a_class_leaves_its_column_empty():
    contract = ModelContract(classes=("angry", "fear", "happy", "sad", "surprise", "neutral"))
    assert contract.missing == ("disgust",)
    got = OutputReader(contract, "m")(softmax(np.random.default_rng(2).normal(size=(4, 6))).astype(np.float32))
    assert got.shape == (4, 7) and np.all(got[:, 1] == 0)
    np.testing.assert_allclose(got.sum(axis=1), 1, atol=1e-6)


def test_reader_refuses_nan_and_outputs_that_contradict_the_decision():
    reader = OutputReader(ModelContract(), "/models/m.h5")
    with pytest.raises(ModelError, match=r"/models/m.h5: the model output NaN/inf for 1 of 2 faces \(first: face 1\)"):
        reader(np.array([[0.5] * 7, [np.nan] * 7]))
    reader.decide(softmax(np.ones((2, 7))), "a probe")
    assert reader.kind == "probabilities"
    with pytest.raises(ModelError, match="detected as probabilities.*--outputs logits"):
        reader(np.full((2, 7), -1.0))
    declared = OutputReader(ModelContract(outputs="probabilities"), "m")
    with pytest.raises(ModelError, match="--outputs probabilities, but these outputs have negative values"):
        declared(np.full((1, 7), -0.5))
    with pytest.raises(ModelError, match=r"outputs of shape \(2, 8\), expected \(N, 7\)"):
        OutputReader(ModelContract(), "m")(np.zeros((2, 8)))


def test_forced_logits_apply_softmax_and_probabilities_pass_through_untouched():
    p = softmax(np.random.default_rng(3).normal(size=(3, 7))).astype(np.float32)
    assert OutputReader(ModelContract(outputs="probabilities"), "m")(p) is p
    np.testing.assert_allclose(OutputReader(ModelContract(outputs="logits"), "m")(np.log(p)), p, atol=1e-6)


def test_class_synonyms_and_refusals():
    assert [canonical_class(n) for n in ("Anger", "DISGUSTED", "afraid", "Happiness", "sadness", "Surprised",
                                         "neutrality", "contempt")] == [
        "angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", None]
    assert class_id("sadness") == 4 and class_id("6") == 6 and class_id("7") is None and class_id("contempt") is None
    assert parse_classes("Anger, happy ,CONTEMPT") == ("angry", "happy", "contempt")
    with pytest.raises(UsageError, match="'angry' names the class 'angry' twice"):
        parse_classes("anger,angry")
    with pytest.raises(UsageError, match="none of these is an ExpW class"):
        parse_classes("contempt,pain")
    with pytest.raises(UsageError, match="give the model's class names"):
        parse_classes("angry,,happy")


def test_contract_validation_messages():
    with pytest.raises(UsageError, match="--input-range '0,2': choose one of"):
        ModelContract(input_range="0,2")
    with pytest.raises(ModelError, match="4-channel"):
        ModelContract(channels=4)


def test_spec_files_toml_and_json(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text('input_range = "-1,1"\nclasses = ["anger", "disgust", "fear", "happy", "sad", "surprise", '
                    '"neutral"]\noutputs = "logits"\n')
    values = read_spec(spec)
    contract = ModelContract().with_options(values)
    assert contract.input_range == "-1,1" and contract.classes == CLASS_NAMES and contract.outputs == "logits"
    bad = tmp_path / "bad.toml"
    bad.write_text("input_rnage = '0,1'\n")
    with pytest.raises(UsageError, match=r"bad.toml: unknown key\(s\) input_rnage"):
        read_spec(bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("input_range = \n")
    with pytest.raises(UsageError, match="broken.toml: invalid TOML"):
        read_spec(broken)
    with pytest.raises(UsageError, match="missing.toml: file not found"):
        read_spec(tmp_path / "missing.toml")
    saved = write_contract(tmp_path / "model.keras", ModelContract(channels=1, recipe="r"))
    assert saved == contract_path(tmp_path / "model.keras") == tmp_path / "model.contract.json"
    assert ModelContract.from_dict(json.loads(saved.read_text())) == ModelContract(channels=1, recipe="r")
