"""The running totals of a folder audit's scan: files, images, faces, skips, classes, confidence and the
folder's fingerprint (everything audit_summary.json reports), kept flat whatever the folder size."""

from __future__ import annotations

import collections
import hashlib
from typing import Any

import numpy as np
import pandas as pd

from ferreport.audit.scanning import NO_FACE
from ferreport.constants import CLASS_NAMES
from ferreport.runs.cells import safe_row

__all__ = ["EXAMPLES_PER_REASON", "HIST_BINS", "Counts", "confidence_summary", "progress_note"]

#: Paths listed per skip reason in audit_summary.json.
EXAMPLES_PER_REASON = 5
#: Bins of the confidence histogram over [0, 1].
HIST_BINS = 20


class Counts:
    """Running totals of the scan (everything audit_summary.json reports)."""

    def __init__(self) -> None:
        self.files = 0
        self.images_read = 0
        self.images_with_face = 0
        self.images_without_face = 0
        self.faces = 0
        self.found: collections.Counter[str] = collections.Counter()
        self.skipped: collections.Counter[str] = collections.Counter()
        self.examples: dict[str, list[str]] = {}
        self.pred = np.zeros(len(CLASS_NAMES), np.int64)
        self.true = np.zeros(len(CLASS_NAMES), np.int64)
        self.labelled = 0
        self.hist = np.zeros(HIST_BINS, np.int64)
        self.conf_sum = 0.0
        self.low_conf = 0
        self.fingerprint = hashlib.sha256()
        self.unscored_labelled = 0  # labelled images of a class the model cannot predict (not scored)

    def skip(self, rel: str, reason: str, writer: Any) -> None:
        """List ``rel`` in skipped.csv (``writer``) and count it, unless it is an image without a face."""
        writer.writerow(safe_row([rel, reason]))
        if reason == NO_FACE:
            return
        self.skipped[reason] += 1
        ex = self.examples.setdefault(reason, [])
        if len(ex) < EXAMPLES_PER_REASON:
            ex.append(rel)

    def add_faces(self, frame: pd.DataFrame, labels: np.ndarray) -> None:
        """Count a chunk's predicted faces (``frame``: predictions.csv rows; ``labels``: true ids, -1 unknown)."""
        self.faces += len(frame)
        self.found.update(frame["found"])
        pred_ids = pd.Categorical(frame["pred_label"], categories=CLASS_NAMES).codes.astype(np.int64)
        self.pred += np.bincount(pred_ids, minlength=len(CLASS_NAMES))
        known = labels >= 0
        self.labelled += int(known.sum())
        self.true += np.bincount(labels[known], minlength=len(CLASS_NAMES))
        conf = frame["confidence"].to_numpy(dtype=np.float64)
        self.hist += np.histogram(np.clip(conf, 0, 1), bins=HIST_BINS, range=(0.0, 1.0))[0]
        self.conf_sum += float(conf.sum())
        self.low_conf += int((conf < 0.5).sum())


def progress_note(c: Counts) -> str:
    """What the audit has read so far: files, images, faces, skipped files."""
    return (f"{c.files:,} files, {c.images_read:,} images, {c.faces:,} faces, "
            f"{sum(c.skipped.values()):,} skipped")


def confidence_summary(c: Counts) -> dict[str, Any]:
    """audit_summary.json's ``confidence``: the mean, the faces below 0.5 and the histogram."""
    return {
        "mean": round(c.conf_sum / c.faces, 6) if c.faces else None,
        "below_0.5": c.low_conf,
        "histogram": {"edges": [round(i / HIST_BINS, 6) for i in range(HIST_BINS + 1)],
                      "counts": [int(v) for v in c.hist]},
    }
