"""Quality gates for scheduled evaluation jobs: parse, evaluate, explain, export as JUnit.

A gate names a metric of ``metrics.json`` with a *key*:

* ``accuracy``, ``macro_f1``, ``weighted_f1``, ``macro_precision``, ``macro_recall``,
  ``weighted_precision``, ``weighted_recall``, ``n`` (faces scored);
* ``METRIC.CLASS`` for per-class scores: ``f1.fear``, ``precision.happy``, ``recall.sad``,
  ``roc_auc.angry``, ``average_precision.neutral`` (``f1/fear`` and ``per_class.fear.f1``
  are accepted too);
* ``calibration.ece``, ``calibration.mce``, ``calibration.brier``, ``calibration.log_loss``
  (lower is better; ``ece`` etc. alone are accepted);
* ``min_slice_accuracy``: the lowest accuracy of a slice with at least ``SliceConfig.min_faces``
  faces (slices.json, :mod:`ferreport.evaluation.slices`);
* ``drift_psi`` and ``embedding_auc`` (lower is better): the predicted-class mix's population
  stability index and the embedding domain classifier's ROC AUC of an audit against its
  reference (drift.json, :mod:`ferreport.evaluation.drift`); they need no labels.

Three kinds of gate, each given as ``KEY=VALUE`` (VALUE a number, or a percentage
``80%`` = 0.80):

* ``--fail-under KEY=VALUE`` fails when the metric is below VALUE (higher-is-better keys);
* ``--fail-over KEY=VALUE`` fails when the metric is above VALUE (lower-is-better keys);
* ``--max-drop KEY=VALUE`` (with ``--baseline``) fails when the metric got worse than the
  baseline's by more than VALUE, in the metric's own units (``accuracy=0.02`` or
  ``accuracy=2%``: two percentage points). Worse means lower, or higher for the
  lower-is-better calibration keys.

Comparisons use the 6-decimal values of metrics.json, so a metric exactly at its
threshold passes. A gate whose metric is absent (no labelled faces, no support for a
class) fails and says so.
"""

from __future__ import annotations

import json
import math
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ferreport.constants import CLASS_NAMES
from ferreport.errors import DatasetError, UsageError
from ferreport.evaluation.drift import read_drift
from ferreport.evaluation.metrics import round_metric
from ferreport.evaluation.slices import read_slices
from ferreport.runs import folder as artifacts
from ferreport.runs.guard import ArtefactError, read_json_inside

__all__ = [
    "GATES_FILE",
    "GateResult",
    "GateSpec",
    "evaluate_gates",
    "format_gate_lines",
    "gate_inputs",
    "gates_document",
    "junit_xml",
    "load_baseline",
    "metric_value",
    "parse_gate_specs",
    "resolve_key",
    "summary_deltas",
    "valid_keys",
    "training_gate",
]

#: Gate results of a run, beside metrics.json (read back by ``ferreport report``).
GATES_FILE = artifacts.GATES

TOP_LEVEL_HIGHER = ("accuracy", "macro_f1", "weighted_f1", "macro_precision", "macro_recall",
                    "weighted_precision", "weighted_recall")
PER_CLASS_METRICS = ("precision", "recall", "f1", "roc_auc", "average_precision")
CALIBRATION_METRICS = ("ece", "mce", "brier", "log_loss")
#: Keys read from slices.json (higher is better) and drift.json (lower is better), not metrics.json.
SLICE_KEYS = ("min_slice_accuracy",)
DRIFT_KEYS = ("drift_psi", "embedding_auc")
#: Keys whose values are not confined to 0..1.
UNBOUNDED = frozenset({"n", "calibration.log_loss", "drift_psi"})
#: Keys shown with their baseline deltas even without a --max-drop gate.
SUMMARY_KEYS = ("accuracy", "macro_f1", "weighted_f1")

KINDS = {
    "fail_under": "--fail-under",
    "fail_over": "--fail-over",
    "max_drop": "--max-drop",
}


