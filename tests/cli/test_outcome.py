"""Scheduled jobs end to end with a tiny saved model: gates, exit codes, --json, --junit, determinism,
two concurrent jobs in one reports/ folder."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from click.testing import CliRunner

from ferreport.cli.main import main
from ferreport.models.contract import ModelContract, write_contract
from ferreport.runs import folder as artifacts

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A small untrained CNN with the app's input/output contract, biased towards 'happy'."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((64, 64, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, strides=4, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(7, activation="softmax")
    model = keras.Model(inputs, dense(x))
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel, bias + np.array([0, 0, 0, 1.5, 0, 0, 1.0], dtype=bias.dtype)])
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    model.save(path)
    write_contract(path, ModelContract())  # declared: no "assumed" warning lines beside the one error line
    return path


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("facecache")


def evaluate(args, model, data, cache):
    return CliRunner().invoke(main, ["evaluate", "--model", str(model), "--data", str(data),
                                     "--cache-dir", str(cache), *map(str, args)])


@pytest.fixture(scope="module")
def base_run(tiny_model, sample_dataset, cache_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("base") / "reports" / "base"
    result = evaluate(["--out", out, "--format", "none"], tiny_model, sample_dataset, cache_dir)
    assert result.exit_code == 0, result.output
    return out


def test_gates_pass_exit_0_with_json_junit_report_and_index(tiny_model, sample_dataset, cache_dir, base_run, tmp_path):
    out, junit = tmp_path / "reports" / "ok", tmp_path / "ci" / "gates.xml"
    result = evaluate(["--out", out, "--format", "html", "--fail-under", "accuracy=0", "--fail-under", "f1.happy=1%",
                       "--fail-over", "calibration.ece=1", "--baseline", base_run, "--max-drop", "accuracy=0",
                       "--json", "--junit", junit], tiny_model, sample_dataset, cache_dir)
    assert result.exit_code == 0, result.output
    obj = json.loads(result.stdout)                    # stdout holds exactly one JSON object
    assert obj["status"] == "passed" and obj["exit_code"] == 0 and obj["run_dir"] == str(out)
    assert [g["passed"] for g in obj["gates"]] == [True] * 4 and obj["failed_gates"] == []
    base = json.loads((base_run / artifacts.METRICS).read_text())
    assert obj["metrics"]["accuracy"] == base["accuracy"] > 0
    assert obj["baseline"]["deltas"]["accuracy"]["change"] == 0
    assert "gate PASS  accuracy >= 0" in result.stderr    # the human lines went to stderr
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("tests") == "4" and suite.get("failures") == "0"
    html = (out / artifacts.REPORT_HTML).read_text()
    assert "Quality gates" in html and "All quality gates passed." in html
    assert json.loads((out / "gates.json").read_text())["passed"] is True
    assert out.name in (out.parent / "index.html").read_text()


def test_failed_gate_exits_1_after_writing_every_output(tiny_model, sample_dataset, cache_dir, base_run, tmp_path):
    better = json.loads((base_run / artifacts.METRICS).read_text())
    better["accuracy"] = round(better["accuracy"] + 0.05, 6)
    (tmp_path / "better.json").write_text(json.dumps(better))
    out, junit = tmp_path / "reports" / "bad", tmp_path / "junit.xml"
    result = evaluate(["--out", out, "--format", "html", "--fail-under", "accuracy=1.0", "--fail-under", "n=1",
                       "--baseline", tmp_path / "better.json", "--max-drop", "accuracy=0.01", "--junit", junit,
                       "--no-progress"],  # stderr: the error line alone (no stage lines)
                      tiny_model, sample_dataset, cache_dir)
    assert result.exit_code == 1
    assert "gate FAIL  accuracy >= 1" in result.stdout and "gate PASS  n >= 1" in result.stdout
    assert "gate FAIL  accuracy drop <= 0.01" in result.stdout and "over by 0.0400" in result.stdout
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("ferreport: error: 2 of 3 quality gates failed")
    for name in (artifacts.PREDICTIONS, artifacts.METRICS, artifacts.REPORT_HTML, "gates.json"):
        assert (out / name).is_file(), name
    html = (out / artifacts.REPORT_HTML).read_text()
    assert "2 of 3 quality gates failed" in html and "fell by 0.0500" in html
    cases = ET.parse(junit).getroot().find("testsuite").findall("testcase")
    assert [c.find("failure") is not None for c in cases] == [True, False, True]


def test_json_mode_reports_a_failed_gate_as_one_object(tiny_model, sample_dataset, cache_dir, tmp_path):
    result = evaluate(["--out", tmp_path / "r", "--format", "none", "--fail-under", "macro_f1=0.99", "--json"],
                      tiny_model, sample_dataset, cache_dir)
    assert result.exit_code == 1
    obj = json.loads(result.stdout)
    assert obj["status"] == "failed" and obj["exit_code"] == 1 and obj["failed_gates"] == ["macro_f1 >= 0.99"]
    assert obj["gates"][0]["margin"] < 0


@pytest.mark.parametrize("args, code, fragment", [
    (["--fail-under", "f1.anger=0.3"], 2, "unknown metric key"),
    (["--max-drop", "accuracy=0.01"], 2, "--max-drop needs --baseline"),
    (["--baseline", "no/such/run"], 2, "--baseline no/such/run"),
])
def test_usage_errors_exit_2_before_any_work(tiny_model, sample_dataset, cache_dir, tmp_path, args, code, fragment):
    out = tmp_path / "never"
    result = evaluate(["--out", out, "--json", *args], tiny_model, sample_dataset, cache_dir)
    assert result.exit_code == code and fragment in result.stderr
    obj = json.loads(result.stdout)
    assert obj == {**obj, "status": "error", "exit_code": code, "command": "evaluate"} and fragment in obj["error"]
    assert not out.exists()


def test_unusable_data_exit_3_and_unusable_model_exit_4(tiny_model, sample_dataset, cache_dir, tmp_path):
    result = evaluate(["--json", "--out", tmp_path / "x"], tiny_model, tmp_path / "missing", cache_dir)
    assert result.exit_code == 3 and json.loads(result.stdout)["exit_code"] == 3
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    result = evaluate(["--json", "--out", tmp_path / "y"], bad, sample_dataset, cache_dir)
    assert result.exit_code == 4 and json.loads(result.stdout)["status"] == "error"


def test_same_model_data_and_seed_give_byte_identical_metrics(tiny_model, sample_dataset, cache_dir, tmp_path):
    runs = [tmp_path / "one", tmp_path / "two"]
    for run in runs:
        result = evaluate(["--out", run, "--format", "none", "--seed", "5"], tiny_model, sample_dataset, cache_dir)
        assert result.exit_code == 0, result.output
    one, two = ((r / artifacts.METRICS).read_bytes() for r in runs)
    assert one == two
    assert (runs[0] / artifacts.PREDICTIONS).read_bytes() == (runs[1] / artifacts.PREDICTIONS).read_bytes()


def test_run_command_has_the_gate_options():
    result = CliRunner().invoke(main, ["run", "--help"])
    for option in ("--fail-under", "--fail-over", "--baseline", "--max-drop", "--json", "--junit", "--config"):
        assert option in result.output


def test_two_concurrent_evaluate_jobs_into_one_reports_folder(tiny_model, sample_dataset, cache_dir, tmp_path):
    """Both finish, each in its own run directory, and the index lists both."""
    code = "import sys; from ferreport.cli.main import main; sys.argv[0] = 'ferreport'; main()"
    cmd = [sys.executable, "-c", code, "evaluate", "--model", str(tiny_model), "--data", str(sample_dataset),
           "--cache-dir", str(cache_dir), "--format", "html", "--fail-under", "accuracy=0", "--json"]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    for p, (_out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
    objs = [json.loads(out) for out, _ in results]       # real processes: stdout is exactly the JSON object
    run_dirs = {o["run_dir"] for o in objs}
    assert len(run_dirs) == 2 and all(d.startswith("reports/") for d in run_dirs)
    index = (tmp_path / "reports" / "index.html").read_text()
    for d in run_dirs:
        assert (tmp_path / d / artifacts.REPORT_HTML).is_file()
        assert d.split("/", 1)[1] in index
    first, second = sorted(run_dirs)
    assert (tmp_path / first / artifacts.METRICS).read_bytes() == (tmp_path / second / artifacts.METRICS).read_bytes()
