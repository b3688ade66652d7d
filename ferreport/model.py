"""The classifier: architectures, safe loading of ``.keras`` files, fingerprints.

Input contract (every architecture): a float32 batch ``(N, 64, 64, 3)`` of RGB
faces already scaled to ``[0, 1]``. Scaling happens in the data pipeline
(:func:`ferreport.training.make_dataset`, :func:`ferreport.prediction.predict_proba`),
never inside the model, so a model file is usable by any caller that divides
uint8 pixels by 255. Output: softmax probabilities ``(N, 7)`` in
:data:`ferreport.constants.CLASS_NAMES` order.

Importing this module imports TensorFlow with its C++ start-up chatter
(oneDNN notices, "could not find cuda drivers", cuInit failures on CPU-only
hosts) filtered out; warnings and errors that are not known start-up noise still
reach stderr. Import TensorFlow/Keras through this module (``from .model import
keras, tf``) so the filter applies. Set ``TF_CPP_MIN_LOG_LEVEL=0`` (or ``1``)
in the environment to see everything.
"""

from __future__ import annotations

import os

_USER_TF_LOG_LEVEL = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import hashlib  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import zipfile  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

from .constants import FACE_SHAPE, NUM_CLASSES  # noqa: E402
from .errors import ModelError  # noqa: E402

# --------------------------------------------------------------------------- TF import

#: Lines TensorFlow/XLA/absl print to fd 2 while starting up that carry no information
#: for a user of this tool. INFO lines (``I0000 ...``) are always dropped.
_NOISE = re.compile(
    r"^(?:"
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|I\d{4} .*"
    r"|[EW]\d{4} .*(?:cuInit|Unable to register cu(?:DNN|FFT|BLAS) factory"
    r"|already registered|cuda_(?:platform|driver|executor)\.cc|TF-TRT|Could not find TensorRT).*"
    r")$"
)


def _import_tensorflow_quietly() -> None:
    if "tensorflow" in sys.modules or _USER_TF_LOG_LEVEL in ("0", "1"):
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        capture = tempfile.TemporaryFile()
    except (OSError, ValueError, AttributeError):  # no real fd 2 (embedded, pytest capsys ...)
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
        return
    failed = False
    os.dup2(capture.fileno(), 2)
    try:
        import keras  # noqa: F401
        import tensorflow as tf_

        tf_.config.list_physical_devices("GPU")  # device probing prints cuInit noise once, here
    except BaseException:
        failed = True
        raise
    finally:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved, 2)
        os.close(saved)
        capture.seek(0)
        text = capture.read().decode("utf-8", errors="replace")
        capture.close()
        kept = [ln for ln in text.splitlines() if failed or not _NOISE.match(ln)]
        if kept:
            sys.stderr.write("\n".join(kept) + "\n")


_import_tensorflow_quietly()

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

__all__ = [
    "ARCHITECTURES",
    "build_model",
    "keras",
    "load_model",
    "model_sha256",
    "register_architecture",
    "tf",
]

# --------------------------------------------------------------------------- architectures

#: name -> builder(input_shape, num_classes) returning an *uncompiled* keras.Model.
ARCHITECTURES: dict[str, Callable[[tuple[int, int, int], int], keras.Model]] = {}


def register_architecture(name: str) -> Callable:
    """Decorator adding a builder to :data:`ARCHITECTURES` (hook for better architectures)."""

    def deco(fn: Callable[[tuple[int, int, int], int], keras.Model]) -> Callable:
        if name in ARCHITECTURES:
            raise ValueError(f"architecture {name!r} is already registered")
        ARCHITECTURES[name] = fn
        return fn

    return deco


