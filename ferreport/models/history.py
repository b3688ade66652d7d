"""The training history: one row per completed epoch, as a DataFrame and as the run folder's history.csv."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ferreport.runs.folder import RunFolder

__all__ = ["HISTORY_COLUMNS", "history_frame", "write_history"]

#: Columns of history.csv (see RunFolder.write_history).
HISTORY_COLUMNS: tuple[str, ...] = (
    "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "val_macro_f1", "learning_rate", "seconds",
)


def history_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The history rows as a frame of HISTORY_COLUMNS: ``epoch`` int64, the rest float64 (NaN when missing)."""
    df = pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))
    if len(df):
        df["epoch"] = df["epoch"].astype(np.int64)
        for col in HISTORY_COLUMNS[1:]:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(np.float64)
    return df


def write_history(folder: RunFolder, rows: list[dict[str, Any]]) -> None:
    """Write the history rows to ``folder``'s history.csv (atomically)."""
    folder.write_history(history_frame(rows))
