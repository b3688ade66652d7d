from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from ferreport import loading
from ferreport.errors import DatasetError
from ferreport.preprocessing import crop_face, decode_image, prepare_dataset

from .conftest import make_expw


def test_faces_are_64x64_rgb_uint8_and_match_a_manual_crop(tiny_expw):
    prepared = prepare_dataset(tiny_expw)
    assert prepared.faces.shape == (8, 64, 64, 3) and prepared.faces.dtype == np.uint8
    img = cv2.imread(str(tiny_expw / "image" / "origin" / "img_0.jpg"))
    expected = cv2.cvtColor(cv2.resize(img[10:80, 20:90], (64, 64), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    row = prepared.index.index[prepared.index.key == "img_0.jpg#0"][0]
    np.testing.assert_array_equal(prepared.faces[row], expected)


def test_box_past_the_border_is_clipped_not_dropped(tiny_expw):
    prepared = prepare_dataset(tiny_expw)
    row = prepared.index[prepared.index.key == "img_3.jpg#1"]
    assert len(row) == 1 and bool(row.clipped.iloc[0])
    assert prepared.index.clipped.sum() == 1


def test_multi_face_image_gives_two_faces(tiny_expw):
    prepared = prepare_dataset(tiny_expw)
    assert sorted(prepared.index[prepared.index.source == "img_3.jpg"].face_id) == [0, 1]


def test_second_prepare_hits_the_cache(tiny_expw, tmp_path):
    first = prepare_dataset(tiny_expw, cache_root=tmp_path / "c")
    second = prepare_dataset(tiny_expw, cache_root=tmp_path / "c")
    assert not first.cache_hit and second.cache_hit
    np.testing.assert_array_equal(first.faces, second.faces)
    assert first.fingerprint == second.fingerprint
    # the cache is keyed by the label file: a changed label misses
    lst = tiny_expw / "label" / "label.lst"
    lst.write_text(lst.read_text().replace(" 6\n", " 5\n"))
    third = prepare_dataset(tiny_expw, cache_root=tmp_path / "c")
    assert not third.cache_hit and third.fingerprint != first.fingerprint


def test_broken_cache_is_rebuilt(tiny_expw, tmp_path):
    first = prepare_dataset(tiny_expw, cache_root=tmp_path / "c")
    with open(first.cache_dir / "faces.npy", "r+b") as fh:
        fh.truncate(100)
    again = prepare_dataset(tiny_expw, cache_root=tmp_path / "c")
    assert not again.cache_hit and again.faces.shape[0] == 8


def test_unreadable_images_are_counted(tmp_path):
    root = make_expw(tmp_path / "d", ["a.jpg 0 0 0 50 50 1 3", "bad.jpg 0 0 0 50 50 1 3", "empty.jpg 0 0 0 50 50 1 3"],
                     {"a.jpg": (60, 60)})
    (root / "image" / "origin" / "bad.jpg").write_text("this is not a jpeg")
    (root / "image" / "origin" / "empty.jpg").write_bytes(b"")
    prepared = prepare_dataset(root)
    assert len(prepared.index) == 1
    assert prepared.skipped == {f"{loading.UNREADABLE_IMAGE}: cannot decode": 1, f"{loading.UNREADABLE_IMAGE}: empty file": 1}
    with pytest.raises(DatasetError, match="bad.jpg"):
        prepare_dataset(root, strict=True, cache_root=tmp_path / "strict")


def test_box_wholly_outside_is_skipped(tmp_path):
    root = make_expw(tmp_path / "d", ["a.jpg 0 0 0 50 50 1 3", "a.jpg 1 500 500 600 600 1 2"], {"a.jpg": (60, 60)})
    prepared = prepare_dataset(root)
    assert len(prepared.index) == 1 and prepared.skipped == {loading.BOX_OUTSIDE_IMAGE: 1}


def test_parallel_decode_equals_serial(sample_dataset, tmp_path):
    serial = prepare_dataset(sample_dataset, workers=1, cache_root=tmp_path / "a")
    parallel = prepare_dataset(sample_dataset, workers=2, cache_root=tmp_path / "b")
    np.testing.assert_array_equal(serial.faces, parallel.faces)
    assert serial.index.key.tolist() == parallel.index.key.tolist()


def test_decode_handles_alpha_gray_and_16bit(tmp_path):
    rgba = np.zeros((20, 30, 4), np.uint8); rgba[..., 2] = 255; rgba[..., 3] = 128
    gray = np.full((20, 30), 77, np.uint8)
    deep = np.full((20, 30, 3), 65535, np.uint16)
    for name, arr in (("a.png", rgba), ("g.png", gray), ("d.png", deep)):
        cv2.imwrite(str(tmp_path / name), arr)
        img, why = decode_image(tmp_path / name)
        assert why == "" and img.shape == (20, 30, 3) and img.dtype == np.uint8
    assert decode_image(tmp_path / "g.png")[0][0, 0].tolist() == [77, 77, 77]


def test_crop_whole_image_when_box_is_minus_one():
    img = np.zeros((10, 20, 3), np.uint8)
    face, clipped = crop_face(img, 0, 0, -1, -1)
    assert face.shape == (64, 64, 3) and not clipped


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_worker_whose_parent_already_died_leaves_at_once():
    """exit_with_parent closes the race of a parent killed before the death signal was armed."""
    code = "import os, sys; from ferreport.preprocessing import exit_with_parent; " \
           "exit_with_parent(int(sys.argv[1])); print('alive')"
    alive = subprocess.run([sys.executable, "-c", code, str(os.getpid())], capture_output=True, text=True,
                           timeout=120)
    assert alive.returncode == 0 and alive.stdout.strip() == "alive", alive.stderr
    orphan = subprocess.run([sys.executable, "-c", code, str(os.getpid() + 1_000_000)], capture_output=True,
                            text=True, timeout=120)
    assert orphan.returncode == 1 and "alive" not in orphan.stdout, orphan.stderr
