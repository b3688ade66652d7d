"""Folder audits (``ferreport predict``): scan any folder of images, find faces (BlazeFace or Haar),
score them with any model, locally or on Ray, and store what the audit report shows.

The names below are the package's public API, each imported from its module on first use
(:mod:`ferreport.lazy`).
"""

from __future__ import annotations

from ferreport.lazy import lazy_exports

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

__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)