def valid_keys() -> tuple[str, ...]:
    """Every canonical gate key, in a stable order."""
    keys = list(TOP_LEVEL_HIGHER) + ["n"]
    keys += [f"{m}.{c}" for m in PER_CLASS_METRICS for c in CLASS_NAMES]
    keys += [f"calibration.{m}" for m in CALIBRATION_METRICS]
    return tuple(keys) + SLICE_KEYS + DRIFT_KEYS


def higher_is_better(key: str) -> bool:
    return not key.startswith("calibration.") and key not in DRIFT_KEYS


def _keys_hint() -> str:
    return ("valid keys: " + ", ".join(TOP_LEVEL_HIGHER) + ", n, "
            + "METRIC.CLASS with METRIC in " + "/".join(PER_CLASS_METRICS)
            + " and CLASS in " + "/".join(CLASS_NAMES)
            + " (e.g. f1.fear), calibration." + "/".join(CALIBRATION_METRICS)
            + ", " + ", ".join(SLICE_KEYS + DRIFT_KEYS))


def resolve_key(raw: str, option: str = "--fail-under", spec: str | None = None) -> str:
    """Canonical key for ``raw`` (case, dashes and a few aliases forgiven); UsageError if unknown."""
    text = str(raw).strip().lower().replace("-", "_")
    parts = [p for p in re.split(r"[./:]", text) if p]
    canonical: str | None = None
    if len(parts) == 1:
        name = parts[0]
        if name in TOP_LEVEL_HIGHER or name == "n" or name in SLICE_KEYS or name in DRIFT_KEYS:
            canonical = name
        elif name in CALIBRATION_METRICS:
            canonical = f"calibration.{name}"
        elif name in ("f1", "precision", "recall"):  # "f1" alone: the macro average
            canonical = f"macro_{name}"
    elif len(parts) == 2:
        a, b = parts
        if a in PER_CLASS_METRICS and b in CLASS_NAMES:
            canonical = f"{a}.{b}"
        elif b in PER_CLASS_METRICS and a in CLASS_NAMES:
            canonical = f"{b}.{a}"
        elif a == "calibration" and b in CALIBRATION_METRICS:
            canonical = f"calibration.{b}"
    elif len(parts) == 3 and parts[0] == "per_class" and parts[1] in CLASS_NAMES and parts[2] in PER_CLASS_METRICS:
        canonical = f"{parts[2]}.{parts[1]}"
    if canonical is None:
        raise UsageError(f"{option} {spec or raw}: unknown metric key {raw.strip()!r}; {_keys_hint()}")
    return canonical


def metric_value(metrics: Mapping[str, Any] | None, key: str) -> float | None:
    """The value of a canonical key in a metrics.json dict, or None when absent / not a number."""
    if not metrics:
        return None
    if key.startswith("calibration."):
        node = metrics.get("calibration")
        value = node.get(key.split(".", 1)[1]) if isinstance(node, Mapping) else None
    elif "." in key:
        metric, cls = key.split(".", 1)
        per = metrics.get("per_class")
        entry = per.get(cls) if isinstance(per, Mapping) else None
        value = entry.get(metric) if isinstance(entry, Mapping) else None
    else:
        value = metrics.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        return None
    if key != "n" and key not in DRIFT_KEYS and not metrics.get("n"):
        return None  # no labelled faces: the scores are not defined
    return float(value)


