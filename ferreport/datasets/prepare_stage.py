"""The ``prepare`` stage: find the dataset, read it (or its cache), split it, balance the training split.

What ``ferreport prepare`` prints and what ``train`` starts from: a :class:`PreparedSplit` and
its data summary (counts per split before and after balancing, skipped rows by reason).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ferreport.config import RunConfig
from ferreport.constants import CLASS_NAMES
from ferreport.datasets.balancing import BalanceResult, balance_training_set
from ferreport.datasets.face_cache import PreparedDataset, prepare_dataset
from ferreport.datasets.sample import SampleSpec, generate_sample
from ferreport.datasets.splitting import SPLITS, split_faces
from ferreport.progress import echo

__all__ = ["DEFAULT_DATASET", "DEFAULT_SAMPLE", "PreparedSplit", "balance", "class_counts", "data_summary",
           "format_summary", "prepare", "resolve_dataset"]

DEFAULT_DATASET = Path("data") / "ExpW"
DEFAULT_SAMPLE = Path("data") / "sample"


def resolve_dataset(data: Path | None, *, sample_faces: int, seed: int = 0) -> Path:
    """The dataset to use: the one given, else ``data/ExpW`` when present, else the generated sample."""
    if data is not None:
        return Path(data)
    if (DEFAULT_DATASET / "label" / "label.lst").is_file():
        return DEFAULT_DATASET
    out = DEFAULT_SAMPLE
    echo(f"no --data given and no data/ExpW: using the generated ExpW-layout sample at {out}")
    generate_sample(out, SampleSpec(n_faces=sample_faces, seed=seed))
    return out


@dataclass
class PreparedSplit:
    dataset: PreparedDataset
    split: pd.Series

    def rows(self, name: str) -> np.ndarray:
        return np.flatnonzero(self.split.to_numpy() == name)


def class_counts(labels: np.ndarray) -> dict[str, int]:
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(CLASS_NAMES))
    return {name: int(counts[i]) for i, name in enumerate(CLASS_NAMES)}


def data_summary(prepared: PreparedSplit, balance: BalanceResult | None = None) -> dict[str, Any]:
    """The numbers ``prepare`` prints and the report's Data section shows."""
    labels = prepared.dataset.labels
    splits = {name: class_counts(labels[prepared.rows(name)]) for name in SPLITS}
    summary: dict[str, Any] = {
        "dataset": str(prepared.dataset.root),
        "kind": prepared.dataset.kind,
        "fingerprint": prepared.dataset.fingerprint,
        "faces_read": int(len(labels)),
        "clipped_boxes": int(prepared.dataset.index["clipped"].sum()) if "clipped" in prepared.dataset.index else 0,
        "skipped": dict(sorted(prepared.dataset.skipped.items())),
        "skipped_examples": dict(sorted(prepared.dataset.examples.items())),
        "splits": splits,
        "cache": str(prepared.dataset.cache_dir),
    }
    if balance is not None:
        summary["balance"] = balance.method
        summary["train_balanced"] = {name: int(balance.counts_after[i]) for i, name in enumerate(CLASS_NAMES)}
        if balance.class_weight:
            summary["class_weight"] = {CLASS_NAMES[k]: round(v, 6) for k, v in sorted(balance.class_weight.items())}
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """A plain-text table of the data summary for the console."""
    lines = [f"dataset     {summary['dataset']} ({summary['kind']})",
             f"faces read  {summary['faces_read']}",
             f"clipped     {summary.get('clipped_boxes', 0)} boxes past the image border (kept, clipped)"]
    skipped = summary.get("skipped") or {}
    lines.append(f"skipped     {sum(skipped.values())} rows" + (":" if skipped else ""))
    for reason, count in skipped.items():
        where = summary.get("skipped_examples", {}).get(reason, "")
        lines.append(f"  {count:>7}  {reason}" + (f"  (first: {where})" if where else ""))
    header = f"{'class':<10}" + "".join(f"{s:>8}" for s in SPLITS)
    balanced = summary.get("train_balanced")
    if balanced:
        header += f"{'train*':>9}"
    lines.append(header)
    for name in CLASS_NAMES:
        row = f"{name:<10}" + "".join(f"{summary['splits'][s][name]:>8}" for s in SPLITS)
        if balanced:
            row += f"{balanced[name]:>9}"
        lines.append(row)
    total = f"{'total':<10}" + "".join(f"{sum(summary['splits'][s].values()):>8}" for s in SPLITS)
    if balanced:
        total += f"{sum(balanced.values()):>9}"
    lines.append(total)
    if balanced:
        lines.append(f"train* = training split after balancing ({summary.get('balance')})")
    lines.append(f"cache       {summary['cache']}")
    return "\n".join(lines)


def prepare(config: RunConfig, *, progress: bool = False) -> PreparedSplit:
    """Read (or find in the cache), validate and split the dataset of ``config``."""
    root = resolve_dataset(config.data, sample_faces=config.sample_faces, seed=config.seed)
    dataset = prepare_dataset(root, strict=config.strict, cache_root=config.cache_dir, workers=config.workers,
                              progress=progress)
    return PreparedSplit(dataset, split_faces(dataset.index, seed=config.seed))


def balance(prepared: PreparedSplit, config: RunConfig) -> BalanceResult:
    """The training split balanced by ``config.balance``."""
    train = prepared.rows("train")
    return balance_training_set(np.asarray(prepared.dataset.faces[train]), prepared.dataset.labels[train],
                                config.balance, seed=config.seed)
