"""The stages a command strings together: prepare (read, split, balance), train, evaluate, render.

Each stage takes the settings of :mod:`ferreport.config` and reads and writes a run
directory (see :mod:`ferreport.runs.folder`), so a later stage (or a later process) can
pick up where an earlier one stopped. :mod:`ferreport.cli.commands` says which stages each
command of the CLI runs.
"""

from __future__ import annotations

import datetime as _dt
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ferreport import __version__
from ferreport.runs import folder as artifacts
from ferreport.models import onednn
from ferreport.runs.atomic import atomic_open, remove_stale_parts, write_json
from ferreport.datasets.balancing import BalanceResult, balance_training_set
from ferreport.config import FORMATS, ModelConfig, RunConfig
from ferreport.constants import CLASS_NAMES
from ferreport.models.contract import ModelContract, write_contract
from ferreport.errors import DatasetError, OutputError, UsageError
from ferreport.datasets.loading import check_dataset_root
from ferreport.datasets.preprocessing import PreparedDataset, prepare_dataset
from ferreport.progress import echo, stage
from ferreport.runs.provenance import model_fingerprint, now_iso, provenance_record, sha256_file
from ferreport.datasets.splitting import SPLITS, split_faces, split_table

DEFAULT_DATASET = Path("data") / "ExpW"
DEFAULT_SAMPLE = Path("data") / "sample"


def log(message: str) -> None:
    """Human progress goes to stderr (above any progress bar); stdout stays free for machine output."""
    echo(message)


def new_run_id() -> str:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{secrets.token_hex(3)}"


def resolve_dataset(data: Path | None, *, sample_faces: int, seed: int = 0) -> Path:
    """The dataset to use: the one given, else ``data/ExpW`` when present, else the generated sample."""
    if data is not None:
        return Path(data)
    if (DEFAULT_DATASET / "label" / "label.lst").is_file():
        return DEFAULT_DATASET
    from ferreport.datasets.sample import SampleSpec, generate_sample

    out = DEFAULT_SAMPLE
    log(f"no --data given and no data/ExpW: using the generated ExpW-layout sample at {out}")
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


def clean_run_dir(run_dir: Path) -> None:
    """Remove the temporaries an interrupted earlier process left in ``run_dir``; say so on stderr."""
    removed = remove_stale_parts(run_dir)
    if removed:
        log(f"{run_dir}: removed {len(removed)} temporary file(s) left by an interrupted run "
            f"(first: {removed[0].name})")


def check_run_dir(run_dir: Path, resume: bool = False, *, can_resume: bool = False) -> None:
    """``run_dir`` can receive a new run (absent or empty), or holds the run ``resume`` continues; else a
    UsageError whose hint names only options the command has (``can_resume``: train and run)."""
    if resume:
        if not (run_dir / artifacts.CONFIG).is_file():
            raise UsageError(f"--resume: {run_dir} holds no run to resume (no {artifacts.CONFIG})")
        return
    check_writable(run_dir)
    if run_dir.is_dir() and any(run_dir.iterdir()):
        fix = ("choose another --out, pass --resume to continue it, or --force to replace it" if can_resume
               else "choose another --out, or pass --force to replace it")
        raise UsageError(f"{run_dir}: already holds files; {fix}")


def check_writable(run_dir: Path) -> None:
    """``run_dir`` is, or can be made, a writable folder: an OutputError (exit 5) before any work, not after it."""
    import os

    if run_dir.exists() and not run_dir.is_dir():
        raise OutputError(f"{run_dir}: exists and is not a folder; choose another --out")
    ancestor = run_dir
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"{run_dir}: cannot create it ({ancestor} is a file); choose another --out")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputError(f"{run_dir}: cannot write in {ancestor} (permission denied); choose another --out")


