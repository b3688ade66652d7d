"""ferreport.models.model_file: the seed architecture, safe loading, fingerprints."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ferreport.errors import ModelError
from ferreport.models.model_file import ARCHITECTURES, build_model, keras, load_model, model_sha256

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
    with pytest.raises(ModelError, match="not an HDF5 file"):
        load_model(bad)


def test_import_is_quiet():
    """Importing the package does not print TensorFlow's C++ start-up chatter."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", "import ferreport.models.model_file"], cwd=repo, env=env,
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
    for a, b in zip(zc, z, strict=True):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9999
    moved_std = np.abs(model.predict(brighter, verbose=0) - p).max()
    moved_plain = np.abs(plain.predict(brighter, verbose=0) - plain.predict(x, verbose=0)).max()
    assert moved_std < moved_plain / 10, (moved_std, moved_plain)
    model.save(tmp_path / "m.keras")
    again = load_model(tmp_path / "m.keras")  # safe mode: plain Keras layers only
    np.testing.assert_allclose(again.predict(x, verbose=0), p, atol=1e-6)


# --------------------------------------------------------------------------- issue 20, point 4: inspect before loading


def _declare_size(path: Path, declared: int) -> None:
    """Patch every zip header of ``path`` so its members *declare* ``declared`` uncompressed bytes."""
    data = bytearray(path.read_bytes())
    for sig, offset in ((b"PK\x01\x02", 24), (b"PK\x03\x04", 22)):
        start = 0
        while (at := data.find(sig, start)) >= 0:
            data[at + offset:at + offset + 4] = declared.to_bytes(4, "little")
            start = at + 4
    path.write_bytes(bytes(data))


def _keras_never_called(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("Keras opened an archive that should have been refused first")
    monkeypatch.setattr(keras.saving, "load_model", boom)


def test_archive_declaring_a_huge_member_is_refused_before_keras_opens_it(tmp_path, seed_file, monkeypatch):
    import time

    from ferreport.models.model_file import MAX_MODEL_UNCOMPRESSED

    bomb = tmp_path / "bomb.keras"
    bomb.write_bytes(seed_file.read_bytes())
    _declare_size(bomb, 0xFFFF_FFF0)  # each member claims ~4 GiB; the file stays small
    assert bomb.stat().st_size < 10 * 1024**2
    _keras_never_called(monkeypatch)
    t0 = time.monotonic()
    with pytest.raises(ModelError) as err:
        load_model(bomb)
    assert time.monotonic() - t0 < 5
    msg = str(err.value)
    assert str(bomb) in msg and "\n" not in msg
    assert f"{MAX_MODEL_UNCOMPRESSED / 1024**3:.1f} GiB" in msg and "limit" in msg


def test_real_zero_bomb_is_refused_by_its_declared_size(tmp_path):
    """A real highly compressible member (64 MiB of zeros in ~64 KiB) against a lowered limit."""
    from ferreport.models.model_file import check_model_archive

    bomb = tmp_path / "zeros.keras"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("model.weights.h5", "w") as fh:
        chunk = bytes(1 << 20)
        for _ in range(64):
            fh.write(chunk)
    assert bomb.stat().st_size < 1024**2
    with pytest.raises(ModelError, match=r"64 MiB|0\.1 GiB|limit"):
        check_model_archive(bomb, max_bytes=32 * 1024**2)
    check_model_archive(bomb)  # within the real limit


def test_archive_with_too_many_members_is_refused(tmp_path, monkeypatch):
    from ferreport.models.model_file import MAX_MODEL_MEMBERS

    many = tmp_path / "many.keras"
    with zipfile.ZipFile(many, "w") as zf:
        for i in range(MAX_MODEL_MEMBERS + 1):
            zf.writestr(f"m{i}", b"")
    _keras_never_called(monkeypatch)
    with pytest.raises(ModelError, match=f"{MAX_MODEL_MEMBERS + 1} members.*limit of {MAX_MODEL_MEMBERS}"):
        load_model(many)


@pytest.mark.parametrize("name", ["fifo.keras"])
def test_fifo_model_is_refused_without_blocking(tmp_path, name):
    import threading

    fifo = tmp_path / name
    os.mkfifo(fifo)
    link = tmp_path / ("link-" + name)
    link.symlink_to(fifo)
    for path in (fifo, link):
        caught: list[BaseException] = []
        t = threading.Thread(
            target=lambda p=path, caught=caught: caught.append(pytest.raises(ModelError, load_model, p).value),
            daemon=True)
        t.start()
        t.join(20)
        if t.is_alive():  # unblock the reader, then fail
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)
            t.join(5)
            pytest.fail(f"load_model({path}) blocked on a FIFO")
        assert caught and "not a regular file" in str(caught[0]) and str(path) in str(caught[0])


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_weights_are_refused(tmp_path, bad):
    model = _tiny()
    dense = model.layers[-1]
    kernel = np.array(dense.kernel.numpy())
    kernel[0, 0] = bad
    dense.kernel.assign(kernel)
    path = tmp_path / "diverged.keras"
    model.save(path)
    with pytest.raises(ModelError) as err:
        load_model(path)
    assert str(path) in str(err.value) and "NaN/inf" in str(err.value) and "\n" not in str(err.value)


