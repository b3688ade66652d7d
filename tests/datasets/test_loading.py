from __future__ import annotations

import os
import tracemalloc

import pytest

from ferreport import safe_io
from ferreport.datasets import class_folders, expw, skips
from ferreport.datasets.class_folders import read_class_folders
from ferreport.datasets.expw import read_label_file
from ferreport.datasets.loading import load_dataset
from ferreport.errors import DatasetError
from tests.conftest import make_expw, write_image


def test_parses_every_field(tiny_expw):
    result = load_dataset(tiny_expw)
    idx = result.index
    assert result.kind == "expw"
    assert len(idx) == 8
    first = idx.iloc[0]
    assert (first.source, first.face_id, first.top, first.left, first.right, first.bottom) == (
        "img_0.jpg", 0, 10, 20, 90, 80)
    assert first.confidence == pytest.approx(50.5)
    assert sorted(idx.label.unique()) == list(range(7))
    assert set(idx.key) == {f"img_{i}.jpg#0" for i in range(7)} | {"img_3.jpg#1"}
    assert (idx.group == idx.source).all()
    assert list(idx.line) == list(range(1, 9))


@pytest.mark.parametrize("line,reason", [
    ("img_0.jpg 0 10 20 90", expw.WRONG_FIELD_COUNT),
    ("img_0.jpg 0 10 twenty 90 80 1.0 3", expw.NON_NUMERIC),
    ("img_0.jpg 0 10 20.5 90 80 1.0 3", expw.NON_INTEGER_BOX),
    ("img_0.jpg 0 90 20 90 80 1.0 3", expw.EMPTY_BOX),
    ("img_0.jpg 0 10 80 20 80 1.0 3", expw.EMPTY_BOX),
    ("img_0.jpg 0 10 20 90 80 1.0 7", expw.BAD_LABEL),
    ("img_0.jpg 0 10 20 90 80 1.0 -1", expw.BAD_LABEL),
    ("../outside.jpg 0 10 20 90 80 1.0 3", expw.UNSAFE_PATH),
    ("/etc/passwd 0 10 20 90 80 1.0 3", expw.UNSAFE_PATH),
    ("nothere.jpg 0 10 20 90 80 1.0 3", expw.MISSING_IMAGE),
    ("img_1.jpg 0 10 20 90 80 1.0 3", expw.DUPLICATE),
])
def test_each_bad_line_is_skipped_with_its_reason(tmp_path, line, reason):
    good = ["img_0.jpg 5 10 20 90 80 1.0 3", "img_1.jpg 0 10 20 90 80 1.0 3"]
    root = make_expw(tmp_path / "d", [*good, line], {"img_0.jpg": (100, 100), "img_1.jpg": (100, 100)})
    result = load_dataset(root)
    assert len(result.index) == 2
    assert dict(result.skipped) == {reason: 1}
    assert result.examples[reason] == "label.lst:3"


def test_strict_names_file_and_line(tmp_path):
    root = make_expw(tmp_path / "d", ["img_0.jpg 0 10 20 90 80 1.0 3", "img_0.jpg 1 10 20 90 80 1.0 9"],
                     {"img_0.jpg": (100, 100)})
    with pytest.raises(DatasetError, match=r"label\.lst:2: label outside 0-6"):
        load_dataset(root, strict=True)


def test_crlf_bom_and_names_with_spaces(tmp_path):
    root = make_expw(tmp_path / "d", [], {"a photo.jpg": (100, 100)})
    (root / "label" / "label.lst").write_bytes(b"\xef\xbb\xbfa photo.jpg 0 10 20 90 80 1.5 4\r\n\r\n")
    idx = load_dataset(root).index
    assert list(idx.source) == ["a photo.jpg"] and list(idx.label) == [4]


def test_empty_label_file_is_a_clear_error(tmp_path):
    root = make_expw(tmp_path / "d", [], {})
    (root / "label" / "label.lst").write_text("")
    with pytest.raises(DatasetError, match="no lines"):
        load_dataset(root)


