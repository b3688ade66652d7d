"""Dataset dispatch: check a dataset root and read it with the reader its layout calls for.

An ExpW layout (``label/label.lst`` + ``image/origin/``) goes to :mod:`ferreport.datasets.expw`,
anything else to :mod:`ferreport.datasets.class_folders`; both give a
:class:`~ferreport.datasets.index_table.LabelIndex`. Nothing here decodes pixels.
"""

from __future__ import annotations

import os
from pathlib import Path

from ferreport.datasets.class_folders import read_class_folders
from ferreport.datasets.expw import read_label_file
from ferreport.datasets.index_table import LabelIndex
from ferreport.errors import DatasetError

__all__ = ["check_dataset_root", "expw_root_above", "load_dataset"]


def expw_root_above(path: str | os.PathLike[str]) -> Path | None:
    """The ExpW dataset ``path`` lies inside (``DIR/image/origin``, ``DIR/image``, ``DIR/label`` or
    ``DIR/label/label.lst`` -> ``DIR``), or None: a kind hint for ``--data`` pointed one level too deep."""
    p = Path(path)
    for depth in (1, 2):
        root = p.parents[depth - 1] if len(p.parents) >= depth else None
        if root is None:
            continue
        inside = p.relative_to(root).as_posix()
        expected = {"image", "label"} if depth == 1 else {"image/origin", "label/label.lst"}
        if inside in expected and (root / "label" / "label.lst").is_file() and (root / "image").is_dir():
            return root
    return None


def check_dataset_root(root: str | os.PathLike[str]) -> Path:
    """``root`` if it can be a dataset, else a DatasetError (exit 3) saying what to pass instead; cheap (no
    file is read), so commands call it before any expensive step."""
    root = Path(root)
    above = expw_root_above(root)
    if above is not None:
        raise DatasetError(f"{root}: this is inside the ExpW dataset {above}; did you mean --data {above}?")
    if not root.exists():
        raise DatasetError(f"{root}: dataset folder not found (run `ferreport sample --out {root}` for a sample)")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder; pass the dataset folder holding label/label.lst and image/origin, "
                           "or class folders")
    return root


def load_dataset(root: str | os.PathLike[str], *, strict: bool = False) -> LabelIndex:
    """Load an ExpW-layout dataset (``label/label.lst`` + ``image/origin/``) or class folders."""
    root = check_dataset_root(root)
    label_file = root / "label" / "label.lst"
    # Anything by that name but a folder is the label file (a FIFO or device is then refused
    # by read_label_file with its own message, rather than mistaken for "no label file").
    if os.path.lexists(label_file) and not label_file.is_dir():
        return read_label_file(label_file, root / "image" / "origin", strict=strict)
    return read_class_folders(root, strict=strict)
