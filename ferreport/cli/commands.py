"""What each command of the CLI does: its stages in order, from settings to report.

:mod:`ferreport.cli.main` parses the command line into the settings of :mod:`ferreport.config`
and calls one function here; each strings the stages together (:mod:`ferreport.datasets.prepare_stage`,
:mod:`ferreport.models.train_stage`, :mod:`ferreport.evaluation.evaluate_stage`,
:mod:`ferreport.audit.predict`) and, for the evaluating commands, ends with
:func:`ferreport.cli.outcome.finish` (gates -> report -> JUnit -> history index), so ``--format``
travels one way: command -> stage -> report. This is the only layer that renders reports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ferreport.audit.predict import audit_summary_line, run_audit
from ferreport.cli.outcome import Console, GatePlan, Outcome, finish
from ferreport.config import FORMATS, AuditConfig, LabelIssuesConfig, ModelConfig, RunConfig
from ferreport.datasets.loading import check_dataset_root
from ferreport.datasets.prepare_stage import balance, data_summary, format_summary
from ferreport.datasets.prepare_stage import prepare as prepare_split
from ferreport.errors import UsageError
from ferreport.evaluation.evaluate_stage import evaluate_model, evaluate_on_split, evaluate_run, summary_line
from ferreport.evaluation.label_issues import label_audit
from ferreport.models.train_stage import train as train_run
from ferreport.progress import echo, stage
from ferreport.report import is_audit_dir, report_notices, update_index, write_audit_report, write_report
from ferreport.report.compare import compare_runs, summary_lines
from ferreport.report.label_issues import label_audit_page
from ferreport.runs.atomic import FolderReplacement
from ferreport.runs.folder import CONFIG, PREDICTIONS, RunFolder, check_run_dir, check_writable, clean_run_dir


def _renderer(formats: tuple[str, ...]) -> Callable[[Path], dict[str, Path]] | None:
    """The report rendering of a finished command (``None``: no report asked for)."""
    if not formats:
        return None
    return lambda run_dir: render_report(run_dir, formats=formats)


def render_report(run_dir: Path, *, formats: tuple[str, ...] = FORMATS) -> dict[str, Path]:
    """Render report.html / report.pdf from the run directory's stored results alone."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: no such run folder; pass a folder written by ferreport run, train + evaluate, "
                         "or predict")
    run = RunFolder(run_dir)
    if not run.has(PREDICTIONS):
        fix = (f"run `ferreport evaluate {run_dir}` first" if run.has(CONFIG)
               else "not a run folder; pass a folder written by ferreport run, train + evaluate, or predict")
        raise UsageError(f"{run_dir}: no {PREDICTIONS}; {fix}")
    clean_run_dir(run_dir)
    write = write_audit_report if is_audit_dir(run_dir) else write_report  # a folder audit: the audit report
    with stage("report", unit="") as bar:
        written = write(run_dir, formats)
        bar.summary = f"{', '.join(written)} in {bar.seconds:.1f} s"
    return written




def prepare(config: RunConfig, *, progress: bool = False) -> list[str]:
    """Read, split and balance the dataset as ``train`` would; the data summary's lines."""
    prepared = prepare_split(config, progress=progress)
    summary = data_summary(prepared, balance(prepared, config))
    cache = f"cache {'hit' if prepared.dataset.cache_hit else 'written'} in {prepared.dataset.seconds:.1f} s"
    return [format_summary(summary), cache]


def replacement(out: Path | None, force: bool, *, resume: bool = False,
                strategy: str = "auto") -> FolderReplacement | None:
    """``--force`` on an ``--out`` that holds files: the staged replacement to write into (None: write in place).

    The old folder stays until the new one is complete (:class:`ferreport.runs.atomic.FolderReplacement`).
    """
    if not force:
        return None
    if resume:
        raise UsageError("--force replaces --out and --resume continues it: pass only one of them")
    if strategy == "multiworker":
        raise UsageError("--force cannot be used with --strategy multiworker (the workers share --out); "
                         "remove the folder or choose another --out")
    if out is None or not Path(out).is_dir() or not any(Path(out).iterdir()):
        return None
    check_writable(Path(out))
    return FolderReplacement(out)


