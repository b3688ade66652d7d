"""Command-line interface: thin Click commands over :mod:`ferreport.pipeline`.

Exit codes: 0 success, 1 a quality gate failed, 2 usage error, 3 unusable data,
4 unusable model, 5 output could not be written.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from . import __version__
from .balancing import METHODS
from .config import DEMO_SAMPLE_FACES, RECIPES, RunConfig, parse_formats
from .constants import MONITORS
from .errors import FerreportError, UsageError
from .jobs import gate_options

PathType = click.Path(path_type=Path)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a FerreportError into a one-line message on stderr and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FerreportError as exc:
            click.echo(f"ferreport: error: {exc}", err=True)
            if kwargs.get("json_out") and not getattr(exc, "json_emitted", False):
                from .jobs import error_json

                ctx = click.get_current_context(silent=True)
                click.echo(error_json(exc, ctx.info_name if ctx else None))
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("ferreport: interrupted; finished files are whole, unfinished ones absent "
                       "(continue training with --resume)", err=True)
            sys.exit(130)

    return wrapper


def _progress() -> bool:
    return sys.stderr.isatty()


class _Group(click.Group):
    def main(self, args: Any = None, *rest: Any, **kw: Any) -> Any:  # noqa: D102
        from .provenance import set_command_line

        set_command_line(["ferreport", *(sys.argv[1:] if args is None else args)])
        return super().main(args, *rest, **kw)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:  # noqa: D102
        from .jobfile import add_config_option

        super().add_command(add_config_option(cmd), name)  # every command takes --config JOB.toml


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ferreport")
def main() -> None:
    """Evaluate facial-expression classifiers on ExpW or image folders and write shareable reports."""


@main.command()
@click.option("--out", type=PathType, default=Path("data/sample"), show_default=True, help="Dataset folder to create.")
@click.option("--faces", "n_faces", type=click.IntRange(7), default=DEMO_SAMPLE_FACES, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@handle_errors
def sample(out: Path, n_faces: int, seed: int) -> None:
    """Generate a synthetic dataset in ExpW's exact layout (label/label.lst, image/origin/)."""
    from .sample import SampleSpec, generate_sample

    info = generate_sample(out, SampleSpec(n_faces=n_faces, seed=seed))
    click.echo(f"{info.root}: {info.n_faces} faces in {info.n_images} images")


def data_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--data", type=PathType, default=None,
                      help="ExpW folder (label/label.lst + image/origin) or class folders. "
                           "Default: data/ExpW if present, else the generated sample.")(fn)
    fn = click.option("--strict", is_flag=True, help="Stop at the first unusable label line or image.")(fn)
    fn = click.option("--seed", type=int, default=0, show_default=True, help="Seed for split, balancing and training.")(fn)
    fn = click.option("--cache-dir", type=PathType, default=None,
                      help="Face cache folder (default $FERREPORT_CACHE or ~/.cache/ferreport).")(fn)
    return fn


@main.command()
@data_options
@click.option("--balance", type=click.Choice(METHODS), default="smote", show_default=True)
@handle_errors
def prepare(data: Path | None, strict: bool, seed: int, cache_dir: Path | None, balance: str) -> None:
    """Load, validate, crop and cache a dataset; print the data summary."""
    import numpy as np

    from .balancing import balance_training_set
    from .pipeline import data_summary, format_summary
    from .pipeline import prepare as prepare_job

    config = RunConfig(data=data, strict=strict, seed=seed, cache_dir=cache_dir, balance=balance)
    prepared = prepare_job(config, progress=_progress())
    train = prepared.rows("train")
    labels = prepared.dataset.labels
    balanced = balance_training_set(np.asarray(prepared.dataset.faces[train]), labels[train], balance, seed=seed)
    summary = data_summary(prepared, balanced)
    click.echo(format_summary(summary))
    click.echo(f"cache {'hit' if prepared.dataset.cache_hit else 'written'} in {prepared.dataset.seconds:.1f} s")


