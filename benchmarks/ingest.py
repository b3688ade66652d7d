#!/usr/bin/env python
"""Ingest: ``prepare_dataset`` on a generated ExpW-layout set vs a plain per-row loop.

    python benchmarks/ingest.py [--faces 5000] [--data DIR] [--workers N]

Generates (once, reused) an ExpW-layout sample of ``--faces`` faces under ``--work-dir``
(default /tmp/ferreport-bench), unless ``--data`` names one. Baseline: for every line of
``label.lst``, ``cv2.imread`` the image, crop the box (clipped), ``cv2.resize`` to 64x64
INTER_AREA and convert to RGB: the obvious loop, one decode per face. Project:
``prepare_dataset`` into an empty cache (first run), then again (cache hit).
Targets: first prepare >= 3x the baseline's faces/s; the cache hit >= 50x faster than
the first prepare.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np

import _common as C


def baseline_loop(root: Path) -> int:
    """Per label row: imread + crop + resize. Returns the faces produced."""
    image_dir = root / "image" / "origin"
    out = []
    for line in (root / "label" / "label.lst").read_text().splitlines():
        parts = line.split()
        if len(parts) != 8:
            continue
        name = parts[0]
        top, left, right, bottom = (int(v) for v in parts[2:6])
        img = cv2.imread(str(image_dir / name), cv2.IMREAD_COLOR)
        if img is None:
            continue
        h, w = img.shape[:2]
        t, l, r, b = max(0, top), max(0, left), min(w, right), min(h, bottom)
        if t >= b or l >= r:
            continue
        face = cv2.resize(img[t:b, l:r], (64, 64), interpolation=cv2.INTER_AREA)
        out.append(cv2.cvtColor(face, cv2.COLOR_BGR2RGB))
    return len(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, default=5000)
    ap.add_argument("--data", type=Path, help="an existing ExpW-layout folder (default: generate one)")
    ap.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "ferreport-bench")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--json")
    args = ap.parse_args()

    C.header("ingest (prepare)")
    from ferreport.datasets.face_cache import prepare_dataset
    from ferreport.datasets.sample import SampleSpec, generate_sample

    root = args.data or args.work_dir / f"expw-{args.faces}"
    if args.data is None:
        with C.timer() as t:
            info = generate_sample(root, SampleSpec(n_faces=args.faces, seed=0))
        print(f"   sample: {info.n_faces} faces in {info.n_images} images at {root} ({t['s']:.1f} s)")

    # warm the page cache for both contestants alike
    for p in (root / "image" / "origin").iterdir():
        p.read_bytes()

    t_base, n_base = C.best_of(lambda: baseline_loop(root))
    with tempfile.TemporaryDirectory(prefix="ferreport-cache-") as cache:
        t_first, first = C.best_of(lambda: prepare_dataset(root, cache_root=cache, workers=args.workers))
        assert not first.cache_hit
        n = len(first.faces)
        t_hit, second = C.best_of(lambda: prepare_dataset(root, cache_root=cache, workers=args.workers))
        assert second.cache_hit
        checksum = int(np.asarray(second.faces[: min(n, 512)], dtype=np.int64).sum())
    rows = [
        C.report(f"prepare {n} faces (first run)", "plain loop: per row imread + crop + resize",
                 n_base / t_base, n / t_first, "faces/s", target=3.0),
        C.report("prepare again (cache hit)", "first prepare", t_first, t_hit, "s", target=50.0,
                 higher_is_better=False, note=f"faces checksum {checksum}"),
    ]
    C.save_json(args.json, "ingest", rows, faces=n)


if __name__ == "__main__":
    main()
