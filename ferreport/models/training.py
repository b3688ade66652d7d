"""Training: the resumable epoch loop and :func:`train_model`.

:func:`train_model` runs in stages: open the run (strategy, run folder) -> restore the
checkpoint or build the model -> the epoch loop (train, commit, report each epoch) ->
finish (final files, collapse check). The batches come from
:func:`ferreport.models.input_pipeline.make_dataset`; the learning-rate schedule and the
stopping rule from :mod:`ferreport.models.schedule`; the checkpoint state and model saving
from :mod:`ferreport.models.checkpoint`; the collapse check from :mod:`ferreport.models.collapse`.
Every file of the run folder is reached through :class:`ferreport.runs.folder.RunFolder`.

Design notes
------------
* **One ``fit`` call per epoch.** Each epoch gets its own dataset whose shuffle
  order and augmentation draws are derived from ``(seed, epoch)``
  (:mod:`ferreport.models.input_pipeline`). Learning-rate
  reduction and early stopping are done by :func:`ferreport.models.schedule.schedule_step`, and
  their counters are in the checkpoint state. A resumed run therefore repeats the data order,
  augmentation and schedule of an uninterrupted run exactly.
* **Checkpoint protocol** (``run_dir/checkpoint/``, see :mod:`ferreport.models.checkpoint`), after
  every completed epoch: ``last-EEEE.keras``, ``best-EEEE.keras`` (only when the monitored
  validation metric improved), then ``state.json`` (the commit point). ``history.csv`` and
  ``model.keras`` are then copied from what the state names, so they always match a committed
  epoch. A kill at any moment leaves a consistent checkpoint. The checkpoint is kept after
  training finishes, so a finished run can be extended with more epochs.
* **Distribution.** ``strategy="mirrored"`` keeps the *global* batch at
  ``batch_size`` (each of R replicas gets ``batch_size / R``), so the
  optimisation (steps per epoch, learning rate) is the same for any number of
  GPUs. ``"auto"`` picks MirroredStrategy when more than one GPU is visible and the
  default strategy otherwise. ``"default"`` is always the default strategy.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from ferreport.backend import keras, tf
from ferreport.config import STRATEGIES, TrainConfig
from ferreport.constants import NUM_CLASSES
from ferreport.datasets.face_cache import check_faces
from ferreport.errors import DatasetError, UsageError
from ferreport.models.adapters import adapter_for
from ferreport.models.checkpoint import (
    TrainState,
    copy_atomic,
    data_fingerprint,
    restore_state,
    save_full,
    save_slim,
)
from ferreport.models.collapse import CollapseReport, detect_collapse
from ferreport.models.contract import ModelContract
from ferreport.models.distributed import is_chief, multiworker_strategy, run_epoch
from ferreport.models.history import history_frame, write_history
from ferreport.models.input_pipeline import LAYER_STREAM, check_labels, derive_seed, make_dataset
from ferreport.models.model_file import ARCHITECTURES, build_model, compile_model
from ferreport.models.onednn import guard_model
from ferreport.models.prediction import predict_proba
from ferreport.models.schedule import StepSchedule, schedule_step
from ferreport.progress import Stage, echo, is_live, stage
from ferreport.runs.folder import RunFolder

__all__ = ["TrainConfig", "TrainResult", "resolve_strategy", "train_model"]


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


def _fmt(v: float | None, spec: str) -> str:
    return "nan" if v is None or not math.isfinite(v) else format(v, spec)


def _warn(msg: str) -> None:
    echo(f"warning: {msg}")


def _macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro-F1 over all seven classes (``zero_division=0``: a class absent from labels and predictions
    scores 0), the number :func:`ferreport.evaluation.metrics.classification_metrics` reports."""
    return float(f1_score(y_true, y_pred, labels=list(range(NUM_CLASSES)), average="macro", zero_division=0))


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
    folder: RunFolder                    # the run folder (only the chief writes it)
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
        return predict_proba(adapter_for(model, self.contract, source=str(self.folder.path)), faces,
                             batch_size=max(256, self.config.batch_size))

    @property
    def ckpt(self) -> Path:
        return self.folder.checkpoint_dir

    @property
    def state_path(self) -> Path:
        return self.folder.checkpoint_state_path

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
    fingerprint = data_fingerprint(data.x_train, data.y_train, data.x_val, data.y_val)
    strategy = resolve_strategy(config.strategy)
    run = _Run(config, RunFolder(run_dir), strategy, is_chief(strategy), progress, cw, fingerprint, contract)
    if run.chief:
        run_dir.mkdir(parents=True, exist_ok=True)
        run.folder.remove_training_leftovers()
    return run


