"""ferreport.models.prediction: batched inference on uint8 faces."""

from __future__ import annotations

import numpy as np
import pytest

from ferreport.models.model_file import build_model
from ferreport.models.prediction import predict_proba


@pytest.fixture(scope="module")
def model():
    return build_model()


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    return np.random.default_rng(5).integers(0, 256, (37, 64, 64, 3), dtype=np.uint8)


def test_matches_model_predict(model, faces):
    proba = predict_proba(model, faces, batch_size=8)  # 37 = 4 full batches + 5
    assert proba.shape == (37, 7) and proba.dtype == np.float32
    expected = model.predict(faces / 255.0, verbose=0)
    np.testing.assert_allclose(proba, expected, atol=1e-4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    # another batch size: the same numbers to float32 rounding (oneDNN blocks a batch by its size, so the
    # last bits may differ; a wrong batch split or order would differ by far more)
    np.testing.assert_allclose(predict_proba(model, faces, batch_size=256), proba, rtol=0, atol=1e-6)


def test_empty_input(model):
    out = predict_proba(model, np.zeros((0, 64, 64, 3), np.uint8))
    assert out.shape == (0, 7) and out.dtype == np.float32


def test_memory_mapped_input(model, faces, tmp_path):
    path = tmp_path / "faces.u8"
    mm = np.memmap(path, dtype=np.uint8, mode="w+", shape=faces.shape)
    mm[:] = faces
    mm.flush()
    ro = np.memmap(path, dtype=np.uint8, mode="r", shape=faces.shape)
    np.testing.assert_allclose(predict_proba(model, ro, batch_size=16), predict_proba(model, faces), atol=1e-6)


def test_rejects_wrong_input(model, faces):
    with pytest.raises(ValueError, match="uint8"):
        predict_proba(model, faces.astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        predict_proba(model, faces[:, :48])
