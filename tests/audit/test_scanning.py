"""ferreport.audit.scanning: the folder walk and the image-format check both audit engines share (no TensorFlow)."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from ferreport.audit.scanning import FOLDER_LINK, NOT_REGULAR, scan_files, sniff, walk_folder


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


@pytest.mark.timeout(30)
def test_fifo_device_link_and_partial_jpeg_are_skipped_with_a_reason_never_opened(tmp_path):
    """A FIFO named x.jpg used to hang the audit forever in open()."""
    from ferreport.datasets import decode

    os.mkfifo(tmp_path / "x.jpg")
    (tmp_path / "zero.jpg").symlink_to("/dev/zero")
    (tmp_path / "link.png").symlink_to(tmp_path / "x.jpg")
    img = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8), (7, 7), 2)
    data = cv2.imencode(".jpg", img)[1].tobytes()
    sos = data.index(b"\xff\xda")
    (tmp_path / "cut.jpg").write_bytes(data[:sos + (len(data) - sos) // 3] + b"\xff\xd9")
    (tmp_path / "good.jpg").write_bytes(data)
    skipped: list[tuple[str, str]] = []
    files = list(walk_folder(tmp_path, lambda r, why: skipped.append((r, why))))
    assert [rel for rel, _ in files] == ["cut.jpg", "good.jpg", "link.png", "x.jpg", "zero.jpg"]
    results, faces = scan_files(list(enumerate(full for _, full in files)), "whole")
    reasons = {files[pos][0]: why for pos, why, _ in results}
    assert reasons == {"cut.jpg": decode.JPEG_PARTIAL, "good.jpg": "", "link.png": NOT_REGULAR,
                       "x.jpg": NOT_REGULAR, "zero.jpg": NOT_REGULAR}
    assert faces.shape == (1, 64, 64, 3)
