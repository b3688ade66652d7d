"""The resumable training checkpoint: its state (``checkpoint/state.json``) and the model files it names.

**Checkpoint protocol** (the run folder's CHECKPOINT_DIR), after every completed epoch:
``last-EEEE.keras`` (full model + optimizer state, :func:`save_full`), ``best-EEEE.keras``
(no optimizer state, :func:`save_slim`; only when the monitored validation metric improved),
then ``state.json`` (atomic; the commit point naming those files, plus counters and the full
history). Files that ``state.json`` does not name are deleted. ``history.csv`` and
``model.keras`` are then copied from what the state names (:func:`copy_atomic`), so they
always match a committed epoch. The file names and the reading and writing of
``state.json`` belong to :class:`ferreport.runs.folder.RunFolder`; this module owns what
the state holds and whether a run may resume from it (:func:`restore_state`).
"""

from __future__ import annotations

import hashlib
import math
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ferreport.backend import keras, tf
from ferreport.config import TrainConfig
from ferreport.errors import DatasetError, UsageError
from ferreport.models.model_file import compile_model
from ferreport.runs.atomic import atomic_path
from ferreport.runs.folder import RunFolder

__all__ = [
    "CHECKPOINT_DEFAULTS", "TrainState", "copy_atomic", "data_fingerprint", "read_state", "restore_state",
    "save_full", "save_slim",
]

_STATE_FORMAT = 1
#: Config fields that may change between a run and its resumption.
_RESUMABLE_CHANGES = frozenset({"epochs", "strategy"})
#: What a checkpoint lacking a TrainConfig field was trained with: the field's default, except
#: for the fields whose default changed when TrainConfig took the CLI's defaults (these).
CHECKPOINT_DEFAULTS: dict[str, object] = {
    "epochs": 50, "arch": "seed", "label_smoothing": 0.0, "lr_schedule": "constant", "warmup_epochs": 0,
    "monitor": "val_loss",
}


def data_fingerprint(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray
                     ) -> dict[str, Any]:
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


def _config_json(config: TrainConfig) -> dict[str, Any]:
    """The settings as the checkpoint's state.json stores them (paths as text)."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}


class TrainState:
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


def read_state(folder: RunFolder) -> dict[str, Any]:
    """The checkpoint's state.json as written; a UsageError when it is unreadable or of another format."""
    path = folder.checkpoint_state_path
    try:
        data = folder.read_checkpoint_state()
        if data.get("format") != _STATE_FORMAT:
            raise ValueError(f"unknown format {data.get('format')!r}")
        return data
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"{path}: unreadable training checkpoint ({exc}); start a new run without --resume"
        ) from exc


def restore_state(folder: RunFolder, config: TrainConfig, fingerprint: dict[str, Any],
                  class_weight: dict[str, float] | None) -> TrainState:
    """The state of ``folder``'s checkpoint, checked against this run's settings, data and class weights."""
    data = read_state(folder)
    ckpt = folder.checkpoint_dir
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
    st = TrainState(config, fingerprint, class_weight)
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


def save_full(model: keras.Model, path: Path) -> None:
    """Save ``model`` with its optimizer state (atomically)."""
    with atomic_path(path) as tmp:
        model.save(tmp)


def save_slim(model: keras.Model, path: Path, config: TrainConfig) -> None:
    """Save architecture + weights + compile settings, without optimizer state (1/3 the size)."""
    with tf.device("/cpu:0"):
        clone = keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
    compile_model(clone, learning_rate=config.learning_rate, label_smoothing=config.label_smoothing)
    with atomic_path(path) as tmp:
        clone.save(tmp)


def copy_atomic(src: Path, dst: Path) -> None:
    """Copy file ``src`` to ``dst`` (atomically: ``dst`` is the old or the new file, never half of one)."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
