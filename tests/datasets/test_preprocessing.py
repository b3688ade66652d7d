from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from ferreport import safe_io
from ferreport.datasets import loading, skips
from ferreport.datasets.crop import crop_face
from ferreport.datasets.decode import decode_image
from ferreport.datasets.face_cache import prepare_dataset
from ferreport.errors import DatasetError
from tests.conftest import make_expw


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
    assert prepared.skipped == {f"{skips.UNREADABLE_IMAGE}: cannot decode": 1,
                                f"{skips.UNREADABLE_IMAGE}: empty file": 1}
    with pytest.raises(DatasetError, match="bad.jpg"):
        prepare_dataset(root, strict=True, cache_root=tmp_path / "strict")


def test_box_wholly_outside_is_skipped(tmp_path):
    root = make_expw(tmp_path / "d", ["a.jpg 0 0 0 50 50 1 3", "a.jpg 1 500 500 600 600 1 2"], {"a.jpg": (60, 60)})
    prepared = prepare_dataset(root)
    assert len(prepared.index) == 1 and prepared.skipped == {skips.BOX_OUTSIDE_IMAGE: 1}


def test_parallel_decode_equals_serial(sample_dataset, tmp_path):
    serial = prepare_dataset(sample_dataset, workers=1, cache_root=tmp_path / "a")
    parallel = prepare_dataset(sample_dataset, workers=2, cache_root=tmp_path / "b")
    np.testing.assert_array_equal(serial.faces, parallel.faces)
    assert serial.index.key.tolist() == parallel.index.key.tolist()


def test_decode_handles_alpha_gray_and_16bit(tmp_path):
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 2] = 255
    rgba[..., 3] = 128
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
    code = "import os, sys; from ferreport.datasets.workers import exit_with_parent; " \
           "exit_with_parent(int(sys.argv[1])); print('alive')"
    alive = subprocess.run([sys.executable, "-c", code, str(os.getpid())], capture_output=True, text=True,
                           timeout=120)
    assert alive.returncode == 0 and alive.stdout.strip() == "alive", alive.stderr
    orphan = subprocess.run([sys.executable, "-c", code, str(os.getpid() + 1_000_000)], capture_output=True,
                            text=True, timeout=120)
    assert orphan.returncode == 1 and "alive" not in orphan.stdout, orphan.stderr


# --------------------------------------------------------------------------- issue 20: a face is real or it is skipped


def _photo(h: int = 240, w: int = 320, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (7, 7), 2)


def _jpeg(img: np.ndarray, *params: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, list(params))
    assert ok
    return buf.tobytes()


def _cut_scan_keep_eoi(data: bytes, keep: float = 0.3) -> bytes:
    """The entropy-coded data after the first SOS cut to ``keep`` of its length, the EOI marker kept."""
    sos = data.index(b"\xff\xda")
    return data[:sos + int((len(data) - sos) * keep)] + b"\xff\xd9"


