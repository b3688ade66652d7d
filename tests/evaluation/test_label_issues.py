"""``ferreport label-issues``: K-fold out-of-sample probabilities -> suspect labels, never touching the data."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from ferreport.cli.main import main


def digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def expw_sample(tmp_path_factory) -> Path:
    from ferreport.datasets.sample import SampleSpec, generate_sample

    out = tmp_path_factory.mktemp("li") / "sample"
    generate_sample(out, SampleSpec(n_faces=280, seed=5), workers=1)
    return out


def test_expw_label_file_copy_comments_out_exactly_the_flagged_lines(expw_sample, tmp_path):
    before = digest(expw_sample)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["label-issues", "--data", str(expw_sample), "--out", str(out), "--folds", "3",
                                    "--json"])
    assert res.exit_code == 0, res.output + str(res.exception)
    summary = json.loads(res.stdout)
    assert digest(expw_sample) == before                       # the dataset is never written
    csv = pd.read_csv(out / "label_issues.csv", dtype=str, keep_default_na=False)
    assert list(csv.columns) == ["source", "face_id", "given", "suggested", "score"]
    assert summary["flagged"] == len(csv) > 0 and summary["faces"] == 280 and summary["folds"] == 3
    assert csv["score"].astype(float).is_monotonic_increasing  # self-confidence, most suspect first
    original = (expw_sample / "label" / "label.lst").read_text().split("\n")
    copy = (out / "label.lst").read_text().split("\n")
    assert len(copy) == len(original)
    commented = [i for i, line in enumerate(copy) if line.startswith("# ferreport label-issues:")]
    assert len(commented) == len(csv)
    page = (out / "label_issues.html").read_text()
    assert page.count('class="thumb check') == min(24, len(csv)) and "<script" not in page
    for i in commented:
        assert copy[i].endswith(": " + original[i])
    flagged = {(s, str(int(f))) for s, f in zip(csv["source"], csv["face_id"], strict=True)}
    for i in commented:
        name, face_id = original[i].split()[:2]
        assert (name, face_id) in flagged
    untouched = [i for i in range(len(copy)) if i not in set(commented)]
    assert all(copy[i] == original[i] for i in untouched)


def test_class_folders_get_a_moves_list_and_out_is_guarded(tmp_path):
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    data = tmp_path / "faces"
    for c, name in enumerate(("angry", "happy", "sad")):
        for i in range(24):
            img = rng.integers(0, 60, (64, 64, 3), dtype=np.uint8)
            img[8 + 14 * c: 24 + 14 * c, 8:56] = 230    # a bar whose height says the class
            (data / name).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(data / name / f"P{c}_{i}_0001.jpg"), img)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["label-issues", "--data", str(data), "--out", str(out), "--folds", "2"])
    assert res.exit_code == 0, res.output
    assert res.stdout.split() == [str(out / "label_issues.csv"), str(out / "moves.csv"), str(out / "label_issues.html"),
                                  str(out / "label_issues.json")]
    page = (out / "label_issues.html").read_text()
    assert "<script" not in page and "Labels to check" in page and "What was run" in page
    moves = pd.read_csv(out / "moves.csv")
    assert list(moves.columns) == ["path", "from", "to", "score"]
    again = CliRunner().invoke(main, ["label-issues", "--data", str(data), "--out", str(out), "--folds", "2"])
    assert again.exit_code == 2 and "already holds files" in again.stderr
    forced = CliRunner().invoke(main, ["label-issues", "--data", str(data), "--out", str(out), "--folds", "2",
                                       "--force"])
    assert forced.exit_code == 0, forced.output
    inside = CliRunner().invoke(main, ["label-issues", "--data", str(data), "--out", str(data / "x")])
    assert inside.exit_code == 2 and "inside --data" in inside.stderr
    one = CliRunner().invoke(main, ["label-issues", "--data", str(data), "--out", str(tmp_path / "o2"),
                                    "--folds", "1"])
    assert one.exit_code == 2 and "--folds" in one.stderr


@pytest.mark.slow
def test_the_compact_cnn_gives_the_out_of_sample_probabilities_too(expw_sample, tmp_path):
    out = tmp_path / "cnn"
    res = CliRunner().invoke(main, ["label-issues", "--data", str(expw_sample), "--out", str(out), "--model-kind",
                                    "cnn", "--epochs", "1", "--folds", "2", "--json"])
    assert res.exit_code == 0, res.output + str(res.exception)
    summary = json.loads(res.stdout)
    assert summary["model_kind"] == "cnn" and summary["epochs"] == 1 and len(summary["fold_accuracy"]) == 2
    assert (out / "label.lst").is_file() and (out / "label_issues.csv").is_file()
