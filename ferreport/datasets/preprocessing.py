"""Preprocessing: decode each source image once, crop its faces, resize to 64x64 RGB uint8, cache.

The cache holds the faces as a NumPy ``.npy`` file (memory-mapped on read, so memory
stays flat) beside the index table. Its key is the data fingerprint plus the
preprocessing parameters, so a changed label file, image or parameter misses the cache.
Scaling to [0, 1] and one-hot encoding happen where the model consumes the data.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import ctypes
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from ferreport import __version__
from ferreport.constants import FACE_SHAPE, FACE_SIZE
from ferreport.errors import DatasetError, OutputError
from ferreport.progress import Stage, stage
from ferreport.datasets.loading import (
    BOX_OUTSIDE_IMAGE,
    INDEX_COLUMNS,
    MAX_LABEL_BYTES,
    UNREADABLE_IMAGE,
    LabelIndex,
    NotRegularFile,
    count_by_reason,
    load_dataset,
    read_regular,
    regular_chunks,
)

#: Bump when the decode/crop/resize output changes, so old caches miss.
#: 2: JPEGs whose every box is at least 2/4/8 x the face size are decoded at 1/2, 1/4, 1/8.
#: 3: partly decoded JPEGs, implausible JPEG headers and boxes wholly outside the image are
#:    skipped, so a cache built before them (which may hold such grey faces) is not served.
PREPROCESS_VERSION = 3
MAX_IMAGE_BYTES = 256 * 1024 * 1024
#: The most pixels an image may declare (2**27, about 134 million: the limit ferreport also gives
#: OpenCV). A JPEG's header is checked before decoding, so a reduced (1/2 .. 1/8) decode cannot
#: turn a 60000x60000 header into a flat grey face.
MAX_IMAGE_PIXELS = 1 << 27

#: Decode skip reasons (besides "empty file", "file too large", "not a regular file", "cannot read (...)").
TRUNCATED_JPEG = "truncated JPEG"
JPEG_TOO_MANY_PIXELS = "image too large (header declares over 2**27 pixels)"
JPEG_TOO_SHORT = "corrupt JPEG (too few bytes for the size its header declares)"
JPEG_PARTIAL = "corrupt JPEG (libjpeg could decode only part of it)"
JPEG_BAD_HEADER = "corrupt JPEG (too many header segments)"
CANNOT_DECODE = "cannot decode"
#: libjpeg's DCT-domain downscaling: decode a JPEG at 1/f of its size, much faster.
_REDUCED_FLAGS = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


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


def default_cache_root() -> Path:
    """``$FERREPORT_CACHE``, else ``$XDG_CACHE_HOME/ferreport``, else ``~/.cache/ferreport``."""
    env = os.environ.get("FERREPORT_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "ferreport"


def decode_image(path: str | os.PathLike[str]) -> tuple[np.ndarray | None, str]:
    """Decode an image file to BGR uint8 (EXIF orientation applied), or ``(None, reason)``.

    Reads the bytes first, of regular files only (works for any file name, refuses FIFOs,
    devices and huge files before opening them); refuses JPEGs whose structure cannot hold a
    whole image (:func:`jpeg_problem`) before decoding and those libjpeg decodes only in part
    after; OpenCV's own pixel limit (``OPENCV_IO_MAX_IMAGE_PIXELS``, lowered by ferreport) refuses
    headers that claim enormous dimensions before allocating them.
    """
    img, why, _ = _decode(path)
    return img, why


def _decode(path: str | os.PathLike[str], reduce: int = 1) -> tuple[np.ndarray | None, str, int]:
    """:func:`decode_image`, with JPEGs decoded at ``1/reduce`` of their size when ``reduce`` is 2, 4 or 8.

    Returns ``(image, reason, factor)``; ``factor`` is the reduction applied (1 for other formats).
    Only regular files are opened (a FIFO would block, a device never ends), and only when
    their stat size is within :data:`MAX_IMAGE_BYTES`.
    """
    try:
        raw = read_regular(path, MAX_IMAGE_BYTES)
    except NotRegularFile as exc:
        return None, exc.reason, 1
    except OSError as exc:
        return None, f"cannot read ({exc.strerror or type(exc).__name__})", 1
    if not raw:
        return None, "empty file", 1
    data = np.frombuffer(raw, dtype=np.uint8)
    is_jpeg = raw[:2] == b"\xff\xd8"
    if is_jpeg:
        problem = jpeg_problem(raw)
        if problem:
            return None, problem, 1
    factor = reduce if is_jpeg and reduce in _REDUCED_FLAGS else 1
    flags = _REDUCED_FLAGS[factor] if factor > 1 else cv2.IMREAD_COLOR
    try:
        if is_jpeg:
            img, partial = _imdecode_jpeg(data, flags)
            if partial:
                return None, JPEG_PARTIAL, 1
        else:
            img = cv2.imdecode(data, flags)
    except cv2.error:
        img = None
    if img is None or img.size == 0:
        return None, CANNOT_DECODE, 1
    if img.dtype != np.uint8:  # IMREAD_COLOR already gives 8-bit; guard anyway
        img = cv2.convertScaleAbs(img, alpha=255.0 / max(1, int(img.max())))
    return img, "", factor


def _has_jpeg_end(data: bytes) -> bool:
    """True when the JPEG's end-of-image marker (FF D9) is present near the end of the file."""
    return b"\xff\xd9" in data[-4096:]


