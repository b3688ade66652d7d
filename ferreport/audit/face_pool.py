"""The faces a folder audit keeps for its report (faces_pool.npz) and their Grad-CAM maps (saliency.npz).

During the scan the pool holds a bounded top-k/bottom-k selection, exactly
:func:`ferreport.evaluation.face_pool.select_pool_rows` of the whole folder, whatever the chunking.
After it, the faces a report section shows (a weak slice's worst faces, the labels to check) are
added, cropped again from their files as the scan cropped them; the Ray engine, which keeps no
pixels on the driver, crops its whole pool again that way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ferreport.audit.columns import BOX_COLUMNS
from ferreport.audit.detection import DetectorParams, aligned_crop, find_faces
from ferreport.audit.job import AuditJob
from ferreport.constants import FACE_SIZE
from ferreport.datasets.crop import crop_face
from ferreport.datasets.decode import decode_image
from ferreport.evaluation.face_pool import select_pool_rows
from ferreport.evaluation.saliency import explain_pool
from ferreport.progress import stage
from ferreport.runs.cells import name_path
from ferreport.runs.folder import FACES_POOL, PROBA_COLUMNS, RunFolder

__all__ = ["FacePool", "add_to_pool", "crop_pool_faces", "explain_pool_file", "recrop_faces"]


class FacePool:
    """The face-pool candidates: select_pool_rows of everything seen so far (bounded)."""

    def __init__(self) -> None:
        self.frame: pd.DataFrame | None = None
        self.faces = np.zeros((0, FACE_SIZE, FACE_SIZE, 3), np.uint8)

    def update(self, frame: pd.DataFrame, faces: np.ndarray) -> None:
        """Keep the selection of the pool so far and a chunk's rows (``frame``, with ``row``) and ``faces``."""
        cols = ["row", "true_label", "pred_label", "confidence", *PROBA_COLUMNS]
        part = frame[cols]
        both = part if self.frame is None else pd.concat([self.frame, part], ignore_index=True)
        all_faces = faces if self.frame is None else np.concatenate([self.faces, faces])
        keep = select_pool_rows(both)
        self.frame = both.iloc[keep].reset_index(drop=True)
        self.faces = np.ascontiguousarray(all_faces[keep])

    def write(self, run: RunFolder) -> int:
        """The run's faces_pool.npz; returns the number of faces stored."""
        rows = (self.frame["row"].to_numpy(dtype=np.int64) if self.frame is not None
                else np.zeros(0, dtype=np.int64))
        run.write_face_pool(rows, self.faces[: len(rows)])
        return int(rows.size)


def crop_pool_faces(pool: FacePool, paths: list[str], boxes: np.ndarray, detector: DetectorParams) -> None:
    """Crop the face pool's faces again from their files (the Ray engine keeps no pixels on the driver).

    ``paths[r]`` and ``boxes[r]`` are the file and box of face row ``r`` of predictions.csv. With
    ``--align`` the face's angle is found again by the same detector (the same box, the same angle).
    """
    if pool.frame is None or not len(pool.frame):
        return
    rows = pool.frame["row"].to_numpy(dtype=np.int64)
    pool.faces = recrop_faces([(paths[row], tuple(map(int, boxes[row]))) for row in rows], detector)


def recrop_faces(items: Sequence[tuple[str | Path, tuple[int, ...]]], detector: DetectorParams) -> np.ndarray:
    """The faces at ``(path, box)`` cropped again as the scan cropped them (zeros when unreadable), in order.

    Each file is decoded once, and with ``--align`` its faces are found once by the same detector: the same
    box gets the same angle as in the scan.
    """
    faces = np.zeros((len(items), FACE_SIZE, FACE_SIZE, 3), np.uint8)
    by_path: dict[str, list[int]] = {}
    for n, (path, _) in enumerate(items):
        by_path.setdefault(str(path), []).append(n)
    for path, positions in by_path.items():
        img, _ = decode_image(path)
        if img is None:
            continue
        angles = {f.box: f.angle for f in find_faces(img, detector)} if detector.align else {}
        for n in positions:
            box = items[n][1]
            angle = angles.get(box)
            if angle is not None:
                faces[n] = aligned_crop(img, box, angle, FACE_SIZE)
            else:
                face, _ = crop_face(img, *box, FACE_SIZE)
                if face is not None:
                    faces[n] = face
    return faces


def add_to_pool(job: AuditJob, pool: FacePool, rows: Iterable[int], frame: pd.DataFrame) -> None:
    """Add the faces of predictions.csv ``rows`` a report section shows (a weak slice's worst faces, the labels
    to check) to the face pool, cropped again from their files as the scan cropped them."""
    have = set(pool.frame["row"].tolist()) if pool.frame is not None else set()
    rows = sorted(int(r) for r in set(rows) - have)
    if not rows:
        return
    items = [(job.folder / name_path(str(frame.at[row, "source"])), tuple(int(frame.at[row, c]) for c in BOX_COLUMNS))
             for row in rows]
    faces = recrop_faces(items, job.detector)
    extra = frame.iloc[rows][["true_label", "pred_label", "confidence", *PROBA_COLUMNS]].copy()
    extra.insert(0, "row", np.asarray(rows, np.int64))
    pool.frame = pd.concat([pool.frame, extra], ignore_index=True) if pool.frame is not None else extra
    pool.faces = np.concatenate([pool.faces[: len(pool.frame) - len(rows)], faces])
    pool.write(job.run)


def explain_pool_file(adapter: Any, run_dir: RunFolder | str | Path, layer: str | None = None) -> dict[str, Any]:
    """Grad-CAM of the faces in the run's faces_pool.npz into saliency.npz; returns what it recorded."""
    run = RunFolder(run_dir)
    pool = run.read_npz(FACES_POOL, ("rows", "faces"))
    if pool is None:
        raise FileNotFoundError(run.file(FACES_POOL))
    rows, faces = np.asarray(pool["rows"], dtype=np.int64), np.asarray(pool["faces"])
    with stage("saliency", total=len(rows), unit="faces") as bar:
        info = explain_pool(adapter, faces, rows, run, layer)
        bar.advance(len(rows))
    return info
