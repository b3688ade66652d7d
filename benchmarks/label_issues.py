"""Do the flagged labels find injected label errors? (``ferreport label-issues``'s computation)

Flips a known share (5 %, 10 %, 20 %) of a dataset's labels at random (seeded; each
flipped face gets one of the six other classes uniformly), computes K-fold out-of-sample
probabilities exactly as ``ferreport label-issues`` does (HOG + logistic regression by
default), and measures, in the same run, how many of the flipped faces each method puts
among its first k = (number flipped) faces:

* ``cleanlab self_confidence``  - lowest probability of the given label (the default);
* ``cleanlab normalized_margin`` - lowest p(given) - max p(other);
* ``low confidence`` (baseline)  - lowest top-class probability, the label ignored;
* ``random`` (baseline)          - k faces drawn at random (expected precision = noise share).

Precision@k = recall@k here (k is the number flipped). It also reports cleanlab's own
flagged set (``find_label_issues``, prune_by_noise_rate): its size, precision and recall.
The dataset's original labels are noisy too, so faces flagged but not flipped may be
real errors: precision against the injected flips is a lower bound.

Target: cleanlab's precision@k at least 1.5x the low-confidence baseline's at 10 % noise.

    python benchmarks/label_issues.py [--data /work/shared/data/faces-real] [--folds 5] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _common import header, save_json
from ferreport.constants import CLASS_NAMES
from ferreport.datasets.face_cache import prepare_dataset
from ferreport.evaluation.label_issues import out_of_sample_proba
from ferreport.evaluation.label_noise import find_label_issues


def flip(labels: np.ndarray, share: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Labels with ``share`` of them changed to another class (uniform), and the flipped rows."""
    n = len(labels)
    rows = np.sort(rng.choice(n, size=int(round(share * n)), replace=False))
    noisy = labels.copy()
    shift = rng.integers(1, len(CLASS_NAMES), size=rows.size)
    noisy[rows] = (labels[rows] + shift) % len(CLASS_NAMES)
    return noisy, rows


def precision_at(order: np.ndarray, flipped: set[int], k: int) -> float:
    return sum(1 for r in order[:k] if int(r) in flipped) / k if k else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="/work/shared/data/faces-real")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model-kind", default="hog-logreg", choices=("hog-logreg", "cnn"))
    ap.add_argument("--epochs", type=int, default=5, help="epochs per fold of --model-kind cnn")
    ap.add_argument("--shares", default="0.05,0.10,0.20")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = ap.parse_args()
    header("label issues: injected flips found (precision@k, k = flips)")
    dataset = prepare_dataset(args.data)
    labels = dataset.labels
    groups = dataset.index["group"].astype(str).to_numpy()
    print(f"dataset {args.data}: {len(labels):,} faces; {args.model_kind} {args.folds}-fold; seed {args.seed}\n")
    rows = []
    print(f"{'noise':>5} {'k':>5}  {'method':<28} {'precision@k':>11} {'vs low-conf':>11}   cleanlab flagged set")
    for share in (float(s) for s in args.shares.split(",")):
        rng = np.random.default_rng(args.seed)
        noisy, flipped_rows = flip(labels, share, rng)
        flipped = set(int(r) for r in flipped_rows)
        k = len(flipped_rows)
        t0 = time.perf_counter()
        proba, acc = out_of_sample_proba(dataset.faces, noisy, groups, model_kind=args.model_kind, folds=args.folds,
                                         seed=args.seed, epochs=args.epochs)
        t_proba = time.perf_counter() - t0
        p_given = proba[np.arange(len(noisy)), noisy]
        others = proba.copy()
        others[np.arange(len(noisy)), noisy] = -1
        methods = {
            "cleanlab self_confidence": np.lexsort((np.arange(len(noisy)), p_given)),
            "cleanlab normalized_margin": np.lexsort((np.arange(len(noisy)), p_given - others.max(axis=1))),
            "low confidence (baseline)": np.lexsort((np.arange(len(noisy)), proba.max(axis=1))),
            "random (baseline)": np.random.default_rng(args.seed + 1).permutation(len(noisy)),
        }
        t1 = time.perf_counter()
        found = {r: find_label_issues(noisy, proba, ranking=r) for r in ("self_confidence", "normalized_margin")}
        t_cl = (time.perf_counter() - t1) / 2
        base = precision_at(methods["low confidence (baseline)"], flipped, k)
        for name, order in methods.items():
            p = precision_at(order, flipped, k)
            extra = ""
            if name.startswith("cleanlab"):
                f = found[name.split()[1]]
                hits = sum(1 for i in f.issues if i.row in flipped)
                extra = (f"{len(f.issues):,} flagged, precision {hits / max(1, len(f.issues)):.3f}, "
                         f"recall {hits / k:.3f}")
                # the flagged set in cleanlab's order, cut at k: what the report's grid and CSV lead with
                cut = [i.row for i in f.issues[:k]]
                extra += f"; its first {min(k, len(cut))}: precision {sum(r in flipped for r in cut) / k:.3f}"
            ratio = p / base if base else float("nan")
            print(f"{share:>5.0%} {k:>5}  {name:<28} {p:>11.3f} {ratio:>10.2f}x   {extra}")
            rows.append({"noise": share, "k": k, "method": name, "precision_at_k": round(p, 4),
                         "vs_low_confidence": round(ratio, 3), "detail": extra})
        print(f"{'':>12} fold accuracy on noisy labels {np.mean(acc):.3f}; probabilities {t_proba:.1f} s, "
              f"cleanlab {t_cl * 1000:.0f} ms\n")
    at10 = {r["method"]: r["precision_at_k"] for r in rows if abs(r["noise"] - 0.10) < 1e-9}
    if at10:
        ratio = at10["cleanlab self_confidence"] / max(1e-9, at10["low confidence (baseline)"])
        print(f"target at 10 % noise: cleanlab self_confidence precision@k >= 1.5x low confidence: "
              f"{ratio:.2f}x -> {'met' if ratio >= 1.5 else 'NOT met'}")
    save_json(args.json, "label_issues", rows)


if __name__ == "__main__":
    main()
