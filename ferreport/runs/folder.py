"""The run folder: the only code that knows its file names, and the one reader and writer of each artefact.

A run folder (``ferreport train``/``evaluate``/``predict``/``compare`` output) is self-describing:
``ferreport report RUN`` re-renders from it alone. Every command, compute module and report reads
and writes its files through :class:`RunFolder`; nothing else opens them. Writes are atomic
(:mod:`ferreport.runs.atomic`: a temporary name, then a rename), so a reader never sees half a file.

Readers return plain data (dicts, DataFrames, arrays); the modules that own a result turn it into
their dataclasses. Optional artefacts read as ``None`` when absent; a file that cannot be read is
``None`` too, with a line added to ``problems`` when the caller passes a list.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from ferreport import __version__
from ferreport.constants import CLASS_NAMES
from ferreport.errors import DatasetError, OutputError, UsageError
from ferreport.progress import echo
from ferreport.runs import schemas
from ferreport.runs.atomic import atomic_open, atomic_path, remove_stale_parts, write_json, write_text
from ferreport.runs.cells import restore_frame, write_frame
from ferreport.runs.guard import ArtefactError, check_npz, open_inside, parse_json, read_json_inside
from ferreport.runs.lock import exclusive_lock

CONFIG = "config.json"            # resolved configuration (dataclass as dict)
PROVENANCE = "provenance.json"    # seed, package versions, fingerprints, command line, times
SPLITS = "splits.csv"             # one row per face: key, source, face_id, label, split
DATA_SUMMARY = "data_summary.json"  # counts per split before/after balancing, skipped rows by reason
HISTORY = "history.csv"           # epoch, loss, accuracy, val_loss, val_accuracy, learning_rate, seconds
MODEL = "model.keras"             # best epoch by validation loss
MODEL_CONTRACT = "model.contract.json"  # the model's input contract (ferreport.models.contract), beside model.keras
CHECKPOINT_DIR = "checkpoint"     # resumable training state (last completed epoch)
CHECKPOINT_STATE = "state.json"   # in CHECKPOINT_DIR: epochs committed, whether training stopped on purpose
PREDICTIONS = "predictions.csv"   # one row per face, columns below
METRICS = "metrics.json"          # see evaluation.metrics.metrics_to_dict
FACES_POOL = "faces_pool.npz"     # arrays `rows` (int64 row numbers into predictions.csv) and `faces`
                                  # (k,64,64,3 uint8 RGB)
AUDIT_SUMMARY = "audit_summary.json"  # folder audits (`ferreport predict`): counts, skips by reason, timing
SKIPPED = "skipped.csv"           # folder audits: path,reason of every file that got no prediction
SALIENCY = "saliency.npz"         # Grad-CAM of the pooled faces: `rows`, `maps` (k,h,w uint8), `info` (JSON)
LABEL_ISSUES = "label_issues.csv"  # labels to check (cleanlab): source, face_id, given, suggested, score
LABEL_NOISE = "label_noise.json"  # cleanlab's noise table and summary of the labels to check (evaluation.label_noise)
GATES = "gates.json"              # quality-gate verdicts and baseline deltas of the last evaluation (evaluation.gates)
FACE_STATS = "face_stats.csv"     # one row per predictions.csv row: the face's slice attributes (evaluation.facestats)
SLICES = "slices.json"            # accuracy and macro-F1 per slice with intervals, the weak slices (evaluation.slices)
EMBEDDINGS = "embeddings.npz"     # `rows` into predictions.csv and `embeddings` (penultimate layer, float16): drift
DRIFT = "drift.json"              # folder audits with a reference: drift tests and drift_detected (evaluation.drift)
REPORT_HTML = "report.html"
REPORT_PDF = "report.pdf"
COMPARE_JSON = "compare.json"     # `ferreport compare` output folders: deltas, McNemar, flipped faces
COMPARE_HTML = "compare.html"
COMPARE_PDF = "compare.pdf"
MARKER = ".ferreport"             # in every folder ferreport creates: what wrote it, when; --force replaces only these
RAY_SHARDS = ".ray-shards-"       # prefix of the Ray audit engine's scratch folder of Parquet shards
                                  # (removed after use)

#: Probability columns of predictions.csv, in class order.
PROBA_COLUMNS: tuple[str, ...] = tuple(f"p_{name}" for name in CLASS_NAMES)
#: Columns of predictions.csv (evaluation). ``true_label``/``pred_label`` hold class names;
#: ``true_label`` is empty when unknown (folder audits without labels).
PREDICTION_COLUMNS: tuple[str, ...] = (
    "source", "face_id", "true_label", "pred_label", "confidence", *PROBA_COLUMNS,
)
#: Extra columns of an audit's predictions.csv: the face box in image pixels and how the face was
#: found (``detected``, ``whole`` or ``fallback``; ``extra``: a further detection in a labelled
#: image, listed but not labelled or scored; see :mod:`ferreport.audit.predict`).
AUDIT_EXTRA_COLUMNS: tuple[str, ...] = ("top", "left", "right", "bottom", "found")
#: Decimals of the probabilities and confidence in predictions.csv.
PROBA_DECIMALS = 6

_KIB, _MIB, _GIB = 1024, 1024**2, 1024**3
#: The most bytes each artefact is read at (a shared run folder is untrusted input: a file over its limit
#: is refused, never read). JSON not listed: 64 MiB; CSV not listed: 1 GiB.
SIZE_LIMITS: dict[str, int] = {
    MARKER: 4 * _KIB, CONFIG: 4 * _MIB, PROVENANCE: 16 * _MIB, DATA_SUMMARY: 16 * _MIB, METRICS: 16 * _MIB,
    GATES: 4 * _MIB, CHECKPOINT_STATE: 64 * _MIB, MODEL_CONTRACT: 64 * _KIB, AUDIT_SUMMARY: 16 * _MIB,
    SLICES: 256 * _MIB, DRIFT: 16 * _MIB, LABEL_NOISE: 512 * _MIB, COMPARE_JSON: 512 * _MIB,
    PREDICTIONS: 16 * _GIB, SPLITS: 4 * _GIB, FACE_STATS: 16 * _GIB, SKIPPED: 16 * _GIB, HISTORY: 64 * _MIB,
    LABEL_ISSUES: 4 * _GIB, FACES_POOL: 2 * _GIB, SALIENCY: 2 * _GIB, EMBEDDINGS: 4 * _GIB,
}
#: The most bytes the arrays of each ``.npz`` artefact may declare (checked from their headers before loading).
ARRAY_LIMITS: dict[str, int] = {FACES_POOL: 4 * _GIB, SALIENCY: 4 * _GIB, EMBEDDINGS: 8 * _GIB}
#: The JSON Schema of each JSON artefact (:mod:`ferreport.runs.schemas`), by file name.
SCHEMAS: dict[str, dict[str, Any]] = {
    METRICS: schemas.METRICS_SCHEMA, PROVENANCE: schemas.PROVENANCE_SCHEMA, CONFIG: schemas.CONFIG_SCHEMA,
    DATA_SUMMARY: schemas.DATA_SUMMARY_SCHEMA, SLICES: schemas.SLICES_SCHEMA, DRIFT: schemas.DRIFT_SCHEMA,
    AUDIT_SUMMARY: schemas.AUDIT_SUMMARY_SCHEMA, LABEL_NOISE: schemas.LABEL_NOISE_SCHEMA, GATES: schemas.GATES_SCHEMA,
    COMPARE_JSON: schemas.COMPARE_SCHEMA, CHECKPOINT_STATE: schemas.CHECKPOINT_STATE_SCHEMA,
    MARKER: schemas.MARKER_SCHEMA,
}
#: Notices about artefacts left out, by folder (each said once on stderr; the report lists them).
_NOTICES: dict[str, list[str]] = {}


def all_notices() -> dict[str, list[str]]:
    """Every notice :meth:`RunFolder.note` recorded in this process, by folder (real path)."""
    return {k: list(v) for k, v in _NOTICES.items()}


def forget_notices() -> None:
    """Drop the recorded notices (a long-lived process rendering many reports; tests)."""
    _NOTICES.clear()


def size_limit(name: str) -> int:
    """The most bytes artefact ``name`` is read at."""
    base = Path(name).name
    return SIZE_LIMITS.get(base, 64 * _MIB if base.endswith(".json") else _GIB)

__all__ = [
    "ARRAY_LIMITS", "AUDIT_EXTRA_COLUMNS", "PREDICTION_COLUMNS", "PROBA_COLUMNS", "PROBA_DECIMALS", "SCHEMAS",
    "SIZE_LIMITS", "RunFolder", "all_notices", "check_apart", "check_replaceable", "check_run_dir", "check_writable",
    "clean_run_dir", "folder_lock", "forget_notices", "is_ferreport_folder", "new_run_id", "size_limit",
]


# --------------------------------------------------------------------------- a new run's folder

def new_run_id() -> str:
    """A fresh run folder name: UTC time and six random hex digits (``20261207-134500-a1b2c3``)."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{secrets.token_hex(3)}"


