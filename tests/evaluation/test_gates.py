"""Quality gates: key resolution, each gate kind, margins, baselines and JUnit XML (no TensorFlow)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from ferreport.errors import DatasetError, UsageError
from ferreport.evaluation.gates import (
    evaluate_gates,
    format_gate_lines,
    gates_document,
    junit_xml,
    load_baseline,
    metric_value,
    parse_gate_specs,
    resolve_key,
    valid_keys,
)


def _metrics(**over):
    m = {
        "n": 200, "accuracy": 0.8, "macro_f1": 0.61, "weighted_f1": 0.79, "macro_precision": 0.6,
        "macro_recall": 0.62, "weighted_precision": 0.8, "weighted_recall": 0.8,
        "per_class": {c: {"precision": 0.5, "recall": 0.6, "f1": 0.55, "support": 10, "roc_auc": 0.9,
                          "average_precision": 0.7}
                      for c in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")},
        "calibration": {"ece": 0.04, "mce": 0.2, "brier": 0.3, "log_loss": 0.7},
    }
    m["per_class"]["fear"]["f1"] = 0.3
    m.update(over)
    return m


@pytest.mark.parametrize("raw, key", [
    ("accuracy", "accuracy"), ("Macro-F1", "macro_f1"), ("macro_f1", "macro_f1"), ("f1.fear", "f1.fear"),
    ("f1/fear", "f1.fear"), ("fear.f1", "f1.fear"), ("per_class.happy.precision", "precision.happy"),
    ("recall.sad", "recall.sad"), ("calibration.ece", "calibration.ece"), ("ece", "calibration.ece"),
    ("n", "n"), ("roc_auc.angry", "roc_auc.angry"),
])
def test_keys_resolve_into_metrics_json(raw, key):
    assert resolve_key(raw) == key
    assert key in valid_keys()
    assert metric_value(_metrics(), key) is not None


def test_unknown_key_is_a_usage_error_listing_valid_keys():
    with pytest.raises(UsageError) as err:
        parse_gate_specs("fail_under", ["f1.anger=0.3"])
    msg = str(err.value)
    assert "--fail-under f1.anger=0.3" in msg and "accuracy" in msg and "f1.fear" in msg and err.value.exit_code == 2


@pytest.mark.parametrize("kind, spec, fragment", [
    ("fail_under", "accuracy", "KEY=VALUE"),
    ("fail_under", "accuracy=high", "not a number"),
    ("fail_under", "accuracy=80", "80%"),
    ("fail_under", "accuracy=-0.1", "negative"),
    ("fail_under", "calibration.ece=0.05", "--fail-over"),
    ("fail_over", "accuracy=0.9", "--fail-under"),
    ("max_drop", "accuracy=nan", "finite"),
])
def test_bad_specs_are_usage_errors(kind, spec, fragment):
    with pytest.raises(UsageError, match=fragment.replace("-", r"\-").replace("%", "%")):
        parse_gate_specs(kind, [spec])


def test_duplicate_key_is_refused_and_percentages_are_fractions():
    with pytest.raises(UsageError, match="twice"):
        parse_gate_specs("fail_under", ["accuracy=0.8", "Accuracy=0.7"])
    (spec,) = parse_gate_specs("fail_under", ["f1.fear=30%"])
    assert spec.key == "f1.fear" and spec.value == pytest.approx(0.30)
    (spec,) = parse_gate_specs("fail_under", ["n=500"])  # counts are not bounded by 1
    assert spec.value == 500


def test_fail_under_passes_at_the_threshold_and_reports_the_margin():
    specs = parse_gate_specs("fail_under", ["accuracy=0.8", "macro_f1=0.65", "f1.fear=0.25"])
    acc, macro, fear = evaluate_gates(_metrics(), specs)
    assert acc.passed and acc.margin == 0 and acc.actual == 0.8
    assert not macro.passed and macro.margin == pytest.approx(-0.04) and "below 0.6500 by 0.0400" in macro.message
    assert fear.passed and fear.margin == pytest.approx(0.05)
    lines = format_gate_lines([acc, macro, fear])
    assert lines[1].startswith("gate FAIL  macro_f1 >= 0.65")


def test_fail_over_on_a_lower_is_better_metric():
    (ok,) = evaluate_gates(_metrics(), fail_over=parse_gate_specs("fail_over", ["calibration.ece=0.05"]))
    (bad,) = evaluate_gates(_metrics(), fail_over=parse_gate_specs("fail_over", ["ece=0.03"]))
    assert ok.passed and ok.margin == pytest.approx(0.01)
    assert not bad.passed and "above 0.0300 by 0.0100" in bad.message


def test_max_drop_against_a_baseline():
    base = _metrics(accuracy=0.85, macro_f1=0.62)
    base["calibration"] = {"ece": 0.01}
    specs = parse_gate_specs("max_drop", ["accuracy=0.02", "macro_f1=2%", "calibration.ece=0.02"])
    acc, macro, ece = evaluate_gates(_metrics(), baseline_metrics=base, max_drop=specs)
    assert not acc.passed and acc.change == pytest.approx(-0.05) and acc.margin == pytest.approx(-0.03)
    assert "fell by 0.0500 from the baseline 0.8500 to 0.8000" in acc.message and "over by 0.0300" in acc.message
    assert macro.passed and macro.margin == pytest.approx(0.01)
    # ECE rose by 0.03 (worse) with 0.02 allowed
    assert not ece.passed and ece.name == "calibration.ece rise <= 0.02" and ece.margin == pytest.approx(-0.01)
    # an improvement always passes
    (better,) = evaluate_gates(_metrics(accuracy=0.9), baseline_metrics=base,
                               max_drop=parse_gate_specs("max_drop", ["accuracy=0"]))
    assert better.passed and better.change == pytest.approx(0.05)


def test_max_drop_needs_a_baseline():
    with pytest.raises(UsageError, match="--baseline"):
        evaluate_gates(_metrics(), max_drop=parse_gate_specs("max_drop", ["accuracy=0.01"]))


def test_a_metric_that_is_not_there_fails_the_gate():
    no_labels = {"n": 0, "labels": [], "n_rows": 10}
    (g,) = evaluate_gates(no_labels, parse_gate_specs("fail_under", ["accuracy=0.1"]))
    assert not g.passed and g.actual is None and "not available" in g.message
    m = _metrics()
    m["per_class"]["fear"]["roc_auc"] = None
    (g,) = evaluate_gates(m, parse_gate_specs("fail_under", ["roc_auc.fear=0.5"]))
    assert not g.passed


def test_baseline_from_a_run_dir_or_a_file(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps(_metrics()))
    m1, p1 = load_baseline(tmp_path)
    m2, p2 = load_baseline(tmp_path / "metrics.json")
    assert m1 == m2 and p1 == p2 == tmp_path / "metrics.json"
    with pytest.raises(UsageError, match="--baseline"):
        load_baseline(tmp_path / "missing")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(DatasetError, match="bad.json: is not valid JSON"):
        load_baseline(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text("[1, 2]")
    with pytest.raises(DatasetError, match=r"other.json: field \(the top level\): \[1, 2\] is not of type 'object'"):
        load_baseline(tmp_path / "other.json")
    (tmp_path / "text.json").write_text('{"n": 3, "accuracy": "0.9"}')
    with pytest.raises(DatasetError, match="text.json: field accuracy: '0.9' is not of type 'number'"):
        load_baseline(tmp_path / "text.json")
    (tmp_path / "other2.json").write_text('{"tool": "x"}')
    with pytest.raises(UsageError, match="not a ferreport metrics.json"):
        load_baseline(tmp_path / "other2.json")


def test_gates_document_records_the_verdict_and_baseline_deltas(tmp_path):
    base = _metrics(accuracy=0.75)
    res = evaluate_gates(_metrics(), parse_gate_specs("fail_under", ["accuracy=0.9"]))
    doc = gates_document(res, baseline_path=tmp_path / "metrics.json", baseline_metrics=base, metrics=_metrics())
    assert doc["passed"] is False and doc["n_failed"] == 1
    assert doc["baseline"]["deltas"]["accuracy"] == {"baseline": 0.75, "actual": 0.8, "change": 0.05}
    json.dumps(doc, allow_nan=False)


def test_junit_has_one_test_case_per_gate_and_is_escape_safe():
    res = evaluate_gates(_metrics(), parse_gate_specs("fail_under", ["accuracy=0.9", "f1.fear=0.1"]),
                         baseline_metrics=_metrics(accuracy=0.9),
                         max_drop=parse_gate_specs("max_drop", ["accuracy=0.2"]))
    text = junit_xml(res, properties={"run_dir": 'reports/<run> & "co"\x01', "baseline": None})
    root = ET.fromstring(text.encode())
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["accuracy >= 0.9", "f1.fear >= 0.1", "accuracy drop <= 0.2"]
    assert suite.get("tests") == "3" and suite.get("failures") == "1" and root.get("failures") == "1"
    failure = cases[0].find("failure")
    assert failure is not None and "below 0.9000 by 0.1000" in failure.get("message")
    assert json.loads(failure.text)["margin"] == pytest.approx(-0.1)
    assert cases[1].find("failure") is None and cases[2].find("failure") is None
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props == {"run_dir": 'reports/<run> & "co"?'}
    assert junit_xml(res) == junit_xml(res)  # no timestamps


def test_junit_without_gates_is_an_empty_passing_suite():
    root = ET.fromstring(junit_xml(()).encode())
    assert root.find("testsuite").get("tests") == "0" and root.get("failures") == "0"


def test_training_gate_fails_only_an_interrupted_training():
    from ferreport.evaluation.gates import training_gate

    bad = training_gate({"training": {"complete": False, "epochs_run": 1, "epochs": 3}})
    assert not bad.passed and "interrupted after epoch 1 of 3" in bad.message and bad.kind == "fail_on_incomplete"
    assert training_gate({"accuracy": 0.5}).passed  # finished or early-stopped runs carry no "training" entry