def train(config: RunConfig, *, progress: bool | None = None) -> Path:
    """prepare -> split -> balance -> train; returns the run directory.

    The output folder and the dataset are checked before TensorFlow is imported (seconds) and
    before any face is decoded."""
    if config.init_from:  # before TensorFlow is imported: oneDNN crashes on some models' gradients
        note = onednn.prepare_training(finetune_source_file(Path(config.init_from)))
        if note:
            log(note)
    started = now_iso()
    chief = True
    if config.strategy == "multiworker":
        from ferreport.models.distributed import worker_info

        chief = worker_info()["chief"]
        if not config.out:
            raise UsageError("--strategy multiworker: pass the same --out RUN_DIR to every worker, so that they "
                             "agree on the run directory (only the chief writes it)")
    run_dir = Path(config.out) if config.out else Path(config.reports_dir) / new_run_id()
    if chief:
        check_run_dir(run_dir, config.resume, can_resume=True)
    if config.resume:  # continue with the recorded configuration, not today's defaults
        saved_path = run_dir / artifacts.CONFIG
        config = config.resumed_from(json.loads(saved_path.read_text()), where=saved_path)
    if config.data is not None:
        check_dataset_root(config.data)
    start = _start_from(config)  # a bad --init-from fails here: before a face is decoded or a file written
    fresh = chief and not config.resume and not run_dir.exists()
    empty = chief and not config.resume and not fresh  # check_run_dir let it through: an empty folder
    try:
        return _train_into(run_dir, config, start, chief=chief, started=started, progress=progress)
    except BaseException:
        if (fresh or empty) and not (run_dir / artifacts.CHECKPOINT_DIR / artifacts.CHECKPOINT_STATE).is_file():
            _discard(run_dir, keep_folder=empty)  # no epoch committed: nothing to resume, nothing to keep
        raise


def _discard(run_dir: Path, *, keep_folder: bool) -> None:
    """Remove what a training run that failed before its first epoch wrote (config, splits, summary)."""
    import shutil

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
    if chief:
        run_dir.mkdir(parents=True, exist_ok=True)
        clean_run_dir(run_dir)
        write_json(run_dir / artifacts.CONFIG, config.to_dict())
        table = split_table(data.dataset.index, data.split)
        with atomic_open(run_dir / artifacts.SPLITS) as fh:
            table.to_csv(fh, index=False)

    train_rows, val_rows = data.rows("train"), data.rows("val")
    if len(train_rows) == 0 or len(val_rows) == 0:
        raise DatasetError(f"{data.dataset.root}: too few faces to split into train/val/test ({len(data.split)} faces)")
    faces, labels = data.dataset.faces, data.dataset.labels
    balanced = balance(data, config)
    summary = data_summary(data, balanced)
    if chief:
        write_json(run_dir / artifacts.DATA_SUMMARY, summary)
        log(format_summary(summary))
        hint = few_faces_hint(len(train_rows), bool(config.init_from))
        if hint:
            log(hint)

    from ferreport.models.training import train_model

    with stage("train", total=config.epochs, unit="epochs") as bar:
        result = train_model(balanced.x, balanced.y, np.asarray(faces[val_rows]), labels[val_rows], config.training,
                             run_dir, class_weight=balanced.class_weight, resume=config.resume, progress=progress,
                             on_epoch_end=lambda epoch, row: bar.advance(),
                             init=start.build if start else None, contract=start.source.contract if start else None)
    if not result.is_chief:
        log(f"worker done after {result.epochs_run} epochs; the chief wrote {run_dir}")
        return run_dir
    # ferreport's own input contract, or the fine-tuned model's (the source's input, ExpW's classes)
    contract = start.source.contract if start else ModelContract(recipe=f"ferreport {__version__}, arch {config.arch}")
    write_contract(run_dir / artifacts.MODEL, contract)
    record = provenance_record(seed=config.seed, data_fingerprint=data.dataset.fingerprint,
                               model_sha256=sha256_file(run_dir / artifacts.MODEL), started=started, finished=now_iso(),
                               extra={"run_id": run_dir.name, "best_epoch": int(result.best_epoch),
                                      "model_contract": {**contract.to_dict(), "summary": contract.describe()},
                                      "epochs_run": int(result.epochs_run),
                                      "collapse": _collapse_dict(result.collapse),
                                      **({"init_from": start.record()} if start else {})})
    write_json(run_dir / artifacts.PROVENANCE, record)
    return run_dir


def few_faces_hint(n_train: int, fine_tuning: bool) -> str | None:
    """The console note for training from scratch on few faces (None: enough faces, or fine-tuning)."""
    from ferreport.config import FEW_TRAINING_FACES

    if fine_tuning or n_train >= FEW_TRAINING_FACES:
        return None
    return (f"note: {n_train} training faces: too few to train from scratch reliably; starting from a trained "
            "model (--init-from MODEL, e.g. the fer package's emotion_model.hdf5 with --input-range -1,1) beat "
            "training from scratch by +0.11 macro-F1 on ~570 real faces (benchmarks/README.md, Fine-tuning)")


