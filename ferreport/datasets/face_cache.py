"""The face cache: decode each source image once, crop its faces, resize to 64x64 RGB uint8, cache.

The cache holds the faces as a NumPy ``.npy`` file (memory-mapped on read, so memory
stays flat) beside the index table. Its key is the data fingerprint plus the
preprocessing parameters, so a changed label file, image or parameter misses the cache.
Scaling to [0, 1] and one-hot encoding happen where the model consumes the data.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ferreport import __version__
from ferreport.config import default_cache_root
from ferreport.constants import FACE_SHAPE, FACE_SIZE
from ferreport.datasets.crop import CropResult, CropTask, decode_and_crop
from ferreport.datasets.expw import MAX_LABEL_BYTES
from ferreport.datasets.index_table import INDEX_COLUMNS, LabelIndex
from ferreport.datasets.loading import load_dataset
from ferreport.datasets.skips import count_by_reason
from ferreport.datasets.workers import exit_with_parent, pool_context
from ferreport.errors import DatasetError, OutputError
from ferreport.progress import Stage, stage
from ferreport.safe_io import regular_chunks

__all__ = ["PREPROCESS_VERSION", "PreparedDataset", "check_faces", "prepare_dataset"]

#: Bump when the decode/crop/resize output changes, so old caches miss.
#: 2: JPEGs whose every box is at least 2/4/8 x the face size are decoded at 1/2, 1/4, 1/8.
#: 3: partly decoded JPEGs, implausible JPEG headers and boxes wholly outside the image are
#:    skipped, so a cache built before them (which may hold such grey faces) is not served.
PREPROCESS_VERSION = 3


@dataclass
class PreparedDataset:
    """Faces ready for the model's input pipeline, with their index and provenance."""

    root: Path
    kind: str
    faces: np.ndarray                 # (N, 64, 64, 3) uint8 RGB, memory-mapped from the cache
    index: pd.DataFrame               # INDEX_COLUMNS + "clipped"
    skipped: dict[str, int]
    examples: dict[str, str]
    fingerprint: str
    cache_dir: Path
    cache_hit: bool
    seconds: float = 0.0
    params: dict[str, object] = field(default_factory=dict)

    @property
    def labels(self) -> np.ndarray:
        return self.index["label"].to_numpy(dtype=np.int64)


def prepare_dataset(root: str | os.PathLike[str], *, strict: bool = False,
                    cache_root: str | os.PathLike[str] | None = None, workers: int | None = None, size: int = FACE_SIZE,
                    progress: bool = False) -> PreparedDataset:
    """Load, validate, decode, crop and cache a dataset; a second call reads the cache.

    Stages: the quick key (label file and image listing, no parsing) may point at a cache
    entry; else load and fingerprint the dataset, whose key may name one; else decode and
    crop every face (in a process pool), write the entry atomically and read it back.
    """
    del progress  # the progress mode (ferreport.progress) decides what is shown
    with stage("prepare", unit="images") as bar:
        dataset = _prepare(Path(root), cache_root, workers=workers, strict=strict, size=size, bar=bar)
        bar.summary = (f"{len(dataset.index):,} faces{' from the cache' if dataset.cache_hit else ''} "
                       f"in {bar.seconds:.1f} s")
    return dataset


def _prepare(root: Path, cache_root: str | os.PathLike[str] | None, *, workers: int | None, strict: bool, size: int,
             bar: Stage) -> PreparedDataset:
    """:func:`prepare_dataset`'s work: quick-key hit, else fingerprint hit, else decode (counted on ``bar``)."""
    start = time.perf_counter()
    cache_root = Path(cache_root) if cache_root is not None else default_cache_root()
    quick = _quick_key(root, size)
    if quick is not None:
        hit = _read_quick(cache_root, quick, strict)
        if hit is not None:
            return _prepared_from_quick_hit(root, cache_root, hit, start)
    run = _load_and_fingerprint(root, cache_root, quick, strict=strict, size=size, start=start)
    cached = _read_cache(run.cache_dir)
    if cached is not None:
        faces, index, meta = cached
        _write_quick(cache_root, quick, run.key)
        return run.prepared(faces, index, meta, cache_hit=True)
    return _decode_and_cache(run, workers=workers, bar=bar)


