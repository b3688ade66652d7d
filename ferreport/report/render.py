"""The rendering core every report kind shares: templates -> HTML -> PDF -> files.

* :func:`templates_dir` - the Jinja templates: ``$FERREPORT_TEMPLATES`` when it holds
  ``base.html.j2``, else the package's: ``ferreport/templates`` in an installed wheel, else
  the repository's top-level ``templates/`` (a checkout or an editable install);
* :func:`environment` - Jinja2 with autoescape on, StrictUndefined and the number
  filters of :mod:`ferreport.report.text` (``num``, ``pct``, ``intc``, ``conf``) and the
  glossary globals of :mod:`ferreport.report.words` (``term``, ``label``, ``glossary``);
* :func:`render_pdf` - prints HTML with WeasyPrint, which may only read ``data:`` URLs
  (:func:`data_only_url_fetcher`); the pages embed everything, so nothing is fetched;
* :func:`write_pages` - writes the HTML and/or PDF of one report atomically.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2

from ferreport import config
from ferreport.errors import FerreportError, UsageError
from ferreport.report.context import ReportContext
from ferreport.report.text import fmt_conf, fmt_int, fmt_num, fmt_pct
from ferreport.report.words import Terms
from ferreport.runs.atomic import atomic_path, signals_held, write_error

__all__ = [
    "FORMATS",
    "URLRefused",
    "check_formats",
    "data_only_url_fetcher",
    "environment",
    "render_html",
    "render_pdf",
    "render_template",
    "templates_dir",
    "write_pages",
]

FORMATS = config.FORMATS
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # the ferreport/ folder
#: Where a wheel puts the templates (pyproject.toml's force-include: templates -> ferreport/templates).
INSTALLED_TEMPLATES = _PACKAGE_ROOT / "templates"
#: The repository's top-level templates/, used by a checkout or an editable install.
SOURCE_TEMPLATES = _PACKAGE_ROOT.parent / "templates"
#: The templates shipped with the package: the installed copy when there is one, else the checkout's.
PACKAGE_TEMPLATES = INSTALLED_TEMPLATES if (INSTALLED_TEMPLATES / "base.html.j2").is_file() else SOURCE_TEMPLATES


def templates_dir() -> Path:
    """$FERREPORT_TEMPLATES when it holds base.html.j2, else the installed, else the checkout's templates."""
    candidates = []
    env = os.environ.get("FERREPORT_TEMPLATES")
    if env:
        candidates.append(Path(env))
    candidates += [INSTALLED_TEMPLATES, SOURCE_TEMPLATES]
    for c in candidates:
        if (c / "base.html.j2").is_file():
            return c
    raise FerreportError(
        "report templates not found (looked in "
        + ", ".join(str(c) for c in candidates)
        + "); set FERREPORT_TEMPLATES to the folder holding base.html.j2"
    )


def environment():
    """A Jinja2 environment over :func:`templates_dir` with the report's filters."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html", "htm", "xml", "j2"), default_for_string=True, default=True
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["num"] = fmt_num
    env.filters["pct"] = fmt_pct
    env.filters["intc"] = fmt_int
    env.filters["conf"] = fmt_conf
    terms = Terms()  # one per environment, so one per page: the terms it used, listed at its end
    env.globals.update(term=terms.term, label=terms.label, glossary=terms.entries)
    return env


def render_template(name: str, **context: Any) -> str:
    """Render one template of :func:`templates_dir` with the shared environment."""
    return environment().get_template(name).render(**context)


def render_html(ctx: ReportContext) -> str:
    """A report page (evaluation or audit: ``base.html.j2``) as one self-contained HTML file."""
    return render_template("base.html.j2", ctx=ctx)


# --------------------------------------------------------------------------- PDF


class URLRefused(ValueError):
    """WeasyPrint asked for something other than a ``data:`` URL."""


def _check_data_url(url: str) -> None:
    if not str(url).lower().startswith("data:"):
        raise URLRefused(f"refusing to fetch {str(url)[:80]!r}: the report only embeds data: URLs")


def data_only_url_fetcher():
    """A WeasyPrint URL fetcher that serves ``data:`` URLs and refuses everything else."""
    import weasyprint  # WeasyPrint (and Pango): only when a PDF is asked for

    base = getattr(weasyprint, "URLFetcher", None)
    if base is not None:  # WeasyPrint >= 66: fetcher objects

        class DataOnlyURLFetcher(base):
            def fetch(self, url, headers=None):
                _check_data_url(url)
                return super().fetch(url, headers)

        return DataOnlyURLFetcher(allowed_protocols=("data",), allow_redirects=False)

    default = weasyprint.default_url_fetcher  # older WeasyPrint: plain functions

    def fetcher(url, *args, **kwargs):
        _check_data_url(url)
        return default(url, *args, **kwargs)

    return fetcher


def render_pdf(html: str) -> bytes:
    """Print the report HTML to PDF with WeasyPrint (data: URLs only, no base URL)."""
    import weasyprint  # WeasyPrint: only for a PDF

    logger = logging.getLogger("weasyprint")
    level = logger.level
    logger.setLevel(logging.ERROR)  # unsupported-CSS chatter is not the user's business
    try:
        doc = weasyprint.HTML(string=html, base_url=None, url_fetcher=data_only_url_fetcher())
        return doc.write_pdf()
    finally:
        logger.setLevel(level)


# --------------------------------------------------------------------------- files


def check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    """The requested formats, lower-cased and deduplicated; UsageError for none or an unknown one."""
    formats = tuple(dict.fromkeys(str(f).lower() for f in formats))
    if not formats:
        raise UsageError(f"report format(s) (none): choose from {', '.join(FORMATS)}")
    return config.check_formats(formats)


def write_pages(html: str, formats: Sequence[str], html_path: Path, pdf_path: Path) -> dict[str, Path]:
    """Write ``html`` to ``html_path`` and/or its PDF to ``pdf_path``; {format: path}.

    The two files are committed together: the PDF is printed first (in memory), both go
    to hidden temporaries, and only when both are complete are they renamed into place
    (the PDF, then the HTML). A failed PDF therefore leaves the previous report.html and
    report.pdf untouched, never a new HTML beside an old PDF. SIGINT and SIGTERM are held
    while the files are written and renamed (:func:`ferreport.runs.atomic.signals_held`), so
    Ctrl-C or ``kill`` takes effect after the pair is in place; only SIGKILL between the two
    renames (microseconds) can leave a new PDF beside the old HTML.
    """
    pdf = render_pdf(html) if "pdf" in formats else None
    out: dict[str, Path] = {}
    with signals_held(), contextlib.ExitStack() as stack:
        if "html" in formats:
            tmp_html = stack.enter_context(atomic_path(html_path))  # renamed last (ExitStack unwinds LIFO)
            _write(tmp_html, html_path, html.encode("utf-8"))
            out["html"] = html_path
        if pdf is not None:
            tmp_pdf = stack.enter_context(atomic_path(pdf_path))
            _write(tmp_pdf, pdf_path, pdf)
            out["pdf"] = pdf_path
    return out


def _write(tmp: Path, final: Path, data: bytes) -> None:
    try:
        tmp.write_bytes(data)
    except OSError as exc:
        raise write_error(final, exc) from exc