def finetune_source_file(path: Path) -> Path:
    """The model file ``--init-from`` names: a run folder's model.keras, else the path itself."""
    if path.is_dir() and not (path / "saved_model.pb").is_file() and (path / artifacts.MODEL).is_file():
        return path / artifacts.MODEL
    return path


@dataclass
class _Start:
    """The model a fine-tuning run starts from, and how its head was mapped (set when built)."""

    source: Any
    seed: int
    freeze_batchnorm: bool = False
    mapping: Any = None

    def build(self) -> Any:
        from ferreport.models.finetune import initial_model

        model, self.mapping = initial_model(self.source, seed=self.seed, freeze_batchnorm=self.freeze_batchnorm)
        log(f"{self.source.path}: {self.mapping.describe()}")
        return model

    def record(self) -> dict[str, Any]:
        """provenance.json's ``init_from``: file, SHA-256, contract, head mapping (None when resumed)."""
        return {**self.source.record(), "head": self.mapping.to_dict() if self.mapping else None}


def _start_from(config: RunConfig) -> _Start | None:
    """``--init-from``'s model, opened with its contract (None when training from scratch)."""
    if not config.init_from:
        return None
    from ferreport.models.finetune import open_source

    source = open_source(config.init_from, config.model.contract_options(), safe_mode=not config.unsafe_model)
    log(f"{source.path}: {source.adapter.describe()}")
    return _Start(source, int(config.seed), bool(config.freeze_batchnorm))


def _collapse_dict(collapse: Any) -> dict[str, Any] | None:
    if collapse is None:
        return None
    return {"reasons": list(collapse.reasons), "likely_causes": list(collapse.likely_causes)}


def open_evaluated_model(model_path: Path, model: ModelConfig, *, progress: bool = False) -> Any:
    """Open ``model_path`` with its contract settled (:func:`ferreport.models.adapters.open_model`).

    Says what the model takes on stderr when it is not ferreport's own contract (or on a terminal).
    """
    if model.saliency:  # before TensorFlow is imported (ferreport.evaluation.saliency.prepare_onednn)
        from ferreport.evaluation.saliency import prepare_onednn

        note = prepare_onednn(model_path)
        if note:
            log(note)
    from ferreport.models.adapters import open_model

    adapter = open_model(model_path, model.contract_options(), safe_mode=not model.unsafe_model)
    if progress or not adapter.is_ferreport_contract():
        log(f"{model_path}: {adapter.describe()}")
    return adapter


def _with_recorded_contract(run_dir: Path, model: ModelConfig) -> ModelConfig:
    """``model``'s options, with those left unset taken from the contract the run recorded (provenance.json)."""
    from ferreport.models.contract import SPEC_KEYS

    try:
        recorded = json.loads((run_dir / artifacts.PROVENANCE).read_text()).get("model_contract") or {}
    except (OSError, ValueError, AttributeError):
        recorded = {}
    values = {}
    for key in SPEC_KEYS:
        if getattr(model, key) is None and recorded.get(key) is not None:
            value = recorded[key]
            values[key] = ",".join(value) if isinstance(value, list) else value
    return ModelConfig(**{**{k: getattr(model, k) for k in ModelConfig.names()}, **values}) if values else model


def _saved_config(run_dir: Path) -> RunConfig:
    config_path = Path(run_dir) / artifacts.CONFIG
    if not config_path.is_file():
        raise UsageError(f"{run_dir}: not a run directory (no {artifacts.CONFIG}); train first or pass --model and --data")
    return RunConfig.from_dict(json.loads(config_path.read_text()), where=config_path)


def _test_rows(run_dir: Path, dataset: PreparedDataset, data: Any) -> np.ndarray:
    """Positions in ``dataset`` of the test faces listed in ``run_dir``'s splits.csv."""
    splits = pd.read_csv(run_dir / artifacts.SPLITS, keep_default_na=False, dtype={"key": str})
    test_keys = splits.loc[splits["split"] == "test", "key"]
    position = pd.Series(np.arange(len(dataset.index)), index=dataset.index["key"].to_numpy())
    missing = ~test_keys.isin(position.index)
    if missing.any():
        raise DatasetError(f"{data}: {int(missing.sum())} test faces of {run_dir / artifacts.SPLITS} are no longer "
                           f"in the dataset (first: {test_keys[missing].iloc[0]}); evaluate with --model and --data instead")
    return position[test_keys.to_numpy()].to_numpy()


