"""The ``evaluate`` stage: score a model on a run's test split, on a dataset, or on another run's split.

Each entry point opens the model with its contract settled, finds the faces to score and
calls :func:`ferreport.evaluation.evaluate.evaluate_faces`, then records the evaluation in
provenance.json. The report is rendered by the command layer from what is stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ferreport.config import ModelConfig, RunConfig
from ferreport.constants import CLASS_NAMES
from ferreport.datasets.face_cache import PreparedDataset, prepare_dataset
from ferreport.datasets.loading import check_dataset_root
from ferreport.datasets.prepare_stage import PreparedSplit, data_summary
from ferreport.datasets.splitting import split_faces, split_table
from ferreport.errors import DatasetError, UsageError
from ferreport.evaluation.facestats import source_attributes
from ferreport.evaluation.saliency import prepare_onednn, target_layer
from ferreport.models.contract import SPEC_KEYS
from ferreport.progress import echo
from ferreport.runs.folder import CONFIG, PROVENANCE, SPLITS, RunFolder, check_run_dir, clean_run_dir, new_run_id
from ferreport.runs.provenance import model_fingerprint, now_iso, provenance_record

__all__ = ["evaluate_model", "evaluate_on_split", "evaluate_run", "open_evaluated_model", "summary_line",
           "training_status"]


def open_evaluated_model(model_path: Path, model: ModelConfig, *, progress: bool = False,
                         recorded_sources: dict[str, str] | None = None) -> Any:
    """Open ``model_path`` with its contract settled (:func:`ferreport.models.adapters.open_model`).

    Says what the model takes on stderr when it is not ferreport's own contract (or on a terminal), and
    warns of each field that changes the numbers and was assumed. ``recorded_sources``: where the fields
    taken from a run's recorded contract came from.
    """
    if model.saliency:  # before TensorFlow is imported (ferreport.evaluation.saliency.prepare_onednn)

        note = prepare_onednn(model_path)
        if note:
            echo(note)
    from ferreport.models.adapters import open_model  # TensorFlow: after the oneDNN guard

    adapter = open_model(model_path, {**model.contract_options(), "recorded_sources": recorded_sources},
                         safe_mode=not model.unsafe_model)
    if progress or not adapter.is_ferreport_contract():
        echo(f"{model_path}: {adapter.describe()}")
    for line in adapter.assumed_warnings():
        echo(f"warning: {model_path}: {line}")
    return adapter


def _with_recorded_contract(run_dir: Path, model: ModelConfig) -> ModelConfig:
    """``model``'s options, with those left unset taken from the contract the run recorded (provenance.json)."""
    recorded = (RunFolder(run_dir).read_provenance() or {}).get("model_contract") or {}
    if not isinstance(recorded, dict):
        recorded = {}
    values = {}
    for key in SPEC_KEYS:
        if getattr(model, key) is None and recorded.get(key) is not None:
            value = recorded[key]
            values[key] = ",".join(value) if isinstance(value, list) else value
    return ModelConfig(**{**{k: getattr(model, k) for k in ModelConfig.names()}, **values}) if values else model


def _saved_config(run_dir: Path) -> RunConfig:
    run = RunFolder(run_dir)
    if not run.has(CONFIG):
        raise UsageError(f"{run_dir}: not a run directory (no {CONFIG}); train first or pass --model and --data")
    return RunConfig.from_dict(run.read_config_strict(), where=run.file(CONFIG))


def _test_rows(run_dir: Path, dataset: PreparedDataset, data: Any) -> np.ndarray:
    """Positions in ``dataset`` of the test faces listed in ``run_dir``'s splits.csv."""
    splits = RunFolder(run_dir).read_splits()
    test_keys = splits.loc[splits["split"] == "test", "key"]
    position = pd.Series(np.arange(len(dataset.index)), index=dataset.index["key"].to_numpy())
    missing = ~test_keys.isin(position.index)
    if missing.any():
        raise DatasetError(f"{data}: {int(missing.sum())} test faces of {RunFolder(run_dir).file(SPLITS)} "
                           f"are no longer in the dataset (first: {test_keys[missing].iloc[0]}); "
                           "evaluate with --model and --data instead")
    return position[test_keys.to_numpy()].to_numpy()


