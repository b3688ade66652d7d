"""The Keras-only definitions: augmentation layers, and the GPU benchmark that builds on them."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ferreport.models import architectures, input_pipeline
from ferreport.models.model_file import keras

REPO = Path(__file__).resolve().parents[2]


def test_training_augments_with_the_shared_definition():
    layers = input_pipeline.seeded_augmentation_layers(3)
    assert [type(x).__name__ for x in layers] == [
        "RandomRotation", "RandomTranslation", "RandomShear", "RandomZoom", "RandomFlip"]
    assert layers[0].factor[1] == pytest.approx(architectures.AUGMENTATION["rotation_degrees"] / 360.0)


def test_augmentation_layers_move_pixels_and_keep_shape():
    rng = np.random.default_rng(0)
    x = rng.random((8, 64, 64, 3)).astype(np.float32)
    y = x
    for layer in architectures.augmentation_layers((1, 2, 3, 4, 5)):
        y = layer(y, training=True)
    y = keras.ops.convert_to_numpy(y)
    assert y.shape == x.shape
    assert np.abs(y - x).mean() > 0.01  # the faces were transformed
    assert y.min() >= -1e-6 and y.max() <= 1 + 1e-6  # nearest fill: no values from outside the face


def test_augmentation_layers_need_five_seeds():
    with pytest.raises(ValueError, match="5 seeds"):
        architectures.augmentation_layers((1, 2))


def test_gpu_benchmark_trains_one_row(tmp_path):
    """benchmarks/gpu_train.py end to end on the CPU (TensorFlow backend), tiny: it must not rot
    between the sessions that have a GPU."""
    out = tmp_path / "gpu.json"
    row = "seed CNN, no augmentation"
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_train.py"), "--faces", "96", "--only", row,
         "--baseline", row, "--json", str(out)],
        capture_output=True, text=True, env=env, timeout=300, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    (result,) = data["results"]
    assert result["name"] == row and result["faces_timed"] == 96 and not result["extrapolated"]
    assert result["faces_per_s"] > 0 and math.isfinite(result["loss"]) and result["vs_baseline"] == 1.0
    assert data["device"]["backend"] == "tensorflow"
    assert row in proc.stdout