def _overflowing_model(path: Path) -> Path:
    """Finite weights whose outputs overflow to inf, so softmax gives NaN."""
    model = _tiny()
    dense = model.layers[-1]
    dense.kernel.assign(np.full(dense.kernel.shape, 3e38, np.float32))
    dense.bias.assign(np.full(dense.bias.shape, 3e38, np.float32))
    model.save(path)
    return path


def test_nan_outputs_are_refused_naming_the_model(tmp_path):
    import pandas as pd

    from ferreport.evaluation.evaluate import evaluate_faces

    path = _overflowing_model(tmp_path / "overflow.keras")
    model = load_model(path)  # the weights are finite: loading succeeds
    faces = np.full((3, 64, 64, 3), 255, np.uint8)
    table = pd.DataFrame({"source": ["a.jpg", "b.jpg", "c.jpg"], "face_id": [0, 0, 0], "label": [0, 1, 2]})
    out = tmp_path / "run"
    out.mkdir()
    with pytest.raises(ModelError) as err:
        evaluate_faces(model, faces, table, out, n_resamples=10, source=path)
    assert str(path) in str(err.value) and "NaN/inf" in str(err.value)
    assert list(out.iterdir()) == []  # nothing written


def test_cli_nan_weight_model_exits_4_with_one_json_object(tmp_path, sample_dataset):
    from click.testing import CliRunner

    from ferreport.cli.main import main

    model = _tiny()
    model.layers[-1].kernel.assign(np.full(model.layers[-1].kernel.shape, np.nan, np.float32))
    path = tmp_path / "nan.keras"
    model.save(path)
    res = CliRunner().invoke(main, ["evaluate", "--json", "--model", str(path), "--data", str(sample_dataset),
                                    "--out", str(tmp_path / "run"), "--format", "html"])
    assert res.exit_code == 4, res.output
    import json as _json
    obj = _json.loads(res.stdout)
    assert str(path) in str(obj)


def test_predict_refuses_nan_outputs_with_exit_4(tmp_path):
    """The folder audit checks the model's outputs too (local engine): exit 4 naming the model, not exit 70."""
    import cv2
    from click.testing import CliRunner

    from ferreport.cli.main import main

    path = _overflowing_model(tmp_path / "overflow.keras")
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((64, 64, 3), 200, np.uint8))
    res = CliRunner().invoke(main, ["predict", str(folder), "--model", str(path), "--faces", "whole",
                                    "--out", str(tmp_path / "audit"), "--format", "none", "--workers", "1"])
    assert res.exit_code == 4, res.output
    assert str(path) in res.stderr and "NaN/inf" in res.stderr