def gate_inputs(run_dir: str | Path, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """``metrics`` with the slice and drift keys added from the run's slices.json and drift.json (when present)."""

    out = dict(metrics)
    for doc, keys in ((read_slices(Path(run_dir)), SLICE_KEYS),
                      (read_drift(Path(run_dir)), DRIFT_KEYS)):
        if doc is not None:
            out.update({key: doc.get(key) for key in keys})
    return out


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class GateSpec:
    kind: str        # fail_under | fail_over | max_drop
    key: str         # canonical key
    value: float     # threshold (fail_under/fail_over) or the allowed worsening (max_drop)
    text: str        # as given

    @property
    def option(self) -> str:
        return KINDS[self.kind]


def _parse_value(option: str, spec: str, key: str, text: str) -> float:
    raw = text.strip()
    percent = raw.endswith("%")
    try:
        value = float(raw[:-1] if percent else raw)
    except ValueError:
        raise UsageError(f"{option} {spec}: {text!r} is not a number (e.g. {key}=0.80 or {key}=80%)") from None
    if not math.isfinite(value):
        raise UsageError(f"{option} {spec}: the value must be a finite number")
    if percent:
        value /= 100.0
    if value < 0:
        raise UsageError(f"{option} {spec}: the value must not be negative")
    if key not in UNBOUNDED and value > 1:
        raise UsageError(f"{option} {spec}: {key} lies between 0 and 1; give a fraction ({key}={value / 100:g}) "
                         f"or a percentage ({key}={value:g}%)")
    return value


def parse_gate_specs(kind: str, specs: Iterable[str]) -> tuple[GateSpec, ...]:
    """Parse repeated ``KEY=VALUE`` option values of one kind; UsageError names the bad one."""
    if kind not in KINDS:
        raise ValueError(f"unknown gate kind {kind!r}")
    option = KINDS[kind]
    out: list[GateSpec] = []
    seen: dict[str, str] = {}
    for spec in specs:
        spec = str(spec)
        if "=" not in spec:
            raise UsageError(f"{option} {spec}: expected KEY=VALUE, e.g. accuracy=0.80 or f1.fear=0.30")
        raw_key, raw_value = spec.split("=", 1)
        key = resolve_key(raw_key, option, spec)
        if kind == "fail_under" and not higher_is_better(key):
            raise UsageError(f"{option} {spec}: {key} is better when lower; use --fail-over {key}={raw_value.strip()}")
        if kind == "fail_over" and higher_is_better(key):
            raise UsageError(f"{option} {spec}: {key} is better when higher; "
                             f"use --fail-under {key}={raw_value.strip()}")
        value = _parse_value(option, spec, key, raw_value)
        if key in seen:
            raise UsageError(f"{option}: {key} is given twice ({seen[key]} and {spec}); keep one")
        seen[key] = spec
        out.append(GateSpec(kind, key, value, spec))
    return tuple(out)


def load_baseline(path: str | Path) -> tuple[dict[str, Any], Path]:
    """Read a baseline: a run directory (its metrics.json) or a metrics.json file, guarded
    (:mod:`ferreport.runs.guard`): a regular file inside the folder, size- and depth-limited, checked
    against metrics.json's schema. A refused file is a DatasetError (exit 3) naming it."""
    p = Path(path)
    file = p / artifacts.METRICS if p.is_dir() else p
    if not os.path.lexists(file):
        what = f"{p} holds no {artifacts.METRICS}" if p.is_dir() else f"{p} not found"
        raise UsageError(f"--baseline {p}: {what}; give an evaluated run directory or its {artifacts.METRICS}")
    try:
        obj = read_json_inside(file, artifacts.size_limit(artifacts.METRICS), root=p if p.is_dir() else None,
                               schema=artifacts.SCHEMAS[artifacts.METRICS])
    except ArtefactError as exc:
        raise DatasetError(f"--baseline {file}: {exc.reason}") from None
    if not isinstance(obj, dict) or "accuracy" not in obj and "n" not in obj:
        raise UsageError(f"--baseline {file}: not a ferreport metrics.json (no 'n' or 'accuracy')")
    return obj, file


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class GateResult:
    """The verdict of one gate. ``margin`` > 0 is slack, < 0 how far it missed."""

    name: str                 # e.g. "accuracy >= 0.8", "accuracy drop <= 0.02"
    kind: str                 # fail_under | fail_over | max_drop
    key: str
    threshold: float          # the bound, or the allowed worsening for max_drop
    actual: float | None
    passed: bool
    margin: float | None
    message: str
    baseline: float | None = None
    change: float | None = None   # actual - baseline (max_drop only)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _f(x: float | None) -> str:
    return "n/a" if x is None else (f"{x:.0f}" if float(x).is_integer() and abs(x) >= 1 else f"{x:.4f}")


def _gate_name(spec: GateSpec) -> str:
    if spec.kind == "fail_under":
        return f"{spec.key} >= {spec.value:g}"
    if spec.kind == "fail_over":
        return f"{spec.key} <= {spec.value:g}"
    worse = "drop" if higher_is_better(spec.key) else "rise"
    return f"{spec.key} {worse} <= {spec.value:g}"


def _evaluate_one(spec: GateSpec, metrics: Mapping[str, Any], baseline: Mapping[str, Any] | None) -> GateResult:
    name = _gate_name(spec)
    actual = metric_value(metrics, spec.key)
    if actual is None:
        why = {"min_slice_accuracy": "no slices.json, or no slice of the minimum size",
               "drift_psi": "no drift.json: give --reference, or --model an evaluated run folder",
               "embedding_auc": "no drift.json, or the embedding test did not run (see drift.json)"}.get(
            spec.key, "no labelled faces, or no face of that class")
        return GateResult(name, spec.kind, spec.key, spec.value, None, False, None,
                          f"{spec.key} is not available in this run's metrics ({why}); the gate cannot pass")
    if spec.kind == "fail_under":
        margin = round_metric(actual - spec.value)
        passed = margin >= 0
        msg = (f"{spec.key} {_f(actual)} >= {_f(spec.value)} (margin {margin:+.4f})" if passed else
               f"{spec.key} {_f(actual)} is below {_f(spec.value)} by {-margin:.4f}")
        return GateResult(name, spec.kind, spec.key, spec.value, actual, passed, margin, msg)
    if spec.kind == "fail_over":
        margin = round_metric(spec.value - actual)
        passed = margin >= 0
        msg = (f"{spec.key} {_f(actual)} <= {_f(spec.value)} (margin {margin:+.4f})" if passed else
               f"{spec.key} {_f(actual)} is above {_f(spec.value)} by {-margin:.4f}")
        return GateResult(name, spec.kind, spec.key, spec.value, actual, passed, margin, msg)
    base = metric_value(baseline, spec.key)
    if base is None:
        return GateResult(name, spec.kind, spec.key, spec.value, actual, False, None,
                          f"{spec.key} is not available in the baseline's metrics; the gate cannot pass")
    change = round_metric(actual - base)
    worsening = round_metric(-change if higher_is_better(spec.key) else change)
    margin = round_metric(spec.value - worsening)
    passed = margin >= 0
    verb = "fell" if change < 0 else "rose"
    how = f"{spec.key} {verb} by {abs(change):.4f} from the baseline {_f(base)} to {_f(actual)}" if change else \
        f"{spec.key} is unchanged from the baseline {_f(base)}"
    if passed:
        msg = f"{how}; worsening allowed up to {spec.value:.4f} (margin {margin:+.4f})"
    else:
        msg = f"{how}; at most {spec.value:.4f} allowed, over by {-margin:.4f}"
    return GateResult(name, spec.kind, spec.key, spec.value, actual, passed, margin, msg, base, change)


def training_gate(metrics: Mapping[str, Any]) -> GateResult:
    """``--fail-on-incomplete``: fails when metrics.json says training was interrupted (``training.complete`` false).

    Runs without a ``training`` entry (finished, early-stopped, or a model evaluated from
    elsewhere) pass.
    """
    training = metrics.get("training")
    if isinstance(training, Mapping) and training.get("complete") is False:
        return GateResult("training complete", "fail_on_incomplete", "training.complete", 1.0, 0.0, False, None,
                          f"training was interrupted after epoch {training.get('epochs_run')} of "
                          f"{training.get('epochs')}; resume it with `ferreport train --out RUN_DIR --resume`")
    return GateResult("training complete", "fail_on_incomplete", "training.complete", 1.0, 1.0, True, None,
                      "training ran to its end (all epochs or a deliberate stop)")


def evaluate_gates(metrics: Mapping[str, Any], fail_under: Sequence[GateSpec] = (),
                   baseline_metrics: Mapping[str, Any] | None = None, max_drop: Sequence[GateSpec] = (),
                   fail_over: Sequence[GateSpec] = ()) -> tuple[GateResult, ...]:
    """Evaluate every gate against ``metrics`` (a metrics.json dict), in the order given."""
    if max_drop and baseline_metrics is None:
        raise UsageError("--max-drop needs --baseline RUN_DIR|metrics.json to compare against")
    specs = [*fail_under, *fail_over, *max_drop]
    return tuple(_evaluate_one(s, metrics, baseline_metrics) for s in specs)


def summary_deltas(metrics: Mapping[str, Any], baseline: Mapping[str, Any] | None,
                   keys: Sequence[str] = SUMMARY_KEYS) -> dict[str, dict[str, float | None]]:
    """``{key: {baseline, actual, change}}`` for the headline metrics (empty without a baseline)."""
    if baseline is None:
        return {}
    out = {}
    for key in keys:
        a, b = metric_value(metrics, key), metric_value(baseline, key)
        change = round_metric(a - b) if a is not None and b is not None else None
        out[key] = {"baseline": b, "actual": a, "change": change}
    return out


def gates_document(results: Sequence[GateResult], *, baseline_path: Path | None = None,
                   baseline_metrics: Mapping[str, Any] | None = None,
                   metrics: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON written to ``gates.json`` (deterministic: no times)."""
    return {
        "passed": all(r.passed for r in results),
        "n_gates": len(results),
        "n_failed": sum(not r.passed for r in results),
        "gates": [r.to_dict() for r in results],
        "baseline": None if baseline_path is None else {
            "path": str(baseline_path),
            "deltas": summary_deltas(metrics or {}, baseline_metrics),
        },
    }


def format_gate_lines(results: Sequence[GateResult]) -> list[str]:
    """Console lines: one per gate, PASS/FAIL first."""
    return [f"gate {'PASS' if r.passed else 'FAIL'}  {r.name}: {r.message}" for r in results]


def failure_message(results: Sequence[GateResult]) -> str:
    failed = [r for r in results if not r.passed]
    head = f"{len(failed)} of {len(results)} quality gate{'s' if len(results) != 1 else ''} failed: "
    return head + "; ".join(r.message for r in failed)


# --------------------------------------------------------------------------- JUnit

_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_text(value: Any) -> str:
    return _XML_BAD.sub("?", str(value))


def junit_xml(results: Sequence[GateResult], *, suite: str = "ferreport.quality-gates",
              properties: Mapping[str, Any] | None = None) -> str:
    """JUnit XML: one ``<testcase>`` per gate, ``<failure>`` for the failed ones.

    Built with ElementTree, so names and messages are escaped; characters XML cannot
    hold at all are replaced by ``?``. No timestamps: equal results give equal files.
    """
    n_failed = sum(not r.passed for r in results)
    root = ET.Element("testsuites", {"name": "ferreport", "tests": str(len(results)),
                                     "failures": str(n_failed), "errors": "0", "time": "0"})
    ts = ET.SubElement(root, "testsuite", {"name": suite, "tests": str(len(results)), "failures": str(n_failed),
                                           "errors": "0", "skipped": "0", "time": "0"})
    if properties:
        props = ET.SubElement(ts, "properties")
        for k, v in properties.items():
            if v is not None:
                ET.SubElement(props, "property", {"name": _xml_text(k), "value": _xml_text(v)})
    for r in results:
        tc = ET.SubElement(ts, "testcase", {"classname": f"ferreport.evaluation.gates.{r.kind}",
                                            "name": _xml_text(r.name), "time": "0"})
        if r.passed:
            ET.SubElement(tc, "system-out").text = _xml_text(r.message)
        else:
            failure = ET.SubElement(tc, "failure", {"type": "QualityGateFailed", "message": _xml_text(r.message)})
            detail = {"key": r.key, "kind": r.kind, "threshold": r.threshold, "actual": r.actual,
                      "margin": r.margin}
            if r.kind == "max_drop":
                detail.update(baseline=r.baseline, change=r.change)
            failure.text = _xml_text(json.dumps(detail, sort_keys=True))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=False).join(
        ['<?xml version="1.0" encoding="UTF-8"?>\n', "\n"])
