"""Job files: `--config job.toml` for any command, flags override it, unknown keys are errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ferreport.cli.main import main
from ferreport.cli.tomlconfig import option_defaults
from ferreport.runs import folder as artifacts
from tests.report.run_dirs import make_run_dir


def _write(path, text):
    path.write_text(text)
    return path


def test_every_command_takes_config():
    for name, command in main.commands.items():
        assert any(p.name == "config" for p in command.params), name


def test_job_file_maps_option_names_onto_evaluate_parameters(tmp_path):
    (tmp_path / "jobs").mkdir()
    job = _write(tmp_path / "jobs" / "nightly.toml", """
data = "../data/ExpW"
json = true
fail-under = ["accuracy=0.8", "f1.fear=0.3"]
[evaluate]
format = "html"
max_drop = { accuracy = 0.02, macro_f1 = 0.03 }
baseline = "/abs/baseline"
unsafe-model = false
[run]
epochs = 3
""")
    defaults = option_defaults(job, main.commands["evaluate"], "evaluate", dict(main.commands))
    assert defaults["data"] == str(tmp_path / "jobs" / ".." / "data" / "ExpW")   # relative to the job file
    assert defaults["json_out"] is True and defaults["formats"] == "html"
    assert defaults["fail_under"] == ["accuracy=0.8", "f1.fear=0.3"]
    assert defaults["max_drop"] == ["accuracy=0.02", "macro_f1=0.03"]
    assert defaults["baseline"] == "/abs/baseline" and defaults["unsafe_model"] is False
    assert "epochs" not in defaults                    # [run] applies to `ferreport run` only


def test_config_drives_report_and_flags_override_it(tmp_path):
    run = make_run_dir(tmp_path / "reports" / "r1", n=60)
    job = _write(tmp_path / "job.toml", 'run_dir = "reports/r1"\nformat = "pdf"\n[report]\nformat = "html"\n')
    result = CliRunner().invoke(main, ["report", "--config", str(job)])
    assert result.exit_code == 0, result.output
    assert (run / artifacts.REPORT_HTML).is_file() and not (run / artifacts.REPORT_PDF).exists()
    (run / artifacts.REPORT_HTML).unlink()
    result = CliRunner().invoke(main, ["report", "--config", str(job), str(run), "--format", "html"])
    assert result.exit_code == 0 and (run / artifacts.REPORT_HTML).is_file()


@pytest.mark.parametrize("text, fragment", [
    ('colour = "red"\n', "unknown key 'colour' for `ferreport report`"),
    ('[report]\nfail-under = ["accuracy=0.9"]\n', "unknown key [report] 'fail-under'"),
    ('[evaluate]\nepochs = 3\n', "unknown key [evaluate] 'epochs' for `ferreport evaluate`"),
    ('[nightly]\nformat = "html"\n', "unknown table [nightly]"),
    ('format = ["html", "pdf"]\n', "expected one value"),
    ('format = "html\n', "invalid TOML"),
])
def test_bad_job_files_exit_2_naming_key_and_file(tmp_path, text, fragment):
    job = _write(tmp_path / "job.toml", text)
    result = CliRunner().invoke(main, ["report", "--config", str(job), str(tmp_path)])
    assert result.exit_code == 2
    assert fragment in result.stderr and str(job) in result.stderr
    assert result.stderr.startswith("ferreport: error: ")


def test_missing_job_file_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(main, ["report", "--config", str(tmp_path / "nope.toml"), str(tmp_path)])
    assert result.exit_code == 2 and "job file not found" in result.stderr


def test_compare_from_a_job_file(tmp_path):
    a = make_run_dir(tmp_path / "A", n=60)
    b = make_run_dir(tmp_path / "B", n=60)
    b_pred = (a / artifacts.PREDICTIONS).read_text()
    (b / artifacts.PREDICTIONS).write_text(b_pred)
    job = _write(tmp_path / "job.toml", 'run_a = "A"\nrun_b = "B"\n[compare]\nformat = "none"\nresamples = 100\n'
                                        'out = "cmp"\njson = true\n')
    result = CliRunner().invoke(main, ["compare", "--config", str(job)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n"] == 60 and (tmp_path / "cmp" / "compare.json").is_file()
