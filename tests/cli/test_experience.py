"""The command line as people meet it (issue 21): progress on stderr only, checks before any work,
--force that never loses the old folder, hints that point the right way, outputs named at the end.

Real subprocesses where a terminal, stdout or a whole run matters; Click's CliRunner elsewhere.
Nothing of TensorFlow, OpenCV or WeasyPrint is mocked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import ferreport
from ferreport.cli.main import main
from ferreport.runs import folder as artifacts
from ferreport.runs.atomic import FolderReplacement
from ferreport.runs.folder import RunFolder

#: The checkout whose package the subprocesses run (the one under test, wherever it lies).
PACKAGE_ROOT = Path(ferreport.__file__).resolve().parents[1]
BAR = "━"  # rich's bar glyph: drawn only as a live bar


def ferreport_cli(*args: object, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m ferreport ARGS`` with stdout and stderr apart, neither a terminal (as under cron)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PACKAGE_ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "ferreport", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout, stdin=subprocess.DEVNULL)


# --------------------------------------------------------------------------- progress


def test_without_a_terminal_each_stage_is_one_line_with_its_duration_and_no_bar(tiny_expw):
    proc = ferreport_cli("prepare", "--data", tiny_expw)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert any(line.startswith("prepare: 8 faces in ") and line.endswith(" s") for line in lines), proc.stderr
    assert BAR not in proc.stderr and "\r" not in proc.stderr and "\x1b[" not in proc.stderr
    assert "prepare:" not in proc.stdout and "faces read  8" in proc.stdout


def test_progress_draws_bars_on_stderr_only_and_no_progress_prints_nothing(tiny_expw, tmp_path):
    forced = ferreport_cli("sample", "--out", tmp_path / "s", "--faces", "40", "--progress")
    assert forced.returncode == 0, forced.stderr
    assert BAR in forced.stderr and "images" in forced.stderr and "ETA" in forced.stderr
    assert forced.stdout.startswith(f"{tmp_path / 's'}: 40 faces in ")
    assert BAR not in forced.stdout and "\x1b[" not in forced.stdout
    quiet = ferreport_cli("prepare", "--data", tiny_expw, "--no-progress")
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr


@pytest.mark.slow
def test_run_with_json_and_progress_keeps_stdout_one_object_and_draws_epochs_on_stderr(sample_dataset, tmp_path):
    """A real two-epoch run: bars of batches with the loss on stderr, one JSON object on stdout, no report
    for --format none, every file written listed."""
    out = tmp_path / "r"
    proc = ferreport_cli("run", "--data", sample_dataset, "--out", out, "--epochs", "2", "--format", "none",
                         "--json", "--progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)  # the whole of stdout
    assert doc["status"] == "passed" and doc["run_dir"] == str(out)
    assert doc["outputs"]["predictions"] == str(out / artifacts.PREDICTIONS)
    assert BAR in proc.stderr and "batches" in proc.stderr and "loss " in proc.stderr
    assert "epoch 1/2:" in proc.stderr and "epoch 2/2:" in proc.stderr and "evaluate: " in proc.stderr
    assert not (out / artifacts.REPORT_HTML).exists() and not (out / "report.pdf").exists()
    assert (out / artifacts.METRICS).is_file() and len((out / artifacts.HISTORY).read_text().splitlines()) == 3


# --------------------------------------------------------------------------- checks before any work


def test_a_bad_format_stops_run_before_a_single_epoch(sample_dataset, tmp_path):
    """Counted in epochs, not seconds: no history.csv, no epoch line, no run folder."""
    out = tmp_path / "r"
    proc = ferreport_cli("run", "--data", sample_dataset, "--out", out, "--epochs", "1", "--format", "html,htm")
    assert proc.returncode == 2
    assert "'htm' is not a report format" in proc.stderr and "epoch" not in proc.stderr
    assert not (out / artifacts.HISTORY).exists() and not out.exists()


def test_a_bad_format_in_a_job_file_is_refused_too(tmp_path, monkeypatch):
    from ferreport.cli import commands

    monkeypatch.setattr(commands, "run", lambda *a, **k: pytest.fail("trained"))
    job = tmp_path / "job.toml"
    job.write_text('format = "htm"\n')
    result = CliRunner().invoke(main, ["run", "--config", str(job)])
    assert result.exit_code == 2 and "'htm' is not a report format" in result.stderr


def test_a_missing_dataset_or_unusable_out_stops_run_before_tensorflow(tmp_path):
    missing = ferreport_cli("run", "--data", tmp_path / "nope", "--out", tmp_path / "r", "--epochs", "1")
    assert missing.returncode == 3 and "dataset folder not found" in missing.stderr
    assert "epoch" not in missing.stderr and not (tmp_path / "r").exists()
    (tmp_path / "file").write_text("x")
    blocked = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "nope"),
                                        "--out", str(tmp_path / "file" / "r")])
    assert blocked.exit_code == 5 and "is a file); choose another --out" in blocked.stderr


# --------------------------------------------------------------------------- kind hints


@pytest.mark.parametrize("inside", ["image/origin", "image", "label", "label/label.lst"])
def test_data_inside_a_dataset_suggests_its_root(tiny_expw, inside):
    result = CliRunner().invoke(main, ["prepare", "--data", str(tiny_expw / inside)])
    assert result.exit_code == 3
    assert result.stderr.strip() == (f"ferreport: error: {tiny_expw / inside}: this is inside the ExpW dataset "
                                     f"{tiny_expw}; did you mean --data {tiny_expw}?")


def test_hints_name_only_options_the_command_has(tmp_path, tiny_expw):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "x.txt").write_text("x")
    trained = CliRunner().invoke(main, ["train", "--data", str(tiny_expw), "--out", str(taken)])
    assert trained.exit_code == 2 and "--resume" in trained.stderr and "--force" in trained.stderr
    audited = CliRunner().invoke(main, ["predict", str(tiny_expw), "--model", str(tmp_path / "m.keras"),
                                        "--out", str(taken)])
    assert audited.exit_code == 2 and "--force" in audited.stderr and "--resume" not in audited.stderr


def test_report_on_a_missing_folder_does_not_send_people_to_evaluate_it(tmp_path):
    result = CliRunner().invoke(main, ["report", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "no such run folder" in result.stderr
    assert "ferreport evaluate" not in result.stderr


@pytest.mark.slow
def test_evaluate_prints_the_reports_warnings(tmp_path, sample_dataset):
    """The console's warnings are the report's own notices (one source), gates excepted (printed as verdicts)."""
    from ferreport.report import report_notices
    from tests import model_zoo as zoo

    model = zoo.keras_model(tmp_path, outputs=6, name="six.keras")  # no 'disgust' output: the report says so
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["evaluate", "--model", str(model), "--data", str(sample_dataset), "--out",
                                       str(out), "--format", "none", "--fail-under", "accuracy=1", "--classes",
                                       "angry,fear,happy,sad,surprise,neutral"])
    assert result.exit_code == 1, result.output
    lines = report_notices(out, skip=("gates", "contract"))
    assert any("no output for disgust" in line for line in lines)
    for line in lines:
        assert line in result.stderr
    assert "quality gates failed" not in "".join(lines)
    # the assumed contract fields were said when the model was opened, each with its flag, and not again
    assert "input range [0, 1] assumed" in result.stderr and "--input-range=-1,1" in result.stderr
    assert "Model contract assumed, not declared" not in result.stderr


# --------------------------------------------------------------------------- --force


def test_a_folder_replacement_keeps_the_old_folder_until_committed(tmp_path):
    final = tmp_path / "run"
    final.mkdir()
    (final / "old.txt").write_text("old")
    failed = FolderReplacement(final)
    (failed.staged).mkdir()
    (failed.staged / "new.txt").write_text("half")
    failed.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"] and (final / "old.txt").is_file()
    done = FolderReplacement(final)
    done.staged.mkdir()
    (done.staged / "config.json").write_text(json.dumps({"out": str(done.staged), "n": 1}))
    assert (final / "old.txt").is_file()  # still there while the new one is built
    assert done.commit() == final
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"] and not (final / "old.txt").exists()
    assert json.loads((final / "config.json").read_text()) == {"out": str(final), "n": 1}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A small untrained model with ferreport's input/output contract (tests/model_zoo.py)."""
    from tests import model_zoo as zoo

    return zoo.keras_model(tmp_path_factory.mktemp("model"), name="tiny.keras")