def evaluate_run(run_dir: Path, *, model_path: Path | None = None, model: ModelConfig | None = None,
                 progress: bool = False) -> dict[str, Any]:
    """Evaluate a run's model (or ``model_path``) on the run's own saved test split; returns the metrics."""
    run_dir = Path(run_dir)
    config = _saved_config(run_dir)
    clean_run_dir(run_dir)
    model = model or ModelConfig()
    model_file = Path(model_path) if model_path else run_dir / artifacts.MODEL
    recorded = config.extra.get("model") if isinstance(config.extra, dict) else None
    if model_path is None and not model_file.exists() and recorded:  # a run that scored a model from elsewhere
        model_file = Path(recorded)
        model = _with_recorded_contract(run_dir, model)
    adapter = open_evaluated_model(model_file, model, progress=progress)
    dataset = prepare_dataset(config.data, strict=config.strict, cache_root=config.cache_dir, workers=config.workers,
                              progress=progress)
    rows = _test_rows(run_dir, dataset, config.data)
    extra: dict[str, Any] = {}
    prov_path = run_dir / artifacts.PROVENANCE
    if prov_path.is_file():  # training's collapse verdict travels into metrics.json and the report
        collapse = json.loads(prov_path.read_text()).get("collapse")
        if collapse:
            extra["collapse"] = collapse
    status = training_status(run_dir, int(config.epochs))
    if status is not None:  # only an interrupted training adds a key: complete runs' metrics.json is unchanged
        extra["training"] = status
        log(f"warning: {run_dir}: training was interrupted after epoch {status['epochs_run']} of "
            f"{status['epochs']}; the model is evaluated as it stood (resume with `ferreport train --out {run_dir} "
            "--resume`)")
    return _evaluate(adapter, dataset, rows, run_dir, config.seed, config.n_resamples, extra, explain=model)


def evaluate_model(model_path: Path, config: RunConfig, *, progress: bool = False) -> tuple[Path, dict[str, Any]]:
    """Evaluate an existing model on ``config.data``: its test split (ExpW), or all of it (class folders).

    Writes a run directory (``config.out``, default reports/<run id>); returns it and the metrics.
    """
    from ferreport.evaluation.evaluate import evaluate_faces  # noqa: F401  (import errors surface before work starts)

    if config.data is None:
        raise UsageError("--model needs --data DIR to evaluate on (or --split-of RUN_DIR)")
    run_dir = Path(config.out) if config.out else Path(config.reports_dir) / new_run_id()
    check_run_dir(run_dir)
    check_dataset_root(config.data)
    adapter = open_evaluated_model(model_path, config.model, progress=progress)
    dataset = prepare_dataset(config.data, strict=config.strict, cache_root=config.cache_dir, progress=progress)
    run_dir.mkdir(parents=True, exist_ok=True)
    if dataset.kind == "folders":
        split = pd.Series(["test"] * len(dataset.index))
    else:
        split = split_faces(dataset.index, seed=config.seed)
    config = config.with_values(out=run_dir, extra={
        "model": str(model_path), "evaluated_on": "all faces" if dataset.kind == "folders" else "test split"})
    write_json(run_dir / artifacts.CONFIG, config.to_dict())
    with atomic_open(run_dir / artifacts.SPLITS) as fh:
        split_table(dataset.index, split).to_csv(fh, index=False)
    write_json(run_dir / artifacts.DATA_SUMMARY, data_summary(PreparedSplit(dataset, split)))
    rows = np.flatnonzero(split.to_numpy() == "test")
    return run_dir, _evaluate(adapter, dataset, rows, run_dir, config.seed, config.n_resamples, explain=config.model)


