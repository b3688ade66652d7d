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
from .config import DEMO_EPOCHS, DEMO_SAMPLE_FACES, RunConfig, parse_formats
from .errors import FerreportError

PathType = click.Path(path_type=Path)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a FerreportError into a one-line message on stderr and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FerreportError as exc:
            click.echo(f"ferreport: error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("ferreport: interrupted; completed outputs are intact (train again with --resume)", err=True)
            sys.exit(130)

    return wrapper


def _progress() -> bool:
    return sys.stderr.isatty()


class _Group(click.Group):
    def main(self, args: Any = None, *rest: Any, **kw: Any) -> Any:  # noqa: D102
        from .provenance import set_command_line

        set_command_line(["ferreport", *(sys.argv[1:] if args is None else args)])
        return super().main(args, *rest, **kw)


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
        click.option("--epochs", type=click.IntRange(1), default=50, show_default=True),
        click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True),
        click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True),
        click.option("--balance", type=click.Choice(METHODS), default="smote", show_default=True),
        click.option("--no-augment", is_flag=True, help="Train without rotation/shift/shear/zoom/flip augmentation."),
        click.option("--arch", default="seed", show_default=True, help="Model architecture."),
        click.option("--strategy", type=click.Choice(["auto", "mirrored"]), default="auto", show_default=True,
                     help="auto: one device (a GPU when TensorFlow sees one); mirrored: all local GPUs."),
        click.option("--resume", is_flag=True, help="Continue an interrupted run in --out from its last epoch."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _train_config(**kw: Any) -> RunConfig:
    return RunConfig(data=kw["data"], out=kw["out"], epochs=kw["epochs"], batch_size=kw["batch_size"],
                     learning_rate=kw["learning_rate"], balance=kw["balance"], seed=kw["seed"],
                     augment=not kw["no_augment"], arch=kw["arch"], strategy=kw["strategy"], strict=kw["strict"],
                     resume=kw["resume"], cache_dir=kw["cache_dir"])


@main.command()
@data_options
@train_options
@handle_errors
def train(**kw: Any) -> None:
    """Train the CNN; writes model.keras, history.csv, splits.csv, config.json, provenance.json."""
    from .pipeline import train as train_job

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
@handle_errors
def evaluate(run_dir: Path | None, model_path: Path | None, data: Path | None, out: Path | None, formats: str,
             seed: int, unsafe_model: bool, strict: bool, cache_dir: Path | None) -> None:
    """Evaluate RUN_DIR's model on its test split, or --model on --data; write predictions, metrics, report."""
    from .errors import UsageError
    from .pipeline import evaluate_model, evaluate_run, summary_line

    fmt = () if formats.strip().lower() == "none" else parse_formats(formats)
    if run_dir is not None:
        metrics = evaluate_run(run_dir, formats=fmt, model_path=model_path, unsafe_model=unsafe_model,
                               progress=_progress())
        where = run_dir
    elif model_path is not None and data is not None:
        where = out
        metrics = evaluate_model(model_path, data, out=out, seed=seed, formats=fmt, unsafe_model=unsafe_model,
                                 strict=strict, cache_dir=cache_dir, progress=_progress())
    else:
        raise UsageError("give a RUN_DIR, or both --model FILE.keras and --data DIR")
    click.echo(summary_line(metrics))
    if where is not None:
        click.echo(str(where))


@main.command()
@click.argument("run_dir", type=PathType)
@click.option("--format", "formats", default="html,pdf", show_default=True)
@handle_errors
def report(run_dir: Path, formats: str) -> None:
    """Re-render report.html / report.pdf from RUN_DIR's saved artefacts (no TensorFlow work)."""
    from .pipeline import render_report

    for path in render_report(run_dir, formats=parse_formats(formats)).values():
        click.echo(str(path))


@main.command()
@data_options
@train_options
@click.option("--full", is_flag=True, help="The full seed recipe: 50 epochs, batch 32, SMOTE (hours on a CPU).")
@click.option("--format", "formats", default="html,pdf", show_default=True)
@click.pass_context
@handle_errors
def run(ctx: click.Context, full: bool, formats: str, **kw: Any) -> None:
    """The main job: (sample ->) prepare -> train -> evaluate -> report.

    Without --full and without an explicit --epochs it trains a short CPU demo
    (DEMO_EPOCHS epochs) on the generated sample.
    """
    from .pipeline import evaluate_run, summary_line
    from .pipeline import train as train_job

    if not full and ctx.get_parameter_source("epochs") == click.core.ParameterSource.DEFAULT:
        kw["epochs"] = DEMO_EPOCHS
    run_dir = train_job(_train_config(**kw), progress=_progress())
    metrics = evaluate_run(run_dir, formats=parse_formats(formats), progress=_progress())
    click.echo(summary_line(metrics))
    for name in parse_formats(formats):
        click.echo(str(run_dir / f"report.{name}"))


if __name__ == "__main__":  # pragma: no cover
    main()