def _patch_sof(data: bytes, width: int, height: int) -> bytes:
    """The same JPEG with the frame header (SOF0 or SOF2) declaring ``width`` x ``height``."""
    sof = min(i for i in (data.find(b"\xff\xc0"), data.find(b"\xff\xc2")) if i >= 0)
    return data[:sof + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + data[sof + 9:]


@pytest.fixture
def hostile_jpegs(tmp_path) -> dict[str, object]:
    photo = _photo()
    made = {
        "cut.jpg": _cut_scan_keep_eoi(_jpeg(photo)),
        "cut_progressive.jpg": _cut_scan_keep_eoi(_jpeg(photo, cv2.IMWRITE_JPEG_PROGRESSIVE, 1), 0.05),
        "tiny_claims_11000.jpg": _patch_sof(_jpeg(np.full((8, 8), 90, np.uint8), cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
                                            11000, 11000),
        "claims_60000.jpg": _patch_sof(_jpeg(photo), 60000, 60000),
        "claims_12000x11000.jpg": _patch_sof(_jpeg(photo), 12000, 11000),  # under the pixel limit, too few bytes
    }
    for name, data in made.items():
        (tmp_path / name).write_bytes(data)
    return made


def test_partly_decodable_jpegs_are_refused_with_their_reason(hostile_jpegs, tmp_path):
    from ferreport.datasets import decode as pp

    assert len(hostile_jpegs["tiny_claims_11000.jpg"]) < 1000
    expected = {
        "cut.jpg": pp.JPEG_PARTIAL,
        "cut_progressive.jpg": pp.JPEG_PARTIAL,
        "tiny_claims_11000.jpg": pp.JPEG_TOO_SHORT,
        "claims_60000.jpg": pp.JPEG_TOO_MANY_PIXELS,
        "claims_12000x11000.jpg": pp.JPEG_TOO_SHORT,
    }
    for name, reason in expected.items():
        assert decode_image(tmp_path / name) == (None, reason), name


def test_every_reduced_decode_checks_too(hostile_jpegs, tmp_path):
    """The 1/8 decode of a 60000x60000 header used to give a flat grey face."""
    from ferreport.datasets import decode as pp

    for name in hostile_jpegs:
        for reduce in (2, 4, 8):
            img, why, _ = pp.decode_reduced(tmp_path / name, reduce)
            assert img is None and why, (name, reduce)


def test_good_jpegs_are_not_refused(tmp_path):
    """No false alarms: baseline, progressive, grayscale, 4:4:4, flat, tiny, with junk after EOI, restart markers."""
    photo = _photo(97, 131, seed=4)
    cases = {
        "baseline.jpg": _jpeg(photo),
        "progressive.jpg": _jpeg(photo, cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
        "optimized.jpg": _jpeg(photo, cv2.IMWRITE_JPEG_OPTIMIZE, 1, cv2.IMWRITE_JPEG_QUALITY, 5),
        "gray.jpg": _jpeg(photo[..., 0]),
        "444.jpg": _jpeg(photo, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444),
        "restart.jpg": _jpeg(photo, cv2.IMWRITE_JPEG_RST_INTERVAL, 2),
        "flat_big.jpg": _jpeg(np.full((2000, 3000, 3), 200, np.uint8), cv2.IMWRITE_JPEG_OPTIMIZE, 1),
        "flat_progressive.jpg": _jpeg(np.full((2000, 3000), 10, np.uint8), cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
        "one_pixel.jpg": _jpeg(np.zeros((1, 1, 3), np.uint8)),
        "trailing_junk.jpg": _jpeg(photo) + b"\x00" * 100,
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        img, why = decode_image(tmp_path / name)
        assert why == "" and img is not None, name
        expect = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        np.testing.assert_array_equal(img, expect)


def test_libjpeg_text_that_is_not_about_a_partial_decode_still_reaches_stderr(tmp_path, capfd):
    """Extraneous bytes before a marker: libjpeg warns, the image is whole; the warning is passed on."""
    data = _jpeg(_photo(64, 64))
    sos = data.index(b"\xff\xda")
    (tmp_path / "extra.jpg").write_bytes(data[:sos] + b"\x00\x00" + data[sos:])
    img, why = decode_image(tmp_path / "extra.jpg")
    assert why == "" and img is not None
    assert "extraneous bytes" in capfd.readouterr().err


def test_hostile_jpegs_and_outside_boxes_are_skipped_by_reason_never_cached(hostile_jpegs, tmp_path):
    from ferreport.datasets import decode as pp

    origin = tmp_path / "d" / "image" / "origin"
    lines = ["a.jpg 0 0 0 50 50 1 3", "a.jpg 1 -60 -60 -10 -10 1 2", "a.jpg 2 70 0 50 90 1 2",
             "a.jpg 3 0 70 90 50 1 2"]
    lines += [f"{name} 0 0 0 200 200 1 4" for name in hostile_jpegs]
    root = make_expw(tmp_path / "d", lines, {"a.jpg": (60, 60)})
    for name in hostile_jpegs:
        (origin / name).write_bytes((tmp_path / name).read_bytes())
    prepared = prepare_dataset(root, cache_root=tmp_path / "c")
    assert list(prepared.index.key) == ["a.jpg#0"] and prepared.faces.shape[0] == 1
    u = skips.UNREADABLE_IMAGE
    assert prepared.skipped == {
        skips.BOX_OUTSIDE_IMAGE: 3,
        f"{u}: {pp.JPEG_PARTIAL}": 2, f"{u}: {pp.JPEG_TOO_SHORT}": 2, f"{u}: {pp.JPEG_TOO_MANY_PIXELS}": 1,
    }
    for line, pattern in ((2, "box entirely outside the image"), (3, "box entirely outside the image")):
        lst = root / "label" / "label.lst"
        only = [lines[0], lines[line - 1]]
        lst.write_text("\n".join(only) + "\n")
        with pytest.raises(DatasetError, match=rf"label\.lst:2: {pattern}"):
            prepare_dataset(root, strict=True, cache_root=tmp_path / "s")
    lst.write_text("\n".join([lines[0], "cut.jpg 0 0 0 200 200 1 4"]) + "\n")
    with pytest.raises(DatasetError, match=r"label\.lst:2: image unreadable: corrupt JPEG .*cut\.jpg"):
        prepare_dataset(root, strict=True, cache_root=tmp_path / "s")


def test_crop_of_a_negative_box_is_none_not_the_whole_image():
    img = np.zeros((10, 20, 3), np.uint8)
    assert crop_face(img, -60, -60, -10, -10)[0] is None
    assert crop_face(img, -5, -5, -1, -1)[0] is None


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "/dev/urandom"])
def test_prepare_with_a_hostile_label_file_is_a_dataset_error_not_a_hang(tmp_path, kind):
    root = make_expw(tmp_path / "d", ["a.jpg 0 0 0 50 50 1 3"], {"a.jpg": (60, 60)})
    lst = root / "label" / "label.lst"
    lst.unlink()
    os.mkfifo(lst) if kind == "fifo" else lst.symlink_to(kind)
    with pytest.raises(DatasetError, match="not a regular file"):
        prepare_dataset(root, cache_root=tmp_path / "c")


@pytest.mark.timeout(30)
def test_image_that_is_a_fifo_or_device_is_never_opened(tmp_path):
    os.mkfifo(tmp_path / "x.jpg")
    assert decode_image(tmp_path / "x.jpg") == (None, safe_io.NOT_REGULAR)
    assert decode_image("/dev/zero") == (None, safe_io.NOT_REGULAR)


def test_fingerprint_and_cache_key_of_a_normal_dataset_are_unchanged(tiny_expw, tmp_path):
    """The label file is hashed streamed now: the same digest as hashing its bytes at once."""
    import hashlib

    from ferreport.datasets import face_cache as pp

    labels = loading.load_dataset(tiny_expw)
    fingerprint, _ = pp._fingerprints(labels, {"size": 64})
    data_hash = hashlib.sha256((tiny_expw / "label" / "label.lst").read_bytes())
    for name in sorted(labels.index.source.unique()):
        data_hash.update(f"{name}\0{(tiny_expw / 'image' / 'origin' / name).stat().st_size}\n".encode())
    assert fingerprint == data_hash.hexdigest()


@pytest.mark.timeout(30)
def test_a_header_of_endless_empty_segments_is_refused_quickly(tmp_path):
    from ferreport.datasets import decode as pp

    data = _jpeg(_photo(32, 32))
    junk = b"\xff\xfe\x00\x02" * 2_000_000 + b"\xff" * 1_000_000  # 8 MB of empty comments, then fill bytes
    (tmp_path / "com.jpg").write_bytes(data[:2] + junk + data[2:])
    assert decode_image(tmp_path / "com.jpg") == (None, pp.JPEG_BAD_HEADER)
    few = data[:2] + b"\xff\xfe\x00\x02" * 300 + data[2:]  # a few hundred segments are fine
    (tmp_path / "few.jpg").write_bytes(few)
    assert decode_image(tmp_path / "few.jpg")[1] == ""


def test_no_decodable_face_names_the_reasons_in_words(tmp_path):
    root = make_expw(tmp_path / "d", ["a.jpg 0 1 2 10 10 0.9 3"], {"a.jpg": (20, 20)})
    (root / "image" / "origin" / "a.jpg").write_bytes(b"\xff\xd8 not really a jpeg \xff\xd9")
    with pytest.raises(DatasetError, match="no face could be decoded") as caught:
        prepare_dataset(root, cache_root=tmp_path / "cache", workers=1)
    message = str(caught.value)
    assert "(skipped: " in message and "(1 face)" in message and "{" not in message
