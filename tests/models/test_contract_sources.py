"""Every contract field says where it came from; the fields that change the numbers are warned about
when assumed, and --strict-contract refuses them (issue 34, points 1, 2 and 5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ferreport.cli.main import main
from ferreport.errors import ModelError
from ferreport.models.adapters import open_model
from ferreport.models.contract import ModelContract, write_contract
from tests import model_zoo as zoo
from tests.conftest import write_image

EXPW = "angry,disgust,fear,happy,sad,surprise,neutral"


def test_each_field_names_its_source(tmp_path):
    onnx = zoo.onnx_model(tmp_path)  # 48x48 grey, channels first: the model states its shape
    adapter = open_model(onnx)
    src = adapter.contract_sources()
    assert {k: src[k] for k in ("height", "width", "channels", "layout")} == dict.fromkeys(
        ("height", "width", "channels", "layout"), "model")
    assert src["input_range"] == "assumed" and src["classes"] == "assumed"
    assert src["channel_order"] == "model"  # one channel: nothing to assume
    assert src["outputs"] == "detected"
    spec = tmp_path / "spec.toml"
    spec.write_text('input_range = "-1,1"\n')
    src = open_model(onnx, {"model_spec": spec, "classes": EXPW}).contract_sources()
    assert src["input_range"] == "spec" and src["classes"] == "flag"
    write_contract(onnx, ModelContract(height=48, width=48, channels=1, layout="nchw", input_range="-1,1"))
    src = open_model(onnx).contract_sources()
    assert src["input_range"] == "contract-file" and src["classes"] == "contract-file"
    assert open_model(onnx).assumed_warnings() == []


def test_assumed_fields_are_warned_with_their_flag_and_strict_refuses_them(tmp_path):
    model = zoo.keras_model(tmp_path)  # 64x64 RGB, no contract file
    lines = open_model(model).assumed_warnings()
    assert [line.split(" assumed")[0] for line in lines] == ["input range [0, 1]", "channel order RGB",
                                                             f"class order {EXPW}"]
    assert "--input-range=-1,1" in lines[0] and "--channel-order bgr" in lines[1] and "--classes" in lines[2]
    with pytest.raises(ModelError, match=r"--strict-contract: .* input_range, channel_order, classes; declare them "
                                         r"with --input-range, --channel-order, --classes"):
        open_model(model, {"strict_contract": True})
    declared = {"input_range": "0,1", "channel_order": "rgb", "classes": EXPW, "strict_contract": True}
    assert open_model(model, declared).assumed_warnings() == []


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("faces")
    for i in range(3):
        write_image(d / f"f{i}.png", 64, 64, seed=i)
    return d


def test_the_cli_warns_records_and_reports_the_assumption(tmp_path, folder):
    model = zoo.keras_model(tmp_path)
    r = CliRunner().invoke(main, ["predict", str(folder), "--model", str(model), "--out", str(tmp_path / "a"),
                                  "--faces", "whole", "--format", "html", "--no-saliency", "--json"])
    assert r.exit_code == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:") and " assumed " in line]
    assert len(warnings) == 3 and "--input-range=-1,1" in warnings[0]
    doc = json.loads(r.stdout)
    fields = doc["model_contract"]["fields"]
    assert fields["input_range"] == {"value": "0,1", "source": "assumed"}
    assert fields["height"] == {"value": 64, "source": "model"} and fields["outputs"]["source"] == "detected"
    html = (tmp_path / "a" / "report.html").read_text()
    assert "Model contract assumed, not declared" in html and "input range: assumed" in html

    r = CliRunner().invoke(main, ["predict", str(folder), "--model", str(model), "--out", str(tmp_path / "b"),
                                  "--faces", "whole", "--format", "html", "--no-saliency", "--json",
                                  "--input-range", "0,1", "--channel-order", "rgb", "--classes", EXPW])
    assert r.exit_code == 0 and " assumed " not in r.stderr, r.stderr
    assert json.loads(r.stdout)["model_contract"]["fields"]["input_range"]["source"] == "flag"
    assert "Model contract assumed" not in (tmp_path / "b" / "report.html").read_text()

    r = CliRunner().invoke(main, ["predict", str(folder), "--model", str(model), "--out", str(tmp_path / "c"),
                                  "--faces", "whole", "--format", "none", "--strict-contract"])
    assert r.exit_code == 4 and "--strict-contract" in r.stderr and not (tmp_path / "c").exists()


def _rescaling_model(path: Path, scale: float, offset: float = 0.0) -> Path:
    from ferreport.models.model_file import keras

    inputs = keras.Input((64, 64, 3))
    x = keras.layers.Rescaling(scale, offset=offset)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 5, strides=4)(x))
    keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(x)).save(path)
    return path


@pytest.mark.parametrize(("scale", "offset"), [(1 / 255, 0.0), (1 / 127.5, -1.0)])
def test_a_first_rescaling_layer_says_the_model_takes_raw_pixels(tmp_path, scale, offset):
    import numpy as np

    from ferreport.models.model_file import load_model

    path = _rescaling_model(tmp_path / "raw.keras", scale, offset)
    adapter = open_model(path)
    assert adapter.contract.input_range == "0,255" and adapter.contract_sources()["input_range"] == "model"
    assert not any(line.startswith("input range") for line in adapter.assumed_warnings())
    faces = zoo.faces(6)
    expected = load_model(path).predict(faces.astype(np.float32), verbose=0)  # raw 0..255, as it was trained
    np.testing.assert_allclose(adapter.predict(faces), expected, atol=1e-5)
    declared = open_model(path, {"input_range": "0,1"})  # a declaration still wins, and says where it came from
    assert declared.contract.input_range == "0,1" and declared.contract_sources()["input_range"] == "flag"


def test_a_rescaling_that_is_not_a_pixel_scaler_states_nothing(tmp_path):
    adapter = open_model(_rescaling_model(tmp_path / "one.keras", 1.0))
    assert adapter.contract.input_range == "0,1" and adapter.contract_sources()["input_range"] == "assumed"
