"""One drawn person on a transparent canvas: head, hair, ears, eyes, brows, nose, mouth,
glasses, shading, then lighting and pose.

The face box is the canvas's central ``BOX`` square; :mod:`.scene` scales the canvas onto a
picture. The drawing steps take their random numbers from one generator in a fixed order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from ferreport.datasets.sample.canvas import as_color, ellipse, fill, line, tapered
from ferreport.datasets.sample.expression import expression_params

#: Side (px) of the face canvas; the face box is its central ``BOX`` square (the canvas is 1.5 boxes),
#: with ``MARGIN`` px of hair, ears and shoulders around it.
CANVAS = 192
BOX = 128
MARGIN = (CANVAS - BOX) // 2
_YY, _XX = np.mgrid[0:CANVAS, 0:CANVAS].astype(np.float32)
_G = 48  # lighting maps are computed at this resolution, then upscaled
_GY, _GX = (np.mgrid[0:_G, 0:_G].astype(np.float32) + 0.5) * (CANVAS / _G)

# RGB skin tones, light to dark (stored as BGR below)
_SKIN = [(255, 224, 196), (241, 194, 167), (234, 192, 134), (224, 172, 105), (198, 134, 66),
         (170, 115, 80), (141, 85, 36), (92, 58, 35), (255, 205, 148), (230, 180, 150)]
_SKIN_BGR = np.array([c[::-1] for c in _SKIN], dtype=np.float32)
_HAIR = [(20, 18, 18), (45, 30, 22), (70, 45, 30), (110, 75, 45), (200, 170, 110), (150, 150, 150),
         (130, 60, 30), (30, 25, 25)]
_HAIR_BGR = np.array([c[::-1] for c in _HAIR], dtype=np.float32)
_IRIS = [(70, 45, 25), (40, 28, 20), (90, 120, 160), (80, 110, 70), (110, 80, 45)]
_IRIS_BGR = np.array([c[::-1] for c in _IRIS], dtype=np.float32)


@dataclass
class _Portrait:
    """One person being drawn on a transparent ``CANVAS x CANVAS`` canvas: its identity, and the landmarks
    each drawing step sets for the later ones (in canvas pixels)."""

    p: dict[str, Any]        # the expression's parameters (see expression_params)
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


def render_face_layer(rng: np.random.Generator, label: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw one person (hair, head, face, neck, shoulders) on a transparent canvas.

    Returns ``(bgr, alpha)``, both ``CANVAS x CANVAS``; the face box is the central ``BOX`` square.
    The steps draw from ``rng`` in this order (the sample's bytes depend on it).
    """
    face = _identity(rng, expression_params(rng, label))
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
    hw = BOX * rng.uniform(0.33, 0.39)
    hh = BOX * rng.uniform(0.42, 0.46)
    p_up, p_low = rng.uniform(2.0, 2.8), rng.uniform(1.7, 2.5)
    style = rng.choice(5, p=[0.1, 0.3, 0.25, 0.2, 0.15])
    return _Portrait(p=p, img=np.zeros((CANVAS, CANVAS, 3), np.uint8), alpha=np.zeros((CANVAS, CANVAS), np.uint8),
                     skin=skin, hair=hair, cx=CANVAS / 2, cy=CANVAS / 2 + 2.0, hw=hw, hh=hh, p_up=p_up, p_low=p_low,
                     style=style)