def clean_run_dir(run_dir: Path) -> None:
    """Remove the temporaries an interrupted earlier process left in ``run_dir``; say so on stderr."""
    removed = remove_stale_parts(run_dir)
    if removed:
        echo(f"{run_dir}: removed {len(removed)} temporary file(s) left by an interrupted run "
             f"(first: {removed[0].name})")


def _entries(folder: Path) -> list[Path]:
    """What ``folder`` holds, less ferreport's own marker (an absent folder holds nothing)."""
    try:
        return [p for p in folder.iterdir() if p.name != MARKER]
    except (FileNotFoundError, NotADirectoryError):
        return []


def check_run_dir(run_dir: Path, resume: bool = False, *, can_resume: bool = False) -> None:
    """``run_dir`` can receive a new run (absent or empty), or holds the run ``resume`` continues; else a
    UsageError whose hint names only options the command has (``can_resume``: train and run)."""
    if resume:
        if not (run_dir / CONFIG).is_file():
            raise UsageError(f"--resume: {run_dir} holds no run to resume (no {CONFIG})")
        return
    check_writable(run_dir)
    if run_dir.is_dir() and _entries(run_dir):
        fix = ("choose another --out, pass --resume to continue it, or --force to replace it" if can_resume
               else "choose another --out, or pass --force to replace it")
        raise UsageError(f"{run_dir}: already holds files; {fix}")