def train_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--out", type=PathType, default=None, help="Run directory (default reports/<run id>)."),
        click.option("--recipe", type=click.Choice(sorted(RECIPES)), default=None,
                     help="Named recipe for every option left at its default: default (chosen on real faces), "
                          "seed (the seed notebook literally), demo (the short CPU demo). "
                          "[default: train: default; run: demo]"),
        click.option("--epochs", type=click.IntRange(1), default=RunConfig.epochs, show_default=True),
        click.option("--batch-size", type=click.IntRange(1), default=RunConfig.batch_size, show_default=True),
        click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=RunConfig.learning_rate,
                     show_default=True),
        click.option("--balance", type=click.Choice(METHODS), default=RunConfig.balance, show_default=True),
        click.option("--no-augment", is_flag=True, help="Train without rotation/shift/shear/zoom/flip augmentation."),
        click.option("--arch", default=RunConfig.arch, show_default=True,
                     help="Model architecture: compact-std, compact or seed (the seed notebook's CNN)."),
        click.option("--strategy", type=click.Choice(["auto", "mirrored", "multiworker"]), default="auto",
                     show_default=True,
                     help="auto: one device (a GPU when TensorFlow sees one); mirrored: all local GPUs; "
                          "multiworker: several processes/hosts named by TF_CONFIG (same command and --out on "
                          "each; --batch-size is the global batch)."),
        click.option("--lr-schedule", type=click.Choice(["constant", "cosine"]), default=RunConfig.lr_schedule,
                     show_default=True, help="Learning rate over training: constant, or cosine decay."),
        click.option("--warmup-epochs", type=click.IntRange(0), default=RunConfig.warmup_epochs, show_default=True,
                     help="Linear learning-rate warm-up from ~0 over this many epochs."),
        click.option("--label-smoothing", type=click.FloatRange(0, 1, max_open=True),
                     default=RunConfig.label_smoothing, show_default=True),
        click.option("--monitor", type=click.Choice(list(MONITORS)), default=RunConfig.monitor,
                     show_default=True,
                     help="Validation metric that picks the best epoch (the weights kept) and drives "
                          "--early-stopping."),
        click.option("--early-stopping", "early_stopping_patience", type=click.IntRange(1), default=None,
                     help="Stop after this many epochs without a better --monitor value (best weights kept)."),
        click.option("--resume", is_flag=True, help="Continue an interrupted run in --out from its last epoch."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _train_config(**kw: Any) -> RunConfig:
    return RunConfig(data=kw["data"], out=kw["out"], epochs=kw["epochs"], batch_size=kw["batch_size"],
                     learning_rate=kw["learning_rate"], balance=kw["balance"], seed=kw["seed"],
                     augment=not kw["no_augment"], arch=kw["arch"], strategy=kw["strategy"], strict=kw["strict"],
                     resume=kw["resume"], cache_dir=kw["cache_dir"], lr_schedule=kw["lr_schedule"],
                     warmup_epochs=kw["warmup_epochs"], label_smoothing=kw["label_smoothing"],
                     monitor=kw["monitor"], early_stopping_patience=kw["early_stopping_patience"])


def _apply_recipe(ctx: click.Context, kw: dict[str, Any], recipe: str) -> None:
    """Set every option the user left at its default to the named recipe's value."""
    for key, value in RECIPES[recipe].items():
        if ctx.get_parameter_source(key) in (click.core.ParameterSource.DEFAULT, None):
            kw[key] = value


@main.command()
@data_options
@train_options
@click.pass_context
@handle_errors
def train(ctx: click.Context, **kw: Any) -> None:
    """Train the CNN; writes model.keras, history.csv, splits.csv, config.json, provenance.json.

    The defaults are the recipe chosen on real faces (compact CNN behind per-image
    standardisation, square-root class weights, label smoothing 0.1, warm-up + cosine,
    25 epochs); --recipe seed trains the seed notebook's recipe instead.
    """
    from .pipeline import train as train_job

    _apply_recipe(ctx, kw, kw["recipe"] or "default")
    run_dir = train_job(_train_config(**kw), progress=_progress())
    click.echo(str(run_dir))


@main.command()
@click.argument("run_dir", type=PathType, required=False)
@click.option("--model", "model_path", type=PathType, default=None, help="A .keras model to evaluate.")
@click.option("--data", type=PathType, default=None, help="Dataset for --model (its test split, or all class folders).")
@click.option("--out", type=PathType, default=None, help="Output folder for --model (default reports/<run id>).")
@click.option("--format", "formats", default="html,pdf", show_default=True, help="Report formats, or 'none'.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--unsafe-model", is_flag=True, help="Allow models with Lambda layers (runs code from the file).")
@click.option("--strict", is_flag=True)
@click.option("--cache-dir", type=PathType, default=None)
@gate_options
@handle_errors
def evaluate(run_dir: Path | None, model_path: Path | None, data: Path | None, out: Path | None, formats: str,
             seed: int, unsafe_model: bool, strict: bool, cache_dir: Path | None, **gate_kw: Any) -> None:
    """Evaluate RUN_DIR's model on its test split, or --model on --data; write predictions, metrics, report.

    Quality gates (--fail-under, --fail-over, --max-drop with --baseline) make the job exit 1 when
    one fails, after every output is written; --json and --junit give machine-readable results.
    """
    from .errors import UsageError
    from .jobs import JobConsole, finish_job, plan_gates
    from .pipeline import evaluate_model, evaluate_run, new_run_id, summary_line

    fmt = () if formats.strip().lower() == "none" else parse_formats(formats)
    plan = plan_gates(gate_kw)
    if run_dir is None and (model_path is None or data is None):
        raise UsageError("give a RUN_DIR, or both --model FILE.keras and --data DIR")
    with JobConsole(plan.json_out) as console:
        if run_dir is not None:
            metrics = evaluate_run(run_dir, formats=(), model_path=model_path, unsafe_model=unsafe_model,
                                   progress=_progress())
            where = Path(run_dir)
        else:
            where = Path(out) if out is not None else Path("reports") / new_run_id()
            metrics = evaluate_model(model_path, data, out=where, seed=seed, formats=(), unsafe_model=unsafe_model,
                                     strict=strict, cache_dir=cache_dir, progress=_progress())
        summary = finish_job(where, metrics, plan, formats=fmt, command="evaluate")
        console.echo(summary_line(metrics))
        console.echo(str(where))
    console.conclude(summary)


@main.command()
@click.argument("run_dir", type=PathType)
@click.option("--format", "formats", default="html,pdf", show_default=True)
@handle_errors
def report(run_dir: Path, formats: str) -> None:
    """Re-render report.html / report.pdf from RUN_DIR's saved artefacts (no TensorFlow work)."""
    from .report import update_index
    from .pipeline import render_report

    for path in render_report(run_dir, formats=parse_formats(formats)).values():
        click.echo(str(path))
    update_index(Path(run_dir).parent)


@main.command()
@data_options
@train_options
@click.option("--full", is_flag=True, help="Same as --recipe seed: the seed notebook's recipe (hours on a CPU).")
@click.option("--format", "formats", default="html,pdf", show_default=True)
@gate_options
@click.pass_context
@handle_errors
def run(ctx: click.Context, full: bool, formats: str, **kw: Any) -> None:
    """The main job: (sample ->) prepare -> train -> evaluate -> report.

    Without --recipe it trains the short CPU demo recipe (config.DEMO_PROFILE: compact CNN,
    12 epochs, warm-up + cosine) for every option left at its default; --recipe default is
    train's recipe, --recipe seed (or --full) the seed notebook's (seed CNN, 50 epochs,
    batch 32, SMOTE).
    """
    from .jobs import JobConsole, finish_job, plan_gates
    from .pipeline import evaluate_run, summary_line
    from .pipeline import train as train_job

    fmt = parse_formats(formats)
    plan = plan_gates(kw)
    if full and kw["recipe"] not in (None, "seed"):
        raise UsageError(f"--full is --recipe seed; it cannot be combined with --recipe {kw['recipe']}")
    _apply_recipe(ctx, kw, "seed" if full else kw["recipe"] or "demo")
    with JobConsole(plan.json_out) as console:
        run_dir = train_job(_train_config(**kw), progress=_progress())
        if kw["strategy"] == "multiworker":
            from .distributed import worker_info

            if not worker_info()["chief"]:  # the chief evaluates and reports
                console.echo(str(run_dir))
                return
        metrics = evaluate_run(run_dir, formats=(), progress=_progress())
        summary = finish_job(run_dir, metrics, plan, formats=fmt, command="run")
        console.echo(summary_line(metrics))
        for name in fmt:
            console.echo(str(run_dir / f"report.{name}"))
    console.conclude(summary)


@main.command()
@click.argument("run_a", type=PathType)
@click.argument("run_b", type=PathType)
@click.option("--out", type=PathType, default=None,
              help="Output folder (default: compare-<A>-vs-<B> beside RUN_B).")
@click.option("--format", "formats", default="html,pdf", show_default=True,
              help="Report formats, or 'none' (compare.json only).")
@click.option("--data", type=PathType, default=None,
              help="Dataset to read flipped faces from when neither face pool holds them "
                   "(default: the dataset recorded in the runs' config.json).")
@click.option("--pool-only", is_flag=True, help="Show only faces stored in the runs' face pools; never read a dataset.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the paired bootstrap.")
@click.option("--resamples", "n_resamples", type=click.IntRange(100), default=1000, show_default=True,
              help="Paired bootstrap resamples.")
@click.option("--json", "json_out", is_flag=True, help="Print the comparison summary as one JSON object on stdout.")
@handle_errors
def compare(run_a: Path, run_b: Path, out: Path | None, formats: str, data: Path | None, pool_only: bool, seed: int,
            n_resamples: int, json_out: bool) -> None:
    """Compare two runs evaluated on the same test set (B - A).

    Metric and per-class deltas with paired bootstrap intervals, the confusion-matrix
    difference, McNemar's exact test and grids of faces that flipped right->wrong and
    wrong->right; writes compare.html, compare.pdf and compare.json. Runs evaluated on
    different faces are refused (exit 3).
    """
    import json

    from .report.compare import compare_runs, summary_lines
    from .report import update_index
    from .jobs import JobConsole

    fmt = () if formats.strip().lower() == "none" else parse_formats(formats)
    with JobConsole(json_out) as console:
        result = compare_runs(run_a, run_b, out=out, formats=fmt, data=data, use_dataset=not pool_only,
                              n_resamples=n_resamples, seed=seed)
        update_index(result.out_dir.parent)
        for line in summary_lines(result.document):
            console.echo(line)
        for path in result.files.values():
            console.echo(str(path))
    if json_out:
        doc = result.document
        click.echo(json.dumps({
            "status": "passed", "exit_code": 0, "command": "compare", "out_dir": str(result.out_dir),
            "outputs": {k: str(v) for k, v in result.files.items()}, "a": doc["a"], "b": doc["b"], "n": doc["n"],
            "deltas": doc["deltas"], "mcnemar": doc["mcnemar"], "flips": doc["flips"],
        }, sort_keys=True, ensure_ascii=False))


@main.command()
@click.argument("folder", type=PathType)
@click.option("--model", "model", type=PathType, required=True, metavar="RUN_DIR|FILE.keras",
              help="A run directory (its model.keras; its training class distribution is shown beside the "
                   "predictions) or a .keras file.")
@click.option("--out", type=PathType, default=None, help="Output folder (default reports/<run id>).")
@click.option("--faces", type=click.Choice(["auto", "detect", "whole"]), default="auto", show_default=True,
              help="auto: detect faces (Haar cascade), predict the whole image when none is found (flagged "
                   "'fallback'); detect: detected faces only; whole: each image is one face crop.")
@click.option("--labels", default=None, metavar="subfolders|none|FILE.csv",
              help="True labels: class-named sub-folders, or a CSV with columns path,label (path relative to "
                   "FOLDER). Default: subfolders when FOLDER has class-named sub-folders, else none.")
@click.option("--format", "formats", default="html,pdf", show_default=True, help="Report formats, or 'none'.")
@click.option("--batch-size", type=click.IntRange(1), default=256, show_default=True)
@click.option("--chunk-size", type=click.IntRange(1), default=512, show_default=True,
              help="Files decoded and predicted per step (memory stays flat whatever the folder size).")
@click.option("--workers", type=click.IntRange(1), default=None, help="Decoding processes (default: CPU count, at most 8).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap intervals.")
@click.option("--unsafe-model", is_flag=True, help="Allow models with Lambda layers (runs code from the file).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this machine's processes; ray: Ray Data (pip install 'ferreport[ray]').")
@click.option("--ray-address", default=None, metavar="ADDRESS",
              help="Join this Ray cluster (host:port, auto, ray://...); default: start a local Ray.")
@gate_options
@handle_errors
def predict(folder: Path, model: Path, out: Path | None, faces: str, labels: str | None, formats: str,
            batch_size: int, chunk_size: int, workers: int | None, seed: int, unsafe_model: bool, engine: str,
            ray_address: str | None, **gate_kw: Any) -> None:
    """Audit FOLDER: predict every face in its images; write predictions.csv, audit_summary.json, a report.

    Walks FOLDER recursively (JPEG, PNG, BMP, WebP, TIFF; anything else or unreadable is skipped and
    listed in skipped.csv with its reason). With labels (class-named sub-folders or --labels FILE.csv)
    the audit also computes every evaluation metric.
    """
    from .audit import audit_summary_line, run_audit
    from .jobs import JobConsole, finish_job, plan_gates

    fmt = () if formats.strip().lower() == "none" else parse_formats(formats)
    plan = plan_gates(gate_kw)
    with JobConsole(plan.json_out) as console:
        result = run_audit(folder, model, out=out, faces=faces, labels=labels, formats=(), batch_size=batch_size,
                           chunk_size=chunk_size, workers=workers, unsafe_model=unsafe_model, seed=seed,
                           progress=_progress(), engine=engine, ray_address=ray_address)
        summary = finish_job(result.out_dir, result.metrics or {}, plan, formats=fmt, command="predict")
        console.echo(audit_summary_line(result.summary, result.metrics))
        console.echo(str(result.out_dir))
    console.conclude(summary)


if __name__ == "__main__":  # pragma: no cover
    main()
