"""An unexpected error in any command exits 70 with one line naming a saved traceback, never 1
(a failed gate), and under --json still prints exactly one JSON object."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ferreport.cli import commands
from ferreport.cli.crash import internal_error
from ferreport.cli.main import main
from ferreport.datasets import sample as sample_module
from ferreport.errors import GateFailure, InternalError

#: Each command with arguments that parse, and the function it calls that the test breaks.
COMMANDS = {
    "sample": (["sample", "--out", "{tmp}/s"], sample_module, "generate_sample"),
    "prepare": (["prepare", "--data", "{tmp}"], commands, "prepare"),
    "train": (["train", "--data", "{tmp}", "--out", "{tmp}/run"], commands, "train"),
    "evaluate": (["evaluate", "--model", "{tmp}/m.keras", "--data", "{tmp}"], commands, "evaluate"),
    "report": (["report", "{tmp}/run"], commands, "report"),
    "run": (["run", "--data", "{tmp}", "--out", "{tmp}/run"], commands, "run"),
    "compare": (["compare", "{tmp}/a", "{tmp}/b"], commands, "compare"),
    "predict": (["predict", "{tmp}", "--model", "{tmp}/m.keras"], commands, "predict"),
}
JSON_COMMANDS = ("evaluate", "run", "compare", "predict")


def _break(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("injected\nfailure 42")

    monkeypatch.setattr(module, name, broken)


@pytest.fixture
def crash_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FERREPORT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "crashes"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_unexpected_error_exits_70_with_one_line_and_a_saved_traceback(command, tmp_path, monkeypatch, crash_home):
    argv, module, name = COMMANDS[command]
    _break(monkeypatch, module, name)
    result = CliRunner().invoke(main, [a.format(tmp=tmp_path) for a in argv])
    assert result.exit_code == InternalError.exit_code == 70
    assert result.exit_code != GateFailure.exit_code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ferreport: error: internal error (RuntimeError: injected failure 42)")
    saved = sorted(crash_home.glob(f"crash-*-{command}-*.txt"))
    assert len(saved) == 1 and str(saved[0]) in lines[0]
    text = saved[0].read_text()
    assert "Traceback (most recent call last)" in text and "RuntimeError: injected" in text and "broken" in text
    assert result.stdout == ""


@pytest.mark.parametrize("command", JSON_COMMANDS)
def test_under_json_an_unexpected_error_is_exactly_one_json_object(command, tmp_path, monkeypatch, crash_home):
    argv, module, name = COMMANDS[command]
    _break(monkeypatch, module, name)
    result = CliRunner().invoke(main, [a.format(tmp=tmp_path) for a in argv] + ["--json"])
    assert result.exit_code == 70
    doc = json.loads(result.stdout)  # the whole of stdout is one object
    assert doc["status"] == "error" and doc["exit_code"] == 70 and doc["command"] == command
    assert doc["error_type"] == "InternalError" and "injected failure 42" in doc["error"]
    assert Path(doc["traceback"]).is_file() and Path(doc["traceback"]).parent == crash_home


def test_the_traceback_goes_to_the_temporary_folder_when_the_cache_cannot_hold_it(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("FERREPORT_CACHE", str(blocker))
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    try:
        raise KeyError("missing")
    except KeyError as exc:
        error = internal_error(exc, "evaluate")
    assert error.exit_code == 70 and error.traceback_path.parent == tmp_path / "tmp"
    assert "KeyError: 'missing'" in str(error) and str(error.traceback_path) in str(error)


def test_expected_errors_keep_their_own_codes(tmp_path, crash_home):
    """A FerreportError is not an internal error: its code, no traceback file."""
    result = CliRunner().invoke(main, ["report", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "internal error" not in result.stderr
    assert not crash_home.exists()


def test_an_unexpected_error_before_any_command_runs_exits_70_too(monkeypatch, crash_home):
    def broken(argv: list[str]) -> None:
        raise ValueError("while reading the command line")

    monkeypatch.setattr("ferreport.runs.provenance.set_command_line", broken)
    result = CliRunner().invoke(main, ["report", "x"])
    assert result.exit_code == 70
    assert "internal error (ValueError: while reading the command line)" in result.stderr
    assert len(list(crash_home.glob("crash-*-ferreport-*.txt"))) == 1
