"""The index table both dataset readers produce, and :class:`LabelIndex`, its result with the skips.

The index table has one row per face with the columns of :data:`INDEX_COLUMNS`:
``key`` (unique face id: ``image_name#face_id`` or the relative path), ``source``
(image path relative to the image folder), ``face_id``, the box ``top left right
bottom`` (pixels, as written), ``confidence`` (NaN for class folders), ``label``
(0..6), ``group`` (faces of one group never straddle splits) and ``line`` (1-based
line number in label.lst, 0 for class folders).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ferreport.datasets.skips import count_by_reason
from ferreport.errors import DatasetError

__all__ = ["INDEX_COLUMNS", "LabelIndex", "finish_index"]

INDEX_COLUMNS: tuple[str, ...] = (
    "key", "source", "face_id", "top", "left", "right", "bottom", "confidence", "label", "group", "line",
)


@dataclass
class LabelIndex:
    """Result of loading: the usable faces, and what was skipped and why."""

    index: pd.DataFrame
    image_dir: Path
    label_file: Path | None
    kind: str  # "expw" or "folders"
    skipped: collections.Counter[str] = field(default_factory=collections.Counter)
    #: first offending location per reason, e.g. ``label.lst:17``
    examples: dict[str, str] = field(default_factory=dict)

    def skip(self, reason: str, where: str, count: int = 1) -> None:
        self.skipped[reason] += count
        self.examples.setdefault(reason, where)


def finish_index(result: LabelIndex, require_faces: bool = True) -> LabelIndex:
    """``result`` with its index renumbered from 0; DatasetError when no face is usable and ``require_faces``."""
    result.index = result.index.reset_index(drop=True)
    if result.index.empty and require_faces:
        raise DatasetError(
            f"{result.label_file or result.image_dir}: no usable faces "
            f"(skipped: {count_by_reason(result.skipped, 'row' if result.label_file else 'file') or 'none'}); "
            "check the file format"
        )
    return result
