"""Keras, and TensorFlow when it is Keras' backend, imported with start-up chatter filtered.

Importing TensorFlow prints C++ start-up noise (oneDNN notices, "could not find cuda
drivers", cuInit failures on CPU-only hosts). This module imports it once with fd 2
captured and passes on only lines that are not known noise. Set
``TF_CPP_MIN_LOG_LEVEL=0`` (or ``1``) to see everything: the package's ``__init__`` sets
it to ``2`` only when the user has not set it, before anything imports TensorFlow.
Every other module imports TensorFlow and Keras from here (``from .backend import
keras, tf``), never directly, so the filter always applies.

The tool runs on TensorFlow (``tf.data`` pipelines, ``tf.distribute``). The network
definitions alone (:mod:`ferreport.models.architectures`) need only Keras, so with
``KERAS_BACKEND=jax`` or ``torch`` they build without TensorFlow installed (the GPU
benchmark, ``benchmarks/gpu_train.py``, runs them that way); ``tf`` is then ``None``.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from types import ModuleType

__all__ = ["BACKEND", "keras", "tf"]

#: The backend named by the environment. Unset, TensorFlow is imported; Keras may still
#: pick another one from ~/.keras/keras.json, which :mod:`ferreport.models.model_file` refuses.
BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")

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
    # ferreport/__init__.py set the level to 2 unless the user chose one; 0 or 1 asks for everything.
    if "tensorflow" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL") in ("0", "1"):
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        capture = tempfile.TemporaryFile()  # noqa: SIM115 - open across the dup2 swap, closed in the finally below
    except (OSError, ValueError, AttributeError):  # no real fd 2 (embedded, pytest capsys ...)
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
        return
    failed = False
    os.dup2(capture.fileno(), 2)
    try:
        import keras  # noqa: F401
        import tensorflow as tf_  # the quiet import itself (fd 2 captured above)

        tf_.config.list_physical_devices("GPU")  # device probing prints cuInit noise once, here
    except BaseException:
        failed = True
        raise
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        capture.seek(0)
        text = capture.read().decode("utf-8", errors="replace")
        capture.close()
        kept = [ln for ln in text.splitlines() if failed or not _NOISE.match(ln)]
        if kept:
            sys.stderr.write("\n".join(kept) + "\n")


def _import_backend() -> tuple[ModuleType, ModuleType | None]:
    """``(keras, tensorflow)``; TensorFlow first and quietly, because Keras imports it too."""
    if BACKEND == "tensorflow":
        _import_tensorflow_quietly()
        import tensorflow as tf_  # the backend named by KERAS_BACKEND
    else:  # the architectures on another backend (GPU benchmark); the tool itself needs TensorFlow
        tf_ = None
    import keras as keras_  # after TensorFlow, so its noise is filtered

    return keras_, tf_


keras, tf = _import_backend()
