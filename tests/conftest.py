"""Shared fixtures: small datasets generated on the fly (no binary blobs in the repo)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _artefacts_ferreport_wrote_match_their_schemas(request):
    """Every JSON artefact a test's folders held met its schema when read: a schema that refuses what
    ferreport itself writes would silently drop report sections. Tests that break artefacts on purpose
    are marked ``broken_artefacts``."""
    from ferreport.runs.folder import all_notices, forget_notices

    forget_notices()
    yield
    refused = [f"{folder}: {text}" for folder, texts in all_notices().items() for text in texts
               if "(edited or damaged?)" in text]
    forget_notices()
    if refused and request.node.get_closest_marker("broken_artefacts") is None:
        pytest.fail("an artefact ferreport wrote broke its schema: " + " | ".join(refused[:3]))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own face cache, so no test depends on another's."""
    monkeypatch.setenv("FERREPORT_CACHE", str(tmp_path_factory.mktemp("cache")))


def write_image(path: Path, h: int, w: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = rng.integers(0, 256, 3, dtype=np.uint8)
    cv2.rectangle(img, (w // 4, h // 4), (3 * w // 4, 3 * h // 4), (int(rng.integers(256)), 40, 200), -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix or ".jpg", img)
    assert ok
    buf.tofile(str(path))


def pattern_faces(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Simple-pattern faces: a bright square whose position depends on the class."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 7
    rng.shuffle(y)
    x = rng.integers(0, 60, (n, 64, 64, 3), dtype=np.uint8)
    for i, c in enumerate(y):
        r, col = divmod(int(c), 3)
        x[i, 8 + 16 * r: 24 + 16 * r, 8 + 16 * col: 24 + 16 * col] = 220
    return x, y


def make_expw(root: Path, lines: list[str], images: dict[str, tuple[int, int]]) -> Path:
    """An ExpW-layout dataset: ``images`` maps names to (h, w); ``lines`` is label.lst."""
    for i, (name, (h, w)) in enumerate(images.items()):
        write_image(root / "image" / "origin" / name, h, w, seed=i)
    (root / "label").mkdir(parents=True, exist_ok=True)
    (root / "label" / "label.lst").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def tiny_expw(tmp_path) -> Path:
    """Seven images, one with two faces, one box past the border; every class present."""
    images = {f"img_{i}.jpg": (120, 160) for i in range(7)}
    lines = [f"img_{i}.jpg 0 10 20 90 80 {50 + i}.5 {i}" for i in range(7)]
    lines.append("img_3.jpg 1 30 100 170 100 12.25 6")  # right=170 > width 160: clipped
    return make_expw(tmp_path / "expw", lines, images)


@pytest.fixture(scope="session")
def sample_dataset(tmp_path_factory) -> Path:
    """The generated ExpW-layout sample, small (shared across tests; read-only use)."""
    from ferreport.datasets.sample import SampleSpec, generate_sample

    out = tmp_path_factory.mktemp("sample") / "expw"
    generate_sample(out, SampleSpec(n_faces=300, seed=3))
    return out


@pytest.fixture(scope="session")
def faces_sample_dir() -> Path:
    path = SHARED_DATA / "faces-sample"
    if not path.is_dir():
        pytest.skip("../shared/data/faces-sample is not present")
    return path


def interrupt_in_epoch(epoch: int = 1, batch: int = 1):
    """A Keras callback that raises KeyboardInterrupt (a Ctrl-C) after ``batch`` of ``epoch`` (0-based)."""
    import keras

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, e, logs=None):
            self.epoch = e

        def on_train_batch_end(self, b, logs=None):
            if self.epoch == epoch and b == batch:
                raise KeyboardInterrupt

    return Interrupt()