@pytest.mark.slow
def test_force_keeps_the_old_folder_when_the_new_run_fails_and_replaces_it_when_it_succeeds(
        tmp_path, tiny_model, sample_dataset):
    out = tmp_path / "reports" / "fer"
    RunFolder(out).create("run")  # a folder ferreport wrote: --force may replace it
    (out / "old.txt").write_text("the previous evaluation")

    def evaluate(data: Path) -> object:
        return CliRunner().invoke(main, ["evaluate", "--model", str(tiny_model), "--data", str(data), "--out", str(out),
                                         "--format", "html", "--force"])

    failed = evaluate(tmp_path / "no-such-dataset")
    assert failed.exit_code == 3, failed.output
    assert sorted(p.name for p in out.iterdir()) == [artifacts.MARKER, "old.txt"]
    assert sorted(p.name for p in out.parent.iterdir()) == [artifacts.MARKER, "fer"]  # no staged folder left behind

    done = evaluate(sample_dataset)
    assert done.exit_code == 0, done.output
    assert not (out / "old.txt").exists() and (out / artifacts.PREDICTIONS).is_file()
    assert json.loads((out / artifacts.CONFIG).read_text())["out"] == str(out)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".fer.")]
    named = done.stdout.splitlines()
    for name in (artifacts.PREDICTIONS, artifacts.METRICS, artifacts.REPORT_HTML):
        assert str(out / name) in named, (name, named)  # every file written, one a line


def test_force_and_resume_are_one_or_the_other(tmp_path, tiny_expw):
    result = CliRunner().invoke(main, ["train", "--data", str(tiny_expw), "--out", str(tmp_path), "--resume",
                                       "--force"])
    assert result.exit_code == 2 and "pass only one of them" in result.stderr


def test_a_replacement_killed_midway_is_cleared_by_the_next_one(tmp_path):
    final = tmp_path / "run"
    final.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    abandoned = tmp_path / f".run.replace-{int(dead.stdout)}-abc123"
    (abandoned / "run").mkdir(parents=True)
    live = FolderReplacement(final)
    assert not abandoned.exists() and live.holder.is_dir()
    live.abort()


def test_help_does_not_import_tensorflow():
    """``--help`` (with its progress option) stays instant. (rich itself arrives with scikit-learn's import.)"""
    code = ("import sys; from ferreport.cli.main import main\n"
            "try:\n    main(['run', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": str(PACKAGE_ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout[-500:] + proc.stderr[-500:]