# Start-of-frame markers (C0-CF but DHT C4, JPG C8, DAC CC); C9-CB and CD-CF are arithmetic-coded.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_ARITHMETIC_SOF = frozenset({0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_MAX_MARKERS = 10_000


@dataclass(frozen=True)
class JpegFrame:
    """What a JPEG's start-of-frame header declares."""

    marker: int          # 0xC0 baseline, 0xC2 progressive, ...
    width: int
    height: int
    h_max: int           # largest horizontal / vertical sampling factor (an MCU is 8*h_max x 8*v_max pixels)
    v_max: int
    offset: int          # where the frame header starts in the file

    @property
    def min_bytes(self) -> int:
        """Fewest bytes a Huffman-coded image of this size can take: one bit per MCU (a DC code
        is at least one bit), however flat the picture and however well its tables are tuned."""
        mcus = -(-self.width // (8 * self.h_max)) * -(-self.height // (8 * self.v_max))
        return mcus // 8


def jpeg_frame(data: bytes) -> JpegFrame | None:
    """The start-of-frame header of a JPEG (walking its marker segments), or None when there is none before the scan data.

    ValueError when more than ``_MAX_MARKERS`` segments come first (real files have a few dozen
    at most; an ICC profile is at most 255), so a hostile header costs milliseconds, not minutes.
    """
    n, i = len(data), 2
    for _ in range(_MAX_MARKERS):  # bounded: a file of a million empty segments raises
        if i + 4 > n or data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or scan data before any frame header
            return None
        length = (data[i + 2] << 8) | data[i + 3]
        if marker in _SOF:
            seg = data[i + 4:i + 2 + length]
            if len(seg) < 6:
                return None
            comps = seg[5]
            factors = [seg[6 + 3 * k + 1] for k in range(comps) if 6 + 3 * k + 1 < len(seg)]
            h_max = max((f >> 4 for f in factors), default=1) or 1
            v_max = max((f & 15 for f in factors), default=1) or 1
            return JpegFrame(marker=marker, height=(seg[1] << 8) | seg[2], width=(seg[3] << 8) | seg[4],
                             h_max=h_max, v_max=v_max, offset=i)
        i += 2 + length
    raise ValueError(f"over {_MAX_MARKERS} marker segments before the frame header")


def jpeg_problem(data: bytes) -> str:
    """Why a JPEG's bytes cannot be a whole image, from its structure alone ("" when nothing is wrong).

    No end-of-image marker (cut off: libjpeg would grey-fill the rest); a header declaring
    more than :data:`MAX_IMAGE_PIXELS`; or fewer bytes than its declared size needs
    (:attr:`JpegFrame.min_bytes`: a progressive JPEG declaring 11000x11000 in 520 bytes).
    A header it cannot find is left to the decoder.
    """
    if not _has_jpeg_end(data):
        return TRUNCATED_JPEG
    try:
        frame = jpeg_frame(data)
    except ValueError:
        return JPEG_BAD_HEADER
    if frame is None or frame.width == 0 or frame.height == 0:  # no header / height set later (DNL)
        return ""
    if frame.width * frame.height > MAX_IMAGE_PIXELS:
        return JPEG_TOO_MANY_PIXELS
    if frame.marker not in _ARITHMETIC_SOF and len(data) - frame.offset < frame.min_bytes:
        return JPEG_TOO_SHORT
    return ""


# libjpeg reports a partial decode only as a warning on stderr ("Corrupt JPEG data: premature
# end of data segment") and fills the rest with grey; OpenCV neither raises nor returns it. So
# the decode runs with file descriptor 2 pointed at a per-process scratch file, which is then
# read: these warnings refuse the image, any other text is passed on to the real stderr.
# (Not "extraneous bytes before marker" or "Invalid SOS parameters": real files that decode whole.)
_PARTIAL_WARNINGS = ("premature end", "bad huffman code", "found marker")
_capture_lock = threading.Lock()
_capture: dict[str, int] = {}  # {"fd": scratch file, "pid": owning process}


def _capture_fd() -> int | None:
    if _capture.get("pid") != os.getpid():  # first use, or a forked child: never share the parent's
        try:
            fd = os.memfd_create("ferreport-libjpeg", getattr(os, "MFD_CLOEXEC", 0)) if hasattr(os, "memfd_create") \
                else _tempfile_fd()
        except OSError:
            return None
        _capture.update(fd=fd, pid=os.getpid())
    return _capture["fd"]


def _tempfile_fd() -> int:
    import tempfile
    fd, name = tempfile.mkstemp(prefix="ferreport-libjpeg-")
    os.unlink(name)
    return fd


def _imdecode_jpeg(data: np.ndarray, flags: int) -> tuple[np.ndarray | None, bool]:
    """``cv2.imdecode`` of a JPEG, and whether libjpeg warned that it decoded only part of it."""
    with _capture_lock:
        fd = _capture_fd()
        try:
            saved = os.dup(2) if fd is not None else -1
        except OSError:
            saved = -1
        if saved < 0:  # no stderr to redirect: decode without the check
            return cv2.imdecode(data, flags), False
        try:
            os.dup2(fd, 2)
            try:
                img = cv2.imdecode(data, flags)
            finally:
                os.dup2(saved, 2)
        finally:
            os.close(saved)
        written = os.lseek(fd, 0, os.SEEK_CUR)
        if not written:
            return img, False
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, min(written, 1 << 16))
        os.ftruncate(fd, 0)
    partial = False
    passed = []
    for line in text.decode("utf-8", "replace").splitlines(keepends=True):
        if any(w in line.lower() for w in _PARTIAL_WARNINGS):
            partial = True
        else:
            passed.append(line)
    if passed:
        try:
            os.write(2, "".join(passed).encode("utf-8", "replace"))
        except OSError:
            pass
    return img, partial


