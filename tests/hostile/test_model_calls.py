"""Model calls are bounded: a model that never returns stops the job (exit 4) at --model-timeout; a
contract's input size is checked before anything is allocated; specs and contracts are read guarded
and checked field by field."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from ferreport.errors import ModelError, UsageError
from ferreport.models.adapters import MAX_BATCH_BYTES, open_model
from ferreport.models.contract import read_spec
from tests import model_zoo as zoo
from tests.conftest import write_image
from tests.hostile.conftest import ferreport

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _save(graph, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", zoo.ONNX_OPSET)])
    model.ir_version = zoo.ONNX_IR_VERSION
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def endless_onnx(path: Path) -> Path:
    """A 48×48 grey model whose output waits on a Loop with no trip count and a condition that stays true."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Identity", ["v_in"], ["v_out"])],
        "forever",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [])])
    w = np.full((48 * 48, 7), 0.01, np.float32)
    nodes = [
        helper.make_node("Loop", ["", "keep_going", "zero"], ["v_end"], body=body),
        helper.make_node("Flatten", ["input"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "W"], ["mm"]),
        helper.make_node("Add", ["mm", "v_end"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["scores"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "endless", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 48, 48])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 7])],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.array(True), "keep_going"),
                     numpy_helper.from_array(np.array(0.0, np.float32), "zero")])
    return _save(graph, path)


def any_size_onnx(path: Path) -> Path:
    """An RGB model of any input size (its height and width are symbolic): mean colour -> 7 scores."""
    nodes = [helper.make_node("ReduceMean", ["input"], ["mean"], axes=[2, 3], keepdims=0),
             helper.make_node("MatMul", ["mean", "W"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["scores"], axis=1)]
    graph = helper.make_graph(
        nodes, "any-size", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 7])],
        initializer=[numpy_helper.from_array(np.arange(21, dtype=np.float32).reshape(3, 7), "W")])
    return _save(graph, path)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for i in range(3):
        write_image(folder / f"face{i}.png", 64, 64, seed=i)
    return folder


def test_a_model_that_never_returns_stops_the_job_at_the_timeout_with_exit_4(tmp_path, images):
    model = endless_onnx(tmp_path / "endless.onnx")
    done = ferreport("predict", images, "--model", model, "--out", tmp_path / "audit", "--faces", "whole",
                     "--format", "none", "--model-timeout", "3")
    assert done.code == 4, done.stderr
    assert "endless.onnx: the model did not return within 3 s (--model-timeout)" in done.error
    assert not (tmp_path / "audit").exists()


def test_a_contract_too_large_for_memory_is_refused_with_the_figure(tmp_path, images):
    model = any_size_onnx(tmp_path / "any.onnx")
    spec = tmp_path / "huge.toml"
    spec.write_text("height = 4096\nwidth = 4096\n")
    done = ferreport("predict", images, "--model", model, "--model-spec", spec, "--out", tmp_path / "audit",
                     "--faces", "whole", "--format", "none")
    assert done.code == 4, done.stderr
    assert "input 4096×4096×3 takes 192 MiB per face as float32, over the limit of 16 MiB" in done.error


def test_a_large_input_shrinks_the_batch_to_fit_the_memory_bound(tmp_path):
    model = any_size_onnx(tmp_path / "any.onnx")
    spec = tmp_path / "big.toml"
    spec.write_text("height = 1024\nwidth = 1024\n")
    adapter = open_model(model, {"model_spec": spec})
    per_face = 1024 * 1024 * 3 * 4
    assert adapter.batch_for(256) == MAX_BATCH_BYTES // per_face == 21
    faces = zoo.faces(30)
    proba = adapter.predict(faces, batch_size=256)
    np.testing.assert_allclose(proba, open_model(model, {"model_spec": spec}).predict(faces, batch_size=1), atol=1e-5)


def test_a_model_spec_that_is_a_fifo_is_exit_2_without_opening_it_for_reading(tmp_path, images):
    spec = tmp_path / "spec.toml"
    os.mkfifo(spec)
    model = zoo.onnx_model(tmp_path)
    done = ferreport("predict", images, "--model", model, "--model-spec", spec, "--out", tmp_path / "audit",
                     "--faces", "whole", "--format", "none")
    assert done.code == 2, done.stderr
    assert f"--model-spec {spec}: not a regular file" in done.error


def test_a_model_spec_that_links_to_a_device_or_is_too_large_is_refused_unread(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.symlink_to("/dev/zero")
    with pytest.raises(UsageError, match=rf"--model-spec {spec}: not a regular file"):
        read_spec(spec)
    big = tmp_path / "big.toml"
    with open(big, "wb") as fh:
        fh.truncate(10 * 1024**2)
    with pytest.raises(UsageError, match=r"big.toml: is 10 MiB, over the limit of 65,536 bytes"):
        read_spec(big)


@pytest.mark.parametrize(("text", "field"), [
    ('{"classes": [1, 2, 3, 4, 5, 6, 7]}', "field classes"),
    ('{"classes": ["happy", "happy"]}', "field classes"),
    ('{"classes": [""]}', "field classes"),
    ('{"height": "64"}', "field height"),
    ('{"height": 100000}', "field height"),
    ('{"input_range": "0,2"}', "field input_range"),
    ('{"channels": 4}', "field channels"),
    ('{"outputs": ["logits"]}', "field outputs"),
])
def test_spec_fields_are_checked_by_type_and_value(tmp_path, text, field):
    spec = tmp_path / "spec.json"
    spec.write_text(text)
    with pytest.raises(UsageError, match=rf"--model-spec {spec}: {field}"):
        read_spec(spec)


def test_a_contract_file_beside_a_model_with_integer_classes_is_exit_4_naming_it(tmp_path):
    model = zoo.onnx_model(tmp_path)
    contract = tmp_path / "m.contract.json"
    contract.write_text(json.dumps({"classes": list(range(7))}))
    with pytest.raises(ModelError, match=rf"{contract}: field classes\[0\]: 0 is not of type 'string'"):
        open_model(model)
