"""Faces whose given label is probably wrong: confident learning with cleanlab.

ExpW's labels (and most public expression sets') are noisy, so many "mistakes" of a
model are label errors. With each face's given label and out-of-sample predicted
probabilities, :func:`find_label_issues` asks cleanlab
(``cleanlab.filter.find_label_issues``, Northcutt et al., 2021) which faces to check:
those whose given class the model finds much less likely than another, beyond the
per-class thresholds cleanlab estimates (``filter_by="prune_by_noise_rate"``, the
library's default). They are ranked by **self-confidence**, the probability of the given
label (lowest first): on faces-real with injected noise it found more of the flipped
faces at the top of the list than the normalized margin did (benchmarks/label_issues.py,
figures in benchmarks/README.md). The score shown is that probability: 0.02 means
the model gives the label 2 %.

The per-class noise table is ``cleanlab.count.estimate_joint``: the estimated joint
distribution of given and true labels, read row by row (of the faces given class k,
which share is estimated to truly be another class); the class named beside it is the
label most often suggested for that class's flagged faces. (The joint's own off-diagonal
argmax was shown first: on faces-real it named "fear", a class of 7 test faces, for five
of seven classes - its low per-class threshold lets many faces clear it - which no user
could act on.)

Only probabilities the model did not learn the faces from make sense here: a test
split's, an audit's, or K-fold cross-validation's (``ferreport label-issues``).
NumPy and cleanlab only: no TensorFlow.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from ferreport.config import LABEL_RANKINGS
from ferreport.constants import CLASS_NAMES
from ferreport.runs.folder import LABEL_ISSUES, PROBA_COLUMNS, RunFolder

__all__ = ["DEFAULT_RANKING", "LABEL_ISSUES_SHOWN", "LABEL_ISSUES_COLUMNS", "RANKINGS", "ClassNoise", "LabelIssue",
           "LabelIssues", "find_label_issues", "issues_of_predictions", "label_issues_frame",
           "write_label_issue_rows", "write_label_issues"]

#: Faces the "Labels to check" grid shows (the first rows of label_issues.csv); the face pool keeps them.
LABEL_ISSUES_SHOWN = 24

#: Columns of label_issues.csv, most suspect row first.
LABEL_ISSUES_COLUMNS: tuple[str, ...] = ("source", "face_id", "given", "suggested", "score")
#: cleanlab's rankings offered (``--ranking``, declared with the settings); the first is the default
#: (module docstring says why).
RANKINGS: tuple[str, ...] = LABEL_RANKINGS
DEFAULT_RANKING = RANKINGS[0]
#: Fewest labelled faces cleanlab is asked about (its per-class thresholds need a few per class).
MIN_FACES = 10


@dataclass(frozen=True)
class LabelIssue:
    """One face to check: its row in the input, given and suggested ExpW class ids, and the score."""

    row: int
    given: int
    suggested: int
    score: float          # the model's probability of the given label (low: probably wrong)


@dataclass(frozen=True)
class ClassNoise:
    """Estimated label noise of the faces given one class."""

    name: str
    n_given: int
    noise_rate: float            # share estimated to truly belong to another class
    n_wrong: float               # n_given * noise_rate
    likely_true: str | None      # the label most often suggested for its flagged faces (None: none flagged)


@dataclass(frozen=True)
class LabelIssues:
    """What cleanlab found: the ranked issues, the per-class noise, or why nothing was computed."""

    issues: tuple[LabelIssue, ...]
    n_checked: int
    classes: tuple[str, ...]
    ranking: str
    noise: tuple[ClassNoise, ...]
    reason: str | None = None    # set when not computed

    @property
    def available(self) -> bool:
        return self.reason is None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in label_noise.json (issues' rows are predictions.csv rows)."""
        return {"reason": self.reason, "n_checked": int(self.n_checked), "classes": list(self.classes),
                "ranking": self.ranking, "issues": [asdict(i) for i in self.issues],
                "noise": [asdict(c) for c in self.noise]}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> LabelIssues:
        """Back from :meth:`to_dict`; raises KeyError, TypeError or ValueError on a malformed document."""
        return cls(issues=tuple(LabelIssue(int(i["row"]), int(i["given"]), int(i["suggested"]), float(i["score"]))
                                for i in doc["issues"]),
                   n_checked=int(doc["n_checked"]), classes=tuple(str(c) for c in doc["classes"]),
                   ranking=str(doc["ranking"]),
                   noise=tuple(ClassNoise(str(c["name"]), int(c["n_given"]), float(c["noise_rate"]),
                                          float(c["n_wrong"]),
                                          None if c["likely_true"] is None else str(c["likely_true"]))
                               for c in doc["noise"]),
                   reason=None if doc["reason"] is None else str(doc["reason"]))


def _unavailable(reason: str, n: int, ranking: str) -> LabelIssues:
    return LabelIssues((), n, (), ranking, (), reason)


