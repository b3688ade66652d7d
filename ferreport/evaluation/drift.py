"""Drift: is an audited folder still like the data the model was tested on?

``ferreport predict FOLDER --model RUN --reference RUN_OR_AUDIT`` compares the folder with a
reference: an evaluated run folder (its test split; the default when ``--model`` is one) or an
earlier audit folder. Each side is read from what its folder keeps - predictions.csv,
face_stats.csv (:mod:`ferreport.evaluation.facestats`) and embeddings.npz (:mod:`ferreport.evaluation.embeddings`) -
so the reference's dataset is not needed. Five tests, scipy's where scipy has one:

* **predicted-class mix**: chi-square test of homogeneity (``scipy.stats.chi2_contingency``,
  2 x classes, no continuity correction), and the **population stability index**
  ``sum((a - r) ln(a / r))`` over the class shares, a class absent on one side given the share
  ``psi_epsilon`` (1e-4) first; fires above ``psi_threshold`` (0.2);
* **confidence**: two-sample Kolmogorov-Smirnov (``scipy.stats.ks_2samp``);
* **image statistics** of the slices: KS on brightness, contrast, blur and face size, and a
  chi-square test on the grayscale share; the family's p-values are adjusted by Holm's
  step-down method (family-wise error at ``alpha``; scipy has only the false-discovery-rate
  adjustments, which do not bound the chance of any false alarm);
* **embeddings**: a domain classifier (standardised logistic regression, scikit-learn) told
  reference from incoming penultimate-layer embeddings, its ``cv_folds``-fold cross-validated
  ROC AUC (0.5: indistinguishable) with a one-sided Mann-Whitney p-value of its out-of-fold
  scores (``scipy.stats.mannwhitneyu``). Chosen over MMD with a permutation test because the
  AUC reads the same whatever the embedding's size and scale (a gate ``embedding_auc=0.7``
  means one thing for every model) and costs one cross-validation instead of hundreds of
  permutations; the two sides are subsampled to equal size so 0.5 is the no-drift value.
  Models without embeddings (SavedModel, ONNX) skip it, saying so.

Every p-value test fires at ``alpha`` (0.01: the four p-value tests together then stay near
1 false alarm in 20; measured in ``benchmarks/drift.py``). Tests on the model's outputs need
the reference scored by the same model (same SHA-256); otherwise they are skipped, saying so.
``drift_detected`` is true when any test fires.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import chi2_contingency, ks_2samp, mannwhitneyu
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ferreport.config import DriftConfig
from ferreport.constants import CLASS_NAMES
from ferreport.errors import DatasetError, UsageError
from ferreport.evaluation.embeddings import read_embeddings
from ferreport.evaluation.facestats import read_face_stats
from ferreport.runs.folder import CONFIG, EMBEDDINGS, FACE_STATS, PREDICTIONS, RunFolder
from ferreport.runs.guard import ArtefactError

__all__ = ["DriftResult", "DriftSample", "DriftTest", "drift_tests", "holm", "population_stability_index",
           "read_drift", "sample_from_arrays", "sample_from_folder", "write_drift"]

#: The image statistics compared (face_stats.csv columns), KS each.
IMAGE_STATISTICS: tuple[str, ...] = ("brightness", "contrast", "blur", "box_side")
MIN_FACES = 5


@dataclass(frozen=True)
class DriftSample:
    """One side of a drift comparison: what a folder's files say about its faces."""

    name: str
    pred: np.ndarray                   # predicted class ids (ExpW order)
    confidence: np.ndarray
    stats: pd.DataFrame | None         # face_stats.csv rows (None: not kept)
    embeddings: np.ndarray | None      # (m, D) float32 for a sample of the faces (None: not available)
    model_sha256: str | None = None
    why_no_embeddings: str = ""


@dataclass(frozen=True)
class DriftTest:
    """One test's numbers and plain verdict; ``fired`` is None when it could not run."""

    key: str
    title: str
    statistic_name: str
    statistic: float | None
    p_value: float | None
    threshold: str
    fired: bool | None
    verdict: str
    parts: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class DriftResult:
    reference: str
    incoming: str
    n_reference: int
    n_incoming: int
    tests: tuple[DriftTest, ...]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def drift_detected(self) -> bool:
        return any(t.fired for t in self.tests)

    def value(self, key: str) -> float | None:
        """A test's statistic by key (``class_mix_psi``, ``embedding_auc`` ...), None when it did not run."""
        for t in self.tests:
            if t.key == key:
                return t.statistic
        return None

    def to_dict(self) -> dict[str, Any]:
        def clean(x: Any) -> Any:
            if isinstance(x, float):
                return None if not np.isfinite(x) else round(x, 6)
            if isinstance(x, dict):
                return {k: clean(v) for k, v in x.items()}
            if isinstance(x, (list, tuple)):
                return [clean(v) for v in x]
            return x

        return clean({
            "drift_detected": self.drift_detected,
            "reference": self.reference, "incoming": self.incoming,
            "n_reference": self.n_reference, "n_incoming": self.n_incoming,
            "drift_psi": self.value("class_mix_psi"), "embedding_auc": self.value("embedding_auc"),
            "fired": [t.key for t in self.tests if t.fired],
            "settings": self.settings,
            "tests": [asdict(t) for t in self.tests],
        })


