"""Splitting: a seeded 70/15/15 train/val/test split, stratified by label and grouped.

Faces that share a group (one source photo in ExpW; one person in LFW-style class
folders) always land in the same split, so no photo leaks from training into test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ferreport.constants import CLASS_NAMES
from ferreport.errors import DatasetError

SPLITS: tuple[str, ...] = ("train", "val", "test")


def split_faces(index: pd.DataFrame, *, seed: int = 0, val: float = 0.15, test: float = 0.15) -> pd.Series:
    """Return a Series of ``"train"|"val"|"test"`` aligned with ``index``.

    Each group is assigned as a unit. Groups are stratified by their dominant label
    (most faces; ties to the lower id): within each label the groups are shuffled with
    the seed and dealt to test, then val, until each holds its share of that label's
    faces; every label with at least three groups gets at least one in val and test.
    """
    if not 0 < val < 1 or not 0 < test < 1 or val + test >= 1:
        raise DatasetError(f"split fractions val={val} test={test} must be in (0, 1) and sum below 1")
    if index.empty:
        raise DatasetError("cannot split an empty dataset")
    rng = np.random.default_rng(seed)
    groups = index["group"].astype(str).to_numpy()
    labels = index["label"].to_numpy(dtype=np.int64)
    codes, uniques = pd.factorize(groups, sort=True)
    n_groups = len(uniques)
    counts = np.zeros((n_groups, int(labels.max()) + 1), dtype=np.int64)
    np.add.at(counts, (codes, labels), 1)
    dominant = counts.argmax(axis=1)
    sizes = counts.sum(axis=1)
    assign = np.empty(n_groups, dtype=np.int8)  # 0 train, 1 val, 2 test
    for label in np.unique(dominant):
        members = np.flatnonzero(dominant == label)
        members = members[rng.permutation(members.size)]
        total = int(sizes[members].sum())
        want_test = round(test * total)
        want_val = round(val * total)
        if members.size >= 3:
            want_test, want_val = max(1, want_test), max(1, want_val)
        filled_test = filled_val = 0
        for g in members:
            if filled_test < want_test:
                assign[g] = 2
                filled_test += sizes[g]
            elif filled_val < want_val:
                assign[g] = 1
                filled_val += sizes[g]
            else:
                assign[g] = 0
    names = np.asarray(SPLITS, dtype=object)
    return pd.Series(names[assign[codes]], index=index.index, name="split")


def split_table(index: pd.DataFrame, split: pd.Series) -> pd.DataFrame:
    """The table saved as ``splits.csv``: which face went where."""

    table = index[["key", "source", "face_id", "label", "group"]].copy()
    table["label"] = [CLASS_NAMES[i] for i in table["label"]]
    table["split"] = split.to_numpy()
    return table
