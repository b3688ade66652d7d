"""The classifier as a file: safe loading of ``.keras`` files, shape checks, fingerprints.

The networks themselves live in :mod:`ferreport.models.architectures` (re-exported here).
Input contract (every architecture): a float32 batch ``(N, 64, 64, 3)`` of RGB
faces already scaled to ``[0, 1]``. Scaling happens in the data pipeline
(:func:`ferreport.models.input_pipeline.make_dataset`, :func:`ferreport.models.prediction.predict_proba`),
never inside the model, so a model file is usable by any caller that divides
uint8 pixels by 255. Output: softmax probabilities ``(N, 7)`` in
:data:`ferreport.constants.CLASS_NAMES` order.

Importing this module imports TensorFlow with its C++ start-up chatter filtered
out (:mod:`ferreport.backend`, the one module that imports TensorFlow/Keras: ``from
.backend import keras, tf``) and refuses any Keras backend but TensorFlow. It still
re-exports ``keras`` and ``tf`` for callers outside the package.
"""

from __future__ import annotations

import hashlib
import os
import stat
import zipfile
from pathlib import Path

import numpy as np

from ferreport.backend import keras, tf
from ferreport.constants import FACE_SHAPE, NUM_CLASSES
from ferreport.errors import ModelError
from ferreport.models.architectures import ARCHITECTURES, build_model, compile_model, register_architecture

if tf is None or keras.backend.backend() != "tensorflow":
    raise ImportError(f"ferreport runs on Keras' TensorFlow backend, not {keras.backend.backend()!r}: unset "
                      "KERAS_BACKEND (and any other backend in ~/.keras/keras.json); only "
                      "ferreport.models.architectures builds on other backends")

__all__ = [
    "ARCHITECTURES",
    "MAX_MODEL_MEMBERS",
    "MAX_MODEL_UNCOMPRESSED",
    "build_model",
    "check_finite_outputs",
    "check_finite_weights",
    "check_model_archive",
    "check_model_path",
    "check_model_shapes",
    "compile_model",
    "keras",
    "load_model",
    "model_sha256",
    "register_architecture",
    "sniff_model_file",
    "tf",
]

# --------------------------------------------------------------------------- loading

_PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".joblib", ".dill", ".pt", ".pth"})
_H5_SUFFIXES = frozenset({".h5", ".hdf5"})
_UNSAFE_HINT = "pass --unsafe-model to allow it if you trust the file"

#: A ``.keras`` archive is refused before Keras opens it when its members declare more
#: than this many uncompressed bytes in all (a zip bomb would otherwise be inflated
#: into memory first: 3.5 GB took ~50 s and 8 GB of memory before Keras gave up).
MAX_MODEL_UNCOMPRESSED = 2 * 1024**3
#: ... or when it has more members than this (a real model has a handful).
MAX_MODEL_MEMBERS = 10_000


def _gib(n: int) -> str:
    return f"{n / 1024**3:.1f} GiB"


def check_model_archive(path: str | os.PathLike[str], *, max_bytes: int = MAX_MODEL_UNCOMPRESSED,
                        max_members: int = MAX_MODEL_MEMBERS) -> None:
    """Refuse (ModelError) a ``.keras`` file that is not a regular zip within the limits.

    Reads only the zip's central directory: the sizes are the ones the members
    *declare*, so nothing is inflated. A member that inflates beyond its declared size
    fails Keras' own CRC/size check later; the declared total is what bounds memory.
    """
    p = Path(path)
    if not zipfile.is_zipfile(p):
        raise ModelError(
            f"{p}: not a valid .keras archive (corrupt, truncated or not a zip file); "
            "re-save or re-download the model"
        )
    try:
        with zipfile.ZipFile(p) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ModelError(f"{p}: not a valid .keras archive ({_first_line(exc)}); re-save or re-download the model") \
            from exc
    if len(infos) > max_members:
        raise ModelError(f"{p}: .keras archive has {len(infos)} members, over the limit of {max_members}; "
                         "not a model ferreport will load")
    total = sum(max(0, int(i.file_size)) for i in infos)
    if total > max_bytes:
        raise ModelError(f"{p}: .keras archive declares {_gib(total)} uncompressed, over the limit of "
                         f"{_gib(max_bytes)}; not a model ferreport will load")


