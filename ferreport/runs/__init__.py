"""The run folder and what a run records: the one owner of its files (:class:`RunFolder`), atomic writes,
provenance (seed, versions, fingerprints).

The names below are the package's public API; each is imported from its module on first use, so
importing the package loads nothing heavy (TensorFlow, OpenCV) until a name that needs it is used.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the module of this package that defines it.
EXPORTS: dict[str, str] = {
    "atomic_open": "atomic",
    "atomic_path": "atomic",
    "check_run_dir": "folder",
    "FolderReplacement": "atomic",
    "model_fingerprint": "provenance",
    "new_run_id": "folder",
    "provenance_record": "provenance",
    "RunFolder": "folder",
    "sha256_file": "provenance",
    "write_json": "atomic",
    "write_text": "atomic",
}
__all__ = sorted(EXPORTS)


def __getattr__(name: str) -> Any:
    if name in EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *EXPORTS})
