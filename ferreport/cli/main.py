"""Command-line interface: each command parses its options into settings and calls one function.

Options are built from the settings' declarations in :mod:`ferreport.config` (flag, type,
default, help) and mapped back onto them by name; :mod:`ferreport.cli.commands` does the work.

Exit codes: 0 success, 1 a quality gate failed, 2 usage error, 3 unusable data,
4 unusable model, 5 output could not be written.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ferreport import __version__
from ferreport.cli import commands
from ferreport.cli.crash import internal_error
from ferreport.cli.outcome import Console, error_json, gate_options, plan_gates
from ferreport.cli.tomlconfig import add_config_option
from ferreport.config import (
    COMMAND_RECIPES,
    DEMO_SAMPLE_FACES,
    FORMATS,
    MODEL_SETTINGS,
    RECIPES,
    SALIENCY_SETTINGS,
    AuditConfig,
    LabelIssuesConfig,
    RunConfig,
    flag_of,
    from_options,
    param_of,
    parse_formats,
    recipe_values,
    resolve_recipe,
)
from ferreport.datasets import sample as sample_data
from ferreport.errors import FerreportError, UsageError
from ferreport.evaluation.label_issues import summary_json, summary_lines
from ferreport.models.watchdog import abandoned
from ferreport.progress import configure, is_live
from ferreport.runs import provenance

PathType = click.Path(path_type=Path)


class FormatList(click.ParamType):
    """``--format``: a comma list of html and pdf, or none (no report); checked when the command line is read,
    so a typo costs nothing (``run --format htm`` stops before training)."""

    name = "formats"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:  # noqa: D102
        return "html,pdf|html|pdf|none"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, ...]:
        """``"html,pdf"`` -> ``("html", "pdf")``; ``"none"`` -> ``()``; a list from a job file is joined first."""
        if isinstance(value, (list, tuple)):
            if all(v in FORMATS for v in value):
                return tuple(value)
            value = ",".join(map(str, value))
        try:
            return parse_formats(str(value), allow_none=True)
        except FerreportError as exc:
            self.fail(str(exc).removeprefix("--format "), param, ctx)


FORMAT_LIST = FormatList()


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a FerreportError into a one-line message on stderr and its exit code; any other
    exception into an internal error (exit 70, traceback saved to a file), never a verdict."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context(silent=True)
        command = ctx.info_name if ctx else None
        try:
            return fn(*args, **kwargs)
        except FerreportError as exc:
            _report_error(exc, command, json_out=bool(kwargs.get("json_out")))
        except KeyboardInterrupt:
            click.echo("ferreport: interrupted; finished files are whole, unfinished ones absent "
                       "(continue training with --resume)", err=True)
            sys.exit(130)
        except Exception as exc:  # noqa: BLE001 - the one place an unexpected error becomes exit 70
            _report_error(internal_error(exc, command), command, json_out=bool(kwargs.get("json_out")))

    return wrapper


def _report_error(exc: FerreportError, command: str | None, *, json_out: bool) -> None:
    """One line on stderr, the --json object on stdout (once), and the error's exit code."""
    click.echo(f"ferreport: error: {exc}", err=True)
    if json_out and not getattr(exc, "json_emitted", False):
        click.echo(error_json(exc, command))
    if abandoned():  # a model call that never returned is still running: do not wait for it at exit
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exc.exit_code)
    sys.exit(exc.exit_code)


def _progress() -> bool:
    """Whether live progress bars are drawn (set by --progress/--no-progress, else by stderr being a terminal)."""
    return is_live()


