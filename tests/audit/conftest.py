"""Fixtures of the audit tests: a tiny real Keras model in a run folder, and folders of images."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from ferreport.constants import CLASS_NAMES
from ferreport.datasets.sample import draw_face
from ferreport.models.contract import ModelContract, write_contract
from ferreport.runs import folder as artifacts
from tests.audit.folders import EVIL, scene, two_face_scene, write_image


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny untrained model mapping (N, 64, 64, 3) to (N, 7), inside a run directory."""
    from ferreport.models.model_file import keras

    run = tmp_path_factory.mktemp("modelrun")
    inputs = keras.Input((64, 64, 3))
    x = keras.layers.Conv2D(4, 5, strides=4, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(7, activation="softmax")(keras.layers.Dense(8, activation="relu")(x))
    keras.Model(inputs, outputs).save(run / artifacts.MODEL)
    write_contract(run / artifacts.MODEL, ModelContract())  # as ferreport's own models: the contract is declared
    summary = {"splits": {"train": {c: 10 * (i + 1) for i, c in enumerate(CLASS_NAMES)}},
               "train_balanced": {c: 70 for c in CLASS_NAMES}}
    (run / artifacts.DATA_SUMMARY).write_text(json.dumps(summary))
    return run


@pytest.fixture(scope="module")
def messy_folder(tmp_path_factory) -> Path:
    """Photos with a face, cropped faces, odd names and files that must be skipped."""
    root = tmp_path_factory.mktemp("messy") / "photos"
    rng = np.random.default_rng(5)
    for i in range(3):
        write_image(root / "scenes" / f"scene {i}.jpg", scene(rng, i))
    write_image(root / "crops" / "face_a.png", draw_face(rng, 3, 96))
    write_image(root / "crops" / "deeper" / "face_b.bmp", draw_face(rng, 4, 72))
    write_image(root / "crops" / "face_c.webp", draw_face(rng, 5, 80))
    write_image(root / "crops" / "face_d.TIFF", draw_face(rng, 6, 64))
    write_image(root / f"{EVIL} ünïcødé & co.png", draw_face(rng, 0, 64))
    write_image(root / "new\nline.jpg", draw_face(rng, 1, 64))
    write_image(root / "plain wall.jpg", np.full((200, 300, 3), 140, np.uint8))
    (root / "notes.txt").write_text("not an image")
    (root / "text.jpg").write_text("this is text, not a JPEG")
    (root / "zero.png").write_bytes(b"")
    write_image(root / "anim.gif", draw_face(rng, 2, 64))
    ok, png = cv2.imencode(".png", draw_face(rng, 2, 64))
    (root / "png_named.jpg").write_bytes(png.tobytes())                   # content decides: a PNG is fine
    jpg = cv2.imencode(".jpg", scene(rng, 3))[1].tobytes()
    (root / "truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    (root / "bad\udcffname.png").write_bytes(png.tobytes())               # not valid UTF-8 on disk
    os.symlink(root, root / "loop")                                       # a symlink loop
    return root


@pytest.fixture(scope="module")
def labelled_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("labelled") / "faces"
    rng = np.random.default_rng(11)
    for label, name in enumerate(CLASS_NAMES):
        folder = root / ("Happy" if name == "happy" else name)              # matched case-insensitively
        for i in range(3):
            write_image(folder / f"{name}_{i}.png", draw_face(rng, label, 64 + 8 * i))
    write_image(root / "unsorted" / "extra.png", draw_face(rng, 2, 64))      # outside a class folder: no label
    return root


@pytest.fixture(scope="module")
def two_face_folder(tmp_path_factory) -> Path:
    """The two-face scene labelled (happy/), unlabelled (top level) and beside single faces."""
    root = tmp_path_factory.mktemp("twofaces") / "photos"
    rng = np.random.default_rng(3)
    write_image(root / "happy" / "two.png", two_face_scene())
    write_image(root / "sad" / "one.png", scene(rng, 4))
    # a texture with no face (BlazeFace, the default detector, finds even a 64 px drawn face crop,
    # which the cascade missed): no detection, so a fallback in auto
    write_image(root / "sad" / "crop.png", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    write_image(root / "group.png", two_face_scene())                         # no label: every face kept
    return root
