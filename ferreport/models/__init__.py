"""The classifier: architectures, training (resumable, fine-tuning), the input contract, and one
adapter over any model file (Keras, HDF5, SavedModel, ONNX) for batch prediction.

The names below are the package's public API, each imported from its module on first use
(:mod:`ferreport.lazy`).
"""

from __future__ import annotations

from ferreport.lazy import lazy_exports

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

__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)
