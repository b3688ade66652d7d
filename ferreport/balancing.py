"""Balancing: even out the class counts of the training split (never validation or test).

Methods: ``smote`` (imbalanced-learn's SMOTE on the flattened faces; output stays
uint8), ``oversample`` (imbalanced-learn's RandomOverSampler), ``class-weight``
(scikit-learn's "balanced" weights, data untouched) and ``none``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .constants import NUM_CLASSES
from .errors import UsageError

METHODS: tuple[str, ...] = ("smote", "oversample", "class-weight", "none")
#: Synthetic faces generated per SMOTE call; bounds the float32 working memory.
SMOTE_CHUNK = 4096


@dataclass(frozen=True)
class BalanceResult:
    x: np.ndarray                       # (M, 64, 64, 3) uint8
    y: np.ndarray                       # (M,) int64
    method: str
    class_weight: dict[int, float] | None
    counts_before: tuple[int, ...]
    counts_after: tuple[int, ...]


def _counts(y: np.ndarray) -> tuple[int, ...]:
    return tuple(int(c) for c in np.bincount(y, minlength=NUM_CLASSES))


def balance_training_set(x: np.ndarray, y: np.ndarray, method: str = "smote", *, seed: int = 0,
                         k_neighbors: int = 5) -> BalanceResult:
    """Balance ``(x, y)`` by ``method``; classes absent from ``y`` stay absent."""
    if method not in METHODS:
        raise UsageError(f"--balance {method!r}: choose one of {', '.join(METHODS)}")
    y = np.asarray(y, dtype=np.int64)
    before = _counts(y)
    if method == "none":
        return BalanceResult(x, y, method, None, before, before)
    if method == "class-weight":
        from sklearn.utils.class_weight import compute_class_weight

        present = np.unique(y)
        weights = compute_class_weight("balanced", classes=present, y=y)
        cw = {int(c): float(w) for c, w in zip(present, weights)}
        return BalanceResult(x, y, method, cw, before, before)
    if method == "oversample":
        from imblearn.over_sampling import RandomOverSampler

        # Resample row numbers, not pixels: no copy of the faces until the final gather.
        rows, y_out = RandomOverSampler(random_state=seed).fit_resample(np.arange(len(y))[:, None], y)
        order = np.argsort(rows[:, 0], kind="stable")
        rows, y_out = rows[order, 0], y_out[order]
        return BalanceResult(np.asarray(x)[rows], y_out.astype(np.int64), method, None, before, _counts(y_out))
    return _smote(x, y, seed=seed, k_neighbors=k_neighbors, before=before)


def _smote(x: np.ndarray, y: np.ndarray, *, seed: int, k_neighbors: int, before: tuple[int, ...]) -> BalanceResult:
    """SMOTE class by class, in chunks, on float32 copies of one class at a time.

    imbalanced-learn interpolates ``x + gap * (neighbour - x)``; on uint8 input the
    difference wraps around, so each class is converted to float32 for the call and the
    synthetic faces are rounded back to uint8. Working on one class and one chunk at a
    time keeps the float32 memory to a fraction of the output.
    """
    from imblearn.over_sampling import SMOTE

    target = max(before)
    extra = [target - c if c > 0 else 0 for c in before]
    total = len(y) + sum(extra)
    shape = x.shape[1:]
    out_x = np.empty((total,) + shape, dtype=np.uint8)
    out_y = np.empty(total, dtype=np.int64)
    out_x[: len(y)] = x
    out_y[: len(y)] = y
    pos = len(y)
    rng = np.random.default_rng(seed)
    for label, need in enumerate(extra):
        if need == 0:
            continue
        members = np.flatnonzero(y == label)
        n = members.size
        if n == 1:  # nothing to interpolate between: repeat the one face
            out_x[pos:pos + need] = x[members[0]]
            out_y[pos:pos + need] = label
            pos += need
            continue
        flat = np.asarray(x[members], dtype=np.float32).reshape(n, -1)
        # One dummy row of another class: SMOTE needs two classes but only reads the
        # minority class to find neighbours and interpolate.
        features = np.vstack([flat, np.zeros((1, flat.shape[1]), np.float32)])
        labels = np.concatenate([np.full(n, label), [-1]])
        done = 0
        while done < need:
            chunk = min(SMOTE_CHUNK, need - done)
            sampler = SMOTE(sampling_strategy={label: n + chunk}, k_neighbors=min(k_neighbors, n - 1),
                            random_state=int(rng.integers(2**31 - 1)))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                resampled, _ = sampler.fit_resample(features, labels)
            synthetic = resampled[n + 1:]
            np.rint(synthetic, out=synthetic)
            np.clip(synthetic, 0, 255, out=synthetic)
            out_x[pos:pos + chunk] = synthetic.astype(np.uint8).reshape((chunk,) + shape)
            out_y[pos:pos + chunk] = label
            pos += chunk
            done += chunk
            del resampled, synthetic
        del flat, features
    return BalanceResult(out_x, out_y, "smote", None, before, _counts(out_y))
