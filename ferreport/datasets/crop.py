"""Face cropping: a box of a decoded image to a 64x64 RGB face, and the decode-once, crop-every-box worker.

:func:`crop_face` crops a full-size image. :func:`decode_and_crop` decodes each image once,
at 1/2, 1/4 or 1/8 of its size when every box is large enough (libjpeg's DCT-domain
downscaling), and crops all its boxes; a box whose clipping the reduced image cannot tell
sends the image back to a full-size decode, so the faces are the same either way.
"""

from __future__ import annotations

import cv2
import numpy as np

from ferreport.constants import FACE_SIZE
from ferreport.datasets.decode import decode_reduced
from ferreport.datasets.skips import BOX_OUTSIDE_IMAGE, UNREADABLE_IMAGE

__all__ = ["CropResult", "CropTask", "crop_face", "decode_and_crop"]


def crop_face(image_bgr: np.ndarray, top: int, left: int, right: int, bottom: int,
              size: int = FACE_SIZE) -> tuple[np.ndarray | None, bool]:
    """Crop ``img[top:bottom, left:right]`` clipped to the image, resize (INTER_AREA), BGR->RGB.

    Returns ``(face, clipped)``; ``face`` is None when the box lies wholly outside.
    The box ``0 0 -1 -1`` means the whole image (any other negative box lies outside).
    """
    h, w = image_bgr.shape[:2]
    if (top, left, right, bottom) == (0, 0, -1, -1):
        top, left, right, bottom = 0, 0, w, h
    t, l, r, b = max(0, top), max(0, left), min(w, right), min(h, bottom)
    clipped = (t, l, r, b) != (top, left, right, bottom)
    if t >= b or l >= r:
        return None, clipped
    crop = image_bgr[t:b, l:r]
    face = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(face, cv2.COLOR_BGR2RGB), clipped


#: A task: (image path, [(row position, top, left, right, bottom), ...])
CropTask = tuple[str, list[tuple[int, int, int, int, int]]]
#: A worker's result: (row positions, their faces, [(row position, skip reason), ...], clipped row positions)
CropResult = tuple[list[int], np.ndarray, list[tuple[int, str]], list[int]]


def decode_and_crop(tasks: list[CropTask], size: int) -> CropResult:
    """Worker: decode each image once and crop all its faces."""
    positions: list[int] = []
    faces: list[np.ndarray] = []
    failures: list[tuple[int, str]] = []
    clipped: list[int] = []
    for path, boxes in tasks:
        img, why, factor = decode_reduced(path, _reduction(boxes, size))
        if img is not None and factor > 1 and not _reduced_is_safe(img, factor, boxes):
            img, why, factor = decode_reduced(path)
        if img is None:
            failures.extend((pos, f"{UNREADABLE_IMAGE}: {why}") for pos, *_ in boxes)
            continue
        for pos, top, left, right, bottom in boxes:
            if factor > 1:
                face, was_clipped = _crop_reduced(img, factor, top, left, right, bottom, size)
            else:
                face, was_clipped = crop_face(img, top, left, right, bottom, size)
            if face is None:
                failures.append((pos, BOX_OUTSIDE_IMAGE))
                continue
            positions.append(pos)
            faces.append(face)
            if was_clipped:
                clipped.append(pos)
    stacked = np.stack(faces) if faces else np.zeros((0, size, size, 3), np.uint8)
    return positions, stacked, failures, clipped


def _reduction(boxes: list[tuple[int, int, int, int, int]], size: int) -> int:
    """Largest JPEG reduction (8, 4, 2, else 1) that leaves every box at least ``size`` px a side."""
    if any(r < 0 or b < 0 for _, _, _, r, b in boxes):  # whole-image boxes: size unknown before decoding
        return 1
    side = min(min(b - t, r - l) for _, t, l, r, b in boxes)
    for f in (8, 4, 2):
        if side >= f * size:
            return f
    return 1


def _reduced_is_safe(img: np.ndarray, factor: int, boxes: list[tuple[int, int, int, int, int]]) -> bool:
    """Whether every box's clipping is known from the reduced image.

    A JPEG of width W decodes at 1/f to ``ceil(W / f)`` columns, so W is only known to
    lie in ``(f * (w - 1), f * w]``; a box whose right/bottom edge falls in that range might
    or might not be clipped, and the image is then decoded at full size instead.
    """
    h, w = img.shape[:2]
    return all(r <= factor * (w - 1) + 1 and b <= factor * (h - 1) + 1 for _, _, _, r, b in boxes)


def _crop_reduced(img: np.ndarray, factor: int, top: int, left: int, right: int, bottom: int,
                  size: int) -> tuple[np.ndarray | None, bool]:
    """:func:`crop_face` on an image decoded at ``1/factor``: the box (clipped at full size) is scaled by 1/factor."""
    t, l = max(0, top), max(0, left)
    clipped = (t, l) != (top, left)  # right/bottom are inside (checked by _reduced_is_safe)
    if t >= bottom or l >= right:
        return None, clipped
    h, w = img.shape[:2]
    rt, rl = min(h - 1, round(t / factor)), min(w - 1, round(l / factor))
    rb, rr = max(rt + 1, min(h, round(bottom / factor))), max(rl + 1, min(w, round(right / factor)))
    face = cv2.resize(img[rt:rb, rl:rr], (size, size), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(face, cv2.COLOR_BGR2RGB), clipped