def _restore_or_build(run: _Run, resume: bool, init: Callable[[], keras.Model] | None = None
                      ) -> tuple[TrainState, keras.Model]:
    """The checkpoint's state and model (``resume`` with a checkpoint), else a fresh state and model."""
    config, ckpt = run.config, run.ckpt
    if resume and run.state_path.is_file():
        state = restore_state(run.folder, config, run.fingerprint, run.class_weight)
        if run.chief:
            run.folder.clean_checkpoint_dir({n for n in (state.last_file, state.best_file) if n})
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
    state = TrainState(config, run.fingerprint, run.class_weight)
    if run.chief:
        run.state_path.unlink(missing_ok=True)
        if ckpt.is_dir():
            run.folder.clean_checkpoint_dir(set())
    with run.strategy.scope():
        if init is None:
            model = build_model(config.arch, learning_rate=config.learning_rate,
                                label_smoothing=config.label_smoothing)
        else:
            model = compile_model(init(), learning_rate=config.learning_rate, label_smoothing=config.label_smoothing)
    guard_model(model, run.folder.path)
    return state, model


def _epoch_loop(run: _Run, model: keras.Model, state: TrainState, data: _Data,
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
            improved = schedule_step(state, row, config)
            _commit_epoch(run, model, state, row, improved)
            bar.summary = _epoch_line(row, improved)
        _report_stop(run, state, row)
        if on_epoch_end is not None:
            on_epoch_end(row["epoch"], dict(row))


def _train_epoch(run: _Run, model: keras.Model, state: TrainState, data: _Data, val_ds: tf.data.Dataset | None,
                 steps_per_epoch: int, callbacks: Sequence[keras.callbacks.Callback]) -> dict[str, Any]:
    """One epoch (epoch ``state.epochs_done + 1``), seeded from ``(seed, epoch)``: its history row."""
    config, epoch = run.config, state.epochs_done
    model.optimizer.learning_rate.assign(state.learning_rate)
    step_schedule = (StepSchedule(config, state.learning_rate, epoch, steps_per_epoch)
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
    logs["val_macro_f1"] = _macro_f1(data.y_val, run.predict(model, data.x_val).argmax(axis=1))
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


def _commit_epoch(run: _Run, model: keras.Model, state: TrainState, row: dict[str, Any], improved: bool) -> None:
    """Save ``last-``/``best-EEEE.keras``, then state.json (the commit point), history.csv, model.keras."""
    epoch = row["epoch"]
    last_file, best_file = run.folder.checkpoint_model_names(epoch)
    if run.chief:
        save_full(model, run.ckpt / last_file)
    best_changed = improved or state.best_file is None
    if best_changed:
        if run.chief:
            save_slim(model, run.ckpt / best_file, run.config)
        state.best_file, state.best_epoch = best_file, epoch
    state.history.append(row)
    state.epochs_done = epoch
    state.last_file = last_file
    if run.chief:
        run.folder.write_checkpoint_state(state.to_json())  # commit point
        run.folder.clean_checkpoint_dir({state.last_file, state.best_file})
        write_history(run.folder, state.history)
        if best_changed:
            copy_atomic(run.ckpt / state.best_file, run.folder.model_path)


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


def _report_stop(run: _Run, state: TrainState, row: dict[str, Any]) -> None:
    """Why training stops, if it does."""
    if state.stopped == "nan_loss":
        _warn(f"training loss is NaN/infinite at epoch {row['epoch']}; training stopped")
    elif state.stopped == "early_stopping":
        echo(f"early stopping: {run.config.monitor} has not improved for {state.es_wait} epochs")


def _finish(run: _Run, state: TrainState, data: _Data, resumed_from: int) -> TrainResult:
    """Final history.csv and model.keras from the committed state; the best model judged for collapse."""
    config = run.config
    history = history_frame(state.history)
    result = TrainResult(history=history, best_epoch=state.best_epoch, model_path=run.folder.model_path,
                         epochs_run=state.epochs_done, collapse=None, stopped_early=state.stopped is not None,
                         resumed_from_epoch=resumed_from, is_chief=run.chief)
    if not run.chief:  # the chief writes the files and judges the model
        return result
    # Final artefacts always reflect the committed state (also for resume of a finished run).
    write_history(run.folder, state.history)
    copy_atomic(run.ckpt / state.best_file, run.folder.model_path)
    best_model = keras.saving.load_model(run.folder.model_path, compile=False)
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