def force_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--force``: replace an --out folder that already holds files, once the new one is complete."""
    return click.option("--force", is_flag=True,
                        help="Replace --out when it already holds files, only if ferreport wrote it (its .ferreport "
                             "marker): the new folder is built beside it and swapped in only when complete, so a "
                             "failed run leaves the old one as it was.")(fn)


def _set_progress(ctx: click.Context, param: click.Parameter, value: bool | None) -> None:
    configure(value)


def progress_option() -> click.Option:
    """``--progress/--no-progress``: every command takes it (bars on stderr, never on stdout)."""
    return click.Option(["--progress/--no-progress"], default=None, expose_value=False, callback=_set_progress,
                        help="Draw live progress bars (rate, ETA) on stderr, or none at all. [default: bars on a "
                             "terminal; otherwise one line per stage with its duration]")


class _Group(click.Group):
    def main(self, args: Any = None, *rest: Any, **kw: Any) -> Any:  # noqa: D102
        try:
            provenance.set_command_line(["ferreport", *(sys.argv[1:] if args is None else args)])
            return super().main(args, *rest, **kw)
        except FerreportError as exc:  # raised while the options were read (outside any command)
            _report_error(exc, None, json_out=False)
        except Exception as exc:  # noqa: BLE001 - an unexpected error outside any command: exit 70 too
            _report_error(internal_error(exc), None, json_out=False)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:  # noqa: D102
        if not any(p.name == "progress" for p in cmd.params):
            cmd.params.append(progress_option())
        super().add_command(add_config_option(cmd), name)  # every command takes --config JOB.toml and --progress


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ferreport")
def main() -> None:
    """Evaluate facial-expression classifiers on ExpW or image folders and write shareable reports.

    Exit codes: 0 ok, 1 a quality gate failed, 2 usage, 3 data, 4 model, 5 output, 70 internal error.

    \b
    Environment:
      FERREPORT_CACHE      face cache folder (--cache-dir); default
                           $XDG_CACHE_HOME/ferreport, else ~/.cache/ferreport
      FERREPORT_TEMPLATES  report templates folder (holding base.html.j2)
      TF_CONFIG            the hosts of --strategy multiworker (train, run)

    \b
    Shell completion (bash; zsh_source, fish_source alike):
      eval "$(_FERREPORT_COMPLETE=bash_source ferreport)"

    \b
    Examples:
      ferreport run                                   # sample -> prepare -> train -> evaluate -> report
      ferreport train --data data/ExpW --out reports/expw
      ferreport evaluate reports/expw --fail-under accuracy=0.55 --json
    """


@main.command()
@click.option("--out", type=PathType, default=Path("data/sample"), show_default=True, help="Dataset folder to create.")
@click.option("--faces", "n_faces", type=click.IntRange(7), default=DEMO_SAMPLE_FACES, show_default=True,
              help="Labelled faces to draw (at least 7: one a class).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the drawing: the same seed and --faces give the same sample.")
@handle_errors
def sample(out: Path, n_faces: int, seed: int) -> None:
    """Generate a synthetic dataset in ExpW's exact layout (label/label.lst, image/origin/).

    \b
    Examples:
      ferreport sample --out data/sample --faces 600
      ferreport sample --out data/big --faces 20000 --seed 1
    """
    info = sample_data.generate_sample(out, sample_data.SampleSpec(n_faces=n_faces, seed=seed))
    click.echo(f"{info.root}: {info.n_faces} faces in {info.n_images} images")


# --------------------------------------------------------------------------- options from the settings


def setting_option(owner: Any, name: str, *, default: Any = dataclasses.MISSING, **overrides: Any
                   ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The Click option of setting ``name`` of ``owner`` (a config dataclass): flag, type, default, help.

    ``default`` replaces the dataclass default shown by ``--help`` (a command's recipe);
    ``overrides`` are Click keywords (a command's own help text or metavar).
    """
    f = owner.field_of(name)
    m = f.metadata
    kind = m["kind"]
    value = f.default if default is dataclasses.MISSING else default
    kw: dict[str, Any] = {"help": m["help"]}
    if m.get("envvar"):
        kw["envvar"], kw["show_envvar"] = m["envvar"], True
    if kind is bool:  # a flag: given, it sets the setting opposite to its default
        kw["is_flag"], kw["default"] = True, (not f.default) if m["invert"] else f.default
    else:
        if kind == "formats":
            kw["type"], value = FORMAT_LIST, ",".join(value)
        elif m["choices"] is not None or m["cli_choices"] is not None:
            kw["type"] = click.Choice(m["cli_choices"] or m["choices"])
        elif kind in (int, float) and (m["min"] is not None or m["max"] is not None):
            rng = click.IntRange if kind is int else click.FloatRange
            kw["type"] = rng(m["min"], m["max"], min_open=m["min_open"], max_open=m["max_open"])
        else:
            kw["type"] = PathType if kind is Path else kind
        kw["default"], kw["show_default"] = value, value is not None
    kw.update(overrides)
    return click.option(flag_of(f), param_of(f), **kw)