def _staged(config: Any, swap: FolderReplacement | None) -> Any:
    """``config`` writing into the staged folder of ``swap`` (unchanged without one)."""
    if swap is None:
        return config
    return config.with_values(out=swap.staged) if isinstance(config, RunConfig) else replace(config, out=swap.staged)


def _built(swap: FolderReplacement | None, work: Callable[[], Any]) -> Any:
    """``work()``; then the staged folder replaces the old one, or is dropped if ``work`` failed."""
    try:
        result = work()
    except BaseException:
        if swap is not None:
            swap.abort()
        raise
    if swap is not None:
        swap.commit()
    return result


def _final(run_dir: Path, swap: FolderReplacement | None) -> Path:
    return swap.final if swap is not None else Path(run_dir)


def _conclude(console: Console, outcome: Outcome, metrics: dict[str, Any], *, collapse: bool = True) -> None:
    """The console's last lines: the report's warnings (stderr), the summary, then every file written, one a line."""
    for line in report_notices(outcome.run_dir, skip=("gates",) if collapse else ("gates", "collapse")):
        echo(line)  # the report's own warnings: the console never says less than the page
    for path in outcome.outputs.values():
        console.echo(path)


def train(config: RunConfig, *, progress: bool = False, force: bool = False) -> list[Path]:
    """prepare -> train; the files written (the run folder's model, history, config, splits)."""
    swap = replacement(config.out, force, resume=config.resume, strategy=config.strategy)
    run_dir = _final(_built(swap, lambda: train_run(_staged(config, swap), progress=progress)), swap)
    return RunFolder(run_dir).trained_files() or [run_dir]


def run(config: RunConfig, plan: GatePlan, console: Console, *, progress: bool = False,
        force: bool = False) -> Outcome | None:
    """(sample ->) prepare -> train -> evaluate -> gates -> report."""
    swap = replacement(config.out, force, resume=config.resume, strategy=config.strategy)

    def work() -> tuple[Path, dict[str, Any] | None]:
        run_dir = train_run(_staged(config, swap), progress=progress)
        if config.strategy == "multiworker":
            from ferreport.models.distributed import worker_info  # TensorFlow: loaded by training already

            if not worker_info()["chief"]:  # the chief evaluates and reports
                return run_dir, None
        explain = ModelConfig(saliency=config.saliency, saliency_layer=config.saliency_layer)
        return run_dir, evaluate_run(run_dir, model=explain, progress=progress)

    run_dir, metrics = _built(swap, work)
    run_dir = _final(run_dir, swap)
    if metrics is None:
        console.echo(str(run_dir))
        return None
    outcome = finish(run_dir, metrics, plan, command="run", render=_renderer(config.formats))
    console.echo(summary_line(metrics))
    _conclude(console, outcome, metrics, collapse=False)  # training already said it collapsed
    return outcome


def evaluate(run_dir: Path | None, model_path: Path | None, config: RunConfig, plan: GatePlan, console: Console, *,
             split_of: Path | None = None, progress: bool = False, force: bool = False) -> Outcome:
    """RUN_DIR's model (or ``model_path``) on its test split, ``model_path`` on ``config.data``, or
    ``model_path`` on ``split_of``'s test faces (a new run folder: ``--force`` replaces an old one)."""
    if split_of is not None and (model_path is None or run_dir is not None):
        raise UsageError("--split-of RUN_DIR scores --model FILE on RUN_DIR's test faces: give --model, and no "
                         "RUN_DIR argument")
    if split_of is None and run_dir is None and (model_path is None or config.data is None):
        raise UsageError("give a RUN_DIR, or --model FILE with --data DIR or --split-of RUN_DIR")
    if run_dir is not None:
        metrics = evaluate_run(run_dir, model_path=model_path, model=config.model, progress=progress)
        where = Path(run_dir)
    else:
        swap = replacement(config.out, force)
        staged = _staged(config, swap)
        where, metrics = _built(swap, lambda: evaluate_on_split(model_path, split_of, staged, progress=progress)
                                if split_of is not None else evaluate_model(model_path, staged, progress=progress))
        where = _final(where, swap)
    outcome = finish(where, metrics, plan, command="evaluate", render=_renderer(config.formats))
    console.echo(summary_line(metrics))
    _conclude(console, outcome, metrics)
    return outcome


