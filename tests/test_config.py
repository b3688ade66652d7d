"""ferreport.config: every setting is declared once, and the CLI shows and uses exactly that."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from ferreport.cli import commands
from ferreport.cli.main import main
from ferreport.config import (
    COMMAND_RECIPES,
    FORMATS,
    MODEL_SETTINGS,
    SALIENCY_SETTINGS,
    AuditConfig,
    RunConfig,
    TrainConfig,
    param_of,
    parse_formats,
    recipe_values,
)
from ferreport.errors import UsageError

#: The keys of config.json as runs have written them (run folders of earlier versions stay readable).
CONFIG_JSON_KEYS = {
    "arch", "augment", "balance", "batch_size", "cache_dir", "data", "early_stopping_patience", "epochs", "extra",
    "formats", "label_smoothing", "learning_rate", "lr_schedule", "monitor", "n_resamples", "out", "reports_dir",
    "resume", "sample_faces", "seed", "strategy", "strict", "warmup_epochs", "workers",
}
#: Settings no command-line option sets (Python API / recorded only).
NOT_ON_THE_COMMAND_LINE = {"reports_dir", "extra", "sample_faces", "workers", "n_resamples", "reduce_lr_patience"}


def _setting_params(command: click.Command, owner) -> dict[str, tuple[click.Parameter, dataclasses.Field]]:
    """The command's options that are settings of ``owner``, by setting name."""
    by_param = {}
    names = owner.names()
    for name in names:
        f = owner.field_of(name)
        by_param[param_of(f)] = f
    return {by_param[p.name].name: (p, by_param[p.name]) for p in command.params if p.name in by_param}


def _value_of(param: click.Parameter, f: dataclasses.Field, default):
    if f.metadata.get("invert"):
        return not default
    if f.metadata.get("kind") == "formats":
        return parse_formats(default)
    return default


@pytest.mark.parametrize("command, owner", [
    ("prepare", RunConfig), ("train", RunConfig), ("run", RunConfig), ("evaluate", RunConfig),
    ("predict", AuditConfig)])
def test_every_option_default_is_the_setting_default_or_the_commands_recipe(command, owner):
    recipe = recipe_values(COMMAND_RECIPES.get(command, "default"))
    params = _setting_params(main.commands[command], owner)
    assert params, command
    for name, (param, f) in params.items():
        # flags show no default (off); a recipe's value for them applies all the same
        expected = f.default if getattr(param, "is_flag", False) else recipe.get(name, f.default)
        assert _value_of(param, f, param.default) == expected, (command, name)
        choices = f.metadata.get("cli_choices") or f.metadata.get("choices")
        if choices and f.metadata.get("kind") != "formats":
            assert tuple(param.type.choices) == choices, (command, name)


def test_evaluate_and_predict_expose_every_model_setting():
    for command, owner in (("evaluate", RunConfig), ("predict", AuditConfig)):
        params = _setting_params(main.commands[command], owner)
        assert set(MODEL_SETTINGS) <= set(params), (command, set(MODEL_SETTINGS) - set(params))


def test_the_evaluating_commands_expose_the_saliency_settings():
    for command, owner in (("evaluate", RunConfig), ("run", RunConfig), ("predict", AuditConfig)):
        params = _setting_params(main.commands[command], owner)
        assert set(SALIENCY_SETTINGS) <= set(params), (command, set(SALIENCY_SETTINGS) - set(params))


def test_train_and_run_expose_every_training_setting():
    exposed = RunConfig.names()
    for command in ("train", "run"):
        params = _setting_params(main.commands[command], RunConfig)
        missing = (set(exposed) - set(params) - NOT_ON_THE_COMMAND_LINE - set(MODEL_SETTINGS)  # evaluate/predict's
                   - ({"formats", *SALIENCY_SETTINGS} if command == "train" else set()))  # train scores nothing
        assert not missing, (command, missing)


