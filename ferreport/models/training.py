"""Training: resumable epoch loop, learning-rate schedule, collapse detection.

:func:`train_model` runs in stages: open the run (strategy, run folder) -> restore the
checkpoint or build the model -> the epoch loop (train, commit, report each epoch) ->
finish (final files, collapse check). The batches come from
:func:`ferreport.models.input_pipeline.make_dataset`.

Design notes
------------
* **One ``fit`` call per epoch.** Each epoch gets its own dataset whose shuffle
  order and augmentation draws are derived from ``(seed, epoch)``
  (:mod:`ferreport.models.input_pipeline`). Learning-rate
  reduction and early stopping are done by this module, and their counters are
  in the checkpoint state. A resumed run therefore repeats the data order,
  augmentation and schedule of an uninterrupted run exactly.
* **Checkpoint protocol** (``run_dir/checkpoint/``), after every completed epoch:
  ``last-EEEE.keras`` (full model + optimizer state), ``best-EEEE.keras`` (no
  optimizer state, only when the monitored validation metric improved), then ``state.json`` (atomic; the
  commit point naming those files, plus counters and the full history). Files that
  ``state.json`` does not name are deleted. ``history.csv`` and ``model.keras`` are
  then copied from what the state names, so they always match a committed epoch.
  A kill at any moment leaves a consistent checkpoint. The checkpoint is kept after
  training finishes, so a finished run can be extended with more epochs.
* **Distribution.** ``strategy="mirrored"`` keeps the *global* batch at
  ``batch_size`` (each of R replicas gets ``batch_size / R``), so the
  optimisation (steps per epoch, learning rate) is the same for any number of
  GPUs. ``"auto"`` picks MirroredStrategy when more than one GPU is visible and the
  default strategy otherwise. ``"default"`` is always the default strategy.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ferreport.runs import folder as artifacts
from ferreport.models.adapters import adapter_for
from ferreport.runs.atomic import atomic_open, atomic_path, write_json
from ferreport.backend import keras, tf
from ferreport.constants import CLASS_NAMES, MONITORS, NUM_CLASSES
from ferreport.models.contract import ModelContract
from ferreport.models.distributed import is_chief, multiworker_strategy, run_epoch
from ferreport.config import STRATEGIES, TrainConfig
from ferreport.errors import DatasetError, UsageError
from ferreport.models.input_pipeline import LAYER_STREAM, check_labels, derive_seed, make_dataset
from ferreport.datasets.preprocessing import check_faces
from ferreport.evaluation.metrics import classification_metrics
from ferreport.models.model_file import ARCHITECTURES, build_model, compile_model
from ferreport.models.onednn import guard_model
from ferreport.evaluation.prediction import predict_proba
from ferreport.progress import Stage, echo, is_live, stage

__all__ = [
    "HISTORY_COLUMNS",
    "CollapseReport",
    "TrainConfig",
    "TrainResult",
    "detect_collapse",
    "resolve_strategy",
    "scheduled_learning_rate",
    "train_model",
]

#: Columns of history.csv (see artifacts.HISTORY).
HISTORY_COLUMNS: tuple[str, ...] = (
    "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "val_macro_f1", "learning_rate", "seconds",
)
#: ReduceLROnPlateau-style schedule (when ``reduce_lr_patience`` is set).
LR_FACTOR = 0.5
MIN_LR = 1e-6
#: Per-step learning-rate schedules (``TrainConfig.lr_schedule``): ``constant`` keeps the
#: (plateau-reduced) rate; ``cosine`` decays it along a half cosine over ``epochs`` to
#: ``COSINE_FINAL_FRACTION`` of its start value. Either is preceded by a linear warm-up of
#: ``warmup_epochs`` epochs when that is set (the names: config.LR_SCHEDULES).
COSINE_FINAL_FRACTION = 0.01
_STATE_FORMAT = 1
#: Config fields that may change between a run and its resumption.
_RESUMABLE_CHANGES = frozenset({"epochs", "strategy"})
#: What a checkpoint lacking a TrainConfig field was trained with: the field's default, except
#: for the fields whose default changed when TrainConfig took the CLI's defaults (these).
CHECKPOINT_DEFAULTS: dict[str, object] = {
    "epochs": 50, "arch": "seed", "label_smoothing": 0.0, "lr_schedule": "constant", "warmup_epochs": 0,
    "monitor": "val_loss",
}


# --------------------------------------------------------------------------- config / result


@dataclass(frozen=True)
class CollapseReport:
    """Why a training run looks collapsed, and what probably caused it."""

    reasons: tuple[str, ...]
    likely_causes: tuple[str, ...]

    def to_dict(self) -> dict[str, list[str]]:
        return {"reasons": list(self.reasons), "likely_causes": list(self.likely_causes)}

    def message(self) -> str:
        return (
            "training looks collapsed: " + "; ".join(self.reasons)
            + ". Likely causes: " + "; ".join(self.likely_causes) + "."
        )


@dataclass(frozen=True, eq=False)
class TrainResult:
    history: pd.DataFrame          # HISTORY_COLUMNS, one row per completed epoch (all sessions)
    best_epoch: int                # 1-based epoch whose weights are in model_path
    model_path: Path               # run_dir / model.keras
    epochs_run: int                # completed epochs in total (== len(history))
    collapse: CollapseReport | None
    stopped_early: bool = False    # early stopping or a NaN loss ended training
    resumed_from_epoch: int = 0    # completed epochs found in the checkpoint (0: fresh run)
    val_pred_counts: np.ndarray | None = None  # argmax counts of the best model on validation
    is_chief: bool = True          # False on multi-worker workers other than the chief (they write nothing)


# --------------------------------------------------------------------------- helpers


def resolve_strategy(name: str) -> tf.distribute.Strategy:
    """``default``: one device; ``mirrored``: all local GPUs (or the CPU); ``auto``: mirrored if >1 GPU;
    ``multiworker``: several processes or hosts named by ``TF_CONFIG`` (see :mod:`ferreport.models.distributed`)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "auto":
        if len(tf.config.list_logical_devices("GPU")) > 1:
            return tf.distribute.MirroredStrategy()
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return multiworker_strategy()
    raise UsageError(f"unknown strategy {name!r}; choose one of: {', '.join(STRATEGIES)}")


