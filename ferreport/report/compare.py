"""The comparison page of ``ferreport compare RUN_A RUN_B``: compare.json, compare.html, compare.pdf.

The numbers (pairing by face, paired bootstrap, McNemar's test) come from
:mod:`ferreport.evaluation.comparison`; this module decides what the page shows and writes it.

Faces for the flip grids come from either run's ``faces_pool.npz`` when it holds them,
else from the dataset recorded in the runs' ``config.json`` (or ``--data``) through
the prepared-face cache (a cache hit needs no decoding and no TensorFlow); faces
found nowhere are counted and left out. Output: ``compare.html``, ``compare.pdf`` and
``compare.json`` in the output folder.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ferreport import __version__
from ferreport.config import check_formats as check_known_formats
from ferreport.constants import CLASS_NAMES
from ferreport.datasets.face_cache import prepare_dataset
from ferreport.errors import FerreportError, UsageError
from ferreport.evaluation.comparison import OVERALL, Pairing, compare_document, pair_runs
from ferreport.evaluation.face_pool import ids_and_conf
from ferreport.evaluation.stored_run import RunArtifacts, load_run
from ferreport.report import plots
from ferreport.report.context import Section, numbered_sections
from ferreport.report.render import environment, write_pages
from ferreport.report.text import fmt_p, fmt_signed, short
from ferreport.runs.folder import COMPARE_HTML, COMPARE_PDF, RunFolder

__all__ = [
    "CompareContext",
    "CompareResult",
    "build_compare_context",
    "compare_runs",
    "render_compare_html",
    "summary_lines",
]

MAX_FLIP_FACES = 24


# --------------------------------------------------------------------------- faces


@dataclass(frozen=True)
class FlipThumb:
    uri: str
    source: str
    face_id: str
    short_source: str
    true: str
    pred_a: str
    pred_b: str
    conf_a: float
    conf_b: float


class FaceFinder:
    """Faces by (source, face_id): the runs' face pools first, then the dataset."""

    def __init__(self, runs: Sequence[RunArtifacts], data: Path | None, use_dataset: bool):
        self.faces: dict[str, np.ndarray] = {}
        for art in runs:
            if art.pool_faces is None:
                continue
            df = art.predictions
            src, fid = df["source"].astype(str).to_numpy(), df["face_id"].astype(str).to_numpy()
            for i, row in enumerate(art.pool_rows):
                self.faces.setdefault(f"{src[row]}#{fid[row]}", art.pool_faces[i])
        self.runs, self.data, self.use_dataset = runs, data, use_dataset
        self.dataset_note: str | None = None
        self._dataset_tried = False
        self._ds_keys: pd.Index | None = None
        self._ds_faces: np.ndarray | None = None

    def _dataset_candidates(self) -> list[tuple[Path, Path | None]]:
        if self.data is not None:
            cache = None
            for art in self.runs:
                if art.config and art.config.get("cache_dir"):
                    cache = Path(art.config["cache_dir"])
                    break
            return [(Path(self.data), cache)]
        out = []
        for art in self.runs:
            cfg = art.config or {}
            if cfg.get("data"):
                out.append((Path(cfg["data"]), Path(cfg["cache_dir"]) if cfg.get("cache_dir") else None))
        return out

    def _load_dataset(self) -> None:
        self._dataset_tried = True

        tried = []
        for root, cache in self._dataset_candidates():
            if not root.exists():
                tried.append(f"{root} (not found)")
                continue
            print(f"reading flipped faces from {root} (face cache)", file=sys.stderr, flush=True)
            try:
                ds = prepare_dataset(root, cache_root=cache)
            except FerreportError as exc:
                tried.append(f"{root} ({exc})")
                continue
            index = ds.index
            self._ds_keys = pd.Index((index["source"].astype(str) + "#" + index["face_id"].astype(str)).to_numpy())
            self._ds_faces = ds.faces
            self.dataset_note = f"faces outside the face pools were read from {root}"
            return
        if tried:
            self.dataset_note = "the dataset could not be read: " + "; ".join(tried)
        else:
            self.dataset_note = "no dataset is recorded in the runs' config.json (pass --data DIR)"

    def fill(self, keys: Sequence[str]) -> None:
        missing = [k for k in keys if k not in self.faces]
        if not missing or not self.use_dataset:
            return
        if not self._dataset_tried:
            self._load_dataset()
        if self._ds_keys is None or self._ds_faces is None:
            return
        for key, pos in zip(missing, self._ds_keys.get_indexer(missing), strict=True):
            if pos >= 0:
                self.faces[key] = np.asarray(self._ds_faces[pos], dtype=np.uint8)

    def thumb(self, key: str, meta: dict[str, Any]) -> FlipThumb | None:
        face = self.faces.get(key)
        if face is None:
            return None
        try:
            uri = plots.thumbnail_data_uri(face)
        except ValueError:
            return None
        return FlipThumb(uri=uri, short_source=short(meta["source"]), **meta)