@pytest.mark.parametrize("command", ["train", "run"])
def test_help_defaults_are_the_values_used(command, monkeypatch, tmp_path):
    """What `--help` shows as default is what the command trains with (issue 21: run showed 25, used 12)."""
    seen = {}

    def capture(config, *args, **kwargs):
        seen["config"] = config
        return [tmp_path] if command == "train" else None

    monkeypatch.setattr(commands, command, capture)
    result = CliRunner().invoke(main, [command, "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    config = seen["config"]
    for name, (param, f) in _setting_params(main.commands[command], RunConfig).items():
        if name == "out":
            continue
        shown = _value_of(param, f, param.default)
        if getattr(param, "envvar", None) and os.environ.get(param.envvar):  # shown as [env var: ...]
            shown = Path(os.environ[param.envvar])
        if getattr(param, "is_flag", False):  # flags show no default: the recipe decides
            shown = recipe_values(COMMAND_RECIPES[command]).get(name, f.default)
        assert getattr(config, name) == shown, (command, name)


def test_given_options_beat_the_recipe_and_recipe_fills_the_rest(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(commands, "train", lambda config, **kw: seen.setdefault("config", config) and [tmp_path])
    CliRunner().invoke(main, ["train", "--recipe", "seed", "--epochs", "3", "--out", str(tmp_path / "r")])
    config = seen["config"]
    assert config.epochs == 3 and config.arch == "seed" and config.balance == "smote"
    assert config.training == TrainConfig.from_recipe("seed", epochs=3)


def test_config_json_keys_are_unchanged_and_round_trip():
    config = RunConfig.build(data=Path("d"), epochs=3, formats=("html",))
    saved = config.to_dict()
    assert set(saved) == CONFIG_JSON_KEYS
    assert RunConfig.from_dict(saved) == config
    assert set(RunConfig.build(reduce_lr_patience=2).to_dict()) == CONFIG_JSON_KEYS | {"reduce_lr_patience"}
    with pytest.raises(UsageError, match="unknown keys"):
        RunConfig.from_dict({**saved, "folder": "x"})


def test_resume_restores_the_saved_config_except_the_named_settings():
    saved = RunConfig.from_recipe("demo", data=Path("d"), epochs=7, strategy="auto").to_dict()
    del saved["monitor"]  # an older config.json without it: this command line's value stays
    now = RunConfig.build(out=Path("o"), epochs=30, arch="seed", strategy="mirrored", resume=True, monitor="val_loss")
    resumed = now.resumed_from(saved)
    assert (resumed.epochs, resumed.arch, resumed.balance, resumed.augment) == (7, "compact-std", "none", False)
    assert (resumed.out, resumed.strategy, resumed.resume, resumed.monitor) == (Path("o"), "mirrored", True, "val_loss")


def test_validation_lives_in_the_settings():
    for bad in ({"epochs": 0}, {"balance": "smooth"}, {"seed": -1}, {"learning_rate": 0.0}, {"monitor": "x"},
                {"formats": ("html", "doc")}, {"warmup_epochs": 1.5}, {"label_smoothing": 1.0}):
        with pytest.raises(UsageError):
            RunConfig.build(**bad)
    with pytest.raises(UsageError, match="--ray-address needs --engine ray"):
        AuditConfig(ray_address="auto")
    with pytest.raises(UsageError, match="--faces"):
        AuditConfig(faces="all")
    assert parse_formats("none", allow_none=True) == () and parse_formats("HTML, pdf") == FORMATS
    with pytest.raises(UsageError):
        parse_formats("none")


def test_run_accepts_format_none_as_no_report(monkeypatch):
    """Every command that writes a report takes --format none (run refused it after training, issue 21)."""
    seen = {}

    def capture(config, *args, **kwargs):
        seen["formats"] = config.formats

    monkeypatch.setattr(commands, "run", capture)
    result = CliRunner().invoke(main, ["run", "--format", "none"])
    assert result.exit_code == 0, result.output
    assert seen["formats"] == ()


@pytest.mark.parametrize("command", ["run", "evaluate", "predict", "report", "compare"])
def test_a_bad_format_is_refused_while_the_command_line_is_read(command, monkeypatch):
    """`--format htm` stops with exit 2 naming the value and the choices, before the command does any work."""
    monkeypatch.setattr(commands, command, lambda *a, **k: pytest.fail("worked"))
    args = {"run": [], "evaluate": ["r"], "predict": ["f", "--model", "m"], "report": ["r"], "compare": ["a", "b"]}
    result = CliRunner().invoke(main, [command, *args[command], "--format", "html,htm"])
    assert result.exit_code == 2
    assert "'htm' is not a report format; give html, pdf, html,pdf or none" in result.stderr


def test_arch_is_checked_by_the_command_line_and_names_what_training_builds():
    from ferreport.constants import ARCH_NAMES
    from ferreport.models.architectures import ARCHITECTURES

    assert set(ARCH_NAMES) <= set(ARCHITECTURES)
    result = CliRunner().invoke(main, ["train", "--arch", "resnet"])
    assert result.exit_code == 2 and "'resnet' is not one of 'compact-std', 'compact', 'seed'" in result.stderr
