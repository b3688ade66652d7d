#!/usr/bin/env python
"""The cost of bounding every model call (``--model-timeout``): each batch runs in a watchdog's worker thread.

    python benchmarks/model_timeout.py [--faces 4096] [--arch seed] [--repeats 3]

Baseline: the same adapter with no limit (``timeout=None``: ``raw_predict`` called directly in
the caller's thread), in the same run, at batch 32 (many calls: the worst case for a per-call
cost) and 256 (ferreport's default). Target: the bounded calls keep >= 0.97x the baseline's
faces/s, and the probabilities are identical.
"""

from __future__ import annotations

import argparse

import numpy as np

import _common as C


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, default=4096)
    ap.add_argument("--arch", default="seed")
    ap.add_argument("--repeats", type=int, default=3, help="best of N timed runs each")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()

    C.header("bounded model calls (--model-timeout)")
    from ferreport.models.adapters import adapter_for
    from ferreport.models.model_file import build_model
    from ferreport.models.watchdog import DEFAULT_MODEL_TIMEOUT

    adapter = adapter_for(build_model(args.arch))
    faces = np.random.default_rng(0).integers(0, 256, (args.faces, 64, 64, 3), dtype=np.uint8)
    adapter.predict(faces[:64])  # warm-up (tracing)
    rows = []
    for batch in (32, 256):
        def run(timeout: float | None, batch: int = batch) -> np.ndarray:
            adapter.timeout = timeout
            return adapter.predict(faces, batch)

        t_base, p_base = C.best_of(lambda: run(None), args.repeats)
        t_proj, p_proj = C.best_of(lambda: run(DEFAULT_MODEL_TIMEOUT), args.repeats)
        same = bool(np.array_equal(p_base, p_proj))
        rows.append(C.report(f"predict {args.faces} faces at batch {batch}, each call bounded", "direct calls",
                             args.faces / t_base, args.faces / t_proj, "faces/s", target=0.97,
                             note=f"probabilities identical: {same}; {args.faces // batch + 1} calls, "
                                  f"{(t_proj - t_base) / (args.faces / batch) * 1e6:+.0f} µs per call"))
        rows[-1]["identical"] = same
    C.save_json(args.json, "model_timeout", rows)


if __name__ == "__main__":
    main()