def check_writable(run_dir: Path) -> None:
    """``run_dir`` is, or can be made, a writable folder: an OutputError (exit 5) before any work, not after it."""
    if run_dir.exists() and not run_dir.is_dir():
        raise OutputError(f"{run_dir}: exists and is not a folder; choose another --out")
    ancestor = run_dir
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"{run_dir}: cannot create it ({ancestor} is a file); choose another --out")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputError(f"{run_dir}: cannot write in {ancestor} (permission denied); choose another --out")


# --------------------------------------------------------------------------- ownership, locks, inputs


def is_ferreport_folder(folder: Path) -> bool:
    """Whether ``folder`` carries ferreport's marker (a regular file, not a link, that says so)."""
    marker = Path(folder) / MARKER
    if marker.is_symlink():
        return False
    try:
        doc = read_json_inside(marker, size_limit(MARKER), root=folder, schema=SCHEMAS[MARKER])
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("tool") == "ferreport"


def check_replaceable(folder: Path, option: str = "--out") -> None:
    """``--force`` may replace ``folder`` only when ferreport wrote it (or it is empty); else a UsageError."""
    folder = Path(folder)
    if not folder.is_dir() or not _entries(folder) or is_ferreport_folder(folder):
        return
    raise UsageError(f"{option} {folder}: not written by ferreport (it has no {MARKER} marker), so --force will "
                     "not replace it; choose another folder, or empty it yourself")


def _resolved(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.realpath(os.path.abspath(os.fspath(path))))


def check_apart(out: Path, inputs: Mapping[str, str | os.PathLike[str] | None]) -> None:
    """A UsageError (exit 2) when ``out`` is, holds or lies inside one of ``inputs`` (option -> path),
    compared after resolving links: a command never writes, or replaces, what it reads."""
    target = _resolved(out)
    for option, path in inputs.items():
        if path is None:
            continue
        source = _resolved(path)
        places = [source]
        if source.is_file() and (source.parent / CONFIG).is_file():  # a model inside a run folder: the run too
            places.append(source.parent)
        for place in places:
            if target == place or place.is_relative_to(target) or target.is_relative_to(place):
                how = ("is" if target == place else "holds" if place.is_relative_to(target) else "is inside")
                raise UsageError(f"--out {out} {how} {option} {path}: ferreport never writes where it reads; "
                                 "choose an --out outside it")


def folder_lock(out: Path, option: str = "--out") -> contextlib.AbstractContextManager[None]:
    """One writer at a time for the folder ``out``: an exclusive lock on ``.NAME.lock`` beside it, held for
    the whole command (a second writer gets a UsageError naming the holder's PID)."""
    out = Path(out)
    check_writable(out)  # a path under a file, or an unwritable parent: exit 5 naming it, before the lock
    return exclusive_lock(out.parent / f".{out.name}.lock", out, option=option)