def setting_options(owner: Any, *names: str, recipe: str | None = None
                    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Options for several settings, in this order in ``--help``; defaults shown are ``recipe``'s
    (flags show none: off is their default whatever the recipe)."""
    shown = recipe_values(recipe) if recipe else {}

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        for name in reversed(names):
            fn = setting_option(owner, name, default=shown.get(name, dataclasses.MISSING))(fn)
        return fn

    return decorate


def given_options(ctx: click.Context) -> set[str]:
    """Parameters set on the command line or in a --config file (not left at their default)."""
    return {p.name for p in ctx.command.params if p.name and ctx.get_parameter_source(p.name)
            not in (click.core.ParameterSource.DEFAULT, None)}


def run_config(ctx: click.Context, kw: dict[str, Any], *, recipe: str | None = None) -> RunConfig:
    """The RunConfig of a command's parsed options: given ones kept, the rest from ``recipe`` or the defaults."""
    return RunConfig.build(**from_options(RunConfig, kw, given=given_options(ctx), recipe=recipe))


#: The data settings of ``prepare``, ``train`` and ``run``.
DATA_SETTINGS = ("data", "strict", "seed", "cache_dir")
#: The training settings of ``train`` and ``run`` (``--recipe`` sits after ``--out``).
TRAIN_SETTINGS = ("epochs", "batch_size", "learning_rate", "balance", "augment", "arch", "strategy", "lr_schedule",
                  "warmup_epochs", "label_smoothing", "monitor", "early_stopping_patience", "resume", "init_from",
                  "freeze_batchnorm")


def recipe_option(command: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--recipe``, showing the recipe ``command`` trains when none is named."""
    return click.option("--recipe", type=click.Choice(sorted(RECIPES)), default=None,
                        help="Named recipe for every option left at its default: default (chosen on real faces), "
                             "seed (the seed notebook literally), demo (the short CPU demo), finetune (a trained "
                             "model, --init-from). "
                             f"[default: {COMMAND_RECIPES[command]}; finetune with --init-from]")


def training_options(command: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``train``'s and ``run``'s settings, their defaults shown as the command's recipe sets them."""
    recipe = COMMAND_RECIPES[command]

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn = setting_options(RunConfig, *TRAIN_SETTINGS, recipe=recipe)(fn)
        fn = recipe_option(command)(fn)
        fn = setting_option(RunConfig, "out")(fn)
        return setting_options(RunConfig, *DATA_SETTINGS, recipe=recipe)(fn)

    return decorate


# --------------------------------------------------------------------------- commands


@main.command()
@setting_options(RunConfig, *DATA_SETTINGS, "balance")
@handle_errors
def prepare(**kw: Any) -> None:
    """Load, validate, crop and cache a dataset; print the data summary (training split balanced as train does).

    \b
    Examples:
      ferreport prepare --data data/ExpW
      ferreport prepare --data data/sample --strict --balance smote
    """
    config = RunConfig.build(**from_options(RunConfig, kw))
    for line in commands.prepare(config, progress=_progress()):
        click.echo(line)


@main.command()
@training_options("train")
@setting_options(RunConfig, *MODEL_SETTINGS)
@force_option
@click.pass_context
@handle_errors
def train(ctx: click.Context, recipe: str | None, force: bool, **kw: Any) -> None:
    """Train the CNN; writes model.keras, history.csv, splits.csv, config.json, provenance.json.

    The defaults are the recipe chosen on real faces (compact CNN behind per-image
    standardisation, square-root class weights, label smoothing 0.1, warm-up + cosine,
    25 epochs); --recipe seed trains the seed notebook's recipe instead. --init-from MODEL
    fine-tunes a trained model (a run folder, .keras or .h5; --input-range, --classes ... as
    for evaluate describe it) with --recipe finetune.

    \b
    Examples:
      ferreport train --data data/ExpW --out reports/expw
      ferreport train --data data/sample --out reports/quick --epochs 2 --arch compact
      ferreport train --out reports/expw --resume      # after Ctrl-C: continue from the last epoch
      ferreport train --data faces/ --init-from emotion_model.hdf5 --input-range -1,1 --out reports/ft
    """
    config = run_config(ctx, kw, recipe=resolve_recipe("train", recipe, init_from=kw.get("init_from")))
    for path in commands.train(config, progress=_progress(), force=force):
        click.echo(str(path))


@main.command()
@click.argument("run_dir", type=PathType, required=False)
@click.option("--model", "model_path", type=PathType, default=None, metavar="FILE|FOLDER",
              help="A model to evaluate: .keras, .h5/.hdf5, .onnx or a TensorFlow SavedModel folder.")
@setting_option(RunConfig, "data", help="Dataset for --model (its test split, or all class folders).")
@click.option("--split-of", "split_of", type=PathType, default=None, metavar="RUN_DIR",
              help="Score --model on exactly RUN_DIR's test faces, in a new folder (--out), so that "
                   "`ferreport compare RUN_DIR OUT` pairs the two models face by face.")
@setting_option(RunConfig, "out", help="Output folder for --model (default reports/<run id>).")
@setting_option(RunConfig, "formats")
@setting_option(RunConfig, "seed", help="Seed of the test split for --model.")
@setting_options(RunConfig, *MODEL_SETTINGS, *SALIENCY_SETTINGS)
@setting_options(RunConfig, "strict", "cache_dir")
@force_option
@gate_options
@handle_errors
def evaluate(run_dir: Path | None, model_path: Path | None, split_of: Path | None, force: bool, **kw: Any) -> None:
    """Evaluate RUN_DIR's model on its test split, or --model on --data (or on --split-of RUN_DIR's test faces);
    write predictions, metrics, report.

    Any model: its input size, channels and layout are read from the model; say what it cannot
    (--input-range, --channel-order, --classes, --outputs, or --model-spec FILE.toml). Quality
    gates (--fail-under, --fail-over, --max-drop with --baseline) make the job exit 1 when one
    fails, after every output is written; --json and --junit give machine-readable results.

    \b
    Examples:
      ferreport evaluate reports/expw
      ferreport evaluate --model emotion.hdf5 --data data/ExpW --input-range -1,1 --out reports/fer
      ferreport evaluate reports/expw --fail-under accuracy=0.55 --json --format none
    """
    plan = plan_gates(kw)
    config = RunConfig.build(**from_options(RunConfig, kw))
    with Console(plan.json_out) as console:
        outcome = commands.evaluate(run_dir, model_path, config, plan, console, split_of=split_of,
                                    progress=_progress(), force=force)
    console.conclude(outcome)


@main.command()
@click.argument("run_dir", type=PathType)
@setting_option(RunConfig, "formats", help="Report formats: html, pdf or html,pdf.")
@handle_errors
def report(run_dir: Path, formats: tuple[str, ...]) -> None:
    """Re-render report.html / report.pdf from RUN_DIR's saved artefacts (no TensorFlow work).

    \b
    Examples:
      ferreport report reports/expw
      ferreport report reports/expw --format html
    """
    if not formats:
        raise UsageError("report --format none renders nothing; give html, pdf or html,pdf")
    for path in commands.report(run_dir, formats):
        click.echo(str(path))


@main.command()
@training_options("run")
@setting_options(RunConfig, *MODEL_SETTINGS, *SALIENCY_SETTINGS)
@click.option("--full", is_flag=True, help="Same as --recipe seed: the seed notebook's recipe (hours on a CPU).")
@setting_option(RunConfig, "formats")
@force_option
@gate_options
@click.pass_context
@handle_errors
def run(ctx: click.Context, recipe: str | None, full: bool, force: bool, **kw: Any) -> None:
    """The main command: (sample ->) prepare -> train -> evaluate -> report.

    Without --recipe it trains the short CPU demo recipe (config.DEMO_PROFILE: compact CNN
    behind per-image standardisation, 12 epochs, warm-up + cosine) for every option left at
    its default; --recipe default is train's recipe, --recipe seed (or --full) the seed
    notebook's (seed CNN, 50 epochs, batch 32, SMOTE).

    \b
    Examples:
      ferreport run
      ferreport run --data data/ExpW --recipe default --out reports/expw
      ferreport run --epochs 2 --format none --json    # a quick check: metrics only
    """
    plan = plan_gates(kw)
    config = run_config(ctx, kw, recipe=resolve_recipe("run", recipe, full, init_from=kw.get("init_from")))
    with Console(plan.json_out) as console:
        outcome = commands.run(config, plan, console, progress=_progress(), force=force)
    console.conclude(outcome)


@main.command()
@click.argument("run_a", type=PathType)
@click.argument("run_b", type=PathType)
@click.option("--out", type=PathType, default=None,
              help="Output folder (default: compare-<A>-vs-<B> beside RUN_B).")
@click.option("--format", "formats", type=FORMAT_LIST, default="html,pdf", show_default=True,
              help="Report formats: html, pdf, html,pdf, or none (compare.json only).")
@click.option("--data", type=PathType, default=None,
              help="Dataset to read flipped faces from when neither face pool holds them "
                   "(default: the dataset recorded in the runs' config.json).")
@click.option("--pool-only", is_flag=True, help="Show only faces stored in the runs' face pools; never read a dataset.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the paired bootstrap.")
@click.option("--resamples", "n_resamples", type=click.IntRange(100), default=1000, show_default=True,
              help="Paired bootstrap resamples.")
@click.option("--json", "json_out", is_flag=True, help="Print the comparison summary as one JSON object on stdout.")
@handle_errors
def compare(run_a: Path, run_b: Path, out: Path | None, formats: tuple[str, ...], data: Path | None, pool_only: bool,
            seed: int, n_resamples: int, json_out: bool) -> None:
    """Compare two runs evaluated on the same test set (B - A).

    Metric and per-class deltas with paired bootstrap intervals, the confusion-matrix
    difference, McNemar's exact test and grids of faces that flipped right->wrong and
    wrong->right; writes compare.html, compare.pdf and compare.json. Runs evaluated on
    different faces are refused (exit 3).

    \b
    Examples:
      ferreport compare reports/run1 reports/run2
      ferreport compare reports/run1 reports/fer --format html --json
    """
    with Console(json_out) as console:
        document = commands.compare(run_a, run_b, console, out=out, formats=formats,
                                    data=data, use_dataset=not pool_only, n_resamples=n_resamples, seed=seed)
    if json_out:
        click.echo(json.dumps(document, sort_keys=True, ensure_ascii=False))


@main.command()
@click.argument("folder", type=PathType)
@click.option("--model", "model", type=PathType, required=True, metavar="RUN_DIR|FILE|FOLDER",
              help="A run directory (its model.keras; its training class distribution is shown beside the "
                   "predictions), a model file (.keras, .h5/.hdf5, .onnx) or a TensorFlow SavedModel folder.")
@setting_options(AuditConfig, "out", "faces", "face_detector", "align")
@setting_option(AuditConfig, "labels", metavar="subfolders|none|FILE.csv")
@setting_options(AuditConfig, "formats", "batch_size", "chunk_size", "workers", "seed", *MODEL_SETTINGS,
                 *SALIENCY_SETTINGS, "engine")
@setting_option(AuditConfig, "reference", metavar="RUN_DIR|AUDIT_DIR")
@setting_option(AuditConfig, "ray_address", metavar="ADDRESS")
@force_option
@gate_options
@handle_errors
def predict(folder: Path, model: Path, force: bool, **kw: Any) -> None:
    """Audit FOLDER: predict every face in its images; write predictions.csv, audit_summary.json, a report.

    Walks FOLDER recursively (JPEG, PNG, BMP, WebP, TIFF; anything else or unreadable is skipped and
    listed in skipped.csv with its reason). With labels (class-named sub-folders or --labels FILE.csv)
    the audit also computes every evaluation metric.

    \b
    Examples:
      ferreport predict photos/ --model reports/expw
      ferreport predict faces/ --model emotion.onnx --faces whole --labels labels.csv
      ferreport predict incoming/ --model reports/expw --fail-over drift_psi=0.2 --fail-over embedding_auc=0.7
      ferreport predict photos/ --model reports/expw --detector haar
    """
    plan = plan_gates(kw)
    config = AuditConfig(**from_options(AuditConfig, kw))  # the model settings are AuditConfig's too
    with Console(plan.json_out) as console:
        outcome = commands.predict(folder, model, config, plan, console, progress=_progress(), force=force)
    console.conclude(outcome)


@main.command("label-issues")
@setting_options(LabelIssuesConfig, "data", "out", "model_kind", "folds", "epochs", "ranking", "seed", "strict",
                 "cache_dir")
@force_option
@click.option("--json", "json_out", is_flag=True, help="Print the summary (counts, fold accuracy, noise per class, "
                                                       "files written) as one JSON object on stdout.")
@handle_errors
def label_issues(force: bool, json_out: bool, **kw: Any) -> None:
    """Find the faces of a dataset whose label is probably wrong (cleanlab on K-fold out-of-sample probabilities).

    Writes to --out: label_issues.csv (most suspect first), a copy of label.lst with the suspect lines
    commented out (ExpW layout) or moves.csv (class folders), label_issues.html (the most suspect faces) and
    label_issues.json. --data is never modified. Exit codes as for every command (2 usage, 3 data, 5 output).

    \b
    Examples:
      ferreport label-issues --data data/ExpW --out reports/expw-labels
      ferreport label-issues --data faces/ --out reports/faces-labels --model-kind cnn --epochs 5 --folds 3
    """
    result = commands.label_issues(LabelIssuesConfig(**from_options(LabelIssuesConfig, kw)), force=force)
    if json_out:
        click.echo(summary_json(result))
        return
    head, *paths = summary_lines(result)
    click.echo(head, err=True)
    for path in paths:
        click.echo(path)


if __name__ == "__main__":  # pragma: no cover
    main()
