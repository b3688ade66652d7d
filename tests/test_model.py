"""ferreport.model: the seed architecture, safe loading, fingerprints."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ferreport.errors import ModelError
from ferreport.model import ARCHITECTURES, build_model, keras, load_model, model_sha256

SEED_LAYERS = [
    "InputLayer",
    "Conv2D", "BatchNormalization", "MaxPooling2D", "Dropout",
    "Conv2D", "BatchNormalization", "MaxPooling2D", "Dropout",
    "Conv2D", "BatchNormalization", "MaxPooling2D", "Dropout",
    "Flatten", "Dense", "Dropout", "Dense",
]


def _tiny(input_shape=(64, 64, 3), classes=7, lam: bool = False) -> keras.Model:
    inp = keras.Input(shape=input_shape)
    x = keras.layers.Lambda(lambda t: t * 2.0)(inp) if lam else inp
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inp, out)


@pytest.fixture(scope="module")
def seed_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "seed.keras"
    build_model().save(path)
    return path


def test_seed_architecture_is_the_seed_recipe():
    model = build_model()
    assert "seed" in ARCHITECTURES
    assert [type(layer).__name__ for layer in [model.layers[0], *model.layers[1:]]] == SEED_LAYERS
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [32, 64, 128]
    assert all(c.kernel_size == (3, 3) and c.padding == "same" and c.activation.__name__ == "relu" for c in convs)
    drops = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert drops == [0.25, 0.25, 0.25, 0.5]
    assert model.layers[-1].activation.__name__ == "softmax"
    assert model.input_shape == (None, 64, 64, 3)
    assert model.output_shape == (None, 7)
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert model.loss.get_config()["label_smoothing"] == 0.0


def test_build_model_options_and_unknown_arch():
    model = build_model(learning_rate=1e-4, label_smoothing=0.1)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-4)
    assert model.loss.get_config()["label_smoothing"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("nope")


def test_load_model_roundtrip_and_sha(seed_file):
    model = load_model(seed_file)
    assert model.output_shape == (None, 7)
    digest = model_sha256(seed_file)
    assert len(digest) == 64 and digest == model_sha256(seed_file)
    with pytest.raises(ModelError):
        model_sha256(seed_file.with_name("missing.keras"))


def test_refuses_wrong_input_shape(tmp_path):
    path = tmp_path / "gray48.keras"
    _tiny((48, 48, 1)).save(path)
    with pytest.raises(ModelError) as err:
        load_model(path)
    msg = str(err.value)
    assert "(None, 48, 48, 1)" in msg and "(None, 64, 64, 3)" in msg and str(path) in msg
    assert err.value.exit_code == 4 and "\n" not in msg


def test_refuses_wrong_class_count(tmp_path):
    path = tmp_path / "five.keras"
    _tiny(classes=5).save(path)
    with pytest.raises(ModelError, match=r"output shape is \(None, 5\), expected \(None, 7\)"):
        load_model(path)


def test_refuses_lambda_under_safe_mode(tmp_path):
    path = tmp_path / "lambda.keras"
    _tiny(lam=True).save(path)
    with pytest.raises(ModelError, match="--unsafe-model"):
        load_model(path)
    assert load_model(path, safe_mode=False).output_shape == (None, 7)


@pytest.mark.parametrize("kind", ["garbage", "truncated", "zip_without_config"])
def test_refuses_corrupt_files(tmp_path, seed_file, kind):
    path = tmp_path / "bad.keras"
    if kind == "garbage":
        path.write_bytes(b"this is not a model")
    elif kind == "truncated":
        data = seed_file.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("readme.txt", "hello")
    with pytest.raises(ModelError) as err:
        load_model(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["model.pkl", "model.pickle"])
def test_never_loads_pickles(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\x80\x04K\x01.")  # a valid pickle of the int 1
    with pytest.raises(ModelError, match="pickle"):
        load_model(path)


def test_refuses_missing_folder_and_unknown_suffix(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "missing.keras")
    with pytest.raises(ModelError, match="folder"):
        load_model(tmp_path)
    other = tmp_path / "model.onnx"
    other.write_bytes(b"x")
    with pytest.raises(ModelError, match="unsupported model format"):
        load_model(other)


def test_legacy_h5(tmp_path):
    good = tmp_path / "good.h5"
    _tiny().save(good)
    assert load_model(good).output_shape == (None, 7)
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(ModelError, match="legacy HDF5"):
        load_model(bad)


def test_import_is_quiet():
    """Importing the package does not print TensorFlow's C++ start-up chatter."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    repo = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-c", "import ferreport.model"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_compact_std_sees_faces_alike_in_any_light(tmp_path):
    """Per-image standardisation: brightness and contrast changes do not change the prediction."""
    import numpy as np

    keras.utils.set_random_seed(0)
    model = build_model("compact-std")
    assert model.output_shape == (None, 7) and model.get_layer("standardize") is not None
    rng = np.random.default_rng(0)
    x = rng.uniform(0.2, 0.6, (4, 64, 64, 3)).astype("float32")
    p = model.predict(x, verbose=0)
    standardize = keras.Model(model.input, model.get_layer("standardize").output)
    z = standardize.predict(x, verbose=0)
    np.testing.assert_allclose(z.mean(axis=(1, 2, 3)), 0, atol=1e-4)
    var = x.var(axis=(1, 2, 3))
    np.testing.assert_allclose(z.std(axis=(1, 2, 3)), np.sqrt(var / (var + 1e-3)), rtol=1e-3)  # epsilon 1e-3
    plain = build_model("compact")  # without the standardisation the output moves with the light
    brighter, contrastier = (x + 0.2).astype("float32"), (1.6 * x - 0.25).astype("float32")
    np.testing.assert_allclose(standardize.predict(brighter, verbose=0), z, atol=1e-4)  # exactly
    zc = standardize.predict(contrastier, verbose=0)  # up to the epsilon's slight scale change
    for a, b in zip(zc, z):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9999
    moved_std = np.abs(model.predict(brighter, verbose=0) - p).max()
    moved_plain = np.abs(plain.predict(brighter, verbose=0) - plain.predict(x, verbose=0)).max()
    assert moved_std < moved_plain / 10, (moved_std, moved_plain)
    model.save(tmp_path / "m.keras")
    again = load_model(tmp_path / "m.keras")  # safe mode: plain Keras layers only
    np.testing.assert_allclose(again.predict(x, verbose=0), p, atol=1e-6)