def crop_face(image_bgr: np.ndarray, top: int, left: int, right: int, bottom: int,
              size: int = FACE_SIZE) -> tuple[np.ndarray | None, bool]:
    """Crop ``img[top:bottom, left:right]`` clipped to the image, resize (INTER_AREA), BGR->RGB.

    Returns ``(face, clipped)``; ``face`` is None when the box lies wholly outside.
    The box ``0 0 -1 -1`` means the whole image (any other negative box lies outside).
    """
    h, w = image_bgr.shape[:2]
    if (top, left, right, bottom) == (0, 0, -1, -1):
        top, left, right, bottom = 0, 0, w, h
    t, l, r, b = max(0, top), max(0, left), min(w, right), min(h, bottom)
    clipped = (t, l, r, b) != (top, left, right, bottom)
    if t >= b or l >= r:
        return None, clipped
    crop = image_bgr[t:b, l:r]
    face = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(face, cv2.COLOR_BGR2RGB), clipped


# A task: (image path, [(row position, top, left, right, bottom), ...])
_Task = tuple[str, list[tuple[int, int, int, int, int]]]
# A worker's result: (row positions, their faces, [(row position, skip reason), ...], clipped row positions)
_WorkerResult = tuple[list[int], np.ndarray, list[tuple[int, str]], list[int]]


