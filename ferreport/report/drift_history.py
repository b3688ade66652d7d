"""Drift over time in the history index: repeated audits of one source folder, each against its reference.

:func:`scan_drift` reads ``REPORTS/*/drift.json`` (with the audit's audit_summary.json and
provenance.json) and groups the audits by the folder they audited, oldest first; the index
shows one table per source (date, drift detected, PSI, embedding AUC, the tests that fired)
and a chart of the PSI and the AUC over time.
"""

from __future__ import annotations

import datetime as _dt
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.dates as mdates
import numpy as np

from ferreport.report import plots
from ferreport.report.text import as_number, parse_time
from ferreport.runs.folder import DRIFT, RunFolder

__all__ = ["DriftEntry", "drift_figure", "drift_sources", "scan_drift"]


@dataclass(frozen=True)
class DriftEntry:
    """One audit's drift verdict."""

    run_id: str
    href: str
    source: str
    when: _dt.datetime
    date: str
    reference: str
    detected: bool
    psi: float | None
    auc: float | None
    fired: tuple[str, ...]


def _when(run: Path, prov: dict[str, Any]) -> _dt.datetime:
    for key in ("finished", "started"):
        value = parse_time(prov.get(key))
        if value is not None:
            return value
    return _dt.datetime.fromtimestamp((run / DRIFT).stat().st_mtime, _dt.timezone.utc)


def scan_drift(reports_dir: Path) -> list[DriftEntry]:
    """Every audit under ``reports_dir`` with a drift.json, oldest first."""
    entries: list[DriftEntry] = []
    if not Path(reports_dir).is_dir():
        return entries
    for child in sorted(Path(reports_dir).iterdir()):
        if not child.is_dir() or child.name.startswith(".") or not (child / DRIFT).is_file():
            continue
        if child.is_symlink():  # a link may point anywhere: the index shows only folders that live here
            continue
        folder = RunFolder(child)
        doc = folder.read_json(DRIFT)
        if doc is None:
            continue
        summary = folder.read_audit_summary() or {}
        prov = folder.read_provenance() or {}
        try:
            when = _when(child, prov)
        except OSError:
            continue
        tests = {t.get("key"): t.get("title") for t in doc.get("tests") or [] if isinstance(t, dict)}
        entries.append(DriftEntry(
            run_id=child.name, href=urllib.parse.quote(child.name), source=str(summary.get("folder") or "?"),
            when=when, date=when.astimezone(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            reference=str(doc.get("reference") or "?"), detected=bool(doc.get("drift_detected")),
            psi=as_number(doc.get("drift_psi")), auc=as_number(doc.get("embedding_auc")),
            fired=tuple(str(tests.get(k, k)) for k in doc.get("fired") or [])))
    entries.sort(key=lambda e: (e.when, e.run_id))
    return entries


def drift_figure(items: list[DriftEntry]) -> Any:
    """PSI and embedding AUC of each audit over time, with the usual gate thresholds dashed; red marks: drift."""

    with matplotlib.rc_context(plots.STYLE):
        fig = plots.new_figure(8.6, 2.6)
        ax = fig.add_subplot()
        x = mdates.date2num([e.when for e in items])
        for values, color, name, ref in (([e.psi for e in items], plots.TRAIN_COLOR, "PSI (class mix)", 0.2),
                                         ([e.auc for e in items], plots.VAL_COLOR, "embedding AUC", 0.7)):
            y = np.array([np.nan if v is None else v for v in values], float)
            ax.plot(x, y, color=color, lw=1.6, marker="o", ms=4, label=name)
            ax.axhline(ref, color=color, lw=0.8, ls="--")
        hit = [i for i, e in enumerate(items) if e.detected]
        if hit:
            ax.plot(x[hit], np.zeros(len(hit)), "v", color="#c44e52", ms=7, label="drift detected", clip_on=False)
        locator = mdates.AutoDateLocator(minticks=2, maxticks=7)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        if len(set(x.tolist())) == 1:
            ax.set_xlim(x[0] - 0.5, x[0] + 0.5)
        ax.set_ylim(0, max(1.0, float(np.nanmax([e.psi or 0 for e in items])) * 1.1))
        ax.grid(True, axis="y")
        ax.set_axisbelow(True)
        fig.legend(loc="outside upper right", ncols=3)
    return fig


def drift_sources(entries: list[DriftEntry]) -> list[dict[str, Any]]:
    """Per audited folder: its audits newest first and a chart of PSI and embedding AUC over time."""
    by_source: dict[str, list[DriftEntry]] = {}
    for e in entries:
        by_source.setdefault(e.source, []).append(e)
    out = []
    for source, items in sorted(by_source.items()):
        chart = plots.figure_to_data_uri(drift_figure(items))
        out.append({"source": source, "audits": list(reversed(items)), "chart": chart,
                    "detected": sum(e.detected for e in items)})
    return out
