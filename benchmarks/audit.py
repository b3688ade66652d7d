#!/usr/bin/env python
"""Folder audit end to end (decode, detect, predict) vs one image at a time.

    python benchmarks/audit.py [--images 2000] [--width 640 --height 480] [--workers N]

Generates (once, reused) ``--images`` photo-sized JPEG scenes under ``--work-dir``
(default /tmp/ferreport-bench): a cluttered background with one face drawn by
``sample.draw_face`` pasted in (side 80-200 px). The model is a freshly initialised
seed CNN saved to a ``.keras`` file (speed does not depend on the weights).

Baseline: for each file in sorted order, ``datasets.decode.decode_image``, detection with
``--detector`` (default blazeface, the audits' default; ``haar`` the earlier figures'),
crop + resize, ``model.predict`` of that image's faces: one image at a time. The ceiling
printed beside it: decode + detect + crop timed alone on one core, times the cores.
Project: ``audit.run_audit(folder, model, AuditConfig(formats=()))`` (chunks,
process pool, batched prediction; reports are left out: they are timed by report.py).
Target: >= 5x the baseline's images/s.

``--ray`` also times the Ray Data engine (``AuditConfig(engine="ray")``, a local Ray
with ``--workers`` CPUs, start-up included) against the local engine in the same run.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import tempfile
from pathlib import Path

import numpy as np

import _common as C


def _make_one(args: tuple[str, int, int, int]) -> None:
    import cv2

    from ferreport.datasets.sample import background as _background
    from ferreport.datasets.sample import draw_face

    path, seed, w, h = args
    rng = np.random.default_rng(seed)
    scene = _background(rng, h, w)
    side = int(rng.integers(80, 201))
    face = draw_face(rng, int(rng.integers(0, 7)), side)
    top, left = int(rng.integers(0, h - side)), int(rng.integers(0, w - side))
    scene[top:top + side, left:left + side] = face
    cv2.imwrite(path + ".tmp.jpg", scene, [int(cv2.IMWRITE_JPEG_QUALITY), 90])
    os.replace(path + ".tmp.jpg", path)


def make_folder(folder: Path, n: int, w: int, h: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    todo = [(str(folder / f"photo_{i:05d}.jpg"), i, w, h) for i in range(n)
            if not (folder / f"photo_{i:05d}.jpg").exists()]
    if todo:
        with cf.ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
            list(pool.map(_make_one, todo, chunksize=16))


def baseline(folder: Path, model, detector: str = "haar") -> tuple[int, int]:
    from ferreport.audit.detection import detect_faces, resolve_detector
    from ferreport.datasets.crop import crop_face
    from ferreport.datasets.decode import decode_image

    params, _ = resolve_detector(detector)
    images = faces = 0
    for path in sorted(folder.iterdir()):
        img, _ = decode_image(path)
        if img is None:
            continue
        images += 1
        crops = [crop_face(img, *box)[0] for box in detect_faces(img, params)]
        crops = [c for c in crops if c is not None]
        if crops:
            model.predict(np.stack(crops).astype(np.float32) / 255.0, verbose=0)
            faces += len(crops)
    return images, faces


def scan_ceiling(folder: Path, detector: str, n: int) -> float:
    """Images/s of decode + detect + crop alone on one core (OpenCV's threads off): what each
    scanning process can do at best."""
    import time

    import cv2

    from ferreport.audit.detection import find_faces, resolve_detector
    from ferreport.datasets.crop import crop_face
    from ferreport.datasets.decode import decode_image

    params, _ = resolve_detector(detector)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    paths = sorted(folder.iterdir())[:n]
    try:
        find_faces(decode_image(paths[0])[0], params)  # load the detector first
        start = time.perf_counter()
        for path in paths:
            img, _ = decode_image(path)
            for f in find_faces(img, params):
                crop_face(img, *f.box)
        return len(paths) / (time.perf_counter() - start)
    finally:
        cv2.setNumThreads(threads)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--baseline-images", type=int, default=None,
                    help="time the baseline on only this many images (it is slow); default: all")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "ferreport-bench")
    ap.add_argument("--ray", action="store_true", help="also time --engine ray (needs ferreport[ray])")
    ap.add_argument("--detector", default="blazeface", choices=("blazeface", "haar"),
                    help="the detector of both arms (default: the audits' default, blazeface)")
    ap.add_argument("--ceiling-images", type=int, default=200,
                    help="images timed for the ceiling: decode + detect + crop alone, one core")
    ap.add_argument("--json")
    args = ap.parse_args()

    C.header("folder audit")
    folder = args.work_dir / f"photos-{args.images}-{args.width}x{args.height}"
    with C.timer() as t:
        make_folder(folder, args.images, args.width, args.height)
    print(f"   folder: {args.images} JPEGs {args.width}x{args.height} at {folder} ({t['s']:.1f} s)")

    from ferreport.audit.predict import run_audit
    from ferreport.config import AuditConfig
    from ferreport.models.model_file import build_model

    with tempfile.TemporaryDirectory(prefix="ferreport-audit-") as tmp:
        model_path = Path(tmp) / "model.keras"
        model = build_model("seed")
        model.save(model_path)
        model.predict(np.zeros((1, 64, 64, 3), np.float32), verbose=0)  # warm-up

        sub = folder
        if args.baseline_images and args.baseline_images < args.images:
            sub = Path(tmp) / "subset"
            sub.mkdir()
            for p in sorted(folder.iterdir())[: args.baseline_images]:
                os.symlink(p, sub / p.name)
        with C.timer() as tb:
            n_base, f_base = baseline(sub, model, args.detector)
        print(f"   baseline ({args.detector}): {n_base} images, {f_base} faces in {tb['s']:.1f} s")
        ceiling = scan_ceiling(folder, args.detector, args.ceiling_images)

        with C.timer() as tp:
            result = run_audit(folder, model_path,
                               AuditConfig(out=Path(tmp) / "run", formats=(), workers=args.workers,
                                           face_detector=args.detector))
        s = result.summary
        n_proj = int(s.get("images_read", args.images))
        print(f"   ferreport: {n_proj} images in {tp['s']:.1f} s (summary: {s.get('images_per_second', '?')} images/s "
              f"inside the scan; faces found {s.get('faces_found', s.get('faces', '?'))})")
        if args.ray:
            with C.timer() as tr:
                ray_result = run_audit(folder, model_path,
                                       AuditConfig(out=Path(tmp) / "ray", formats=(), workers=args.workers,
                                                   engine="ray"))
            n_ray = int(ray_result.summary["images_read"])
            print(f"   ray engine: {n_ray} images in {tr['s']:.1f} s, start-up included "
                  f"(cluster {ray_result.summary['ray']})")
    cores = len(os.sched_getaffinity(0))
    print(f"-- ceiling: decode + {args.detector} + crop take {1000 / ceiling:.1f} ms an image on one core, so "
          f"{cores} cores scan at most {cores * ceiling:.1f} images/s (before any prediction): "
          f"{cores * ceiling / (n_base / tb['s']):.2f}x the baseline")
    rows = [C.report(f"audit {args.images} JPEGs {args.width}x{args.height} (decode, detect, predict), "
                     f"detector {args.detector}",
                     f"one image at a time: read, detect ({args.detector}), predict", n_base / tb["s"],
                     n_proj / tp["s"], "images/s", target=5.0,
                     note=f"ceiling {cores * ceiling:.1f} images/s = {cores * ceiling / (n_base / tb['s']):.2f}x")]
    if args.ray:
        rows.append(C.report(f"audit {args.images} JPEGs, --engine ray (local Ray)", "--engine local",
                             n_proj / tp["s"], n_ray / tr["s"], "images/s"))
    C.save_json(args.json, "audit", rows)


if __name__ == "__main__":
    main()
