"""Reports: what to show of computed numbers, rendered as self-contained HTML and PDF.

Reports render what evaluation stored: computing stays outside, in :mod:`ferreport.evaluation`
(a run folder is read back by :mod:`ferreport.evaluation.stored_run`). Three layers:

* the **rendering core** - :mod:`~ferreport.report.render` (templates, Jinja environment,
  HTML -> PDF, writing files), :mod:`~ferreport.report.text` (number formats and other
  text helpers), :mod:`~ferreport.report.plots` (figures and their shared style);
* **shared building blocks** - :mod:`~ferreport.report.context` (the plain data the templates
  receive), :mod:`~ferreport.report.sections` (section builders both page reports use),
  :mod:`~ferreport.report.words` (labels for recorded fields, the glossary of terms);
* **one module per report kind** - :mod:`~ferreport.report.evaluation` (``report.html`` of
  a run), :mod:`~ferreport.report.audit` (of a folder audit), :mod:`~ferreport.report.compare`
  (``compare.html`` of two runs), :mod:`~ferreport.report.history` (``reports/index.html``).

The Jinja templates live in the repository's top-level ``templates/`` (a wheel carries them;
``$FERREPORT_TEMPLATES`` overrides the folder).
"""

from __future__ import annotations

from ferreport.report.audit import audit_notices, build_audit_context, is_audit_dir, write_audit_report
from ferreport.report.compare import compare_runs
from ferreport.report.context import ReportContext, Section, ThumbnailLimits
from ferreport.report.evaluation import build_report_context, run_notices, write_report
from ferreport.report.history import update_index
from ferreport.report.render import FORMATS, URLRefused, data_only_url_fetcher, render_html, render_pdf, templates_dir
from ferreport.report.words import notice_lines

__all__ = [
    "FORMATS",
    "ReportContext",
    "Section",
    "ThumbnailLimits",
    "URLRefused",
    "audit_notices",
    "build_audit_context",
    "build_report_context",
    "compare_runs",
    "data_only_url_fetcher",
    "is_audit_dir",
    "notice_lines",
    "render_html",
    "render_pdf",
    "report_notices",
    "run_notices",
    "templates_dir",
    "update_index",
    "write_audit_report",
    "write_report",
]


def report_notices(run_dir, *, skip: tuple[str, ...] = ()) -> list[str]:
    """What a run's or an audit's report warns about, as console lines (``warning: ...``, ``note: ...``).

    The same notices the page shows above its first section (prediction collapse, classes
    never predicted, an interrupted training, failed gates, ...), for ``evaluate`` and
    ``predict`` to print; computed from the run folder without building the page. ``skip``:
    notice kinds the caller prints itself (``"gates"``, ``"collapse"``).
    """
    notices = audit_notices(run_dir) if is_audit_dir(run_dir) else run_notices(run_dir)
    return notice_lines([n for n in notices if n.kind not in skip])
