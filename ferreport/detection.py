"""Face detection with OpenCV's Haar frontal-face cascade (shipped in the opencv wheel, no download).

:func:`detect_faces` takes a BGR image and returns face boxes ``(top, left, right, bottom)``
in pixels of that image, ExpW's box order, largest face first. The cascade is loaded
once per process (:func:`cascade`).

How an image is searched (:class:`DetectorParams`, measured on ``faces-sample``, see
``tests/test_detection.py``):

* grayscale, then the image is scaled so its *shorter* side is at least ``min_side``
  (160 px; small face crops are too small for the cascade's 24 px window plus context)
  and its *longer* side at most ``max_side`` (1024 px; large photos are searched at
  that size and the boxes scaled back, which keeps the cost per image bounded);
* a replicated border of ``pad_fraction`` (25 %) of the longer side is added on every
  side. The cascade needs a little context around a face; already-cropped faces (the
  face fills the picture) are found 2 times in 3 with the border and almost never
  without it. Boxes reaching into the border are clipped to the image (a box less than
  half inside the image is dropped);
* histogram equalisation, then ``detectMultiScale`` with ``scaleFactor`` 1.1,
  ``minNeighbors`` 5 and a minimum face size of ``min_size_fraction`` (10 %) of the
  shorter side (faces smaller than that are not searched for; at least 24 px);
* a box mostly inside a larger one (more than half of its area) is a duplicate and is
  dropped.

One label, one face (:func:`primary_face`): an image with one true label (a labelled audit)
is one face, so when the cascade finds several boxes in it only the **largest** (by area;
on a tie, the first in detection order: top, then left) carries the label and is scored; the
others are listed but not scored (``found`` = ``extra`` in an audit's predictions.csv). The
largest, not the "most confident": the cascade's only score (``levelWeights`` from
``detectMultiScale3``) is the raw sum of the last stage's weak classifiers, not calibrated and
not comparable between window sizes, while the labelled subject of a photo is the face it is
framed on. On faces-real (4,416 labelled crops) one image had two boxes: the face and,
smaller, a false detection on its mouth; the largest rule labels the face.

Box size: on the face-centred training crops of ``faces-real`` the cascade's box
covers the crop almost exactly (median crop/box side ratio 1.03), so boxes are used
as found (``margin`` 0.0); ``margin`` enlarges every side by that fraction of the
box side for models trained on looser crops.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from .errors import FerreportError

__all__ = ["Box", "DEFAULT_PARAMS", "DetectorParams", "cascade", "cascade_path", "detect_faces", "primary_face"]

#: ``(top, left, right, bottom)`` in pixels; a face is ``img[top:bottom, left:right]``.
Box = tuple[int, int, int, int]

CASCADE_FILE = "haarcascade_frontalface_default.xml"


@dataclass(frozen=True)
class DetectorParams:
    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_size_fraction: float = 0.10
    min_size_px: int = 24
    min_side: int = 160
    max_side: int = 1024
    pad_fraction: float = 0.25
    overlap: float = 0.5
    margin: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"cascade": CASCADE_FILE, **asdict(self)}


DEFAULT_PARAMS = DetectorParams()

_CASCADE: cv2.CascadeClassifier | None = None


def cascade_path() -> str:
    return cv2.data.haarcascades + CASCADE_FILE


def cascade() -> cv2.CascadeClassifier:
    """The frontal-face cascade, loaded once per process."""
    global _CASCADE
    if _CASCADE is None:
        path = cascade_path()
        clf = cv2.CascadeClassifier(path)
        if clf.empty():
            raise FerreportError(f"{path}: OpenCV's Haar face cascade could not be loaded; reinstall "
                                 "opencv-python-headless (the wheel ships it)")
        _CASCADE = clf
    return _CASCADE


def _drop_nested(boxes: list[Box], overlap: float) -> list[Box]:
    """Largest first; drop a box when more than ``overlap`` of its area lies inside a kept box."""
    def area(b: Box) -> int:
        return (b[2] - b[1]) * (b[3] - b[0])

    ordered = sorted(boxes, key=lambda b: (-area(b), b[0], b[1]))
    kept: list[Box] = []
    for b in ordered:
        inside = False
        for k in kept:
            ih = min(b[3], k[3]) - max(b[0], k[0])
            iw = min(b[2], k[2]) - max(b[1], k[1])
            if ih > 0 and iw > 0 and ih * iw > overlap * area(b):
                inside = True
                break
        if not inside:
            kept.append(b)
    return kept


def detect_faces(image_bgr: np.ndarray, params: DetectorParams = DEFAULT_PARAMS) -> list[Box]:
    """Faces in ``image_bgr`` (H, W, 3 BGR or H, W gray, uint8): boxes clipped to the image, largest first."""
    img = np.asarray(image_bgr)
    if img.ndim not in (2, 3) or img.size == 0:
        raise ValueError(f"expected an (H, W[, 3]) image, got shape {img.shape}")
    h, w = img.shape[:2]
    if img.ndim == 3:
        gray = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY if img.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
    else:
        gray = img
    if gray.dtype != np.uint8:
        gray = cv2.convertScaleAbs(gray)
    scale = 1.0
    if min(h, w) < params.min_side:
        scale = params.min_side / min(h, w)
    if max(h, w) * scale > params.max_side:
        scale = params.max_side / max(h, w)
    if scale != 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    gh, gw = gray.shape[:2]
    pad = int(round(params.pad_fraction * max(gh, gw)))
    if pad:
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    gray = cv2.equalizeHist(gray)
    min_size = max(params.min_size_px, int(params.min_size_fraction * min(gh, gw)))
    found = cascade().detectMultiScale(gray, scaleFactor=params.scale_factor, minNeighbors=params.min_neighbors,
                                       minSize=(min_size, min_size))
    boxes: list[Box] = []
    for x, y, bw, bh in (found if len(found) else ()):
        m = params.margin
        x0 = (x - pad - m * bw) / scale
        y0 = (y - pad - m * bh) / scale
        x1 = (x - pad + (1 + m) * bw) / scale
        y1 = (y - pad + (1 + m) * bh) / scale
        top, left = max(0, int(round(y0))), max(0, int(round(x0)))
        bottom, right = min(h, int(round(y1))), min(w, int(round(x1)))
        inside = (bottom - top) * (right - left)
        if bottom - top >= 2 and right - left >= 2 and inside >= 0.5 * (y1 - y0) * (x1 - x0):
            boxes.append((top, left, right, bottom))
    return _drop_nested(boxes, params.overlap)


def primary_face(boxes: list[Box] | list[tuple[int, ...]]) -> int:
    """Index of the face that carries an image's label: the largest box by area, the first on a tie.

    ``boxes`` are ``(top, left, right, bottom, ...)`` (extra fields ignored); -1 when there is none.
    """
    best, best_area = -1, -1
    for i, b in enumerate(boxes):
        area = max(0, b[2] - b[1]) * max(0, b[3] - b[0])
        if area > best_area:
            best, best_area = i, area
    return best
