"""Reading a run directory and choosing the faces of the pool (no TensorFlow)."""

from __future__ import annotations

import numpy as np
import pytest

from ferreport.errors import UsageError
from ferreport.evaluation.face_pool import select_pool_rows
from ferreport.evaluation.stored_run import load_run
from tests.report.run_dirs import synthetic_predictions


def test_select_pool_rows_keeps_top_of_every_cell_and_least_confident():
    df = synthetic_predictions(400, seed=5)
    rows = select_pool_rows(df, per_cell=3)
    assert rows.dtype == np.int64 and np.all(np.diff(rows) > 0)
    conf = df["confidence"].to_numpy()
    chosen = set(rows.tolist())
    for (_, _), g in df.groupby(["true_label", "pred_label"]):
        top = g.assign(r=g.index).sort_values(["confidence", "r"], ascending=[False, True]).index[:3]
        assert set(top) <= chosen
    least = np.lexsort((np.arange(len(df)), conf))[:24]
    assert set(least.tolist()) <= chosen
    assert len(rows) <= 49 * 3 + 48


def test_select_pool_rows_groups_unlabelled_rows_by_prediction():
    df = synthetic_predictions(200, seed=2, labelled=False)
    rows = set(select_pool_rows(df, per_cell=2).tolist())
    for _, g in df.groupby("pred_label"):
        assert set(g.sort_values("confidence", ascending=False, kind="stable").index[:2]) <= rows


def test_load_run_needs_a_folder_with_predictions(tmp_path):
    with pytest.raises(UsageError):
        load_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError):
        load_run(tmp_path / "empty")
