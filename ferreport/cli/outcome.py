"""A command's outcome: quality gates, machine-readable output, exit code 1 on a failed gate.

Shared by the evaluating commands (``evaluate``, ``run``, ``predict``; see
:mod:`ferreport.cli.commands`)::

    plan = plan_gates(kw)                     # parse gates, read the baseline: usage errors before any work
    with Console(plan.json_out) as console:   # --json: stdout is reserved for the summary
        metrics = ...evaluate...
        outcome = finish(run_dir, metrics, plan, command="evaluate", render=...)
        console.echo(summary_line(metrics))
    console.conclude(outcome)                 # console gate lines, the JSON object, GateFailure (exit 1)

:func:`finish` evaluates the gates, writes ``gates.json``, renders the report through
the command's ``render`` (the report shows a "Quality gates" section), writes the JUnit
file and updates the history index of the folder holding the run; only then does a
failed gate end the process with exit code 1, so every output exists either way.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import click

from ferreport.errors import FerreportError, GateFailure, UsageError
from ferreport.evaluation.drift import read_drift
from ferreport.evaluation.gates import (
    GATES_FILE,
    GateResult,
    GateSpec,
    evaluate_gates,
    failure_message,
    format_gate_lines,
    gate_inputs,
    gates_document,
    junit_xml,
    load_baseline,
    parse_gate_specs,
    summary_deltas,
    training_gate,
)
from ferreport.report import update_index
from ferreport.runs import folder as artifacts
from ferreport.runs.atomic import write_json, write_text

__all__ = ["GATE_PARAMS", "Console", "GatePlan", "Outcome", "error_json", "finish", "gate_options",
           "plan_gates"]

#: Parameter names the gate options add to a command.
GATE_PARAMS = ("fail_under", "fail_over", "baseline", "max_drop", "json_out", "junit", "fail_on_incomplete")

_PathType = click.Path(path_type=Path)


def gate_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add the quality-gate and machine-output options to a Click command."""
    options = [
        click.option("--fail-under", "fail_under", multiple=True, metavar="KEY=VALUE",
                     help="Exit 1 when a metric is below VALUE, e.g. accuracy=0.80, macro_f1=0.5, f1.fear=30%. "
                          "Repeatable."),
        click.option("--fail-over", "fail_over", multiple=True, metavar="KEY=VALUE",
                     help="Exit 1 when a lower-is-better metric is above VALUE, e.g. calibration.ece=0.05. "
                          "Repeatable."),
        click.option("--baseline", type=_PathType, default=None, metavar="RUN_DIR|metrics.json",
                     help="Earlier run (or its metrics.json) to compare against; deltas go into the report."),
        click.option("--max-drop", "max_drop", multiple=True, metavar="KEY=VALUE",
                     help="With --baseline: exit 1 when a metric got worse by more than VALUE "
                          "(metric units: accuracy=0.02 or accuracy=2%). Repeatable."),
        click.option("--fail-on-incomplete", "fail_on_incomplete", is_flag=True,
                     help="Exit 1 when the run's training was interrupted (fewer epochs than planned, no early "
                          "stop); without it an interrupted run only warns."),
        click.option("--json", "json_out", is_flag=True,
                     help="Print one JSON object (status, exit code, run dir, metrics, gates) on stdout; "
                          "everything else goes to stderr."),
        click.option("--junit", type=_PathType, default=None, metavar="FILE",
                     help="Write JUnit XML with one test case per gate."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@dataclass(frozen=True)
class GatePlan:
    fail_under: tuple[GateSpec, ...] = ()
    fail_over: tuple[GateSpec, ...] = ()
    max_drop: tuple[GateSpec, ...] = ()
    baseline: dict[str, Any] | None = None
    baseline_path: Path | None = None
    json_out: bool = False
    junit: Path | None = None
    fail_on_incomplete: bool = False

    @property
    def has_gates(self) -> bool:
        return bool(self.fail_under or self.fail_over or self.max_drop or self.fail_on_incomplete)

    def evaluate(self, metrics: dict[str, Any]) -> tuple[GateResult, ...]:
        results = evaluate_gates(metrics, self.fail_under, self.baseline, self.max_drop, self.fail_over)
        return (*results, training_gate(metrics)) if self.fail_on_incomplete else results


def plan_gates(kw: dict[str, Any], *, pop: bool = True) -> GatePlan:
    """Parse the gate options in ``kw`` (removed from it when ``pop``) and read the baseline.

    Raises :class:`~ferreport.errors.UsageError` (exit 2) on a bad spec, an unknown key,
    ``--max-drop`` without ``--baseline`` or an unreadable baseline, before any work starts.
    """
    get = kw.pop if pop else kw.get
    values = {name: get(name, None) for name in GATE_PARAMS}
    fail_under = parse_gate_specs("fail_under", values["fail_under"] or ())
    fail_over = parse_gate_specs("fail_over", values["fail_over"] or ())
    max_drop = parse_gate_specs("max_drop", values["max_drop"] or ())
    baseline = baseline_path = None
    if max_drop and values["baseline"] is None:
        raise UsageError("--max-drop needs --baseline RUN_DIR|metrics.json to compare against")
    if values["baseline"] is not None:
        baseline, baseline_path = load_baseline(values["baseline"])
    junit = Path(values["junit"]) if values["junit"] is not None else None
    return GatePlan(fail_under, fail_over, max_drop, baseline, baseline_path, bool(values["json_out"]), junit,
                    bool(values["fail_on_incomplete"]))


# --------------------------------------------------------------------------- console


class Console:
    """Routes human output: stdout normally; stderr (Python and file-descriptor level) under --json.

    Inside the ``with`` block, under ``--json``, anything written to stdout - ``print``,
    Keras progress bars, C libraries writing to fd 1 - lands on stderr, so the one JSON
    object printed by :meth:`conclude` after the block is all stdout carries.
    """

    def __init__(self, json_out: bool):
        self.json_out = json_out
        self._stack: contextlib.ExitStack | None = None
        self._saved_fd: int | None = None

    def echo(self, message: str = "") -> None:
        click.echo(message, err=self.json_out)

    def __enter__(self) -> Console:
        if not self.json_out:
            return self
        stack = contextlib.ExitStack()
        sys.stdout.flush()
        try:
            fd = sys.stdout.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation, ValueError):
            fd = None
        if fd is not None:
            try:
                err_fd = sys.stderr.fileno()
                saved = os.dup(fd)
            except (AttributeError, OSError, io.UnsupportedOperation, ValueError):
                saved = None
            if saved is not None:
                try:
                    os.dup2(err_fd, fd)
                except OSError:
                    os.close(saved)
                else:
                    self._saved_fd = saved
                    stack.callback(self._restore_fd, fd)
        stack.enter_context(contextlib.redirect_stdout(sys.stderr))
        self._stack = stack
        return self

    def _restore_fd(self, fd: int) -> None:
        if self._saved_fd is None:
            return
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        os.dup2(self._saved_fd, fd)
        os.close(self._saved_fd)
        self._saved_fd = None

    def __exit__(self, *exc: Any) -> None:
        if self._stack is not None:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            self._stack.close()
            self._stack = None

    def conclude(self, summary: Outcome | None, out: IO[str] | None = None) -> None:
        """Print the gate verdicts (and the JSON object under --json); raise GateFailure if one failed.

        ``None`` (a command that evaluated nothing, e.g. a multi-worker run's non-chief) concludes nothing.
        """
        if summary is None:
            return
        for line in format_gate_lines(summary.gates):
            self.echo(line)
        if summary.baseline_deltas and not any(g.kind == "max_drop" for g in summary.gates):
            for key, d in summary.baseline_deltas.items():
                if d.get("change") is not None:
                    self.echo(f"baseline {key} {d['baseline']:.4f} -> {d['actual']:.4f} ({d['change']:+.4f})")
        if self.json_out:
            click.echo(json.dumps(summary.to_json(), sort_keys=True, ensure_ascii=False, allow_nan=False), file=out)
        if not summary.passed:
            exc = GateFailure(failure_message(summary.gates))
            exc.json_emitted = self.json_out  # type: ignore[attr-defined]
            raise exc


def error_json(exc: FerreportError, command: str | None = None) -> str:
    """The --json object for a job that stopped with an error."""
    doc = {"status": "error", "exit_code": exc.exit_code, "command": command, "error": str(exc),
           "error_type": type(exc).__name__}
    traceback_path = getattr(exc, "traceback_path", None)
    if traceback_path is not None:  # an internal error: where its traceback was saved
        doc["traceback"] = str(traceback_path)
    return json.dumps(doc, sort_keys=True, ensure_ascii=False)


# --------------------------------------------------------------------------- finishing a command


@dataclass(frozen=True)
class Outcome:
    command: str
    run_dir: Path
    metrics: dict[str, Any]
    gates: tuple[GateResult, ...] = ()
    baseline_path: Path | None = None
    baseline_deltas: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else GateFailure.exit_code

    def to_json(self) -> dict[str, Any]:
        m = self.metrics
        ci = m.get("ci") if isinstance(m.get("ci"), dict) else {}
        return {
            "status": "passed" if self.passed else "failed",
            "exit_code": self.exit_code,
            "command": self.command,
            "run_dir": str(self.run_dir),
            "metrics": {
                "n": m.get("n"), "n_rows": m.get("n_rows"),
                "accuracy": m.get("accuracy"), "macro_f1": m.get("macro_f1"), "weighted_f1": m.get("weighted_f1"),
                "ci": {k: ci.get(k) for k in ("accuracy", "macro_f1", "weighted_f1") if k in ci},
                "per_class_f1": {c: v.get("f1") for c, v in (m.get("per_class") or {}).items()
                                 if isinstance(v, dict)},
                "ece": (m.get("calibration") or {}).get("ece") if isinstance(m.get("calibration"), dict) else None,
            },
            "gates": [g.to_dict() for g in self.gates],
            "failed_gates": [g.name for g in self.gates if not g.passed],
            "baseline": None if self.baseline_path is None else {"path": str(self.baseline_path),
                                                                 "deltas": self.baseline_deltas},
            "outputs": dict(self.outputs),
            "model_contract": self._contract(),
            **self._drift(),
        }

    def _contract(self) -> dict[str, Any] | None:
        """The model's contract as applied (summary) and where each field came from (``"source": "assumed"``)."""
        contract = (artifacts.RunFolder(self.run_dir).read_provenance() or {}).get("model_contract")
        if not isinstance(contract, dict):
            return None
        sources = contract.get("sources") if isinstance(contract.get("sources"), dict) else {}
        fields = ("input_range", "channel_order", "classes", "outputs", "height", "width", "channels", "layout")
        return {"summary": contract.get("summary"),
                "fields": {k: {"value": contract.get(k), "source": sources.get(k)} for k in fields if k in contract}}

    def _drift(self) -> dict[str, Any]:
        """``{"drift": {drift_detected, drift_psi, embedding_auc, fired}}`` of an audit with a reference, else {}."""
        doc = read_drift(Path(self.run_dir))
        if doc is None:
            return {}
        return {"drift": {k: doc.get(k) for k in ("drift_detected", "drift_psi", "embedding_auc", "fired")}}


def finish(run_dir: Path, metrics: dict[str, Any], plan: GatePlan, *, command: str,
           render: Callable[[Path], dict[str, Path]] | None = None, index: bool = True,
           target: Any = None) -> Outcome:
    """Gates -> gates.json -> ``render(run_dir)`` (the report) -> [swap in] -> JUnit -> history index.

    ``target`` (:class:`ferreport.cli.commands.Output`) is where ``run_dir`` is being built: its
    recorded paths are pointed at the final folder, the report is rendered in the staged one, and
    only then is the folder swapped in, so the final folder never lacks its report. The outcome names
    the final folder. Never raises GateFailure itself.
    """
    run_dir = Path(run_dir)
    swap = getattr(target, "swap", None)
    results = plan.evaluate(gate_inputs(run_dir, metrics)) if plan.has_gates else ()
    outputs: dict[str, str] = {}
    for key, name in (("predictions", artifacts.PREDICTIONS), ("metrics", artifacts.METRICS),
                      ("audit_summary", artifacts.AUDIT_SUMMARY), ("skipped", artifacts.SKIPPED),
                      ("slices", artifacts.SLICES), ("drift", artifacts.DRIFT),
                      ("label_issues", artifacts.LABEL_ISSUES)):
        if (run_dir / name).is_file():
            outputs[key] = str(run_dir / name)
    gates_path = run_dir / GATES_FILE
    if plan.has_gates or plan.baseline is not None:
        write_json(gates_path, gates_document(results, baseline_path=plan.baseline_path,
                                              baseline_metrics=plan.baseline, metrics=metrics))
        outputs["gates"] = str(gates_path)
    else:  # a re-evaluation without gates must not show a stale verdict
        gates_path.unlink(missing_ok=True)
    if swap is not None:
        swap.repoint()  # the page shows the final paths
    if render is not None:
        rendered = render(run_dir)
        outputs.update({f"report_{k}": str(v) for k, v in rendered.items()})
    if target is not None:
        final = target.commit()
        outputs = {k: str(final / Path(v).relative_to(run_dir)) if Path(v).is_relative_to(run_dir) else v
                   for k, v in outputs.items()}
        run_dir = final
    if plan.junit is not None:
        write_text(plan.junit, junit_xml(results, properties={
            "run_dir": str(run_dir), "command": command,
            "baseline": str(plan.baseline_path) if plan.baseline_path else None}))
        outputs["junit"] = str(plan.junit)
    if index:
        page = update_index(run_dir.parent)
        if page is not None:
            outputs["index"] = str(page)
    return Outcome(command, run_dir, metrics, results, plan.baseline_path,
                      summary_deltas(metrics, plan.baseline), outputs)