def report(run_dir: Path, formats: tuple[str, ...]) -> list[Path]:
    """Re-render a run folder's report from its saved artefacts; the files written."""
    paths = list(render_report(run_dir, formats=formats).values())
    update_index(Path(run_dir).parent)
    return paths


def predict(folder: Path, model: Path, config: AuditConfig, plan: GatePlan, console: Console, *,
            progress: bool = False, force: bool = False) -> Outcome:
    """Audit ``folder`` -> gates -> report (``--force``: replacing an old ``--out`` once the audit is complete)."""

    swap = replacement(config.out, force)
    result = _built(swap, lambda: run_audit(folder, model, replace(_staged(config, swap), formats=()),
                                            progress=progress))
    out_dir = _final(result.out_dir, swap)
    outcome = finish(out_dir, result.metrics or {}, plan, command="predict", render=_renderer(config.formats))
    console.echo(audit_summary_line(result.summary, result.metrics))
    _conclude(console, outcome, result.metrics or {})
    return outcome


def compare(run_a: Path, run_b: Path, console: Console, *, out: Path | None, formats: tuple[str, ...],
            data: Path | None, use_dataset: bool, n_resamples: int, seed: int) -> dict[str, Any]:
    """Compare two runs (B - A), write the comparison and its report; the --json summary."""
    with stage("compare", unit="") as bar:  # bootstrap, flipped faces and the report: seconds to a minute
        result = compare_runs(run_a, run_b, out=out, formats=formats, data=data, use_dataset=use_dataset,
                              n_resamples=n_resamples, seed=seed)
        bar.summary = f"{result.document['n']:,} paired faces in {bar.seconds:.1f} s"
    update_index(result.out_dir.parent)
    for line in summary_lines(result.document):
        console.echo(line)
    for path in result.files.values():
        console.echo(str(path))
    doc = result.document
    return {"status": "passed", "exit_code": 0, "command": "compare", "out_dir": str(result.out_dir),
            "outputs": {k: str(v) for k, v in result.files.items()}, "a": doc["a"], "b": doc["b"], "n": doc["n"],
            "deltas": doc["deltas"], "mcnemar": doc["mcnemar"], "flips": doc["flips"]}


def label_issues(config: LabelIssuesConfig, *, force: bool = False) -> Any:
    """K-fold out-of-sample probabilities of every face of ``config.data`` -> the suspect labels
    (:func:`ferreport.evaluation.label_issues.label_audit`); ``--force`` replaces a non-empty ``--out`` when done."""
    if config.data is None:
        raise UsageError("label-issues needs --data DIR (ExpW layout or class folders)")
    if config.out is None:
        raise UsageError("label-issues needs --out DIR (the dataset itself is never written to)")
    check_dataset_root(config.data)
    if Path(config.out).resolve() == Path(config.data).resolve() or \
            Path(config.data).resolve() in Path(config.out).resolve().parents:
        raise UsageError(f"--out {config.out} is inside --data {config.data}; write the results elsewhere")
    swap = replacement(config.out, force)
    if swap is None:
        check_run_dir(Path(config.out))
    out = swap.staged if swap is not None else Path(config.out)
    result = _built(swap, lambda: label_audit(
        config.data, out, model_kind=config.model_kind, folds=config.folds, seed=config.seed, epochs=config.epochs,
        ranking=config.ranking, strict=config.strict, cache_dir=config.cache_dir, page=label_audit_page))
    if swap is not None:  # the files now live in the final folder
        final = swap.final
        result = replace(result, outputs={k: final / p.name for k, p in result.outputs.items()},
                         summary={**result.summary, "outputs": {k: str(final / p.name)
                                                                for k, p in result.outputs.items()}})
    return result