def check_finite_weights(model: keras.Model, source: str | os.PathLike[str] = "model") -> None:
    """Refuse (ModelError) a model with a NaN or infinite weight (a diverged or damaged model)."""
    for w in model.weights:
        values = np.asarray(keras.ops.convert_to_numpy(w.value))
        if values.dtype.kind in "fc" and not np.isfinite(values).all():
            bad = int(values.size - np.count_nonzero(np.isfinite(values)))
            raise ModelError(f"{source}: weight {w.path} holds {bad} NaN/inf values (the model diverged or the file "
                             "is damaged); retrain or re-save the model")


def check_finite_outputs(proba: np.ndarray, source: str | os.PathLike[str] = "model") -> None:
    """Refuse (ModelError) probabilities that are NaN or infinite (vectorised; cheap beside inference)."""
    finite = np.isfinite(proba)
    if not finite.all():
        rows = np.flatnonzero(~finite.all(axis=tuple(range(1, proba.ndim)))) if proba.ndim > 1 \
            else np.flatnonzero(~finite)
        raise ModelError(f"{source}: the model output NaN/inf probabilities for {rows.size} of {len(proba)} faces "
                         f"(first: face {int(rows[0])}); the model is numerically broken, retrain it")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _is_unsafe_error(exc: BaseException) -> bool:
    msg = str(exc)
    return "safe_mode" in msg or "arbitrary code execution" in msg or "enable_unsafe_deserialization" in msg


def _shape_text(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def check_model_shapes(model: keras.Model, source: str | os.PathLike[str] = "model") -> None:
    """Raise ModelError unless ``model`` maps (N, 64, 64, 3) to (N, 7).

    Spatial/channel dimensions left as ``None`` by the model are accepted.
    """
    inputs = getattr(model, "inputs", None) or []
    outputs = getattr(model, "outputs", None) or []
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(
            f"{source}: model has {len(inputs)} inputs and {len(outputs)} outputs; "
            "expected one (N, 64, 64, 3) input and one (N, 7) output"
        )
    in_shape = tuple(inputs[0].shape)
    out_shape = tuple(outputs[0].shape)
    want_in = (None, *FACE_SHAPE)
    if len(in_shape) != 4 or any(d is not None and d != w for d, w in zip(in_shape[1:], want_in[1:], strict=True)):
        raise ModelError(
            f"{source}: model input shape is {_shape_text(in_shape)}, expected {_shape_text(want_in)} "
            "(64x64 RGB faces scaled to [0, 1]); retrain or export the model for 64x64x3 input"
        )
    if len(out_shape) != 2 or out_shape[1] != NUM_CLASSES:
        raise ModelError(
            f"{source}: model output shape is {_shape_text(out_shape)}, expected (None, {NUM_CLASSES}) "
            f"(one probability per class: angry, disgust, fear, happy, sad, surprise, neutral)"
        )


#: Leading bytes of the file kinds a model may be (and of the pages a failed download leaves).
_ZIP_MAGIC = b"PK\x03\x04"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_LFS_POINTER = b"version https://git-lfs.github.com/spec/"


def sniff_model_file(path: str | os.PathLike[str]) -> str:
    """What a model file really is by its first bytes: ``zip``, ``hdf5`` or ``other``.

    An HTML page or a Git LFS pointer saved under a model's name (a failed download, a
    clone without ``git lfs pull``: both common) and an empty file are refused with
    ModelError saying exactly that, whatever the file is called.
    """
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            head = fh.read(1024)
            size = os.fstat(fh.fileno()).st_size
    except OSError as exc:
        raise ModelError(f"{p}: cannot read the model file ({exc.strerror or exc})") from exc
    if not head:
        raise ModelError(f"{p}: the model file is empty (0 bytes); download or save it again")
    if head.startswith(_LFS_POINTER):
        real = next((ln.split()[1] for ln in head.decode("utf-8", "replace").splitlines()
                     if ln.startswith("size ") and len(ln.split()) == 2), "?")
        raise ModelError(f"{p}: is a Git LFS pointer ({size} bytes standing for a {real}-byte file), not the model; "
                         "fetch the real file with `git lfs pull` (or download it directly)")
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml")) or (
            text.startswith(b"<") and b"<html" in text):
        raise ModelError(f"{p}: is an HTML page ({size} bytes), not a model: a failed or redirected download "
                         "saved under the model's name; download the file itself (the raw/resolve link) again")
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    if head.startswith(_HDF5_MAGIC):
        return "hdf5"
    return "other"