# --------------------------------------------------------------------------- context


CompareSection = Section  # a comparison section has the same shape as a report section


@dataclass(frozen=True)
class CompareContext:
    title: str
    a: Mapping[str, Any]
    b: Mapping[str, Any]
    n: int
    notices: tuple[tuple[str, str], ...]
    sections: tuple[CompareSection, ...]
    confidence: float
    n_resamples: int
    seed: int
    document: Mapping[str, Any]
    generator: str = f"ferreport {__version__}"


def _flip_thumbs(pairing: Pairing, conf: tuple[np.ndarray, np.ndarray], finder: FaceFinder,
                 mask: np.ndarray, order_conf: np.ndarray, limit: int) -> tuple[list[FlipThumb], int, int]:
    """(thumbnails, faces of this kind, faces left out for want of an image)."""
    rows = np.flatnonzero(mask)
    rows = rows[np.lexsort((rows, -order_conf[rows]))][:limit]
    keys = [f"{pairing.sources[i]}#{pairing.face_ids[i]}" for i in rows]
    finder.fill(keys)
    thumbs = []
    for i, key in zip(rows, keys, strict=True):
        th = finder.thumb(key, {
            "source": str(pairing.sources[i]), "face_id": str(pairing.face_ids[i]),
            "true": CLASS_NAMES[int(pairing.t[i])], "pred_a": CLASS_NAMES[int(pairing.pa[i])],
            "pred_b": CLASS_NAMES[int(pairing.pb[i])], "conf_a": float(conf[0][i]),
            "conf_b": float(conf[1][i])})
        if th is not None:
            thumbs.append(th)
    return thumbs, int(mask.sum()), len(rows) - len(thumbs)


def _flip_confidence(a: RunArtifacts, b: RunArtifacts, pairing: Pairing) -> tuple[np.ndarray, np.ndarray]:
    """Each paired face's confidence in A and in B (orders and captions the flip grids)."""
    return ids_and_conf(a.predictions)[3][pairing.rows_a], ids_and_conf(b.predictions)[3][pairing.rows_b]


