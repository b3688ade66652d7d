"""What each command of the CLI does: its stages in order, from settings to report.

:mod:`ferreport.cli.main` parses the command line into the settings of :mod:`ferreport.config`
and calls one function here; each strings the stages together (:mod:`ferreport.datasets.prepare_stage`,
:mod:`ferreport.models.train_stage`, :mod:`ferreport.evaluation.evaluate_stage`,
:mod:`ferreport.audit.predict`) and, for the evaluating commands, ends with
:func:`ferreport.cli.outcome.finish` (gates -> report -> JUnit -> history index), so ``--format``
travels one way: command -> stage -> report. This is the only layer that renders reports.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
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
from ferreport.report.compare import compare_runs, default_out, summary_lines
from ferreport.report.label_issues import label_audit_page
from ferreport.runs.atomic import FolderReplacement
from ferreport.runs.folder import (
    CONFIG,
    PREDICTIONS,
    RunFolder,
    check_apart,
    check_replaceable,
    check_run_dir,
    clean_run_dir,
    folder_lock,
    new_run_id,
)


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
    if not run.present(PREDICTIONS):  # one that is there but is no regular file is refused by name when read
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


@dataclass
class Output:
    """Where a command writes: the ``final`` folder, and the staged copy it builds first (``swap``).

    With a staged copy the new folder, reports included, is built beside the final one and swapped
    in only when complete (:class:`ferreport.runs.atomic.FolderReplacement`): at any moment of
    Ctrl-C, ``kill`` or a crash the final folder is the old one, whole, or the new one, whole.
    Without one (a training that starts a new folder: an interrupted one is kept, to ``--resume``)
    the command writes in place.
    """

    final: Path
    swap: FolderReplacement | None = None

    @property
    def work(self) -> Path:
        """The folder the command writes into now."""
        return self.swap.staged if self.swap is not None else self.final

    def abort(self) -> None:
        if self.swap is not None:
            self.swap.abort()

    def commit(self) -> Path:
        """The staged folder swapped in (the old one removed); the final folder."""
        if self.swap is not None:
            self.swap.commit()
            self.swap = None
        return self.final


def output(out: Path, force: bool, *, inputs: Mapping[str, Path | None], stage: bool = True,
           resume: bool = False, strategy: str = "auto", can_resume: bool = False) -> Output:
    """Check ``out`` before any work and decide how it is written (call under :func:`folder_lock`).

    ``out`` must lie apart from every input (:func:`ferreport.runs.folder.check_apart`); without
    ``--force`` it must be empty or absent; ``--force`` replaces only a folder ferreport wrote
    (:func:`ferreport.runs.folder.check_replaceable`), once the new one is complete. ``stage``
    builds even a new folder aside first (False: only a replacement is staged).
    """
    out = Path(out)
    if force and resume:
        raise UsageError("--force replaces --out and --resume continues it: pass only one of them")
    if force and strategy == "multiworker":
        raise UsageError("--force cannot be used with --strategy multiworker (the workers share --out); "
                         "remove the folder or choose another --out")
    check_apart(out, inputs)
    if resume or strategy == "multiworker":
        return Output(out)
    holds_files = out.is_dir() and any(out.iterdir())
    if force:
        check_replaceable(out)
    else:
        check_run_dir(out, can_resume=can_resume)
    if not stage and not (force and holds_files):
        return Output(out)
    return Output(out, FolderReplacement(out))


def _built(target: Output, work: Callable[[], Any]) -> Any:
    """``work()``; the staged folder is dropped (the old one left as it was) if it fails or is stopped."""
    try:
        return work()
    except BaseException:
        target.abort()
        raise


def _new_out(out: Path | None, reports_dir: Path) -> Path:
    """``--out``, or a new run id under the reports folder."""
    return Path(out) if out is not None else Path(reports_dir) / new_run_id()


def _conclude(console: Console, outcome: Outcome, metrics: dict[str, Any], *, collapse: bool = True) -> None:
    """The console's last lines: the report's warnings (stderr), the summary, then every file written, one a line."""
    # the contract's assumed fields were said line by line, with their flags, when the model was opened
    for line in report_notices(outcome.run_dir, skip=("gates", "contract") if collapse else
                               ("gates", "collapse", "contract")):
        echo(line)  # the report's own warnings: the console never says less than the page
    for path in outcome.outputs.values():
        console.echo(path)


def _training_lock(config: RunConfig, final: Path) -> contextlib.AbstractContextManager[None]:
    """The output folder's lock; none for ``--strategy multiworker``, whose workers share --out by design
    (only the chief writes it)."""
    return contextlib.nullcontext() if config.strategy == "multiworker" else folder_lock(final)


def _training_inputs(config: RunConfig) -> dict[str, Path | None]:
    return {"--data": config.data, "--init-from": getattr(config, "init_from", None)}


def train(config: RunConfig, *, progress: bool = False, force: bool = False) -> list[Path]:
    """prepare -> train; the files written (the run folder's model, history, config, splits)."""
    final = _new_out(config.out, config.reports_dir)
    with _training_lock(config, final):
        target = output(final, force, inputs=_training_inputs(config), stage=False, resume=config.resume,
                        strategy=config.strategy, can_resume=True)
        _built(target, lambda: train_run(config.with_values(out=target.work), progress=progress))
        run_dir = target.commit()
    return RunFolder(run_dir).trained_files() or [run_dir]


def run(config: RunConfig, plan: GatePlan, console: Console, *, progress: bool = False,
        force: bool = False) -> Outcome | None:
    """(sample ->) prepare -> train -> evaluate -> gates -> report."""
    final = _new_out(config.out, config.reports_dir)
    with _training_lock(config, final):
        target = output(final, force, inputs=_training_inputs(config), stage=False, resume=config.resume,
                        strategy=config.strategy, can_resume=True)

        def work() -> Outcome | None:
            run_dir = train_run(config.with_values(out=target.work), progress=progress)
            if config.strategy == "multiworker":
                from ferreport.models.distributed import worker_info  # TensorFlow: loaded by training already

                if not worker_info()["chief"]:  # the chief evaluates and reports
                    return None
            explain = ModelConfig(saliency=config.saliency, saliency_layer=config.saliency_layer)
            metrics = evaluate_run(run_dir, model=explain, progress=progress)
            return finish(run_dir, metrics, plan, command="run", render=_renderer(config.formats), target=target)

        outcome = _built(target, work)
    if outcome is None:
        console.echo(str(target.commit()))
        return None
    console.echo(summary_line(outcome.metrics))
    _conclude(console, outcome, outcome.metrics, collapse=False)  # training already said it collapsed
    return outcome


def evaluate(run_dir: Path | None, model_path: Path | None, config: RunConfig, plan: GatePlan, console: Console, *,
             split_of: Path | None = None, progress: bool = False, force: bool = False) -> Outcome:
    """RUN_DIR's model (or ``model_path``) on its test split, ``model_path`` on ``config.data``, or
    ``model_path`` on ``split_of``'s test faces (a new run folder: ``--force`` replaces an old one).

    Re-evaluating RUN_DIR works on a copy of it (hard links) swapped in when complete, so the old
    scores and report stay whole until the new ones are."""
    if split_of is not None and (model_path is None or run_dir is not None):
        raise UsageError("--split-of RUN_DIR scores --model FILE on RUN_DIR's test faces: give --model, and no "
                         "RUN_DIR argument")
    if split_of is None and run_dir is None and (model_path is None or config.data is None):
        raise UsageError("give a RUN_DIR, or --model FILE with --data DIR or --split-of RUN_DIR")
    if run_dir is not None:
        final = Path(run_dir)
        with folder_lock(final, option="RUN_DIR"):
            if not final.is_dir():
                raise UsageError(f"{final}: no such run folder; pass a folder written by ferreport train or run")
            target = Output(final, FolderReplacement(final, copy_of=final))
            outcome = _built(target, lambda: finish(
                target.work, evaluate_run(target.work, model_path=model_path, model=config.model, progress=progress),
                plan, command="evaluate", render=_renderer(config.formats), target=target))
    else:
        final = _new_out(config.out, config.reports_dir)
        inputs = {"--model": model_path, "--data": config.data, "--split-of": split_of}
        with folder_lock(final):
            target = output(final, force, inputs=inputs)
            staged = config.with_values(out=target.work)

            def work() -> Outcome:
                where, metrics = (evaluate_on_split(model_path, split_of, staged, progress=progress)
                                  if split_of is not None else evaluate_model(model_path, staged, progress=progress))
                return finish(where, metrics, plan, command="evaluate", render=_renderer(config.formats),
                              target=target)

            outcome = _built(target, work)
    console.echo(summary_line(outcome.metrics))
    _conclude(console, outcome, outcome.metrics)
    return outcome


def report(run_dir: Path, formats: tuple[str, ...]) -> list[Path]:
    """Re-render a run folder's report from its saved artefacts; the files written (HTML and PDF
    replaced together)."""
    with folder_lock(Path(run_dir), option="RUN_DIR"):
        paths = list(render_report(run_dir, formats=formats).values())
    update_index(Path(run_dir).parent)
    return paths


def predict(folder: Path, model: Path, config: AuditConfig, plan: GatePlan, console: Console, *,
            progress: bool = False, force: bool = False) -> Outcome:
    """Audit ``folder`` -> gates -> report, built aside and swapped in complete (``--force``: replacing an
    old ``--out``)."""
    final = _new_out(config.out, config.reports_dir)
    labels = Path(config.labels) if isinstance(config.labels, (str, Path)) and str(config.labels) not in (
        "auto", "folders", "none") else None
    inputs = {"FOLDER": folder, "--model": model, "--reference": config.reference, "--labels": labels}
    with folder_lock(final):
        target = output(final, force, inputs=inputs)

        def work() -> tuple[Any, Outcome]:
            result = run_audit(folder, model, replace(config, out=target.work, formats=()), progress=progress)
            return result, finish(result.out_dir, result.metrics or {}, plan, command="predict",
                                  render=_renderer(config.formats), target=target)

        result, outcome = _built(target, work)
    console.echo(audit_summary_line(result.summary, result.metrics))
    _conclude(console, outcome, result.metrics or {})
    return outcome


def compare(run_a: Path, run_b: Path, console: Console, *, out: Path | None, formats: tuple[str, ...],
            data: Path | None, use_dataset: bool, n_resamples: int, seed: int) -> dict[str, Any]:
    """Compare two runs (B - A), write the comparison and its report; the --json summary."""
    final = Path(out) if out is not None else default_out(Path(run_a), Path(run_b))
    with folder_lock(final):
        target = output(final, False, inputs={"RUN_A": run_a, "RUN_B": run_b, "--data": data})

        def work() -> Any:
            with stage("compare", unit="") as bar:  # bootstrap, flipped faces and the report: seconds to a minute
                result = compare_runs(run_a, run_b, out=target.work, formats=formats, data=data,
                                      use_dataset=use_dataset, n_resamples=n_resamples, seed=seed)
                bar.summary = f"{result.document['n']:,} paired faces in {bar.seconds:.1f} s"
            target.commit()
            return replace(result, out_dir=final, files={k: final / p.name for k, p in result.files.items()})

        result = _built(target, work)
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
    (:func:`ferreport.evaluation.label_issues.label_audit`), built aside and swapped in complete."""
    if config.data is None:
        raise UsageError("label-issues needs --data DIR (ExpW layout or class folders)")
    if config.out is None:
        raise UsageError("label-issues needs --out DIR (the dataset itself is never written to)")
    check_dataset_root(config.data)
    final = Path(config.out)
    with folder_lock(final):
        target = output(final, force, inputs={"--data": config.data})

        def work() -> Any:
            result = label_audit(config.data, target.work, model_kind=config.model_kind, folds=config.folds,
                                 seed=config.seed, epochs=config.epochs, ranking=config.ranking,
                                 strict=config.strict, cache_dir=config.cache_dir, page=label_audit_page)
            target.commit()
            return result

        result = _built(target, work)
    outputs = {k: final / p.name for k, p in result.outputs.items()}
    return replace(result, outputs=outputs, summary={**result.summary,
                                                     "outputs": {k: str(v) for k, v in outputs.items()}})
