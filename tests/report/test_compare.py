"""`ferreport compare`: paired deltas, McNemar, confusion difference, flipped faces (no TensorFlow)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy.stats import binomtest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from ferreport.cli.main import main
from ferreport.constants import CLASS_NAMES
from ferreport.report.compare import build_compare_context, compare_runs
from ferreport.runs import folder as artifacts
from tests.report.run_dirs import make_run_dir


def _read(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / artifacts.PREDICTIONS, keep_default_na=False, dtype={"face_id": str, "source": str})


def make_pair(root: Path, n: int = 150) -> tuple[Path, Path]:
    """Run A from the report fixture; run B = the same faces, some mistakes fixed and some new ones."""
    a = make_run_dir(root / "A", n=n, seed=0)
    b = root / "B"
    shutil.copytree(a, b)
    df = _read(b)
    rng = np.random.default_rng(7)
    wrong = np.flatnonzero(df.true_label != df.pred_label)
    right = np.flatnonzero(df.true_label == df.pred_label)
    fix = rng.choice(wrong, size=len(wrong) // 2, replace=False)
    brk = rng.choice(right, size=len(right) // 10, replace=False)
    df.loc[fix, "pred_label"] = df.loc[fix, "true_label"]
    names = np.asarray(CLASS_NAMES)
    df.loc[brk, "pred_label"] = [names[(CLASS_NAMES.index(t) + 1) % 7] for t in df.loc[brk, "true_label"]]
    df = df.sample(frac=1.0, random_state=1)  # row order does not matter: faces pair by (source, face_id)
    df.to_csv(b / artifacts.PREDICTIONS, index=False)
    (b / artifacts.FACES_POOL).unlink()
    return a, b


def test_compare_two_tiny_runs(tmp_path):
    a, b = make_pair(tmp_path / "reports")
    result = compare_runs(a, b, formats=("html", "pdf"), n_resamples=300)
    assert result.out_dir == (tmp_path / "reports" / "compare-A-vs-B").resolve()
    doc = json.loads(result.files["json"].read_text())
    assert result.files["pdf"].read_bytes().startswith(b"%PDF")

    da = _read(a)
    db = _read(b).set_index(["source", "face_id"]).loc[list(zip(da.source, da.face_id, strict=True))].reset_index()
    t, pa, pb = da.true_label, da.pred_label, db.pred_label
    acc_a, acc_b = accuracy_score(t, pa), accuracy_score(t, pb)
    assert doc["n"] == len(da) and doc["same_test_set"] is True
    d = doc["deltas"]["accuracy"]
    assert d["a"] == pytest.approx(acc_a, abs=1e-6) and d["delta"] == pytest.approx(acc_b - acc_a, abs=1e-6)
    assert d["ci"][0] <= d["delta"] <= d["ci"][1]
    f1 = lambda p: f1_score(t, p, labels=CLASS_NAMES, average=None, zero_division=0)  # noqa: E731
    for i, c in enumerate(CLASS_NAMES):
        assert doc["per_class"][c]["f1"]["delta"] == pytest.approx(f1(pb)[i] - f1(pa)[i], abs=1e-6)
    cm_diff = confusion_matrix(t, pb, labels=CLASS_NAMES) - confusion_matrix(t, pa, labels=CLASS_NAMES)
    assert doc["confusion_difference"] == cm_diff.tolist()

    ca, cb = (pa == t).to_numpy(), (pb == t).to_numpy()
    m = doc["mcnemar"]
    assert m["a_right_b_wrong"] == int((ca & ~cb).sum()) > 0 and m["a_wrong_b_right"] == int((~ca & cb).sum()) > 0
    expected_p = binomtest(m["a_wrong_b_right"], m["discordant"], 0.5).pvalue
    assert m["p_value"] == pytest.approx(expected_p, abs=1e-6)
    assert doc["flips"] == {"right_to_wrong": m["a_right_b_wrong"], "wrong_to_right": m["a_wrong_b_right"]}

    html = result.files["html"].read_text()
    for heading in ("Metric deltas", "Per-class deltas", "Confusion-matrix difference", "McNemar test",
                    "Right → wrong", "Wrong → right"):
        assert heading in html
    assert "<script" not in html and "https://" not in html
    assert html.count('class="thumb"') > 0           # faces from A's pool (B has none)
    assert "not shown" in html                        # flipped faces in no pool, and no dataset to read them from


def test_same_faces_in_different_order_and_identical_predictions(tmp_path):
    a = make_run_dir(tmp_path / "A", n=90)
    b = tmp_path / "B"
    shutil.copytree(a, b)
    _read(a).iloc[::-1].to_csv(b / artifacts.PREDICTIONS, index=False)
    ctx = build_compare_context(a, b, n_resamples=200)
    doc = ctx.document
    assert doc["deltas"]["accuracy"]["delta"] == 0 and doc["deltas"]["accuracy"]["ci"] == [0, 0]
    assert doc["mcnemar"]["discordant"] == 0 and doc["mcnemar"]["p_value"] == 1.0
    assert doc["confusion_difference"] == [[0] * 7 for _ in range(7)]


def test_different_test_sets_are_refused_with_exit_3(tmp_path):
    a, b = make_pair(tmp_path)
    df = _read(b)
    df.iloc[5:].to_csv(b / artifacts.PREDICTIONS, index=False)
    result = CliRunner().invoke(main, ["compare", str(a), str(b), "--format", "none"])
    assert result.exit_code == 3
    assert "not evaluated on the same test set" in result.stderr and "5 faces only in A" in result.stderr
    assert f"A ({a}) and B ({b})" in result.stderr  # two runs both named "scratch" stay told apart
    assert f"--split-of {a}" in result.stderr  # the fix: score B's model on A's test faces
    assert len(result.stderr.strip().splitlines()) == 1

    df = _read(a)
    df.loc[0, "true_label"] = "happy" if df.loc[0, "true_label"] != "happy" else "sad"
    df.to_csv(b / artifacts.PREDICTIONS, index=False)
    result = CliRunner().invoke(main, ["compare", str(a), str(b), "--format", "none"])
    assert result.exit_code == 3 and "different true labels" in result.stderr
    assert CliRunner().invoke(main, ["compare", str(a), str(a)]).exit_code == 2


def test_compare_cli_json_and_index(tmp_path):
    a, b = make_pair(tmp_path / "reports", n=100)
    out = tmp_path / "reports" / "cmp"
    result = CliRunner().invoke(main, ["compare", str(a), str(b), "--out", str(out), "--format", "html", "--json",
                                       "--resamples", "200"])
    assert result.exit_code == 0, result.output
    obj = json.loads(result.stdout)                   # exactly one JSON object on stdout
    assert obj["status"] == "passed" and obj["outputs"]["html"] == str(out / "compare.html")
    assert "McNemar" in result.stderr                 # the human summary went to stderr
    index = (tmp_path / "reports" / "index.html").read_text()
    assert "cmp/compare.html" in index and "Comparisons" in index


def test_flipped_faces_come_from_the_dataset_when_no_pool_has_them(tiny_expw, tmp_path):
    from ferreport.datasets.face_cache import prepare_dataset

    ds = prepare_dataset(tiny_expw)
    idx = ds.index
    n = len(idx)
    true = np.asarray(CLASS_NAMES)[idx["label"].to_numpy()]
    runs = []
    for name, shift in (("A", 0), ("B", 1)):
        pred = true.copy()
        pred[shift::2] = np.asarray(CLASS_NAMES)[(idx["label"].to_numpy()[shift::2] + 1) % 7]
        run = tmp_path / name
        run.mkdir()
        df = pd.DataFrame({"source": idx["source"], "face_id": idx["face_id"], "true_label": true,
                           "pred_label": pred, "confidence": np.linspace(0.5, 0.9, n)})
        df.to_csv(run / artifacts.PREDICTIONS, index=False)
        (run / artifacts.CONFIG).write_text(json.dumps({"data": str(tiny_expw)}))
        runs.append(run)
    ctx = build_compare_context(*runs, n_resamples=100)
    flips = next(s for s in ctx.sections if s.id == "flips").data
    assert flips["n_worse"] + flips["n_better"] == n
    assert len(flips["worse"]) == flips["n_worse"] and len(flips["better"]) == flips["n_better"]
    assert all(t.uri.startswith("data:image/jpeg;base64,") for t in flips["worse"] + flips["better"])
    assert "read from" in flips["note"]
    # --pool-only: no dataset is read, the faces are counted as missing
    ctx = build_compare_context(*runs, n_resamples=100, use_dataset=False)
    flips = next(s for s in ctx.sections if s.id == "flips").data
    assert not flips["worse"] and flips["missing_worse"] == flips["n_worse"]


def test_a_truncated_predictions_file_is_named_with_its_row(tmp_path):
    """A predictions.csv cut mid-row (a copy interrupted): report and compare say which file and row."""
    a, b = make_pair(tmp_path)
    df = _read(b)
    df.loc[df.index[3], "pred_label"] = ""
    df.to_csv(b / artifacts.PREDICTIONS, index=False)
    r = CliRunner().invoke(main, ["compare", str(a), str(b), "--format", "none"])
    assert r.exit_code == 3 and f"{b}/predictions.csv row 4: empty pred_label" in r.stderr, r.stderr
    r = CliRunner().invoke(main, ["report", str(b), "--format", "html"])
    assert r.exit_code == 3 and "predictions.csv row 4: empty pred_label" in r.stderr, r.stderr
