"""Anti-aliased OpenCV drawing at sub-pixel precision (float coordinates, 4 fractional bits).

The strokes, fills and ellipses the portrait and the scene are drawn with; colours come in as
float arrays and go to OpenCV as clipped tuples (:func:`as_color`).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

_SHIFT = 4  # sub-pixel bits for cv2 drawing
_SC = 1 << _SHIFT
#: OpenCV's anti-aliased line type (the scene's background shapes use it too).
AA = cv2.LINE_AA


def _pts(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    return np.round(np.stack([xs, ys], axis=-1) * _SC).astype(np.int32).reshape(-1, 1, 2)


def fill(img: np.ndarray, xs: np.ndarray, ys: np.ndarray, color: Any) -> None:
    """Fill the polygon through (xs, ys)."""
    cv2.fillPoly(img, [_pts(xs, ys)], color, AA, _SHIFT)


def line(img: np.ndarray, xs: np.ndarray, ys: np.ndarray, color: Any, thickness: int, closed: bool = False) -> None:
    """Draw the polyline through (xs, ys)."""
    cv2.polylines(img, [_pts(xs, ys)], closed, color, max(1, int(round(thickness))), AA, _SHIFT)


def ellipse(img: np.ndarray, cx: float, cy: float, ax: float, ay: float, color: Any,
            thickness: int = -1, angle: float = 0.0, start: float = 0.0, end: float = 360.0) -> None:
    """Draw an ellipse (or an arc from ``start`` to ``end`` degrees); filled when ``thickness`` is -1."""
    cv2.ellipse(img, (int(round(cx * _SC)), int(round(cy * _SC))),
                (max(1, int(round(ax * _SC))), max(1, int(round(ay * _SC)))),
                angle, start, end, color, thickness, AA, _SHIFT)


def as_color(c: np.ndarray) -> tuple[float, float, float]:
    """A float BGR array as the clipped 0..255 tuple OpenCV takes."""
    c = np.clip(c, 0, 255)
    return (float(c[0]), float(c[1]), float(c[2]))


def tapered(img: np.ndarray, xs: np.ndarray, ys: np.ndarray, w0: float, w1: float, color: Any) -> None:
    """Fill a stroke along (xs, ys) whose width goes from w0 to w1 (brows)."""
    dx, dy = np.gradient(xs), np.gradient(ys)
    n = np.hypot(dx, dy) + 1e-6
    nx, ny = -dy / n, dx / n
    w = np.linspace(w0, w1, len(xs)) / 2
    px = np.concatenate([xs + nx * w, (xs - nx * w)[::-1]])
    py = np.concatenate([ys + ny * w, (ys - ny * w)[::-1]])
    fill(img, px, py, color)

