"""The classifier: architectures, training (resumable, fine-tuning), the input contract, and one
adapter over any model file (Keras, HDF5, SavedModel, ONNX) for batch prediction.

The names below are the package's public API; each is imported from its module on first use, so
importing the package loads nothing heavy (TensorFlow, OpenCV) until a name that needs it is used.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the module of this package that defines it.
EXPORTS: dict[str, str] = {
    "adapter_for": "adapters",
    "build_model": "architectures",
    "CollapseReport": "collapse",
    "detect_collapse": "collapse",
    "initial_model": "finetune",
    "load_model": "model_file",
    "ModelAdapter": "adapters",
    "ModelContract": "contract",
    "open_model": "adapters",
    "open_source": "finetune",
    "predict_proba": "prediction",
    "register_architecture": "architectures",
    "train": "train_stage",
    "train_model": "training",
    "TrainResult": "training",
}
__all__ = sorted(EXPORTS)


def __getattr__(name: str) -> Any:
    if name in EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *EXPORTS})
