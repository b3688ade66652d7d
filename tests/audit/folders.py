"""Image folders the audit tests share: faces drawn by the sample generator, written as real files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ferreport.datasets.sample import draw_face

EVIL = "<script>alert(1)</script>"
FAST = {"n_resamples": 20, "formats": ("html",), "workers": 1}


def write_image(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix if path.suffix.lower() in (".jpg", ".png", ".bmp", ".webp", ".tif",
                                                                     ".tiff", ".gif") else ".png", img)
    assert ok
    buf.tofile(str(path))


def scene(rng: np.random.Generator, label: int) -> np.ndarray:
    img = np.empty((300, 420, 3), np.uint8)
    img[:] = rng.integers(90, 200, 3, dtype=np.uint8)
    img[60:210, 130:280] = draw_face(rng, label, 150)
    return img


def two_face_scene(seed: int = 6) -> np.ndarray:
    """Two drawn faces, a large one (180 px, left) and a small one (120 px, right); the cascade
    finds both for seed 6 (checked in test_a_two_face_scene_is_found_twice)."""
    rng = np.random.default_rng(seed)
    img = np.empty((360, 640, 3), np.uint8)
    img[:] = rng.integers(90, 200, 3, dtype=np.uint8)
    img[60:240, 40:220] = draw_face(rng, 3, 180)
    img[100:220, 400:520] = draw_face(rng, 5, 120)
    return img
