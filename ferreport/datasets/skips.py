"""Skip reasons shared by more than one stage, and the words for counts by reason.

Every unusable line, file or face is counted under a reason, never dropped silently. The
reasons of one reader alone live with it (:mod:`ferreport.datasets.expw`,
:mod:`ferreport.datasets.class_folders`, :mod:`ferreport.datasets.decode`); ``not a regular
file`` is :data:`ferreport.safe_io.NOT_REGULAR`.
"""

from __future__ import annotations

import collections

__all__ = ["BOX_OUTSIDE_IMAGE", "UNREADABLE_IMAGE", "count_by_reason"]

#: Skip reasons, as counted in the data summary.
#: An image the face cache could not decode (followed by ``: <decode reason>``).
UNREADABLE_IMAGE = "image unreadable"
#: A box with no pixel inside the image: refused by the label reader (right or bottom <= 0)
#: and by the cropper (past the right or bottom edge).
BOX_OUTSIDE_IMAGE = "box entirely outside the image"


def count_by_reason(counts: collections.Counter[str] | dict[str, int], noun: str = "row") -> str:
    """Counts by reason as words for a message, most frequent first: ``unsupported type (2 files), empty file
    (1 file)`` with ``noun="file"`` (never a Python dict repr)."""
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{reason} ({n:,} {noun}{'' if n == 1 else 's'})" for reason, n in ordered)