@dataclass
class _PrepareRun:
    """One :func:`prepare_dataset` call once its dataset is loaded and fingerprinted."""

    root: Path
    cache_root: Path
    quick: str | None
    labels: LabelIndex
    params: dict[str, object]
    fingerprint: str
    key: str
    strict: bool
    size: int
    start: float  # perf_counter at the call, for PreparedDataset.seconds

    @property
    def cache_dir(self) -> Path:
        return self.cache_root / self.key

    def prepared(self, faces: np.ndarray, index: pd.DataFrame, meta: dict, *, cache_hit: bool) -> PreparedDataset:
        return PreparedDataset(root=self.root, kind=self.labels.kind, faces=faces, index=index, skipped=meta["skipped"],
                               examples=meta["examples"], fingerprint=self.fingerprint, cache_dir=self.cache_dir,
                               cache_hit=cache_hit, seconds=time.perf_counter() - self.start, params=self.params)


def _prepared_from_quick_hit(root: Path, cache_root: Path, hit: tuple[np.ndarray, pd.DataFrame, dict],
                             start: float) -> PreparedDataset:
    """The dataset of a cache entry found by quick key: its provenance comes from the entry's meta."""
    faces, index, meta = hit
    return PreparedDataset(root=root, kind=meta["params"]["kind"], faces=faces, index=index,
                           skipped=meta["skipped"], examples=meta["examples"], fingerprint=meta["fingerprint"],
                           cache_dir=cache_root / meta["key"], cache_hit=True,
                           seconds=time.perf_counter() - start, params=meta["params"])


def _load_and_fingerprint(root: Path, cache_root: Path, quick: str | None, *, strict: bool, size: int,
                          start: float) -> _PrepareRun:
    labels = load_dataset(root, strict=strict)
    params: dict[str, object] = {"size": size, "color": "RGB", "interpolation": "INTER_AREA",
                                 "version": PREPROCESS_VERSION, "kind": labels.kind}
    fingerprint, key = _fingerprints(labels, params)
    return _PrepareRun(root=root, cache_root=cache_root, quick=quick, labels=labels, params=params,
                       fingerprint=fingerprint, key=key, strict=strict, size=size, start=start)


def _fingerprints(labels: LabelIndex, params: dict[str, object]) -> tuple[str, str]:
    """(data fingerprint, cache key). The fingerprint ignores mtimes so copies match."""
    data_hash = hashlib.sha256()
    stat_hash = hashlib.sha256()
    if labels.label_file is not None:  # streamed: memory stays at one chunk
        try:
            for block in regular_chunks(labels.label_file, MAX_LABEL_BYTES):
                data_hash.update(block)
        except OSError as exc:  # changed since it was read
            raise DatasetError(f"{labels.label_file}: cannot read the label file again ({exc}); "
                               f"do not change it while ferreport runs") from exc
    image_dir = os.fspath(labels.image_dir)
    for name in sorted(pd.unique(labels.index["source"])):
        try:
            st = os.stat(os.path.join(image_dir, name))
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime = -1, -1
        data_hash.update(f"{name}\0{size}\n".encode("utf-8", "surrogateescape"))
        stat_hash.update(f"{mtime}\n".encode())
    if labels.label_file is None:  # class folders: labels come from the paths
        data_hash.update(labels.index["label"].to_numpy().tobytes())
    fingerprint = data_hash.hexdigest()
    key = hashlib.sha256(
        (fingerprint + stat_hash.hexdigest() + json.dumps(params, sort_keys=True)).encode()
    ).hexdigest()[:32]
    return fingerprint, key


