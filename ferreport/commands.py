"""What each command of the CLI does: its stages in order, from settings to report.

:mod:`ferreport.cli` parses the command line into the settings of :mod:`ferreport.config`
and calls one function here; each strings the stages of :mod:`ferreport.stages`
together and, for the evaluating commands, ends with :func:`ferreport.outcome.finish`
(gates -> report -> JUnit -> history index), so ``--format`` travels one way:
command -> stage -> report.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from . import stages
from .config import AuditConfig, RunConfig
from .errors import UsageError
from .outcome import Console, GatePlan, Outcome, finish


def _renderer(formats: tuple[str, ...]) -> Callable[[Path], dict[str, Path]] | None:
    """The report rendering of a finished command (``None``: no report asked for)."""
    if not formats:
        return None
    return lambda run_dir: stages.render_report(run_dir, formats=formats, seed=stages.saved_seed(run_dir))


def prepare(config: RunConfig, *, progress: bool = False) -> list[str]:
    """Read, split and balance the dataset as ``train`` would; the data summary's lines."""
    prepared = stages.prepare(config, progress=progress)
    summary = stages.data_summary(prepared, stages.balance(prepared, config))
    cache = f"cache {'hit' if prepared.dataset.cache_hit else 'written'} in {prepared.dataset.seconds:.1f} s"
    return [stages.format_summary(summary), cache]


def train(config: RunConfig, *, progress: bool = False) -> Path:
    return stages.train(config, progress=progress)


def run(config: RunConfig, plan: GatePlan, console: Console, *, progress: bool = False) -> Outcome | None:
    """(sample ->) prepare -> train -> evaluate -> gates -> report."""
    run_dir = stages.train(config, progress=progress)
    if config.strategy == "multiworker":
        from .distributed import worker_info

        if not worker_info()["chief"]:  # the chief evaluates and reports
            console.echo(str(run_dir))
            return None
    metrics = stages.evaluate_run(run_dir, progress=progress)
    outcome = finish(run_dir, metrics, plan, command="run", render=_renderer(config.formats))
    console.echo(stages.summary_line(metrics))
    for name in config.formats:
        console.echo(str(run_dir / f"report.{name}"))
    return outcome


def evaluate(run_dir: Path | None, model_path: Path | None, config: RunConfig, plan: GatePlan, console: Console, *,
             split_of: Path | None = None, progress: bool = False) -> Outcome:
    """RUN_DIR's model (or ``model_path``) on its test split, ``model_path`` on ``config.data``, or
    ``model_path`` on ``split_of``'s test faces (a new run folder)."""
    if split_of is not None:
        if model_path is None or run_dir is not None:
            raise UsageError("--split-of RUN_DIR scores --model FILE on RUN_DIR's test faces: give --model, and no "
                             "RUN_DIR argument")
        where, metrics = stages.evaluate_on_split(model_path, split_of, config, progress=progress)
    elif run_dir is not None:
        metrics = stages.evaluate_run(run_dir, model_path=model_path, model=config.model, progress=progress)
        where = Path(run_dir)
    elif model_path is None or config.data is None:
        raise UsageError("give a RUN_DIR, or --model FILE with --data DIR or --split-of RUN_DIR")
    else:
        where, metrics = stages.evaluate_model(model_path, config, progress=progress)
    outcome = finish(where, metrics, plan, command="evaluate", render=_renderer(config.formats))
    console.echo(stages.summary_line(metrics))
    console.echo(str(where))
    return outcome


def report(run_dir: Path, formats: tuple[str, ...]) -> list[Path]:
    """Re-render a run folder's report from its saved artefacts; the files written."""
    from .report import update_index

    paths = list(stages.render_report(run_dir, formats=formats).values())
    update_index(Path(run_dir).parent)
    return paths


def predict(folder: Path, model: Path, config: AuditConfig, plan: GatePlan, console: Console, *,
            progress: bool = False) -> Outcome:
    """Audit ``folder`` -> gates -> report."""
    from .audit import audit_summary_line, run_audit

    result = run_audit(folder, model, replace(config, formats=()), progress=progress)
    outcome = finish(result.out_dir, result.metrics or {}, plan, command="predict",
                     render=_renderer(config.formats))
    console.echo(audit_summary_line(result.summary, result.metrics))
    console.echo(str(result.out_dir))
    return outcome


def compare(run_a: Path, run_b: Path, console: Console, *, out: Path | None, formats: tuple[str, ...],
            data: Path | None, use_dataset: bool, n_resamples: int, seed: int) -> dict[str, Any]:
    """Compare two runs (B - A), write the comparison and its report; the --json summary."""
    from .report.compare import compare_runs, summary_lines
    from .report import update_index

    result = compare_runs(run_a, run_b, out=out, formats=formats, data=data, use_dataset=use_dataset,
                          n_resamples=n_resamples, seed=seed)
    update_index(result.out_dir.parent)
    for line in summary_lines(result.document):
        console.echo(line)
    for path in result.files.values():
        console.echo(str(path))
    doc = result.document
    return {"status": "passed", "exit_code": 0, "command": "compare", "out_dir": str(result.out_dir),
            "outputs": {k: str(v) for k, v in result.files.items()}, "a": doc["a"], "b": doc["b"], "n": doc["n"],
            "deltas": doc["deltas"], "mcnemar": doc["mcnemar"], "flips": doc["flips"]}
