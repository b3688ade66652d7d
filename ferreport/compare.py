"""Comparing two evaluated runs on the same test set: ``ferreport compare RUN_A RUN_B``.

Paired by face: both runs' ``predictions.csv`` must hold the same faces (same
``(source, face_id)`` rows) with the same true labels, or the comparison is refused
(:class:`~ferreport.errors.DatasetError`, exit 3) - deltas between different test sets
would mix model and data differences, and McNemar's test needs paired predictions.

What is computed (all from the two predictions.csv files, B minus A):

* metric deltas (accuracy, macro/weighted F1, macro precision/recall) and per-class
  precision/recall/F1 deltas, each with a **paired** percentile bootstrap interval:
  the same resampled faces score both runs, so the interval reflects the difference
  itself rather than two independent spreads;
* the confusion-matrix difference ``cm_B - cm_A``;
* McNemar's exact test: a two-sided binomial test on the discordant faces (A right and
  B wrong vs A wrong and B right), ``scipy.stats.binomtest(b, b + c, 0.5)``;
* the faces that flipped right -> wrong and wrong -> right.

Faces for the flip grids come from either run's ``faces_pool.npz`` when it holds them,
else from the dataset recorded in the runs' ``config.json`` (or ``--data``) through
the prepared-face cache (a cache hit needs no decoding and no TensorFlow); faces
found nowhere are counted and left out. Output: ``compare.html``, ``compare.pdf`` and
``compare.json`` in the output folder.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import __version__
from .atomic import write_bytes, write_json, write_text
from .constants import CLASS_NAMES
from .errors import DatasetError, FerreportError, UsageError
from .metrics import ClassificationMetrics, Interval, _stats_from_cms, classification_metrics, labels_to_ids
from .report import RunArtifacts, Section, _fmt_num, _short, load_run

__all__ = [
    "COMPARE_HTML",
    "COMPARE_JSON",
    "COMPARE_PDF",
    "McNemar",
    "Pairing",
    "compare_runs",
    "mcnemar_test",
    "pair_runs",
    "paired_bootstrap",
]

COMPARE_HTML = "compare.html"
COMPARE_PDF = "compare.pdf"
COMPARE_JSON = "compare.json"
#: Overall metrics compared (keys of metrics.json / the bootstrap).
OVERALL = (("accuracy", "Accuracy"), ("macro_f1", "Macro-F1"), ("weighted_f1", "Weighted-F1"))
PER_CLASS = ("precision", "recall", "f1")
MAX_FLIP_FACES = 24


def _r(x: float | None) -> float | None:
    if x is None:
        return None
    v = round(float(x), 6)
    return 0.0 if v == 0 else v


# --------------------------------------------------------------------------- pairing


@dataclass(frozen=True)
class Pairing:
    """The labelled faces both runs predicted, aligned (A's row order)."""

    rows_a: np.ndarray      # row numbers into A's predictions.csv
    rows_b: np.ndarray      # the same faces' row numbers in B's predictions.csv
    t: np.ndarray           # true class ids
    pa: np.ndarray          # A's predicted ids
    pb: np.ndarray          # B's predicted ids
    conf_a: np.ndarray
    conf_b: np.ndarray
    sources: np.ndarray
    face_ids: np.ndarray
    n_rows: int             # faces in each predictions.csv
    n_unlabelled: int       # of which without a true label (left out of every score)


def _keys(df: pd.DataFrame, where: Path) -> np.ndarray:
    for col in ("source", "face_id"):
        if col not in df.columns:
            raise DatasetError(f"{where}: predictions.csv has no {col} column; cannot pair faces across runs")
    keys = (df["source"].astype(str) + "#" + df["face_id"].astype(str)).to_numpy()
    dup = pd.Index(keys).duplicated()
    if dup.any():
        raise DatasetError(f"{where}: face {keys[dup][0]!r} appears twice in predictions.csv; cannot pair faces")
    return keys


def _confidence(df: pd.DataFrame, p: np.ndarray) -> np.ndarray:
    if "confidence" in df.columns:
        conf = pd.to_numeric(df["confidence"], errors="coerce").to_numpy(dtype=np.float64)
        if np.isfinite(conf).all():
            return conf
    cols = [f"p_{c}" for c in CLASS_NAMES]
    if all(c in df.columns for c in cols):
        return df[cols].to_numpy(dtype=np.float64).max(axis=1)
    return np.ones(len(df))


def pair_runs(a: RunArtifacts, b: RunArtifacts) -> Pairing:
    """Align B's predictions to A's face by face; DatasetError when the test sets differ."""
    da, db = a.predictions, b.predictions
    ka, kb = _keys(da, a.run_dir), _keys(db, b.run_dir)
    sa, sb = set(ka.tolist()), set(kb.tolist())
    if sa != sb:
        only_a = [k for k in ka if k not in sb]
        only_b = [k for k in kb if k not in sa]
        parts = []
        if only_a:
            parts.append(f"{len(only_a)} faces only in {a.run_dir.name} (first: {only_a[0]})")
        if only_b:
            parts.append(f"{len(only_b)} only in {b.run_dir.name} (first: {only_b[0]})")
        raise DatasetError(f"{a.run_dir} and {b.run_dir} were not evaluated on the same test set: {'; '.join(parts)}. "
                           "A paired comparison needs the same faces: evaluate both models on one dataset "
                           "(ferreport evaluate --model M.keras --data DIR)")
    pos_b = pd.Index(kb).get_indexer(ka)
    ta = labels_to_ids(da["true_label"].tolist(), column="true_label")
    tb = labels_to_ids(db["true_label"].tolist(), column="true_label")[pos_b]
    differ = np.flatnonzero(ta != tb)
    if differ.size:
        i = int(differ[0])
        show = lambda v: CLASS_NAMES[v] if v >= 0 else "(none)"  # noqa: E731
        raise DatasetError(f"{a.run_dir} and {b.run_dir}: {differ.size} faces carry different true labels "
                           f"(first: {ka[i]} is {show(int(ta[i]))} in A, {show(int(tb[i]))} in B); "
                           "they were not evaluated on the same test set")
    pa_all = labels_to_ids(da["pred_label"].tolist(), column="pred_label")
    pb_all = labels_to_ids(db["pred_label"].tolist(), column="pred_label")
    if (pa_all < 0).any() or (pb_all < 0).any():
        raise DatasetError("predictions.csv: empty pred_label in some rows; cannot compare")
    keep = np.flatnonzero(ta >= 0)
    if keep.size == 0:
        raise DatasetError(f"{a.run_dir}: no face has a true label; there is nothing to compare "
                           "(a comparison needs labelled faces)")
    conf_a, conf_b = _confidence(da, pa_all), _confidence(db, pb_all)
    return Pairing(
        rows_a=keep.astype(np.int64), rows_b=pos_b[keep].astype(np.int64), t=ta[keep],
        pa=pa_all[keep], pb=pb_all[pos_b[keep]], conf_a=conf_a[keep], conf_b=conf_b[pos_b[keep]],
        sources=da["source"].astype(str).to_numpy()[keep], face_ids=da["face_id"].astype(str).to_numpy()[keep],
        n_rows=int(len(da)), n_unlabelled=int(len(da) - keep.size),
    )


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class McNemar:
    both_right: int
    a_right_b_wrong: int    # right -> wrong (B regressed)
    a_wrong_b_right: int    # wrong -> right (B improved)
    both_wrong: int
    p_value: float
    method: str = "exact two-sided binomial test on the discordant pairs (scipy.stats.binomtest)"

    @property
    def discordant(self) -> int:
        return self.a_right_b_wrong + self.a_wrong_b_right

    def to_dict(self) -> dict[str, Any]:
        return {"both_right": self.both_right, "a_right_b_wrong": self.a_right_b_wrong,
                "a_wrong_b_right": self.a_wrong_b_right, "both_wrong": self.both_wrong,
                "discordant": self.discordant, "p_value": _r(self.p_value), "method": self.method}


def mcnemar_test(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemar:
    """McNemar's exact test of paired correctness (two-sided)."""
    from scipy.stats import binomtest

    ca, cb = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    b = int((ca & ~cb).sum())
    c = int((~ca & cb).sum())
    p = 1.0 if b + c == 0 else float(binomtest(c, b + c, 0.5, alternative="two-sided").pvalue)
    return McNemar(int((ca & cb).sum()), b, c, int((~ca & ~cb).sum()), min(1.0, p))


def paired_bootstrap(t: np.ndarray, pa: np.ndarray, pb: np.ndarray, *, n_resamples: int = 1000, seed: int = 0,
                     confidence: float = 0.95, labels: Sequence[str] = CLASS_NAMES) -> dict[str, Interval]:
    """Percentile intervals of ``metric(B) - metric(A)`` over faces resampled with replacement.

    Each resample draws one set of faces and scores both runs on it. Keys as in
    :func:`ferreport.metrics.bootstrap_ci` (``accuracy``, ``macro_f1``, ``weighted_f1``,
    ``f1/<class>``...). Deterministic for a seed.
    """
    k = len(labels)
    t, pa, pb = (np.asarray(x, dtype=np.int64) for x in (t, pa, pb))
    n = t.size
    if n == 0:
        raise ValueError("no paired faces to resample")
    cell_a, cell_b = t * k + pa, t * k + pb
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_resamples, 4_000_000 // max(n, 1)))
    deltas: dict[str, list[np.ndarray]] = {}
    done = 0
    while done < n_resamples:
        c = min(chunk, n_resamples - done)
        idx = rng.integers(0, n, size=(c, n))
        offset = (np.arange(c) * k * k)[:, None]
        cms = []
        for cell in (cell_a, cell_b):
            flat = np.bincount((cell[idx] + offset).ravel(), minlength=c * k * k)
            cms.append(flat.reshape(c, k, k))
        sa, sb = _stats_from_cms(cms[0]), _stats_from_cms(cms[1])
        for name in sa:
            deltas.setdefault(name, []).append(sb[name] - sa[name])
        done += c
    alpha = (1.0 - confidence) / 2
    q = [100 * alpha, 100 * (1 - alpha)]
    out: dict[str, Interval] = {}
    for name, parts in deltas.items():
        values = np.concatenate(parts, axis=0)
        lohi = np.percentile(values, q, axis=0)
        if values.ndim == 1:
            out[name] = Interval(float(lohi[0]), float(lohi[1]), confidence, n_resamples, seed)
        else:
            for j, cls in enumerate(labels):
                out[f"{name}/{cls}"] = Interval(float(lohi[0, j]), float(lohi[1, j]), confidence, n_resamples, seed)
    return out


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


class _FaceFinder:
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
        from .preprocessing import prepare_dataset

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
        for key, pos in zip(missing, self._ds_keys.get_indexer(missing)):
            if pos >= 0:
                self.faces[key] = np.asarray(self._ds_faces[pos], dtype=np.uint8)

    def thumb(self, key: str, meta: dict[str, Any]) -> FlipThumb | None:
        face = self.faces.get(key)
        if face is None:
            return None
        from .plots import thumbnail_data_uri

        try:
            uri = thumbnail_data_uri(face)
        except ValueError:
            return None
        return FlipThumb(uri=uri, short_source=_short(meta["source"]), **meta)


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


def _run_facts(art: RunArtifacts, m: ClassificationMetrics) -> dict[str, Any]:
    prov, cfg, summ = art.provenance or {}, art.config or {}, art.data_summary or {}
    evaluation = prov.get("evaluation") if isinstance(prov.get("evaluation"), Mapping) else {}
    model = (cfg.get("extra") or {}).get("model") if isinstance(cfg.get("extra"), Mapping) else None
    model = Path(str(model)).name if model else (f"{cfg['arch']} (trained in this run)" if cfg.get("arch") else "—")
    return {
        "run_dir": str(art.run_dir),
        "run_id": str(prov.get("run_id") or art.run_dir.resolve().name),
        "model": model,
        "model_sha256": evaluation.get("model_sha256") or prov.get("model_sha256"),
        "dataset": str(summ.get("dataset") or cfg.get("data") or "—"),
        "data_fingerprint": evaluation.get("data_fingerprint") or prov.get("data_fingerprint"),
        "date": evaluation.get("finished") or prov.get("finished") or prov.get("started"),
        "accuracy": _r(m.accuracy), "macro_f1": _r(m.macro_f1), "weighted_f1": _r(m.weighted_f1),
    }


def _delta_entry(a: float, b: float, iv: Interval | None) -> dict[str, Any]:
    ci = [_r(iv.low), _r(iv.high)] if iv is not None else None
    significant = iv is not None and (iv.low > 0 or iv.high < 0)
    return {"a": _r(a), "b": _r(b), "delta": _r(b - a), "ci": ci, "significant": bool(significant)}


def compare_document(a: RunArtifacts, b: RunArtifacts, pairing: Pairing, *, n_resamples: int = 1000, seed: int = 0,
                     confidence: float = 0.95) -> tuple[dict[str, Any], ClassificationMetrics, ClassificationMetrics]:
    """The numbers of the comparison (written as compare.json), plus both runs' metrics."""
    ma = classification_metrics(pairing.t, pairing.pa)
    mb = classification_metrics(pairing.t, pairing.pb)
    ivs = paired_bootstrap(pairing.t, pairing.pa, pairing.pb, n_resamples=n_resamples, seed=seed,
                           confidence=confidence)
    test = mcnemar_test(pairing.pa == pairing.t, pairing.pb == pairing.t)
    deltas = {key: _delta_entry(getattr(ma, key), getattr(mb, key), ivs.get(key)) for key, _ in OVERALL}
    deltas["macro_precision"] = _delta_entry(ma.macro_precision, mb.macro_precision, None)
    deltas["macro_recall"] = _delta_entry(ma.macro_recall, mb.macro_recall, None)
    per_class = {}
    for ca, cb in zip(ma.per_class, mb.per_class):
        per_class[ca.name] = {metric: _delta_entry(getattr(ca, metric), getattr(cb, metric),
                                                   ivs.get(f"{metric}/{ca.name}")) for metric in PER_CLASS}
        per_class[ca.name]["support"] = ca.support
    doc = {
        "a": _run_facts(a, ma),
        "b": _run_facts(b, mb),
        "n": int(pairing.t.size),
        "n_rows": pairing.n_rows,
        "n_unlabelled": pairing.n_unlabelled,
        "same_test_set": True,
        "deltas": deltas,
        "per_class": per_class,
        "confusion_a": [list(r) for r in ma.confusion_matrix],
        "confusion_b": [list(r) for r in mb.confusion_matrix],
        "confusion_difference": (np.asarray(mb.confusion_matrix) - np.asarray(ma.confusion_matrix)).tolist(),
        "mcnemar": test.to_dict(),
        "flips": {"right_to_wrong": test.a_right_b_wrong, "wrong_to_right": test.a_wrong_b_right},
        "bootstrap": {"method": "paired percentile bootstrap (the same resampled faces score both runs)",
                      "n_resamples": int(n_resamples), "seed": int(seed), "confidence": confidence},
        "labels": list(CLASS_NAMES),
    }
    return doc, ma, mb


def _flip_thumbs(pairing: Pairing, finder: _FaceFinder, mask: np.ndarray, order_conf: np.ndarray,
                 limit: int) -> tuple[list[FlipThumb], int, int]:
    """(thumbnails, faces of this kind, faces left out for want of an image)."""
    rows = np.flatnonzero(mask)
    rows = rows[np.lexsort((rows, -order_conf[rows]))][:limit]
    keys = [f"{pairing.sources[i]}#{pairing.face_ids[i]}" for i in rows]
    finder.fill(keys)
    thumbs = []
    for i, key in zip(rows, keys):
        th = finder.thumb(key, {
            "source": str(pairing.sources[i]), "face_id": str(pairing.face_ids[i]),
            "true": CLASS_NAMES[int(pairing.t[i])], "pred_a": CLASS_NAMES[int(pairing.pa[i])],
            "pred_b": CLASS_NAMES[int(pairing.pb[i])], "conf_a": float(pairing.conf_a[i]),
            "conf_b": float(pairing.conf_b[i])})
        if th is not None:
            thumbs.append(th)
    return thumbs, int(mask.sum()), len(rows) - len(thumbs)


def build_compare_context(run_a: str | os.PathLike[str], run_b: str | os.PathLike[str], *,
                          data: Path | None = None, use_dataset: bool = True, n_resamples: int = 1000,
                          seed: int = 0, confidence: float = 0.95,
                          max_faces: int = MAX_FLIP_FACES) -> CompareContext:
    from .plots import confusion_difference_figure, confusion_matrix_figure, delta_figure, figure_to_data_uri

    a, b = load_run(run_a), load_run(run_b)
    if a.run_dir.resolve() == b.run_dir.resolve():
        raise UsageError(f"{a.run_dir}: RUN_A and RUN_B are the same run; give two different runs")
    pairing = pair_runs(a, b)
    doc, ma, mb = compare_document(a, b, pairing, n_resamples=n_resamples, seed=seed, confidence=confidence)

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
        notices.append(("Incomplete run directory", problem))

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

    finder = _FaceFinder((a, b), data, use_dataset)
    ca, cb = pairing.pa == pairing.t, pairing.pb == pairing.t
    worse, n_worse, miss_w = _flip_thumbs(pairing, finder, ca & ~cb, pairing.conf_b, max_faces)
    better, n_better, miss_b = _flip_thumbs(pairing, finder, ~ca & cb, pairing.conf_a, max_faces)

    test = doc["mcnemar"]
    specs = [
        ("overview", "Overview", {"rows": overall_rows[:3], "mcnemar": test}),
        ("metrics", "Metric deltas", {"rows": overall_rows,
                                      "figure": figure_to_data_uri(delta_figure(forest))}),
        ("per-class", "Per-class deltas", {"rows": per_class_rows}),
        ("confusion", "Confusion-matrix difference", {
            "difference": figure_to_data_uri(confusion_difference_figure(ma.confusion_matrix, mb.confusion_matrix)),
            "a": figure_to_data_uri(confusion_matrix_figure(ma.confusion_matrix)),
            "b": figure_to_data_uri(confusion_matrix_figure(mb.confusion_matrix))}),
        ("mcnemar", "McNemar test", {"test": test}),
        ("flips", "Faces that flipped", {
            "worse": worse, "n_worse": n_worse, "missing_worse": miss_w,
            "better": better, "n_better": n_better, "missing_better": miss_b,
            "note": finder.dataset_note, "limit": max_faces}),
    ]
    sections = tuple(CompareSection(sid, i, title, f"compare/{sid.replace('-', '_')}.html.j2", data)
                     for i, (sid, title, data) in enumerate(specs, start=1))
    return CompareContext(
        title="Model comparison", a=doc["a"], b=doc["b"], n=doc["n"], notices=tuple(notices), sections=sections,
        confidence=confidence, n_resamples=n_resamples, seed=seed, document=doc)


def render_compare_html(ctx: CompareContext) -> str:
    from .report import _environment

    env = _environment()
    env.filters["signed"] = _fmt_signed
    env.filters["pvalue"] = _fmt_p
    return env.get_template("compare.html.j2").render(ctx=ctx)


def _fmt_signed(x: Any, digits: int = 3) -> str:
    if x is None:
        return "—"
    v = float(x)
    return f"{v:+.{digits}f}" if round(v, digits) != 0 else f"{0:.{digits}f}"


def _fmt_p(x: Any) -> str:
    if x is None:
        return "—"
    v = float(x)
    return "< 0.0001" if v < 1e-4 else f"{v:.4f}" if v < 0.01 else _fmt_num(v, 3)


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
    from .report import FORMATS, render_pdf

    formats = tuple(dict.fromkeys(str(f).lower() for f in formats))
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise UsageError(f"--format {','.join(bad)}: choose from {','.join(FORMATS)}")
    ctx = build_compare_context(run_a, run_b, data=data, use_dataset=use_dataset, n_resamples=n_resamples, seed=seed)
    out_dir = Path(out) if out is not None else default_out(Path(run_a), Path(run_b))
    files: dict[str, Path] = {}
    write_json(out_dir / COMPARE_JSON, ctx.document)
    files["json"] = out_dir / COMPARE_JSON
    if formats:
        html = render_compare_html(ctx)
        if "html" in formats:
            write_text(out_dir / COMPARE_HTML, html)
            files["html"] = out_dir / COMPARE_HTML
        if "pdf" in formats:
            write_bytes(out_dir / COMPARE_PDF, render_pdf(html))
            files["pdf"] = out_dir / COMPARE_PDF
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


def read_compare_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))
