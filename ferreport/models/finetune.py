"""Start training from a trained model: its classifier head re-mapped to the seven ExpW classes by name.

``ferreport train --init-from MODEL`` opens MODEL with the model adapter (its input
contract and class order settled as for evaluation), then :func:`initial_model` builds the
network to fine-tune:

* **Keras models** (``.keras``, ``.h5``; a run folder's model.keras): the head is the last
  Dense or Conv2D whose units/filters equal the model's class count, found by walking back
  from the output through class-preserving layers (activations, pooling, flatten, dropout).
  It is rebuilt with seven outputs: a source class's kernel column and bias move to its
  ExpW row, a class the source lacks gets a fresh column, classes ferreport does not score
  (``contempt``) are dropped. A model that ends in logits gets a softmax, so the trained
  model outputs probabilities like every model ferreport trains.
* **A Keras model whose head is not a plain layer**: a Dense(7) layer on top of the
  source's log-probabilities (or logits), initialised as the same name-by-name selection.
* SavedModel and ONNX models are evaluated, not trained: start from the Keras model they
  were exported from.

The input contract is kept: a grayscale 64x64 [-1, 1] model trains on grayscale faces
scaled that way (:func:`ferreport.models.contract.to_model_input` feeds training too).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ferreport.backend import keras
from ferreport.constants import CLASS_NAMES
from ferreport.errors import ModelError
from ferreport.models.adapters import ModelAdapter, open_model
from ferreport.models.architectures import LogProbabilities
from ferreport.models.contract import ModelContract
from ferreport.runs.folder import RunFolder
from ferreport.runs.provenance import model_fingerprint

__all__ = ["HeadMapping", "SourceModel", "initial_model", "open_source"]

#: Layers a class score passes through unchanged in meaning on its way to the output.
_PASS_THROUGH = ("Activation", "Softmax", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten", "Reshape",
                 "Dropout", "ReLU", "Identity")


@dataclass(frozen=True)
class HeadMapping:
    """How the source's outputs became the seven ExpW classes."""

    kept: tuple[str, ...]              # ExpW classes taken from the source (by name)
    fresh: tuple[str, ...]             # ExpW classes the source lacks: initialised fresh
    dropped: tuple[str, ...]           # source classes ferreport does not score
    method: str                        # "head rebuilt" or "selection layer on top"
    head_layer: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kept": list(self.kept), "fresh": list(self.fresh), "dropped": list(self.dropped),
                "method": self.method, "head_layer": self.head_layer}

    def describe(self) -> str:
        parts = [f"{len(self.kept)} classes kept"]
        if self.fresh:
            parts.append(f"{', '.join(self.fresh)} initialised fresh")
        if self.dropped:
            parts.append(f"{', '.join(self.dropped)} dropped")
        return f"head re-mapped by class name ({self.method}): " + "; ".join(parts)


@dataclass(frozen=True)
class SourceModel:
    """The model training starts from: the opened adapter and the contract training keeps."""

    path: Path
    adapter: ModelAdapter = field(repr=False)
    contract: ModelContract           # the trained model's: source input contract, ExpW classes, probabilities

    def record(self) -> dict[str, Any]:
        return {"model": str(self.path), "sha256": model_fingerprint(self.path), "format": self.adapter.format,
                "contract": self.adapter.record()}


def open_source(path: str | os.PathLike[str], options: dict[str, Any] | None = None, *,
                safe_mode: bool = True, recipe: str | None = None) -> SourceModel:
    """Open the model to start from (a run folder means its model.keras), contract settled and probed."""
    p = Path(path)
    if p.is_dir() and not (p / "saved_model.pb").is_file():
        model_path = RunFolder(p).model_path
        if not model_path.is_file():
            raise ModelError(f"--init-from {p}: a folder without {model_path.name} or saved_model.pb; pass a run "
                             "folder, a SavedModel folder or a .keras/.h5 file")
        p = model_path
    adapter = open_model(p, options or {}, safe_mode=safe_mode)
    if adapter.format == "onnx":
        raise ModelError(f"--init-from {p}: ONNX models can be evaluated but not trained; start from the Keras "
                         "or SavedModel model it was exported from")
    contract = replace(adapter.contract, classes=CLASS_NAMES, outputs="probabilities",
                       recipe=f"fine-tuned from {p.name}" + (f" ({recipe})" if recipe else ""))
    return SourceModel(p, adapter, contract)


def _head(model: Any, n_classes: int) -> Any | None:
    """The last Dense/Conv2D producing the class scores, or None when the path to the output is not plain."""
    layer = model.layers[-1] if model.layers else None
    seen = 0
    while layer is not None and seen < 8:
        seen += 1
        name = type(layer).__name__
        if name in ("Dense", "Conv2D") and (getattr(layer, "units", None) or getattr(layer, "filters", None)) \
                == n_classes:
            return layer
        if name not in _PASS_THROUGH:
            return None
        inbound = getattr(layer, "_inbound_nodes", None) or []
        parents = inbound[0].parent_nodes if inbound else []
        if len(parents) != 1:
            return None
        layer = parents[0].operation
    return None