def evaluate_run(run_dir: Path, *, model_path: Path | None = None, model: ModelConfig | None = None,
                 progress: bool = False) -> dict[str, Any]:
    """Evaluate a run's model (or ``model_path``) on the run's own saved test split; returns the metrics."""
    run_dir = Path(run_dir)
    config = _saved_config(run_dir)
    clean_run_dir(run_dir)
    model = model or ModelConfig()
    model_file = Path(model_path) if model_path else RunFolder(run_dir).model_path
    recorded = config.extra.get("model") if isinstance(config.extra, dict) else None
    sources = None
    if model_path is None and not model_file.exists() and recorded:  # a run that scored a model from elsewhere
        model_file = Path(recorded)
        given, model = model, _with_recorded_contract(run_dir, model)
        prov = (RunFolder(run_dir).read_provenance() or {}).get("model_contract") or {}
        before = prov.get("sources") if isinstance(prov.get("sources"), dict) else {}
        sources = {k: str(before.get(k, "recorded")) for k in SPEC_KEYS  # the fields the record filled in
                   if getattr(given, k) is None and getattr(model, k) is not None}
    adapter = open_evaluated_model(model_file, model, progress=progress, recorded_sources=sources)
    dataset = prepare_dataset(config.data, strict=config.strict, cache_root=config.cache_dir, workers=config.workers,
                              progress=progress)
    rows = _test_rows(run_dir, dataset, config.data)
    extra: dict[str, Any] = {}
    collapse = (RunFolder(run_dir).read_provenance() or {}).get("collapse")
    if collapse:  # training's collapse verdict travels into metrics.json and the report
        extra["collapse"] = collapse
    status = training_status(run_dir, int(config.epochs))
    if status is not None:  # only an interrupted training adds a key: complete runs' metrics.json is unchanged
        extra["training"] = status
        echo(f"warning: {run_dir}: training was interrupted after epoch {status['epochs_run']} of "
            f"{status['epochs']}; the model is evaluated as it stood (resume with `ferreport train --out {run_dir} "
            "--resume`)")
    return _evaluate(adapter, dataset, rows, run_dir, config.seed, config.n_resamples, extra, explain=model)


