"""Collapse detection: whether a finished training run learned (almost) nothing, and the likely causes.

:func:`detect_collapse` judges a run from its history (training loss, validation accuracy)
and the best model's validation predictions; :func:`ferreport.models.training.train_model`
calls it when training ends and warns with :meth:`CollapseReport.message`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ferreport.constants import CLASS_NAMES, NUM_CLASSES

__all__ = ["CollapseReport", "detect_collapse"]


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


def _entropy(counts: np.ndarray) -> float:
    """Entropy (nats) of the class distribution ``counts``: the loss of always guessing it."""
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