def _decode_and_cache(run: _PrepareRun, *, workers: int | None, bar: Stage) -> PreparedDataset:
    """The cache miss: decode and crop every face, write the cache entry, read it back."""
    tasks = _tasks_by_image(run.labels)
    n = len(run.labels.index)
    _remove_abandoned(run.cache_root)
    tmp_dir = run.cache_root / f".{run.key}.tmp-{os.getpid()}"
    decoded = _Decoded.empty(_open_buffer(run, tmp_dir, n), n)
    bar.set_total(len(tasks))
    _decode_faces(tasks, run.size, workers=workers, bar=bar, absorb=decoded.absorb)
    skipped, examples = _failures_as_skips(run, decoded.failures)
    keep = np.flatnonzero(decoded.ok)
    if keep.size == 0:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise DatasetError(f"{run.root}: no face could be decoded (skipped: {count_by_reason(skipped, 'face')})")
    final_index = run.labels.index.iloc[keep].reset_index(drop=True)
    final_index["clipped"] = decoded.clipped[keep]
    meta = {"key": run.key, "quick_key": run.quick, "fingerprint": run.fingerprint, "params": run.params,
            "n_faces": int(keep.size), "skipped": dict(sorted(skipped.items())), "examples": examples,
            "ferreport": __version__, "complete": True}
    _write_entry(run, tmp_dir, decoded, final_index, meta)
    faces, final_index, meta = _read_cache(run.cache_dir) or (None, None, None)
    if faces is None:
        raise OutputError(f"{run.cache_dir}: the face cache could not be read back after writing")
    _write_quick(run.cache_root, run.quick, run.key)
    return run.prepared(faces, final_index, meta, cache_hit=False)


def _tasks_by_image(labels: LabelIndex) -> list[CropTask]:
    """One task per source image with all its boxes, so each image is decoded once."""
    index = labels.index
    by_image: dict[str, list[tuple[int, int, int, int, int]]] = collections.defaultdict(list)
    cols = [index[c].to_numpy() for c in ("source", "top", "left", "right", "bottom")]
    for pos, (src, t, l, r, b) in enumerate(zip(*cols, strict=True)):
        by_image[src].append((pos, int(t), int(l), int(r), int(b)))
    return [(str(labels.image_dir / src), boxes) for src, boxes in by_image.items()]


def _open_buffer(run: _PrepareRun, tmp_dir: Path, n: int) -> np.ndarray:
    """A fresh temporary cache folder holding ``all.npy``, a memory-mapped slot for each of the ``n`` faces."""
    size = run.size
    try:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        tmp_dir.mkdir(parents=True)
        return np.lib.format.open_memmap(tmp_dir / "all.npy", mode="w+", dtype=np.uint8,
                                         shape=(max(n, 1), size, size, 3))
    except OSError as exc:
        raise OutputError(f"{run.cache_root}: cannot write the face cache ({exc.strerror}); "
                          "set FERREPORT_CACHE to a writable folder") from exc


@dataclass
class _Decoded:
    """The workers' results gathered by index row: faces in ``buffer``, what was clipped, what failed."""

    buffer: np.ndarray                # memory-mapped all.npy, one slot per index row
    ok: np.ndarray                    # bool per row: the face is in the buffer
    clipped: np.ndarray               # bool per row: the box reached past the image border
    failures: list[tuple[int, str]]   # (row, skip reason)

    @classmethod
    def empty(cls, buffer: np.ndarray, n: int) -> _Decoded:
        return cls(buffer=buffer, ok=np.zeros(n, dtype=bool), clipped=np.zeros(n, dtype=bool), failures=[])

    def absorb(self, result: CropResult) -> None:
        positions, faces, fails, clip = result
        if positions:
            self.buffer[positions] = faces
            self.ok[positions] = True
        self.clipped[clip] = True
        self.failures.extend(fails)

    def take_buffer(self) -> np.ndarray:
        """The buffer, no longer referenced here, so it is closed once the caller drops it."""
        buffer = self.buffer
        del self.buffer
        return buffer