# --------------------------------------------------------------------------- reading a side


def _model_sha(folder: Path) -> str | None:
    run = RunFolder(folder)
    summary = run.read_audit_summary()
    if summary is not None and summary.get("model_sha256"):
        return str(summary["model_sha256"])
    prov = run.read_provenance()
    if prov is not None:
        ev = prov.get("evaluation") if isinstance(prov.get("evaluation"), dict) else {}
        sha = ev.get("model_sha256") or prov.get("model_sha256")
        if sha:
            return str(sha)
    return None


def sample_from_folder(folder: str | Path, *, option: str = "--reference") -> DriftSample:
    """A run or audit folder as one side of a drift comparison (UsageError when it holds no predictions)."""

    folder = Path(folder)
    run = RunFolder(folder)
    if not run.has(PREDICTIONS):
        hint = (f"evaluate it first (`ferreport evaluate {folder}`)" if run.has(CONFIG)
                else "give an evaluated run folder or an audit folder")
        raise UsageError(f"{option} {folder}: no {PREDICTIONS}; {hint}")
    try:  # every row, an audit's extra faces too: they are predictions like the others
        frame = run.read_predictions(usecols=["pred_label", "confidence"])
    except ArtefactError as exc:
        raise DatasetError(f"{option} {exc}") from None
    except DatasetError as exc:
        raise UsageError(f"{option} {run.file(PREDICTIONS)}: cannot read it ({exc.__cause__})") from exc
    pred = pd.Categorical(frame["pred_label"], categories=CLASS_NAMES).codes.astype(np.int64)
    conf = pd.to_numeric(frame["confidence"], errors="coerce").to_numpy(np.float64)
    stats = read_face_stats(run, len(frame))
    emb = read_embeddings(run)
    why = "" if emb is not None else (f"{folder} keeps no {EMBEDDINGS} (a SavedModel or ONNX model, "
                                      "or evaluated by an older ferreport)")
    return DriftSample(str(folder), pred, conf, stats, emb[1] if emb is not None else None, _model_sha(folder), why)


def sample_from_arrays(name: str, proba: np.ndarray, stats: pd.DataFrame | None,
                       embeddings: np.ndarray | None, model_sha256: str | None = None) -> DriftSample:
    """One side from arrays (the benchmark and tests): probabilities ``(N, 7)``, face stats, embeddings."""
    proba = np.asarray(proba, np.float64)
    return DriftSample(name, proba.argmax(axis=1), proba.max(axis=1), stats, embeddings, model_sha256,
                       "" if embeddings is not None else "no embeddings given")


# --------------------------------------------------------------------------- the tests


