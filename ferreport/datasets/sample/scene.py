"""A whole picture: cluttered background, shoulders, the drawn faces composited at their boxes,
then camera effects (exposure, colour cast, blur, noise)."""

from __future__ import annotations

import cv2
import numpy as np

from ferreport.constants import NUM_CLASSES
from ferreport.datasets.sample.canvas import AA, as_color, ellipse
from ferreport.datasets.sample.portrait import BOX, CANVAS, MARGIN, render_face_layer
from ferreport.errors import UsageError


def background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A cluttered BGR scene with no face (the sample's picture background): colour gradient,
    blotches and random shapes. Also for detector tests and benchmarks that paste faces at known
    boxes, or need pictures without any."""
    h, w = height, width
    sat = rng.uniform(0.15, 0.7)  # real scenes are rarely fully saturated

    def colour(size: tuple[int, ...]) -> np.ndarray:
        c = rng.uniform(0, 255, size)
        grey = c.mean(axis=-1, keepdims=True)
        return grey + (c - grey) * sat

    lw, lh = max(w // 8, 4), max(h // 8, 4)  # smooth parts are made small, then upscaled
    corners = colour((2, 2, 3)).astype(np.float32)
    low = cv2.resize(corners, (lw, lh), interpolation=cv2.INTER_LINEAR)
    g = int(rng.integers(3, 7))
    blot = (rng.uniform(-50, 50, (g, g, 1)) + rng.uniform(-50, 50, (g, g, 3)) * sat).astype(np.float32)
    low += cv2.resize(blot, (lw, lh), interpolation=cv2.INTER_CUBIC)
    img = cv2.resize(np.clip(low, 0, 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)
    n = int(rng.integers(4, 14))
    for _ in range(n):
        kind = rng.integers(5)
        col = as_color(colour((3,)))
        x0, y0 = int(rng.integers(-w // 4, w)), int(rng.integers(-h // 4, h))
        sz = int(rng.uniform(0.05, 0.5) * max(w, h))
        thick = int(rng.choice([-1, 1, 2, 3, 5]))
        if kind == 0:
            cv2.rectangle(img, (x0, y0), (x0 + sz, y0 + int(sz * rng.uniform(0.3, 2))), col, thick)
        elif kind == 1:
            cv2.line(img, (x0, y0), (int(rng.integers(0, w)), int(rng.integers(0, h))), col,
                     int(rng.integers(1, 6)), AA)
        elif kind == 2:
            cv2.circle(img, (x0, y0), max(2, sz // 2), col, thick, AA)
        elif kind == 3:
            cv2.ellipse(img, (x0, y0), (max(2, sz // 2), max(2, sz // 4)), float(rng.uniform(0, 180)), 0, 360,
                        col, thick, AA)
        else:
            pts = np.stack([rng.integers(0, w, 4), rng.integers(0, h, 4)], 1).astype(np.int32)
            cv2.fillPoly(img, [pts], col, AA)
    return img


def _composite(scene: np.ndarray, layer: np.ndarray, alpha: np.ndarray, top: int, left: int, side: int) -> None:
    """Scale the face canvas so its central square covers the box, and blend it in place."""
    m = int(round(side * MARGIN / BOX))
    cs = side + 2 * m
    interp = cv2.INTER_AREA if cs < CANVAS else cv2.INTER_LINEAR
    lay = cv2.resize(layer, (cs, cs), interpolation=interp)
    al = cv2.resize(alpha, (cs, cs), interpolation=interp)
    h, w = scene.shape[:2]
    y0, x0 = top - m, left - m
    ya, xa = max(y0, 0), max(x0, 0)
    yb, xb = min(y0 + cs, h), min(x0 + cs, w)
    if ya >= yb or xa >= xb:
        return
    a = al[ya - y0:yb - y0, xa - x0:xb - x0].astype(np.float32) * (1 / 255.0)
    src = np.ascontiguousarray(lay[ya - y0:yb - y0, xa - x0:xb - x0])
    scene[ya:yb, xa:xb] = cv2.blendLinear(src, np.ascontiguousarray(scene[ya:yb, xa:xb]), a, 1.0 - a)


def _finish(rng: np.random.Generator, img: np.ndarray, side: float) -> np.ndarray:
    """Camera effects: exposure, contrast, colour cast, blur and sensor noise."""
    contrast = rng.uniform(0.7, 1.2)
    bright = rng.uniform(-35, 30)
    cast = rng.uniform(0.92, 1.08, 3)
    v = np.arange(256, dtype=np.float64)[:, None]
    lut = np.clip(((v - 128.0) * contrast + 128.0 + bright) * cast[None, :] + 0.5, 0, 255).astype(np.uint8)
    out = cv2.LUT(img, lut.reshape(256, 1, 3))
    if rng.random() < 0.6:
        sigma = rng.uniform(0.3, 1.3) * max(1.0, side / 90.0)
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    if rng.random() < 0.6:
        noise = rng.standard_normal(out.shape[:2], dtype=np.float32) * np.float32(rng.uniform(2, 8))
        out = cv2.add(out, cv2.merge([noise, noise, noise]), dtype=cv2.CV_8U)
    return out


def render_image(rng: np.random.Generator, height: int, width: int,
                 faces: tuple[tuple[int, int, int, int], ...]) -> np.ndarray:
    """One scene with the given faces ``(label, top, left, side)``; BGR uint8."""
    scene = background(rng, height, width)
    for _, top, left, side in faces:  # shoulders first, so that no torso covers a face
        ellipse(scene, left + side * rng.uniform(0.45, 0.55), top + side * rng.uniform(1.55, 1.65),
                side * rng.uniform(0.8, 1.05), side * 0.6, as_color(rng.uniform(20, 235, 3)))
    for label, top, left, side in faces:
        layer, alpha = render_face_layer(rng, label)
        _composite(scene, layer, alpha, top, left, side)
    mean_side = float(np.mean([f[3] for f in faces])) if faces else 100.0
    return _finish(rng, scene, mean_side)


def draw_face(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """A ``size x size`` BGR uint8 face crop showing expression ``label`` (0..6).

    Same drawing as the generated sample (clutter behind, lighting, blur, noise), without
    the JPEG round trip. Handy as test input for other modules.
    """
    if not 0 <= int(label) < NUM_CLASSES:
        raise UsageError(f"label must be in 0..{NUM_CLASSES - 1}, got {label!r}")
    if int(size) < 8:
        raise UsageError(f"face size must be at least 8 px, got {size!r}")
    size = int(size)
    return render_image(rng, size, size, ((int(label), 0, 0, size),))