def evaluate_on_split(model_path: Path, split_of: Path, config: RunConfig, *,
                      progress: bool = False) -> tuple[Path, dict[str, Any]]:
    """Score ``model_path`` on exactly ``split_of``'s test faces, in a new run folder (``split_of`` untouched).

    The new folder records the same dataset, seed and splits.csv, so ``ferreport compare
    SPLIT_OF NEW`` pairs the two models face by face.
    """
    split_of = Path(split_of)
    saved = _saved_config(split_of)
    if not (split_of / artifacts.SPLITS).is_file():
        raise UsageError(f"--split-of {split_of}: no {artifacts.SPLITS} in it; pass a run folder that was trained "
                         "or evaluated")
    if config.data is not None and Path(config.data).resolve() != Path(saved.data).resolve():
        raise UsageError(f"--split-of {split_of} evaluates on its own dataset ({saved.data}); drop --data "
                         f"{config.data}")
    run_dir = Path(config.out) if config.out else Path(config.reports_dir) / new_run_id()
    if run_dir.resolve() == split_of.resolve():
        raise UsageError(f"--out {run_dir} is the --split-of run itself; choose a new folder")
    check_run_dir(run_dir)
    adapter = open_evaluated_model(model_path, config.model, progress=progress)
    dataset = prepare_dataset(saved.data, strict=saved.strict, cache_root=config.cache_dir or saved.cache_dir,
                              progress=progress)
    rows = _test_rows(split_of, dataset, saved.data)
    run_dir.mkdir(parents=True, exist_ok=True)
    record = saved.with_values(out=run_dir, resume=False, formats=config.formats, n_resamples=config.n_resamples,
                               **{k: getattr(config.model, k) for k in ModelConfig.names()},
                               extra={"model": str(model_path), "evaluated_on": f"test split of {split_of}"})
    write_json(run_dir / artifacts.CONFIG, record.to_dict())
    with atomic_open(run_dir / artifacts.SPLITS) as fh:
        fh.write((split_of / artifacts.SPLITS).read_text())
    split = pd.read_csv(split_of / artifacts.SPLITS, keep_default_na=False, dtype={"key": str})
    by_key = dict(zip(split["key"], split["split"]))
    split_series = pd.Series([by_key.get(k, "") for k in dataset.index["key"]])
    write_json(run_dir / artifacts.DATA_SUMMARY, data_summary(PreparedSplit(dataset, split_series)))
    return run_dir, _evaluate(adapter, dataset, rows, run_dir, saved.seed, config.n_resamples, explain=config.model)


def training_status(run_dir: Path, epochs: int) -> dict[str, Any] | None:
    """``{"complete": False, "epochs_run": n, "epochs": N}`` when the run's training stopped early by accident
    (killed, crashed), else None.

    Training writes ``epochs_run`` to provenance.json only when it finished (all epochs,
    early stopping or a NaN-loss stop); without it, the checkpoint's ``state.json`` says
    how many epochs were committed and whether training stopped on purpose. A run with
    neither (a model evaluated from elsewhere) is not judged.
    """
    prov_path = Path(run_dir) / artifacts.PROVENANCE
    try:
        if prov_path.is_file() and "epochs_run" in json.loads(prov_path.read_text()):
            return None
        state_path = Path(run_dir) / artifacts.CHECKPOINT_DIR / artifacts.CHECKPOINT_STATE
        if not state_path.is_file():
            return None
        state = json.loads(state_path.read_text())
        done = int(state.get("epochs_done", 0))
        stopped = state.get("stopped")
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    if stopped or done >= epochs:
        return None
    return {"complete": False, "epochs_run": done, "epochs": int(epochs)}