def population_stability_index(ref_counts: np.ndarray, inc_counts: np.ndarray, epsilon: float = 1e-4) -> float:
    """PSI of two count vectors over the same categories; a share of 0 becomes ``epsilon``."""
    r = np.asarray(ref_counts, np.float64)
    a = np.asarray(inc_counts, np.float64)
    r = np.maximum(r / r.sum(), epsilon)
    a = np.maximum(a / a.sum(), epsilon)
    return float(np.sum((a - r) * np.log(a / r)))


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error), in the given order."""
    m = len(p_values)
    order = np.argsort(p_values, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return [float(x) for x in adjusted]


def _p_verdict(p: float, alpha: float, what: str) -> str:
    if p < alpha:
        return f"Differs: {what} is unlikely to come from the reference's (p {_p(p)} < {alpha:g})."
    return f"Alike: no evidence that {what} differs from the reference's (p {_p(p)} ≥ {alpha:g})."


def _p(p: float) -> str:
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def _skipped(key: str, title: str, statistic_name: str, threshold: str, why: str) -> DriftTest:
    return DriftTest(key, title, statistic_name, None, None, threshold, None, f"Not run: {why}.")


def _class_mix(ref: DriftSample, inc: DriftSample, s: DriftConfig, same_model: str) -> list[DriftTest]:

    k = len(CLASS_NAMES)
    rc = np.bincount(ref.pred[ref.pred >= 0], minlength=k)
    ic = np.bincount(inc.pred[inc.pred >= 0], minlength=k)
    chi_title, psi_title = "Predicted-class mix: chi-square", "Predicted-class mix: PSI"
    psi_threshold = f"PSI > {s.psi_threshold:g}"
    if same_model:
        return [_skipped("class_mix_chi2", chi_title, "chi-square", f"p < {s.alpha:g}", same_model),
                _skipped("class_mix_psi", psi_title, "PSI", psi_threshold, same_model)]
    cols = (rc + ic) > 0
    if cols.sum() < 2:
        stat, p = 0.0, 1.0
    else:
        res = chi2_contingency(np.vstack([rc[cols], ic[cols]]), correction=False)
        stat, p = float(res[0]), float(res[1])
    parts = tuple({"class": c, "reference_share": float(rc[i] / max(rc.sum(), 1)),
                   "incoming_share": float(ic[i] / max(ic.sum(), 1))} for i, c in enumerate(CLASS_NAMES))
    chi = DriftTest("class_mix_chi2", chi_title, "chi-square", stat, p, f"p < {s.alpha:g}", p < s.alpha,
                    _p_verdict(p, s.alpha, "the mix of predicted classes"), parts)
    psi = population_stability_index(rc, ic, s.psi_epsilon)
    fired = psi > s.psi_threshold
    verdict = (f"Shifted: the predicted-class shares moved by PSI {psi:.3f} > {s.psi_threshold:g}." if fired else
               f"Stable: PSI {psi:.3f} ≤ {s.psi_threshold:g} (below 0.1 is usually read as no shift).")
    return [chi, DriftTest("class_mix_psi", psi_title, "PSI", psi, None, psi_threshold, fired, verdict)]


def _confidence(ref: DriftSample, inc: DriftSample, s: DriftConfig, same_model: str) -> DriftTest:

    title = "Confidence distribution: Kolmogorov–Smirnov"
    if same_model:
        return _skipped("confidence_ks", title, "KS D", f"p < {s.alpha:g}", same_model)
    a, b = ref.confidence[np.isfinite(ref.confidence)], inc.confidence[np.isfinite(inc.confidence)]
    res = ks_2samp(a, b)
    p = float(res.pvalue)
    parts = ({"reference_median": float(np.median(a)), "incoming_median": float(np.median(b))},)
    return DriftTest("confidence_ks", title, "KS D", float(res.statistic), p, f"p < {s.alpha:g}", p < s.alpha,
                     _p_verdict(p, s.alpha, "the distribution of confidences"), parts)


def _image_statistics(ref: DriftSample, inc: DriftSample, s: DriftConfig) -> DriftTest:

    title = "Image statistics: KS per statistic, Holm-adjusted"
    threshold = f"Holm-adjusted p < {s.alpha:g}"
    if ref.stats is None or inc.stats is None:
        which = ref.name if ref.stats is None else inc.name
        return _skipped("image_stats", title, "smallest adjusted p", threshold,
                        f"{which} keeps no {FACE_STATS}")
    parts: list[dict[str, Any]] = []
    for col in IMAGE_STATISTICS:
        a = pd.to_numeric(ref.stats[col], errors="coerce").to_numpy(np.float64)
        b = pd.to_numeric(inc.stats[col], errors="coerce").to_numpy(np.float64)
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        if len(a) < MIN_FACES or len(b) < MIN_FACES:
            continue
        res = ks_2samp(a, b)
        parts.append({"statistic": col, "test": "KS D", "value": float(res.statistic), "p_value": float(res.pvalue),
                      "reference_median": float(np.median(a)), "incoming_median": float(np.median(b))})
    ga = pd.to_numeric(ref.stats["grayscale"], errors="coerce").dropna().to_numpy()
    gb = pd.to_numeric(inc.stats["grayscale"], errors="coerce").dropna().to_numpy()
    if len(ga) >= MIN_FACES and len(gb) >= MIN_FACES:
        table = np.array([[np.sum(ga == 0), np.sum(ga == 1)], [np.sum(gb == 0), np.sum(gb == 1)]])
        if (table.sum(axis=0) > 0).all():
            res = chi2_contingency(table, correction=False)
            stat, p = float(res[0]), float(res[1])
        else:
            stat, p = 0.0, 1.0
        parts.append({"statistic": "grayscale share", "test": "chi-square", "value": stat, "p_value": p,
                      "reference_median": float(ga.mean()), "incoming_median": float(gb.mean())})
    if not parts:
        return _skipped("image_stats", title, "smallest adjusted p", threshold, "too few faces with statistics")
    adjusted = holm([d["p_value"] for d in parts])
    for d, adj in zip(parts, adjusted, strict=True):
        d["p_adjusted"] = adj
        d["fired"] = adj < s.alpha
    p = min(adjusted)
    moved = [d["statistic"] for d in parts if d["fired"]]
    verdict = (f"Differs in {', '.join(moved)} (Holm-adjusted p {_p(p)} < {s.alpha:g})." if moved else
               f"Alike: no image statistic differs after Holm's correction (smallest adjusted p {_p(p)}).")
    return DriftTest("image_stats", title, "smallest adjusted p", p, p, threshold, bool(moved), verdict, tuple(parts))


def _embeddings(ref: DriftSample, inc: DriftSample, s: DriftConfig, same_model: str, seed: int) -> DriftTest:
    title = "Embeddings: domain classifier (cross-validated ROC AUC)"
    threshold = f"Mann–Whitney p < {s.alpha:g}"
    if same_model:
        return _skipped("embedding_auc", title, "ROC AUC", threshold, same_model)
    for side in (ref, inc):
        if side.embeddings is None:
            return _skipped("embedding_auc", title, "ROC AUC", threshold,
                            side.why_no_embeddings or f"{side.name} has no embeddings")
    if ref.embeddings.shape[1] != inc.embeddings.shape[1]:
        return _skipped("embedding_auc", title, "ROC AUC", threshold, "the two sides' embeddings differ in size")

    rng = np.random.default_rng(seed)
    n = min(len(ref.embeddings), len(inc.embeddings))
    folds = min(s.cv_folds, n)
    if n < max(MIN_FACES, folds):
        return _skipped("embedding_auc", title, "ROC AUC", threshold, f"too few embeddings ({n} a side)")
    a = ref.embeddings[rng.choice(len(ref.embeddings), n, replace=False)]
    b = inc.embeddings[rng.choice(len(inc.embeddings), n, replace=False)]
    x = np.vstack([a, b]).astype(np.float64)
    y = np.r_[np.zeros(n, int), np.ones(n, int)]
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    scores = cross_val_predict(clf, x, y, cv=cv, method="decision_function")
    res = mannwhitneyu(scores[y == 1], scores[y == 0], alternative="greater")
    auc = float(res.statistic) / (n * n)
    p = float(res.pvalue)
    fired = p < s.alpha
    verdict = (f"Differs: a classifier tells the folder's embeddings from the reference's (AUC {auc:.3f}, "
               f"p {_p(p)} < {s.alpha:g})." if fired else
               f"Alike: a classifier cannot tell them apart better than chance allows (AUC {auc:.3f}, p {_p(p)})."
               + (" An AUC well below 0.5 means the two sides share faces (the same images audited twice): "
                  "each held-out face's twin was learnt with the other label." if auc < 0.4 else ""))
    parts = ({"faces_per_side": n, "dimensions": int(x.shape[1]), "folds": folds},)
    return DriftTest("embedding_auc", title, "ROC AUC", auc, p, threshold, fired, verdict, parts)


def drift_tests(reference: DriftSample, incoming: DriftSample, settings: DriftConfig = DriftConfig(), *,
                seed: int = 0) -> DriftResult:
    """Every drift test of ``incoming`` against ``reference``."""
    same = ""
    if reference.model_sha256 and incoming.model_sha256 and reference.model_sha256 != incoming.model_sha256:
        same = (f"the reference was scored by another model (SHA-256 {reference.model_sha256[:12]}…, this audit's "
                f"{incoming.model_sha256[:12]}…)")
    tests = [*_class_mix(reference, incoming, settings, same), _confidence(reference, incoming, settings, same),
             _image_statistics(reference, incoming, settings),
             _embeddings(reference, incoming, settings, same, seed)]
    record = {"alpha": settings.alpha, "psi_threshold": settings.psi_threshold, "psi_epsilon": settings.psi_epsilon,
              "cv_folds": settings.cv_folds, "seed": int(seed), "multiple_testing": "Holm (image statistics)",
              "embedding_test": "domain classifier: standardised logistic regression (C=0.1), cross-validated "
                                "ROC AUC, one-sided Mann-Whitney p of the out-of-fold scores"}
    return DriftResult(reference.name, incoming.name, int(len(reference.pred)), int(len(incoming.pred)),
                       tuple(tests), record)


def write_drift(result: DriftResult, run_dir: RunFolder | str | os.PathLike[str]) -> Path:
    """The run's drift.json."""
    return RunFolder(run_dir).write_drift(result.to_dict())


def read_drift(run_dir: RunFolder | str | os.PathLike[str]) -> dict[str, Any] | None:
    """drift.json as written, or None when absent or unreadable."""
    return RunFolder(run_dir).read_drift()
