"""Shared helpers for the speed and memory benchmarks (``python benchmarks/NAME.py``).

Every benchmark measures the project and a named baseline *in the same run* and prints
the ratio against its target, so figures from a loaded or slower machine still compare
like with like. Nothing here asserts on time: the scripts report, tests never time.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))


def load_average() -> str:
    try:
        return "/".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def machine_info() -> dict[str, Any]:
    """CPU model, cores, memory, Python, library versions, load average."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cores": os.cpu_count(),
        "load_average_1_5_15": load_average(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gb"] = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    for mod in ("numpy", "cv2", "tensorflow", "keras", "imblearn", "sklearn"):
        if mod in sys.modules:
            info[mod] = getattr(sys.modules[mod], "__version__", "?")
    return info


def header(title: str) -> None:
    info = machine_info()
    print(f"== {title}")
    print(f"   machine: {info.get('cpu', '?')}, {info['cores']} cores, {info.get('memory_gb', '?')} GB, "
          f"Python {info['python']}; load average {info['load_average_1_5_15']}")
    sys.stdout.flush()


@contextmanager
def timer() -> Iterator[dict[str, float]]:
    """``with timer() as t: ...`` then ``t["s"]`` holds the wall seconds."""
    t: dict[str, float] = {}
    start = time.perf_counter()
    try:
        yield t
    finally:
        t["s"] = time.perf_counter() - start


def best_of(fn, repeats: int = 1) -> tuple[float, Any]:
    """Best wall time of ``repeats`` calls (the least disturbed by other load) and the last result."""
    best, result = float("inf"), None
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def rss_mb() -> float:
    """Current resident set size (MB), from /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (MB; ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class RssSampler:
    """Samples this process's RSS in a thread; ``peak_mb`` is the highest seen while running."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, rss_mb())
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self.peak_mb = rss_mb()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, rss_mb())


def report(name: str, baseline_name: str, baseline: float | None, project: float, unit: str,
           target: float | None = None, higher_is_better: bool = True, note: str = "") -> dict[str, Any]:
    """Print ``baseline``, ``project`` and their ratio against ``target``; return the row."""
    row: dict[str, Any] = {"bench": name, "baseline": baseline_name, "unit": unit,
                           "baseline_value": baseline, "project_value": project,
                           "load_average": load_average()}
    print(f"-- {name}")
    if baseline is not None:
        print(f"   baseline ({baseline_name}): {baseline:,.2f} {unit}")
    print(f"   ferreport: {project:,.2f} {unit}")
    if baseline is not None and baseline > 0 and project > 0:
        ratio = project / baseline if higher_is_better else baseline / project
        row["ratio"] = ratio
        verdict = ""
        if target is not None:
            row["target"] = target
            row["met"] = ratio >= target
            verdict = f" (target >= {target:g}x: {'MET' if ratio >= target else 'NOT MET'})"
        print(f"   ratio vs baseline: {ratio:.2f}x{verdict}")
    if note:
        print(f"   {note}")
    print(f"   load average: {row['load_average']}")
    sys.stdout.flush()
    return row


def check(name: str, value: float, limit: float, unit: str, at_most: bool = True) -> dict[str, Any]:
    """Print a figure against an absolute limit (``value <= limit`` when ``at_most``)."""
    ok = value <= limit if at_most else value >= limit
    print(f"-- {name}: {value:,.2f} {unit} (target {'<=' if at_most else '>='} {limit:g} {unit}: "
          f"{'MET' if ok else 'NOT MET'}); load average {load_average()}")
    sys.stdout.flush()
    return {"bench": name, "value": value, "limit": limit, "unit": unit, "met": ok, "load_average": load_average()}


def save_json(path: str | None, title: str, rows: list[dict[str, Any]], **extra: Any) -> None:
    if not path:
        return
    data = {"benchmark": title, "machine": machine_info(), "results": rows, **extra}
    Path(path).write_text(json.dumps(data, indent=2, default=str))
    print(f"   wrote {path}")


def matmul_gflops(n: int = 1024, repeats: int = 5) -> float:
    """float32 matrix-multiply throughput (GFLOP/s) with TensorFlow on this machine, best of ``repeats``."""
    import tensorflow as tf

    a = tf.random.uniform((n, n), dtype=tf.float32)
    b = tf.random.uniform((n, n), dtype=tf.float32)
    tf.linalg.matmul(a, b).numpy()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        tf.linalg.matmul(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def seed_image_data_generator() -> Any | None:
    """Keras 2's ``ImageDataGenerator`` with the seed notebook's augmentation, or None (printed why)
    when the benchmark-only ``tf-keras`` package is missing."""
    try:
        from tf_keras.preprocessing.image import ImageDataGenerator
    except ImportError as exc:
        print(f"-- ImageDataGenerator baseline skipped: {exc} (pip install -r benchmarks/requirements.txt)")
        return None
    from ferreport.models.architectures import AUGMENTATION as a

    return ImageDataGenerator(rotation_range=a["rotation_degrees"], width_shift_range=a["translation"],
                              height_shift_range=a["translation"], shear_range=a["shear"], zoom_range=a["zoom"],
                              horizontal_flip=True, fill_mode="nearest")


def read_splits(run: Path) -> Any:
    """A run folder's splits.csv (key, source, face_id, label, group, split) as a DataFrame, keys as text."""
    import pandas as pd

    from ferreport.runs import folder as artifacts

    return pd.read_csv(Path(run) / artifacts.SPLITS, keep_default_na=False, dtype={"key": str})


def split_rows(keys: Any, run: Path) -> dict[str, Any]:
    """Row numbers of ``keys`` (a prepared dataset's ``index["key"]``) in each split of ``run``."""
    import numpy as np

    split = read_splits(run)
    by_key = dict(zip(split["key"], split["split"]))
    names = np.array([by_key.get(k, "") for k in keys])
    return {s: np.flatnonzero(names == s) for s in ("train", "val", "test")}