def _draw_head(rng: np.random.Generator, f: _Portrait) -> None:
    """Long hair behind the head, neck, ears and the head itself (superellipse, pointier chin)."""
    img, alpha, cx, cy, hw, hh = f.img, f.alpha, f.cx, f.cy, f.hw, f.hh
    if f.style == 3:
        ellipse(img, cx, cy - 0.1 * hh, hw * 1.28, hh * 1.18, as_color(f.hair))
        cv2.rectangle(img, (int(cx - hw * 1.28), int(cy)), (int(cx + hw * 1.28), int(cy + hh * 1.25)),
                      as_color(f.hair), -1)
        ellipse(alpha, cx, cy - 0.1 * hh, hw * 1.28, hh * 1.18, 255)
        cv2.rectangle(alpha, (int(cx - hw * 1.28), int(cy)), (int(cx + hw * 1.28), int(cy + hh * 1.25)), 255, -1)
    # neck (the shoulders are drawn on the scene, see render_image)
    y_sh = cy + hh * rng.uniform(1.15, 1.3)
    nk = hw * rng.uniform(0.42, 0.55)
    neck_col = as_color(f.skin * 0.8)
    cv2.rectangle(img, (int(cx - nk), int(cy + hh * 0.4)), (int(cx + nk), int(y_sh + 6)), neck_col, -1)
    cv2.rectangle(alpha, (int(cx - nk), int(cy + hh * 0.4)), (int(cx + nk), int(y_sh + 6)), 255, -1)
    f.eye_y = eye_y = cy - hh * rng.uniform(0.08, 0.16)
    for s in (-1, 1):
        ellipse(img, cx + s * hw * 0.97, eye_y + 0.12 * hh, hw * 0.15, hh * 0.2, as_color(f.skin * 0.9))
        ellipse(alpha, cx + s * hw * 0.97, eye_y + 0.12 * hh, hw * 0.15, hh * 0.2, 255)
    th = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    c, s_ = np.cos(th), np.sin(th)
    pw = np.where(s_ < 0, f.p_up, f.p_low)
    hx = cx + hw * np.sign(c) * np.abs(c) ** (2 / pw)
    hy = cy + hh * np.sign(s_) * np.abs(s_) ** (2 / pw)
    fill(img, hx, hy, as_color(f.skin))
    fill(alpha, hx, hy, 255)


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
    cap = np.zeros((rows, CANVAS), np.uint8)
    ellipse(cap, cx, cy - 0.05 * hh, hw * 1.07, hh * 1.07, 255)
    xn = (_XX[0] - cx) / hw
    edge = f.hairline + hh * rng.uniform(0.2, 0.5) * xn**2
    if f.style == 2:
        edge = edge + hh * 0.12 * np.clip(xn * rng.choice([-1, 1]), -1, 1)
    elif f.style == 4:
        edge = edge + hh * rng.uniform(0.08, 0.18)
    hm = (cap > 0) & (_YY[:rows] < edge[None, :])
    f.img[:rows][hm] = as_color(f.hair)
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
    r1 = min(int(f.eye_y + 2 * ew) + 1, CANVAS)
    eyes_mask = np.zeros((r1 - r0, CANVAS), np.uint8)
    eyes_img = np.empty((r1 - r0, CANVAS, 3), np.uint8)
    eyes_img[:] = as_color(np.array([232, 236, 240], np.float32) * rng.uniform(0.85, 1.0))
    ir = ew * rng.uniform(0.45, 0.55)
    gx, gy = rng.normal(0, 0.15) * ew, rng.normal(0, 0.06) * ew
    iris = as_color(_IRIS_BGR[rng.integers(len(_IRIS_BGR))])
    y = f.eye_y - r0
    for s in (-1, 1):
        ex = f.cx + s * f.ed
        xs = ex + ew * _EYE_U
        fill(eyes_mask, np.concatenate([xs, xs[::-1]]),
             np.concatenate([y - f.uh * _EYE_ENV, (y + f.lh * _EYE_ENV)[::-1]]), 255)
        ellipse(eyes_img, ex + gx, y + gy, ir, ir, iris)
        ellipse(eyes_img, ex + gx, y + gy, ir * 0.45, ir * 0.45, (15, 15, 15))
        ellipse(eyes_img, ex + gx + ir * 0.3, y + gy - ir * 0.3, ir * 0.16, ir * 0.16, (245, 245, 245))
    a = eyes_mask.astype(np.float32) * (1 / 255.0)
    f.img[r0:r1] = cv2.blendLinear(eyes_img, f.img[r0:r1], a, 1.0 - a)
    lid = as_color(np.minimum(f.skin * 0.3, 50))
    for s in (-1, 1):
        xs = f.cx + s * f.ed + ew * _EYE_U
        line(f.img, xs, f.eye_y - f.uh * _EYE_ENV, lid, 3)
        line(f.img, xs[3:-3], (f.eye_y + f.lh * _EYE_ENV)[3:-3], as_color(f.skin * 0.65), 1)
        if p["eye_lower"] < -0.3 and p["cheek"] > 0.3:  # raised cheeks under smiling eyes
            line(f.img, xs[2:-2], (f.eye_y + f.lh * _EYE_ENV + ew * 0.45)[2:-2], as_color(f.skin * 0.82), 1)


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
        tapered(img, bx, by, bt * 1.1, bt * 0.55, as_color(brow_col))
    top_brow = base - max(p["brow_inner"], 0) * hh - bt
    if p["forehead"] > 0.25:
        fc = as_color(skin * (1 - 0.2 * min(p["forehead"], 1.2)))
        for k in range(1, 4):
            yk = top_brow - k * hh * 0.09
            if yk > f.hairline + 3:
                xs = cx + hw * 0.45 * np.linspace(-1, 1, 9)
                line(img, xs, yk - hh * 0.03 * (1 - np.linspace(-1, 1, 9) ** 2), fc, 1)
    if p["glabella"] > 0.25:
        gc = as_color(skin * (1 - 0.3 * min(p["glabella"], 1.2)))
        for s in (-1, 1):
            line(img, np.array([cx + s * ew * 0.35, cx + s * ew * 0.3]),
                 np.array([base - hh * 0.02, base + hh * 0.12]), gc, 2)


