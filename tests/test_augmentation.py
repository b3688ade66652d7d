"""Training augmentation: the OpenCV engine against the Keras layers it stands in for."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ferreport.architectures import augmentation_layers
from ferreport.augmentation import (
    AugmentationDraws,
    augment_faces,
    augmentation_matrices,
    draw_augmentation,
    opencv_single_threaded,
)
from ferreport.constants import AUGMENTATION
from ferreport.model import tf


def smooth_faces(n: int, seed: int = 0) -> np.ndarray:
    """uint8 faces of smooth shapes (a lit ellipse on a gradient), different per face and channel."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32)
    faces = np.empty((n, 64, 64, 3), np.uint8)
    for i in range(n):
        cx, cy, a, b = rng.uniform(20, 44), rng.uniform(20, 44), rng.uniform(10, 22), rng.uniform(10, 22)
        blob = np.exp(-(((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2))
        for c in range(3):
            g = rng.uniform(-1, 1, 2)
            faces[i, :, :, c] = np.clip(40 + 150 * blob * rng.uniform(0.5, 1) + 20 * (g[0] * xx + g[1] * yy) / 64,
                                        0, 255).astype(np.uint8)
    return faces


def keras_reference(faces: np.ndarray, draws: AugmentationDraws) -> np.ndarray:
    """The same draws pushed through the Keras preprocessing layers' own transforms."""
    rot, shift, shear, zoom, flip = augmentation_layers((1, 2, 3, 4, 5))
    n = len(faces)
    x = tf.constant(faces.astype(np.float32) / 255.0)
    zeros, ones = tf.zeros([n]), tf.ones([n])
    matrix = rot._compute_affine_matrix(center_x=0.5, center_y=0.5, angle=tf.constant(draws.angle, tf.float32),
                                        translate_x=zeros, translate_y=zeros, scale=ones, shear_x=zeros,
                                        shear_y=zeros, height=64, width=64)
    x = rot.transform_images(x, {"rotation_matrix": matrix}, training=True)
    x = shift.transform_images(x, {"translations": tf.constant(draws.shift, tf.float32), "input_shape": x.shape},
                               training=True)
    x = shear.transform_images(
        x, {"shear_factor": tf.constant(np.stack([draws.shear, np.zeros(n)], 1), tf.float32),
            "input_shape": x.shape}, training=True)
    x = zoom.transform_images(x, {"width_zoom": tf.constant(draws.zoom[:, :1], tf.float32),
                                  "height_zoom": tf.constant(draws.zoom[:, 1:], tf.float32)}, training=True)
    x = flip.transform_images(x, {"flips": tf.constant(draws.flip.reshape(-1, 1, 1, 1)), "input_shape": x.shape},
                              training=True)
    return np.clip(x.numpy(), 0.0, 1.0)


def test_augmentation_matches_the_keras_layers_for_the_same_draws():
    faces = smooth_faces(24)
    draws = draw_augmentation(np.random.default_rng(7), len(faces), 64, 64)
    assert draws.flip.any() and not draws.flip.all()
    ours = augment_faces(faces, draws)
    ref = keras_reference(faces, draws)
    assert ours.dtype == np.float32 and ours.shape == faces.shape
    moved = np.abs(ref - faces / 255.0).mean()
    diff = np.abs(ours - ref)
    assert moved > 0.02  # the draws really transform the faces ...
    assert diff.mean() < 0.002 and diff.max() < 0.03  # ... and both engines transform them alike


@pytest.mark.parametrize("part", ["angle", "shift", "shear", "zoom", "flip"])
def test_each_transform_alone_matches_keras(part):
    """One transform at a time, so a wrong sign or centre in any single map shows."""
    faces = smooth_faces(6, seed=1)
    n = len(faces)
    identity = dict(angle=np.zeros(n), shift=np.zeros((n, 2)), shear=np.zeros(n), zoom=np.ones((n, 2)),
                    flip=np.zeros(n, bool))
    values = dict(angle=np.full(n, 12.0), shift=np.tile([5.0, -4.0], (n, 1)), shear=np.full(n, 0.09),
                  zoom=np.tile([0.9, 1.08], (n, 1)), flip=np.ones(n, bool))
    draws = AugmentationDraws(**{**identity, part: values[part]})
    ours, ref = augment_faces(faces, draws), keras_reference(faces, draws)
    assert np.abs(ref - faces / 255.0).mean() > 0.005
    assert np.abs(ours - ref).max() < 0.03


def test_identity_draws_leave_faces_exactly_unchanged():
    faces = smooth_faces(4)
    n = len(faces)
    draws = AugmentationDraws(np.zeros(n), np.zeros((n, 2)), np.zeros(n), np.ones((n, 2)), np.zeros(n, bool))
    np.testing.assert_array_equal(augment_faces(faces, draws), faces.astype(np.float32) * np.float32(1 / 255))
    before = faces.copy()
    augment_faces(faces, draw_augmentation(np.random.default_rng(0), n, 64, 64))
    np.testing.assert_array_equal(faces, before)  # the input is never written


def test_draws_follow_the_configured_ranges_and_the_seed():
    a = draw_augmentation(np.random.default_rng(3), 4000, 64, 48)
    b = draw_augmentation(np.random.default_rng(3), 4000, 64, 48)
    for field in ("angle", "shift", "shear", "zoom", "flip"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    r, t, s, z = (AUGMENTATION[k] for k in ("rotation_degrees", "translation", "shear", "zoom"))
    assert np.abs(a.angle).max() <= r and np.abs(a.angle).max() > 0.95 * r
    assert np.abs(a.shift[:, 0]).max() <= t * 48 and np.abs(a.shift[:, 1]).max() <= t * 64  # (dx, dy): width, height
    assert np.abs(a.shift[:, 1]).max() > 0.95 * t * 64
    assert np.abs(a.shear).max() <= s and np.abs(a.zoom - 1).max() <= z
    assert 0.45 < a.flip.mean() < 0.55
    assert augmentation_matrices(a, 64, 48).shape == (4000, 4, 2, 3)


def test_draw_count_must_match_faces():
    with pytest.raises(ValueError, match="3 draws for 2 faces"):
        augment_faces(smooth_faces(2), draw_augmentation(np.random.default_rng(0), 3, 64, 64))


def test_opencv_single_threaded_restores_the_pool_size():
    before = cv2.getNumThreads()
    with opencv_single_threaded():
        assert cv2.getNumThreads() == 1
    assert cv2.getNumThreads() == before
    with pytest.raises(RuntimeError), opencv_single_threaded():
        raise RuntimeError("boom")
    assert cv2.getNumThreads() == before
