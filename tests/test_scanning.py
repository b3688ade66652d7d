"""ferreport.scanning: the folder walk and the image-format check both audit engines share (no TensorFlow)."""

from __future__ import annotations

import os

import cv2
import numpy as np

from ferreport.scanning import FOLDER_LINK, sniff, walk_folder


def test_walk_is_sorted_does_not_follow_folder_links_and_leaves_the_output_out(tmp_path):
    root = tmp_path / "r"
    for rel in ("b/2.png", "b/1.png", "a.png", "c/x/y.png", "out/report.png"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    os.symlink(root, root / "loop")
    skipped: list[tuple[str, str]] = []
    files = [rel for rel, _ in walk_folder(root, lambda r, why: skipped.append((r, why)), exclude=root / "out")]
    assert files == ["a.png", "b/1.png", "b/2.png", "c/x/y.png"]
    assert skipped == [("loop", FOLDER_LINK)]


def test_sniff_takes_only_the_five_formats():
    img = np.zeros((8, 8, 3), np.uint8)
    for ext, kind in ((".jpg", "jpeg"), (".png", "png"), (".bmp", "bmp"), (".webp", "webp"), (".tiff", "tiff")):
        assert sniff(cv2.imencode(ext, img)[1].tobytes()[:16]) == kind
    assert sniff(cv2.imencode(".gif", img)[1].tobytes()[:16]) is None
    assert sniff(b"hello world") is None and sniff(b"") is None
