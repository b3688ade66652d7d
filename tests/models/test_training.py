"""ferreport.models.training: collapse detection, schedule, resumable training (tiny, real TF)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from ferreport.errors import DatasetError, UsageError
from ferreport.models.checkpoint import TrainState as _State
from ferreport.models.collapse import detect_collapse
from ferreport.models.history import HISTORY_COLUMNS
from ferreport.models.model_file import load_model
from ferreport.models.schedule import schedule_step as _schedule_step
from ferreport.models.training import TrainConfig, resolve_strategy, train_model
from ferreport.runs import folder as artifacts
from tests.conftest import interrupt_in_epoch, pattern_faces

LN7 = math.log(7)


_faces = pattern_faces


@pytest.fixture(scope="module")
def data():
    xt, yt = _faces(40, 1)
    xv, yv = _faces(16, 2)
    return xt, yt, xv, yv


CFG = TrainConfig.from_recipe("seed", epochs=2, batch_size=8, seed=3, strategy="default")


# --------------------------------------------------------------------------- config


def test_config_defaults_and_validation():
    cfg = TrainConfig()  # the defaults are the CLI's: the recipe chosen on real faces
    assert (cfg.epochs, cfg.batch_size, cfg.learning_rate, cfg.augment, cfg.seed, cfg.arch, cfg.strategy) == (
        25, 32, 1e-3, True, 0, "compact-std", "auto")
    assert cfg.label_smoothing == 0.1 and cfg.early_stopping_patience is None and cfg.reduce_lr_patience is None
    assert (cfg.lr_schedule, cfg.warmup_epochs, cfg.monitor) == ("cosine", 1, "val_macro_f1")
    seed = TrainConfig.from_recipe("seed")  # TrainConfig's defaults before they became the CLI's
    assert (seed.epochs, seed.arch, seed.label_smoothing, seed.lr_schedule, seed.warmup_epochs, seed.monitor) == (
        50, "seed", 0.0, "constant", 0, "val_loss")
    for bad in ({"epochs": 0}, {"batch_size": -1}, {"learning_rate": 0.0}, {"strategy": "tpu"},
                {"label_smoothing": 1.0}, {"early_stopping_patience": 0}, {"monitor": "val_f1"}):
        with pytest.raises(UsageError):
            TrainConfig(**bad)


def test_resolve_strategy_on_cpu():
    assert resolve_strategy("mirrored").num_replicas_in_sync >= 1
    assert resolve_strategy("default").num_replicas_in_sync == 1
    with pytest.raises(UsageError):
        resolve_strategy("tpu")


# --------------------------------------------------------------------------- collapse


def _history(loss, val_acc):
    n = len(loss)
    return pd.DataFrame({"epoch": range(1, n + 1), "loss": loss, "accuracy": 0.3, "val_loss": loss,
                         "val_accuracy": val_acc, "learning_rate": 1e-3, "seconds": 1.0})


def test_collapse_flags_constant_loss():
    report = detect_collapse(_history([LN7 + 0.01, LN7 - 0.02, LN7], [0.5, 0.5, 0.5]), None)
    assert report is not None and any("1.946" in r for r in report.reasons)
    assert report.likely_causes


def test_collapse_flags_prior_entropy_loss():
    counts = np.array([100, 10, 10, 800, 50, 20, 10])
    p = counts / counts.sum()
    h = float(-(p * np.log(p)).sum())
    report = detect_collapse(_history([h] * 6, [0.6] * 6), None, train_label_counts=counts, learning_rate=1e-3)
    assert report is not None and any("prior" in r for r in report.reasons)
    assert any("imbalance" in c for c in report.likely_causes)
    assert any("learning rate" in c for c in report.likely_causes)


def test_collapse_flags_one_class_predictions():
    healthy = _history([1.8, 1.5, 1.2, 1.0, 0.9], [0.3, 0.4, 0.5, 0.55, 0.6])
    counts = np.array([0, 0, 0, 95, 5, 0, 0])
    report = detect_collapse(healthy, counts, train_label_counts=np.array([50, 5, 20, 400, 60, 30, 90]))
    assert report is not None and any("95%" in r and "happy" in r for r in report.reasons)
    assert any("majority training class 'happy'" in c for c in report.likely_causes)


def test_collapse_flags_chance_accuracy_and_nan():
    report = detect_collapse(_history([1.7, 1.6, 1.5], [0.40, 0.41, 0.40]), None,
                             val_label_counts=np.array([10, 1, 5, 40, 20, 10, 14]))
    assert report is not None and any("majority-class rate" in r for r in report.reasons)
    report = detect_collapse(_history([1.7, float("nan")], [0.5, 0.5]), None)
    assert report is not None and any("NaN" in r for r in report.reasons)


def test_collapse_not_flagged_for_healthy_run():
    healthy = _history([1.8, 1.5, 1.2, 1.0, 0.9], [0.3, 0.4, 0.5, 0.55, 0.6])
    counts = np.array([10, 2, 8, 40, 15, 10, 15])
    assert detect_collapse(healthy, counts, train_label_counts=counts * 10, val_label_counts=counts,
                           learning_rate=1e-3) is None


def test_schedule_reduces_lr_and_stops_early():
    cfg = TrainConfig.from_recipe("seed", epochs=10, early_stopping_patience=3, reduce_lr_patience=2,
                                  learning_rate=1e-3)
    st = _State(cfg, {}, None)
    improved = [_schedule_step(st, {"loss": 1.0, "val_loss": v}, cfg) for v in (1.0, 0.9, 0.95, 0.96)]
    assert improved == [True, True, False, False]
    assert st.learning_rate == pytest.approx(5e-4) and st.stopped is None
    _schedule_step(st, {"loss": 1.0, "val_loss": 0.97}, cfg)
    assert st.stopped == "early_stopping" and st.best_value == 0.9
    st2 = _State(cfg, {}, None)
    _schedule_step(st2, {"loss": float("nan"), "val_loss": float("nan")}, cfg)
    assert st2.stopped == "nan_loss"


def test_schedule_by_macro_f1_keeps_the_highest_and_ignores_the_loss():
    cfg = TrainConfig.from_recipe("seed", epochs=10, early_stopping_patience=2, monitor="val_macro_f1")
    st = _State(cfg, {}, None)
    rows = [(1.0, 0.30), (0.8, 0.25), (1.2, 0.40), (1.3, float("nan")), (0.5, 0.40)]
    improved = [_schedule_step(st, {"loss": 1.0, "val_loss": vl, "val_macro_f1": f1}, cfg) for vl, f1 in rows]
    # a lower loss does not count, NaN never improves, a tie is no improvement
    assert improved == [True, False, True, False, False]
    assert st.best_value == 0.40 and st.stopped == "early_stopping"


# --------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def full_run(data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("full")
    result = train_model(*data, CFG, run_dir, progress=False)
    return run_dir, result


@pytest.mark.slow
def test_training_writes_artefacts(full_run, data):
    run_dir, result = full_run
    assert result.model_path == run_dir / artifacts.MODEL and result.model_path.is_file()
    assert result.epochs_run == 2 and result.resumed_from_epoch == 0
    history = pd.read_csv(run_dir / artifacts.HISTORY)
    assert list(history.columns) == list(HISTORY_COLUMNS)
    assert history["epoch"].tolist() == [1, 2]
    assert history[list(HISTORY_COLUMNS)].notna().all().all()
    assert result.best_epoch == int(history.loc[history["val_loss"].idxmin(), "epoch"])
    pd.testing.assert_frame_equal(result.history, history, check_dtype=False)
    model = load_model(result.model_path)  # safe mode, shape checks
    assert model.output_shape == (None, 7)
    ckpt = run_dir / artifacts.CHECKPOINT_DIR
    state = json.loads((ckpt / "state.json").read_text())
    assert state["epochs_done"] == 2 and state["seed"] == CFG.seed
    assert (ckpt / state["last_file"]).is_file() and (ckpt / state["best_file"]).is_file()
    assert not list(run_dir.rglob(".*.part*"))  # no temporary files left behind
    assert result.val_pred_counts.sum() == len(data[2])


@pytest.mark.slow
def test_interrupted_training_resumes_to_the_same_result(full_run, data, tmp_path, capsys):
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train_model(*data, CFG, run_dir, progress=False, callbacks=[interrupt_in_epoch(1, 1)])
    assert pd.read_csv(run_dir / artifacts.HISTORY)["epoch"].tolist() == [1]
    assert (run_dir / artifacts.MODEL).is_file()
    assert json.loads((run_dir / artifacts.CHECKPOINT_DIR / "state.json").read_text())["epochs_done"] == 1
    capsys.readouterr()

    result = train_model(*data, CFG, run_dir, resume=True, progress=True)
    err = capsys.readouterr().err
    assert "resuming" in err and "epoch 2/2" in err and "epoch 1/2" not in err
    history = pd.read_csv(run_dir / artifacts.HISTORY)
    assert history["epoch"].tolist() == [1, 2] and result.resumed_from_epoch == 1
    assert load_model(result.model_path).output_shape == (None, 7)
    # same data order, augmentation, dropout and optimizer state as the uninterrupted run
    _, full = full_run
    np.testing.assert_allclose(history["loss"], full.history["loss"], rtol=1e-3)
    np.testing.assert_allclose(history["val_loss"], full.history["val_loss"], rtol=1e-3)


@pytest.mark.slow
def test_resume_checks_and_finished_run(full_run, data, capsys):
    run_dir, full = full_run
    capsys.readouterr()
    again = train_model(*data, CFG, run_dir, resume=True, progress=None)  # nothing left to train
    err = capsys.readouterr().err  # stderr is not a TTY under pytest: no progress lines
    assert "epoch 1/2" not in err and "epoch 2/2" not in err and "resuming" not in err
    pd.testing.assert_frame_equal(again.history, full.history)
    assert again.best_epoch == full.best_epoch and again.resumed_from_epoch == 2
    with pytest.raises(UsageError, match="batch_size=8"):
        train_model(*data, TrainConfig.from_recipe("seed", epochs=2, batch_size=4, seed=3, strategy="default"),
                    run_dir, resume=True)
    xt, yt, xv, yv = data
    with pytest.raises(DatasetError, match="differ"):
        train_model(xt[:-1], yt[:-1], xv, yv, CFG, run_dir, resume=True)


@pytest.mark.slow
def test_macro_f1_monitor_keeps_the_epoch_with_the_best_validation_macro_f1(data, tmp_path):
    from sklearn.metrics import f1_score

    from ferreport.models.prediction import predict_proba

    xt, yt, xv, yv = data
    cfg = TrainConfig.from_recipe("seed", epochs=3, batch_size=8, seed=5, strategy="default", monitor="val_macro_f1",
                      learning_rate=3e-3)
    result = train_model(xt, yt, xv, yv, cfg, tmp_path / "run", progress=False)
    f1 = result.history["val_macro_f1"].to_numpy()
    assert np.isfinite(f1).all() and ((f1 >= 0) & (f1 <= 1)).all()
    assert result.best_epoch == int(result.history["epoch"][int(np.argmax(f1))])  # first of the highest
    # the saved model is that epoch's: its validation macro-F1 is the recorded best
    pred = predict_proba(load_model(result.model_path), xv).argmax(axis=1)
    assert f1_score(yv, pred, labels=list(range(7)), average="macro", zero_division=0) == pytest.approx(f1.max())
    state = json.loads((tmp_path / "run" / artifacts.CHECKPOINT_DIR / "state.json").read_text())
    assert state["best_value"] == pytest.approx(f1.max()) and state["config"]["monitor"] == "val_macro_f1"


@pytest.mark.slow
def test_checkpoint_from_before_the_monitor_resumes(full_run, data, tmp_path):
    """A checkpoint written before ``monitor`` existed (best_val_loss, no config key) still resumes."""
    import shutil

    run_dir = tmp_path / "old"
    shutil.copytree(full_run[0], run_dir)
    state_path = run_dir / artifacts.CHECKPOINT_DIR / "state.json"
    state = json.loads(state_path.read_text())
    state["best_val_loss"] = state.pop("best_value")
    del state["config"]["monitor"]
    for row in state["history"]:
        del row["val_macro_f1"]
    state_path.write_text(json.dumps(state))
    result = train_model(*data, TrainConfig.from_recipe("seed", epochs=3, batch_size=8, seed=3, strategy="default"),
                         run_dir, resume=True, progress=False)
    assert result.resumed_from_epoch == 2 and result.history["epoch"].tolist() == [1, 2, 3]
    assert result.history["val_macro_f1"].isna().tolist() == [True, True, False]


@pytest.mark.slow
def test_mirrored_strategy_on_cpu(data, tmp_path):
    xt, yt, xv, yv = data
    cfg = TrainConfig.from_recipe("seed", epochs=1, batch_size=8, seed=0, strategy="mirrored", augment=False)
    result = train_model(xt[:16], yt[:16], xv[:8], yv[:8], cfg, tmp_path / "m", progress=False,
                         class_weight={i: 1.0 for i in range(7)})
    assert result.epochs_run == 1 and load_model(result.model_path).output_shape == (None, 7)
