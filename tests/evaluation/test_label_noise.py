"""Confident learning (ferreport.evaluation.label_noise, cleanlab) on data with planted label flips."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ferreport.constants import CLASS_NAMES
from ferreport.evaluation.label_noise import (
    LABEL_ISSUES_COLUMNS,
    find_label_issues,
    issues_of_predictions,
    label_issues_frame,
    write_label_issues,
)


def planted(n: int = 700, share: float = 0.1, seed: int = 0):
    """True labels, probabilities of a decent model (true class 0.45-0.9), labels with ``share`` flipped."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 7, n)
    proba = rng.dirichlet(np.ones(7), n) * 0.4
    proba[np.arange(n), truth] += rng.uniform(0.45, 0.9, n)
    proba /= proba.sum(axis=1, keepdims=True)
    flipped = np.sort(rng.choice(n, int(share * n), replace=False))
    given = truth.copy()
    given[flipped] = (truth[flipped] + rng.integers(1, 7, flipped.size)) % 7
    return given, proba, truth, flipped


def test_planted_flips_are_found_and_ranked_first():
    given, proba, truth, flipped = planted()
    found = find_label_issues(given, proba)
    assert found.available and found.n_checked == len(given)
    rows = [i.row for i in found.issues]
    hits = set(rows) & set(flipped.tolist())
    assert len(hits) / len(flipped) >= 0.9                      # recall of the flagged set
    assert len(set(rows[:len(flipped)]) & set(flipped.tolist())) / len(flipped) >= 0.9  # precision at k
    for issue in found.issues:
        assert issue.suggested != issue.given
        if issue.row in hits:
            assert issue.suggested == truth[issue.row]
    scores = [i.score for i in found.issues]
    assert scores == sorted(scores)                              # self-confidence, lowest first
    noise = {c.name: c for c in found.noise}
    assert set(noise) == set(CLASS_NAMES)
    assert 0.03 < np.mean([c.noise_rate for c in found.noise]) < 0.25


def test_normalized_margin_ranks_the_same_flagged_set():
    given, proba, _, _ = planted(seed=1)
    a = find_label_issues(given, proba, ranking="self_confidence")
    b = find_label_issues(given, proba, ranking="normalized_margin")
    assert {i.row for i in a.issues} == {i.row for i in b.issues}
    with pytest.raises(ValueError, match="ranking"):
        find_label_issues(given, proba, ranking="loss")


def test_a_model_lacking_a_class_is_checked_over_the_classes_it_predicts():
    """A model without 'disgust' (its column 0, its faces left out of the scores): no crash, not checked."""
    given, proba, _, flipped = planted(seed=2)
    d = CLASS_NAMES.index("disgust")
    proba[:, d] = 0.0
    scored = tuple(c for c in CLASS_NAMES if c != "disgust")
    found = find_label_issues(given, proba, scored=scored)
    assert found.available and "disgust" not in found.classes
    assert all(i.given != d and i.suggested != d for i in found.issues)
    assert found.n_checked == int(np.sum(given != d))
    # a class with labels but no scored face of the model's classes at all: only two classes left
    two = find_label_issues(np.array([0, 3] * 20), np.tile(np.eye(7)[[0, 3]], (20, 1)), scored=("angry", "happy"))
    assert two.available and two.classes == ("angry", "happy")


def test_too_few_faces_or_one_class_say_why():
    found = find_label_issues(np.array([3] * 30), np.tile(np.eye(7)[3], (30, 1)))
    assert not found.available and "two classes" in found.reason
    found = find_label_issues(np.array([0, 1, -1]), np.eye(7)[[0, 1, 2]])
    assert not found.available and found.n_checked == 2


def test_the_csv_is_written_atomically_with_its_columns(tmp_path):
    given, proba, _, _ = planted(n=140, seed=3)
    found = find_label_issues(given, proba)
    frame = label_issues_frame(found, [f"img{i}.jpg" for i in range(140)], [str(i % 2) for i in range(140)])
    path = tmp_path / "label_issues.csv"
    write_label_issues(frame, tmp_path)
    back = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert tuple(back.columns) == LABEL_ISSUES_COLUMNS and len(back) == len(found.issues)
    assert [p.name for p in tmp_path.iterdir()] == ["label_issues.csv"]


def test_unlabelled_predictions_give_no_issues():
    from tests.report.run_dirs import synthetic_predictions

    found, frame = issues_of_predictions(synthetic_predictions(100, labelled=False))
    assert not found.available and frame.empty
