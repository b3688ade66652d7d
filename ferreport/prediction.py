"""Batch inference on uint8 faces.

The uint8 batches go through a ``tf.function`` (fixed input signature
``(None, 64, 64, 3)`` uint8) that scales to float32 ``[0, 1]`` and calls the model
in inference mode, so only one batch at a time is ever converted to float32 (a
memory-mapped array of any size is fine), and the conversion happens on the
accelerator when there is one. Results equal ``model.predict(faces / 255.0)``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import numpy as np

from .backend import keras, tf
from .constants import FACE_SHAPE
from .preprocessing import check_faces

__all__ = ["predict_proba"]

_FUNCTIONS: weakref.WeakKeyDictionary[keras.Model, Callable] = weakref.WeakKeyDictionary()


def _inference_function(model: keras.Model) -> Callable:
    """A traced ``uint8 batch -> float32 probabilities`` function, cached per model."""
    try:
        return _FUNCTIONS[model]
    except (KeyError, TypeError):
        pass
    ref = weakref.ref(model)  # the cache must not keep the model alive

    @tf.function(input_signature=[tf.TensorSpec((None, *FACE_SHAPE), tf.uint8)], reduce_retracing=True)
    def infer(faces: tf.Tensor) -> tf.Tensor:
        x = tf.cast(faces, tf.float32) / 255.0
        return tf.cast(ref()(x, training=False), tf.float32)

    try:
        _FUNCTIONS[model] = infer
    except TypeError:  # unhashable model: no caching
        pass
    return infer


def predict_proba(model: keras.Model, faces_uint8: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities ``(N, num_classes)`` float32 for uint8 faces ``(N, 64, 64, 3)``.

    Works in batches of ``batch_size`` read straight from ``faces_uint8`` (which may be
    a memory map), with the next batch read while the current one is computed.
    ``N == 0`` returns an empty ``(0, num_classes)`` array.
    """
    faces = check_faces(faces_uint8, "predict_proba")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    num_classes = int(model.outputs[0].shape[-1])
    n = len(faces)
    out = np.empty((n, num_classes), dtype=np.float32)
    if n == 0:
        return out
    infer = _inference_function(model)
    bs = int(batch_size)

    def read(start: np.int64) -> np.ndarray:
        return np.ascontiguousarray(faces[int(start):int(start) + bs])

    starts = tf.data.Dataset.range(0, n, bs)
    batches = starts.map(
        lambda s: tf.ensure_shape(tf.numpy_function(read, [s], tf.uint8, stateful=False), (None, *FACE_SHAPE)),
        num_parallel_calls=2,
        deterministic=True,
    ).prefetch(2)
    pos = 0
    for batch in batches:
        probs = infer(batch).numpy()
        out[pos:pos + len(probs)] = probs
        pos += len(probs)
    if pos != n:  # defensive: the pipeline must cover every face exactly once
        raise RuntimeError(f"predict_proba produced {pos} rows for {n} faces")
    return out