def find_label_issues(labels: np.ndarray, proba: np.ndarray, *, scored: Sequence[str] = CLASS_NAMES,
                      ranking: str = DEFAULT_RANKING) -> LabelIssues:
    """Rank the faces whose given label is probably wrong (module docstring).

    ``labels``: ExpW class ids, -1 unknown (left out); ``proba``: ``(n, 7)`` probabilities
    in ExpW order, out of sample; ``scored``: the classes the model can predict (faces of
    other classes are left out, and the columns restricted to these and renormalised).
    """
    if ranking not in RANKINGS:
        raise ValueError(f"ranking {ranking!r}: choose one of {', '.join(RANKINGS)}")
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    proba = np.asarray(proba, dtype=np.float64)
    ids = [CLASS_NAMES.index(c) for c in CLASS_NAMES if c in scored]
    keep = np.flatnonzero(np.isin(labels, ids))
    present = [i for i in ids if np.any(labels[keep] == i)]
    if len(present) < 2 or keep.size < MIN_FACES:
        return _unavailable(f"needs at least {MIN_FACES} labelled faces of at least two classes the model predicts "
                            f"(has {keep.size} of {len(present)})", int(keep.size), ranking)
    keep = keep[np.isin(labels[keep], present)]
    p = proba[np.ix_(keep, present)]
    mass = p.sum(axis=1, keepdims=True)
    p = np.divide(p, mass, out=np.full_like(p, 1.0 / len(present)), where=mass > 0)
    y = np.searchsorted(present, labels[keep])
    from cleanlab.count import (  # cleanlab: slow to import, needed only to find label issues
        compute_confident_joint,
        estimate_joint,
    )
    from cleanlab.filter import find_label_issues as cl_find  # cleanlab (as above)
    from cleanlab.rank import get_label_quality_scores  # cleanlab (as above)

    with warnings.catch_warnings():  # "may not flag all issues in class k: too few examples" - said by the counts
        warnings.simplefilter("ignore", UserWarning)
        # the calibrated confident joint, counted once: the filter prunes by it, the noise table is it normalised
        confident = compute_confident_joint(labels=y, pred_probs=p)
        flagged = np.asarray(cl_find(labels=y, pred_probs=p, return_indices_ranked_by=ranking, n_jobs=1,
                                     confident_joint=confident), dtype=np.int64)
        joint = np.asarray(estimate_joint(labels=y, pred_probs=p, confident_joint=confident), dtype=np.float64)
    quality = get_label_quality_scores(y, p, method="self_confidence")
    others = p.copy()
    others[np.arange(len(y)), y] = -1.0
    suggested = others.argmax(axis=1)
    issues = tuple(LabelIssue(row=int(keep[i]), given=int(present[y[i]]), suggested=int(present[suggested[i]]),
                              score=float(quality[i])) for i in flagged)
    noise = []
    for k, cid in enumerate(present):
        n_given = int(np.sum(y == k))
        row = joint[k]
        rate = float(1.0 - row[k] / row.sum()) if row.sum() > 0 else 0.0
        suggested_here = [i.suggested for i in issues if i.given == cid]
        likely = CLASS_NAMES[max(set(suggested_here), key=lambda c: (suggested_here.count(c), -c))] \
            if suggested_here else None
        noise.append(ClassNoise(CLASS_NAMES[cid], n_given, rate, n_given * rate, likely))
    return LabelIssues(issues, int(keep.size), tuple(CLASS_NAMES[i] for i in present), ranking, tuple(noise))


def label_issues_frame(found: LabelIssues, sources: Sequence[str], face_ids: Sequence[str]) -> pd.DataFrame:
    """The rows of label_issues.csv (:data:`LABEL_ISSUES_COLUMNS`), most suspect first; score to 4 decimals."""
    return pd.DataFrame({
        "source": [str(sources[i.row]) for i in found.issues],
        "face_id": [str(face_ids[i.row]) for i in found.issues],
        "given": [CLASS_NAMES[i.given] for i in found.issues],
        "suggested": [CLASS_NAMES[i.suggested] for i in found.issues],
        "score": [round(i.score, 4) for i in found.issues],
    }, columns=list(LABEL_ISSUES_COLUMNS))


def write_label_issues(frame: pd.DataFrame, run: RunFolder | str | os.PathLike[str]) -> None:
    """The run's label_issues.csv."""
    RunFolder(run).write_label_issues(frame)


def issues_of_predictions(df: pd.DataFrame, scored: Sequence[str] = CLASS_NAMES,
                          ranking: str = DEFAULT_RANKING) -> tuple[LabelIssues, pd.DataFrame]:
    """:func:`find_label_issues` on predictions.csv's true labels and probabilities, and its CSV rows."""
    names = {n: i for i, n in enumerate(CLASS_NAMES)}
    labels = np.array([names.get(str(v), -1) for v in df["true_label"]], dtype=np.int64) if len(df) else \
        np.zeros(0, np.int64)
    if not all(c in df.columns for c in PROBA_COLUMNS):
        return _unavailable("predictions.csv has no probability columns", 0, ranking), \
            pd.DataFrame(columns=list(LABEL_ISSUES_COLUMNS))
    proba = df[list(PROBA_COLUMNS)].apply(pd.to_numeric, errors="coerce").fillna(0.0).to_numpy(dtype=np.float64)
    found = find_label_issues(labels, proba, scored=scored, ranking=ranking)
    sources = df["source"].astype(str).tolist() if "source" in df.columns else [""] * len(df)
    face_ids = df["face_id"].astype(str).tolist() if "face_id" in df.columns else [""] * len(df)
    return found, label_issues_frame(found, sources, face_ids)


def write_label_issue_rows(frame: pd.DataFrame, out_dir: RunFolder | str | os.PathLike[str],
                           labels: tuple[str, ...] = CLASS_NAMES) -> np.ndarray:
    """label_issues.csv and label_noise.json of scored faces with a true label (cleanlab,
    :mod:`ferreport.evaluation.label_noise`); returns the rows of predictions.csv the report's
    "Labels to check" grid shows."""
    run = RunFolder(out_dir)
    found, rows = issues_of_predictions(frame, scored=labels)
    run.write_label_noise(found.to_dict())  # what the report's "Labels to check" shows, computed once
    if not found.available:  # a stale file from an earlier evaluation of this run would describe other faces
        run.remove(LABEL_ISSUES)
        return np.zeros(0, np.int64)
    write_label_issues(rows, run)
    return np.array([i.row for i in found.issues[:LABEL_ISSUES_SHOWN]], dtype=np.int64)
