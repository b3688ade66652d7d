"""What Grad-CAM saliency costs: ms per face against plain prediction, and the report with vs without it.

Evaluates ``--model`` on ``--split-of``'s test faces into a temporary folder (as
``ferreport evaluate --model M --split-of RUN --out TMP`` does), then measures in the
same run:

* Grad-CAM of the face pool (the faces any report grid can show), batched, ms per face,
  against the model's plain prediction of the same faces (the baseline);
* rendering report.html + report.pdf with saliency.npz and with it removed (same folder
  otherwise): seconds, HTML and PDF bytes.

    python benchmarks/saliency.py [--model MODEL.keras] [--split-of RUN_DIR] [--repeats 3]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import best_of, header, save_json
from ferreport.config import RunConfig
from ferreport.evaluation.evaluate_stage import evaluate_on_split
from ferreport.evaluation.saliency import grad_cam
from ferreport.models.adapters import open_model
from ferreport.report import write_report
from ferreport.runs.folder import SALIENCY as SALIENCY_FILE

BENCH = Path("/tmp/ferreport-bench/finetune/seed0/scratch")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=BENCH / "model.keras")
    ap.add_argument("--split-of", type=Path, default=BENCH)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    header("saliency: Grad-CAM cost and report size")
    work = Path(tempfile.mkdtemp(prefix="ferreport-saliency-"))
    try:
        run = work / "with"
        evaluate_on_split(args.model, args.split_of, RunConfig.build(out=run, formats=()))
        with np.load(run / "faces_pool.npz") as npz:
            faces = npz["faces"]
        adapter = open_model(args.model)
        t_pred, _ = best_of(lambda: adapter.predict(faces, batch_size=64), args.repeats)
        t_cam, (maps, info) = best_of(lambda: grad_cam(adapter, faces), args.repeats)
        n = len(faces)
        rows = [{"what": "predict (baseline)", "faces": n, "ms_per_face": 1000 * t_pred / n},
                {"what": f"grad-cam ({info['layer']}, {'x'.join(map(str, info['map_size']))})", "faces": n,
                 "ms_per_face": 1000 * t_cam / n}]
        bare = work / "without"
        shutil.copytree(run, bare)
        (bare / SALIENCY_FILE).unlink()
        for name, folder in (("report with saliency", run), ("report without saliency", bare)):
            t, _ = best_of(lambda f=folder: write_report(f), 1)
            rows.append({"what": name, "seconds": t, "html_bytes": (folder / "report.html").stat().st_size,
                         "pdf_bytes": (folder / "report.pdf").stat().st_size})
        print(f"model {args.model}; {n} pooled faces (of {sum(1 for _ in open(run / 'predictions.csv')) - 1} "
              "scored)\n")
        print(f"{'':<36} {'ms/face':>8} {'x predict':>9}")
        for r in rows[:2]:
            print(f"{r['what']:<36} {r['ms_per_face']:>8.2f} {r['ms_per_face'] / rows[0]['ms_per_face']:>9.1f}")
        print(f"\n{'':<26} {'render s':>8} {'HTML KB':>8} {'PDF KB':>8}")
        for r in rows[2:]:
            print(f"{r['what']:<26} {r['seconds']:>8.1f} {r['html_bytes'] / 1024:>8.0f} {r['pdf_bytes'] / 1024:>8.0f}")
        w, wo = rows[2], rows[3]
        print(f"\nsaliency adds {w['seconds'] - wo['seconds']:+.1f} s to rendering, "
              f"{(w['html_bytes'] - wo['html_bytes']) / 1024:+.0f} KB HTML, {(w['pdf_bytes'] - wo['pdf_bytes']) / 1024:+.0f} KB PDF; "
              f"Grad-CAM of the pool takes {t_cam:.2f} s at evaluation")
        save_json(args.json, "saliency", rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        time.sleep(0)


if __name__ == "__main__":
    main()
