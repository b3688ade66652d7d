"""The evaluation report: a run directory's stored results -> sections -> HTML (and PDF).

1. **read** - :func:`~ferreport.evaluation.stored_run.load_run` reads the run directory: the
   scores evaluation stored (metrics.json, slices.json, label_noise.json) and the faces to show;
   nothing is recomputed, so the page always agrees with metrics.json;
2. **decide** - :func:`build_report_context` chooses what to show and returns one
   :class:`~ferreport.report.context.ReportContext` (sections built by
   :mod:`ferreport.report.sections`);
3. **render** - ``templates/base.html.j2`` and one partial per section
   (``templates/sections/*.html.j2``), printed to PDF by :mod:`ferreport.report.render`.

The page is a single self-contained file: inline CSS, figures and faces as
``data:`` URIs, no JavaScript, no network references. Nothing here imports TensorFlow.

``data_summary.json`` schema (every key optional; unknown classes/splits are shown too)::

    {
      "dataset": "ExpW",                       # display name
      "faces_read": 91793,                     # faces decoded from the dataset
      "balance": "smote",                      # balancing method of the training split
      "splits": {                              # faces per class in each split
        "train": {"angry": 2400, "disgust": 2900, ...},
        "val":   {"angry": 300, ...},
        "test":  {"angry": 300, ...}
      },
      "train_balanced": {"angry": 24000, ...}, # training split after balancing
      "skipped": {"unreadable image": 12, "face box outside image": 3}  # rows by reason
    }

Header facts are looked up in this order (first present wins):
run id ``provenance.run_id``, ``config.run_id``, the folder name; model
``provenance.model_name``/``model``, ``config.model``/``arch``; model SHA-256
``provenance.model_sha256``; dataset ``data_summary.dataset``, ``provenance.dataset``,
``config.data``; fingerprint ``provenance.data_fingerprint``; date
``provenance.finished``/``finished_at``/``created``/``started``, else the
modification time of predictions.csv.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ferreport.errors import DatasetError
from ferreport.evaluation.face_pool import ids_and_conf
from ferreport.evaluation.metrics import MetricsBundle
from ferreport.evaluation.slices import read_slices
from ferreport.evaluation.stored_run import RunArtifacts, load_run
from ferreport.report import explain
from ferreport.report import sections as sec
from ferreport.report.context import Headline, Notice, ReportContext, Section, ThumbnailLimits, numbered_sections
from ferreport.report.render import FORMATS, check_formats, render_html, write_pages
from ferreport.report.slicing import slices_section
from ferreport.report.text import as_text, dig, first_present
from ferreport.runs.folder import METRICS, PREDICTIONS, REPORT_HTML, REPORT_PDF

__all__ = ["RunHeader", "build_report_context", "run_notices", "run_header", "stored_scores", "write_report"]


@dataclass(frozen=True)
class RunHeader:
    """Who and what the report is about, looked up in the run's JSON files (module docstring)."""

    run_id: str
    model_name: str | None
    model_sha256: str | None
    dataset: str | None
    fingerprint: str | None
    created: str | None


def _limits(max_thumbnails: int | ThumbnailLimits) -> ThumbnailLimits:
    if isinstance(max_thumbnails, ThumbnailLimits):
        return max_thumbnails
    n = int(max_thumbnails)
    return ThumbnailLimits(per_class=n, misclassified=3 * n, per_pair=min(6, n), least_confident=min(12, 2 * n))


def run_header(art: RunArtifacts) -> RunHeader:
    prov, cfg, summ = art.provenance or {}, art.config or {}, art.data_summary or {}
    run_id = str(first_present([(prov, "run_id"), (cfg, "run_id")]) or art.run_dir.resolve().name)
    evaluated = prov.get("evaluation") if isinstance(prov.get("evaluation"), dict) else {}
    extra = cfg.get("extra") if isinstance(cfg.get("extra"), dict) else {}
    model_name = as_text(first_present([(prov, "model_name"), (prov, "model"), (cfg, "model"), (extra, "model")]))
    if model_name is None and cfg.get("init_from"):
        model_name = f"fine-tuned from {Path(str(cfg['init_from'])).name}"
    if model_name is None and dig(cfg, "arch") is not None:
        model_name = f"{cfg['arch']} architecture"
    if model_name is None:
        model_name = as_text(evaluated.get("model"))
    model_sha = as_text(first_present([(prov, "model_sha256"), (art.metrics or {}, "model_sha256")]))
    dataset = first_present([(summ, "dataset"), (prov, "dataset"), (cfg, "data")])
    if dataset is None and "data" in cfg:
        dataset = "embedded generated sample"
    fingerprint = as_text(first_present([(prov, "data_fingerprint"), (prov, "dataset_fingerprint"),
                                         (summ, "fingerprint")]))
    created = as_text(first_present([(prov, "finished"), (prov, "finished_at"), (prov, "created"),
                                     (prov, "created_at"), (prov, "started"), (prov, "started_at")]))
    if created is None:
        with contextlib.suppress(OSError):
            mtime = (art.run_dir / PREDICTIONS).stat().st_mtime
            created = _dt.datetime.fromtimestamp(mtime, _dt.timezone.utc).replace(microsecond=0).isoformat()
    return RunHeader(run_id, model_name, model_sha, as_text(dataset), fingerprint, created)


def _headline(bundle: MetricsBundle) -> tuple[Headline, ...]:
    return sec.score_headline(bundle) or (Headline("n", "Faces scored", 0, kind="int"),
                                          Headline("n_rows", "Faces predicted", bundle.n_rows, kind="int"))


