"""`--config job.toml`: a TOML file holding any command's options; command-line flags override it.

Layout (TOML)::

    # top-level keys: options of the command being run
    data = "data/ExpW"
    fail-under = ["accuracy=0.80", "f1.fear=0.30"]   # repeatable options take a list ...
    junit = "reports/gates.xml"

    [evaluate]                  # ... a table named after a command holds options for that
    model = "models/current.keras"  # command only and overrides the top-level keys
    max-drop = { accuracy = 0.02, macro_f1 = 0.03 }   # KEY=VALUE options also take a table

    [run]
    epochs = 20

* Keys are option names without the leading dashes, with dashes or underscores
  (``fail-under`` = ``fail_under``); a positional argument is named as in ``--help``
  (``run_dir``, ``run_a``, ``run_b``). Flags take ``true``/``false``.
* Tables named after other commands are ignored, so one file can serve several
  commands; any other unknown key (or table) is an error (exit 2) naming the key
  and the file.
* Relative paths are resolved against the job file's folder, so a cron job works
  from any working directory.
* Precedence: command line > ``[command]`` table > top-level keys > built-in default.

Implemented with Click's ``default_map``: an eager ``--config`` option, added to every
command of the CLI, reads the file before the other options are parsed.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from ferreport.runs.guard import ArtefactError, read_inside

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["ConfigFileError", "add_config_option", "config_option", "option_defaults", "load_config_file"]

#: Parameters a job file cannot set.
RESERVED = frozenset({"config", "help", "version"})


class ConfigFileError(click.ClickException):
    """A job-file problem: one line on stderr, exit code 2 (usage error)."""

    exit_code = 2

    def show(self, file: Any = None) -> None:  # noqa: D102
        click.echo(f"ferreport: error: {self.format_message()}", err=True)


def load_config_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:  # guarded: a regular file (never a FIFO or device) of at most 1 MiB
        data = read_inside(p, 1024**2)
    except FileNotFoundError:
        raise ConfigFileError(f"--config {p}: job file not found") from None
    except ArtefactError as exc:
        raise ConfigFileError(f"--config {p}: {exc.reason}") from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigFileError(f"{p}: not UTF-8 text; a job file is TOML") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"{p}: invalid TOML ({exc})") from None


def _names(param: click.Parameter) -> set[str]:
    names = {param.name} if param.name else set()
    if isinstance(param, click.Option):
        names |= {o.lstrip("-") for o in (*param.opts, *param.secondary_opts) if o.startswith("-")}
    return {n.replace("-", "_") for n in names}


def _display(param: click.Parameter) -> str:
    if isinstance(param, click.Option):
        longs = [o[2:] for o in param.opts if o.startswith("--")]
        if longs:
            return longs[0]
    return str(param.name)


def _param_index(command: click.Command) -> dict[str, click.Parameter]:
    index: dict[str, click.Parameter] = {}
    for param in command.params:
        if param.name in RESERVED or not param.name:
            continue
        for name in _names(param):
            index.setdefault(name, param)
    return index


def _convert(param: click.Parameter, key: str, value: Any, base: Path, path: Path) -> Any:
    def one(v: Any) -> Any:
        if isinstance(v, Mapping):
            raise ConfigFileError(f"{path}: {key}: expected a value, got a table")
        if isinstance(param.type, click.Path) and isinstance(v, str) and v:
            p = Path(v).expanduser()
            return str(p if p.is_absolute() else base / p)
        return v

    if param.multiple or (param.nargs != 1 and not isinstance(param, click.Option)):
        if isinstance(value, Mapping):  # {accuracy = 0.8} -> ["accuracy=0.8"]
            return [f"{k}={v}" for k, v in value.items()]
        values = value if isinstance(value, list) else [value]
        return [one(v) for v in values]
    if isinstance(value, list):
        raise ConfigFileError(f"{path}: {key}: expected one value, got a list (only repeatable options take lists)")
    if isinstance(value, Mapping) and getattr(param, "metavar", None) == "KEY=VALUE":
        return [f"{k}={v}" for k, v in value.items()]
    return one(value)


def _check_other_tables(doc: Mapping[str, Any], p: Path, others: Mapping[str, click.Command]) -> None:
    """Keys of tables for other commands must be options of those commands too."""
    for name, cmd in others.items():
        table = doc.get(name)
        if not isinstance(table, Mapping):
            continue
        index = _param_index(cmd)
        for key in table:
            if str(key).replace("-", "_") not in index:
                raise ConfigFileError(f"{p}: unknown key [{name}] {key!r} for `ferreport {name}`")


def option_defaults(path: str | Path, command: click.Command, command_name: str,
                 other_commands: Mapping[str, click.Command] | set[str] | frozenset[str] = frozenset()
                 ) -> dict[str, Any]:
    """The ``default_map`` for ``command`` from the job file at ``path``."""
    p = Path(path)
    doc = load_config_file(p)
    if isinstance(other_commands, Mapping):
        _check_other_tables(doc, p, other_commands)
    base = p.resolve().parent
    index = _param_index(command)
    known = ", ".join(sorted({_display(param) for param in index.values()}))
    merged: dict[str, tuple[str, Any]] = {}

    def absorb(table: Mapping[str, Any], where: str) -> None:
        for key, value in table.items():
            norm = str(key).replace("-", "_")
            if isinstance(value, Mapping) and norm not in index:
                if where == "" and (key == command_name or key in other_commands):
                    continue  # command tables are handled below
                raise ConfigFileError(f"{p}: unknown table [{key}]; tables are named after commands "
                                   f"({', '.join(sorted({command_name, *other_commands}))})")
            param = index.get(norm)
            if param is None:
                scope = f"[{where}] " if where else ""
                raise ConfigFileError(f"{p}: unknown key {scope}{key!r} for `ferreport {command_name}`; "
                                   f"valid keys: {known}")
            merged[param.name] = (key, value)

    absorb(doc, "")
    own = doc.get(command_name)
    if isinstance(own, Mapping):
        absorb(own, command_name)
    return {name: _convert(index_param, key, value, base, p)
            for name, (key, value) in merged.items()
            for index_param in [next(q for q in command.params if q.name == name)]}


def _callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is None or ctx.resilient_parsing:
        return value
    command = ctx.command
    name = ctx.info_name or command.name or ""
    others: dict[str, click.Command] = {}
    if ctx.parent is not None and isinstance(ctx.parent.command, click.Group):
        others = {k: v for k, v in ctx.parent.command.commands.items() if k != name}
    defaults = option_defaults(value, command, name, others)
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


def config_option() -> click.Option:
    return click.Option(["--config"], type=click.Path(dir_okay=False, path_type=Path), default=None,
                        is_eager=True, expose_value=False, callback=_callback, metavar="JOB.toml",
                        help="TOML job file holding this command's options (command-line flags override it).")


def add_config_option(command: click.Command) -> click.Command:
    """Give ``command`` a ``--config`` option (idempotent)."""
    if not any(p.name == "config" for p in command.params):
        command.params.append(config_option())
    return command
