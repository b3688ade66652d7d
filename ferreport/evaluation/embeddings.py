"""Penultimate-layer embeddings: what the model's classifier sees, for the drift tests.

For a Keras model (ferreport's own, a ``.keras`` or ``.h5`` file) the embedding of a face is the
input of the model's last Dense (or 1x1 Conv2D) layer, the classifier. SavedModel and ONNX files
expose only their outputs, so they have none: the drift report says so and runs the other tests.
An evaluation or audit keeps a seeded random sample of at most ``max_embeddings`` faces'
embeddings (float16) in ``embeddings.npz`` (arrays ``rows``, into predictions.csv, and
``embeddings``), so a later audit can compare with it without the dataset.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ferreport.models.contract import to_model_input
from ferreport.runs.folder import RunFolder

__all__ = ["Embedder", "embedder_for", "read_embeddings", "sample_rows", "write_embeddings"]


class Embedder:
    """Embeds uint8 faces through a Keras model cut before its classifier."""

    def __init__(self, adapter: Any, cut: Any, layer_name: str) -> None:
        from ferreport.backend import tf  # TensorFlow: loaded only when a model is run

        self.adapter = adapter
        self.layer_name = layer_name
        spec = tf.TensorSpec((None, *adapter.contract.input_shape), tf.float32)

        @tf.function(input_signature=[spec], reduce_retracing=True)
        def infer(x: Any) -> Any:
            out = cut(x, training=False)
            return tf.reshape(tf.cast(out, tf.float32), (tf.shape(x)[0], -1))

        self._infer = infer

    def __call__(self, faces: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """``(N, D)`` float32 embeddings of uint8 RGB faces ``(N, 64, 64, 3)``."""

        parts = [self._infer(to_model_input(np.ascontiguousarray(faces[i:i + batch_size]),
                                            self.adapter.contract)).numpy()
                 for i in range(0, len(faces), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def _cut(model: Any) -> tuple[Any, str] | None:
    """A callable from the model's input to its classifier's input, and the classifier's name (None: not found).

    The classifier is the last Dense or Conv2D layer with weights; a nested model at the end
    (ferreport's ``compact-std`` wraps its CNN) is searched in turn, the layers ahead of it
    applied in order.
    """
    from ferreport.backend import keras  # TensorFlow: loaded only when a model is run

    layers = list(model.layers)
    for i in range(len(layers) - 1, -1, -1):
        layer = layers[i]
        if isinstance(layer, keras.Model):
            inner = _cut(layer)
            if inner is None:
                return None
            before = [lay for lay in layers[:i] if not isinstance(lay, keras.layers.InputLayer)]
            inner_cut, name = inner

            def chain(x: Any, training: bool = False, before: list = before, inner_cut: Any = inner_cut) -> Any:
                for lay in before:  # the layers ahead of the nested model, in order (a chain, as ferreport builds)
                    x = lay(x, training=training)
                return inner_cut(x, training=training)

            return chain, name
        if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)) and layer.get_weights():
            return keras.Model(model.inputs, layer.input), layer.name
    return None


def embedder_for(adapter: Any) -> Embedder | None:
    """An :class:`Embedder` of the adapter's Keras model, or None (SavedModel, ONNX, no classifier layer found)."""
    model = getattr(adapter, "keras_model", None)
    if model is None:
        return None
    try:
        found = _cut(model)
    except (ValueError, TypeError, AttributeError, IndexError):
        return None
    if found is None:
        return None
    return Embedder(adapter, found[0], found[1])


def sample_rows(n: int, cap: int, seed: int = 0) -> np.ndarray:
    """Sorted row numbers of a seeded random sample of at most ``cap`` of ``n`` rows (all when ``n <= cap``)."""
    if n <= cap:
        return np.arange(n, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n, size=cap, replace=False)).astype(np.int64)


def write_embeddings(run: RunFolder | str | os.PathLike[str], rows: np.ndarray, embeddings: np.ndarray,
                     layer: str) -> None:
    """The run's embeddings.npz (float16)."""
    RunFolder(run).write_embeddings(rows, embeddings, layer)


def read_embeddings(run: RunFolder | str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """``(rows, embeddings float32)`` of the run's embeddings.npz, or None when absent or unreadable."""
    return RunFolder(run).read_embeddings()