def evaluate_model(model_path: Path, config: RunConfig, *, progress: bool = False) -> tuple[Path, dict[str, Any]]:
    """Evaluate an existing model on ``config.data``: its test split (ExpW), or all of it (class folders).

    Writes a run directory (``config.out``, default reports/<run id>); returns it and the metrics.
    """

    if config.data is None:
        raise UsageError("--model needs --data DIR to evaluate on (or --split-of RUN_DIR)")
    run_dir = Path(config.out) if config.out else Path(config.reports_dir) / new_run_id()
    check_run_dir(run_dir)
    check_dataset_root(config.data)
    adapter = open_evaluated_model(model_path, config.model, progress=progress)
    dataset = prepare_dataset(config.data, strict=config.strict, cache_root=config.cache_dir, progress=progress)
    RunFolder(run_dir).create("run")
    if dataset.kind == "folders":
        split = pd.Series(["test"] * len(dataset.index))
    else:
        split = split_faces(dataset.index, seed=config.seed)
    config = config.with_values(out=run_dir, extra={
        "model": str(model_path), "evaluated_on": "all faces" if dataset.kind == "folders" else "test split"})
    run = RunFolder(run_dir)
    run.write_config(config.to_dict())
    run.write_splits(split_table(dataset.index, split))
    run.write_data_summary(data_summary(PreparedSplit(dataset, split)))
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
    source = RunFolder(split_of)
    if not source.has(SPLITS):
        raise UsageError(f"--split-of {split_of}: no {SPLITS} in it; pass a run folder that was trained "
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
    RunFolder(run_dir).create("run")
    record = saved.with_values(out=run_dir, resume=False, formats=config.formats, n_resamples=config.n_resamples,
                               **{k: getattr(config.model, k) for k in ModelConfig.names()},
                               extra={"model": str(model_path), "evaluated_on": f"test split of {split_of}"})
    run = RunFolder(run_dir)
    run.write_config(record.to_dict())
    run.copy_splits_from(source)
    split = source.read_splits()
    by_key = dict(zip(split["key"], split["split"], strict=True))
    split_series = pd.Series([by_key.get(k, "") for k in dataset.index["key"]])
    run.write_data_summary(data_summary(PreparedSplit(dataset, split_series)))
    return run_dir, _evaluate(adapter, dataset, rows, run_dir, saved.seed, config.n_resamples, explain=config.model)


def training_status(run_dir: Path, epochs: int) -> dict[str, Any] | None:
    """``{"complete": False, "epochs_run": n, "epochs": N}`` when the run's training stopped early by accident
    (killed, crashed), else None.

    Training writes ``epochs_run`` to provenance.json only when it finished (all epochs,
    early stopping or a NaN-loss stop); without it, the checkpoint's ``state.json`` says
    how many epochs were committed and whether training stopped on purpose. A run with
    neither (a model evaluated from elsewhere) is not judged.
    """
    run = RunFolder(run_dir)
    try:
        if run.has(PROVENANCE) and "epochs_run" in run.read_provenance_strict():
            return None
        if not run.checkpoint_state_path.is_file():
            return None
        state = run.read_checkpoint_state()
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
    from ferreport.evaluation.evaluate import evaluate_faces  # TensorFlow: after the oneDNN guard

    explain = explain or ModelConfig()
    if explain.saliency and explain.saliency_layer and getattr(adapter, "keras_model", None) is not None:

        target_layer(adapter.keras_model, explain.saliency_layer)  # a wrong --saliency-layer stops before scoring

    started = now_iso()
    model_file = adapter.path
    contract = adapter.contract
    extra = dict(extra_metrics or {})
    if contract.missing or contract.dropped:  # classes that do not line up: recorded (and said) below
        unscored = np.isin(dataset.labels[rows], [CLASS_NAMES.index(c) for c in contract.missing])
        if contract.missing:  # faces of a class the model cannot predict are not scored: say how many
            echo(f"warning: {model_file} has no output for {', '.join(contract.missing)}: "
                f"{int(unscored.sum())} test faces of {'that class' if len(contract.missing) == 1 else 'those classes'}"
                " are left out of the scores")
        rows = rows[~unscored]
        extra["classes"] = {"scored": list(contract.scored), "not_predicted": list(contract.missing),
                            "faces_removed": int(unscored.sum()), "dropped_outputs": list(contract.dropped)}
    if contract.dropped:
        echo(f"note: {model_file}: output(s) {', '.join(contract.dropped)} are not ExpW classes: dropped, "
            f"probabilities renormalised over the {len(contract.scored)} scored classes")
    table = dataset.index.iloc[rows][["source", "face_id", "label"]].reset_index(drop=True)
    attributes = source_attributes(dataset.index).iloc[rows].reset_index(drop=True)  # counted over every split
    result = evaluate_faces(adapter, np.asarray(dataset.faces[rows]), table, run_dir, n_resamples=n_resamples,
                            seed=seed, extra_metrics=extra or None, source=model_file, labels=contract.scored,
                            attributes=attributes, saliency=explain.saliency,
                            saliency_layer=explain.saliency_layer)
    run = RunFolder(run_dir)
    record = run.read_provenance_strict() if run.has(PROVENANCE) else provenance_record(
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
    run.write_provenance(record)
    return result.metrics


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
