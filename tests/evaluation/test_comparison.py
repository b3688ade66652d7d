"""The numbers of a comparison: paired bootstrap of metric deltas, McNemar's exact test."""

from __future__ import annotations

import numpy as np

from ferreport.evaluation.comparison import mcnemar_test, paired_bootstrap


def test_paired_bootstrap_is_deterministic_and_mcnemar_counts():
    rng = np.random.default_rng(0)
    t = rng.integers(0, 7, 300)
    pa = np.where(rng.random(300) < 0.6, t, rng.integers(0, 7, 300))
    pb = np.where(rng.random(300) < 0.7, t, pa)
    one = paired_bootstrap(t, pa, pb, n_resamples=250, seed=3)
    two = paired_bootstrap(t, pa, pb, n_resamples=250, seed=3)
    assert one == two and set(one) >= {"accuracy", "macro_f1", "weighted_f1", "f1/fear", "recall/sad"}
    test = mcnemar_test(pa == t, pb == t)
    assert test.both_right + test.a_right_b_wrong + test.a_wrong_b_right + test.both_wrong == 300
