#!/usr/bin/env python
"""Batch prediction: ``ferreport.models.prediction.predict_proba`` vs ``model.predict(x)`` with defaults.

    python benchmarks/predict.py [--faces 5000] [--arch seed] [--model M.keras] [--repeats 2]

Baseline: ``model.predict(faces / 255.0)`` with Keras defaults (batch 32). Also measures
the float32 matmul GFLOP/s in the same run and turns it into a ceiling in faces/s
(GFLOP/s / FLOP per forward pass). Target: >= 2x the baseline, or >= 40 % of the
ceiling; probabilities equal to the baseline's within 1e-4.
"""

from __future__ import annotations

import argparse

import numpy as np

import _common as C


def forward_flops(model) -> float:
    """Multiply-adds x 2 of the Conv2D and Dense layers (the rest is negligible)."""
    import keras

    total = 0.0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            out = layer.output.shape
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1]
            total += 2.0 * out[1] * out[2] * out[3] * kh * kw * cin
        elif isinstance(layer, keras.layers.Dense):
            total += 2.0 * layer.input.shape[-1] * layer.units
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, default=5000)
    ap.add_argument("--arch", default="seed")
    ap.add_argument("--model", help="a .keras file instead of a freshly initialised --arch model")
    ap.add_argument("--batch-size", type=int, default=None, help="predict_proba batch size (default: its own)")
    ap.add_argument("--repeats", type=int, default=2, help="best of N timed runs each")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()

    C.header("batch prediction")
    from ferreport.models.model_file import build_model, load_model
    from ferreport.models.prediction import predict_proba

    model = load_model(args.model) if args.model else build_model(args.arch)
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (args.faces, 64, 64, 3), dtype=np.uint8)
    x = faces.astype(np.float32) / 255.0
    flops = forward_flops(model)

    gflops = C.matmul_gflops()
    ceiling = gflops * 1e9 / flops
    print(f"   matmul: {gflops:.1f} GFLOP/s; model: {flops / 1e6:.1f} MFLOP/face -> ceiling {ceiling:,.0f} faces/s")

    model.predict(x[:64], verbose=0)  # warm-up (tracing)
    kw = {} if args.batch_size is None else {"batch_size": args.batch_size}
    predict_proba(model, faces[:64], **kw)
    t_base, p_base = C.best_of(lambda: model.predict(x, verbose=0), args.repeats)
    t_proj, p_proj = C.best_of(lambda: predict_proba(model, faces, **kw), args.repeats)
    diff = float(np.abs(np.asarray(p_base, np.float32) - p_proj).max())
    base_fps, proj_fps = args.faces / t_base, args.faces / t_proj
    rows = [C.report(f"predict {args.faces} faces ({args.arch if not args.model else args.model})",
                     "model.predict(x), defaults", base_fps, proj_fps, "faces/s", target=2.0)]
    share = proj_fps / ceiling
    print(f"   share of the matmul ceiling: ferreport {share:.0%}, baseline {base_fps / ceiling:.0%} "
          f"(target >= 40 %: {'MET' if share >= 0.4 else 'NOT MET'})")
    print(f"   max |p - p_baseline| = {diff:.2e} (target <= 1e-4: {'MET' if diff <= 1e-4 else 'NOT MET'})")
    rows[0].update(ceiling_faces_s=ceiling, matmul_gflops=gflops, ceiling_share=share, max_abs_diff=diff,
                   mflop_per_face=flops / 1e6)
    C.save_json(args.json, "predict", rows)


if __name__ == "__main__":
    main()
