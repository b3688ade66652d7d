"""The learning-rate schedule and the stopping rule of training.

Two parts: a per-step schedule (:func:`scheduled_learning_rate`, applied before every batch
by :class:`StepSchedule`): linear warm-up, then constant or cosine decay; and the per-epoch
rule (:func:`schedule_step`): the best monitored value, ReduceLROnPlateau-style lowering of
the rate, early stopping and the stop on a NaN loss. Both are pure functions of the run's
settings and the checkpoint state, so a resumed run follows the same schedule as an
uninterrupted one.
"""

from __future__ import annotations

import math
from typing import Any

from ferreport.backend import keras
from ferreport.config import TrainConfig
from ferreport.constants import MONITORS
from ferreport.models.checkpoint import TrainState

__all__ = [
    "COSINE_FINAL_FRACTION", "LR_FACTOR", "MIN_LR", "StepSchedule", "schedule_step", "scheduled_learning_rate",
]

#: ReduceLROnPlateau-style schedule (when ``reduce_lr_patience`` is set).
LR_FACTOR = 0.5
MIN_LR = 1e-6
#: Per-step learning-rate schedules (``TrainConfig.lr_schedule``): ``constant`` keeps the
#: (plateau-reduced) rate; ``cosine`` decays it along a half cosine over ``epochs`` to
#: ``COSINE_FINAL_FRACTION`` of its start value. Either is preceded by a linear warm-up of
#: ``warmup_epochs`` epochs when that is set (the names: config.LR_SCHEDULES).
COSINE_FINAL_FRACTION = 0.01


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


class StepSchedule(keras.callbacks.Callback):
    """Sets the optimizer's learning rate before every training batch (one ``fit`` = one epoch)."""

    def __init__(self, config: TrainConfig, base_lr: float, epoch: int, steps_per_epoch: int):
        super().__init__()
        self._config, self._base, self._epoch, self._steps = config, base_lr, epoch, steps_per_epoch
        self.last_lr = scheduled_learning_rate(config, base_lr, epoch * steps_per_epoch, steps_per_epoch)

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self.last_lr = scheduled_learning_rate(self._config, self._base, self._epoch * self._steps + int(batch),
                                               self._steps)
        self.model.optimizer.learning_rate.assign(self.last_lr)


def schedule_step(state: TrainState, row: dict[str, Any], config: TrainConfig) -> bool:
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
