"""The command line: thin commands, one-line errors and documented exit codes."""

from __future__ import annotations

import json

from click.testing import CliRunner

from ferreport import __version__
from ferreport.cli import main


def test_help_and_version():
    runner = CliRunner()
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("sample", "prepare", "train", "evaluate", "report", "run"):
        assert command in result.output
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_prepare_prints_the_data_summary(tiny_expw):
    result = CliRunner().invoke(main, ["prepare", "--data", str(tiny_expw), "--balance", "oversample"])
    assert result.exit_code == 0, result.output
    assert "faces read  8" in result.output
    assert "clipped     1" in result.output
    assert "train*" in result.output and "cache written" in result.output
    again = CliRunner().invoke(main, ["prepare", "--data", str(tiny_expw)])
    assert "cache hit" in again.output


def test_bad_label_line_strict_is_one_line_error_exit_3(tiny_expw):
    lst = tiny_expw / "label" / "label.lst"
    lst.write_text(lst.read_text() + "img_0.jpg 2 1 2 3\n")
    result = CliRunner().invoke(main, ["prepare", "--data", str(tiny_expw), "--strict"])
    assert result.exit_code == 3
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "label.lst:9: wrong field count" in lines[0]


def test_missing_dataset_exit_3(tmp_path):
    result = CliRunner().invoke(main, ["prepare", "--data", str(tmp_path / "nope")])
    assert result.exit_code == 3 and "not found" in result.output


def test_usage_errors_exit_2(tmp_path):
    assert CliRunner().invoke(main, ["train", "--epochs", "0"]).exit_code == 2
    result = CliRunner().invoke(main, ["evaluate"])
    assert result.exit_code == 2 and "RUN_DIR" in result.output
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "predictions.csv" in result.output


def test_sample_command_writes_expw_layout(tmp_path):
    out = tmp_path / "s"
    result = CliRunner().invoke(main, ["sample", "--out", str(out), "--faces", "40", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert (out / "label" / "label.lst").is_file() and any((out / "image" / "origin").iterdir())


def test_an_unreadable_baseline_names_the_file_once(tmp_path, monkeypatch):
    """An OSError's text repeats the path ("[Errno 13] Permission denied: '/x/metrics.json'"); the
    message names the file once and gives the reason in words (issue 20, point 7)."""
    import errno
    import pathlib

    import pytest

    from ferreport.errors import UsageError
    from ferreport.gates import load_baseline

    metrics = tmp_path / "metrics.json"
    metrics.write_text('{"n": 1, "accuracy": 0.5}')

    def denied(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(pathlib.Path, "read_text", denied)
    with pytest.raises(UsageError) as info:
        load_baseline(metrics)
    message = str(info.value)
    assert message == f"--baseline {metrics}: cannot read JSON (Permission denied)", message
