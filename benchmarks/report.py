#!/usr/bin/env python
"""Report rendering: ``report.write_report`` (HTML + PDF) for a run of 13,800 faces (ExpW's test share).

    python benchmarks/report.py [--faces 13800] [--epochs 50]

Builds a run directory the way ``ferreport evaluate`` leaves it, without a model:
predictions.csv (probabilities from a noisy "70 % accurate" classifier, labels in ExpW's
class shares), metrics.json, faces_pool.npz (faces drawn by ``sample.draw_face``),
history.csv (``--epochs`` rows), then times ``write_report(run, ("html", "pdf"))``
(1,000 bootstrap resamples, as the CLI). Targets: <= 60 s, HTML <= 5 MB, PDF <= 10 MB.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

import _common as C


def build_run(run: Path, n: int, epochs: int, seed: int = 0) -> None:
    from ferreport.constants import NUM_CLASSES
    from ferreport.datasets.sample import EXPW_CLASS_SHARES, allocate_counts, draw_face
    from ferreport.evaluation.evaluate import predictions_frame, write_face_pool, write_predictions
    from ferreport.evaluation.metrics import metrics_from_predictions
    from ferreport.runs import folder as artifacts
    from ferreport.runs.atomic import write_json

    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(NUM_CLASSES), allocate_counts(n, EXPW_CLASS_SHARES))
    rng.shuffle(labels)
    logits = rng.normal(0, 1.0, (n, NUM_CLASSES))
    logits[np.arange(n), labels] += 1.6
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    table = pd.DataFrame({"source": [f"img_{i // 2:06d}.jpg" for i in range(n)], "face_id": np.arange(n) % 2,
                          "label": labels})
    frame = predictions_frame(proba, table)
    distinct = np.stack([draw_face(rng, int(c), 64)[..., ::-1] for c in rng.integers(0, NUM_CLASSES, 256)])
    faces = distinct[np.arange(n) % len(distinct)]
    write_predictions(frame, run / artifacts.PREDICTIONS)
    write_face_pool(frame, faces, run / artifacts.FACES_POOL)
    write_json(run / artifacts.METRICS, metrics_from_predictions(frame, n_resamples=1000, seed=seed).to_dict())
    e = np.arange(1, epochs + 1)
    hist = pd.DataFrame({"epoch": e, "loss": 1.8 / e**0.3, "accuracy": 0.7 * (1 - np.exp(-e / 8)),
                         "val_loss": 1.9 / e**0.25, "val_accuracy": 0.65 * (1 - np.exp(-e / 8)),
                         "learning_rate": 1e-3, "seconds": 60.0})
    hist.to_csv(run / artifacts.HISTORY, index=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, default=13800)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--json")
    args = ap.parse_args()

    C.header("report (HTML + PDF)")
    from ferreport.report import write_report

    with tempfile.TemporaryDirectory(prefix="ferreport-report-") as tmp:
        run = Path(tmp)
        with C.timer() as tb:
            build_run(run, args.faces, args.epochs)
        print(f"   run directory for {args.faces:,} faces built in {tb['s']:.1f} s")
        with C.timer() as t:
            out = write_report(run, ("html", "pdf"))
        html_mb = out["html"].stat().st_size / 1e6
        pdf_mb = out["pdf"].stat().st_size / 1e6
    rows = [C.check(f"write_report html+pdf, {args.faces:,} faces", t["s"], 60, "s"),
            C.check("report.html size", html_mb, 5, "MB"),
            C.check("report.pdf size", pdf_mb, 10, "MB")]
    C.save_json(args.json, "report", rows)


if __name__ == "__main__":
    main()