def _overview_facts(header: RunHeader, bundle: MetricsBundle, art: RunArtifacts) -> list[tuple[str, str]]:
    return [
        ("Model", header.model_name or "—"),
        *sec.model_input_fact(art),
        *sec.started_from_fact(art),
        ("Model SHA-256", header.model_sha256 or "—"),
        ("Dataset", header.dataset or "—"),
        ("Data fingerprint", header.fingerprint or "—"),
        ("Run", header.run_id),
        ("Date", header.created or "—"),
        ("Faces in predictions.csv", f"{bundle.n_rows:,}"
         + (f" ({bundle.n_unlabelled:,} without a true label)" if bundle.n_unlabelled else "")),
    ]


def _sections(art: RunArtifacts, bundle: MetricsBundle, limits: ThumbnailLimits,
              facts: list[tuple[str, str]]) -> tuple[Section, ...]:
    t, p, _, conf = ids_and_conf(art.predictions)
    faces = sec.Faces(art, t, p, conf, limits)
    slices = read_slices(art.run_dir)  # runs evaluated before slices existed have none: no section
    saliency = explain.saliency_summary(art)
    specs = [
        ("overview", "Overview", sec.overview_section(bundle, facts)),
        *([("gates", "Quality gates", sec.gates_section(art.gates))] if art.gates else []),
        *([("slices", "Where the model errs", slices_section(slices, faces))] if slices else []),
        ("data", "Data", sec.data_section(art.data_summary)),
        ("training", "Training curves", sec.training_section(art)),
        ("confusion", "Confusion matrix", sec.confusion_section(bundle)),
        ("per-class", "Per-class metrics", sec.per_class_section(bundle)),
        ("confused-pairs", "Most-confused pairs", {**sec.pairs_section(bundle, faces, limits), "saliency": saliency}),
        ("calibration", "Calibration", sec.calibration_section(bundle)),
        ("faces", "Example faces", {**sec.gallery_section(bundle, faces, limits), "saliency": saliency}),
        ("label-issues", "Labels to check", {**explain.labels_section(art, faces, limits, sec.scored_labels(art)),
                                             "saliency": saliency}),
        ("provenance", "Provenance", sec.provenance_section(art)),
    ]
    return numbered_sections([(sid, title, f"sections/{sid.replace('-', '_')}.html.j2", data)
                              for sid, title, data in specs])


def build_report_context(artifacts: RunArtifacts, *,
                         max_thumbnails: int | ThumbnailLimits = ThumbnailLimits()) -> ReportContext:
    """Decide what the report shows of the run's stored results (it computes no score itself)."""
    art = artifacts
    limits = _limits(max_thumbnails)
    bundle = stored_scores(art)
    check_rows_match(art, bundle)
    header = run_header(art)
    m = bundle.classification
    interval = next(iter(bundle.ci.values()), None) if bundle.ci else None
    sections = _sections(art, bundle, limits, _overview_facts(header, bundle, art))  # reading notes what it leaves out
    warnings = sec.run_warnings(art, bundle)
    return ReportContext(
        title="Facial-expression classifier evaluation",
        run_id=header.run_id,
        model_name=header.model_name,
        model_sha256=header.model_sha256,
        dataset_name=header.dataset,
        dataset_fingerprint=header.fingerprint,
        created=header.created,
        headline=_headline(bundle),
        n=m.n if m is not None else 0,
        n_rows=bundle.n_rows,
        n_unlabelled=bundle.n_unlabelled,
        n_resamples=interval.n_resamples if interval else 0,
        seed=interval.seed if interval else 0,
        confidence=interval.confidence if interval else 0.95,
        sections=sections,
        warnings=(*warnings, *sec.left_out_notices(art.run_dir, warnings)),
    )


def stored_scores(art: RunArtifacts) -> MetricsBundle:
    """The run's stored scores; a DatasetError naming metrics.json when it is missing or not readable."""
    if art.bundle is None:
        raise DatasetError(f"{art.run_dir / METRICS}: missing or unreadable; a report shows the scores evaluation "
                           f"stored: run `ferreport evaluate {art.run_dir}` again")
    return art.bundle


def check_rows_match(art: RunArtifacts, bundle: MetricsBundle) -> None:
    """predictions.csv and metrics.json describe the same faces, else a DatasetError naming both."""
    if bundle.n_rows != len(art.predictions):
        raise DatasetError(f"{art.run_dir / PREDICTIONS} holds {len(art.predictions):,} rows but {METRICS} was "
                           f"computed on {bundle.n_rows:,}: one of them was replaced or edited; run "
                           f"`ferreport evaluate {art.run_dir}` again")


def run_notices(run_dir: str | os.PathLike[str]) -> list[Notice]:
    """The warnings and notes the run's report shows above its first section, without building the page.

    For the console (``evaluate`` prints what the report warns about).
    """
    art = load_run(run_dir)
    return sec.run_warnings(art, stored_scores(art))


def write_report(run_dir: str | os.PathLike[str], formats: Sequence[str] = FORMATS) -> dict[str, Path]:
    """Render report.html / report.pdf from the run directory's stored results (atomic writes)."""
    formats = check_formats(formats)
    run = Path(run_dir)
    html = render_html(build_report_context(load_run(run)))
    return write_pages(html, formats, run / REPORT_HTML, run / REPORT_PDF)
