"""Balancing: even out the class counts of the training split (never validation or test).

Methods: ``smote`` (imbalanced-learn's SMOTE on the flattened faces; output stays
uint8), ``oversample`` (imbalanced-learn's RandomOverSampler), ``class-weight``
(scikit-learn's "balanced" weights, data untouched), ``class-weight-sqrt`` (their
square roots: minority classes weigh more, but the rarest class of a real dataset does
not dominate the loss) and ``none``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from imblearn.over_sampling import SMOTE, RandomOverSampler
from sklearn.base import BaseEstimator
from sklearn.utils.class_weight import compute_class_weight

from ferreport.config import BALANCE_METHODS as METHODS  # the settings' one list of them
from ferreport.constants import NUM_CLASSES
from ferreport.errors import UsageError

#: Synthetic faces generated per SMOTE call; bounds the float32 working memory.
SMOTE_CHUNK = 4096
#: Pixel columns (of 12,288 per face) per SMOTE call; bounds the float32 working memory.
SMOTE_COLUMNS = 1024
#: Faces per float32 block when finding the neighbours of a class.
NEIGHBOUR_BLOCK = 2048


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
    if method not in METHODS:  # for callers of the Python API; the CLI's --balance is a DataConfig setting
        raise UsageError(f"--balance {method!r}: choose one of {', '.join(METHODS)}")
    y = np.asarray(y, dtype=np.int64)
    before = _counts(y)
    if method == "none":
        return BalanceResult(x, y, method, None, before, before)
    if method in ("class-weight", "class-weight-sqrt"):

        present = np.unique(y)
        weights = compute_class_weight("balanced", classes=present, y=y)
        if method == "class-weight-sqrt":
            # Full weights n / (k * n_c) give faces-real's rarest class (fear, ~9 training
            # faces) a weight near 46, and the loss becomes too noisy to learn from; the
            # square root (~7) keeps minority classes visible without that.
            weights = np.sqrt(weights)
        cw = {int(c): float(w) for c, w in zip(present, weights, strict=True)}
        return BalanceResult(x, y, method, cw, before, before)
    if method == "oversample":

        # Resample row numbers, not pixels: no copy of the faces until the final gather.
        rows, y_out = RandomOverSampler(random_state=seed).fit_resample(np.arange(len(y))[:, None], y)
        order = np.argsort(rows[:, 0], kind="stable")
        rows, y_out = rows[order, 0], y_out[order]
        return BalanceResult(np.asarray(x)[rows], y_out.astype(np.int64), method, None, before, _counts(y_out))
    return _smote(x, y, seed=seed, k_neighbors=k_neighbors, before=before)


def _smote(x: np.ndarray, y: np.ndarray, *, seed: int, k_neighbors: int, before: tuple[int, ...]) -> BalanceResult:
    """SMOTE class by class, on float32 column blocks of one class at a time.

    imbalanced-learn interpolates ``x + gap * (neighbour - x)``; on uint8 input the
    difference wraps around, so the pixels are converted to float32 for the call and the
    synthetic faces are rounded back to uint8. To bound memory, the neighbours of each
    class are found once (:func:`_class_neighbours`, blocked float32 distances on the
    uint8 faces) and handed to SMOTE as a precomputed ``k_neighbors`` estimator; SMOTE
    then samples one block of ``SMOTE_COLUMNS`` pixel columns at a time. Its random
    draws (which face, which neighbour, which gap) depend only on the random state, the
    neighbour table and the number of samples, never on the pixel values, so every
    column block gets the same draws and the blocks put together are exactly what one
    full-width call would give. Working memory is a few column blocks of one class,
    a small fraction of the output.
    """

    target = max(before)
    extra = [target - c if c > 0 else 0 for c in before]
    total = len(y) + sum(extra)
    shape = x.shape[1:]
    out_x = np.empty((total,) + shape, dtype=np.uint8)
    out_y = np.empty(total, dtype=np.int64)
    out_x[: len(y)] = x
    out_y[: len(y)] = y
    flat_x = np.asarray(x).reshape(len(x), -1)
    out_flat = out_x.reshape(total, -1)
    width = flat_x.shape[1]
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
        k = min(k_neighbors, n - 1)
        neighbours = _class_neighbours(flat_x, members, k)
        chunks = [min(SMOTE_CHUNK, need - done) for done in range(0, need, SMOTE_CHUNK)]
        states = [int(rng.integers(2**31 - 1)) for _ in chunks]
        # One dummy row of another class: SMOTE needs two classes but only reads the
        # minority class to find neighbours and interpolate.
        labels = np.concatenate([np.full(n, label), [-1]])
        for c0 in range(0, width, SMOTE_COLUMNS):
            c1 = min(width, c0 + SMOTE_COLUMNS)
            features = np.zeros((n + 1, c1 - c0), np.float32)
            features[:n] = flat_x[members, c0:c1]
            start = pos
            for chunk, state in zip(chunks, states, strict=True):
                sampler = SMOTE(sampling_strategy={label: n + chunk}, k_neighbors=_PrecomputedNeighbours(neighbours),
                                random_state=state)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    resampled, _ = sampler.fit_resample(features, labels)
                synthetic = resampled[n + 1:]
                np.rint(synthetic, out=synthetic)
                np.clip(synthetic, 0, 255, out=synthetic)
                out_flat[start:start + chunk, c0:c1] = synthetic
                start += chunk
                del resampled, synthetic
            del features
        out_y[pos:pos + need] = label
        pos += need
    return BalanceResult(out_x, out_y, "smote", None, before, _counts(out_y))


def _class_neighbours(flat_x: np.ndarray, members: np.ndarray, k: int) -> np.ndarray:
    """``(n, k + 1)`` row numbers (within ``members``) of each face's nearest faces, itself first.

    Euclidean distances on the pixels, computed in float32 blocks of ``NEIGHBOUR_BLOCK``
    faces (centred on the class mean for precision), each pair of blocks once: memory
    stays at two float32 blocks whatever the class size.
    """
    n = members.size
    mean = np.zeros(flat_x.shape[1], np.float64)
    for i in range(0, n, NEIGHBOUR_BLOCK):
        mean += flat_x[members[i:i + NEIGHBOUR_BLOCK]].sum(axis=0, dtype=np.float64)
    mean = (mean / n).astype(np.float32)

    def block(i: int) -> tuple[np.ndarray, np.ndarray]:
        a = flat_x[members[i:i + NEIGHBOUR_BLOCK]].astype(np.float32)
        a -= mean
        return a, np.einsum("ij,ij->i", a, a)

    best_d = np.full((n, k + 1), np.inf, np.float32)
    best_i = np.zeros((n, k + 1), np.int64)

    def merge(rows: slice, dist: np.ndarray, cols: np.ndarray) -> None:
        d = np.concatenate([best_d[rows], dist], axis=1)
        idx = np.concatenate([best_i[rows], np.broadcast_to(cols, dist.shape)], axis=1)
        pick = np.argpartition(d, k, axis=1)[:, : k + 1]
        best_d[rows] = np.take_along_axis(d, pick, axis=1)
        best_i[rows] = np.take_along_axis(idx, pick, axis=1)

    starts = range(0, n, NEIGHBOUR_BLOCK)
    for i in starts:
        a, na = block(i)
        ri = slice(i, i + len(a))
        for j in starts:
            if j < i:
                continue
            b, nb = (a, na) if j == i else block(j)
            rj = slice(j, j + len(b))
            d = na[:, None] + nb[None, :] - 2.0 * (a @ b.T)
            np.maximum(d, 0.0, out=d)
            if j == i:
                np.fill_diagonal(d, -1.0)  # each face is its own first neighbour
            merge(ri, d, np.arange(j, j + len(b)))
            if j != i:
                merge(rj, d.T, np.arange(i, i + len(a)))
    order = np.argsort(best_d, axis=1, kind="stable")
    return np.take_along_axis(best_i, order, axis=1)


class _PrecomputedNeighbours(BaseEstimator):
    """A ``k_neighbors`` object for SMOTE that returns a neighbour table found beforehand."""

    def __init__(self, indices: np.ndarray | None = None):
        self.indices = indices

    def fit(self, X, y=None):  # noqa: N803 - scikit-learn's signature
        if self.indices is None or len(X) != len(self.indices):
            raise ValueError("precomputed neighbours do not match the class being resampled")
        return self

    def kneighbors(self, X=None, n_neighbors=None, return_distance=True):  # noqa: N803
        if return_distance:
            raise ValueError("precomputed neighbours carry no distances")
        return np.array(self.indices, copy=True)

    def kneighbors_graph(self, X=None, n_neighbors=None, mode="connectivity"):  # noqa: N803
        raise NotImplementedError("SMOTE only needs kneighbors")
