"""Batch inference on uint8 faces, for any model ferreport can open.

:func:`predict_proba` takes a :class:`ferreport.models.adapters.ModelAdapter` (a model opened
with its input contract) or a bare Keras model (taken to have ferreport's own contract:
64x64 RGB in ``[0, 1]``, seven softmax outputs). Faces are converted to the model's
input batch by batch (:func:`ferreport.models.contract.to_model_input`), so only one or two
batches are ever in float32 and a memory-mapped array of any size is fine. For a
ferreport model the results equal ``model.predict(faces / 255.0)``.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from ferreport.datasets.face_cache import check_faces
from ferreport.models.adapters import ModelAdapter, adapter_for

__all__ = ["predict_proba"]

_ADAPTERS: weakref.WeakKeyDictionary[Any, ModelAdapter] = weakref.WeakKeyDictionary()


def _adapter(model: Any) -> ModelAdapter:
    """The adapter of ``model``, made once per Keras model (its traced function is reused)."""
    if isinstance(model, ModelAdapter):
        return model
    with contextlib.suppress(KeyError, TypeError):  # not seen yet, or unhashable
        return _ADAPTERS[model]
    adapter = adapter_for(model)
    with contextlib.suppress(TypeError):  # unhashable model: no caching
        _ADAPTERS[model] = adapter
    return adapter


def predict_proba(model: Any, faces_uint8: np.ndarray, batch_size: int = 256,
                  on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """Class probabilities ``(N, 7)`` float32 in ExpW order for uint8 faces ``(N, 64, 64, 3)``.

    ``N == 0`` returns an empty ``(0, 7)`` array. NaN/inf outputs, or outputs that stop
    looking like the probabilities or logits they were declared (or detected) to be,
    raise ModelError naming the model. ``on_batch(n)`` is called after each batch of ``n`` faces.
    """
    faces = check_faces(faces_uint8, "predict_proba")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return _adapter(model).predict(faces, int(batch_size), on_batch)