def _draw_nose(rng: np.random.Generator, f: _Portrait) -> None:
    """Nose bridge, tip and nostrils; wrinkles across it (disgust)."""
    p, img, skin, cx, hh = f.p, f.img, f.skin, f.cx, f.hh
    f.y_nose = y_nose = f.cy + hh * rng.uniform(0.22, 0.3) - 0.05 * hh * p["nose_wrinkle"]
    f.nw = nw = f.hw * rng.uniform(0.18, 0.25)
    nshade = as_color(skin * 0.72)
    side = rng.choice([-1, 1])
    line(img, np.array([cx + side * nw * 0.35, cx + side * nw * 0.55, cx + side * nw * 0.2]),
         np.array([f.eye_y + 0.05 * hh, y_nose - 0.1 * hh, y_nose]), as_color(skin * 0.82), 2)
    ellipse(img, cx, y_nose, nw, nw * 0.45, nshade, 2, 0, 20, 160)
    for s in (-1, 1):
        ellipse(img, cx + s * nw * 0.45, y_nose + nw * 0.08, nw * 0.22, nw * 0.13, as_color(skin * 0.45))
    if p["nose_wrinkle"] > 0.25:
        wc = as_color(skin * (1 - 0.3 * min(p["nose_wrinkle"], 1.2)))
        for k in range(3):
            yk = f.eye_y + hh * (0.05 + 0.06 * k)
            line(img, np.array([cx - nw * 0.55, cx, cx + nw * 0.55]), np.array([yk + 2, yk - 1.5, yk + 2]), wc, 1)


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
    lip_col = as_color(skin * np.array([0.72, 0.68, 0.95]) * rng.uniform(0.85, 1.0))
    if p["cheek"] > 0.25:
        fc = as_color(skin * (1 - 0.22 * min(p["cheek"], 1.2)))
        for s in (-1, 1):
            line(img, np.array([cx + s * nw * 1.1, cx + s * (mw + nw) * 0.75, mx0 + s * mw * 1.12]),
                 np.array([f.y_nose, (f.y_nose + centre[0]) / 2, centre[0 if s < 0 else -1] + 2]), fc, 1)
    fill(img, np.concatenate([xs, xs[::-1]]), np.concatenate([yuo, ylo[::-1]]), lip_col)
    dark = (40, 25, 55)
    if (yl - yu).max() <= 1.2:
        line(img, xs, (yu + yl) / 2, dark, 2)
        return
    fill(img, np.concatenate([xs, xs[::-1]]), np.concatenate([yu, yl[::-1]]), dark)
    teeth = as_color(np.array([225, 235, 240], np.float32) * rng.uniform(0.85, 1.0))
    k = np.abs(u) < 0.8
    if p["teeth_u"]:
        fill(img, np.concatenate([xs[k], xs[k][::-1]]),
             np.concatenate([yu[k], np.minimum(yu[k] + mw * 0.14, yl[k])[::-1]]), teeth)
    if p["teeth_l"]:
        fill(img, np.concatenate([xs[k], xs[k][::-1]]),
             np.concatenate([np.maximum(yl[k] - mw * 0.1, yu[k]), yl[k][::-1]]), teeth)


def _draw_glasses(rng: np.random.Generator, f: _Portrait) -> None:
    """Glasses, on 7% of faces."""
    if rng.random() >= 0.07:
        return
    gcol = as_color(rng.uniform(10, 90, 3))
    cx, ed, ew, eye_y = f.cx, f.ed, f.ew, f.eye_y
    for s in (-1, 1):
        ellipse(f.img, cx + s * ed, eye_y, ew * 1.45, ew * 1.05, gcol, 2)
    line(f.img, np.array([cx - ed + ew * 1.45, cx + ed - ew * 1.45]), np.array([eye_y - 2, eye_y - 2]), gcol, 2)


def _light_and_pose(rng: np.random.Generator, f: _Portrait, shade: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lighting (``shade`` and a directional gradient), then the pose: a small rotation, scale and
    offset of the face inside its box. Returns ``(bgr, alpha)``."""
    cx, cy = f.cx, f.cy
    ang = rng.uniform(0, 2 * np.pi)
    grad = 1 + rng.uniform(-0.45, 0.45) * ((_GX - cx) * np.cos(ang) + (_GY - cy) * np.sin(ang)) / BOX
    gain = cv2.resize((shade * grad * rng.uniform(0.85, 1.12)).astype(np.float32), (CANVAS, CANVAS),
                      interpolation=cv2.INTER_LINEAR)
    img = cv2.multiply(f.img, cv2.merge([gain, gain, gain]), dtype=cv2.CV_8U)
    angle = float(np.clip(rng.normal(0, 6), -16, 16))
    scale = rng.uniform(0.86, 1.06)
    m = cv2.getRotationMatrix2D((cx, cy), angle, scale)
    m[0, 2] += rng.uniform(-0.05, 0.05) * BOX
    m[1, 2] += rng.uniform(-0.05, 0.05) * BOX
    img = cv2.warpAffine(img, m, (CANVAS, CANVAS), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    alpha = cv2.warpAffine(f.alpha, m, (CANVAS, CANVAS), flags=cv2.INTER_LINEAR, borderValue=0)
    return img, alpha