def _evaluate(adapter: Any, dataset: PreparedDataset, rows: np.ndarray, run_dir: Path,
              seed: int, n_resamples: int, extra_metrics: dict[str, Any] | None = None, *,
              explain: ModelConfig | None = None) -> dict[str, Any]:
    """Score ``rows`` of ``dataset`` into ``run_dir``; ``explain``: its saliency settings (default: on)."""
    from ferreport.evaluation.evaluate import evaluate_faces

    explain = explain or ModelConfig()
    if explain.saliency and explain.saliency_layer and getattr(adapter, "keras_model", None) is not None:
        from ferreport.evaluation.saliency import target_layer

        target_layer(adapter.keras_model, explain.saliency_layer)  # a wrong --saliency-layer stops before scoring

    started = now_iso()
    model_file = adapter.path
    contract = adapter.contract
    extra = dict(extra_metrics or {})
    if contract.missing or contract.dropped:  # classes that do not line up: recorded (and said) below
        unscored = np.isin(dataset.labels[rows], [CLASS_NAMES.index(c) for c in contract.missing])
        if contract.missing:  # faces of a class the model cannot predict are not scored: say how many
            log(f"warning: {model_file} has no output for {', '.join(contract.missing)}: "
                f"{int(unscored.sum())} test faces of {'that class' if len(contract.missing) == 1 else 'those classes'}"
                " are left out of the scores")
        rows = rows[~unscored]
        extra["classes"] = {"scored": list(contract.scored), "not_predicted": list(contract.missing),
                            "faces_removed": int(unscored.sum()), "dropped_outputs": list(contract.dropped)}
    if contract.dropped:
        log(f"note: {model_file}: output(s) {', '.join(contract.dropped)} are not ExpW classes: dropped, "
            f"probabilities renormalised over the {len(contract.scored)} scored classes")
    table = dataset.index.iloc[rows][["source", "face_id", "label"]].reset_index(drop=True)
    from ferreport.evaluation.facestats import source_attributes

    attributes = source_attributes(dataset.index).iloc[rows].reset_index(drop=True)  # counted over every split
    result = evaluate_faces(adapter, np.asarray(dataset.faces[rows]), table, run_dir, n_resamples=n_resamples,
                            seed=seed, extra_metrics=extra or None, source=model_file, labels=contract.scored,
                            attributes=attributes, saliency=explain.saliency,
                            saliency_layer=explain.saliency_layer)
    prov_path = run_dir / artifacts.PROVENANCE
    record = json.loads(prov_path.read_text()) if prov_path.is_file() else provenance_record(
        seed=seed, data_fingerprint=dataset.fingerprint, model_sha256=None, started=started)
    fingerprint = model_fingerprint(model_file)
    record["evaluation"] = {"model": str(model_file), "model_sha256": fingerprint,
                            "data_fingerprint": dataset.fingerprint, "faces": int(len(rows)),
                            "started": started, "finished": now_iso()}
    record["model_contract"] = adapter.record()
    if result.saliency is not None:
        record["saliency"] = result.saliency
    else:
        record.pop("saliency", None)
    record["model_sha256"] = record.get("model_sha256") or fingerprint
    if not record.get("finished"):  # an evaluation-only run folder finishes with its evaluation
        record["finished"] = record["evaluation"]["finished"]
    write_json(prov_path, record)
    return result.metrics


def saved_seed(run_dir: Path) -> int:
    """The seed in a run folder's config.json (0 when absent or unreadable)."""
    try:
        seed = json.loads((Path(run_dir) / artifacts.CONFIG).read_text()).get("seed", 0)
        return int(seed) if isinstance(seed, int) else 0
    except (OSError, ValueError):
        return 0


def render_report(run_dir: Path, *, formats: tuple[str, ...] = FORMATS, n_resamples: int = 1000,
                  seed: int = 0) -> dict[str, Path]:
    """Render report.html / report.pdf from the run directory's saved artefacts alone."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: no such run folder; pass a folder written by ferreport run, train + evaluate, "
                         "or predict")
    if not (run_dir / artifacts.PREDICTIONS).is_file():
        fix = (f"run `ferreport evaluate {run_dir}` first" if (run_dir / artifacts.CONFIG).is_file()
               else "not a run folder; pass a folder written by ferreport run, train + evaluate, or predict")
        raise UsageError(f"{run_dir}: no {artifacts.PREDICTIONS}; {fix}")
    clean_run_dir(run_dir)
    from ferreport.report import is_audit_dir, write_audit_report

    from ferreport.report import write_report

    write = write_audit_report if is_audit_dir(run_dir) else write_report  # a folder audit: the audit report
    with stage("report", unit="") as bar:
        written = write(run_dir, formats, n_resamples=n_resamples, seed=seed)
        bar.summary = f"{', '.join(written)} in {bar.seconds:.1f} s"
    return written


def summary_line(metrics: dict[str, Any]) -> str:
    if not metrics.get("n"):
        return "no labelled faces: no accuracy to report"
    ci = metrics.get("ci", {})

    def fmt(key: str) -> str:
        value = metrics[key]
        interval = ci.get(key)
        if isinstance(interval, list) and len(interval) == 2:
            return f"{key} {value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"
        return f"{key} {value:.3f}"

    return f"n {metrics['n']}  " + "  ".join(fmt(k) for k in ("accuracy", "macro_f1", "weighted_f1"))

