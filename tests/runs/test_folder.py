"""The run folder's owner: one reader and one writer per artefact, round trips, absent and broken files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ferreport.errors import DatasetError, UsageError
from ferreport.runs import folder as names
from ferreport.runs.folder import PROBA_COLUMNS, RunFolder, check_run_dir


def predictions(n: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(len(PROBA_COLUMNS)), size=n).round(6)
    frame = pd.DataFrame({"source": [f"0{i}.jpg" for i in range(n)], "face_id": ["007"] * n,
                          "true_label": ["happy", ""] * (n // 2), "pred_label": ["sad"] * n,
                          "confidence": proba.max(axis=1)})
    for i, col in enumerate(PROBA_COLUMNS):
        frame[col] = proba[:, i]
    return frame


@pytest.mark.parametrize("kind", ["config", "provenance", "data_summary", "metrics", "gates", "audit_summary",
                                  "label_noise", "compare"])
def test_every_json_artefact_round_trips_and_is_none_when_absent(tmp_path, kind):
    run = RunFolder(tmp_path)
    assert getattr(run, f"read_{kind}")() is None
    doc = {"n": 3, "nested": {"a": [1, 2.5, None]}, "text": "é <b>"}
    written = getattr(run, f"write_{kind}")(doc)
    assert written.parent == tmp_path and getattr(run, f"read_{kind}")() == doc
    assert [p.name for p in tmp_path.iterdir()] == [written.name]  # no temporary left behind


@pytest.mark.broken_artefacts
def test_an_unreadable_json_artefact_is_none_with_the_problem_noted(tmp_path):
    (tmp_path / names.METRICS).write_text("{ not json")
    (tmp_path / names.CONFIG).write_text("[1, 2]")
    problems: list[str] = []
    run = RunFolder(tmp_path)
    assert run.read_metrics(problems) is None and run.read_config(problems) is None
    assert problems[0].startswith("metrics.json: is not valid JSON") and problems[0].endswith("it is left out")
    assert problems[1].startswith("config.json: field (the top level): [1, 2] is not of type 'object'")


def test_predictions_keep_text_as_text_and_name_a_truncated_row(tmp_path):
    run = RunFolder(tmp_path)
    frame = predictions()
    run.write_predictions(frame)
    back = run.read_predictions()
    assert back["face_id"].tolist() == ["007"] * 4 and back["true_label"].tolist() == ["happy", "", "happy", ""]
    np.testing.assert_allclose(back[list(PROBA_COLUMNS)].to_numpy(), frame[list(PROBA_COLUMNS)].to_numpy())
    assert run.read_predictions(face_id_text=False)["face_id"].tolist() == [7] * 4
    assert sum(len(c) for c in run.read_predictions(chunksize=3)) == 4
    frame.loc[2, "pred_label"] = ""
    run.write_predictions(frame)
    with pytest.raises(DatasetError, match=r"predictions.csv row 3: empty pred_label; the file is truncated"):
        run.read_predictions()


def test_an_empty_predictions_file_reads_as_no_chunks_and_a_missing_one_is_named(tmp_path):
    run = RunFolder(tmp_path)
    with pytest.raises(UsageError, match="no predictions.csv; evaluate a model into this folder first"):
        run.require_predictions()
    (tmp_path / names.PREDICTIONS).write_text("")
    assert list(run.read_predictions(chunksize=10)) == []
    with pytest.raises(DatasetError, match="cannot read predictions"):
        run.read_predictions()


def test_the_face_pool_drops_rows_outside_the_predictions_and_refuses_a_wrong_shape(tmp_path):
    run = RunFolder(tmp_path)
    faces = np.arange(3 * 4 * 4 * 3, dtype=np.uint8).reshape(3, 4, 4, 3)
    run.write_face_pool(np.array([0, 5, 9]), faces)
    rows, back = run.read_face_pool(6)
    assert rows.tolist() == [0, 5] and np.array_equal(back, faces[:2])
    assert run.read_face_pool(None)[0].tolist() == [0, 5, 9]
    run.write_npz(names.FACES_POOL, rows=np.array([0]), faces=np.zeros((1, 4, 4), np.uint8))
    problems: list[str] = []
    rows, back = run.read_face_pool(6, problems)
    assert rows.size == 0 and back is None and problems[0].startswith("faces_pool.npz could not be read")


def test_embeddings_and_saliency_round_trip(tmp_path):
    run = RunFolder(tmp_path)
    run.write_embeddings(np.array([1, 3]), np.array([[0.5, 1.0], [2.0, -1.0]]), "dense")
    rows, emb = run.read_embeddings()
    assert rows.tolist() == [1, 3] and emb.dtype == np.float32 and emb.tolist() == [[0.5, 1.0], [2.0, -1.0]]
    maps = np.full((2, 3, 3), 7, np.uint8)
    run.write_saliency(np.array([0, 4]), maps, {"available": True, "layer": "conv"})
    rows, back, info = run.read_saliency(3)
    assert rows.tolist() == [0] and back.shape == (1, 3, 3) and info == {"available": True, "layer": "conv"}


def test_splits_history_and_label_issues_round_trip(tmp_path):
    run = RunFolder(tmp_path)
    splits = pd.DataFrame({"key": ["001", "002"], "source": ["a.jpg", "b.jpg"], "split": ["train", "test"]})
    run.write_splits(splits)
    assert run.read_splits().equals(splits)
    other = RunFolder(tmp_path / "other")
    other.path.mkdir()
    other.copy_splits_from(run)
    assert (other.path / names.SPLITS).read_bytes() == (tmp_path / names.SPLITS).read_bytes()
    assert run.read_history() is None
    run.write_history(pd.DataFrame({"epoch": [1, 2], "loss": [1.5, 1.2]}))
    assert run.read_history()["loss"].tolist() == [1.5, 1.2]
    run.write_label_issues(pd.DataFrame({"source": ["x.jpg"], "face_id": ["01"], "given": ["sad"],
                                         "suggested": ["happy"], "score": [0.12345]}))
    issues = run.read_label_issues()
    assert issues["face_id"].tolist() == ["01"] and issues["score"].tolist() == [0.1235]


def test_a_new_run_needs_an_empty_or_absent_folder(tmp_path):
    check_run_dir(tmp_path / "new")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("1")
    with pytest.raises(UsageError, match="already holds files; choose another --out, or pass --force"):
        check_run_dir(tmp_path / "full")
    with pytest.raises(UsageError, match="holds no run to resume"):
        check_run_dir(tmp_path / "full", resume=True)
