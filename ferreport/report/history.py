"""The history of runs: ``reports/index.html``, one self-contained page listing every run.

:func:`update_index` scans ``REPORTS/*/metrics.json`` (with each run's provenance.json,
config.json, data_summary.json and gates.json when present) and rewrites
``REPORTS/index.html``: a table of runs (date, model, dataset, key metrics, gate
verdict, links to the report files) and a trend chart of accuracy and macro-F1 over
time (inline SVG ``data:`` URI, no JavaScript, no network references). Comparison
folders written by ``ferreport compare`` (``*/compare.json``) are listed below, and audits with
a ``drift.json`` by the folder they audited, with their drift over time
(:mod:`ferreport.report.drift_history`).

Safe to overlap: the scan and the write happen under an exclusive ``fcntl.flock`` on
``REPORTS/.index.lock``, and the page is written to a temporary name and renamed, so two
jobs finishing at once both appear and a reader never sees half a page. Every job
writes its own ``metrics.json`` before updating the index, so the last updater always
sees every finished run.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ferreport import __version__
from ferreport.errors import OutputError
from ferreport.progress import echo
from ferreport.report import plots
from ferreport.report.drift_history import drift_sources, scan_drift
from ferreport.report.render import render_template
from ferreport.report.text import as_number, dig, parse_time
from ferreport.runs.atomic import write_text
from ferreport.runs.folder import (
    COMPARE_HTML,
    COMPARE_PDF,
    GATES,
    METRICS,
    REPORT_HTML,
    REPORT_PDF,
    RunFolder,
)

try:  # POSIX; elsewhere the index is rewritten without a lock (still atomically)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["INDEX_HTML", "LOCK_FILE", "RunEntry", "index_lock", "scan_runs", "update_index"]

INDEX_HTML = "index.html"
#: The index's own name when an ``index.html`` that ferreport did not write is in the reports folder.
INDEX_FALLBACK = "ferreport-index.html"
#: What the index template writes into its page's head (``<meta name="generator" content="ferreport …">``).
GENERATOR_MARK = b'<meta name="generator" content="ferreport '
LOCK_FILE = ".index.lock"


@contextlib.contextmanager
def index_lock(reports_dir: Path, timeout: float = 600.0) -> Iterator[None]:
    """Hold an exclusive lock on ``reports_dir/.index.lock`` (waits up to ``timeout`` seconds)."""
    reports_dir = Path(reports_dir)
    path = reports_dir / LOCK_FILE
    try:
        reports_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise OutputError(f"{path}: cannot create the index lock ({exc.strerror}); is {reports_dir} writable?") from exc
    try:
        if fcntl is not None:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise OutputError(f"{path}: another job has held the index lock for over {timeout:.0f} s; "
                                          "the index was not updated") from None
                    time.sleep(0.05)
        yield
    finally:
        if fcntl is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# --------------------------------------------------------------------------- scanning


@dataclass(frozen=True)
class RunEntry:
    run_id: str
    href: str                      # URL-quoted folder name, relative to the index
    date: str | None               # ISO 8601 (evaluation finish), for display
    when: _dt.datetime             # for ordering and the trend chart
    model: str
    model_sha: str | None
    dataset: str
    data_fingerprint: str | None
    n: int | None
    accuracy: float | None
    macro_f1: float | None
    weighted_f1: float | None
    accuracy_ci: tuple[float, float] | None
    gates: str | None              # "passed", "failed" or None (no gates)
    gates_detail: str | None
    links: tuple[tuple[str, str], ...]


def _run_entry(run: Path, metrics: dict[str, Any]) -> RunEntry:
    folder = RunFolder(run)
    prov = folder.read_provenance() or {}
    cfg = folder.read_config() or {}
    summ = folder.read_data_summary() or {}
    gates = folder.read_gates()
    when = None
    for candidate in (dig(prov, "evaluation.finished"), prov.get("finished"), prov.get("started")):
        when = parse_time(candidate)
        if when is not None:
            break
    if when is None:
        mtime = (run / METRICS).stat().st_mtime
        when = _dt.datetime.fromtimestamp(mtime, _dt.timezone.utc).replace(microsecond=0)
    model_path = dig(cfg, "extra.model") or cfg.get("model")
    if model_path:
        model = Path(str(model_path)).name
    elif cfg.get("arch"):
        model = f"{cfg['arch']} (trained in this run)"
    else:
        model = "—"
    dataset_path = summ.get("dataset") or cfg.get("data") or prov.get("dataset")
    dataset = Path(str(dataset_path)).name if dataset_path else "—"
    ci = dig(metrics, "ci.accuracy")
    gate_state = gate_detail = None
    if gates is not None and gates.get("n_gates"):
        gate_state = "passed" if gates.get("passed") else "failed"
        failed = [g.get("name", "?") for g in gates.get("gates", []) if isinstance(g, Mapping) and not g.get("passed")]
        gate_detail = (f"{gates.get('n_gates')} gates passed" if not failed
                       else f"failed: {', '.join(str(f) for f in failed)}")
    href = urllib.parse.quote(run.name)
    links = tuple((label, f"{href}/{name}") for label, name in (
        ("report", REPORT_HTML), ("PDF", REPORT_PDF), ("metrics", METRICS),
        ("gates", GATES)) if (run / name).is_file())
    return RunEntry(
        run_id=run.name, href=href, date=when.astimezone(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        when=when, model=model,
        model_sha=(prov.get("model_sha256") or dig(prov, "evaluation.model_sha256") or None),
        dataset=dataset, data_fingerprint=dig(prov, "evaluation.data_fingerprint") or prov.get("data_fingerprint"),
        n=int(metrics["n"]) if isinstance(metrics.get("n"), int) else None,
        accuracy=as_number(metrics.get("accuracy")), macro_f1=as_number(metrics.get("macro_f1")),
        weighted_f1=as_number(metrics.get("weighted_f1")),
        accuracy_ci=(float(ci[0]), float(ci[1])) if isinstance(ci, list) and len(ci) == 2
        and all(as_number(v) is not None for v in ci) else None,
        gates=gate_state, gates_detail=gate_detail, links=links,
    )


def scan_runs(reports_dir: Path) -> tuple[list[RunEntry], list[dict[str, Any]], list[str]]:
    """(runs oldest first, comparisons, skipped folders with why) under ``reports_dir``."""
    reports_dir = Path(reports_dir)
    runs: list[RunEntry] = []
    comparisons: list[dict[str, Any]] = []
    skipped: list[str] = []
    if not reports_dir.is_dir():
        return runs, comparisons, skipped
    for child in sorted(reports_dir.iterdir(), key=lambda p: p.name):
        if not child.is_dir() or child.name.startswith("."):
            continue
        if child.is_symlink():  # a link may point anywhere: the index shows only folders that live here
            continue
        folder = RunFolder(child)
        if folder.has(METRICS):
            metrics = folder.read_metrics()
            if metrics is None:
                skipped.append(f"{child.name}: metrics.json unreadable")
                continue
            try:
                runs.append(_run_entry(child, metrics))
            except OSError as exc:  # removed while scanning
                skipped.append(f"{child.name}: {exc.strerror}")
            continue
        comp = folder.read_compare()
        if comp is not None:
            href = urllib.parse.quote(child.name)
            comparisons.append({
                "name": child.name,
                "a": str(dig(comp, "a.run_id") or "?"), "b": str(dig(comp, "b.run_id") or "?"),
                "accuracy_delta": as_number(dig(comp, "deltas.accuracy.delta")),
                "macro_f1_delta": as_number(dig(comp, "deltas.macro_f1.delta")),
                "p_value": as_number(dig(comp, "mcnemar.p_value")),
                "links": [(label, f"{href}/{name}") for label, name in (("comparison", COMPARE_HTML),
                                                                       ("PDF", COMPARE_PDF))
                          if (child / name).is_file()],
            })
    runs.sort(key=lambda r: (r.when, r.run_id))
    return runs, comparisons, skipped


# --------------------------------------------------------------------------- rendering


def render_index(reports_dir: Path, runs: list[RunEntry], comparisons: list[dict[str, Any]],
                 skipped: list[str]) -> str:
    chart = None
    if runs:
        chart = plots.figure_to_data_uri(plots.trend_figure(
            [r.when for r in runs], {"accuracy": [r.accuracy for r in runs], "macro-F1": [r.macro_f1 for r in runs]}))
    latest = runs[-1] if runs else None

    return render_template(
        "index.html.j2", title="ferreport runs", folder=str(Path(reports_dir).resolve().name),
        runs=list(reversed(runs)), comparisons=comparisons, skipped=skipped, chart=chart, latest=latest,
        drift=drift_sources(scan_drift(Path(reports_dir))), generator=f"ferreport {__version__}")


def written_by_ferreport(page: Path) -> bool:
    """Whether ``page`` is absent, or a regular file (not a link) that ferreport's index template wrote."""
    try:
        if page.is_symlink():
            return False
        if not page.exists():
            return True
        if not page.is_file():
            return False
        with page.open("rb") as fh:
            head = fh.read(2048)
    except OSError:
        return False
    return GENERATOR_MARK in head


def update_index(reports_dir: str | os.PathLike[str]) -> Path | None:
    """Rescan ``reports_dir`` and rewrite its index page under the index lock; returns the page.

    The page is ``index.html``, unless an ``index.html`` is there that ferreport did not write: that
    file is left alone and the index goes to ``ferreport-index.html`` (said on stderr). When that
    name is taken too, nothing is written (None).
    """
    reports_dir = Path(reports_dir)
    with index_lock(reports_dir):
        page = next((reports_dir / name for name in (INDEX_HTML, INDEX_FALLBACK)
                     if written_by_ferreport(reports_dir / name)), None)
        if page is None:
            echo(f"notice: {reports_dir / INDEX_HTML} and {INDEX_FALLBACK} were not written by ferreport: both left "
                 "alone, the runs index was not updated")
            return None
        if page.name != INDEX_HTML:
            echo(f"notice: {reports_dir / INDEX_HTML} was not written by ferreport: left alone; the runs index is "
                 f"{page}")
        runs, comparisons, skipped = scan_runs(reports_dir)
        html = render_index(reports_dir, runs, comparisons, skipped)
        write_text(page, html)
    return page
