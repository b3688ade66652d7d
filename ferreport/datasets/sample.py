"""Synthetic ExpW-layout sample: drawn faces in cluttered scenes, deterministic from a seed.

The output has exactly the layout of the real ExpW download::

    <root>/label/label.lst        one line per face (format below)
    <root>/image/origin/*.jpg     the pictures the boxes refer to
    <root>/sample.json            the spec and generator version (not part of ExpW)

Each ``label.lst`` line is ``image_name face_id_in_image face_box_top face_box_left
face_box_right face_box_bottom face_box_confidence expression_label``; the face is
``img[top:bottom, left:right]``. As in the real file, boxes are square, several faces can
share a picture, and a few boxes run past the picture's border (coordinates below 0 or
beyond the width/height), so that clipping code is exercised.

Faces are drawn with OpenCV (head, hair, ears, eyes, brows, nose, mouth) and the
expression shows in brows, eyes and mouth, with per-face intensity and identity noise so
that neighbouring classes (angry/disgust, fear/surprise, neutral/sad) overlap: a small CNN
learns it well above chance but not perfectly. Generation is deterministic: the same
:class:`SampleSpec` gives a byte-identical ``label.lst`` and identical JPEG files whatever
the number of worker processes.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import math
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ferreport.runs.atomic import write_error
from ferreport.constants import CLASS_NAMES, NUM_CLASSES
from ferreport.errors import OutputError, UsageError
from ferreport.progress import stage

__all__ = [
    "EXPW_CLASS_SHARES",
    "GENERATOR_VERSION",
    "SampleInfo",
    "SampleSpec",
    "allocate_counts",
    "background",
    "draw_face",
    "generate_sample",
]

#: Class shares of the full ExpW label.lst, in CLASS_NAMES order.
EXPW_CLASS_SHARES: tuple[float, ...] = (0.040, 0.044, 0.012, 0.333, 0.115, 0.077, 0.380)
#: Bumped whenever the output for a given spec changes; recorded in sample.json.
GENERATOR_VERSION: int = 1
SAMPLE_JSON = "sample.json"
LABEL_LST = Path("label") / "label.lst"
IMAGE_DIR = Path("image") / "origin"
#: Fewest faces per class (when n_faces allows it), so stratified splits work.
MIN_PER_CLASS = 3
JPEG_PARAMS = [int(cv2.IMWRITE_JPEG_QUALITY), 90]
#: Box sides (px) of generated faces: 46 is ExpW's smallest; the real maximum (1,870) is
#: capped to keep generation fast.
MIN_SIDE, MAX_SIDE = 46, 400
MIN_IMAGE, MAX_IMAGE = 120, 800
#: Use worker threads only from this many pictures on.
_PARALLEL_FROM = 100


@dataclass(frozen=True)
class SampleSpec:
    """What to generate; the same spec always gives the same files."""

    n_faces: int = 2000
    seed: int = 0
    multi_face_fraction: float = 0.05
    out_of_border_fraction: float = 0.01
    class_shares: tuple[float, ...] = EXPW_CLASS_SHARES  # in CLASS_NAMES order

    def __post_init__(self) -> None:
        shares = tuple(float(s) for s in self.class_shares)
        object.__setattr__(self, "class_shares", shares)
        if isinstance(self.n_faces, bool) or not isinstance(self.n_faces, (int, np.integer)) or self.n_faces < 1:
            raise UsageError(f"sample n_faces must be a positive integer, got {self.n_faces!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise UsageError(f"sample seed must be a non-negative integer, got {self.seed!r}")
        object.__setattr__(self, "n_faces", int(self.n_faces))
        object.__setattr__(self, "seed", int(self.seed))
        for name in ("multi_face_fraction", "out_of_border_fraction"):
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise UsageError(f"sample {name} must lie in [0, 1], got {value!r}")
            object.__setattr__(self, name, value)
        if len(shares) != NUM_CLASSES or any(not math.isfinite(s) or s < 0 for s in shares) or sum(shares) <= 0:
            raise UsageError(
                f"sample class_shares must be {NUM_CLASSES} non-negative numbers "
                f"({', '.join(CLASS_NAMES)}) with a positive sum, got {shares!r}"
            )


@dataclass(frozen=True)
class SampleInfo:
    """Where the sample is and what it holds."""

    root: Path
    n_images: int
    n_faces: int
    class_counts: tuple[int, ...]  # in CLASS_NAMES order


# --------------------------------------------------------------------------- class counts


def allocate_counts(n: int, shares: tuple[float, ...], min_per_class: int = MIN_PER_CLASS) -> tuple[int, ...]:
    """Split ``n`` faces over classes by largest remainder, then top up small classes.

    Every class with a positive share gets at least ``min(min_per_class, n // k)`` faces
    (k = classes with a positive share), taken one at a time from the largest class.
    """
    w = np.asarray(shares, dtype=np.float64)
    w = w / w.sum()
    exact = w * n
    counts = np.floor(exact).astype(np.int64)
    rest = n - int(counts.sum())
    # largest remainder; ties go to the lower class id (stable sort)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[:rest]] += 1
    positive = np.flatnonzero(w > 0)
    floor = min(min_per_class, n // max(len(positive), 1))
    for c in positive:
        while counts[c] < floor:
            donor = int(np.argmax(np.where(counts > floor, counts, -1)))
            counts[donor] -= 1
            counts[c] += 1
    assert int(counts.sum()) == n
    return tuple(int(c) for c in counts)


# --------------------------------------------------------------------------- drawing

_C = 192  # face canvas side; the face box is its central 128 px (the canvas is 1.5 boxes)
_BOX = 128
_MARGIN = (_C - _BOX) // 2
_SHIFT = 4  # sub-pixel bits for cv2 drawing
_SC = 1 << _SHIFT
_AA = cv2.LINE_AA
_YY, _XX = np.mgrid[0:_C, 0:_C].astype(np.float32)
_G = 48  # lighting maps are computed at this resolution, then upscaled
_GY, _GX = (np.mgrid[0:_G, 0:_G].astype(np.float32) + 0.5) * (_C / _G)

# RGB skin tones, light to dark (stored as BGR below)
_SKIN = [(255, 224, 196), (241, 194, 167), (234, 192, 134), (224, 172, 105), (198, 134, 66),
         (170, 115, 80), (141, 85, 36), (92, 58, 35), (255, 205, 148), (230, 180, 150)]
_SKIN_BGR = np.array([c[::-1] for c in _SKIN], dtype=np.float32)
_HAIR = [(20, 18, 18), (45, 30, 22), (70, 45, 30), (110, 75, 45), (200, 170, 110), (150, 150, 150),
         (130, 60, 30), (30, 25, 25)]
_HAIR_BGR = np.array([c[::-1] for c in _HAIR], dtype=np.float32)
_IRIS = [(70, 45, 25), (40, 28, 20), (90, 120, 160), (80, 110, 70), (110, 80, 45)]
_IRIS_BGR = np.array([c[::-1] for c in _IRIS], dtype=np.float32)

# Expression deltas at full intensity; units: brows in head half-heights, eye/mouth sizes
# as relative changes, mouth openings in mouth half-widths. Neutral is all zero.
_P = ("brow_raise", "brow_inner", "brow_arch", "eye_open", "eye_lower", "width", "curve",
      "open_u", "open_l", "asym", "lip_press", "pout", "cheek", "forehead", "glabella", "nose_wrinkle")
_DELTAS: dict[int, dict[str, float]] = {
    0: dict(brow_raise=-0.07, brow_inner=-0.13, eye_open=0.05, eye_lower=-0.35, lip_press=0.85,
            width=-0.15, curve=-0.3, glabella=1.0),                                        # angry
    1: dict(brow_raise=-0.05, brow_inner=-0.07, eye_open=-0.3, eye_lower=-0.6, nose_wrinkle=1.0,
            asym=0.9, open_u=0.05, curve=-0.4, pout=0.4, cheek=0.5),                        # disgust
    2: dict(brow_raise=0.10, brow_inner=0.08, brow_arch=-0.02, eye_open=0.75, width=0.15,
            open_u=0.08, open_l=0.22, curve=-0.35, forehead=0.8),                           # fear
    3: dict(brow_raise=0.02, eye_open=-0.15, eye_lower=-0.8, width=0.25, curve=1.0, cheek=1.0),  # happy
    4: dict(brow_raise=0.02, brow_inner=0.11, eye_open=-0.35, width=-0.12, curve=-0.85, pout=0.6),  # sad
    5: dict(brow_raise=0.15, brow_arch=0.05, eye_open=0.7, width=-0.45, open_u=0.3, open_l=0.55,
            forehead=1.0),                                                                    # surprise
    6: {},                                                                                    # neutral
}
_NOISE = dict(brow_raise=0.03, brow_inner=0.04, brow_arch=0.025, eye_open=0.15, eye_lower=0.15, width=0.1,
              curve=0.22, open_u=0.02, open_l=0.04, asym=0.12)


def _expression(rng: np.random.Generator, label: int) -> dict[str, Any]:
    """Expression parameters for one face: class deltas times intensity, plus noise."""
    t = 0.1 + 0.9 * rng.beta(1.5, 1.5)  # intensity: many faces are subtle
    p: dict[str, Any] = {k: t * v for k, v in _DELTAS[label].items()}
    for k in _P:
        p.setdefault(k, 0.0)
    for k, sd in _NOISE.items():
        p[k] += rng.normal(0.0, sd)
    p["shape"] = 0.45  # mouth opening profile exponent: 0.5 oval, lower is boxier
    p["teeth_u"] = p["teeth_l"] = False
    if label == 3 and rng.random() < 0.55:  # open smile with teeth
        p["open_u"] += 0.06 * t + 0.03
        p["open_l"] += 0.25 * t + 0.05
        p["teeth_u"] = True
        p["shape"] = 0.35
    elif label == 0 and rng.random() < 0.3:  # shouting / clenched teeth
        p["open_u"] += 0.07 * t + 0.02
        p["open_l"] += 0.12 * t + 0.03
        p["teeth_u"] = p["teeth_l"] = True
        p["shape"] = 0.2
        p["lip_press"] *= 0.5
    elif label == 1:
        p["teeth_u"] = True
        p["shape"] = 0.6
    elif label == 2:
        p["shape"] = 0.22
        p["teeth_l"] = rng.random() < 0.5
    elif label == 5:
        p["shape"] = 0.5
    elif label == 6 and rng.random() < 0.12:  # relaxed, lips slightly apart
        p["open_l"] += 0.06
    p["asym_side"] = 1.0 if rng.random() < 0.5 else -1.0
    p["eye_open"] = max(p["eye_open"], -0.6)
    p["eye_lower"] = max(p["eye_lower"], -0.95)
    p["open_u"] = max(p["open_u"], 0.0)
    p["open_l"] = max(p["open_l"], 0.0)
    p["width"] = max(p["width"], -0.6)
    return p


def _pts(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    return np.round(np.stack([xs, ys], axis=-1) * _SC).astype(np.int32).reshape(-1, 1, 2)


def _fill(img: np.ndarray, xs: np.ndarray, ys: np.ndarray, color: Any) -> None:
    cv2.fillPoly(img, [_pts(xs, ys)], color, _AA, _SHIFT)


def _line(img: np.ndarray, xs: np.ndarray, ys: np.ndarray, color: Any, thickness: int, closed: bool = False) -> None:
    cv2.polylines(img, [_pts(xs, ys)], closed, color, max(1, int(round(thickness))), _AA, _SHIFT)


def _ellipse(img: np.ndarray, cx: float, cy: float, ax: float, ay: float, color: Any,
             thickness: int = -1, angle: float = 0.0, start: float = 0.0, end: float = 360.0) -> None:
    cv2.ellipse(img, (int(round(cx * _SC)), int(round(cy * _SC))),
                (max(1, int(round(ax * _SC))), max(1, int(round(ay * _SC)))),
                angle, start, end, color, thickness, _AA, _SHIFT)


def _col(c: np.ndarray) -> tuple[float, float, float]:
    c = np.clip(c, 0, 255)
    return (float(c[0]), float(c[1]), float(c[2]))


def _tapered(img: np.ndarray, xs: np.ndarray, ys: np.ndarray, w0: float, w1: float, color: Any) -> None:
    """Fill a stroke along (xs, ys) whose width goes from w0 to w1 (brows)."""
    dx, dy = np.gradient(xs), np.gradient(ys)
    n = np.hypot(dx, dy) + 1e-6
    nx, ny = -dy / n, dx / n
    w = np.linspace(w0, w1, len(xs)) / 2
    px = np.concatenate([xs + nx * w, (xs - nx * w)[::-1]])
    py = np.concatenate([ys + ny * w, (ys - ny * w)[::-1]])
    _fill(img, px, py, color)


@dataclass
class _Portrait:
    """One person being drawn on a transparent ``_C x _C`` canvas: its identity, and the landmarks
    each drawing step sets for the later ones (in canvas pixels)."""

    p: dict[str, Any]        # the expression's parameters (see _expression)
    img: np.ndarray          # BGR canvas
    alpha: np.ndarray        # coverage of the canvas
    skin: np.ndarray
    hair: np.ndarray
    cx: float                # head centre
    cy: float
    hw: float                # head half-width, half-height
    hh: float
    p_up: float              # head outline exponents above and below the centre
    p_low: float
    style: int               # hair: 0 bald, 1 short, 2 side part, 3 long, 4 fringe
    eye_y: float = 0.0       # set by _draw_head
    hairline: float = 0.0    # set by _draw_hair
    ew: float = 0.0          # eye half-width, offset from the midline, upper/lower lid heights: _draw_eyes
    ed: float = 0.0
    uh: float = 0.0
    lh: float = 0.0
    y_nose: float = 0.0      # set by _draw_nose
    nw: float = 0.0


def _render_face_layer(rng: np.random.Generator, label: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw one person (hair, head, face, neck, shoulders) on a transparent canvas.

    Returns ``(bgr, alpha)``, both ``_C x _C``; the face box is the central ``_BOX`` square.
    The steps draw from ``rng`` in this order (the sample's bytes depend on it).
    """
    face = _identity(rng, _expression(rng, label))
    _draw_head(rng, face)
    shade = _head_shading(rng, face)
    _draw_hair(rng, face)
    _draw_eyes(rng, face)
    _draw_brows_and_lines(rng, face)
    _draw_nose(rng, face)
    _draw_mouth(rng, face)
    _draw_glasses(rng, face)
    return _light_and_pose(rng, face, shade)


def _identity(rng: np.random.Generator, p: dict[str, Any]) -> _Portrait:
    """Skin and hair colour, head size and hair style, on an empty canvas."""
    skin = _SKIN_BGR[rng.integers(len(_SKIN_BGR))] * rng.uniform(0.9, 1.07) + rng.normal(0, 6, 3)
    skin = np.clip(skin, 30, 250)
    hair = np.clip(_HAIR_BGR[rng.integers(len(_HAIR_BGR))] + rng.normal(0, 8, 3), 5, 240)
    hw = _BOX * rng.uniform(0.33, 0.39)
    hh = _BOX * rng.uniform(0.42, 0.46)
    p_up, p_low = rng.uniform(2.0, 2.8), rng.uniform(1.7, 2.5)
    style = rng.choice(5, p=[0.1, 0.3, 0.25, 0.2, 0.15])
    return _Portrait(p=p, img=np.zeros((_C, _C, 3), np.uint8), alpha=np.zeros((_C, _C), np.uint8), skin=skin,
                     hair=hair, cx=_C / 2, cy=_C / 2 + 2.0, hw=hw, hh=hh, p_up=p_up, p_low=p_low, style=style)


def _draw_head(rng: np.random.Generator, f: _Portrait) -> None:
    """Long hair behind the head, neck, ears and the head itself (superellipse, pointier chin)."""
    img, alpha, cx, cy, hw, hh = f.img, f.alpha, f.cx, f.cy, f.hw, f.hh
    if f.style == 3:
        _ellipse(img, cx, cy - 0.1 * hh, hw * 1.28, hh * 1.18, _col(f.hair))
        cv2.rectangle(img, (int(cx - hw * 1.28), int(cy)), (int(cx + hw * 1.28), int(cy + hh * 1.25)),
                      _col(f.hair), -1)
        _ellipse(alpha, cx, cy - 0.1 * hh, hw * 1.28, hh * 1.18, 255)
        cv2.rectangle(alpha, (int(cx - hw * 1.28), int(cy)), (int(cx + hw * 1.28), int(cy + hh * 1.25)), 255, -1)
    # neck (the shoulders are drawn on the scene, see _render_image)
    y_sh = cy + hh * rng.uniform(1.15, 1.3)
    nk = hw * rng.uniform(0.42, 0.55)
    neck_col = _col(f.skin * 0.8)
    cv2.rectangle(img, (int(cx - nk), int(cy + hh * 0.4)), (int(cx + nk), int(y_sh + 6)), neck_col, -1)
    cv2.rectangle(alpha, (int(cx - nk), int(cy + hh * 0.4)), (int(cx + nk), int(y_sh + 6)), 255, -1)
    f.eye_y = eye_y = cy - hh * rng.uniform(0.08, 0.16)
    for s in (-1, 1):
        _ellipse(img, cx + s * hw * 0.97, eye_y + 0.12 * hh, hw * 0.15, hh * 0.2, _col(f.skin * 0.9))
        _ellipse(alpha, cx + s * hw * 0.97, eye_y + 0.12 * hh, hw * 0.15, hh * 0.2, 255)
    th = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    c, s_ = np.cos(th), np.sin(th)
    pw = np.where(s_ < 0, f.p_up, f.p_low)
    hx = cx + hw * np.sign(c) * np.abs(c) ** (2 / pw)
    hy = cy + hh * np.sign(s_) * np.abs(s_) ** (2 / pw)
    _fill(img, hx, hy, _col(f.skin))
    _fill(alpha, hx, hy, 255)


def _head_shading(rng: np.random.Generator, f: _Portrait) -> np.ndarray:
    """A soft fall-off toward the head outline (a ``_G x _G`` gain map, applied by _light_and_pose)."""
    r2 = ((_GX - f.cx) / (f.hw * 1.1)) ** 2 + ((_GY - f.cy) / (f.hh * 1.15)) ** 2
    return 1.0 - rng.uniform(0.08, 0.22) * np.clip(r2, 0, 1.3)


def _draw_hair(rng: np.random.Generator, f: _Portrait) -> None:
    """The hairline, and hair on top of the head (none when bald)."""
    cx, cy, hw, hh = f.cx, f.cy, f.hw, f.hh
    f.hairline = cy - hh * rng.uniform(0.6, 0.8)
    if f.style == 0:
        return
    rows = int(cy)  # hair only above the head centre
    cap = np.zeros((rows, _C), np.uint8)
    _ellipse(cap, cx, cy - 0.05 * hh, hw * 1.07, hh * 1.07, 255)
    xn = (_XX[0] - cx) / hw
    edge = f.hairline + hh * rng.uniform(0.2, 0.5) * xn**2
    if f.style == 2:
        edge = edge + hh * 0.12 * np.clip(xn * rng.choice([-1, 1]), -1, 1)
    elif f.style == 4:
        edge = edge + hh * rng.uniform(0.08, 0.18)
    hm = (cap > 0) & (_YY[:rows] < edge[None, :])
    f.img[:rows][hm] = _col(f.hair)
    f.alpha[:rows][hm] = 255


_EYE_U = np.linspace(-1, 1, 17)
_EYE_ENV = np.sqrt(1 - _EYE_U**2)


def _draw_eyes(rng: np.random.Generator, f: _Portrait) -> None:
    """Eyes (white, iris, pupil, highlight) pasted through the eye-shape mask, then the lids."""
    p, hw = f.p, f.hw
    f.ew = ew = hw * rng.uniform(0.2, 0.26)
    f.ed = hw * rng.uniform(0.38, 0.48)
    f.uh = ew * 0.55 * (1 + p["eye_open"])
    f.lh = ew * 0.42 * (1 + p["eye_lower"]) * (1 + 0.5 * max(p["eye_open"], 0))
    # eyes are drawn on a band of rows, then pasted through the eye-shape mask
    r0 = max(int(f.eye_y - 2 * ew), 0)
    r1 = min(int(f.eye_y + 2 * ew) + 1, _C)
    eyes_mask = np.zeros((r1 - r0, _C), np.uint8)
    eyes_img = np.empty((r1 - r0, _C, 3), np.uint8)
    eyes_img[:] = _col(np.array([232, 236, 240], np.float32) * rng.uniform(0.85, 1.0))
    ir = ew * rng.uniform(0.45, 0.55)
    gx, gy = rng.normal(0, 0.15) * ew, rng.normal(0, 0.06) * ew
    iris = _col(_IRIS_BGR[rng.integers(len(_IRIS_BGR))])
    y = f.eye_y - r0
    for s in (-1, 1):
        ex = f.cx + s * f.ed
        xs = ex + ew * _EYE_U
        _fill(eyes_mask, np.concatenate([xs, xs[::-1]]),
              np.concatenate([y - f.uh * _EYE_ENV, (y + f.lh * _EYE_ENV)[::-1]]), 255)
        _ellipse(eyes_img, ex + gx, y + gy, ir, ir, iris)
        _ellipse(eyes_img, ex + gx, y + gy, ir * 0.45, ir * 0.45, (15, 15, 15))
        _ellipse(eyes_img, ex + gx + ir * 0.3, y + gy - ir * 0.3, ir * 0.16, ir * 0.16, (245, 245, 245))
    a = eyes_mask.astype(np.float32) * (1 / 255.0)
    f.img[r0:r1] = cv2.blendLinear(eyes_img, f.img[r0:r1], a, 1.0 - a)
    lid = _col(np.minimum(f.skin * 0.3, 50))
    for s in (-1, 1):
        xs = f.cx + s * f.ed + ew * _EYE_U
        _line(f.img, xs, f.eye_y - f.uh * _EYE_ENV, lid, 3)
        _line(f.img, xs[3:-3], (f.eye_y + f.lh * _EYE_ENV)[3:-3], _col(f.skin * 0.65), 1)
        if p["eye_lower"] < -0.3 and p["cheek"] > 0.3:  # raised cheeks under smiling eyes
            _line(f.img, xs[2:-2], (f.eye_y + f.lh * _EYE_ENV + ew * 0.45)[2:-2], _col(f.skin * 0.82), 1)


def _draw_brows_and_lines(rng: np.random.Generator, f: _Portrait) -> None:
    """Brows; forehead wrinkles (raised brows) and frown lines (lowered brows)."""
    p, img, skin, cx, hw, hh, ew = f.p, f.img, f.skin, f.cx, f.hw, f.hh, f.ew
    brow_col = np.clip(0.55 * f.hair + 0.45 * np.minimum(skin * 0.35, 60), 10, 200)
    bt = hh * rng.uniform(0.075, 0.11)
    base = f.eye_y - hh * rng.uniform(0.26, 0.32) - p["brow_raise"] * hh
    for s in (-1, 1):
        ex = cx + s * f.ed
        x_in, x_out = ex - s * ew * rng.uniform(0.8, 1.0), ex + s * ew * rng.uniform(1.15, 1.35)
        y_in = base - p["brow_inner"] * hh
        y_out = base + 0.01 * hh
        mx, my = (x_in + x_out) / 2, (y_in + y_out) / 2 - (0.045 + p["brow_arch"]) * hh
        tt = np.linspace(0, 1, 12)
        bx = (1 - tt) ** 2 * x_in + 2 * (1 - tt) * tt * mx + tt**2 * x_out
        by = (1 - tt) ** 2 * y_in + 2 * (1 - tt) * tt * my + tt**2 * y_out
        _tapered(img, bx, by, bt * 1.1, bt * 0.55, _col(brow_col))
    top_brow = base - max(p["brow_inner"], 0) * hh - bt
    if p["forehead"] > 0.25:
        fc = _col(skin * (1 - 0.2 * min(p["forehead"], 1.2)))
        for k in range(1, 4):
            yk = top_brow - k * hh * 0.09
            if yk > f.hairline + 3:
                xs = cx + hw * 0.45 * np.linspace(-1, 1, 9)
                _line(img, xs, yk - hh * 0.03 * (1 - np.linspace(-1, 1, 9) ** 2), fc, 1)
    if p["glabella"] > 0.25:
        gc = _col(skin * (1 - 0.3 * min(p["glabella"], 1.2)))
        for s in (-1, 1):
            _line(img, np.array([cx + s * ew * 0.35, cx + s * ew * 0.3]),
                  np.array([base - hh * 0.02, base + hh * 0.12]), gc, 2)


def _draw_nose(rng: np.random.Generator, f: _Portrait) -> None:
    """Nose bridge, tip and nostrils; wrinkles across it (disgust)."""
    p, img, skin, cx, hh = f.p, f.img, f.skin, f.cx, f.hh
    f.y_nose = y_nose = f.cy + hh * rng.uniform(0.22, 0.3) - 0.05 * hh * p["nose_wrinkle"]
    f.nw = nw = f.hw * rng.uniform(0.18, 0.25)
    nshade = _col(skin * 0.72)
    side = rng.choice([-1, 1])
    _line(img, np.array([cx + side * nw * 0.35, cx + side * nw * 0.55, cx + side * nw * 0.2]),
          np.array([f.eye_y + 0.05 * hh, y_nose - 0.1 * hh, y_nose]), _col(skin * 0.82), 2)
    _ellipse(img, cx, y_nose, nw, nw * 0.45, nshade, 2, 0, 20, 160)
    for s in (-1, 1):
        _ellipse(img, cx + s * nw * 0.45, y_nose + nw * 0.08, nw * 0.22, nw * 0.13, _col(skin * 0.45))
    if p["nose_wrinkle"] > 0.25:
        wc = _col(skin * (1 - 0.3 * min(p["nose_wrinkle"], 1.2)))
        for k in range(3):
            yk = f.eye_y + hh * (0.05 + 0.06 * k)
            _line(img, np.array([cx - nw * 0.55, cx, cx + nw * 0.55]), np.array([yk + 2, yk - 1.5, yk + 2]), wc, 1)


def _draw_mouth(rng: np.random.Generator, f: _Portrait) -> None:
    """Lips shaped by the expression, nasolabial folds (smiles, sneers), an open mouth's teeth."""
    p, img, skin, cx, nw = f.p, f.img, f.skin, f.cx, f.nw
    mw = f.hw * rng.uniform(0.36, 0.46) * (1 + p["width"])
    mx0 = cx + rng.normal(0, 0.6)
    y_m = f.cy + f.hh * rng.uniform(0.5, 0.58)
    u = np.linspace(-1, 1, 25)
    centre = y_m - p["curve"] * 0.38 * mw * u**2
    prof = (1 - u**2) ** p["shape"]
    raise_ = p["asym"] * 0.28 * mw * np.clip(p["asym_side"] * u + 0.2, 0, None) * (1 - u**2) ** 0.3
    yu = centre - mw * p["open_u"] * prof - raise_
    yl = centre + mw * p["open_l"] * prof
    press = 1 - 0.7 * min(max(p["lip_press"], 0.0), 1.0)
    lip_u = mw * rng.uniform(0.12, 0.18) * press
    lip_l = mw * rng.uniform(0.16, 0.24) * press * (1 + 0.6 * p["pout"])
    yuo = yu - lip_u * (0.25 + 0.75 * np.sqrt(1 - u**2)) + lip_u * 0.3 * np.exp(-((u / 0.15) ** 2))
    ylo = yl + lip_l * (0.2 + 0.8 * np.sqrt(1 - u**2))
    xs = mx0 + mw * u
    lip_col = _col(skin * np.array([0.72, 0.68, 0.95]) * rng.uniform(0.85, 1.0))
    if p["cheek"] > 0.25:
        fc = _col(skin * (1 - 0.22 * min(p["cheek"], 1.2)))
        for s in (-1, 1):
            _line(img, np.array([cx + s * nw * 1.1, cx + s * (mw + nw) * 0.75, mx0 + s * mw * 1.12]),
                  np.array([f.y_nose, (f.y_nose + centre[0]) / 2, centre[0 if s < 0 else -1] + 2]), fc, 1)
    _fill(img, np.concatenate([xs, xs[::-1]]), np.concatenate([yuo, ylo[::-1]]), lip_col)
    dark = (40, 25, 55)
    if (yl - yu).max() <= 1.2:
        _line(img, xs, (yu + yl) / 2, dark, 2)
        return
    _fill(img, np.concatenate([xs, xs[::-1]]), np.concatenate([yu, yl[::-1]]), dark)
    teeth = _col(np.array([225, 235, 240], np.float32) * rng.uniform(0.85, 1.0))
    k = np.abs(u) < 0.8
    if p["teeth_u"]:
        _fill(img, np.concatenate([xs[k], xs[k][::-1]]),
              np.concatenate([yu[k], np.minimum(yu[k] + mw * 0.14, yl[k])[::-1]]), teeth)
    if p["teeth_l"]:
        _fill(img, np.concatenate([xs[k], xs[k][::-1]]),
              np.concatenate([np.maximum(yl[k] - mw * 0.1, yu[k]), yl[k][::-1]]), teeth)


def _draw_glasses(rng: np.random.Generator, f: _Portrait) -> None:
    """Glasses, on 7% of faces."""
    if rng.random() >= 0.07:
        return
    gcol = _col(rng.uniform(10, 90, 3))
    cx, ed, ew, eye_y = f.cx, f.ed, f.ew, f.eye_y
    for s in (-1, 1):
        _ellipse(f.img, cx + s * ed, eye_y, ew * 1.45, ew * 1.05, gcol, 2)
    _line(f.img, np.array([cx - ed + ew * 1.45, cx + ed - ew * 1.45]), np.array([eye_y - 2, eye_y - 2]), gcol, 2)


def _light_and_pose(rng: np.random.Generator, f: _Portrait, shade: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lighting (``shade`` and a directional gradient), then the pose: a small rotation, scale and
    offset of the face inside its box. Returns ``(bgr, alpha)``."""
    cx, cy = f.cx, f.cy
    ang = rng.uniform(0, 2 * np.pi)
    grad = 1 + rng.uniform(-0.45, 0.45) * ((_GX - cx) * np.cos(ang) + (_GY - cy) * np.sin(ang)) / _BOX
    gain = cv2.resize((shade * grad * rng.uniform(0.85, 1.12)).astype(np.float32), (_C, _C),
                      interpolation=cv2.INTER_LINEAR)
    img = cv2.multiply(f.img, cv2.merge([gain, gain, gain]), dtype=cv2.CV_8U)
    angle = float(np.clip(rng.normal(0, 6), -16, 16))
    scale = rng.uniform(0.86, 1.06)
    m = cv2.getRotationMatrix2D((cx, cy), angle, scale)
    m[0, 2] += rng.uniform(-0.05, 0.05) * _BOX
    m[1, 2] += rng.uniform(-0.05, 0.05) * _BOX
    img = cv2.warpAffine(img, m, (_C, _C), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    alpha = cv2.warpAffine(f.alpha, m, (_C, _C), flags=cv2.INTER_LINEAR, borderValue=0)
    return img, alpha


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Cluttered scene: colour gradient, blotches, and random shapes."""
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
        col = _col(colour((3,)))
        x0, y0 = int(rng.integers(-w // 4, w)), int(rng.integers(-h // 4, h))
        sz = int(rng.uniform(0.05, 0.5) * max(w, h))
        thick = int(rng.choice([-1, 1, 2, 3, 5]))
        if kind == 0:
            cv2.rectangle(img, (x0, y0), (x0 + sz, y0 + int(sz * rng.uniform(0.3, 2))), col, thick)
        elif kind == 1:
            cv2.line(img, (x0, y0), (int(rng.integers(0, w)), int(rng.integers(0, h))), col,
                     int(rng.integers(1, 6)), _AA)
        elif kind == 2:
            cv2.circle(img, (x0, y0), max(2, sz // 2), col, thick, _AA)
        elif kind == 3:
            cv2.ellipse(img, (x0, y0), (max(2, sz // 2), max(2, sz // 4)), float(rng.uniform(0, 180)), 0, 360,
                        col, thick, _AA)
        else:
            pts = np.stack([rng.integers(0, w, 4), rng.integers(0, h, 4)], 1).astype(np.int32)
            cv2.fillPoly(img, [pts], col, _AA)
    return img


def _composite(scene: np.ndarray, layer: np.ndarray, alpha: np.ndarray, top: int, left: int, side: int) -> None:
    """Scale the face canvas so its central square covers the box, and blend it in place."""
    m = int(round(side * _MARGIN / _BOX))
    cs = side + 2 * m
    interp = cv2.INTER_AREA if cs < _C else cv2.INTER_LINEAR
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


def _render_image(rng: np.random.Generator, height: int, width: int,
                  faces: tuple[tuple[int, int, int, int], ...]) -> np.ndarray:
    """One scene with the given faces ``(label, top, left, side)``; BGR uint8."""
    scene = _background(rng, height, width)
    for _, top, left, side in faces:  # shoulders first, so that no torso covers a face
        _ellipse(scene, left + side * rng.uniform(0.45, 0.55), top + side * rng.uniform(1.55, 1.65),
                 side * rng.uniform(0.8, 1.05), side * 0.6, _col(rng.uniform(20, 235, 3)))
    for label, top, left, side in faces:
        layer, alpha = _render_face_layer(rng, label)
        _composite(scene, layer, alpha, top, left, side)
    mean_side = float(np.mean([f[3] for f in faces])) if faces else 100.0
    return _finish(rng, scene, mean_side)


def background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A cluttered BGR scene with no face (the sample's picture background): for detector tests and
    benchmarks that paste faces at known boxes, or need pictures without any."""
    return _background(rng, height, width)


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
    return _render_image(rng, size, size, ((int(label), 0, 0, size),))


# --------------------------------------------------------------------------- layout

_WORDS_A = ("young", "old", "candid", "street", "family", "office", "party", "wedding", "school", "famous",
            "local", "portrait", "outdoor", "travel", "stage", "news", "sports", "festival")
_WORDS_B = ("actor", "actress", "girl", "boy", "man", "woman", "child", "baby", "student", "teacher", "player",
            "singer", "crowd", "couple", "friends", "people", "worker", "athlete", "fan", "politician")


@dataclass(frozen=True)
class _Face:
    face_id: int
    label: int
    top: int
    left: int
    side: int
    confidence: float


@dataclass(frozen=True)
class _Image:
    index: int
    name: str
    width: int
    height: int
    faces: tuple[_Face, ...]


def _group_sizes(rng: np.random.Generator, n: int, frac: float) -> list[int]:
    m = int(round(frac * n))
    if frac > 0 and n >= 2:
        m = max(m, 2)
    m = min(m, n)
    groups: list[int] = []
    left = m
    while left > 0:
        k = int(rng.choice([2, 2, 2, 2, 3, 3, 4]))
        k = min(k, left)
        if left - k == 1:
            k += 1
        if k == 1:  # only when m == 1 (n == 1): a single face
            groups.append(1)
            break
        groups.append(k)
        left -= k
    sizes = [1] * (n - sum(groups)) + groups
    return [sizes[i] for i in rng.permutation(len(sizes))]


def _side(rng: np.random.Generator, hi: int = MAX_SIDE) -> int:
    return int(np.clip(round(math.exp(rng.normal(math.log(105), 0.45))), MIN_SIDE, max(MIN_SIDE, hi)))


def _plan(spec: SampleSpec) -> tuple[list[_Image], tuple[int, ...]]:
    """Decide every picture's name, size, boxes, labels and confidences (no drawing)."""
    rng = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(0,)))
    counts = allocate_counts(spec.n_faces, spec.class_shares)
    labels = rng.permutation(np.repeat(np.arange(NUM_CLASSES), counts))
    groups = _group_sizes(rng, spec.n_faces, spec.multi_face_fraction)
    singles = [i for i, k in enumerate(groups) if k == 1]
    n_oob = int(round(spec.out_of_border_fraction * spec.n_faces))
    if spec.out_of_border_fraction > 0:
        n_oob = max(n_oob, 1)
    n_oob = min(n_oob, len(singles))
    oob = set(int(i) for i in rng.choice(singles, size=n_oob, replace=False)) if n_oob else set()
    name_counter: dict[tuple[str, str], int] = {}
    images: list[_Image] = []
    cursor = 0
    for idx, k in enumerate(groups):
        face_labels = [int(x) for x in labels[cursor:cursor + k]]
        cursor += k
        conf = 0.2 + 139.8 * rng.beta(2.2, 3.4, size=k)
        if k == 1:
            width, height, boxes = _single_face_layout(rng, out_of_border=idx in oob)
        else:
            width, height, boxes = _group_layout(rng, k)
        a = _WORDS_A[int(rng.integers(len(_WORDS_A)))]
        b = _WORDS_B[int(rng.integers(len(_WORDS_B)))]
        num = name_counter.get((a, b), 0) + 1
        name_counter[(a, b)] = num
        faces = tuple(
            _Face(i, lab, t, lf, sd, float(cf))
            for i, (lab, (t, lf, sd), cf) in enumerate(zip(face_labels, boxes, conf))
        )
        images.append(_Image(idx, f"{a}_{b}_{num}.jpg", width, height, faces))
    return images, counts



def _single_face_layout(rng: np.random.Generator, out_of_border: bool) -> tuple[int, int, list[tuple[int, int, int]]]:
    """``(width, height, [(top, left, side)])`` of a one-face picture; ``out_of_border``: the box
    crosses an image edge (as some of ExpW's do)."""
    side = _side(rng)
    width = int(np.clip(side * rng.uniform(1.25, 3.2), MIN_IMAGE, MAX_IMAGE))
    height = int(np.clip(side * rng.uniform(1.25, 3.0), MIN_IMAGE, MAX_IMAGE))
    width, height = max(width, side + 2), max(height, side + 2)
    left = int(rng.integers(0, width - side + 1))
    top = int(rng.integers(0, int((height - side) * 0.75) + 1))
    if out_of_border:
        over = max(1, int(round(side * rng.uniform(0.05, 0.3))))
        edge = rng.choice(4, p=[0.35, 0.35, 0.15, 0.15])  # right, bottom, left, top
        if edge == 0:
            left = width - side + over
        elif edge == 1:
            top = height - side + over
        elif edge == 2:
            left = -over
        else:
            top = -over
    return width, height, [(top, left, side)]


def _group_layout(rng: np.random.Generator, k: int) -> tuple[int, int, list[tuple[int, int, int]]]:
    """``(width, height, boxes)`` of a picture with a row of ``k`` faces of similar size."""
    hi = int(MAX_IMAGE / (1.1 + 1.9 * k))  # keeps the row of faces within MAX_IMAGE
    s0 = _side(rng, hi)
    sides = [int(np.clip(round(s0 * rng.uniform(0.8, 1.2)), MIN_SIDE, max(MIN_SIDE, hi))) for _ in range(k)]
    smax = max(sides)
    x = int(rng.uniform(0.3, 0.8) * smax)
    boxes = []
    for sd in sides:
        boxes.append((int(rng.uniform(0.3, 0.7) * smax + rng.uniform(-0.15, 0.15) * smax), x, sd))
        x += sd + int(rng.uniform(0.55, 0.9) * smax)
    width = int(np.clip(x - int(0.55 * smax) + rng.uniform(0.3, 0.8) * smax, MIN_IMAGE, MAX_IMAGE))
    height = int(max(max(t + sd for t, _, sd in boxes) + rng.uniform(0.3, 1.0) * smax, MIN_IMAGE))
    return width, height, boxes


def _label_lines(images: list[_Image]) -> str:
    lines = []
    for im in images:
        for f in im.faces:
            lines.append(
                f"{im.name} {f.face_id} {f.top} {f.left} {f.left + f.side} {f.top + f.side} "
                f"{f.confidence:.4f} {f.label}"
            )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- writing


def _clear_stale_temps(out: Path) -> None:
    """Remove temporary folders left by generators that were killed (their pid is gone)."""
    for tmp in out.parent.glob(f".{glob.escape(out.name)}.tmp-*"):
        try:
            pid = int(tmp.name.rsplit(".tmp-", 1)[1].split("-", 1)[0])
        except (IndexError, ValueError):
            continue
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass


def _spec_difference(recorded: object, asked: dict[str, Any]) -> str:
    """What differs between a recorded and an asked-for spec, as words (never a Python dict repr)."""
    if not isinstance(recorded, dict):
        return "no recorded spec"
    keys = sorted(k for k in set(recorded) | set(asked) if recorded.get(k) != asked.get(k))
    if not keys:
        return "same spec"
    flags = {"n_faces": "--faces", "seed": "--seed"}
    return "; ".join(f"{flags.get(k, k)} {recorded.get(k, 'unset')} there, {asked.get(k, 'unset')} asked"
                     for k in keys)


def _spec_dict(spec: SampleSpec) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(spec)))


def _existing(out: Path, spec: SampleSpec) -> SampleInfo | None:
    """Return the info of a complete same-spec sample at ``out``, None if ``out`` is free.

    Raises UsageError if ``out`` holds something else.
    """
    if not out.exists():
        return None
    if not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder; choose another sample output folder")
    if not any(out.iterdir()):
        return None
    meta_path = out / SAMPLE_JSON
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        ok = meta.get("generator") == "ferreport.datasets.sample" and (out / LABEL_LST).is_file()
    except (OSError, ValueError, AttributeError):
        ok = False
    if not ok:
        raise UsageError(f"{out}: folder is not empty and holds no ferreport sample; choose another output folder")
    if meta.get("version") != GENERATOR_VERSION or meta.get("spec") != _spec_dict(spec):
        version = meta.get("version")
        why = (_spec_difference(meta.get("spec"), _spec_dict(spec)) if version == GENERATOR_VERSION
               else f"generator version {version} there, {GENERATOR_VERSION} now")
        raise UsageError(f"{out}: holds another sample ({why}); choose another --out or delete the folder")
    return SampleInfo(out, int(meta["n_images"]), int(meta["n_faces"]), tuple(int(c) for c in meta["class_counts"]))


def generate_sample(out: Path | str, spec: SampleSpec = SampleSpec(), workers: int | None = None) -> SampleInfo:
    """Write a synthetic ExpW-layout sample to ``out`` (atomically) and describe it.

    If ``out`` already holds a complete sample of the same spec, nothing is redone. If it
    holds anything else, :class:`~ferreport.errors.UsageError` is raised. ``workers`` is
    the number of drawing threads (default: up to 2, one for small samples); the output
    does not depend on it.
    """
    out = Path(out)
    done = _existing(out, spec)
    if done is not None:
        return done
    images, counts = _plan(spec)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _clear_stale_temps(out)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    except OSError as exc:
        raise write_error(out, exc) from exc
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the sample is an ordinary folder
        _write_images(tmp, spec, images, workers)
        _write_metadata(tmp, spec, images, counts)
        try:
            os.replace(tmp, out)
        except OSError:
            # someone else filled ``out`` meanwhile: fine if it is the same sample
            done = _existing(out, spec)
            if done is None:
                raise
            shutil.rmtree(tmp, ignore_errors=True)
            return done
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(out, exc) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SampleInfo(out, len(images), spec.n_faces, counts)


def _write_images(tmp: Path, spec: SampleSpec, images: list[_Image], workers: int | None) -> None:
    """Draw and write every image under ``tmp`` (in threads for big samples; the bytes do not depend on it)."""
    img_dir = tmp / IMAGE_DIR
    img_dir.mkdir(parents=True)
    (tmp / LABEL_LST).parent.mkdir(parents=True)
    tasks = [
        (str(img_dir / im.name), spec.seed, im.index, im.height, im.width,
         tuple((f.label, f.top, f.left, f.side) for f in im.faces))
        for im in images
    ]
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if len(tasks) >= _PARALLEL_FROM else 1
    with stage("sample", total=len(tasks), unit="images") as bar:
        if workers > 1 and len(tasks) > 1:
            # Threads, not processes: OpenCV releases the GIL in its heavy calls, and a
            # process pool would either fork a multi-threaded parent (deadlocks seen with
            # OpenCV/OpenMP pools) or re-import ``__main__`` (spawn).
            with ThreadPoolExecutor(workers, thread_name_prefix="ferreport-sample") as pool:
                for _ in pool.map(_write_image, tasks):
                    bar.advance()
        else:
            for task in tasks:
                _write_image(task)
                bar.advance()


def _write_metadata(tmp: Path, spec: SampleSpec, images: list[_Image], counts: tuple[int, ...]) -> None:
    """label/label.lst and sample.json."""
    (tmp / LABEL_LST).write_text(_label_lines(images), encoding="utf-8", newline="\n")
    meta = {
        "generator": "ferreport.datasets.sample",
        "version": GENERATOR_VERSION,
        "spec": _spec_dict(spec),
        "n_images": len(images),
        "n_faces": spec.n_faces,
        "class_counts": list(counts),
        "class_names": list(CLASS_NAMES),
    }
    (tmp / SAMPLE_JSON).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _write_image(task: tuple[str, int, int, int, int, tuple[tuple[int, int, int, int], ...]]) -> None:
    path, seed, index, height, width, faces = task
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, index)))
    img = _render_image(rng, height, width, faces)
    ok, buf = cv2.imencode(".jpg", img, JPEG_PARAMS)
    if not ok:  # pragma: no cover - OpenCV always encodes a uint8 BGR image
        raise OutputError(f"{path}: JPEG encoding failed")
    with open(path, "wb") as fh:
        fh.write(buf.tobytes())
