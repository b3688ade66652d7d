"""Error hierarchy. Each error carries the process exit code the CLI uses.

Exit codes (documented in the README):
  0 success, 1 a quality gate failed, 2 usage error, 3 unusable data,
  4 unusable model, 5 output could not be written, 70 internal error (a bug:
  ferreport failed where it should not have; never a verdict on the model).
"""

from __future__ import annotations


class FerreportError(Exception):
    """Base class: a one-line message naming the input and the fix."""

    exit_code: int = 2


class UsageError(FerreportError, ValueError):
    """Bad options or arguments."""

    exit_code = 2


class DatasetError(FerreportError, ValueError):
    """The data cannot be used (missing files, malformed label.lst, no faces)."""

    exit_code = 3


class ModelError(FerreportError, ValueError):
    """The model cannot be used (corrupt, unsafe, wrong input/output shape)."""

    exit_code = 4


class OutputError(FerreportError, OSError):
    """An output could not be written (read-only folder, full disk)."""

    exit_code = 5


class GateFailure(FerreportError):
    """A quality gate failed (scheduled evaluation jobs)."""

    exit_code = 1


class InternalError(FerreportError):
    """An unexpected error inside ferreport (a bug), reported as such: exit 70 (``EX_SOFTWARE``),
    never 1, so a scheduled job cannot mistake a crash for a failed gate."""

    exit_code = 70