def _notices(a: RunArtifacts, b: RunArtifacts, pairing: Pairing, doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    notices: list[tuple[str, str]] = []
    fa, fb = doc["a"]["data_fingerprint"], doc["b"]["data_fingerprint"]
    if fa and fb and fa != fb:
        notices.append(("Different data fingerprints",
                        "the runs list the same faces with the same labels, but their datasets' fingerprints differ "
                        "(images may have been re-encoded or replaced)."))
    if pairing.n_unlabelled:
        notices.append(("Faces without a true label", f"{pairing.n_unlabelled:,} of {pairing.n_rows:,} faces have no "
                                                      "true label and are left out of the comparison."))
    for problem in (*a.problems, *b.problems):
        notices.append(("Part of the run folder left out", problem))
    return notices


def _metric_sections(doc: Mapping[str, Any], ma: Any, mb: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """Overview, metric deltas (with the forest plot), per-class deltas, confusion difference, McNemar."""
    overall_rows = []
    for key, label in OVERALL:
        d = doc["deltas"][key]
        overall_rows.append({"key": key, "label": label, **d})
    for key, label in (("macro_precision", "Macro precision"), ("macro_recall", "Macro recall")):
        overall_rows.append({"key": key, "label": label, **doc["deltas"][key]})
    forest = [(label, doc["deltas"][key]["delta"], *(doc["deltas"][key]["ci"] or (None, None)))
              for key, label in OVERALL]
    forest += [(f"F1 {c}", doc["per_class"][c]["f1"]["delta"], *(doc["per_class"][c]["f1"]["ci"] or (None, None)))
               for c in CLASS_NAMES]
    per_class_rows = [{"name": c, **doc["per_class"][c]} for c in CLASS_NAMES]
    test = doc["mcnemar"]
    uri = plots.figure_to_data_uri
    return [
        ("overview", "Overview", {"rows": overall_rows[:3], "mcnemar": test}),
        ("metrics", "Metric deltas", {"rows": overall_rows, "figure": uri(plots.delta_figure(forest))}),
        ("per-class", "Per-class deltas", {"rows": per_class_rows}),
        ("confusion", "Confusion-matrix difference", {
            "difference": uri(plots.confusion_difference_figure(ma.confusion_matrix, mb.confusion_matrix)),
            "a": uri(plots.confusion_matrix_figure(ma.confusion_matrix)),
            "b": uri(plots.confusion_matrix_figure(mb.confusion_matrix))}),
        ("mcnemar", "McNemar test", {"test": test}),
    ]


def _flips_section(a: RunArtifacts, b: RunArtifacts, pairing: Pairing, finder: FaceFinder,
                   max_faces: int) -> dict[str, Any]:
    """Faces right in A and wrong in B (most confident in B first), and the other way round."""
    conf = _flip_confidence(a, b, pairing)
    ca, cb = pairing.pa == pairing.t, pairing.pb == pairing.t
    worse, n_worse, miss_w = _flip_thumbs(pairing, conf, finder, ca & ~cb, conf[1], max_faces)
    better, n_better, miss_b = _flip_thumbs(pairing, conf, finder, ~ca & cb, conf[0], max_faces)
    return {"worse": worse, "n_worse": n_worse, "missing_worse": miss_w,
            "better": better, "n_better": n_better, "missing_better": miss_b,
            "note": finder.dataset_note, "limit": max_faces}


def build_compare_context(run_a: str | os.PathLike[str], run_b: str | os.PathLike[str], *,
                          data: Path | None = None, use_dataset: bool = True, n_resamples: int = 1000,
                          seed: int = 0, confidence: float = 0.95,
                          max_faces: int = MAX_FLIP_FACES) -> CompareContext:
    """Read both runs, compute the comparison and decide what its page shows."""
    a, b = load_run(run_a), load_run(run_b)
    if a.run_dir.resolve() == b.run_dir.resolve():
        raise UsageError(f"{a.run_dir}: RUN_A and RUN_B are the same run; give two different runs")
    pairing = pair_runs(a, b)
    doc, ma, mb = compare_document(a, b, pairing, n_resamples=n_resamples, seed=seed, confidence=confidence)
    notices = _notices(a, b, pairing, doc)
    specs = _metric_sections(doc, ma, mb)
    specs.append(("flips", "Faces that flipped",
                  _flips_section(a, b, pairing, FaceFinder((a, b), data, use_dataset), max_faces)))
    sections = numbered_sections([(sid, title, f"compare/{sid.replace('-', '_')}.html.j2", data)
                                  for sid, title, data in specs])
    return CompareContext(
        title="Model comparison", a=doc["a"], b=doc["b"], n=doc["n"], notices=tuple(notices), sections=sections,
        confidence=confidence, n_resamples=n_resamples, seed=seed, document=doc)


def render_compare_html(ctx: CompareContext) -> str:
    """The comparison as one self-contained HTML page (signed deltas, p-values as filters)."""
    env = environment()
    env.filters["signed"] = fmt_signed
    env.filters["pvalue"] = fmt_p
    return env.get_template("compare.html.j2").render(ctx=ctx)


def default_out(run_a: Path, run_b: Path) -> Path:
    return Path(run_b).resolve().parent / f"compare-{Path(run_a).resolve().name}-vs-{Path(run_b).resolve().name}"


@dataclass(frozen=True)
class CompareResult:
    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    document: Mapping[str, Any] = field(default_factory=dict)


def compare_runs(run_a: str | os.PathLike[str], run_b: str | os.PathLike[str], *, out: Path | None = None,
                 formats: Sequence[str] = ("html", "pdf"), data: Path | None = None, use_dataset: bool = True,
                 n_resamples: int = 1000, seed: int = 0) -> CompareResult:
    """Compare two runs and write compare.json (+ compare.html / compare.pdf) into ``out``."""
    # no format at all is fine here: compare.json alone (--format none)
    formats = check_known_formats(dict.fromkeys(str(f).lower() for f in formats))
    ctx = build_compare_context(run_a, run_b, data=data, use_dataset=use_dataset, n_resamples=n_resamples, seed=seed)
    out_dir = Path(out) if out is not None else default_out(Path(run_a), Path(run_b))
    files: dict[str, Path] = {}
    RunFolder(out_dir).create("compare")
    files["json"] = RunFolder(out_dir).write_compare(ctx.document)
    if formats:
        files.update(write_pages(render_compare_html(ctx), formats, out_dir / COMPARE_HTML, out_dir / COMPARE_PDF))
    return CompareResult(out_dir, files, ctx.document)


def summary_lines(doc: Mapping[str, Any]) -> list[str]:
    """Console summary of a comparison."""
    lines = [f"A {doc['a']['run_id']}  vs  B {doc['b']['run_id']}  on {doc['n']:,} paired faces"]
    for key, label in OVERALL:
        d = doc["deltas"][key]
        ci = d["ci"]
        lines.append(f"{label:<12} A {d['a']:.4f}  B {d['b']:.4f}  B-A {d['delta']:+.4f}"
                     + (f" [{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else ""))
    t = doc["mcnemar"]
    lines.append(f"McNemar      right->wrong {t['a_right_b_wrong']}  wrong->right {t['a_wrong_b_right']}  "
                 f"p = {t['p_value']:.4g}")
    return lines
