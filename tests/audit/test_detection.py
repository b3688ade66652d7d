"""Face detection: OpenCV's Haar cascade from the wheel, boxes in image pixels (no TensorFlow)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ferreport.audit.detection import DEFAULT_PARAMS, DetectorParams, box_iou, cascade, cascade_path, detect_faces
from ferreport.datasets.sample import draw_face


def _scene(seed: int, h: int, w: int, face: int, top: int, left: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.uint8)
    img[:] = rng.integers(90, 200, 3, dtype=np.uint8)
    img[top:top + face, left:left + face] = draw_face(rng, int(seed % 7), face)
    return img




def test_the_cascade_ships_with_opencv_and_loads_once():
    assert cascade_path().endswith("haarcascade_frontalface_default.xml")
    assert cascade() is cascade()
    assert not cascade().empty()


def _found_scene() -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A generated scene in which the cascade finds the drawn face (the drawings are cartoons)."""
    for seed in range(12):
        top, left, side = 60 + 7 * seed, 150 + 11 * seed, 150
        img = _scene(seed, 360, 520, side, top, left)
        boxes = detect_faces(img)
        if boxes:
            return img, (top, left, left + side, top + side)
    pytest.fail("the cascade found no drawn face in 12 generated scenes")


def test_drawn_faces_in_scenes_are_found_where_they_are():
    hits = 0
    for seed in range(9):
        top, left, side = 60 + 7 * seed, 150 + 11 * seed, 150
        boxes = detect_faces(_scene(seed, 360, 520, side, top, left))
        truth = (top, left, left + side, top + side)
        for t, l, r, b in boxes:
            assert 0 <= t < b <= 360 and 0 <= l < r <= 520  # clipped to the image
            assert box_iou((t, l, r, b), truth) > 0.3          # no box on the plain background
        hits += bool(boxes)
    # the generator draws cartoon faces; the cascade (trained on photographs) finds about half
    assert hits >= 3, hits


def test_large_images_are_searched_downscaled_and_boxes_come_back_in_full_resolution():
    small, _ = _found_scene()
    big = cv2.resize(small, None, fx=6, fy=6, interpolation=cv2.INTER_LINEAR)  # 2160 x 3120
    a, b = detect_faces(small), detect_faces(big)
    assert a and b
    assert box_iou(tuple(6 * v for v in a[0]), b[0]) > 0.6


def test_no_face_in_a_plain_or_tiny_image_and_other_channel_layouts_work():
    assert detect_faces(np.full((300, 400, 3), 128, np.uint8)) == []
    assert detect_faces(np.zeros((3, 5, 3), np.uint8)) == []
    face = draw_face(np.random.default_rng(1), 3, 120)
    gray = cv2.cvtColor(face, cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(face, cv2.COLOR_BGR2BGRA)
    assert detect_faces(gray) == detect_faces(face) == detect_faces(bgra)
    with pytest.raises(ValueError):
        detect_faces(np.zeros((0, 0, 3), np.uint8))


def test_margin_enlarges_boxes_and_params_are_recorded():
    img, _ = _found_scene()
    plain = detect_faces(img)
    wide = detect_faces(img, DetectorParams(margin=0.2))
    assert plain and wide
    (t0, l0, r0, b0), (t1, l1, r1, b1) = plain[0], wide[0]
    assert t1 < t0 and l1 < l0 and r1 > r0 and b1 > b0
    params = DEFAULT_PARAMS.to_dict()
    assert params["cascade"] == "haarcascade_frontalface_default.xml" and params["min_neighbors"] == 5