def _process_images(tasks: list[_Task], size: int) -> _WorkerResult:
    """Worker: decode each image once and crop all its faces."""
    positions: list[int] = []
    faces: list[np.ndarray] = []
    failures: list[tuple[int, str]] = []
    clipped: list[int] = []
    for path, boxes in tasks:
        img, why, factor = _decode(path, _reduction(boxes, size))
        if img is not None and factor > 1 and not _reduced_is_safe(img, factor, boxes):
            img, why, factor = _decode(path)
        if img is None:
            failures.extend((pos, f"{UNREADABLE_IMAGE}: {why}") for pos, *_ in boxes)
            continue
        for pos, top, left, right, bottom in boxes:
            if factor > 1:
                face, was_clipped = _crop_reduced(img, factor, top, left, right, bottom, size)
            else:
                face, was_clipped = crop_face(img, top, left, right, bottom, size)
            if face is None:
                failures.append((pos, BOX_OUTSIDE_IMAGE))
                continue
            positions.append(pos)
            faces.append(face)
            if was_clipped:
                clipped.append(pos)
    stacked = np.stack(faces) if faces else np.zeros((0, size, size, 3), np.uint8)
    return positions, stacked, failures, clipped


def _reduction(boxes: list[tuple[int, int, int, int, int]], size: int) -> int:
    """Largest JPEG reduction (8, 4, 2, else 1) that leaves every box at least ``size`` px a side."""
    if any(r < 0 or b < 0 for _, _, _, r, b in boxes):  # whole-image boxes: size unknown before decoding
        return 1
    side = min(min(b - t, r - l) for _, t, l, r, b in boxes)
    for f in (8, 4, 2):
        if side >= f * size:
            return f
    return 1


def _reduced_is_safe(img: np.ndarray, factor: int, boxes: list[tuple[int, int, int, int, int]]) -> bool:
    """Whether every box's clipping is known from the reduced image.

    A JPEG of width W decodes at 1/f to ``ceil(W / f)`` columns, so W is only known to
    lie in ``(f * (w - 1), f * w]``; a box whose right/bottom edge falls in that range might
    or might not be clipped, and the image is then decoded at full size instead.
    """
    h, w = img.shape[:2]
    return all(r <= factor * (w - 1) + 1 and b <= factor * (h - 1) + 1 for _, _, _, r, b in boxes)


