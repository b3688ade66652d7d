"""Training augmentation: the seed's random rotation, shift, shear, zoom and horizontal flip.

The same transforms, in the same order and conventions, as the chain of Keras
preprocessing layers (:func:`ferreport.architectures.augmentation_layers`: bilinear,
edges filled with the nearest pixel, each transform resampling the face once, so four
resamplings a face), drawn from the same distributions. Only the engine differs: each
resampling is one ``cv2.warpAffine`` per face instead of TensorFlow's
``ImageProjectiveTransformV3``, which costs about a sixth of the CPU time on 64 x 64
faces, so on a CPU-only machine augmentation no longer slows training
(benchmarks/README.md). OpenCV interpolates at 1/32-pixel steps, so a face differs from
the Keras layers' by at most a few hundredths for identical draws
(``tests/test_augmentation.py`` holds the two to that).

Draws come from a NumPy generator the caller seeds, so a batch's augmentation depends
only on that seed, never on thread timing.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import cv2
import numpy as np

from .constants import AUGMENTATION

__all__ = ["AugmentationDraws", "augment_faces", "augmentation_matrices", "draw_augmentation",
           "opencv_single_threaded"]

_WARP_FLAGS = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP


@dataclass(frozen=True)
class AugmentationDraws:
    """One draw per face: ``angle`` degrees (counter-clockwise in Keras' convention),
    ``shift`` (dx, dy) pixels, ``shear`` (x factor), ``zoom`` (zx, zy: > 1 zooms out),
    ``flip`` (mirror left-right)."""

    angle: np.ndarray
    shift: np.ndarray
    shear: np.ndarray
    zoom: np.ndarray
    flip: np.ndarray

    def __len__(self) -> int:
        return len(self.angle)


def draw_augmentation(rng: np.random.Generator, n: int, height: int, width: int,
                      params: dict[str, float] = AUGMENTATION) -> AugmentationDraws:
    """Draw ``n`` faces' transforms with the Keras layers' distributions: angle uniform in
    ±rotation_degrees, shifts uniform in ±translation of the side, x shear uniform in
    ±shear, zoom per axis uniform in 1 ± zoom, flip with probability 1/2."""
    r, t, s, z = (params[k] for k in ("rotation_degrees", "translation", "shear", "zoom"))
    angle = rng.uniform(-r, r, n)
    shift = rng.uniform(-t, t, (n, 2)) * np.array([width, height], dtype=np.float64)
    shear = rng.uniform(-s, s, n)
    zoom = rng.uniform(1.0 - z, 1.0 + z, (n, 2))
    flip = rng.random(n) < 0.5
    return AugmentationDraws(angle, shift, shear, zoom, flip)


def augmentation_matrices(draws: AugmentationDraws, height: int, width: int) -> np.ndarray:
    """The four affine maps per face, ``(n, 4, 2, 3)`` float32, in the order applied
    (rotation, translation, shear, zoom). Each maps an *output* pixel (x, y) to the input
    point it samples, the convention of ``tf.raw_ops.ImageProjectiveTransformV3`` and of
    ``cv2.warpAffine`` with ``WARP_INVERSE_MAP``; each is built as the Keras layer builds
    its own (rotation and zoom about the centre ((w-1)/2, (h-1)/2), shear about the
    top-left corner)."""
    n = len(draws)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    m = np.zeros((n, 4, 2, 3), dtype=np.float64)
    theta = draws.angle * (math.pi / 180.0)
    cos, sin = np.cos(theta), np.sin(theta)
    m[:, 0] = np.stack([np.stack([cos, -sin, cx - cx * cos + cy * sin], -1),
                        np.stack([sin, cos, cy - cx * sin - cy * cos], -1)], 1)
    m[:, 1, 0, 0] = m[:, 1, 1, 1] = 1.0
    m[:, 1, 0, 2], m[:, 1, 1, 2] = -draws.shift[:, 0], -draws.shift[:, 1]
    m[:, 2, 0, 0] = m[:, 2, 1, 1] = 1.0
    m[:, 2, 0, 1] = draws.shear
    zx, zy = draws.zoom[:, 0], draws.zoom[:, 1]
    m[:, 3, 0, 0], m[:, 3, 0, 2] = zx, cx * (1.0 - zx)
    m[:, 3, 1, 1], m[:, 3, 1, 2] = zy, cy * (1.0 - zy)
    return m.astype(np.float32)


def augment_faces(faces: np.ndarray, draws: AugmentationDraws) -> np.ndarray:
    """Augment uint8 (or float) faces ``(n, h, w, 3)`` into new float32 faces in ``[0, 1]``.

    Four bilinear resamplings per face (edges filled with the nearest pixel), then the
    flip. The input is not modified."""
    n, h, w = faces.shape[:3]
    if len(draws) != n:
        raise ValueError(f"augment_faces: {len(draws)} draws for {n} faces")
    x = faces.astype(np.float32)
    if faces.dtype == np.uint8:
        x *= np.float32(1.0 / 255.0)
    out = np.empty_like(x)
    matrices = augmentation_matrices(draws, h, w)
    for i in range(n):
        src, dst = x[i], out[i]
        for k in range(4):
            cv2.warpAffine(src, matrices[i, k], (w, h), dst=dst, flags=_WARP_FLAGS,
                           borderMode=cv2.BORDER_REPLICATE)
            src, dst = dst, src
        # after four swaps the result is back in x[i]
    x[draws.flip] = x[draws.flip, :, ::-1]
    np.clip(x, 0.0, 1.0, out=x)
    return x


@contextmanager
def opencv_single_threaded() -> Iterator[None]:
    """Run the block with OpenCV's own thread pool off, then restore its size.

    While a model trains, TensorFlow already keeps every core busy; OpenCV splitting each
    64 x 64 warp over its pool (whose threads spin while they wait) took a third of the
    training speed on 2 cores (benchmarks/README.md). One thread per warp call, on
    ``tf.data``'s threads, costs nothing extra."""
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)
