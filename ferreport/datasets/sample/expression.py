"""How each class shows on a face: the expression's parameters (brows, eyes, mouth, wrinkles).

Class deltas at full intensity, scaled by a per-face intensity, plus per-face noise, so that
neighbouring classes (angry/disgust, fear/surprise, neutral/sad) overlap.
"""

from __future__ import annotations

from typing import Any

import numpy as np

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


def expression_params(rng: np.random.Generator, label: int) -> dict[str, Any]:
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

