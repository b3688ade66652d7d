"""Folder audits on Ray Data (``ferreport predict FOLDER --engine ray``).

The same audit as the local engine (:func:`ferreport.audit.predict.run_audit`), with the work
spread over a Ray cluster:

1. The driver lists the folder with :func:`ferreport.audit.scanning.walk_folder`, the same rules
   as the local engine (sorted listings, symlinked folders not followed, the output
   folder left out), so both engines see the same files in the same order.
2. ``map_batches`` **tasks** read, decode, detect and crop in parallel
   (:func:`ferreport.audit.scanning.scan_files`, the local engine's own function): one row per
   face, or one row per file without a face, carrying the skip reason.
3. A pool of **model actors** (each loads the model once) predicts the faces in batches.
4. Rows are written as **Parquet shards** by Ray, read back by the driver, ordered by
   (file, face) and handed to the local engine's writer, so ``predictions.csv``,
   ``skipped.csv``, ``audit_summary.json``, the metrics and the report are built by
   the same code as a local audit. The shards are removed after the merge.

Faces cross the object store (12 KB each) but never reach the driver: the few the
report shows are cropped again on the driver from their files and boxes (decoding is
deterministic, so they are the same pixels).

``ray[data]`` is an optional extra (``pip install 'ferreport[ray]'``). Without
``address`` a local Ray is started on this machine (``workers`` CPUs) and stopped
afterwards; with one (``host:port``, ``auto`` or ``ray://...``) the audit joins that
cluster, whose nodes need ferreport installed and the folder and model at the same
paths (a shared file system). Ray's usage statistics are switched off: an audit sends
nothing anywhere.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict
from typing import Any

import cv2
import numpy as np
import pandas as pd

from ferreport.audit.detection import DetectorParams
from ferreport.audit.scanning import scan_files
from ferreport.constants import FACE_SIZE, NUM_CLASSES
from ferreport.errors import UsageError
from ferreport.models.contract import ModelContract
from ferreport.runs.folder import RunFolder

__all__ = ["RAY_COLUMNS", "require_ray", "scan_and_predict"]

#: Columns of the merged table (one row per face, or per file without a face).
RAY_COLUMNS: tuple[str, ...] = ("pos", "face_id", "reason", "top", "left", "right", "bottom", "found",
                                *(f"p{j}" for j in range(NUM_CLASSES)))
#: Files per map task.
FILES_PER_TASK = 32
#: CPUs reserved per decoding task and per model actor. Decoding and detection are
#: CPU-bound (one core each); an actor waits for faces much of the time, so it reserves
#: half a CPU.
SCAN_TASK_CPUS = 1.0
ACTOR_CPUS = 0.5
#: Memory reserved per decoding task (bytes).
SCAN_TASK_MEMORY = 256 * 2**20


def require_ray() -> Any:
    """The ``ray`` module with Ray Data loaded; UsageError saying how to install it when it is missing.

    Ray is imported here, not at the top of the module: it is an optional extra, and slow to import.
    """
    try:
        import ray  # an optional extra, slow to import
        import ray.data  # noqa: F401
    except ImportError:
        raise UsageError("--engine ray needs Ray Data; install it with: pip install 'ferreport[ray]'") from None
    return ray


def _scan_batch(batch: dict[str, np.ndarray], mode: str, detector: dict[str, Any]) -> dict[str, np.ndarray]:
    """Map task: decode, detect and crop one batch of files (the local engine's scan_files)."""
    cv2.setNumThreads(1)  # Ray runs one task per CPU
    tasks = [(int(p), os.fsdecode(f)) for p, f in zip(batch["pos"], batch["path"], strict=True)]
    results, faces = scan_files(tasks, mode, DetectorParams(**detector))
    # one row per face, or one per file without a face (carrying its skip reason)
    cols: dict[str, list[Any]] = {k: [] for k in ("pos", "face_id", "reason", "top", "left", "right", "bottom",
                                                   "found", "has_face")}
    crops: list[np.ndarray] = []
    k = 0
    blank = np.zeros((FACE_SIZE, FACE_SIZE, 3), np.uint8)
    for pos, reason, kept in results:
        rows = kept or [None]
        for j, box in enumerate(rows):
            cols["pos"].append(pos)
            cols["face_id"].append(j)
            cols["reason"].append(reason)
            top, left, right, bottom, how = box if box is not None else (-1, -1, -1, -1, "")
            for name, value in zip(("top", "left", "right", "bottom", "found", "has_face"),
                                   (top, left, right, bottom, how, box is not None), strict=True):
                cols[name].append(value)
            crops.append(faces[k] if box is not None else blank)
            k += box is not None
    out = {name: np.asarray(values) for name, values in cols.items()}
    for name in ("pos", "face_id", "top", "left", "right", "bottom"):
        out[name] = out[name].astype(np.int64)
    out["reason"] = out["reason"].astype(object)
    out["found"] = out["found"].astype(object)
    out["face"] = np.stack(crops) if crops else np.zeros((0, FACE_SIZE, FACE_SIZE, 3), np.uint8)
    return out


class _Predictor:
    """Model actor: loads the model once, predicts batches of faces."""

    def __init__(self, model_path: str, contract: dict[str, Any], unsafe_model: bool, batch_size: int,
                 model_timeout: float | None = None):
        # TensorFlow only in the actor: the driver imports this module before any model is loaded
        from ferreport.models.adapters import open_model  # TensorFlow: in the actor only

        # the driver's contract, outputs already decided: every actor reads the outputs the same way
        self.model = open_model(model_path, safe_mode=not unsafe_model, contract=ModelContract.from_dict(contract),
                                probe=False, timeout=model_timeout)
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from ferreport.models.prediction import predict_proba  # TensorFlow: in the actor only

        has = np.asarray(batch["has_face"], dtype=bool)
        proba = np.zeros((len(has), NUM_CLASSES), np.float32)
        if has.any():
            proba[has] = predict_proba(self.model, np.asarray(batch["face"])[has], batch_size=self.batch_size)
        out = {k: v for k, v in batch.items() if k not in ("face", "has_face")}
        for j in range(NUM_CLASSES):
            out[f"p{j}"] = proba[:, j]
        return out


def scan_and_predict(paths: list[str], *, mode: str, detector: DetectorParams, model_path: str | os.PathLike[str],
                     contract: dict[str, Any], unsafe_model: bool, batch_size: int, address: str | None, workers: int,
                     scratch: RunFolder | str | os.PathLike[str], progress: bool = False,
                     model_timeout: float | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Run the Ray pipeline over ``paths`` (position = list index).

    Returns the merged table (:data:`RAY_COLUMNS`, sorted by ``pos, face_id``) and a
    description of the cluster used (``{"address", "nodes", "cpus", "actors"}``).
    Parquet shards go to a temporary folder in the run folder ``scratch``, removed afterwards.
    """
    ray = require_ray()
    started_here = _start_ray(ray, address, workers, progress)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = progress
        cpus = int(ray.cluster_resources().get("CPU", 1))
        actors = max(1, cpus // 4)
        ds = _scan_then_predict(ray, paths, cpus, actors, mode=mode, detector=detector,
                                predictor_kwargs={"model_path": str(model_path), "contract": dict(contract),
                                                  "unsafe_model": bool(unsafe_model),
                                                  "batch_size": int(batch_size), "model_timeout": model_timeout})
        table = _write_and_read_back(ds, scratch)
        info = {"address": address or "local", "nodes": len(ray.nodes()), "cpus": cpus, "actors": actors}
    finally:
        if started_here:
            ray.shutdown()
    table = table[list(RAY_COLUMNS)].sort_values(["pos", "face_id"], kind="stable").reset_index(drop=True)
    if len(paths) and (table["pos"].nunique() != len(paths)):
        raise RuntimeError(f"Ray audit: results for {table['pos'].nunique()} of {len(paths)} files")
    return table, info


def _start_ray(ray: Any, address: str | None, workers: int, progress: bool) -> bool:
    """Join ``address``, or start a local Ray on ``workers`` CPUs, quietly unless ``progress``;
    whether Ray was started here (and must be shut down here)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # offline: never report usage
    if not progress:  # Ray's start-up and execution chatter is not for the console
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
        logging.getLogger("ray").setLevel(logging.ERROR)
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        ctx_logger = logging.getLogger("ray.data._internal.execution.streaming_executor")
        ctx_logger.setLevel(logging.ERROR)
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": progress,
                              "logging_level": logging.INFO if progress else logging.ERROR,
                              "configure_logging": True}
    if address:
        kwargs["address"] = address
    else:
        kwargs["num_cpus"] = workers
    try:
        ray.init(**kwargs)
    except ConnectionError as exc:
        raise UsageError(f"--ray-address {address}: cannot join the Ray cluster ({exc})") from None
    return True


def _scan_then_predict(ray: Any, paths: list[str], cpus: int, actors: int, *, mode: str, detector: DetectorParams,
                       predictor_kwargs: dict[str, Any]) -> Any:
    """The Ray Data pipeline: scan tasks (decode, detect, crop), then a pool of model actors."""
    # bytes: any file name (even one that is not valid UTF-8) round-trips through Arrow
    items = [{"pos": i, "path": os.fsencode(p)} for i, p in enumerate(paths)]
    blocks = max(1, min(len(items), max(cpus * 4, len(items) // 256)))
    ds = ray.data.from_items(items, override_num_blocks=blocks)
    ds = ds.map_batches(_scan_batch, fn_kwargs={"mode": mode, "detector": asdict(detector)},
                        batch_size=FILES_PER_TASK, batch_format="numpy", num_cpus=SCAN_TASK_CPUS,
                        # a memory reservation (one decoded photo and its crops) also keeps Ray
                        # from fusing these tasks into the model actors, which would serialise decoding
                        memory=SCAN_TASK_MEMORY)
    return ds.map_batches(_Predictor, fn_constructor_kwargs=predictor_kwargs,
                          batch_size=predictor_kwargs["batch_size"], batch_format="numpy", num_cpus=ACTOR_CPUS,
                          compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors))


def _write_and_read_back(ds: Any, scratch: RunFolder | str | os.PathLike[str]) -> pd.DataFrame:
    """Run the pipeline into Parquet shards in the run folder ``scratch``; the shards read back as one table,
    then removed."""
    parts = RunFolder(scratch).read_back_parquet(ds.write_parquet)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({c: [] for c in RAY_COLUMNS})
