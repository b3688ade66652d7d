"""The one configuration object each command's options map onto."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .balancing import METHODS
from .constants import MONITORS
from .errors import UsageError

#: Output formats of a report.
FORMATS: tuple[str, ...] = ("html", "pdf")
#: Epochs of the CPU demo (`ferreport run` without --full): a few minutes on 2 cores.
DEMO_EPOCHS = 12
DEMO_SAMPLE_FACES = 2000
#: The CPU demo's recipe (`ferreport run` without --full), applied to options left at their
#: defaults. The seed recipe taken literally (seed CNN, Adam 1e-3, SMOTE) collapses to the
#: majority class in a few epochs; the compact CNN with warm-up and cosine decay learns.
DEMO_PROFILE: dict[str, object] = {
    "epochs": DEMO_EPOCHS, "arch": "compact", "balance": "none", "learning_rate": 2e-3,
    "warmup_epochs": 1, "lr_schedule": "cosine", "label_smoothing": 0.0, "no_augment": True,
    "monitor": "val_loss",
}
#: The seed notebook's recipe taken literally (``--recipe seed``, ``run --full``): seed CNN,
#: 50 epochs, batch 32, Adam 1e-3 constant, SMOTE. It can collapse on real faces
#: (benchmarks/README.md, "Quality on real faces"); it stays for comparison.
SEED_PROFILE: dict[str, object] = {
    "epochs": 50, "arch": "seed", "balance": "smote", "learning_rate": 1e-3, "warmup_epochs": 0,
    "lr_schedule": "constant", "label_smoothing": 0.0, "monitor": "val_loss",
}
#: Named recipes (``--recipe``): option values applied to every option left at its default.
#: ``default`` is the defaults themselves (RunConfig's and the CLI's): the recipe chosen on
#: real faces (benchmarks/quality.py).
RECIPES: dict[str, dict[str, object]] = {"default": {}, "seed": SEED_PROFILE, "demo": DEMO_PROFILE}


@dataclass(frozen=True)
class RunConfig:
    """Resolved options of a run; written to ``config.json`` so the run can be repeated."""

    data: Path | None = None            # dataset root; None: the embedded generated sample
    out: Path | None = None             # run directory; None: reports/<run id>
    reports_dir: Path = Path("reports")
    # The default recipe, chosen by measurement on real faces (benchmarks/README.md).
    epochs: int = 25
    batch_size: int = 32
    learning_rate: float = 1e-3
    balance: str = "class-weight-sqrt"
    seed: int = 0
    augment: bool = True
    arch: str = "compact-std"
    strategy: str = "auto"
    lr_schedule: str = "cosine"
    warmup_epochs: int = 1
    label_smoothing: float = 0.1
    monitor: str = "val_macro_f1"       # best epoch / early stopping by validation macro-F1
    early_stopping_patience: int | None = None
    strict: bool = False
    resume: bool = False
    formats: tuple[str, ...] = FORMATS
    sample_faces: int = DEMO_SAMPLE_FACES
    cache_dir: Path | None = None
    workers: int | None = None
    n_resamples: int = 1000
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise UsageError(f"--epochs {self.epochs}: must be at least 1")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size {self.batch_size}: must be at least 1")
        if not self.learning_rate > 0:
            raise UsageError(f"--learning-rate {self.learning_rate}: must be positive")
        if self.balance not in METHODS:
            raise UsageError(f"--balance {self.balance!r}: choose one of {', '.join(METHODS)}")
        if self.monitor not in MONITORS:
            raise UsageError(f"--monitor {self.monitor!r}: choose one of {', '.join(MONITORS)}")
        bad = [f for f in self.formats if f not in FORMATS]
        if bad:
            raise UsageError(f"--format {','.join(bad)}: choose from {','.join(FORMATS)}")

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


def parse_formats(text: str) -> tuple[str, ...]:
    """``"html,pdf"`` -> ``("html", "pdf")``; empty parts ignored."""
    parts = tuple(p.strip().lower() for p in text.split(",") if p.strip())
    if not parts:
        raise UsageError("--format: give html, pdf or html,pdf")
    return parts
