"""One folder audit's settings, checked and resolved: what every stage after the checks reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ferreport.audit.detection import DetectorParams
from ferreport.audit.labels import Labels
from ferreport.audit.model import ResolvedModel
from ferreport.audit.scanning import display_path
from ferreport.runs.folder import RunFolder

__all__ = ["AuditJob"]


@dataclass(frozen=True, eq=False)
class AuditJob:
    """One audit's settings, checked and resolved: what the stages after the checks read."""

    folder: Path
    run_dir: Path
    faces: str
    label_of: Labels
    model: ResolvedModel
    model_sha: str
    formats: tuple[str, ...]
    chunk_size: int
    batch_size: int
    workers: int
    unsafe_model: bool
    contract: dict[str, Any]       # the model's contract as resolved (outputs decided): what Ray's actors use
    unscored: frozenset[int]       # ExpW class ids the model cannot predict: their labels are not scored
    n_resamples: int
    seed: int
    progress: bool
    detector: DetectorParams
    engine: str
    ray_address: str | None
    model_timeout: float | None = None  # seconds one model call may take (--model-timeout)

    @property
    def run(self) -> RunFolder:
        """The output folder, through which every file of the audit is written and read."""
        return RunFolder(self.run_dir)

    def config_record(self) -> dict[str, Any]:
        """config.json: the settings as given (paths as text)."""
        return {"command": "predict", "folder": display_path(str(self.folder)), "model": str(self.model.path),
                "out": str(self.run_dir), "faces": self.faces, "labels": self.label_of.source or "none",
                "formats": list(self.formats), "chunk_size": self.chunk_size, "batch_size": self.batch_size,
                "workers": self.workers, "seed": self.seed, "n_resamples": self.n_resamples,
                "detector": self.detector.name if self.faces != "whole" else None,
                "align": bool(self.detector.align) if self.faces != "whole" else False,
                "unsafe_model": bool(self.unsafe_model), "model_timeout": self.model_timeout, "engine": self.engine,
                "ray_address": self.ray_address,
                "model_contract": self.contract}