def test_symlink_escaping_the_dataset_is_not_followed(tmp_path):
    root = make_expw(tmp_path / "d", ["img_0.jpg 0 10 20 90 80 1.0 3", "link.jpg 0 10 20 90 80 1.0 3"],
                     {"img_0.jpg": (100, 100)})
    write_image(tmp_path / "secret.jpg", 100, 100)
    (root / "image" / "origin" / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    result = load_dataset(root)
    assert list(result.index.source) == ["img_0.jpg"]
    assert result.skipped[expw.MISSING_IMAGE] == 1


def test_missing_dataset_folder(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(tmp_path / "nope")


def test_class_folders(tmp_path):
    for cls, n in (("happy", 3), ("Sad", 2)):
        for i in range(n):
            write_image(tmp_path / cls / f"Jane_Doe_{i:04d}.png", 50, 40, seed=i)
    (tmp_path / "happy" / "notes.txt").write_text("x")
    (tmp_path / "unrelated").mkdir()
    result = read_class_folders(tmp_path)
    assert result.kind == "folders"
    assert sorted(result.index.label) == [3, 3, 3, 4, 4]
    assert set(result.index.group) == {"Jane_Doe"}
    assert result.skipped[class_folders.NOT_AN_IMAGE] == 1


def test_identity_group():
    assert class_folders.identity_group("happy/George_W_Bush_0012.jpg") == "George_W_Bush"
    assert class_folders.identity_group("x/IMG.jpg") == "IMG"
    assert class_folders.identity_group("x/0001.jpg") == "0001"


def test_no_dataset_here(tmp_path):
    (tmp_path / "random").mkdir()
    with pytest.raises(DatasetError, match="expected label/label.lst"):
        load_dataset(tmp_path)


# --------------------------------------------------------------------------- issue 20: only regular files, real boxes


def _expw_with_label(tmp_path, make_label) -> os.PathLike[str]:
    root = make_expw(tmp_path / "d", ["a.jpg 0 0 0 50 50 1 3"], {"a.jpg": (60, 60)})
    lst = root / "label" / "label.lst"
    lst.unlink()
    make_label(lst)
    return root


@pytest.mark.timeout(30)
def test_fifo_label_file_is_refused_without_opening(tmp_path):
    root = _expw_with_label(tmp_path, os.mkfifo)  # opening it for reading would block forever
    with pytest.raises(DatasetError, match=r"label\.lst: the label file is not a regular file") as err:
        load_dataset(root)
    assert "\n" not in str(err.value)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_label_file_linked_to_an_endless_device_is_refused(tmp_path, device):
    root = _expw_with_label(tmp_path, lambda p: p.symlink_to(device))
    with pytest.raises(DatasetError, match="not a regular file"):
        load_dataset(root)


@pytest.mark.timeout(30)
def test_label_file_over_the_limit_is_refused_before_reading(tmp_path):
    def sparse(path):  # a hole: no disk space, but stat says MAX_LABEL_BYTES + 1
        path.touch()
        os.truncate(path, expw.MAX_LABEL_BYTES + 1)

    root = _expw_with_label(tmp_path, sparse)
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError, match="larger than the 512 MiB limit"):
            load_dataset(root)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024


@pytest.mark.parametrize("box", ["-60 -60 -10 -10", "0 0 -1 -1", "-5 -5 -1 -1", "10 -20 0 40", "-20 10 40 0"])
def test_box_wholly_at_negative_coordinates_is_skipped_not_the_whole_image(tmp_path, box):
    root = make_expw(tmp_path / "d", ["a.jpg 0 0 0 50 50 1 3", f"a.jpg 1 {box} 1 2"], {"a.jpg": (60, 60)})
    result = load_dataset(root)
    assert list(result.index.face_id) == [0]
    assert result.skipped == {skips.BOX_OUTSIDE_IMAGE: 1} or box.startswith("0 0")  # 0 0 -1 -1 is an empty box
    with pytest.raises(DatasetError, match=r"label\.lst:2: "):
        load_dataset(root, strict=True)


def test_negative_box_under_strict_names_the_line_and_reason(tmp_path):
    root = make_expw(tmp_path / "d", ["a.jpg 0 0 0 50 50 1 3", "a.jpg 1 -60 -60 -10 -10 1 2"], {"a.jpg": (60, 60)})
    with pytest.raises(DatasetError, match=r"label\.lst:2: box entirely outside the image") as err:
        load_dataset(root, strict=True)
    assert "\n" not in str(err.value)


@pytest.mark.timeout(30)
def test_expw_images_that_are_not_regular_files_are_skipped_unopened(tmp_path):
    lines = ["a.jpg 0 0 0 50 50 1 3", "fifo.jpg 0 0 0 50 50 1 3", "link.jpg 0 0 0 50 50 1 3",
             "zero.jpg 0 0 0 50 50 1 3", "dir.jpg 0 0 0 50 50 1 3"]
    root = make_expw(tmp_path / "d", lines, {"a.jpg": (60, 60)})
    origin = root / "image" / "origin"
    os.mkfifo(origin / "fifo.jpg")
    (origin / "link.jpg").symlink_to("fifo.jpg")  # a link to a FIFO inside the folder
    (origin / "zero.jpg").symlink_to("/dev/zero")  # points outside the image folder: never read
    (origin / "dir.jpg").mkdir()
    result = load_dataset(root)
    assert list(result.index.source) == ["a.jpg"]
    assert result.skipped == {safe_io.NOT_REGULAR: 2, expw.MISSING_IMAGE: 2}
    with pytest.raises(DatasetError, match=r"label\.lst:2: not a regular file"):
        load_dataset(root, strict=True)


@pytest.mark.timeout(30)
def test_class_folder_fifo_and_device_link_are_skipped_unopened(tmp_path):
    write_image(tmp_path / "happy" / "a.jpg", 40, 40)
    os.mkfifo(tmp_path / "happy" / "x.jpg")
    (tmp_path / "sad").mkdir()
    (tmp_path / "sad" / "y.jpg").symlink_to("/dev/urandom")
    result = read_class_folders(tmp_path)
    assert list(result.index.source) == ["happy/a.jpg"]
    assert result.skipped == {safe_io.NOT_REGULAR: 2}
    with pytest.raises(DatasetError, match="x.jpg: not a regular file"):
        read_class_folders(tmp_path, strict=True)


@pytest.mark.timeout(30)
def test_open_regular_refuses_before_opening(tmp_path):
    os.mkfifo(tmp_path / "f")
    for path in (tmp_path / "f", "/dev/zero"):
        with pytest.raises(safe_io.NotRegularFile) as err:
            safe_io.read_regular(path, 1024)
        assert err.value.reason == safe_io.NOT_REGULAR
    (tmp_path / "big").write_bytes(b"x" * 11)
    with pytest.raises(safe_io.NotRegularFile, match="file too large"):
        safe_io.read_regular(tmp_path / "big", 10)
    assert safe_io.read_regular(tmp_path / "big", 11) == b"x" * 11
    assert b"".join(safe_io.regular_chunks(tmp_path / "big", 11, chunk=4)) == b"x" * 11


def test_no_usable_face_names_the_reasons_in_words(tmp_path):
    root = make_expw(tmp_path / "d", ["a.jpg 0 1 2", "b.jpg 0 1 2 3 4 5 6 7 8", "c.jpg 0 x 2 3 4 0.9 1"],
                     {"a.jpg": (20, 20)})
    with pytest.raises(DatasetError, match="no usable faces") as caught:
        read_label_file(root / "label" / "label.lst", root / "image" / "origin")
    message = str(caught.value)
    assert "wrong field count (1 row)" in message and "{" not in message and "'" not in message