class RunFolder:
    """One run folder on disk: its files by name, and one reader and one writer per artefact."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # ------------------------------------------------------------------ names and presence
    def create(self, kind: str) -> Path:
        """Make the folder (and any missing parents), marked as ferreport's; returns the folder.

        The marker (``.ferreport``: what wrote it, the version, when) is what lets ``--force`` replace the
        folder later. It goes into a folder this call creates or finds empty, never into a folder that
        already holds someone's files; parent folders this call creates get one too.
        """
        missing = []
        place = self.path
        while not place.exists() and place != place.parent:
            missing.append(place)
            place = place.parent
        fresh = not _entries(self.path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot create it ({exc.strerror}); choose another --out") from exc
        stamp = {"tool": "ferreport", "version": __version__, "pid": os.getpid(),
                 "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        for folder in missing:
            if folder != self.path and not is_ferreport_folder(folder):
                write_json(folder / MARKER, {**stamp, "kind": "folder"})
        if fresh and not is_ferreport_folder(self.path):
            write_json(self.path / MARKER, {**stamp, "kind": kind})
        return self.path

    def file(self, name: str) -> Path:
        """The path of artefact ``name`` (one of this module's file-name constants)."""
        return self.path / name

    def has(self, name: str) -> bool:
        """Whether artefact ``name`` is a regular file (a link to one counts)."""
        return (self.path / name).is_file()

    def present(self, name: str) -> bool:
        """Whether anything is at ``name``, even a FIFO or a broken link (which the readers then refuse by name)."""
        return os.path.lexists(self.path / name)

    def remove(self, name: str) -> None:
        """Remove artefact ``name`` if present (a stale result that would describe other faces)."""
        (self.path / name).unlink(missing_ok=True)

    @property
    def model_path(self) -> Path:
        return self.path / MODEL

    @property
    def contract_path(self) -> Path:
        return self.path / MODEL_CONTRACT

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / CHECKPOINT_DIR

    @property
    def checkpoint_state_path(self) -> Path:
        return self.path / CHECKPOINT_DIR / CHECKPOINT_STATE

    def trained_files(self) -> list[Path]:
        """What ``train`` wrote that exists: the model, history, config, splits, data summary, provenance."""
        names = (MODEL, HISTORY, CONFIG, SPLITS, DATA_SUMMARY, PROVENANCE)
        return [self.path / name for name in names if (self.path / name).is_file()]

    # ------------------------------------------------------------------ generic primitives
    def note(self, text: str, problems: list[str] | None = None) -> None:
        """Record that something of this folder is left out: said once on stderr, kept for the report
        (:meth:`notices`), and added to ``problems`` when given."""
        key = os.path.realpath(self.path)
        seen = _NOTICES.setdefault(key, [])
        if text not in seen:
            seen.append(text)
            echo(f"{self.path}: {text}")
        if problems is not None and text not in problems:
            problems.append(text)

    def notices(self) -> list[str]:
        """What :meth:`note` recorded about this folder in this process."""
        return list(_NOTICES.get(os.path.realpath(self.path), []))

    def open_artefact(self, name: str) -> tuple[IO[bytes], int]:
        """``(binary file, size)`` of artefact ``name``: a regular file inside this folder within its size
        limit. FileNotFoundError when absent; ArtefactError (exit 3) naming it when refused."""
        return open_inside(self.path / name, size_limit(name), root=self.path)

    def read_json(self, name: str, problems: list[str] | None = None, *, what: str = "it is left out"
                  ) -> dict[str, Any] | None:
        """A JSON object artefact, guarded and checked against its schema; None when absent. A file that is
        refused is None too, noted (:meth:`note`: ``NAME: reason; what``)."""
        try:
            return self.read_json_strict(name)
        except FileNotFoundError:
            return None
        except ArtefactError as exc:
            self.note(f"{name}: {exc.reason}; {what}", problems)
            return None

    def read_json_strict(self, name: str) -> dict[str, Any]:
        """A JSON object artefact the caller needs: FileNotFoundError when absent, ArtefactError (a DatasetError,
        exit 3) naming the file and the reason when it is refused."""
        path = self.path / name
        doc = read_json_inside(path, size_limit(name), root=self.path, schema=SCHEMAS.get(Path(name).name))
        if not isinstance(doc, dict):
            raise ArtefactError(path, "does not hold a JSON object")
        return doc

    def write_json(self, name: str, doc: Any) -> Path:
        path = self.path / name
        write_json(path, doc)
        return path

    def write_text(self, name: str, text: str) -> Path:
        path = self.path / name
        write_text(path, text)
        return path

    @contextmanager
    def open_for_writing(self, name: str, mode: str = "w") -> Iterator[IO[Any]]:
        """An atomic writer of artefact ``name``: the file appears whole when the block ends."""
        with atomic_open(self.path / name, mode) as fh:
            yield fh

    def write_npz(self, name: str, **arrays: np.ndarray) -> Path:
        """A compressed ``.npz`` artefact, atomically."""
        path = self.path / name
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        return path

    def read_npz(self, name: str, keys: tuple[str, ...]) -> dict[str, np.ndarray] | None:
        """The arrays ``keys`` of a ``.npz`` artefact; None when absent. Guarded: a regular file inside the folder,
        its arrays' headers checked (no pickles, declared size under :data:`ARRAY_LIMITS`) before any is read.

        Raises ArtefactError, OSError, ValueError or KeyError when the file is refused, unreadable or lacks a key.
        """
        try:
            fh, _ = self.open_artefact(name)
        except FileNotFoundError:
            return None
        with fh:
            check_npz(fh, self.path / name, keys, ARRAY_LIMITS.get(name, _GIB))
            with np.load(fh, allow_pickle=False) as npz:
                return {k: np.asarray(npz[k]) for k in keys}

    # ------------------------------------------------------------------ JSON artefacts
    def read_config(self, problems: list[str] | None = None) -> dict[str, Any] | None:
        return self.read_json(CONFIG, problems)

    def read_config_strict(self) -> dict[str, Any]:
        """config.json, for a run that must have one; raises OSError or ValueError (ArtefactError) when unreadable."""
        return self.read_json_strict(CONFIG)

    def write_config(self, doc: Mapping[str, Any]) -> Path:
        return self.write_json(CONFIG, doc)

    def read_provenance(self, problems: list[str] | None = None) -> dict[str, Any] | None:
        return self.read_json(PROVENANCE, problems)

    def read_provenance_strict(self) -> dict[str, Any]:
        """provenance.json, for a run that must have one; raises OSError or ValueError (ArtefactError) when
        unreadable."""
        return self.read_json_strict(PROVENANCE)

    def write_provenance(self, doc: Mapping[str, Any]) -> Path:
        return self.write_json(PROVENANCE, doc)

    def read_data_summary(self, problems: list[str] | None = None) -> dict[str, Any] | None:
        return self.read_json(DATA_SUMMARY, problems)

    def write_data_summary(self, doc: Mapping[str, Any]) -> Path:
        return self.write_json(DATA_SUMMARY, doc)

    def read_metrics(self, problems: list[str] | None = None) -> dict[str, Any] | None:
        return self.read_json(METRICS, problems)

    def read_metrics_strict(self) -> dict[str, Any]:
        """metrics.json, for a report that needs it: FileNotFoundError when absent, ArtefactError (exit 3)."""
        return self.read_json_strict(METRICS)

    def write_metrics(self, doc: Mapping[str, Any]) -> Path:
        return self.write_json(METRICS, doc)

    def read_gates(self, problems: list[str] | None = None) -> dict[str, Any] | None:
        return self.read_json(GATES, problems)

    def write_gates(self, doc: Mapping[str, Any]) -> Path:
        return self.write_json(GATES, doc)

    def read_audit_summary(self, problems: list[str] | None = None) -> dict[str, Any] | None:
        return self.read_json(AUDIT_SUMMARY, problems)

    def write_audit_summary(self, doc: Mapping[str, Any]) -> Path:
        return self.write_json(AUDIT_SUMMARY, doc)

    def read_slices(self) -> dict[str, Any] | None:
        """slices.json as written, or None when absent or unreadable (noted: the section is left out)."""
        doc = self.read_json(SLICES, what="the slices section is left out")
        return doc if doc is not None and isinstance(doc.get("slices"), list) else None

    def write_slices(self, doc: Mapping[str, Any]) -> Path:
        return self.write_json(SLICES, doc)

    def read_drift(self) -> dict[str, Any] | None:
        """drift.json as written, or None when absent or unreadable (noted: the drift section is left out)."""
        doc = self.read_json(DRIFT, what="the drift section is left out")
        return doc if doc is not None and isinstance(doc.get("tests"), list) else None

    def write_drift(self, doc: Mapping[str, Any]) -> Path:
        return self.write_json(DRIFT, doc)

    def read_label_noise(self, problems: list[str] | None = None) -> dict[str, Any] | None:
        return self.read_json(LABEL_NOISE, problems)

    def write_label_noise(self, doc: Mapping[str, Any]) -> Path:
        return self.write_json(LABEL_NOISE, doc)

    def read_compare(self, problems: list[str] | None = None) -> dict[str, Any] | None:
        return self.read_json(COMPARE_JSON, problems)

    def write_compare(self, doc: Mapping[str, Any]) -> Path:
        return self.write_json(COMPARE_JSON, doc)

    def read_checkpoint_state(self) -> dict[str, Any]:
        """The training checkpoint's state.json; raises OSError or ValueError when unreadable."""
        return self.read_json_strict(f"{CHECKPOINT_DIR}/{CHECKPOINT_STATE}")

    def write_checkpoint_state(self, doc: Mapping[str, Any]) -> Path:
        write_json(self.checkpoint_state_path, doc)
        return self.checkpoint_state_path

    # ------------------------------------------------------------------ CSV artefacts
    def read_csv(self, name: str, **options: Any) -> pd.DataFrame:
        """CSV artefact ``name`` guarded (:meth:`open_artefact`), as UTF-8, its safe cells undone
        (:func:`~ferreport.runs.cells.restore_frame`). FileNotFoundError when absent; ArtefactError
        (exit 3) when refused; ValueError (pandas) when it is not CSV."""
        fh, _ = self.open_artefact(name)
        with fh:
            frame = pd.read_csv(fh, encoding="utf-8", **options)
        return restore_frame(frame)

    def _csv_chunks(self, fh: IO[bytes], name: str, chunksize: int, **options: Any) -> Iterator[pd.DataFrame]:
        """Frames of the open CSV artefact ``fh`` (closed at the end), safe cells undone; pandas' errors as
        DatasetError naming the file; none for an empty file."""
        with fh:
            try:
                reader = pd.read_csv(fh, encoding="utf-8", chunksize=chunksize, **options)
                with reader:
                    for chunk in reader:
                        yield restore_frame(chunk)
            except pd.errors.EmptyDataError:
                return
            except (OSError, ValueError) as exc:
                raise DatasetError(f"{self.path / name}: cannot read it ({exc})") from exc

    def _write_csv(self, name: str, frame: pd.DataFrame, **options: Any) -> Path:
        path = self.path / name
        with atomic_open(path, "w") as fh:
            write_frame(frame, fh, **options)
        return path

    def read_predictions(self, *, chunksize: int | None = None, usecols: list[str] | None = None,
                         face_id_text: bool = True, text_columns: tuple[str, ...] = ()
                         ) -> pd.DataFrame | Iterator[pd.DataFrame]:
        """predictions.csv with text columns kept as text (empty ``true_label`` = unknown).

        ``face_id_text=False`` lets pandas read face ids as numbers where they are; ``text_columns``:
        further columns kept as text; ``chunksize``: an iterator of frames (none for an empty file).
        Raises :class:`~ferreport.errors.DatasetError` naming the file when it cannot be read.
        """
        path = self.path / PREDICTIONS
        dtype = {"source": str, "true_label": str, "pred_label": str, **{c: str for c in text_columns}}
        if face_id_text:
            dtype["face_id"] = str
        options = dict(keep_default_na=False, na_values={"confidence": [""]}, dtype=dtype, usecols=usecols)
        if chunksize is not None:
            try:  # open now, so a refused or missing file is said here and not at the first chunk
                fh, _ = self.open_artefact(PREDICTIONS)
            except FileNotFoundError as exc:
                raise DatasetError(f"{path}: cannot read predictions ({exc.strerror or exc})") from exc
            return self._csv_chunks(fh, PREDICTIONS, chunksize, **options)
        try:
            frame = self.read_csv(PREDICTIONS, **options)
        except ArtefactError:
            raise
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{path}: cannot read predictions ({exc})") from exc
        if usecols is None:
            missing = [c for c in ("true_label", "pred_label") if c not in frame.columns]
            if missing:
                raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}")
            empty = np.flatnonzero(frame["pred_label"].to_numpy() == "")
            if empty.size:
                more = f" (and {empty.size - 1} more rows)" if empty.size > 1 else ""
                raise DatasetError(f"{path} row {int(empty[0]) + 1}: empty pred_label{more}; the file is truncated or "
                                   "was edited: evaluate again to rewrite it")
        return frame

    def write_predictions(self, frame: pd.DataFrame) -> Path:
        return self._write_csv(PREDICTIONS, frame, float_format=f"%.{PROBA_DECIMALS}f")

    def require_predictions(self) -> None:
        """Raise :class:`~ferreport.errors.UsageError` unless this is a folder holding predictions.csv."""
        if not self.path.is_dir():
            raise UsageError(f"{self.path}: run directory not found")
        if not self.present(PREDICTIONS):
            raise UsageError(f"{self.path}: no {PREDICTIONS}; evaluate a model into this folder first")

    def read_splits(self) -> pd.DataFrame:
        """splits.csv (one row per face, ``key`` as text); raises OSError or ValueError when unreadable."""
        return self.read_csv(SPLITS, keep_default_na=False, dtype={"key": str})

    def write_splits(self, frame: pd.DataFrame) -> Path:
        return self._write_csv(SPLITS, frame)

    def copy_splits_from(self, other: RunFolder) -> Path:
        """This folder's splits.csv as a byte copy of ``other``'s (read guarded)."""
        fh, size = other.open_artefact(SPLITS)
        with fh:
            data = fh.read(size)
        path = self.path / SPLITS
        with atomic_open(path, "wb") as out:
            out.write(data)
        return path

    def read_history(self, problems: list[str] | None = None) -> pd.DataFrame | None:
        """history.csv, or None when absent, empty or unreadable (noted: the curves are left out)."""
        try:
            history = self.read_csv(HISTORY)
        except FileNotFoundError:
            return None
        except ArtefactError as exc:
            self.note(f"{HISTORY}: {exc.reason}; training curves left out", problems)
            return None
        except (OSError, ValueError) as exc:
            self.note(f"{HISTORY} could not be read ({exc}); training curves left out", problems)
            return None
        numeric = all(pd.api.types.is_numeric_dtype(history[c]) for c in history.columns)
        if not numeric:
            self.note(f"{HISTORY} holds text where numbers belong; training curves left out", problems)
            return None
        return None if history.empty else history

    def write_history(self, frame: pd.DataFrame) -> Path:
        return self._write_csv(HISTORY, frame)

    def read_face_stats(self, columns: tuple[str, ...], n_rows: int | None = None) -> pd.DataFrame | None:
        """face_stats.csv, or None when absent, unreadable, lacking ``columns`` or not ``n_rows`` long."""
        try:
            frame = self.read_csv(FACE_STATS, keep_default_na=False,
                                  na_values={c: [""] for c in columns if c != "found"}, dtype={"found": str})
        except FileNotFoundError:
            return None
        except ArtefactError as exc:
            self.note(f"{FACE_STATS}: {exc.reason}; slices by face attributes left out")
            return None
        except (OSError, ValueError):
            return None
        if any(c not in frame.columns for c in columns) or (n_rows is not None and len(frame) != n_rows):
            return None
        return frame

    def write_face_stats(self, frame: pd.DataFrame) -> Path:
        return self._write_csv(FACE_STATS, frame)

    def read_label_issues(self, problems: list[str] | None = None) -> pd.DataFrame | None:
        """label_issues.csv (text columns as text), or None when absent or unreadable (noted)."""
        try:
            return self.read_csv(LABEL_ISSUES, dtype={"source": str, "face_id": str, "given": str, "suggested": str},
                                 keep_default_na=False)
        except FileNotFoundError:
            return None
        except ArtefactError as exc:
            self.note(f"{LABEL_ISSUES}: {exc.reason}; it is left out", problems)
            return None
        except (OSError, ValueError) as exc:
            self.note(f"{LABEL_ISSUES} could not be read ({exc}); it is left out", problems)
            return None

    def write_label_issues(self, frame: pd.DataFrame) -> Path:
        return self._write_csv(LABEL_ISSUES, frame, float_format="%.4f")

    # ------------------------------------------------------------------ array artefacts
    def read_face_pool(self, n_rows: int | None, problems: list[str] | None = None
                       ) -> tuple[np.ndarray, np.ndarray | None]:
        """(row numbers, faces) of faces_pool.npz; rows outside predictions.csv (``n_rows``) dropped."""
        empty = np.zeros(0, dtype=np.int64), None
        try:
            arrays = self.read_npz(FACES_POOL, ("rows", "faces"))
            if arrays is None:
                return empty
            rows = np.asarray(arrays["rows"], dtype=np.int64).reshape(-1)
            faces = arrays["faces"]
            if faces.dtype != np.uint8 or faces.ndim != 4 or faces.shape[3] != 3 or len(faces) != len(rows):
                raise ValueError(f"expected rows (k,) and faces (k,h,w,3) uint8, got {rows.shape} and "
                                 f"{faces.shape} {faces.dtype}")
            if n_rows is None:
                return rows, faces
            keep = (rows >= 0) & (rows < n_rows)
            return rows[keep], faces[keep]
        except ArtefactError as exc:
            self.note(f"{FACES_POOL}: {exc.reason}; faces are not shown", problems)
            return empty
        except (OSError, ValueError, KeyError) as exc:
            self.note(f"{FACES_POOL} could not be read ({exc}); faces are not shown", problems)
            return empty

    def write_face_pool(self, rows: np.ndarray, faces: np.ndarray) -> Path:
        return self.write_npz(FACES_POOL, rows=np.asarray(rows, dtype=np.int64),
                              faces=np.asarray(faces, dtype=np.uint8))

    def read_embeddings(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(rows, embeddings float32)`` of embeddings.npz, or None when absent or unreadable."""
        try:
            arrays = self.read_npz(EMBEDDINGS, ("rows", "embeddings"))
        except ArtefactError as exc:
            self.note(f"{EMBEDDINGS}: {exc.reason}; the embedding drift test is left out")
            return None
        except (OSError, ValueError, KeyError):
            return None
        if arrays is None:
            return None
        rows, emb = np.asarray(arrays["rows"], np.int64), np.asarray(arrays["embeddings"], np.float32)
        if emb.ndim != 2 or len(rows) != len(emb):
            return None
        return rows, emb

    def write_embeddings(self, rows: np.ndarray, embeddings: np.ndarray, layer: str) -> Path:
        return self.write_npz(EMBEDDINGS, rows=np.asarray(rows, np.int64),
                              embeddings=np.asarray(embeddings, np.float16), layer=np.asarray(layer))

    def read_saliency(self, n_rows: int, problems: list[str] | None = None
                      ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]] | None:
        """``(rows, maps, info)`` of saliency.npz, rows outside predictions.csv dropped; None when absent."""
        try:
            arrays = self.read_npz(SALIENCY, ("rows", "maps", "info"))
            if arrays is None:
                return None
            rows = np.asarray(arrays["rows"], dtype=np.int64).reshape(-1)
            maps = arrays["maps"]
            info = parse_json(str(arrays["info"]), self.path / SALIENCY)
            if not isinstance(info, dict):
                raise ValueError("info is not a JSON object")
            if info.get("available") and (maps.dtype != np.uint8 or maps.ndim != 3 or len(maps) != len(rows)):
                raise ValueError(f"expected maps (k, h, w) uint8 for {len(rows)} rows, got {maps.shape} {maps.dtype}")
            keep = (rows >= 0) & (rows < n_rows)
            if maps.ndim == 3 and len(maps) == len(rows):
                maps = maps[keep]
            return rows[keep], maps, info
        except ArtefactError as exc:
            self.note(f"{SALIENCY}: {exc.reason}; saliency maps are not shown", problems)
            return None
        except (OSError, ValueError, KeyError) as exc:
            self.note(f"{SALIENCY} could not be read ({exc}); saliency maps are not shown", problems)
            return None

    def write_saliency(self, rows: np.ndarray, maps_uint8: np.ndarray, info: Mapping[str, Any]) -> Path:
        return self.write_npz(SALIENCY, rows=np.asarray(rows, dtype=np.int64).reshape(-1), maps=maps_uint8,
                              info=np.array(json.dumps(info, sort_keys=True)))

    # ------------------------------------------------------------------ training checkpoint files
    def checkpoint_model_names(self, epoch: int) -> tuple[str, str]:
        """The ``(last, best)`` model file names in CHECKPOINT_DIR of 1-based ``epoch``: ``last-EEEE.keras``
        (full model and optimizer state) and ``best-EEEE.keras`` (no optimizer state)."""
        tag = f"{epoch:04d}"
        return f"last-{tag}.keras", f"best-{tag}.keras"

    def clean_checkpoint_dir(self, keep: set[str]) -> None:
        """Delete the checkpoint's epoch models not named in ``keep``, and temporaries of interrupted writes."""
        ckpt = self.checkpoint_dir
        for p in ckpt.glob("*.keras"):
            if p.name not in keep and (p.name.startswith(("last-", "best-"))):
                p.unlink(missing_ok=True)
        for p in ckpt.glob(".*.part*"):  # leftovers of a kill during an atomic write
            p.unlink(missing_ok=True)

    def remove_training_leftovers(self) -> None:
        """Delete the temporaries a killed training left of model.keras and history.csv."""
        for name in (MODEL, HISTORY):
            for leftover in self.path.glob(f".{name}.*.part*"):
                leftover.unlink(missing_ok=True)

    # ------------------------------------------------------------------ scratch files
    def read_back_parquet(self, write: Callable[[str], Any]) -> list[pd.DataFrame]:
        """``write(folder)`` fills a fresh scratch folder in this run folder (``.ray-shards-*``) with Parquet
        shards; returns them read back in name order, the folder removed whatever happens."""
        shards = Path(tempfile.mkdtemp(prefix=RAY_SHARDS, dir=self.path))
        try:
            write(str(shards))
            return [pd.read_parquet(p) for p in sorted(shards.glob("*.parquet"))]
        finally:
            shutil.rmtree(shards, ignore_errors=True)
