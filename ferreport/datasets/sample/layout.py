"""Where the faces sit in one picture: box sides, the picture's size, and boxes that run past
its border (as some of ExpW's do). Decides geometry only; nothing is drawn here."""

from __future__ import annotations

import math

import numpy as np

#: Box sides (px) of generated faces: 46 is ExpW's smallest; the real maximum (1,870) is
#: capped to keep generation fast.
MIN_SIDE, MAX_SIDE = 46, 400
#: Picture sides (px).
MIN_IMAGE, MAX_IMAGE = 120, 800


def _side(rng: np.random.Generator, hi: int = MAX_SIDE) -> int:
    """A box side: log-normal around 105 px, within ``MIN_SIDE..hi``."""
    return int(np.clip(round(math.exp(rng.normal(math.log(105), 0.45))), MIN_SIDE, max(MIN_SIDE, hi)))


def single_face_layout(rng: np.random.Generator, out_of_border: bool) -> tuple[int, int, list[tuple[int, int, int]]]:
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


def group_layout(rng: np.random.Generator, k: int) -> tuple[int, int, list[tuple[int, int, int]]]:
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
