"""The real-faces recipe: the compact architecture, warm-up/cosine schedule, benchmark helpers (seconds)."""

from __future__ import annotations

import importlib.util
import itertools
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from ferreport.errors import UsageError
from ferreport.models.model_file import ARCHITECTURES, build_model, keras, load_model
from ferreport.models.schedule import COSINE_FINAL_FRACTION, scheduled_learning_rate
from ferreport.models.training import TrainConfig, train_model
from tests.conftest import pattern_faces

REPO = Path(__file__).resolve().parents[2]


_faces = pattern_faces


def _benchmark():
    spec = importlib.util.spec_from_file_location("quality_benchmark", REPO / "benchmarks" / "quality.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        sys.modules.pop(spec.name, None)
        raise
    return mod


def test_compact_architecture_contract():
    assert "seed" in ARCHITECTURES and "compact" in ARCHITECTURES
    model = build_model("compact")
    assert model.input_shape == (None, 64, 64, 3) and model.output_shape == (None, 7)
    assert model.layers[-1].activation.__name__ == "softmax"
    assert not any(isinstance(layer, keras.layers.Flatten) for layer in model.layers)
    assert model.count_params() < build_model("seed").count_params() / 1.5
    out = model(np.zeros((2, 64, 64, 3), np.float32)).numpy()
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_schedule_config_validation_and_defaults():
    cfg = TrainConfig()  # the recipe chosen on real faces (config.py); the seed recipe is constant, no warm-up
    assert cfg.lr_schedule == "cosine" and cfg.warmup_epochs == 1 and cfg.per_step_schedule
    seed = TrainConfig.from_recipe("seed")
    assert seed.lr_schedule == "constant" and seed.warmup_epochs == 0 and not seed.per_step_schedule
    assert TrainConfig.from_recipe("seed", warmup_epochs=1).per_step_schedule
    assert TrainConfig.from_recipe("seed", lr_schedule="cosine").per_step_schedule
    for bad in ({"lr_schedule": "step"}, {"warmup_epochs": -1}, {"warmup_epochs": 1.5}):
        with pytest.raises(UsageError):
            TrainConfig(**bad)


def test_warmup_then_cosine_schedule():
    cfg = TrainConfig.from_recipe("seed", epochs=10, learning_rate=1e-3, lr_schedule="cosine", warmup_epochs=2)
    spe = 5
    lrs = [scheduled_learning_rate(cfg, 1e-3, s, spe) for s in range(10 * spe)]
    assert lrs[0] == pytest.approx(1e-4)                      # first warm-up step: base / (2 * 5)
    assert lrs[2 * spe - 1] == pytest.approx(1e-3)            # end of warm-up: the full rate
    assert all(a < b for a, b in zip(lrs[: 2 * spe - 1], lrs[1: 2 * spe], strict=True))   # rises during warm-up
    assert all(a >= b for a, b in itertools.pairwise(lrs[2 * spe:]))     # then only falls
    assert lrs[-1] == pytest.approx(1e-3 * COSINE_FINAL_FRACTION)
    const = TrainConfig.from_recipe("seed", learning_rate=1e-3, warmup_epochs=1)
    assert [scheduled_learning_rate(const, 1e-3, s, 4) for s in (0, 3, 4, 100)] == pytest.approx(
        [2.5e-4, 1e-3, 1e-3, 1e-3])
    assert scheduled_learning_rate(TrainConfig.from_recipe("seed"), 3e-4, 7, 4) == 3e-4  # constant: untouched


@pytest.mark.slow
def test_compact_recipe_trains_and_logs_the_schedule(tmp_path):
    xt, yt = _faces(28, 1)
    xv, yv = _faces(14, 2)
    cfg = TrainConfig.from_recipe("seed", epochs=2, batch_size=8, seed=1, arch="compact", strategy="default",
                                  learning_rate=1e-3,
                      lr_schedule="cosine", warmup_epochs=1, early_stopping_patience=8, label_smoothing=0.1)
    result = train_model(xt, yt, xv, yv, cfg, tmp_path, class_weight={i: 1.0 for i in range(7)}, progress=False)
    assert result.epochs_run == 2
    assert np.isfinite(result.history["loss"]).all()
    lrs = result.history["learning_rate"].tolist()
    steps = math.ceil(28 / 8)
    assert lrs[0] == pytest.approx(scheduled_learning_rate(cfg, 1e-3, steps - 1, steps))  # last step of epoch 1
    assert lrs[0] == pytest.approx(1e-3) and lrs[1] < lrs[0]
    model = load_model(result.model_path)
    assert model.name == "compact_cnn"


def test_benchmark_recipes_and_hog_features():
    bench = _benchmark()
    for name, recipe in bench.RECIPES.items():
        assert recipe.arch in ARCHITECTURES, name
        TrainConfig(epochs=recipe.epochs, batch_size=recipe.batch_size, learning_rate=recipe.learning_rate,
                    arch=recipe.arch, label_smoothing=recipe.label_smoothing, lr_schedule=recipe.lr_schedule,
                    warmup_epochs=recipe.warmup_epochs, reduce_lr_patience=recipe.reduce_lr_patience,
                    early_stopping_patience=recipe.early_stopping_patience, monitor=recipe.monitor)
    assert set(bench.DEFAULT_RECIPES) <= set(bench.RECIPES)
    # the benchmark's "default" is what `ferreport train` does with every option left alone
    from ferreport.config import RunConfig

    default, cfg = bench.RECIPES["default"], RunConfig()
    for key in ("arch", "balance", "learning_rate", "batch_size", "epochs", "label_smoothing", "lr_schedule",
                "warmup_epochs", "monitor", "augment", "early_stopping_patience"):
        assert getattr(default, key) == getattr(cfg, key), key
    seed = bench.RECIPES["seed-literal"]
    assert (seed.arch, seed.learning_rate, seed.batch_size, seed.lr_schedule, seed.warmup_epochs) == (
        "seed", 1e-3, 32, "constant", 0)
    x, y = _faces(70, 3)
    y = np.where(np.arange(70) < 40, 3, y)  # imbalanced: class 3 dominates
    full = bench.balance(x, y, "class-weight", seed=0)
    sqrt = bench.balance(x, y, "class-weight-sqrt", seed=0)
    assert sqrt.x is x and sqrt.method == "class-weight-sqrt"
    assert sqrt.class_weight == pytest.approx({c: w ** 0.5 for c, w in full.class_weight.items()})
    assert sqrt.class_weight[3] < 1 < max(sqrt.class_weight.values()) < max(full.class_weight.values())
    feats = bench.hog_features(x)
    assert feats.shape == (70, 1764) and np.isfinite(feats).all()
    rows = {"train": np.arange(0, 42), "val": np.arange(42, 56), "test": np.arange(56, 70)}
    pred, info = bench.hog_baseline(feats, y, rows, seed=0)
    assert pred.shape == (14,) and info["C"] > 0
    scores = bench._scores(y[rows["test"]], pred, seed=0)
    assert 0 <= scores["macro_f1"] <= 1 and scores["macro_f1_ci"][0] <= scores["macro_f1"] <= scores["macro_f1_ci"][1]
