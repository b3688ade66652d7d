#!/usr/bin/env python
"""Training speed on a GPU: faces/s and the time of one epoch at ExpW scale, mixed precision off and on.

    KERAS_BACKEND=jax python benchmarks/gpu_train.py [--faces 170072] [--budget-s 420] [--json F]

Builds the project's own networks (:mod:`ferreport.models.architectures`, Keras only) and
trains each configuration for one full epoch of ``--faces`` random uint8 faces (default
170,072: the SMOTE-balanced training split of ExpW, see ``smote.py``) with
``model.fit``. The faces enter as uint8 and are scaled, and augmented where the row
says so, on the device by Keras layers in front of the network (``Rescaling`` and the
tool's five augmentation layers, :func:`ferreport.models.architectures.augmentation_layers`),
so the host only slices batches. Each row is timed after a warm-up fit that compiles
the step; where a full epoch would outrun ``--max-epoch-s`` the row times part of the
epoch and says so. Mixed precision is Keras' ``mixed_float16`` policy (float16
arithmetic, float32 weights, loss scaling).

Baseline in the same run: ``--baseline`` (default the seed recipe's own configuration:
seed CNN, batch 32, augmented, float32); every row prints its ratio to it.

Runs on any Keras 3 backend. The tool trains on TensorFlow; this script exists so the
figures can be taken on a GPU machine whose image lacks TensorFlow (its wheel is larger
than what can be carried there), with ``KERAS_BACKEND=jax``. The backend, device and
versions are printed and stored with the figures.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

import _common as C

#: (name, arch, batch, augment, policy, steps_per_execution), most important first: rows
#: that do not fit in --budget-s are skipped and said so.
CONFIGS: tuple[tuple[str, str, int, bool, str, int], ...] = (
    ("seed recipe", "seed", 32, True, "float32", 1),
    ("seed recipe, mixed", "seed", 32, True, "mixed_float16", 1),
    ("seed CNN, no augmentation", "seed", 32, False, "float32", 1),
    ("seed CNN, no augmentation, mixed", "seed", 32, False, "mixed_float16", 1),
    ("seed recipe, batch 256", "seed", 256, True, "float32", 1),
    ("seed recipe, batch 256, mixed", "seed", 256, True, "mixed_float16", 1),
    ("default (compact-std)", "compact-std", 32, True, "float32", 1),
    ("default (compact-std), mixed", "compact-std", 32, True, "mixed_float16", 1),
    ("seed CNN, no augmentation, batch 256", "seed", 256, False, "float32", 1),
    ("seed CNN, no augmentation, batch 256, mixed", "seed", 256, False, "mixed_float16", 1),
    ("compact-std, no augmentation", "compact-std", 32, False, "float32", 1),
    ("compact-std, no augmentation, mixed", "compact-std", 32, False, "mixed_float16", 1),
    ("compact-std, no augmentation, batch 256", "compact-std", 256, False, "float32", 1),
    ("compact-std, no augmentation, batch 256, mixed", "compact-std", 256, False, "mixed_float16", 1),
    ("seed recipe, 16 steps per call", "seed", 32, True, "float32", 16),
    ("seed recipe, 16 steps per call, mixed", "seed", 32, True, "mixed_float16", 16),
)


def device_info(keras) -> dict[str, str]:
    info = {"backend": keras.backend.backend(), "keras": keras.__version__}
    backend = info["backend"]
    try:
        if backend == "jax":
            import jax

            info["jax"] = jax.__version__
            info["device"] = str(jax.devices()[0].device_kind)
        elif backend == "torch":
            import torch

            info["torch"] = torch.__version__
            info["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        elif backend == "tensorflow":
            import tensorflow as tf

            info["tensorflow"] = tf.__version__
            gpus = tf.config.list_physical_devices("GPU")
            info["device"] = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") \
                if gpus else "cpu"
    except Exception as exc:  # report what we could not read, never fail the run on it
        info["device"] = f"unknown ({type(exc).__name__}: {exc})"
    return info


def training_model(keras, arch: str, augment: bool, seed: int):
    """uint8 faces -> Rescaling(1/255) -> [augmentation] -> the architecture, compiled like the tool's."""
    from ferreport.constants import FACE_SHAPE, NUM_CLASSES
    from ferreport.models.architectures import ARCHITECTURES, augmentation_layers, compile_model

    keras.utils.set_random_seed(seed)
    body = ARCHITECTURES[arch](FACE_SHAPE, NUM_CLASSES)
    inputs = keras.Input(shape=FACE_SHAPE, dtype="uint8", name="face_uint8")
    x = keras.layers.Rescaling(1.0 / 255.0, name="scale")(inputs)
    if augment:
        for layer in augmentation_layers(tuple(seed + k for k in range(1, 6))):
            x = layer(x)
    return compile_model(keras.Model(inputs, body(x), name=f"train_{arch}"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, default=170_072, help="faces in one epoch (ExpW after SMOTE: 170,072)")
    ap.add_argument("--budget-s", type=float, default=420.0, help="skip rows once this much time has passed")
    ap.add_argument("--max-epoch-s", type=float, default=60.0,
                    help="time only part of an epoch where a full one would take longer (extrapolated, marked)")
    ap.add_argument("--only", nargs="*", help="names of rows to run (default: all)")
    ap.add_argument("--baseline", default="seed recipe", help="row the others are compared with (run first)")
    ap.add_argument("--json")
    args = ap.parse_args()
    start = time.perf_counter()

    import keras

    C.header(f"training speed, Keras backend {keras.backend.backend()}")
    info = device_info(keras)
    print("-- " + ", ".join(f"{k} {v}" for k, v in info.items()))

    rng = np.random.default_rng(0)
    n = args.faces
    faces = rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
    labels = rng.integers(0, 7, n)
    onehot = np.eye(7, dtype=np.float32)[labels]
    print(f"-- {n} random uint8 faces ready after {time.perf_counter() - start:.1f} s")

    rows: list[dict] = []
    base_rate: float | None = None
    configs = sorted(CONFIGS, key=lambda c: c[0] != args.baseline)  # the baseline first
    for name, arch, bs, augment, policy, spe in configs:
        if args.only and name not in args.only:
            continue
        if time.perf_counter() - start > args.budget_s:
            print(f"-- skipped (over --budget-s {args.budget_s:.0f}): {name}")
            continue
        keras.mixed_precision.set_global_policy(policy)
        model = training_model(keras, arch, augment, seed=0)
        if spe > 1:
            model.compile(optimizer=model.optimizer, loss=model.loss, metrics=["accuracy"], steps_per_execution=spe)
        # warm-up: compiles the train step (and shows the rate, to size the timed part)
        warm = min(n, bs * 64 * spe)
        t0 = time.perf_counter()
        model.fit(faces[:warm], onehot[:warm], batch_size=bs, epochs=1, shuffle=False, verbose=0)
        t_warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        model.fit(faces[:warm], onehot[:warm], batch_size=bs, epochs=1, shuffle=False, verbose=0)
        warm_rate = warm / (time.perf_counter() - t0)
        timed = n if n / warm_rate <= args.max_epoch_s else max(warm, int(warm_rate * args.max_epoch_s) // bs * bs)
        t0 = time.perf_counter()
        hist = model.fit(faces[:timed], onehot[:timed], batch_size=bs, epochs=1, shuffle=True, verbose=0)
        seconds = time.perf_counter() - t0
        rate = timed / seconds
        loss = float(hist.history["loss"][-1])
        if base_rate is None and name == args.baseline:
            base_rate = rate
        row = {"name": name, "arch": arch, "batch": bs, "augment": augment, "policy": policy,
               "steps_per_execution": spe, "faces_timed": timed, "seconds": round(seconds, 2),
               "faces_per_s": round(rate, 1), "epoch_s_at_faces": round(n / rate, 1),
               "extrapolated": timed < n, "compile_and_warmup_s": round(t_warm, 1), "loss": round(loss, 4),
               "vs_baseline": round(rate / base_rate, 2) if base_rate else None}
        rows.append(row)
        mark = " (extrapolated)" if timed < n else ""
        ratio = f"{rate / base_rate:.2f}x {args.baseline}" if base_rate else "no baseline row"
        print(f"{name:40s} {rate:9.0f} faces/s  epoch of {n}: {n / rate:7.1f} s{mark}  {ratio}  "
              f"(compile+warm-up {t_warm:.1f} s, loss {loss:.3f})", flush=True)
        if not np.isfinite(loss):
            print(f"!! {name}: loss is not finite", file=sys.stderr)
        del model
        keras.backend.clear_session()
    keras.mixed_precision.set_global_policy("float32")
    print(f"-- total {time.perf_counter() - start:.0f} s")
    C.save_json(args.json, "gpu_train", rows, device=info, faces=n)


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    main()