def _ends_in_softmax(model: Any) -> bool:
    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    name = getattr(activation, "__name__", "") or (last.get_config().get("activation") if hasattr(last, "get_config")
                                                   else "")
    return type(last).__name__ == "Softmax" or name == "softmax"


def _selection(source_classes: tuple[str, ...]) -> tuple[list[int | None], HeadMapping]:
    """For each ExpW class, the source's output column of the same class (None: the source lacks it)."""
    columns = [source_classes.index(c) if c in source_classes else None for c in CLASS_NAMES]
    mapping = HeadMapping(kept=tuple(c for c, j in zip(CLASS_NAMES, columns, strict=True) if j is not None),
                          fresh=tuple(c for c, j in zip(CLASS_NAMES, columns, strict=True) if j is None),
                          dropped=tuple(c for c in source_classes if c not in CLASS_NAMES), method="")
    return columns, mapping


def _remapped_weights(weights: list[np.ndarray], columns: list[int | None], seed: int) -> list[np.ndarray]:
    """Kernel (..., k) and bias (k,) -> (..., 7): source columns by name, fresh Glorot columns for the rest."""
    kernel = weights[0]
    fan_in = int(np.prod(kernel.shape[:-1]))
    limit = np.sqrt(6.0 / (fan_in + len(CLASS_NAMES)))
    rng = np.random.default_rng(seed)
    new_kernel = np.empty((*kernel.shape[:-1], len(CLASS_NAMES)), kernel.dtype)
    for target, source in enumerate(columns):
        new_kernel[..., target] = kernel[..., source] if source is not None else \
            rng.uniform(-limit, limit, kernel.shape[:-1]).astype(kernel.dtype)
    out = [new_kernel]
    if len(weights) > 1:
        bias = weights[1]
        kept = [bias[s] for s in columns if s is not None]
        fill = float(np.mean(kept)) if kept else 0.0  # a fresh class starts at the others' average prior
        out.append(np.array([bias[s] if s is not None else fill for s in columns], bias.dtype))
    return out


def _rebuild_head(model: Any, head: Any, columns: list[int | None], seed: int) -> Any:
    """The model with ``head`` rebuilt for seven classes (weights copied, head columns re-mapped)."""
    def clone(layer: Any) -> Any:
        config = layer.get_config()
        if layer is head:
            config["units" if "units" in config else "filters"] = len(CLASS_NAMES)
        return type(layer).from_config(config)

    new = keras.models.clone_model(model, clone_function=clone)
    for old in model.layers:
        target = new.get_layer(old.name)
        weights = old.get_weights()
        target.set_weights(_remapped_weights(weights, columns, seed) if old is head else weights)
    return new


def _selection_on_top(source: Any, contract: ModelContract, columns: list[int | None], seed: int,
                      outputs_probabilities: bool) -> Any:
    """Dense(7) on the source's log-probabilities (or logits), initialised as the name-by-name selection."""
    inputs = keras.Input(contract.input_shape, name="image")
    scores = source(inputs)
    if isinstance(scores, dict):
        scores = next(iter(scores.values()))
    if outputs_probabilities:
        scores = LogProbabilities(name="log_probabilities")(scores)
    dense = keras.layers.Dense(len(CLASS_NAMES), name="expw_head")
    logits = dense(scores)
    n_source = int(scores.shape[-1])
    kernel = np.zeros((n_source, len(CLASS_NAMES)), np.float32)
    rng = np.random.default_rng(seed)
    for target, col in enumerate(columns):
        if col is not None:
            kernel[col, target] = 1.0
        else:
            kernel[:, target] = rng.normal(0, 0.01, n_source)
    dense.set_weights([kernel, np.zeros(len(CLASS_NAMES), np.float32)])
    outputs = keras.layers.Softmax(name="expw_probabilities")(logits)
    return keras.Model(inputs, outputs, name="fine_tuned")


def initial_model(source: SourceModel, *, seed: int = 0, freeze_batchnorm: bool = False) -> tuple[Any, HeadMapping]:
    """The network training starts from (uncompiled) and how its head was mapped.

    ``freeze_batchnorm``: the BatchNormalization layers keep their statistics and scales
    (Keras runs a non-trainable BatchNormalization in inference mode).
    """
    model, mapping = _initial_model(source, seed)
    if freeze_batchnorm:
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    return model, mapping


def _initial_model(source: SourceModel, seed: int) -> tuple[Any, HeadMapping]:
    adapter = source.adapter
    classes = adapter.contract.classes
    columns, mapping = _selection(classes)
    probabilities = adapter.reader.kind == "probabilities"
    model = adapter.keras_model
    if model is not None:
        head = _head(model, len(classes))
        if head is not None:
            new = _rebuild_head(model, head, columns, seed)
            if not _ends_in_softmax(new):
                new = keras.Model(new.inputs, keras.layers.Softmax(name="expw_probabilities")(new.outputs[0]))
            return new, replace(mapping, method="head rebuilt", head_layer=head.name)
        base = model
    else:
        raise ModelError(f"--init-from {source.path}: a {adapter.format} model can be evaluated but not trained "
                         "here; start from the Keras model (.keras or .h5) it was exported from")
    new = _selection_on_top(base, source.contract, columns, seed, probabilities)
    return new, replace(mapping, method="selection layer on top")