def check_model_path(path: str | os.PathLike[str]) -> int:
    """``st_mode`` of a model path that exists and is a regular file or a folder; ModelError otherwise.

    Pickles are refused by name before anything is opened.
    """
    p = Path(path)
    if p.suffix.lower() in _PICKLE_SUFFIXES:
        raise ModelError(
            f"{p}: pickled models are never loaded (they can run arbitrary code); "
            "save the model with model.save('model.keras') and pass that file"
        )
    try:
        mode = p.stat().st_mode  # follows symlinks: a link to a FIFO is a FIFO
    except FileNotFoundError:
        raise ModelError(f"{p}: model file not found; pass the path of a model file (.keras, .h5, .onnx) "
                         "or a run folder") from None
    except OSError as exc:
        raise ModelError(f"{p}: cannot read the model file ({exc.strerror or exc})") from exc
    if not stat.S_ISDIR(mode) and not stat.S_ISREG(mode):  # a FIFO would block open() forever
        raise ModelError(f"{p}: not a regular file (a FIFO, socket or device); pass a model file")
    return mode


def load_model(path: str | os.PathLike[str], *, safe_mode: bool = True, compile: bool = False,
               check_shapes: bool = True) -> keras.Model:
    """Load a ``.keras`` model (or a legacy ``.h5``/``.hdf5`` that Keras 3 can read).

    Refuses with :class:`ModelError` (one line: the file and the fix) when the file is
    missing, not a regular file (FIFO, device), an HTML page or Git LFS pointer under a
    model's name, not the format its name says, an archive over
    :data:`MAX_MODEL_UNCOMPRESSED` declared bytes or :data:`MAX_MODEL_MEMBERS` members
    (checked before Keras opens it), a pickle, needs unsafe deserialisation (Lambda
    layers) while ``safe_mode`` is on, holds a NaN/inf weight, or (``check_shapes``, the
    contract of the models ferreport trains) does not map (N, 64, 64, 3) to (N, 7).
    Models from elsewhere go through :func:`ferreport.models.adapters.open_model`, which reads
    their input contract instead.
    ``compile=False`` (default) skips restoring the optimizer/loss: inference only.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    mode = check_model_path(p)
    if stat.S_ISDIR(mode):
        raise ModelError(
            f"{p}: is a folder (TensorFlow SavedModel?); evaluate it with --model (ferreport reads SavedModel "
            "folders through keras.layers.TFSMLayer), or re-save it with model.save('model.keras')"
        )
    if suffix not in _H5_SUFFIXES and suffix != ".keras":
        raise ModelError(
            f"{p}: unsupported model format {suffix or '(no suffix)'!r}; expected .keras, .h5/.hdf5, .onnx "
            "or a SavedModel folder"
        )
    kind = sniff_model_file(p)
    if suffix in _H5_SUFFIXES:
        if kind == "zip":
            raise ModelError(f"{p}: is a .keras archive (zip) named {suffix}; rename it to .keras")
        if kind != "hdf5":
            raise ModelError(f"{p}: not an HDF5 file (no HDF5 signature); re-save or re-download the model")
        kind = "legacy HDF5 model"
    else:
        if kind == "hdf5":
            raise ModelError(f"{p}: is an HDF5 model named .keras; rename it to .h5")
        kind = "Keras archive"
        check_model_archive(p)
    try:
        model = keras.saving.load_model(p, compile=compile, safe_mode=safe_mode)
    except MemoryError:
        raise
    except Exception as exc:  # Keras raises ValueError/KeyError/OSError/TypeError for bad files
        if safe_mode and _is_unsafe_error(exc):
            raise ModelError(
                f"{p}: the model contains a Lambda layer or other Python code that safe mode refuses to "
                f"load; {_UNSAFE_HINT}"
            ) from exc
        fix = (
            "re-save it as .keras with the Keras version that wrote it"
            if kind.startswith("legacy")
            else "re-save or re-download the model"
        )
        raise ModelError(f"{p}: cannot load {kind} ({_first_line(exc)}); {fix}") from exc
    if not isinstance(model, keras.Model):
        raise ModelError(f"{p}: file holds a {type(model).__name__}, not a Keras model; save a keras.Model")
    if check_shapes:
        check_model_shapes(model, p)
    check_finite_weights(model, p)
    return model


def model_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of the model file's bytes (streamed)."""
    p = Path(path)
    h = hashlib.sha256()
    try:
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except FileNotFoundError:
        raise ModelError(f"{p}: model file not found; pass the path of a .keras file") from None
    except IsADirectoryError:
        raise ModelError(f"{p}: is a folder, expected a .keras file") from None
    return h.hexdigest()
