"""The run folder and what a run records: the one owner of its files (:class:`RunFolder`), atomic writes,
provenance (seed, versions, fingerprints).

The names below are the package's public API, each imported from its module on first use
(:mod:`ferreport.lazy`).
"""

from __future__ import annotations

from ferreport.lazy import lazy_exports

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

__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)
