"""Per-face attributes the slices and the drift tests read: what the pipeline knows, and cheap measures.

One row per predictions.csv row, in its order, written beside it as ``face_stats.csv`` so
that ``ferreport report RUN`` re-renders the slices without the dataset. Columns:

* ``box_side``: the shorter side of the face box in source-image pixels, as written in
  label.lst (ExpW) or found by the detector (audits); empty for whole-image faces of class
  folders, whose size the pipeline does not keep;
* ``box_confidence``: ExpW's annotation confidence (empty elsewhere);
* ``clipped``: 1 when the box ran past the image border (ExpW), 0 when not, empty when not known;
* ``faces_in_image``: faces listed for the same source image (label.lst lines, or detections);
* ``grayscale``: 1 when the face's three channels are equal up to JPEG noise (a grayscale
  source image; measured on the 64x64 face: 99th percentile of max-min channel spread at most
  :data:`GRAY_SPREAD`);
* ``brightness`` and ``contrast``: mean and standard deviation of the face's luma (0-255);
* ``blur``: variance of the 3x3 Laplacian of the luma over the interior pixels (low = blurry);
* ``found``: how an audit found the face (detected, fallback, whole, extra); empty in evaluations.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from ferreport.runs.folder import RunFolder

__all__ = ["FACE_STATS_COLUMNS", "GRAY_SPREAD", "IMAGE_MEASURES", "face_stats_frame", "image_measures",
           "read_face_stats", "source_attributes", "write_face_stats"]

FACE_STATS_COLUMNS: tuple[str, ...] = ("box_side", "box_confidence", "clipped", "faces_in_image", "grayscale",
                                       "brightness", "contrast", "blur", "found")
#: The measures taken on the face's pixels (the drift tests compare these).
IMAGE_MEASURES: tuple[str, ...] = ("brightness", "contrast", "blur")
#: Largest channel spread (levels) a grayscale face shows at its 99th percentile (JPEG chroma noise).
GRAY_SPREAD = 6
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601, as OpenCV's RGB2GRAY
_CHUNK = 1024


def image_measures(faces: np.ndarray) -> dict[str, np.ndarray]:
    """``brightness``, ``contrast``, ``blur`` (float) and ``grayscale`` (bool) of uint8 RGB faces ``(N, H, W, 3)``."""
    n = len(faces)
    out = {"brightness": np.empty(n, np.float64), "contrast": np.empty(n, np.float64),
           "blur": np.empty(n, np.float64), "grayscale": np.empty(n, bool)}
    for start in range(0, n, _CHUNK):
        f = np.asarray(faces[start:start + _CHUNK])
        sl = slice(start, start + len(f))
        luma = f.astype(np.float32) @ _LUMA
        out["brightness"][sl] = luma.mean(axis=(1, 2))
        out["contrast"][sl] = luma.std(axis=(1, 2))
        lap = (luma[:, :-2, 1:-1] + luma[:, 2:, 1:-1] + luma[:, 1:-1, :-2] + luma[:, 1:-1, 2:]
               - 4.0 * luma[:, 1:-1, 1:-1])
        out["blur"][sl] = lap.var(axis=(1, 2))
        spread = (f.max(axis=3).astype(np.int16) - f.min(axis=3)).reshape(len(f), -1)
        out["grayscale"][sl] = np.percentile(spread, 99, axis=1) <= GRAY_SPREAD
    return out


def source_attributes(index: pd.DataFrame) -> pd.DataFrame:
    """``box_side``, ``box_confidence``, ``clipped``, ``faces_in_image`` of every row of a dataset index.

    ``faces_in_image`` counts the rows of the whole index sharing the row's source image, so
    it must be taken before the index is cut to one split.
    """
    top, left = index["top"].to_numpy(np.float64), index["left"].to_numpy(np.float64)
    right, bottom = index["right"].to_numpy(np.float64), index["bottom"].to_numpy(np.float64)
    whole = (right < 0) | (bottom < 0)  # 0 0 -1 -1: the whole image, its size not kept
    side = np.where(whole, np.nan, np.minimum(bottom - top, right - left))
    conf = pd.to_numeric(index["confidence"], errors="coerce").to_numpy(np.float64) \
        if "confidence" in index else np.full(len(index), np.nan)
    clipped = (index["clipped"].astype(float).to_numpy() if "clipped" in index
               else np.full(len(index), np.nan))
    per_image = index.groupby("source")["source"].transform("size").to_numpy(np.float64)
    return pd.DataFrame({"box_side": side, "box_confidence": conf, "clipped": clipped, "faces_in_image": per_image})


def face_stats_frame(faces: np.ndarray, attributes: pd.DataFrame | None = None,
                     found: np.ndarray | None = None) -> pd.DataFrame:
    """The face_stats.csv rows of ``faces``: their ``attributes`` (:func:`source_attributes`, same order; None:
    not known), their pixel measures and ``found`` (audits)."""
    n = len(faces)
    measures = image_measures(faces)
    frame = pd.DataFrame({c: np.full(n, np.nan) for c in ("box_side", "box_confidence", "clipped",
                                                          "faces_in_image")})
    if attributes is not None:
        for col in frame.columns:
            if col in attributes:
                frame[col] = attributes[col].to_numpy(np.float64)
    frame["grayscale"] = measures["grayscale"].astype(np.int8)
    for col in IMAGE_MEASURES:
        frame[col] = np.round(measures[col], 3)
    frame["found"] = found if found is not None else ""
    return frame[list(FACE_STATS_COLUMNS)]


def write_face_stats(frame: pd.DataFrame, run: RunFolder | str | os.PathLike[str]) -> None:
    """The run's face_stats.csv."""
    RunFolder(run).write_face_stats(frame)


def read_face_stats(run: RunFolder | str | os.PathLike[str], n_rows: int | None = None) -> pd.DataFrame | None:
    """face_stats.csv, or None when absent, unreadable or not one row per prediction (``n_rows``)."""
    return RunFolder(run).read_face_stats(FACE_STATS_COLUMNS, n_rows)
