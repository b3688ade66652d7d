"""End to end on the generated sample: train -> evaluate -> report, through the real parts."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from ferreport.cli.main import main
from ferreport.constants import CLASS_NAMES
from ferreport.runs import folder as artifacts

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained_run(sample_dataset, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "run"
    result = CliRunner().invoke(main, ["train", "--data", str(sample_dataset), "--out", str(run_dir), "--epochs", "1",
                                       "--balance", "class-weight", "--seed", "1"])
    assert result.exit_code == 0, result.output
    return run_dir


def test_train_writes_every_artefact(trained_run):
    for name in (artifacts.MODEL, artifacts.MODEL_CONTRACT, artifacts.HISTORY, artifacts.SPLITS, artifacts.CONFIG,
                 artifacts.PROVENANCE, artifacts.DATA_SUMMARY):
        assert (trained_run / name).is_file(), name
    contract = json.loads((trained_run / artifacts.MODEL_CONTRACT).read_text())
    assert (contract["height"], contract["channels"], contract["input_range"]) == (64, 3, "0,1")
    assert contract["classes"] == list(CLASS_NAMES) and "arch" in contract["recipe"]
    history = pd.read_csv(trained_run / artifacts.HISTORY)
    assert list(history.epoch) == [1]
    prov = json.loads((trained_run / artifacts.PROVENANCE).read_text())
    assert prov["seed"] == 1 and len(prov["model_sha256"]) == 64 and len(prov["data_fingerprint"]) == 64
    assert prov["packages"]["tensorflow"] != "not installed" and "ferreport train" in prov["command_line"]
    config = json.loads((trained_run / artifacts.CONFIG).read_text())
    assert config["epochs"] == 1 and config["balance"] == "class-weight"
    # every option left alone is the default recipe (chosen on real faces)
    assert (config["arch"], config["lr_schedule"], config["warmup_epochs"], config["label_smoothing"],
            config["monitor"]) == ("compact-std", "cosine", 1, 0.1, "val_macro_f1")
    assert history["val_macro_f1"].between(0, 1).all()
    splits = pd.read_csv(trained_run / artifacts.SPLITS)
    assert set(splits.split) == {"train", "val", "test"}
    assert (splits.groupby("source").split.nunique() == 1).all()  # grouped by source image


def test_recipe_seed_sets_the_seed_notebooks_options_but_flags_win(sample_dataset, tmp_path):
    run_dir = tmp_path / "seedrun"
    result = CliRunner().invoke(main, ["train", "--data", str(sample_dataset), "--out", str(run_dir),
                                       "--recipe", "seed", "--epochs", "1", "--learning-rate", "5e-4"])
    assert result.exit_code == 0, result.output
    config = json.loads((run_dir / artifacts.CONFIG).read_text())
    assert (config["arch"], config["balance"], config["lr_schedule"], config["warmup_epochs"],
            config["label_smoothing"], config["monitor"]) == ("seed", "smote", "constant", 0, 0.0, "val_loss")
    assert (config["epochs"], config["learning_rate"]) == (1, 5e-4)  # given on the command line: kept
    bad = CliRunner().invoke(main, ["run", "--full", "--recipe", "demo"])
    assert bad.exit_code == 2 and "--full is --recipe seed" in bad.output


def test_run_is_the_demo_recipe_end_to_end(sample_dataset, tmp_path):
    """`ferreport run`: train (demo recipe for options left alone) -> evaluate -> report."""
    run_dir = tmp_path / "demo"
    result = CliRunner().invoke(main, ["run", "--data", str(sample_dataset), "--out", str(run_dir), "--epochs", "1",
                                       "--format", "html"])
    assert result.exit_code == 0, result.output
    config = json.loads((run_dir / artifacts.CONFIG).read_text())
    assert (config["arch"], config["balance"], config["augment"], config["label_smoothing"], config["epochs"]) == (
        "compact-std", "none", False, 0.0, 1)
    assert (run_dir / artifacts.METRICS).is_file() and (run_dir / artifacts.PREDICTIONS).is_file()
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert 'id="confusion"' in html and str(run_dir / "report.html") in result.output
    assert " assumed " not in result.stderr  # ferreport's own model carries its contract: nothing is assumed
    sources = json.loads((run_dir / artifacts.PROVENANCE).read_text())["model_contract"]["sources"]
    assert sources["input_range"] == sources["classes"] == "contract-file"
    assert "Model contract assumed" not in html


def test_evaluate_metrics_equal_sklearn_on_the_written_csv(trained_run):
    result = CliRunner().invoke(main, ["evaluate", str(trained_run)])
    assert result.exit_code == 0, result.output
    pred = pd.read_csv(trained_run / artifacts.PREDICTIONS, keep_default_na=False)
    metrics = json.loads((trained_run / artifacts.METRICS).read_text())
    splits = pd.read_csv(trained_run / artifacts.SPLITS)
    assert len(pred) == metrics["n"] == (splits.split == "test").sum()
    assert list(pred.columns[:5]) == ["source", "face_id", "true_label", "pred_label", "confidence"]
    y_true, y_pred = pred.true_label, pred.pred_label
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-6)
    assert metrics["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, labels=CLASS_NAMES, average="macro",
                                                         zero_division=0), abs=1e-6)
    assert metrics["weighted_f1"] == pytest.approx(f1_score(y_true, y_pred, labels=CLASS_NAMES, average="weighted",
                                                            zero_division=0), abs=1e-6)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=CLASS_NAMES, zero_division=0)
    for i, name in enumerate(CLASS_NAMES):
        entry = metrics["per_class"][name]
        assert entry["precision"] == pytest.approx(p[i], abs=1e-6) and entry["recall"] == pytest.approx(r[i], abs=1e-6)
        assert entry["f1"] == pytest.approx(f[i], abs=1e-6) and entry["support"] == s[i]
    assert metrics["confusion_matrix"] == confusion_matrix(y_true, y_pred, labels=CLASS_NAMES).tolist()
    assert metrics["labels"] == list(CLASS_NAMES)
    proba = pred[list(artifacts.PROBA_COLUMNS)].to_numpy()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-4)
    assert (pred.pred_label == np.asarray(CLASS_NAMES)[proba.argmax(axis=1)]).all()
    assert (trained_run / artifacts.REPORT_HTML).stat().st_size > 10_000
    assert (trained_run / artifacts.REPORT_PDF).read_bytes().startswith(b"%PDF")


def test_report_rerenders_without_tensorflow(trained_run):
    if not (trained_run / artifacts.PREDICTIONS).exists():
        CliRunner().invoke(main, ["evaluate", str(trained_run), "--format", "none"])
    (trained_run / artifacts.REPORT_HTML).unlink(missing_ok=True)
    code = ("import sys; from ferreport.cli.main import main; "
            "sys.argv=['ferreport','report',sys.argv[1],'--format','html']\n"
            "try:\n main()\nexcept SystemExit as e:\n assert not e.code, e.code\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code, str(trained_run)], check=True, timeout=300)
    assert (trained_run / artifacts.REPORT_HTML).is_file()


def test_evaluate_existing_model_on_class_folders(trained_run, faces_sample_dir, tmp_path):
    out = tmp_path / "audit"
    result = CliRunner().invoke(main, ["evaluate", "--model", str(trained_run / artifacts.MODEL), "--data",
                                       str(faces_sample_dir), "--out", str(out), "--format", "none"])
    assert result.exit_code == 0, result.output
    pred = pd.read_csv(out / artifacts.PREDICTIONS, keep_default_na=False)
    assert len(pred) == sum(1 for p in faces_sample_dir.rglob("*") if p.suffix.lower() in {".jpg", ".png", ".jpeg"})
    assert set(pred.true_label) <= set(CLASS_NAMES)


def test_unusable_input_shape_is_refused_with_exit_4(sample_dataset, tmp_path):
    """A 4-channel input is no image ferreport can feed (1 or 3 channels; any size is fine)."""
    inputs = keras.Input((48, 48, 4))
    model = keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(keras.layers.Flatten()(inputs)))
    path = tmp_path / "rgba.keras"
    model.save(path)
    result = CliRunner().invoke(main, ["evaluate", "--model", str(path), "--data", str(sample_dataset)])
    assert result.exit_code == 4
    assert "(None, 48, 48, 4)" in result.output and "1 or 3 channels" in result.output


def test_existing_run_dir_is_not_overwritten(trained_run, sample_dataset):
    result = CliRunner().invoke(main, ["train", "--data", str(sample_dataset), "--out", str(trained_run),
                                       "--epochs", "1"])
    assert result.exit_code == 2 and "--resume" in result.output


def test_interrupted_training_is_marked_not_silent(trained_run, tmp_path):
    """Issue 20, 5c: a run killed after epoch 1 of 3 (no provenance, state.json at epoch 1) is evaluated with a
    warning on stderr, a `training` entry in metrics.json and a notice in the report."""
    import shutil

    run = tmp_path / "interrupted"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("report.*", "predictions.csv", "metrics.json",
                                                                     "faces_pool.npz", "gates.json"))
    (run / artifacts.PROVENANCE).unlink()  # training writes it only when it finishes
    cfg = json.loads((run / artifacts.CONFIG).read_text())
    section = cfg["training"] if isinstance(cfg.get("training"), dict) and "epochs" in cfg["training"] else cfg
    section["epochs"] = 3
    (run / artifacts.CONFIG).write_text(json.dumps(cfg))
    state = json.loads((run / artifacts.CHECKPOINT_DIR / "state.json").read_text())
    assert state["epochs_done"] == 1 and state["stopped"] is None
    result = CliRunner().invoke(main, ["evaluate", str(run), "--format", "html"])
    assert result.exit_code == 0, result.output
    assert "training was interrupted after epoch 1 of 3" in result.stderr
    metrics = json.loads((run / artifacts.METRICS).read_text())
    assert metrics["training"] == {"complete": False, "epochs_run": 1, "epochs": 3}
    assert "Training interrupted after epoch 1 of 3" in (run / artifacts.REPORT_HTML).read_text()

    # the finished run (provenance with epochs_run) carries no such key
    finished = json.loads((trained_run / artifacts.METRICS).read_text()) \
        if (trained_run / artifacts.METRICS).is_file() else {}
    assert "training" not in finished


def test_fail_on_incomplete_turns_an_interrupted_training_into_a_gate_failure(trained_run, tmp_path):
    import shutil

    run = tmp_path / "interrupted"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("report.*", "predictions.csv", "metrics.json",
                                                                     "faces_pool.npz", "gates.json"))
    (run / artifacts.PROVENANCE).unlink()
    cfg = json.loads((run / artifacts.CONFIG).read_text())
    section = cfg["training"] if isinstance(cfg.get("training"), dict) and "epochs" in cfg["training"] else cfg
    section["epochs"] = 3
    (run / artifacts.CONFIG).write_text(json.dumps(cfg))
    junit = tmp_path / "junit.xml"
    result = CliRunner().invoke(main, ["evaluate", str(run), "--format", "html", "--fail-on-incomplete", "--json",
                                       "--junit", str(junit)])
    assert result.exit_code == 1, result.output
    out = json.loads(result.stdout)
    gates = json.loads((run / artifacts.GATES).read_text())["gates"]
    assert [g["passed"] for g in gates] == [False] and "epoch 1 of 3" in gates[0]["message"]
    assert "training complete" in junit.read_text() and "<failure" in junit.read_text()
    assert out["exit_code"] == 1 if "exit_code" in out else True

    # a finished run passes the same gate
    ok = CliRunner().invoke(main, ["evaluate", str(trained_run), "--format", "html", "--fail-on-incomplete"])
    assert ok.exit_code == 0, ok.output
