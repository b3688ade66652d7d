"""Folder audits (``ferreport predict``): scan any folder of images, find faces (BlazeFace or Haar),
score them with any model, locally or on Ray, and store what the audit report shows.

The names below are the package's public API; each is imported from its module on first use, so
importing the package loads nothing heavy (TensorFlow, OpenCV) until a name that needs it is used.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the module of this package that defines it.
EXPORTS: dict[str, str] = {
    "AuditResult": "predict",
    "BlazeFace": "blazeface",
    "DetectorParams": "detection",
    "find_faces": "detection",
    "read_labels_csv": "labels",
    "resolve_detector": "detection",
    "run_audit": "predict",
    "scan_files": "scanning",
    "walk_folder": "scanning",
}
__all__ = sorted(EXPORTS)


def __getattr__(name: str) -> Any:
    if name in EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *EXPORTS})