def _crop_reduced(img: np.ndarray, factor: int, top: int, left: int, right: int, bottom: int,
                  size: int) -> tuple[np.ndarray | None, bool]:
    """:func:`crop_face` on an image decoded at ``1/factor``: the box (clipped at full size) is scaled by 1/factor."""
    t, l = max(0, top), max(0, left)
    clipped = (t, l) != (top, left)  # right/bottom are inside (checked by _reduced_is_safe)
    if t >= bottom or l >= right:
        return None, clipped
    h, w = img.shape[:2]
    rt, rl = min(h - 1, round(t / factor)), min(w - 1, round(l / factor))
    rb, rr = max(rt + 1, min(h, round(bottom / factor))), max(rl + 1, min(w, round(right / factor)))
    face = cv2.resize(img[rt:rb, rl:rr], (size, size), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(face, cv2.COLOR_BGR2RGB), clipped


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


def exit_with_parent(parent_pid: int | None = None) -> None:
    """Pool initializer: on Linux, a worker is sent SIGTERM when the process that started it dies.

    Without it, killing ``ferreport`` (SIGKILL, OOM killer) leaves its decoding workers behind.
    ``parent_pid`` (the pool owner's pid, passed through ``initargs``) closes the race where
    the parent dies before this runs: the death signal is then never sent, so the worker
    checks its parent once more after arming it and leaves if the parent is gone.
    """
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: nothing to do
        return
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


def pool_context() -> multiprocessing.context.BaseContext:
    """The start method for a process pool: fork, or spawn once TensorFlow is loaded.

    Forking a process that has TensorFlow loaded can deadlock; spawn is safe there.
    """
    return multiprocessing.get_context("spawn" if "tensorflow" in sys.modules else "fork")


def prepare_dataset(root: str | os.PathLike[str], *, strict: bool = False, cache_root: str | os.PathLike[str] | None = None,
                    workers: int | None = None, size: int = FACE_SIZE, progress: bool = False) -> PreparedDataset:
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


def _tasks_by_image(labels: LabelIndex) -> list[_Task]:
    """One task per source image with all its boxes, so each image is decoded once."""
    index = labels.index
    by_image: dict[str, list[tuple[int, int, int, int, int]]] = collections.defaultdict(list)
    cols = [index[c].to_numpy() for c in ("source", "top", "left", "right", "bottom")]
    for pos, (src, t, l, r, b) in enumerate(zip(*cols)):
        by_image[src].append((pos, int(t), int(l), int(r), int(b)))
    return [(str(labels.image_dir / src), boxes) for src, boxes in by_image.items()]


def _open_buffer(run: _PrepareRun, tmp_dir: Path, n: int) -> np.ndarray:
    """A fresh temporary cache folder holding ``all.npy``, a memory-mapped slot for each of the ``n`` faces."""
    size = run.size
    try:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        tmp_dir.mkdir(parents=True)
        return np.lib.format.open_memmap(tmp_dir / "all.npy", mode="w+", dtype=np.uint8, shape=(max(n, 1), size, size, 3))
    except OSError as exc:
        raise OutputError(f"{run.cache_root}: cannot write the face cache ({exc.strerror}); set FERREPORT_CACHE to a writable folder") from exc


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

    def absorb(self, result: _WorkerResult) -> None:
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


def _decode_faces(tasks: list[_Task], size: int, *, workers: int | None, bar: Stage,
                  absorb: Callable[[_WorkerResult], None]) -> None:
    """Run :func:`_process_images` over the tasks in chunks (in a process pool unless small), absorb each
    result and count its images on ``bar``."""
    workers = workers or min(os.cpu_count() or 1, 8)
    chunk = 32
    chunks = [tasks[i:i + chunk] for i in range(0, len(tasks), chunk)]
    if workers <= 1 or len(tasks) < 64:
        for c in chunks:
            absorb(_process_images(c, size))
            bar.advance(len(c))
        return
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=pool_context(),
                                initializer=exit_with_parent, initargs=(os.getpid(),)) as pool:
        for c, result in zip(chunks, pool.map(_process_images, chunks, [size] * len(chunks))):
            absorb(result)
            bar.advance(len(c))


def _failures_as_skips(run: _PrepareRun, failures: list[tuple[int, str]]) -> tuple[collections.Counter[str], dict[str, str]]:
    """The loader's skips plus the decoding failures (with ``strict``, the first failure raises)."""
    labels = run.labels
    skipped = collections.Counter(labels.skipped)
    examples = dict(labels.examples)
    lines = labels.index["line"].to_numpy()
    sources = labels.index["source"].to_numpy()
    for pos, reason in sorted(failures):
        where = f"{labels.label_file.name}:{lines[pos]}" if labels.label_file is not None else str(sources[pos])
        if run.strict:
            fix = "replace the image or remove its line" if labels.label_file is not None else "replace or remove the file"
            raise DatasetError(f"{labels.label_file or run.root}:{lines[pos] or sources[pos]}: {reason} ({sources[pos]}); "
                               f"{fix}, or run without --strict to skip it")
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
