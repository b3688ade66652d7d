"""The plain data a report page is rendered from: :class:`ReportContext` and its parts.

Strings, numbers, data-URI figures and thumbnails only; the templates receive one
``ctx`` and decide nothing. Evaluation and audit pages share this shape
(``ReportContext.kind`` tells them apart).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ferreport import __version__
from ferreport.evaluation.label_noise import LABEL_ISSUES_SHOWN

__all__ = ["Headline", "Notice", "ReportContext", "Section", "Thumb", "ThumbnailLimits", "numbered_sections"]


@dataclass(frozen=True)
class ThumbnailLimits:
    per_class: int = 8          # most confident correct faces per class
    misclassified: int = 24     # most confident mistakes overall
    per_pair: int = 6           # most confident mistakes per confused pair
    least_confident: int = 12   # least confident faces overall
    label_issues: int = LABEL_ISSUES_SHOWN  # faces in "Labels to check" (the first rows of label_issues.csv)
    size: int = 112             # pixels (square)
    quality: int = 80           # JPEG quality
    saliency_quality: int = 70  # JPEG quality of a Grad-CAM overlay (same size as the face)
    #: Largest data URI of one thumbnail (face or overlay), bytes: a 112 px JPEG is ~3-5 KB;
    #: one above this (a noisy face at high quality) is re-encoded at lower quality.
    max_uri_bytes: int = 12_000


@dataclass(frozen=True)
class Thumb:
    uri: str
    row: int
    source: str
    face_id: str
    true: str | None
    pred: str
    confidence: float
    correct: bool | None
    #: Short file name for the caption (full ``source`` goes in the tooltip).
    short_source: str
    #: Grad-CAM of the predicted class over the face (JPEG data URI), None without one.
    saliency_uri: str | None = None


@dataclass(frozen=True)
class Headline:
    key: str
    label: str
    value: float | int | None
    low: float | None = None
    high: float | None = None
    kind: str = "num"   # "pct", "num" or "int"


@dataclass(frozen=True)
class Notice:
    """A message shown prominently at the top of the report."""

    title: str
    message: str
    level: str = "warning"   # "warning" or "info"
    kind: str = ""           # what it is about ("collapse", "gates", ...), for callers that print some elsewhere


@dataclass(frozen=True)
class Section:
    id: str
    number: int
    title: str
    template: str
    data: Mapping[str, Any]


def numbered_sections(specs: list[tuple[str, str, str, Mapping[str, Any]]]) -> tuple[Section, ...]:
    """``(id, title, template, data)`` in page order -> sections numbered from 1."""
    return tuple(Section(id=sid, number=i, title=title, template=template, data=data)
                 for i, (sid, title, template, data) in enumerate(specs, start=1))


@dataclass(frozen=True)
class ReportContext:
    """The one object the templates receive."""

    title: str
    run_id: str
    model_name: str | None
    model_sha256: str | None
    dataset_name: str | None
    dataset_fingerprint: str | None
    created: str | None
    headline: tuple[Headline, ...]
    n: int
    n_rows: int
    n_unlabelled: int
    n_resamples: int
    seed: int
    confidence: float
    warnings: tuple[Notice, ...]
    sections: tuple[Section, ...]
    generator: str = f"ferreport {__version__}"
    #: What the page reports on: "evaluation", or "audit" (``ferreport predict``, see report/audit.py).
    kind: str = "evaluation"
