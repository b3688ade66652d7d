"""Run directories as the pipeline writes them, built without TensorFlow (shared by the report tests)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ferreport.constants import CLASS_NAMES
from ferreport.evaluation.face_pool import select_pool_rows
from ferreport.runs import folder as artifacts

EVIL_SOURCE = "<script>alert(1)</script>&co.jpg"
#: Likely confusions of a facial-expression model (true -> predicted).
_CONFUSE = {0: (1, 4), 1: (0, 4), 2: (5, 4), 3: (6,), 4: (6, 2), 5: (2, 3), 6: (4, 3)}


def _faces(rng: np.random.Generator, labels: np.ndarray, drawn: bool = True) -> np.ndarray:
    """64x64 RGB faces: the sample generator's drawings (slower) when asked, else gradients."""
    try:
        if not drawn:
            raise ImportError
        import cv2

        from ferreport.datasets.sample import draw_face

        return np.stack([cv2.cvtColor(draw_face(rng, int(max(lab, 0)), 64), cv2.COLOR_BGR2RGB) for lab in labels])
    except ImportError:
        yy, xx = np.mgrid[0:64, 0:64]
        out = np.empty((len(labels), 64, 64, 3), np.uint8)
        for i, lab in enumerate(labels):
            out[i, ..., 0] = (xx * 4 + 30 * lab) % 256
            out[i, ..., 1] = (yy * 4) % 256
            out[i, ..., 2] = rng.integers(0, 256)
        return out


def synthetic_predictions(n: int, seed: int = 0, *, labelled: bool = True) -> pd.DataFrame:
    """A predictions.csv frame with a plausible confusion (about 65% accuracy)."""
    rng = np.random.default_rng(seed)
    k = len(CLASS_NAMES)
    prior = np.array([0.08, 0.03, 0.03, 0.35, 0.12, 0.09, 0.30])
    t = rng.choice(k, size=n, p=prior)
    pred = t.copy()
    wrong = rng.random(n) < 0.35
    for i in np.flatnonzero(wrong):
        choices = _CONFUSE[int(t[i])]
        pred[i] = choices[rng.integers(len(choices))] if rng.random() < 0.7 else rng.integers(k)
    logits = rng.normal(0, 1.0, size=(n, k))
    logits[np.arange(n), pred] += rng.gamma(2.0, 1.2, size=n) + 0.5
    logits[np.arange(n), t] += 0.8 * wrong
    proba = np.exp(logits - logits.max(axis=1, keepdims=True))
    proba /= proba.sum(axis=1, keepdims=True)
    proba = np.round(proba, 6)
    pred = proba.argmax(axis=1)
    names = np.asarray(CLASS_NAMES, dtype=object)
    df = pd.DataFrame({
        "source": [f"img_{i // 2:05d}.jpg" for i in range(n)],
        "face_id": [str(i % 2) for i in range(n)],
        "true_label": names[t] if labelled else [""] * n,
        "pred_label": names[pred],
        "confidence": proba.max(axis=1),
    })
    for j, col in enumerate(artifacts.PROBA_COLUMNS):
        df[col] = proba[:, j]
    return df


def make_run_dir(root: Path, n: int = 300, seed: int = 0, *, history: bool = True, summary: bool = True,
                 labelled: bool = True, metrics_extra: dict | None = None, drawn: bool = False) -> Path:
    """A complete run directory as the pipeline writes it, without TensorFlow."""
    from ferreport.evaluation.label_noise import write_label_issue_rows
    from ferreport.evaluation.metrics import metrics_from_predictions

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 1)
    df = synthetic_predictions(n, seed, labelled=labelled)
    # The most confident mistake comes from a file with a hostile name.
    evil = int(np.flatnonzero(df["true_label"] != df["pred_label"])[0]) if labelled else 0
    df.loc[evil, "source"] = EVIL_SOURCE
    pvec = np.full(len(CLASS_NAMES), 0.001)
    j = CLASS_NAMES.index(df.loc[evil, "pred_label"])
    pvec[j] = 1 - 0.001 * (len(CLASS_NAMES) - 1)
    for c, col in enumerate(artifacts.PROBA_COLUMNS):
        df.loc[evil, col] = round(float(pvec[c]), 6)
    df.loc[evil, "confidence"] = round(float(pvec[j]), 6)
    df.to_csv(root / artifacts.PREDICTIONS, index=False, float_format="%.6f")

    rows = select_pool_rows(df)
    t_ids = np.array([CLASS_NAMES.index(x) if x else -1 for x in df["true_label"]])
    np.savez_compressed(root / artifacts.FACES_POOL, rows=rows, faces=_faces(rng, t_ids[rows], drawn))

    metrics = metrics_from_predictions(df, n_resamples=200, seed=0).to_dict()
    metrics.update(metrics_extra or {})
    (root / artifacts.METRICS).write_text(json.dumps(metrics, indent=2))
    write_label_issue_rows(df, root)  # label_issues.csv and label_noise.json, as an evaluation stores them
    if history:
        e = np.arange(1, 6)
        pd.DataFrame({
            "epoch": e, "loss": 1.9 - 0.22 * e, "accuracy": 0.30 + 0.07 * e,
            "val_loss": [1.70, 1.42, 1.31, 1.29, 1.33], "val_accuracy": [0.38, 0.49, 0.55, 0.57, 0.56],
            "learning_rate": [1e-3, 1e-3, 1e-3, 5e-4, 5e-4], "seconds": [41.2, 39.8, 40.1, 40.5, 39.9],
        }).to_csv(root / artifacts.HISTORY, index=False)
    if summary:
        counts = {c: int(v) for c, v in zip(CLASS_NAMES, (3671, 3995, 1088, 30537, 10559, 7060, 34883), strict=True)}
        (root / artifacts.DATA_SUMMARY).write_text(json.dumps({
            "dataset": "ExpW",
            "faces_read": 91793,
            "balance": "smote",
            "splits": {
                "train": {c: int(v * 0.7) for c, v in counts.items()},
                "val": {c: int(v * 0.15) for c, v in counts.items()},
                "test": {c: int(v * 0.15) for c, v in counts.items()},
            },
            "train_balanced": {c: int(max(counts.values()) * 0.7) for c in counts},
            "skipped": {"unreadable image": 12, "face box outside image": 3, "<b>odd</b> reason": 1},
        }))
    (root / artifacts.PROVENANCE).write_text(json.dumps({
        "seed": 0, "data_fingerprint": "sha256:" + "ab" * 32, "model_sha256": "cd" * 32,
        "command_line": f"ferreport run --data 'data/expw & co' --out {root.name}",
        "started": "2025-01-02T03:04:05+00:00", "finished": "2025-01-02T03:34:05+00:00",
        "packages": {"numpy": np.__version__, "pandas": pd.__version__, "weasyprint": "x"},
        "platform": "Linux x86_64",
    }))
    (root / artifacts.CONFIG).write_text(json.dumps({
        "data": "data/expw", "epochs": 5, "batch_size": 32, "balance": "smote", "seed": 0, "arch": "seed",
        "formats": ["html", "pdf"],
    }))
    return root