@register_architecture("seed")
def _seed_architecture(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """The seed notebook's CNN, layer for layer.

    3 x [Conv2D(3x3, same, relu) -> BatchNorm -> MaxPool(2) -> Dropout(0.25)] with
    32/64/128 filters, Flatten, Dense(256, relu), Dropout(0.5), Dense(7, softmax).
    About 2.2 M parameters for 64x64x3 input.

    Known weakness: trained from scratch on real faces with Adam at 1e-3 it can
    collapse to predicting the majority class (see ``training.detect_collapse``).
    """
    inputs = keras.Input(shape=input_shape, name="face")
    x = inputs
    for i, filters in enumerate((32, 64, 128), start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
        x = keras.layers.Dropout(0.25, name=f"drop{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(256, activation="relu", name="dense")(x)
    x = keras.layers.Dropout(0.5, name="drop_dense")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="seed_cnn")


def compile_model(model: keras.Model, *, learning_rate: float = 1e-3, label_smoothing: float = 0.0) -> keras.Model:
    """Compile with Adam, categorical cross-entropy (one-hot targets) and accuracy."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
        metrics=["accuracy"],
    )
    return model


def build_model(
    arch: str = "seed",
    input_shape: tuple[int, int, int] = FACE_SHAPE,
    num_classes: int = NUM_CLASSES,
    learning_rate: float = 1e-3,
    label_smoothing: float = 0.0,
) -> keras.Model:
    """Build and compile architecture ``arch``.

    The model expects float input in ``[0, 1]`` (no Rescaling layer inside) and
    returns softmax probabilities. Build it inside ``strategy.scope()`` for
    distributed training.
    """
    try:
        builder = ARCHITECTURES[arch]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ValueError(f"unknown architecture {arch!r}; choose one of: {known}") from None
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    model = builder(tuple(input_shape), int(num_classes))
    return compile_model(model, learning_rate=learning_rate, label_smoothing=label_smoothing)


# --------------------------------------------------------------------------- loading

_PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".joblib", ".dill", ".pt", ".pth"})
_H5_SUFFIXES = frozenset({".h5", ".hdf5"})
_UNSAFE_HINT = "pass --unsafe-model to allow it if you trust the file"


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
    if len(in_shape) != 4 or any(d is not None and d != w for d, w in zip(in_shape[1:], want_in[1:])):
        raise ModelError(
            f"{source}: model input shape is {_shape_text(in_shape)}, expected {_shape_text(want_in)} "
            "(64x64 RGB faces scaled to [0, 1]); retrain or export the model for 64x64x3 input"
        )
    if len(out_shape) != 2 or out_shape[1] != NUM_CLASSES:
        raise ModelError(
            f"{source}: model output shape is {_shape_text(out_shape)}, expected (None, {NUM_CLASSES}) "
            f"(one probability per class: angry, disgust, fear, happy, sad, surprise, neutral)"
        )


def load_model(path: str | os.PathLike[str], *, safe_mode: bool = True, compile: bool = False) -> keras.Model:
    """Load a ``.keras`` model (or a legacy ``.h5`` that Keras 3 can read) for inference.

    Refuses with :class:`ModelError` (one line: the file and the fix) when the file is
    missing, not a Keras archive, a pickle, needs unsafe deserialisation (Lambda
    layers) while ``safe_mode`` is on, or does not map (N, 64, 64, 3) to (N, 7).
    ``compile=False`` (default) skips restoring the optimizer/loss: inference only.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in _PICKLE_SUFFIXES:
        raise ModelError(
            f"{p}: pickled models are never loaded (they can run arbitrary code); "
            "save the model with model.save('model.keras') and pass that file"
        )
    if not p.exists():
        raise ModelError(f"{p}: model file not found; pass the path of a .keras file (e.g. RUN_DIR/model.keras)")
    if p.is_dir():
        raise ModelError(
            f"{p}: is a folder (TensorFlow SavedModel?); Keras 3 cannot load it as a model, "
            "re-save it with model.save('model.keras')"
        )
    if suffix in _H5_SUFFIXES:
        kind = "legacy HDF5 model"
    elif suffix == ".keras":
        kind = "Keras archive"
        if not zipfile.is_zipfile(p):
            raise ModelError(
                f"{p}: not a valid .keras archive (corrupt, truncated or not a zip file); "
                "re-save or re-download the model"
            )
    else:
        raise ModelError(
            f"{p}: unsupported model format {suffix or '(no suffix)'!r}; expected a .keras file "
            "(or a legacy .h5)"
        )
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
    check_model_shapes(model, p)
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


# --------------------------------------------------------------------------- more architectures


@register_architecture("compact")
def _compact_architecture(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """A small from-scratch CNN that learns on real faces (see benchmarks/README.md).

    Conv(32) -> pool, then three stages of two Conv(3x3, same, no bias) -> BatchNorm
    -> ReLU with 64/128/256 filters (max-pool + Dropout(0.1) between stages),
    GlobalAveragePooling, Dropout(0.4), Dense(7, softmax). About 1.2 M parameters (half
    the seed's: global average pooling replaces the 2 M-weight Flatten -> Dense head);
    no downloaded weights.
    """
    inputs = keras.Input(shape=input_shape, name="face")
    x = inputs
    for stage, (filters, convs) in enumerate(((32, 1), (64, 2), (128, 2), (256, 2)), start=1):
        for j in range(1, convs + 1):
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{stage}_{j}")(x)
            x = keras.layers.BatchNormalization(name=f"bn{stage}_{j}")(x)
            x = keras.layers.ReLU(name=f"relu{stage}_{j}")(x)
        if stage < 4:
            x = keras.layers.MaxPooling2D(2, name=f"pool{stage}")(x)
            if stage > 1:
                x = keras.layers.Dropout(0.1, name=f"drop{stage}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dropout(0.4, name="drop_head")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="compact_cnn")


@register_architecture("compact-std")
def _compact_std_architecture(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """The compact CNN behind a per-image standardisation (the default for ``train``).

    ``LayerNormalization`` over height, width and channels without scale or offset
    subtracts each face's mean and divides by its standard deviation, so faces shot in
    dim, bright, low- or high-contrast light reach the CNN alike; on faces-real it
    lifted macro-F1 well above the compact CNN alone (benchmarks/README.md). A plain
    Keras layer, so the model loads in safe mode. The compact CNN is built first and
    nested, so a seed gives the same initial weights as the compact CNN.
    """
    body = _compact_architecture(input_shape, num_classes)
    inputs = keras.Input(shape=input_shape, name="face")
    x = keras.layers.LayerNormalization(axis=[1, 2, 3], center=False, scale=False, epsilon=1e-3,
                                        name="standardize")(inputs)
    return keras.Model(inputs, body(x), name="compact_std_cnn")
