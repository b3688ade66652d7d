"""The command line: thin commands, one-line errors and documented exit codes."""

from __future__ import annotations

import click
from click.testing import CliRunner

from ferreport import __version__
from ferreport.cli.main import main


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

    import pytest

    from ferreport import safe_io
    from ferreport.errors import DatasetError
    from ferreport.evaluation.gates import load_baseline

    metrics = tmp_path / "metrics.json"
    metrics.write_text('{"n": 1, "accuracy": 0.5}')
    real_open = safe_io.os.open

    def denied(path, *args, **kwargs):
        if str(path) == str(metrics):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(safe_io.os, "open", denied)
    with pytest.raises(DatasetError) as info:
        load_baseline(metrics)
    message = str(info.value)
    assert message == f"--baseline {metrics}: cannot read it (Permission denied)", message


def _options(command):
    return [p for p in command.params if isinstance(p, click.Option) and not p.hidden]


def test_every_option_of_every_command_has_help_text_and_every_command_examples():
    """Walks the group: an option without help, or a command without a runnable example, fails (issue 21)."""
    bare = [(name, p.opts[0]) for name, command in main.commands.items() for p in _options(command)
            if not (p.help or "").strip()]
    assert not bare, bare
    for name, _command in main.commands.items():
        text = CliRunner().invoke(main, [name, "--help"]).output
        examples = text.split("Examples:")[-1].split("Options:")[0] if "Examples:" in text else ""
        assert f"ferreport {name}" in examples, name
        assert "--progress / --no-progress" in text, name


def test_the_cache_environment_variable_is_shown_where_an_option_reads_it():
    for name in ("prepare", "train", "run", "evaluate"):
        text = " ".join(CliRunner().invoke(main, [name, "--help"]).output.split())
        assert "[env var: FERREPORT_CACHE]" in text, name
    text = CliRunner().invoke(main, ["--help"]).output
    assert "FERREPORT_TEMPLATES" in text and "_FERREPORT_COMPLETE=bash_source" in text


def test_the_readme_commands_table_names_every_command_and_option_that_exists():
    """README's Commands table must match --help: every command has a row, and every flag a row names exists."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.split("## Commands", 1)[1].split("\n#", 1)[0]
    rows = {line.split()[2].strip("`"): line for line in table.splitlines() if line.startswith("| `ferreport ")}
    assert set(rows) == set(main.commands), set(main.commands) ^ set(rows)
    for name, row in rows.items():
        flags = {o for p in _options(main.commands[name]) for o in p.opts + p.secondary_opts}
        named = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", row))
        assert named <= flags, (name, named - flags)