def _fingerprint(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray) -> dict[str, Any]:
    """Cheap identity of the training data: sizes, label hashes, a hash of <=256 sampled faces."""
    def sample_hash(x: np.ndarray) -> str:
        h = hashlib.sha256()
        if len(x):
            step = max(1, len(x) // 256)
            h.update(np.ascontiguousarray(x[::step][:256]).tobytes())
        return h.hexdigest()

    return {
        "n_train": int(len(x_train)),
        "n_val": int(len(x_val)),
        "train_labels_sha256": hashlib.sha256(np.ascontiguousarray(y_train, dtype=np.int32).tobytes()).hexdigest(),
        "val_labels_sha256": hashlib.sha256(np.ascontiguousarray(y_val, dtype=np.int32).tobytes()).hexdigest(),
        "train_faces_sample_sha256": sample_hash(x_train),
    }


def _finite_or_none(v: Any) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _history_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))
    if len(df):
        df["epoch"] = df["epoch"].astype(np.int64)
        for col in HISTORY_COLUMNS[1:]:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(np.float64)
    return df


def _write_history(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_open(run_dir / artifacts.HISTORY) as fh:
        _history_frame(rows).to_csv(fh, index=False)


def _save_full(model: keras.Model, path: Path) -> None:
    with atomic_path(path) as tmp:
        model.save(tmp)


def _save_slim(model: keras.Model, path: Path, config: TrainConfig) -> None:
    """Save architecture + weights + compile settings, without optimizer state (1/3 the size)."""
    with tf.device("/cpu:0"):
        clone = keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
    compile_model(clone, learning_rate=config.learning_rate, label_smoothing=config.label_smoothing)
    with atomic_path(path) as tmp:
        clone.save(tmp)


def _copy_atomic(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def _fmt(v: float | None, spec: str) -> str:
    return "nan" if v is None or not math.isfinite(v) else format(v, spec)


def _warn(msg: str) -> None:
    echo(f"warning: {msg}")


# --------------------------------------------------------------------------- collapse


def _entropy(counts: np.ndarray) -> float:
    p = np.asarray(counts, dtype=np.float64)
    p = p[p > 0] / p.sum()
    return float(-(p * np.log(p)).sum())


def detect_collapse(
    history: pd.DataFrame,
    val_pred_counts: np.ndarray | None = None,
    *,
    train_label_counts: np.ndarray | None = None,
    val_label_counts: np.ndarray | None = None,
    learning_rate: float | None = None,
    class_weighted: bool | None = None,
    loss_tolerance: float = 0.05,
    one_class_share: float = 0.9,
    chance_margin: float = 0.02,
) -> CollapseReport | None:
    """Flag a run that learned (almost) nothing; ``None`` when it looks healthy.

    Reasons checked: training loss non-finite; training loss within ``loss_tolerance``
    of ln(7) (uniform guess) or of the entropy of the training class prior (prior
    guess) in every epoch; ``>= one_class_share`` of validation predictions in one
    class; best validation accuracy never above the majority-class rate (1/7 when the
    validation label counts are unknown) plus ``chance_margin``.
    """
    n_epochs = len(history)
    loss = history["loss"].to_numpy(dtype=np.float64) if n_epochs else np.empty(0)
    train_counts = None if train_label_counts is None else np.asarray(train_label_counts, dtype=np.float64)
    pred_counts = None if val_pred_counts is None else np.asarray(val_pred_counts, dtype=np.float64)
    diverged = bool(n_epochs and not np.all(np.isfinite(loss)))

    reasons = _loss_reasons(history, loss, diverged, train_counts, loss_tolerance)
    majority_pred = None
    if pred_counts is not None and pred_counts.sum() > 0:
        majority_pred = int(np.argmax(pred_counts))
        share = pred_counts[majority_pred] / pred_counts.sum()
        if share >= one_class_share:
            reasons.append(f"{share:.0%} of validation predictions are '{CLASS_NAMES[majority_pred]}'")
    reasons += _chance_reasons(history, val_label_counts, chance_margin)
    if not reasons:
        return None
    causes = _likely_causes(n_epochs, diverged, learning_rate, train_counts, class_weighted, majority_pred)
    return CollapseReport(reasons=tuple(reasons), likely_causes=tuple(causes))


def _loss_reasons(history: pd.DataFrame, loss: np.ndarray, diverged: bool, train_counts: np.ndarray | None,
                  loss_tolerance: float) -> list[str]:
    """A non-finite training loss, or one that stayed at a guess's loss (uniform, or the class prior)."""
    if diverged:
        first = int(history["epoch"].iloc[int(np.argmax(~np.isfinite(loss)))])
        return [f"training loss became NaN/infinite at epoch {first}"]
    if not len(history):
        return []
    refs = [("ln(7), the loss of a uniform guess", math.log(NUM_CLASSES))]
    if train_counts is not None and train_counts.sum() > 0:
        refs.append(("the entropy of the class prior, the loss of always guessing class frequencies",
                     _entropy(train_counts)))
    for label, ref in refs:
        if np.all(np.abs(loss - ref) <= loss_tolerance):
            return [f"training loss stayed at {ref:.3f} +/- {loss_tolerance} ({label}) in all {len(history)} epochs"]
    return []


def _chance_reasons(history: pd.DataFrame, val_label_counts: np.ndarray | None, chance_margin: float) -> list[str]:
    """The best validation accuracy never above the majority-class rate (or 1/7) plus ``chance_margin``."""
    if not len(history) or "val_accuracy" not in history:
        return []
    val_acc = history["val_accuracy"].to_numpy(dtype=np.float64)
    if not np.any(np.isfinite(val_acc)):
        return []
    best = float(np.nanmax(val_acc))
    if val_label_counts is not None and np.sum(val_label_counts) > 0:
        vc = np.asarray(val_label_counts, dtype=np.float64)
        chance, what = float(vc.max() / vc.sum()), "the majority-class rate"
    else:
        chance, what = 1.0 / NUM_CLASSES, "chance (1/7)"
    if best <= chance + chance_margin:
        return [f"best validation accuracy {best:.3f} never exceeded {what} {chance:.3f} + {chance_margin}"]
    return []


def _likely_causes(n_epochs: int, diverged: bool, learning_rate: float | None, train_counts: np.ndarray | None,
                   class_weighted: bool | None, majority_pred: int | None) -> list[str]:
    """What probably made a run collapse, most specific first; label trouble is always listed last."""
    causes: list[str] = []
    if diverged:
        causes.append("learning rate too high (the optimisation diverged); lower it, e.g. to 1e-4")
    if n_epochs < 5:
        causes.append(f"too few epochs ({n_epochs}); a CNN trained from scratch on faces needs tens of epochs")
    if learning_rate is not None and learning_rate >= 1e-3 and not diverged:
        causes.append(
            f"learning rate {learning_rate:g} may be too high for Adam with BatchNorm from scratch; try 1e-4"
        )
    if train_counts is not None and train_counts.sum() > 0:
        missing = [CLASS_NAMES[i] for i in range(NUM_CLASSES) if train_counts[i] == 0]
        if missing:
            causes.append(f"no training faces for {', '.join(missing)}")
        present = train_counts[train_counts > 0]
        ratio = float(present.max() / present.min())
        if ratio >= 3 and not class_weighted:
            causes.append(
                f"heavy class imbalance (largest class {ratio:.0f}x the smallest) without class weights "
                "or resampling"
            )
        if majority_pred is not None and majority_pred == int(np.argmax(train_counts)):
            causes.append(f"the model predicts the majority training class '{CLASS_NAMES[majority_pred]}'")
        if train_counts.sum() < 1000:
            causes.append(f"only {int(train_counts.sum())} training faces")
    causes.append("labels may not match the faces (label noise, mis-parsed label list, or misaligned face crops)")
    return causes


# --------------------------------------------------------------------------- schedule


def scheduled_learning_rate(config: TrainConfig, base_lr: float, step: int, steps_per_epoch: int) -> float:
    """Learning rate at global optimizer ``step`` (0-based) of a per-step schedule.

    ``base_lr`` is the rate before the schedule (``config.learning_rate``, possibly
    lowered by the plateau rule). Warm-up: linear from ``base_lr / W`` to ``base_lr``
    over the first ``W = warmup_epochs * steps_per_epoch`` steps. Cosine: a half cosine
    from ``base_lr`` at the end of warm-up to ``COSINE_FINAL_FRACTION * base_lr`` at the
    last step of ``config.epochs`` epochs. A pure function of its arguments, so a
    resumed run follows the same schedule as an uninterrupted one.
    """
    steps_per_epoch = max(1, int(steps_per_epoch))
    warm = config.warmup_epochs * steps_per_epoch
    factor = 1.0
    if step < warm:
        factor = (step + 1) / warm
    elif config.lr_schedule == "cosine":
        last = max(1, config.epochs * steps_per_epoch - warm - 1)  # steps after warm-up, minus one
        progress = min(1.0, (step - warm) / last)
        f = COSINE_FINAL_FRACTION
        factor = f + (1.0 - f) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return float(base_lr) * factor


class _StepSchedule(keras.callbacks.Callback):
    """Sets the optimizer's learning rate before every training batch (one ``fit`` = one epoch)."""

    def __init__(self, config: TrainConfig, base_lr: float, epoch: int, steps_per_epoch: int):
        super().__init__()
        self._config, self._base, self._epoch, self._steps = config, base_lr, epoch, steps_per_epoch
        self.last_lr = scheduled_learning_rate(config, base_lr, epoch * steps_per_epoch, steps_per_epoch)

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self.last_lr = scheduled_learning_rate(self._config, self._base, self._epoch * self._steps + int(batch),
                                               self._steps)
        self.model.optimizer.learning_rate.assign(self.last_lr)


# --------------------------------------------------------------------------- training


class _State:
    """Checkpoint state (``checkpoint/state.json``)."""

    def __init__(self, config: TrainConfig, fingerprint: dict[str, Any], class_weight: dict[str, float] | None):
        self.epochs_done = 0
        self.best_value: float | None = None  # best value of config.monitor so far
        self.best_epoch = 0
        self.es_wait = 0
        self.lr_wait = 0
        self.learning_rate = float(config.learning_rate)
        self.stopped: str | None = None
        self.history: list[dict[str, Any]] = []
        self.last_file: str | None = None
        self.best_file: str | None = None
        self.config = _config_json(config)
        self.fingerprint = fingerprint
        self.class_weight = class_weight

    def to_json(self) -> dict[str, Any]:
        return {
            "format": _STATE_FORMAT,
            "epochs_done": self.epochs_done,
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "early_stopping_wait": self.es_wait,
            "reduce_lr_wait": self.lr_wait,
            "learning_rate": self.learning_rate,
            "stopped": self.stopped,
            "history": [{k: (_finite_or_none(v) if k != "epoch" else int(v)) for k, v in row.items()}
                        for row in self.history],
            "last_file": self.last_file,
            "best_file": self.best_file,
            "config": self.config,
            "data": self.fingerprint,
            "class_weight": self.class_weight,
            "seed": self.config["seed"],
        }

    @classmethod
    def load(cls, path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != _STATE_FORMAT:
                raise ValueError(f"unknown format {data.get('format')!r}")
            return data
        except (OSError, ValueError) as exc:
            raise UsageError(
                f"{path}: unreadable training checkpoint ({exc}); start a new run without --resume"
            ) from exc


def _config_json(config: TrainConfig) -> dict[str, Any]:
    """The settings as the checkpoint's state.json stores them (paths as text)."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}


def _restore_state(data: dict[str, Any], config: TrainConfig, fingerprint: dict[str, Any],
                   class_weight: dict[str, float] | None, ckpt: Path) -> _State:
    old = data["config"]
    new = _config_json(config)
    defaults = {**_config_json(TrainConfig()), **CHECKPOINT_DEFAULTS}  # fields added since the checkpoint
    changed = [k for k in new if k not in _RESUMABLE_CHANGES and old.get(k, defaults[k]) != new[k]]
    if changed:
        diffs = ", ".join(f"{k}={old.get(k, defaults[k])!r} (now {new[k]!r})" for k in changed)
        raise UsageError(
            f"{ckpt}: checkpoint was written with {diffs}; resume with the same settings or start a new run"
        )
    if data.get("data") != fingerprint:
        raise DatasetError(
            f"{ckpt}: the training/validation data differ from those of the checkpoint; resume with the same "
            "data and splits or start a new run"
        )
    if data.get("class_weight") != class_weight:
        raise UsageError(f"{ckpt}: checkpoint was trained with different class weights; use the same balancing")
    st = _State(config, fingerprint, class_weight)
    st.epochs_done = int(data["epochs_done"])
    st.best_value = data["best_value"] if "best_value" in data else data.get("best_val_loss")
    st.best_epoch = int(data["best_epoch"])
    st.es_wait = int(data["early_stopping_wait"])
    st.lr_wait = int(data["reduce_lr_wait"])
    st.learning_rate = float(data["learning_rate"])
    st.stopped = data["stopped"]
    st.history = [{k: (math.nan if v is None else v) for k, v in row.items()} for row in data["history"]]
    st.last_file = data["last_file"]
    st.best_file = data["best_file"]
    for name in (st.last_file, st.best_file):
        if name and not (ckpt / name).is_file():
            raise UsageError(f"{ckpt / name}: checkpoint file is missing; start a new run without --resume")
    return st


def _schedule_step(state: _State, row: dict[str, Any], config: TrainConfig) -> bool:
    """Update the best monitored value, plateau counters, learning rate and stop flag after an epoch.

    Returns whether ``config.monitor`` improved (strictly lower val_loss, or strictly
    higher val_macro_f1, than the best so far; NaN never improves). The learning rate is
    multiplied by LR_FACTOR (floor MIN_LR) after ``reduce_lr_patience`` epochs without
    improvement; training stops after ``early_stopping_patience`` such epochs, or at once
    when the training loss is NaN.
    """
    sign = 1.0 if MONITORS[config.monitor] == "min" else -1.0  # compare as "lower is better"
    value = float(row[config.monitor])
    improved = math.isfinite(value) and (state.best_value is None or sign * value < sign * state.best_value)
    if improved:
        state.best_value = value
        state.es_wait = state.lr_wait = 0
    else:
        state.es_wait += 1
        state.lr_wait += 1
    if config.reduce_lr_patience is not None and state.lr_wait >= config.reduce_lr_patience:
        state.learning_rate = max(state.learning_rate * LR_FACTOR, MIN_LR)
        state.lr_wait = 0
    if not math.isfinite(float(row["loss"])):
        state.stopped = "nan_loss"
    elif config.early_stopping_patience is not None and state.es_wait >= config.early_stopping_patience:
        state.stopped = "early_stopping"
    return improved


def _reseed_layers(model: keras.Model, seed: int, epoch: int) -> None:
    """Set every layer's random state (Dropout masks ...) from ``(seed, epoch)``.

    Keras does not restore seed-generator state from a .keras file, so without this
    a resumed run would draw different dropout masks than an uninterrupted one.
    """
    stack = [model]
    seen: set[int] = set()
    k = 0
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        for name in sorted(vars(layer)):
            value = vars(layer)[name]
            if isinstance(value, keras.random.SeedGenerator):
                k += 1
                value.state.assign(np.array([derive_seed(seed, epoch, LAYER_STREAM, k), 0], dtype=np.int64)
                                   .astype(keras.backend.standardize_dtype(value.state.dtype)))
        stack.extend(reversed(getattr(layer, "layers", [])))


def _clean_checkpoint_dir(ckpt: Path, keep: set[str]) -> None:
    for p in ckpt.glob("*.keras"):
        if p.name not in keep and (p.name.startswith(("last-", "best-"))):
            p.unlink(missing_ok=True)
    for p in ckpt.glob(".*.part*"):  # leftovers of a kill during an atomic write
        p.unlink(missing_ok=True)


def _normalise_class_weight(class_weight: dict[int, float] | None) -> dict[str, float] | None:
    if class_weight is None:
        return None
    out: dict[str, float] = {}
    for k, v in class_weight.items():
        k_int = int(k)
        if not 0 <= k_int < NUM_CLASSES or not (math.isfinite(float(v)) and float(v) >= 0):
            raise UsageError(f"class weight {k!r}: {v!r} is invalid; keys must be 0..6 and weights >= 0")
        out[str(k_int)] = float(v)
    return dict(sorted(out.items()))


@dataclass(frozen=True, eq=False)
class _Data:
    """The training and validation arrays, checked (uint8 faces, int32 labels 0..6, neither empty)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray

    @classmethod
    def checked(cls, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray) -> _Data:
        x_train = check_faces(x_train, "training set")
        y_train = check_labels(y_train, len(x_train), "training set")
        x_val = check_faces(x_val, "validation set")
        y_val = check_labels(y_val, len(x_val), "validation set")
        if len(x_train) == 0:
            raise DatasetError("training set is empty; check the data folder and the split settings")
        if len(x_val) == 0:
            raise DatasetError("validation set is empty; model selection needs validation faces")
        return cls(x_train, y_train, x_val, y_val)

    def as_dict(self) -> dict[str, np.ndarray]:
        return {"x_train": self.x_train, "y_train": self.y_train, "x_val": self.x_val, "y_val": self.y_val}


@dataclass(frozen=True, eq=False)
class _Run:
    """Where and how this process trains: the stages' shared, unchanging settings."""

    config: TrainConfig
    run_dir: Path
    strategy: tf.distribute.Strategy
    chief: bool                          # only the chief writes files
    progress: bool
    class_weight: dict[str, float] | None  # normalised (keys "0".."6"), as the checkpoint stores it
    fingerprint: dict[str, Any]
    contract: ModelContract = field(default_factory=ModelContract)  # how faces become the model's input

    def predict(self, model: keras.Model, faces: np.ndarray) -> np.ndarray:
        """Probabilities of ``model`` (this run's contract) for uint8 faces."""
        if self.contract == ModelContract(recipe=self.contract.recipe):
            return predict_proba(model, faces, batch_size=max(256, self.config.batch_size))
        return predict_proba(adapter_for(model, self.contract, source=str(self.run_dir)), faces,
                             batch_size=max(256, self.config.batch_size))

    @property
    def ckpt(self) -> Path:
        return self.run_dir / artifacts.CHECKPOINT_DIR

    @property
    def state_path(self) -> Path:
        return self.ckpt / artifacts.CHECKPOINT_STATE

    @property
    def multiworker(self) -> bool:
        return isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy)

    @property
    def keras_class_weight(self) -> dict[int, float] | None:
        return None if self.class_weight is None else {int(k): v for k, v in self.class_weight.items()}


def train_model(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    config: TrainConfig,
    run_dir: str | os.PathLike[str],
    *,
    class_weight: dict[int, float] | None = None,
    resume: bool = False,
    progress: bool | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    init: Callable[[], keras.Model] | None = None,
    contract: ModelContract | None = None,
) -> TrainResult:
    """Train ``config.arch`` on uint8 faces and write model.keras, history.csv and checkpoint/.

    ``resume=True`` continues from ``run_dir/checkpoint`` (same config except ``epochs``
    and ``strategy``; same data); without a checkpoint it starts fresh. Without
    ``resume`` an existing checkpoint is replaced. Each epoch is a stage of
    :mod:`ferreport.progress` (a bar of batches with the loss so far, then one line);
    ``progress`` (default: stderr is a TTY) adds the resume notice. ``callbacks`` are passed to each epoch's
    ``fit`` call (one ``fit`` per epoch). ``on_epoch_end(epoch, row)`` runs after the
    epoch's checkpoint is committed (1-based ``epoch``). ``init`` builds the (uncompiled)
    network to start from instead of ``config.arch`` (fine-tuning, :mod:`ferreport.models.finetune`);
    ``contract`` is its input contract (faces reach it through
    :func:`ferreport.models.contract.to_model_input`; default ferreport's own, 64x64 RGB in [0, 1]).

    Stages: open the run -> restore or build the model -> the epoch loop -> finish.
    """
    if init is None and config.arch not in ARCHITECTURES:
        raise UsageError(f"unknown architecture {config.arch!r}; choose one of: {', '.join(sorted(ARCHITECTURES))}")
    data = _Data.checked(x_train, y_train, x_val, y_val)
    if progress is None:
        progress = bool(getattr(sys.stderr, "isatty", lambda: False)())
    run = _open_run(config, Path(run_dir), data, class_weight, progress, contract or ModelContract())
    keras.utils.set_random_seed(int(config.seed))
    state, model = _restore_or_build(run, resume, init)
    resumed_from = state.epochs_done
    if run.chief:
        run.ckpt.mkdir(parents=True, exist_ok=True)
    _epoch_loop(run, model, state, data, callbacks, on_epoch_end)
    return _finish(run, state, data, resumed_from)


def _open_run(config: TrainConfig, run_dir: Path, data: _Data, class_weight: dict[int, float] | None,
              progress: bool, contract: ModelContract) -> _Run:
    """The strategy (created before any other TensorFlow work, as multi-worker collectives require),
    and, on the chief, the run folder without temporary files of a killed earlier run."""
    cw = _normalise_class_weight(class_weight)
    fingerprint = _fingerprint(data.x_train, data.y_train, data.x_val, data.y_val)
    strategy = resolve_strategy(config.strategy)
    run = _Run(config, run_dir, strategy, is_chief(strategy), progress, cw, fingerprint, contract)
    if run.chief:
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in (artifacts.MODEL, artifacts.HISTORY):
            for leftover in run_dir.glob(f".{name}.*.part*"):
                leftover.unlink(missing_ok=True)
    return run


def _restore_or_build(run: _Run, resume: bool, init: Callable[[], keras.Model] | None = None
                      ) -> tuple[_State, keras.Model]:
    """The checkpoint's state and model (``resume`` with a checkpoint), else a fresh state and model."""
    config, ckpt = run.config, run.ckpt
    if resume and run.state_path.is_file():
        state = _restore_state(_State.load(run.state_path), config, run.fingerprint, run.class_weight, ckpt)
        if run.chief:
            _clean_checkpoint_dir(ckpt, {n for n in (state.last_file, state.best_file) if n})
        with run.strategy.scope():
            try:
                model = keras.saving.load_model(ckpt / state.last_file, compile=True)
            except Exception as exc:
                raise UsageError(
                    f"{ckpt / state.last_file}: cannot load checkpoint ({exc}); start a new run without --resume"
                ) from exc
        if run.progress:
            echo(f"resuming from {ckpt} after epoch {state.epochs_done}")
        return state, model
    if resume:
        _warn(f"{ckpt}: no checkpoint to resume from; training from epoch 1")
    state = _State(config, run.fingerprint, run.class_weight)
    if run.chief:
        run.state_path.unlink(missing_ok=True)
        if ckpt.is_dir():
            _clean_checkpoint_dir(ckpt, set())
    with run.strategy.scope():
        if init is None:
            model = build_model(config.arch, learning_rate=config.learning_rate,
                                label_smoothing=config.label_smoothing)
        else:
            model = compile_model(init(), learning_rate=config.learning_rate, label_smoothing=config.label_smoothing)
    guard_model(model, run.run_dir)
    return state, model


def _epoch_loop(run: _Run, model: keras.Model, state: _State, data: _Data,
                callbacks: Sequence[keras.callbacks.Callback],
                on_epoch_end: Callable[[int, dict[str, float]], None] | None) -> None:
    """Train, commit and report epochs until ``config.epochs`` or a stop (early stopping, NaN loss)."""
    config = run.config
    val_ds = (None if run.multiworker  # each worker builds its shard in distributed.run_epoch
              else make_dataset(data.x_val, data.y_val, config.batch_size, training=False, augment=False,
                                seed=config.seed, contract=run.contract))
    steps_per_epoch = math.ceil(len(data.x_train) / config.batch_size)
    while state.epochs_done < config.epochs and state.stopped is None:
        with stage(f"epoch {state.epochs_done + 1}/{config.epochs}", total=steps_per_epoch, unit="batches") as bar:
            row = _train_epoch(run, model, state, data, val_ds, steps_per_epoch, [*callbacks, *_batch_bar(run, bar)])
            improved = _schedule_step(state, row, config)
            _commit_epoch(run, model, state, row, improved)
            bar.summary = _epoch_line(row, improved)
        _report_stop(run, state, row)
        if on_epoch_end is not None:
            on_epoch_end(row["epoch"], dict(row))


def _train_epoch(run: _Run, model: keras.Model, state: _State, data: _Data, val_ds: tf.data.Dataset | None,
                 steps_per_epoch: int, callbacks: Sequence[keras.callbacks.Callback]) -> dict[str, Any]:
    """One epoch (epoch ``state.epochs_done + 1``), seeded from ``(seed, epoch)``: its history row."""
    config, epoch = run.config, state.epochs_done
    model.optimizer.learning_rate.assign(state.learning_rate)
    step_schedule = (_StepSchedule(config, state.learning_rate, epoch, steps_per_epoch)
                     if config.per_step_schedule else None)
    _reseed_layers(model, config.seed, epoch)
    train_ds = (None if run.multiworker
                else make_dataset(data.x_train, data.y_train, config.batch_size, training=True,
                                  augment=config.augment, seed=config.seed, epoch=epoch, contract=run.contract))
    t0 = time.perf_counter()
    if run.multiworker:
        if step_schedule is not None:
            step_schedule.set_model(model)
        logs = run_epoch(run.strategy, model, data.as_dict(), config, epoch=epoch, contract=run.contract,
                         class_weight=run.keras_class_weight,
                         set_learning_rate=(step_schedule.on_train_batch_begin if step_schedule
                                            else lambda step: None))
    else:
        fit = model.fit(train_ds, validation_data=val_ds, initial_epoch=epoch, epochs=epoch + 1,
                        class_weight=run.keras_class_weight,
                        callbacks=[*([step_schedule] if step_schedule else []), *callbacks],
                        shuffle=False, verbose=0)
        logs = {k: float(v[-1]) for k, v in fit.history.items()}
    # Every worker scores the full validation set with the same weights, so all agree on it.
    logs["val_macro_f1"] = classification_metrics(data.y_val, run.predict(model, data.x_val).argmax(axis=1)).macro_f1
    seconds = time.perf_counter() - t0
    return {
        "epoch": epoch + 1,
        "loss": logs.get("loss", math.nan),
        "accuracy": logs.get("accuracy", math.nan),
        "val_loss": logs.get("val_loss", math.nan),
        "val_accuracy": logs.get("val_accuracy", math.nan),
        "val_macro_f1": logs["val_macro_f1"],
        "learning_rate": step_schedule.last_lr if step_schedule else state.learning_rate,
        "seconds": round(seconds, 3),
    }


def _commit_epoch(run: _Run, model: keras.Model, state: _State, row: dict[str, Any], improved: bool) -> None:
    """Save ``last-``/``best-EEEE.keras``, then state.json (the commit point), history.csv, model.keras."""
    epoch = row["epoch"]
    tag = f"{epoch:04d}"
    last_file = f"last-{tag}.keras"
    if run.chief:
        _save_full(model, run.ckpt / last_file)
    best_changed = improved or state.best_file is None
    if best_changed:
        best_file = f"best-{tag}.keras"
        if run.chief:
            _save_slim(model, run.ckpt / best_file, run.config)
        state.best_file, state.best_epoch = best_file, epoch
    state.history.append(row)
    state.epochs_done = epoch
    state.last_file = last_file
    if run.chief:
        write_json(run.state_path, state.to_json())  # commit point
        _clean_checkpoint_dir(run.ckpt, {state.last_file, state.best_file})
        _write_history(run.run_dir, state.history)
        if best_changed:
            _copy_atomic(run.ckpt / state.best_file, run.run_dir / artifacts.MODEL)


class _BatchBar(keras.callbacks.Callback):
    """Advances an epoch's progress bar after every batch, showing the loss so far."""

    def __init__(self, bar: Stage):
        super().__init__()
        self.bar = bar

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        self.bar.advance(1, note=None if loss is None else f"loss {_fmt(float(loss), '.4f')}")


def _batch_bar(run: _Run, bar: Stage) -> list[keras.callbacks.Callback]:
    """The per-batch callback when a bar is drawn (it makes Keras fetch the loss every batch, so only then)."""
    return [_BatchBar(bar)] if is_live() and not run.multiworker else []


def _epoch_line(row: dict[str, Any], improved: bool) -> str:
    """The epoch's summary: its losses, accuracies, learning rate and time; ``*`` when it is the best so far."""
    return (f"loss {_fmt(row['loss'], '.4f')}  accuracy {_fmt(row['accuracy'], '.4f')}  "
            f"val_loss {_fmt(row['val_loss'], '.4f')}  val_accuracy {_fmt(row['val_accuracy'], '.4f')}  "
            f"val_macro_f1 {_fmt(row['val_macro_f1'], '.4f')}  lr {row['learning_rate']:.2g}  "
            f"{row['seconds']:.1f} s{'  *' if improved else ''}")


def _report_stop(run: _Run, state: _State, row: dict[str, Any]) -> None:
    """Why training stops, if it does."""
    if state.stopped == "nan_loss":
        _warn(f"training loss is NaN/infinite at epoch {row['epoch']}; training stopped")
    elif state.stopped == "early_stopping":
        echo(f"early stopping: {run.config.monitor} has not improved for {state.es_wait} epochs")


def _finish(run: _Run, state: _State, data: _Data, resumed_from: int) -> TrainResult:
    """Final history.csv and model.keras from the committed state; the best model judged for collapse."""
    config = run.config
    history = _history_frame(state.history)
    result = TrainResult(history=history, best_epoch=state.best_epoch, model_path=run.run_dir / artifacts.MODEL,
                         epochs_run=state.epochs_done, collapse=None, stopped_early=state.stopped is not None,
                         resumed_from_epoch=resumed_from, is_chief=run.chief)
    if not run.chief:  # the chief writes the files and judges the model
        return result
    # Final artefacts always reflect the committed state (also for resume of a finished run).
    _write_history(run.run_dir, state.history)
    _copy_atomic(run.ckpt / state.best_file, run.run_dir / artifacts.MODEL)
    best_model = keras.saving.load_model(run.run_dir / artifacts.MODEL, compile=False)
    val_pred = run.predict(best_model, data.x_val).argmax(axis=1)
    pred_counts = np.bincount(val_pred, minlength=NUM_CLASSES)
    collapse = detect_collapse(
        history,
        pred_counts,
        train_label_counts=np.bincount(data.y_train, minlength=NUM_CLASSES),
        val_label_counts=np.bincount(data.y_val, minlength=NUM_CLASSES),
        learning_rate=config.learning_rate,
        class_weighted=run.class_weight is not None,
    )
    if collapse is not None:
        _warn(collapse.message())
    return replace(result, collapse=collapse, val_pred_counts=pred_counts)
