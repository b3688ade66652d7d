"""The synthetic ExpW-layout sample: layout, label.lst format, determinism, atomicity."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest

from ferreport.constants import CLASS_NAMES, NUM_CLASSES
from ferreport.datasets import sample
from ferreport.datasets.sample import EXPW_CLASS_SHARES, SampleSpec, allocate_counts, draw_face, generate_sample
from ferreport.datasets.sample import generate as sample_generate
from ferreport.errors import UsageError

NAME = re.compile(r"^[a-z]+_[a-z]+_\d+\.jpg$")


def read_lines(root: Path) -> list[list[str]]:
    return [line.split(" ") for line in (root / "label" / "label.lst").read_text(encoding="utf-8").splitlines()]


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def crop(img: np.ndarray, top: int, left: int, right: int, bottom: int) -> np.ndarray:
    h, w = img.shape[:2]
    return img[max(top, 0):min(bottom, h), max(left, 0):min(right, w)]


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[sample.SampleInfo, Path]:
    out = tmp_path_factory.mktemp("small") / "expw"
    info = generate_sample(out, SampleSpec(n_faces=120, seed=1), workers=1)
    return info, out


def test_layout_and_label_lines(small):
    info, root = small
    assert info.root == root and info.n_faces == 120
    assert (root / "label" / "label.lst").is_file()
    images = sorted((root / "image" / "origin").iterdir())
    assert len(images) == info.n_images
    assert all(p.suffix == ".jpg" for p in images)
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".")]  # no temp folder left

    lines = read_lines(root)
    assert len(lines) == 120
    faces_per_image: dict[str, list[int]] = defaultdict(list)
    for f in lines:
        assert len(f) == 8, f
        name, face_id, top, left, right, bottom, conf, label = f
        assert NAME.match(name), name
        assert (root / "image" / "origin" / name).is_file()
        top, left, right, bottom, face_id, label = map(int, (top, left, right, bottom, face_id, label))
        assert right - left == bottom - top, f  # square boxes
        assert sample.MIN_SIDE <= right - left <= sample.MAX_SIDE
        assert re.fullmatch(r"\d+\.\d{4}", conf) and 0.2 <= float(conf) <= 140.0
        assert 0 <= label < NUM_CLASSES
        faces_per_image[name].append(face_id)
    # face ids run 0..k-1 within a picture, and a picture's lines are consecutive
    assert all(ids == list(range(len(ids))) for ids in faces_per_image.values())
    assert len(faces_per_image) == info.n_images
    names_in_order = [f[0] for f in lines]
    assert [n for i, n in enumerate(names_in_order) if i == 0 or names_in_order[i - 1] != n] == list(faces_per_image)
    assert any(len(ids) > 1 for ids in faces_per_image.values())

    counts = Counter(int(f[7]) for f in lines)
    assert tuple(counts.get(c, 0) for c in range(NUM_CLASSES)) == info.class_counts
    assert min(info.class_counts) >= sample.MIN_PER_CLASS

    meta = json.loads((root / "sample.json").read_text())
    assert meta["spec"]["n_faces"] == 120 and meta["spec"]["seed"] == 1
    assert meta["class_counts"] == list(info.class_counts)
    assert meta["class_names"] == list(CLASS_NAMES)
    assert meta["generator"] == "ferreport.sample"  # the name samples already on disk carry: they stay reusable


def test_crops_decode_and_show_something(small):
    _, root = small
    by_name: dict[str, list[list[str]]] = defaultdict(list)
    for f in read_lines(root):
        by_name[f[0]].append(f)
    for name, faces in by_name.items():
        img = cv2.imread(str(root / "image" / "origin" / name))
        assert img is not None and img.dtype == np.uint8 and img.ndim == 3
        h, w = img.shape[:2]
        assert h >= sample.MIN_IMAGE and w >= sample.MIN_IMAGE
        for f in faces:
            face = crop(img, *map(int, f[2:6]))
            assert face.shape[0] > 20 and face.shape[1] > 20
            assert face.std() > 10, f"{name}: blank crop"


def test_class_allocation_follows_shares():
    n = 1000
    counts = allocate_counts(n, EXPW_CLASS_SHARES)
    assert sum(counts) == n
    shares = np.asarray(EXPW_CLASS_SHARES) / sum(EXPW_CLASS_SHARES)
    assert np.all(np.abs(np.asarray(counts) - shares * n) < 1)  # largest remainder is exact to within 1
    assert counts == (40, 44, 12, 333, 115, 77, 379)
    assert allocate_counts(7, EXPW_CLASS_SHARES) == (1,) * 7
    small = allocate_counts(60, EXPW_CLASS_SHARES)
    assert sum(small) == 60 and min(small) >= 3
    zero = allocate_counts(50, (0, 1, 1, 1, 1, 1, 1))
    assert zero[0] == 0 and sum(zero) == 50


def test_boxes_past_the_border(tmp_path):
    info = generate_sample(tmp_path / "s", SampleSpec(n_faces=40, seed=2, out_of_border_fraction=0.5,
                                                      multi_face_fraction=0.0), workers=1)
    past = 0
    for f in read_lines(info.root):
        img = cv2.imread(str(info.root / "image" / "origin" / f[0]))
        h, w = img.shape[:2]
        top, left, right, bottom = map(int, f[2:6])
        if top < 0 or left < 0 or right > w or bottom > h:
            past += 1
            assert crop(img, top, left, right, bottom).size > 0  # still mostly inside
    assert past >= 10
    assert info.n_images == 40  # no multi-face pictures asked for


def test_group_pictures_keep_their_boxes_inside(tmp_path):
    info = generate_sample(tmp_path / "s", SampleSpec(n_faces=30, seed=4, multi_face_fraction=1.0,
                                                      out_of_border_fraction=0.0), workers=1)
    lines = read_lines(info.root)
    per_image = Counter(f[0] for f in lines)
    assert min(per_image.values()) >= 2 and info.n_images == len(per_image) < 30
    for f in lines:
        h, w = cv2.imread(str(info.root / "image" / "origin" / f[0])).shape[:2]
        assert h <= sample.MAX_IMAGE and w <= sample.MAX_IMAGE
        top, left, right, bottom = map(int, f[2:6])
        assert 0 <= top < bottom <= h and 0 <= left < right <= w, (f, h, w)


def test_default_fractions_give_some_of_each(small):
    _, root = small
    past = 0
    for f in read_lines(root):
        h, w = cv2.imread(str(root / "image" / "origin" / f[0])).shape[:2]
        top, left, right, bottom = map(int, f[2:6])
        past += top < 0 or left < 0 or right > w or bottom > h
    assert past >= 1


def test_deterministic_and_independent_of_workers(tmp_path):
    spec = SampleSpec(n_faces=40, seed=5)
    a = generate_sample(tmp_path / "a", spec, workers=1)
    b = generate_sample(tmp_path / "b", spec, workers=2)
    ta, tb = tree_bytes(a.root), tree_bytes(b.root)
    assert ta.keys() == tb.keys()
    assert ta == tb
    c = generate_sample(tmp_path / "c", SampleSpec(n_faces=40, seed=6), workers=1)
    assert (c.root / "label" / "label.lst").read_bytes() != ta["label/label.lst"]


def test_rerun_is_a_no_op(tmp_path):
    out = tmp_path / "expw"
    spec = SampleSpec(n_faces=20, seed=0)
    first = generate_sample(out, spec, workers=1)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    again = generate_sample(out, spec, workers=1)
    assert again == first
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == stamps
    assert sorted(p.name for p in tmp_path.iterdir()) == ["expw"]


def test_refuses_other_content(tmp_path):
    spec = SampleSpec(n_faces=20, seed=0)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not empty"):
        generate_sample(busy, spec)
    assert (busy / "notes.txt").read_text() == "mine"

    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(UsageError, match="not a folder"):
        generate_sample(a_file, spec)

    out = tmp_path / "expw"
    generate_sample(out, spec, workers=1)
    with pytest.raises(UsageError, match="holds another sample") as caught:
        generate_sample(out, SampleSpec(n_faces=20, seed=1))
    assert "--seed 0 there, 1 asked" in str(caught.value) and "{" not in str(caught.value)  # words, not a dict

    empty = tmp_path / "empty"
    empty.mkdir()
    info = generate_sample(empty, spec, workers=1)
    assert (empty / "label" / "label.lst").is_file() and info.n_faces == 20


def test_failure_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = sample_generate.write_image

    def flaky(task):
        calls["n"] += 1
        if calls["n"] > 5:
            raise RuntimeError("killed")
        real(task)

    monkeypatch.setattr(sample_generate, "write_image", flaky)
    out = tmp_path / "expw"
    with pytest.raises(RuntimeError, match="killed"):
        generate_sample(out, SampleSpec(n_faces=20, seed=0), workers=1)
    assert list(tmp_path.iterdir()) == []


def test_clears_temp_folders_of_dead_generators(tmp_path):
    stale = tmp_path / ".expw.tmp-999999999-abc"  # no such pid
    (stale / "image").mkdir(parents=True)
    generate_sample(tmp_path / "expw", SampleSpec(n_faces=10, seed=0), workers=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["expw"]


@pytest.mark.parametrize("kwargs", [
    dict(n_faces=0),
    dict(seed=-1),
    dict(multi_face_fraction=1.5),
    dict(out_of_border_fraction=-0.1),
    dict(class_shares=(1.0, 2.0)),
    dict(class_shares=(0, 0, 0, 0, 0, 0, 0)),
    dict(class_shares=(1, 1, 1, -1, 1, 1, 1)),
])
def test_spec_validation(kwargs):
    with pytest.raises(UsageError):
        SampleSpec(**kwargs)


def test_spec_accepts_lists():
    spec = SampleSpec(class_shares=[1, 1, 1, 1, 1, 1, 1])
    assert spec.class_shares == (1.0,) * 7
    assert hash(spec)


def test_draw_face():
    face = draw_face(np.random.default_rng(0), 3, 64)
    assert face.shape == (64, 64, 3) and face.dtype == np.uint8
    assert face.std() > 10
    again = draw_face(np.random.default_rng(0), 3, 64)
    assert np.array_equal(face, again)
    other = draw_face(np.random.default_rng(0), 4, 64)
    assert not np.array_equal(face, other)
    with pytest.raises(UsageError):
        draw_face(np.random.default_rng(0), 7, 64)


def test_classes_are_learnable_but_not_trivial(tmp_path):
    """HOG + a linear classifier beats the majority class clearly: the expressions show."""
    from sklearn.linear_model import RidgeClassifier
    from sklearn.model_selection import train_test_split

    info = generate_sample(tmp_path / "s", SampleSpec(n_faces=500, seed=0))
    hog = cv2.HOGDescriptor((32, 32), (16, 16), (8, 8), (8, 8), 9)
    feats, labels, cache = [], [], {}
    for f in read_lines(info.root):
        img = cache.get(f[0])
        if img is None:
            img = cache[f[0]] = cv2.imread(str(info.root / "image" / "origin" / f[0]), cv2.IMREAD_GRAYSCALE)
        face = cv2.resize(crop(img, *map(int, f[2:6])), (32, 32), interpolation=cv2.INTER_AREA)
        feats.append(hog.compute(face).ravel())
        labels.append(int(f[7]))
    x, y = np.asarray(feats), np.asarray(labels)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, stratify=y, random_state=0)
    acc = RidgeClassifier(alpha=1.0).fit(xtr, ytr).score(xte, yte)
    majority = np.bincount(yte).max() / len(yte)
    assert acc >= majority + 0.1, (acc, majority)
    assert acc < 0.97  # drawn faces, but with overlap between neighbouring classes
