#!/usr/bin/env python
"""Drift tests, measured: false alarms without a shift, and the smallest shift each test detects.

    python benchmarks/drift.py --model RUN_DIR [--data /work/shared/data/faces-real]
    python benchmarks/drift.py --train-epochs 8     # no run at hand: trains one first (minutes)

The model is a trained run folder (its splits.csv says which faces it trained on). Only the
faces it did **not** train on (validation and test splits) are used: each trial splits them at
random into a reference (half) and an incoming folder (``--incoming`` faces of the other half).

(a) **False alarms**: ``--null-trials`` trials with no shift; how often each test fires at its
    default threshold. Target: at most its nominal rate (alpha 0.01 for the p-value tests;
    for the PSI at 0.2 and for ``drift_detected`` as a whole, at most 1 in 20).
(b) **Power**: ``--power-trials`` trials per shift of the incoming faces - darkened by
    10/20/40 %, Gaussian blur (sigma 1 and 2 px on the 64x64 face), a class mix with twice the
    happy share, grayscale - and how often each test fires; the smallest shift each test
    detects in at least 80 % of trials.

The same code path as ``ferreport predict --reference``: faces are predicted and embedded
through the model's adapter (:func:`ferreport.models.prediction.predict_proba`,
:func:`ferreport.evaluation.embeddings.embedder_for`), measured by :func:`ferreport.evaluation.facestats.face_stats_frame`,
probabilities rounded as predictions.csv keeps them, and compared by
:func:`ferreport.evaluation.drift.drift_tests` with the default :class:`ferreport.config.DriftConfig`.
Only the face detection of a folder audit is skipped (the faces are the dataset's crops).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _common import REPO, header, read_splits, save_json  # noqa: E402

TESTS = ("class_mix_chi2", "class_mix_psi", "confidence_ks", "image_stats", "embedding_auc")
SHIFTS = ("darken 10%", "darken 20%", "darken 40%", "blur sigma 1", "blur sigma 2", "happy x2", "grayscale")


def shift_faces(faces: np.ndarray, shift: str) -> np.ndarray:
    """The incoming faces, shifted."""
    import cv2

    if shift.startswith("darken"):
        factor = 1.0 - float(shift.split()[1].rstrip("%")) / 100.0
        return np.clip(np.round(faces.astype(np.float32) * factor), 0, 255).astype(np.uint8)
    if shift.startswith("blur"):
        sigma = float(shift.split()[-1])
        return np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in faces])
    if shift == "grayscale":
        gray = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in faces])
        return np.repeat(gray[..., None], 3, axis=3)
    return faces


def train_run(data: Path, out: Path, epochs: int) -> Path:
    """A default-recipe run trained for ``epochs`` (reused when ``out`` already holds one)."""
    if (out / "model.keras").is_file() and (out / "splits.csv").is_file():
        print(f"reusing the run trained in {out}")
        return out
    cmd = [sys.executable, "-m", "ferreport", "train", "--data", str(data), "--out", str(out), "--epochs", str(epochs),
           "--no-progress", "--force"]
    subprocess.run(cmd, check=True, cwd=REPO)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="a trained run folder (model.keras, splits.csv)")
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data/faces-real"))
    ap.add_argument("--train-epochs", type=int, default=8, help="without --model: train a run for this many epochs")
    ap.add_argument("--null-trials", type=int, default=60)
    ap.add_argument("--power-trials", type=int, default=20)
    ap.add_argument("--incoming", type=int, default=300, help="faces per incoming folder")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()

    import pandas as pd

    from ferreport.config import DriftConfig
    from ferreport.datasets.face_cache import prepare_dataset
    from ferreport.evaluation.drift import drift_tests, sample_from_arrays
    from ferreport.evaluation.embeddings import embedder_for
    from ferreport.evaluation.evaluate import PROBA_DECIMALS
    from ferreport.evaluation.facestats import face_stats_frame
    from ferreport.models.adapters import open_model
    from ferreport.models.prediction import predict_proba
    from ferreport.runs import folder as artifacts

    header("drift tests: false alarms and power")
    run = args.model or train_run(args.data, Path("/tmp/ferreport-bench/drift/run"), args.train_epochs)
    adapter = open_model(run / artifacts.MODEL, {})
    embed = embedder_for(adapter)
    dataset = prepare_dataset(args.data)
    splits = read_splits(run)
    held = set(splits.loc[splits["split"] != "train", "key"])
    rows = np.flatnonzero(dataset.index["key"].isin(held).to_numpy())
    faces_all = np.asarray(dataset.faces[rows])
    labels = dataset.labels[rows]
    print(f"model {run / artifacts.MODEL}; {len(rows)} faces it did not train on (validation + test), "
          f"incoming folders of {args.incoming}; happy share {np.mean(labels == 3):.3f}")
    settings = DriftConfig()

    def measured(faces: np.ndarray) -> tuple[np.ndarray, pd.DataFrame, np.ndarray | None]:
        """What an audit keeps of faces: rounded probabilities, face stats, embeddings."""
        proba = np.round(predict_proba(adapter, faces), PROBA_DECIMALS)
        return proba, face_stats_frame(faces), (embed(faces) if embed is not None else None)

    proba_all, stats_all, emb_all = measured(faces_all)  # the unshifted faces, predicted once

    def subset(name: str, idx: np.ndarray):
        return sample_from_arrays(name, proba_all[idx], stats_all.iloc[idx].reset_index(drop=True),
                                  emb_all[idx] if emb_all is not None else None, "same")

    rng = np.random.default_rng(args.seed)
    n = len(rows)
    happy = labels == 3
    results: dict[str, dict[str, float]] = {}
    t0 = time.perf_counter()

    def trial(shift: str | None) -> dict[str, bool]:
        perm = rng.permutation(n)
        ref_idx, rest = perm[: n // 2], perm[n // 2:]
        if shift == "happy x2":  # exactly twice the happy share of these faces, the rest drawn at random
            n_happy = int(round(2 * happy.mean() * args.incoming))
            inc_idx = np.r_[rest[happy[rest]][:n_happy], rest[~happy[rest]][: args.incoming - n_happy]]
        else:
            inc_idx = rest[: args.incoming]
        reference = subset("reference", ref_idx)
        if shift is None or shift == "happy x2":
            incoming = subset("incoming", inc_idx)
        else:
            proba, stats, emb = measured(shift_faces(faces_all[inc_idx], shift))
            incoming = sample_from_arrays("incoming", proba, stats, emb, "same")
        result = drift_tests(reference, incoming, settings, seed=int(rng.integers(1 << 31)))
        fired = {t.key: bool(t.fired) for t in result.tests}
        fired["drift_detected"] = result.drift_detected
        return fired

    conditions = [("no shift", None, args.null_trials)] + [(s, s, args.power_trials) for s in SHIFTS]
    for name, shift, trials in conditions:
        counts: dict[str, int] = {}
        for _ in range(trials):
            for key, hit in trial(shift).items():
                counts[key] = counts.get(key, 0) + int(hit)
        results[name] = {k: v / trials for k, v in counts.items()}
        results[name]["trials"] = trials
        print(f"  {name:<14} {trials:>3} trials  " + "  ".join(f"{k} {results[name].get(k, 0):.2f}"
                                                           for k in (*TESTS, "drift_detected")), flush=True)
    seconds = time.perf_counter() - t0

    cols = (*TESTS, "drift_detected")
    print()
    print(f"Share of trials in which each test fired (alpha {settings.alpha}, PSI > {settings.psi_threshold}); "
          f"reference ~{n // 2} faces, incoming {args.incoming} faces")
    print(f"{'condition':<15}{'trials':>7}" + "".join(f"{c:>16}" for c in cols))
    for name, row in results.items():
        print(f"{name:<15}{int(row['trials']):>7}" + "".join(f"{row.get(c, 0):>16.2f}" for c in cols))
    null = results["no shift"]
    print()
    print("(a) false alarms (target: p-value tests <= alpha 0.01 within sampling error; PSI and drift_detected <= 0.05)")
    for c in cols:
        target = 0.05 if c in ("class_mix_psi", "drift_detected") else settings.alpha
        # one-sided binomial check: is the observed rate compatible with the target?
        from scipy.stats import binomtest

        k = int(round(null.get(c, 0) * null["trials"]))
        p = binomtest(k, int(null["trials"]), target, alternative="greater").pvalue
        print(f"  {c:<16} {null.get(c, 0):.3f}  target <= {target:g}  "
              f"{'met' if null.get(c, 0) <= target or p > 0.05 else 'NOT met'} (binomial p {p:.2f} against the target)")
    print("(b) smallest shift detected in >= 80% of trials")
    ladders = {"darken": ("darken 10%", "darken 20%", "darken 40%"), "blur": ("blur sigma 1", "blur sigma 2"),
               "class mix": ("happy x2",), "grayscale": ("grayscale",)}
    for c in cols:
        found = []
        for family, steps in ladders.items():
            hit = next((s for s in steps if results[s].get(c, 0) >= 0.8), None)
            found.append(f"{family}: {hit or 'none'}")
        print(f"  {c:<16} " + "; ".join(found))
    print(f"\n{seconds:.0f} s for all trials")
    save_json(args.json, "drift", [{"condition": k, **v} for k, v in results.items()], seconds=seconds,
              model=str(run), faces=int(n), incoming=args.incoming)


if __name__ == "__main__":
    main()