def _decode_faces(tasks: list[CropTask], size: int, *, workers: int | None, bar: Stage,
                  absorb: Callable[[CropResult], None]) -> None:
    """Run :func:`decode_and_crop` over the tasks in chunks (in a process pool unless small), absorb each
    result and count its images on ``bar``."""
    workers = workers or min(os.cpu_count() or 1, 8)
    chunk = 32
    chunks = [tasks[i:i + chunk] for i in range(0, len(tasks), chunk)]
    if workers <= 1 or len(tasks) < 64:
        for c in chunks:
            absorb(decode_and_crop(c, size))
            bar.advance(len(c))
        return
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=pool_context(),
                                initializer=exit_with_parent, initargs=(os.getpid(),)) as pool:
        for c, result in zip(chunks, pool.map(decode_and_crop, chunks, [size] * len(chunks)), strict=True):
            absorb(result)
            bar.advance(len(c))


def _failures_as_skips(run: _PrepareRun,
                       failures: list[tuple[int, str]]) -> tuple[collections.Counter[str], dict[str, str]]:
    """The loader's skips plus the decoding failures (with ``strict``, the first failure raises)."""
    labels = run.labels
    skipped = collections.Counter(labels.skipped)
    examples = dict(labels.examples)
    lines = labels.index["line"].to_numpy()
    sources = labels.index["source"].to_numpy()
    for pos, reason in sorted(failures):
        where = f"{labels.label_file.name}:{lines[pos]}" if labels.label_file is not None else str(sources[pos])
        if run.strict:
            fix = ("replace the image or remove its line" if labels.label_file is not None
                   else "replace or remove the file")
            raise DatasetError(f"{labels.label_file or run.root}:{lines[pos] or sources[pos]}: "
                               f"{reason} ({sources[pos]}); {fix}, or run without --strict to skip it")
        skipped[reason] += 1
        examples.setdefault(reason, where)
    return skipped, examples


