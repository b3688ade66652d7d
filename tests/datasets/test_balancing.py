from __future__ import annotations

import numpy as np
import pytest

from ferreport.datasets.balancing import balance_training_set
from ferreport.errors import UsageError


@pytest.fixture
def imbalanced():
    rng = np.random.default_rng(0)
    y = np.array([3] * 30 + [6] * 20 + [2] * 4 + [0] * 1)
    x = rng.integers(0, 256, (len(y), 64, 64, 3), dtype=np.uint8)
    return x, y


def test_smote_balances_and_stays_uint8_without_wraparound(imbalanced):
    x, y = imbalanced
    result = balance_training_set(x, y, "smote", seed=0)
    assert result.x.dtype == np.uint8 and result.x.shape[1:] == (64, 64, 3)
    assert result.counts_before == (1, 0, 4, 30, 0, 0, 20)
    assert result.counts_after == (30, 0, 30, 30, 0, 0, 30)
    np.testing.assert_array_equal(result.x[: len(y)], x)  # originals untouched
    synthetic = result.x[len(y):][result.y[len(y):] == 2].astype(int)
    members = x[y == 2].astype(int)
    # interpolation between class members: every pixel within the members' range
    assert (synthetic >= members.min(0)).all() and (synthetic <= members.max(0)).all()
    assert len({s.tobytes() for s in synthetic}) > 20  # new faces, not copies


def test_smote_is_seeded(imbalanced):
    x, y = imbalanced
    a = balance_training_set(x, y, "smote", seed=1)
    b = balance_training_set(x, y, "smote", seed=1)
    np.testing.assert_array_equal(a.x, b.x)


def test_oversample_and_class_weight(imbalanced):
    x, y = imbalanced
    over = balance_training_set(x, y, "oversample", seed=0)
    assert over.counts_after == (30, 0, 30, 30, 0, 0, 30)
    assert {r.tobytes() for r in over.x} <= {r.tobytes() for r in x}
    cw = balance_training_set(x, y, "class-weight")
    assert cw.x is x and cw.class_weight[0] > cw.class_weight[2] > cw.class_weight[3]
    assert cw.class_weight[3] == pytest.approx(len(y) / (4 * 30))


def test_square_root_class_weights(imbalanced):
    x, y = imbalanced
    full = balance_training_set(x, y, "class-weight").class_weight
    soft = balance_training_set(x, y, "class-weight-sqrt")
    assert soft.x is x and soft.method == "class-weight-sqrt" and set(soft.class_weight) == set(full)
    for c, w in full.items():
        assert soft.class_weight[c] == pytest.approx(w ** 0.5)
    assert soft.class_weight[0] > soft.class_weight[3]  # rarer still weighs more, by less


def test_unknown_method(imbalanced):
    with pytest.raises(UsageError, match="--balance"):
        balance_training_set(*imbalanced, "magic")
