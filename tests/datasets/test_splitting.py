from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ferreport.datasets.splitting import split_faces


def _index(n_groups: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        for _f in range(1 if rng.random() > 0.1 else 3):
            rows.append({"group": f"img{g}",
                         "label": int(rng.choice(7, p=np.array([.04, .044, .012, .333, .115, .077, .38]) / 1.001))})
    return pd.DataFrame(rows)


def test_groups_never_straddle_splits():
    idx = _index(2000)
    split = split_faces(idx, seed=1)
    per_group = split.groupby(idx.group).nunique()
    assert (per_group == 1).all()


def test_fractions_and_stratification():
    idx = _index(3000)
    split = split_faces(idx, seed=0)
    shares = split.value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.70, abs=0.02)
    assert shares["val"] == pytest.approx(0.15, abs=0.02)
    assert shares["test"] == pytest.approx(0.15, abs=0.02)
    overall = idx.label.value_counts(normalize=True)
    for name in ("train", "val", "test"):
        part = idx.label[split == name].value_counts(normalize=True)
        for label, share in overall.items():
            assert part.get(label, 0) == pytest.approx(share, abs=0.03)


def test_every_class_in_every_split_when_possible():
    idx = pd.DataFrame({"group": [f"g{i}" for i in range(21)], "label": [i // 3 for i in range(21)]})
    split = split_faces(idx, seed=5)
    for name in ("train", "val", "test"):
        assert set(idx.label[split == name]) == set(range(7))


def test_seeded_and_deterministic():
    idx = _index(500)
    assert split_faces(idx, seed=3).equals(split_faces(idx, seed=3))
    assert not split_faces(idx, seed=3).equals(split_faces(idx, seed=4))