def _write_entry(run: _PrepareRun, tmp_dir: Path, decoded: _Decoded, final_index: pd.DataFrame, meta: dict) -> None:
    """Fill the temporary folder (faces, index, meta) and rename it to the cache entry in one step."""
    cache_dir = run.cache_dir
    try:
        _write_faces(tmp_dir, decoded.take_buffer(), np.flatnonzero(decoded.ok), run.size)
        final_index.to_csv(tmp_dir / "index.csv", index=False)
        (tmp_dir / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        if cache_dir.exists():  # a stale or broken entry: replace it
            shutil.rmtree(cache_dir, ignore_errors=True)
        os.replace(tmp_dir, cache_dir)
    except OSError as exc:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        if cache_dir.exists() and _read_cache(cache_dir) is not None:  # another process won the race
            pass
        else:
            raise OutputError(f"{cache_dir}: cannot write the face cache ({exc.strerror})") from exc


def _write_faces(tmp_dir: Path, buffer: np.ndarray, keep: np.ndarray, size: int) -> None:
    """``faces.npy``: the buffer's rows ``keep``; ``all.npy`` is gone afterwards."""
    # keep is never empty here, so the buffer has exactly one slot per index row
    if keep.size == len(buffer):  # every face decoded: the buffer already is the result
        buffer.flush()
        del buffer
        os.replace(tmp_dir / "all.npy", tmp_dir / "faces.npy")
        return
    faces_out = np.lib.format.open_memmap(tmp_dir / "faces.npy", mode="w+", dtype=np.uint8,
                                          shape=(keep.size, size, size, 3))
    for i in range(0, keep.size, 4096):
        faces_out[i:i + 4096] = buffer[keep[i:i + 4096]]
    faces_out.flush()
    del faces_out, buffer
    (tmp_dir / "all.npy").unlink()


def _quick_key(root: Path, size: int) -> str | None:
    """A key for an ExpW-layout folder read without parsing ``label.lst``, or None.

    SHA-256 of the label file's bytes (streamed), every entry of ``image/origin`` (name, size,
    mtime) and the preprocessing parameters. Only when the image folder holds nothing but
    regular files (no sub-folders, no links, whose contents a listing does not vouch for);
    otherwise the full path (parse, validate, fingerprint) decides.
    """
    label_file = root / "label" / "label.lst"
    try:
        h = hashlib.sha256()
        # Streamed, and only from a regular file within the size limit: anything else
        # (a FIFO, a link to /dev/urandom) is refused with its message by the full path.
        for block in regular_chunks(label_file, MAX_LABEL_BYTES):
            h.update(block)
        with os.scandir(root / "image" / "origin") as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            if not e.is_file(follow_symlinks=False):
                return None
            st = e.stat(follow_symlinks=False)
            h.update(f"{e.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    except OSError:
        return None
    h.update(json.dumps({"size": size, "version": PREPROCESS_VERSION, "kind": "expw"}, sort_keys=True).encode())
    return h.hexdigest()[:32]


def _read_quick(cache_root: Path, quick: str, strict: bool) -> tuple[np.ndarray, pd.DataFrame, dict] | None:
    """The cache entry a quick key points at, when it is complete and was written for that key."""
    try:
        key = (cache_root / ".quick" / quick).read_text().strip()
    except OSError:
        return None
    if not key or "/" in key or key.startswith("."):
        return None
    cached = _read_cache(cache_root / key)
    if cached is None:
        return None
    meta = cached[2]
    if meta.get("quick_key") != quick or meta.get("key") != key:
        return None
    if strict and meta.get("skipped"):  # --strict must still stop at the first unusable line
        return None
    return cached


def _write_quick(cache_root: Path, quick: str | None, key: str) -> None:
    """Best effort: point ``quick`` at cache entry ``key`` (a lost pointer only costs a slower hit)."""
    if quick is None:
        return
    try:
        meta = json.loads((cache_root / key / "meta.json").read_text())
        if meta.get("quick_key") != quick:
            return
        folder = cache_root / ".quick"  # dot-name: not a cache entry
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{quick}.tmp-{os.getpid()}"
        tmp.write_text(key)
        os.replace(tmp, folder / quick)
    except (OSError, ValueError):
        pass


def _remove_abandoned(cache_root: Path) -> None:
    """Delete half-written cache folders whose writer process is gone (killed mid-prepare)."""
    if not cache_root.is_dir():
        return
    for tmp in cache_root.glob(".*.tmp-*"):
        try:
            pid = int(tmp.name.rsplit("-", 1)[1])
        except ValueError:
            continue
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_cache(cache_dir: Path) -> tuple[np.ndarray, pd.DataFrame, dict] | None:
    """Return the cached (faces, index, meta), or None when absent or incomplete."""
    try:
        meta = json.loads((cache_dir / "meta.json").read_text())
        if not meta.get("complete"):
            return None
        faces = np.load(cache_dir / "faces.npy", mmap_mode="r")
        index = pd.read_csv(cache_dir / "index.csv", keep_default_na=False, na_values=[""],
                            dtype={"key": str, "source": str, "group": str})
    except (OSError, ValueError, KeyError):
        return None
    if faces.shape[0] != meta.get("n_faces") or len(index) != faces.shape[0] or faces.dtype != np.uint8:
        return None
    missing = set(INDEX_COLUMNS) - set(index.columns)
    if missing:
        return None
    return faces, index, meta


def check_faces(faces: np.ndarray, what: str) -> np.ndarray:
    """``faces`` as an ``(N, 64, 64, 3)`` uint8 RGB array (what this module caches); DatasetError
    naming ``what`` otherwise. The one check of the face contract, for training and prediction."""
    if not isinstance(faces, np.ndarray):
        faces = np.asarray(faces)
    if faces.ndim != 4 or tuple(faces.shape[1:]) != FACE_SHAPE:
        raise DatasetError(f"{what}: faces must have shape (N, 64, 64, 3), got {tuple(faces.shape)}")
    if faces.dtype != np.uint8:
        raise DatasetError(f"{what}: faces must be uint8 RGB (0..255), got dtype {faces.dtype}")
    return faces
