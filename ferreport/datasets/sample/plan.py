"""The sample's plan, before any drawing: the spec, faces per class, faces per picture, and
every picture's name, size, boxes, labels and confidences."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ferreport.constants import CLASS_NAMES, NUM_CLASSES
from ferreport.datasets.sample.layout import group_layout, single_face_layout
from ferreport.errors import UsageError

#: Class shares of the full ExpW label.lst, in CLASS_NAMES order.
EXPW_CLASS_SHARES: tuple[float, ...] = (0.040, 0.044, 0.012, 0.333, 0.115, 0.077, 0.380)
#: Fewest faces per class (when n_faces allows it), so stratified splits work.
MIN_PER_CLASS = 3


@dataclass(frozen=True)
class SampleSpec:
    """What to generate; the same spec always gives the same files."""

    n_faces: int = 2000
    seed: int = 0
    multi_face_fraction: float = 0.05
    out_of_border_fraction: float = 0.01
    class_shares: tuple[float, ...] = EXPW_CLASS_SHARES  # in CLASS_NAMES order

    def __post_init__(self) -> None:
        shares = tuple(float(s) for s in self.class_shares)
        object.__setattr__(self, "class_shares", shares)
        if isinstance(self.n_faces, bool) or not isinstance(self.n_faces, (int, np.integer)) or self.n_faces < 1:
            raise UsageError(f"sample n_faces must be a positive integer, got {self.n_faces!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise UsageError(f"sample seed must be a non-negative integer, got {self.seed!r}")
        object.__setattr__(self, "n_faces", int(self.n_faces))
        object.__setattr__(self, "seed", int(self.seed))
        for name in ("multi_face_fraction", "out_of_border_fraction"):
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise UsageError(f"sample {name} must lie in [0, 1], got {value!r}")
            object.__setattr__(self, name, value)
        if len(shares) != NUM_CLASSES or any(not math.isfinite(s) or s < 0 for s in shares) or sum(shares) <= 0:
            raise UsageError(
                f"sample class_shares must be {NUM_CLASSES} non-negative numbers "
                f"({', '.join(CLASS_NAMES)}) with a positive sum, got {shares!r}"
            )


def allocate_counts(n: int, shares: tuple[float, ...], min_per_class: int = MIN_PER_CLASS) -> tuple[int, ...]:
    """Split ``n`` faces over classes by largest remainder, then top up small classes.

    Every class with a positive share gets at least ``min(min_per_class, n // k)`` faces
    (k = classes with a positive share), taken one at a time from the largest class.
    """
    w = np.asarray(shares, dtype=np.float64)
    w = w / w.sum()
    exact = w * n
    counts = np.floor(exact).astype(np.int64)
    rest = n - int(counts.sum())
    # largest remainder; ties go to the lower class id (stable sort)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[:rest]] += 1
    positive = np.flatnonzero(w > 0)
    floor = min(min_per_class, n // max(len(positive), 1))
    for c in positive:
        while counts[c] < floor:
            donor = int(np.argmax(np.where(counts > floor, counts, -1)))
            counts[donor] -= 1
            counts[c] += 1
    assert int(counts.sum()) == n
    return tuple(int(c) for c in counts)


# picture names are "<word a>_<word b>_<n>.jpg", like ExpW's
_WORDS_A = ("young", "old", "candid", "street", "family", "office", "party", "wedding", "school", "famous",
            "local", "portrait", "outdoor", "travel", "stage", "news", "sports", "festival")
_WORDS_B = ("actor", "actress", "girl", "boy", "man", "woman", "child", "baby", "student", "teacher", "player",
            "singer", "crowd", "couple", "friends", "people", "worker", "athlete", "fan", "politician")


@dataclass(frozen=True)
class PlannedFace:
    """One face of a planned picture: its box ``img[top:top + side, left:left + side]``, label and confidence."""

    face_id: int
    label: int
    top: int
    left: int
    side: int
    confidence: float


@dataclass(frozen=True)
class PlannedImage:
    """One planned picture: ``index`` seeds its drawing, ``name`` is its file name."""

    index: int
    name: str
    width: int
    height: int
    faces: tuple[PlannedFace, ...]


def _group_sizes(rng: np.random.Generator, n: int, frac: float) -> list[int]:
    """Faces per picture, in picture order: about ``frac`` of the ``n`` faces share a picture (2 to 4)."""
    m = int(round(frac * n))
    if frac > 0 and n >= 2:
        m = max(m, 2)
    m = min(m, n)
    groups: list[int] = []
    left = m
    while left > 0:
        k = int(rng.choice([2, 2, 2, 2, 3, 3, 4]))
        k = min(k, left)
        if left - k == 1:
            k += 1
        if k == 1:  # only when m == 1 (n == 1): a single face
            groups.append(1)
            break
        groups.append(k)
        left -= k
    sizes = [1] * (n - sum(groups)) + groups
    return [sizes[i] for i in rng.permutation(len(sizes))]


def plan_images(spec: SampleSpec) -> tuple[list[PlannedImage], tuple[int, ...]]:
    """Decide every picture's name, size, boxes, labels and confidences (no drawing)."""
    rng = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(0,)))
    counts = allocate_counts(spec.n_faces, spec.class_shares)
    labels = rng.permutation(np.repeat(np.arange(NUM_CLASSES), counts))
    groups = _group_sizes(rng, spec.n_faces, spec.multi_face_fraction)
    singles = [i for i, k in enumerate(groups) if k == 1]
    n_oob = int(round(spec.out_of_border_fraction * spec.n_faces))
    if spec.out_of_border_fraction > 0:
        n_oob = max(n_oob, 1)
    n_oob = min(n_oob, len(singles))
    oob = set(int(i) for i in rng.choice(singles, size=n_oob, replace=False)) if n_oob else set()
    name_counter: dict[tuple[str, str], int] = {}
    images: list[PlannedImage] = []
    cursor = 0
    for idx, k in enumerate(groups):
        face_labels = [int(x) for x in labels[cursor:cursor + k]]
        cursor += k
        conf = 0.2 + 139.8 * rng.beta(2.2, 3.4, size=k)
        if k == 1:
            width, height, boxes = single_face_layout(rng, out_of_border=idx in oob)
        else:
            width, height, boxes = group_layout(rng, k)
        a = _WORDS_A[int(rng.integers(len(_WORDS_A)))]
        b = _WORDS_B[int(rng.integers(len(_WORDS_B)))]
        num = name_counter.get((a, b), 0) + 1
        name_counter[(a, b)] = num
        faces = tuple(
            PlannedFace(i, lab, t, lf, sd, float(cf))
            for i, (lab, (t, lf, sd), cf) in enumerate(zip(face_labels, boxes, conf, strict=True))
        )
        images.append(PlannedImage(idx, f"{a}_{b}_{num}.jpg", width, height, faces))
    return images, counts
