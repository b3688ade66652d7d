"""Comparing two evaluated runs on the same test set: the numbers of ``ferreport compare``.

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
* the faces that flipped right -> wrong and wrong -> right (counts).

:func:`compare_document` returns all of it as the ``compare.json`` document; the page
(``compare.html``) is :mod:`ferreport.report.compare`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from ferreport.constants import CLASS_NAMES
from ferreport.errors import DatasetError
from ferreport.evaluation.metrics import (
    ClassificationMetrics,
    Interval,
    classification_metrics,
    labels_to_ids,
    round_metric,
    stats_from_cms,
)
from ferreport.runs import folder as artifacts

if TYPE_CHECKING:
    from ferreport.evaluation.stored_run import RunArtifacts

__all__ = [
    "OVERALL",
    "PER_CLASS",
    "McNemar",
    "Pairing",
    "compare_document",
    "mcnemar_test",
    "pair_runs",
    "paired_bootstrap",
]

#: Overall metrics compared (keys of metrics.json / the bootstrap).
OVERALL = (("accuracy", "Accuracy"), ("macro_f1", "Macro-F1"), ("weighted_f1", "Weighted-F1"))
PER_CLASS = ("precision", "recall", "f1")


# --------------------------------------------------------------------------- pairing


@dataclass(frozen=True)
class Pairing:
    """The labelled faces both runs predicted, aligned (A's row order)."""

    rows_a: np.ndarray      # row numbers into A's predictions.csv
    rows_b: np.ndarray      # the same faces' row numbers in B's predictions.csv
    t: np.ndarray           # true class ids
    pa: np.ndarray          # A's predicted ids
    pb: np.ndarray          # B's predicted ids
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
            parts.append(f"{len(only_a)} faces only in A (first: {only_a[0]})")
        if only_b:
            parts.append(f"{len(only_b)} only in B (first: {only_b[0]})")
        model_b = b.run_dir / artifacts.MODEL if (b.run_dir / artifacts.MODEL).is_file() else "B_MODEL_FILE"
        raise DatasetError(f"A ({a.run_dir}) and B ({b.run_dir}) were not evaluated on the same test set: "
                           f"{'; '.join(parts)}. A paired comparison needs the same faces: score B's model on A's "
                           f"test faces (ferreport evaluate --model {model_b} --split-of {a.run_dir} --out B-ON-A), "
                           "then compare A with that")
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
    for run, pred in ((a, pa_all), (b, pb_all)):
        if (pred < 0).any():
            row = int(np.flatnonzero(pred < 0)[0]) + 1
            raise DatasetError(f"{run.run_dir}/predictions.csv row {row}: empty pred_label; cannot compare (the "
                               "file is truncated or was edited: evaluate again to rewrite it)")
    keep = np.flatnonzero(ta >= 0)
    if keep.size == 0:
        raise DatasetError(f"{a.run_dir}: no face has a true label; there is nothing to compare "
                           "(a comparison needs labelled faces)")
    return Pairing(
        rows_a=keep.astype(np.int64), rows_b=pos_b[keep].astype(np.int64), t=ta[keep],
        pa=pa_all[keep], pb=pb_all[pos_b[keep]],
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
                "discordant": self.discordant, "p_value": round_metric(self.p_value), "method": self.method}


def mcnemar_test(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemar:
    """McNemar's exact test of paired correctness (two-sided)."""

    ca, cb = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    b = int((ca & ~cb).sum())
    c = int((~ca & cb).sum())
    p = 1.0 if b + c == 0 else float(binomtest(c, b + c, 0.5, alternative="two-sided").pvalue)
    return McNemar(int((ca & cb).sum()), b, c, int((~ca & ~cb).sum()), min(1.0, p))


def paired_bootstrap(t: np.ndarray, pa: np.ndarray, pb: np.ndarray, *, n_resamples: int = 1000, seed: int = 0,
                     confidence: float = 0.95, labels: Sequence[str] = CLASS_NAMES) -> dict[str, Interval]:
    """Percentile intervals of ``metric(B) - metric(A)`` over faces resampled with replacement.

    Each resample draws one set of faces and scores both runs on it. Keys as in
    :func:`ferreport.evaluation.metrics.bootstrap_ci` (``accuracy``, ``macro_f1``, ``weighted_f1``,
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
        sa, sb = stats_from_cms(cms[0]), stats_from_cms(cms[1])
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


# --------------------------------------------------------------------------- documents


def _model_input(prov: Mapping[str, Any]) -> str | None:
    """The recorded contract's summary without its "Model input: " label (None for older runs)."""
    contract = prov.get("model_contract")
    summary = contract.get("summary") if isinstance(contract, Mapping) else None
    return summary.removeprefix("Model input: ") if isinstance(summary, str) else None


def _run_facts(art: RunArtifacts, m: ClassificationMetrics) -> dict[str, Any]:
    prov, cfg, summ = art.provenance or {}, art.config or {}, art.data_summary or {}
    evaluation = prov.get("evaluation") if isinstance(prov.get("evaluation"), Mapping) else {}
    model = (cfg.get("extra") or {}).get("model") if isinstance(cfg.get("extra"), Mapping) else None
    if model:
        model = Path(str(model)).name
    elif cfg.get("init_from"):
        model = f"fine-tuned from {Path(str(cfg['init_from'])).name} (in this run)"
    else:
        model = f"{cfg['arch']} (trained in this run)" if cfg.get("arch") else "—"
    return {
        "run_dir": str(art.run_dir),
        "run_id": str(prov.get("run_id") or art.run_dir.resolve().name),
        "model": model,
        "model_sha256": evaluation.get("model_sha256") or prov.get("model_sha256"),
        "model_input": _model_input(prov),
        "dataset": str(summ.get("dataset") or cfg.get("data") or "—"),
        "data_fingerprint": evaluation.get("data_fingerprint") or prov.get("data_fingerprint"),
        "date": evaluation.get("finished") or prov.get("finished") or prov.get("started"),
        "accuracy": round_metric(m.accuracy), "macro_f1": round_metric(m.macro_f1),
        "weighted_f1": round_metric(m.weighted_f1),
    }


def _delta_entry(a: float, b: float, iv: Interval | None) -> dict[str, Any]:
    ci = [round_metric(iv.low), round_metric(iv.high)] if iv is not None else None
    significant = iv is not None and (iv.low > 0 or iv.high < 0)
    return {"a": round_metric(a), "b": round_metric(b), "delta": round_metric(b - a), "ci": ci,
            "significant": bool(significant)}


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
    for ca, cb in zip(ma.per_class, mb.per_class, strict=True):
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
