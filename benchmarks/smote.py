#!/usr/bin/env python
"""SMOTE peak memory: ``balance_training_set(..., "smote")`` on N uint8 faces with ExpW's class shares.

    python benchmarks/smote.py [--faces 64000] [--seed 0]

The faces are random uint8 64x64x3 images (memory does not depend on their content),
labels drawn in ExpW's class shares (``sample.EXPW_CLASS_SHARES``). Baseline: the size
of the output (balanced faces + labels). Peak memory is the process's resident set,
sampled every 50 ms and from ``getrusage`` (ru_maxrss), reported both as the absolute
peak (input and output included) and as the growth over the RSS just before the call
(the input already in memory). Target: peak <= 2x the output. Takes minutes on 2 cores:
run it with ``nohup`` for the full 64,000 faces.
"""

from __future__ import annotations

import argparse

import numpy as np

import _common as C


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, default=64000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json")
    args = ap.parse_args()

    C.header("SMOTE memory")
    from ferreport.datasets.balancing import balance_training_set
    from ferreport.datasets.sample import EXPW_CLASS_SHARES, allocate_counts

    counts = allocate_counts(args.faces, EXPW_CLASS_SHARES)
    y = np.repeat(np.arange(len(counts)), counts)
    rng = np.random.default_rng(args.seed)
    rng.shuffle(y)
    x = np.empty((len(y), 64, 64, 3), np.uint8)
    for i in range(0, len(y), 4096):  # fill in pieces: no int64 temporary of the whole array
        x[i:i + 4096] = rng.integers(0, 256, (min(4096, len(y) - i), 64, 64, 3), dtype=np.uint8)
    print(f"   input: {len(y):,} faces, class counts {counts}, {x.nbytes / 2**20:,.0f} MB")
    before = C.rss_mb()
    with C.RssSampler() as sampler, C.timer() as t:
        result = balance_training_set(x, y, "smote", seed=args.seed)
    peak = max(sampler.peak_mb, C.peak_rss_mb())
    out_mb = (result.x.nbytes + result.y.nbytes) / 2**20
    print(f"   output: {len(result.y):,} faces, {out_mb:,.0f} MB; wall time {t['s']:.1f} s")
    print(f"   RSS before the call {before:,.0f} MB, peak {peak:,.0f} MB, growth {peak - before:,.0f} MB")
    rows = [
        C.check("SMOTE peak RSS (absolute) / output size", peak / out_mb, 2.0, "x"),
        C.check("SMOTE peak RSS growth during the call / output size", (peak - before) / out_mb, 2.0, "x"),
    ]
    rows[0].update(seconds=t["s"], output_mb=out_mb, peak_mb=peak, before_mb=before, faces=len(y))
    C.save_json(args.json, "smote", rows)


if __name__ == "__main__":
    main()
