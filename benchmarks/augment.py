#!/usr/bin/env python
"""Training augmentation alone: faces/s of :mod:`ferreport.augmentation` per thread count.

    python benchmarks/augment.py [--batches 300] [--batch-size 32] [--threads 1 2 4 8 16] [--need 14500]

Baselines in the same run, on the same faces: the five Keras preprocessing layers the
tool used to train with (:func:`ferreport.architectures.augmentation_layers`) in a
``tf.data`` map on one thread, and Keras 2's ``ImageDataGenerator.flow`` with the seed's
augmentation (which a training run iterates on one Python thread); each is skipped where
its package is missing (TensorFlow; ``tf-keras`` from benchmarks/requirements.txt). ferreport: ``augment_faces`` with each batch's own draws,
on N threads of a pool (as ``tf.data``'s parallel map runs the tool's
``numpy_function``), OpenCV's own pool off as in training. The one-thread rates give the
ratio; the other rows show how the rate grows with threads (the GIL is held only between
OpenCV calls), and the last line says how many threads feed ``--need`` faces/s (default:
the seed CNN's training rate at batch 32 on an NVIDIA H200, benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import _common as C
import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, nargs="+", default=None,
                    help="thread counts to time (default: 1, 2, 4, ... up to the cores)")
    ap.add_argument("--need", type=float, default=14500.0, help="faces/s a training run consumes")
    ap.add_argument("--json")
    args = ap.parse_args()

    C.header("training augmentation")
    import os

    from ferreport.augmentation import augment_faces, draw_augmentation, opencv_single_threaded

    bs, nb = args.batch_size, args.batches
    faces = np.random.default_rng(0).integers(0, 256, (nb * bs, 64, 64, 3), dtype=np.uint8)
    threads = args.threads or sorted({1, *(2 ** k for k in range(1, 8) if 2 ** k <= (os.cpu_count() or 1))})

    def one(i: int) -> None:
        batch = faces[i * bs:(i + 1) * bs]
        augment_faces(batch, draw_augmentation(np.random.default_rng((0, i)), bs, 64, 64))

    def run(n_threads: int) -> float:
        with ThreadPoolExecutor(n_threads) as pool:
            start = time.perf_counter()
            list(pool.map(one, range(nb)))
            return nb * bs / (time.perf_counter() - start)

    rates: dict[int, float] = {}
    with opencv_single_threaded():
        run(1)  # warm-up
        for n in threads:
            rates[n] = max(run(n) for _ in range(2))

    keras_rate = None
    try:
        from ferreport.backend import tf
        from ferreport.architectures import augmentation_layers
    except Exception as exc:  # noqa: BLE001 - any missing backend skips the baseline alone
        print(f"-- Keras-layer baseline skipped: {exc}")
        tf = None
    if tf is not None:
        layers = augmentation_layers((1, 2, 3, 4, 5))

        def chain(x):
            x = tf.cast(x, tf.float32) / 255.0
            for layer in layers:
                x = layer(x, training=True)
            return tf.clip_by_value(x, 0.0, 1.0)

        options = tf.data.Options()
        options.threading.private_threadpool_size = 1
        ds = tf.data.Dataset.from_tensor_slices(faces).batch(bs).map(chain).with_options(options)
        for _ in ds.take(3):
            pass
        best = float("inf")
        for _ in range(2):
            start = time.perf_counter()
            for _ in ds:
                pass
            best = min(best, time.perf_counter() - start)
        keras_rate = nb * bs / best

    idg_rate = None
    try:
        from tf_keras.preprocessing.image import ImageDataGenerator
    except Exception as exc:  # noqa: BLE001 - benchmark-only dependency (benchmarks/requirements.txt)
        print(f"-- ImageDataGenerator baseline skipped: {exc}")
    else:
        from ferreport.constants import AUGMENTATION as a

        gen = ImageDataGenerator(rotation_range=a["rotation_degrees"], width_shift_range=a["translation"],
                                 height_shift_range=a["translation"], shear_range=a["shear"], zoom_range=a["zoom"],
                                 horizontal_flip=True, fill_mode="nearest")
        flow = gen.flow(faces.astype(np.float32) / 255.0, batch_size=bs, shuffle=False, seed=0)
        flow[0]
        start = time.perf_counter()
        for i in range(len(flow)):
            flow[i]
        idg_rate = nb * bs / (time.perf_counter() - start)

    rows = [C.report(f"augment {nb} batches of {bs}, {min(rates)} thread(s)",
                     "Keras preprocessing layers, tf.data, one thread", keras_rate, rates[min(rates)], "faces/s"),
            C.report(f"augment {nb} batches of {bs}, {min(rates)} thread(s)",
                     "Keras 2 ImageDataGenerator.flow (the seed's pipeline: one Python thread)", idg_rate,
                     rates[min(rates)], "faces/s")]
    for n in threads:
        print(f"   {n:3d} threads: {rates[n]:10,.0f} faces/s ({rates[n] / rates[min(rates)]:.1f}x one thread)")
    enough = [n for n in threads if rates[n] >= args.need]
    print(f"   to feed {args.need:,.0f} faces/s: "
          + (f"{enough[0]} thread(s)" if enough else f"more than {max(threads)} threads"))
    C.save_json(args.json, "augment", rows, threads={str(k): v for k, v in rates.items()}, need=args.need)


if __name__ == "__main__":
    main()
