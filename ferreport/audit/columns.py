"""The columns of a folder audit's predictions.csv and the ``found`` value of a face that is listed, not scored.

An audit's predictions.csv has the evaluation columns (``source, face_id, true_label, pred_label,
confidence, p_*``), so every evaluation section works unchanged, plus the face box ``top, left,
right, bottom`` in pixels of the (EXIF-rotated) image and ``found``: ``detected``, ``whole``,
``fallback`` (:mod:`ferreport.audit.scanning`) or :data:`FOUND_EXTRA`.
"""

from __future__ import annotations

from ferreport.runs.folder import AUDIT_EXTRA_COLUMNS, PREDICTION_COLUMNS

__all__ = ["AUDIT_COLUMNS", "BOX_COLUMNS", "FOUND_EXTRA"]

#: The face box, in pixels of the (EXIF-rotated) image.
BOX_COLUMNS: tuple[str, ...] = ("top", "left", "right", "bottom")
#: Every column of an audit's predictions.csv, in order.
AUDIT_COLUMNS: tuple[str, ...] = (*PREDICTION_COLUMNS, *AUDIT_EXTRA_COLUMNS)
#: ``found`` of a face detected in a labelled image beside its primary (largest) face: listed, not scored.
FOUND_EXTRA = "extra"
