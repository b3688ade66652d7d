"""Names and column contracts of the files in a run directory.

Every stage reads and writes through these names, so a run directory is
self-describing and ``ferreport report RUN_DIR`` can re-render from it alone.
"""

from __future__ import annotations

from ferreport.constants import CLASS_NAMES

CONFIG = "config.json"            # resolved configuration (dataclass as dict)
PROVENANCE = "provenance.json"    # seed, package versions, fingerprints, command line, times
SPLITS = "splits.csv"             # one row per face: key, source, face_id, label, split
DATA_SUMMARY = "data_summary.json"  # counts per split before/after balancing, skipped rows by reason
HISTORY = "history.csv"           # epoch, loss, accuracy, val_loss, val_accuracy, learning_rate, seconds
MODEL = "model.keras"             # best epoch by validation loss
MODEL_CONTRACT = "model.contract.json"  # the model's input contract (ferreport.models.contract), beside model.keras
CHECKPOINT_DIR = "checkpoint"     # resumable training state (last completed epoch)
CHECKPOINT_STATE = "state.json"   # in CHECKPOINT_DIR: epochs committed, whether training stopped on purpose
PREDICTIONS = "predictions.csv"   # one row per face, columns below
METRICS = "metrics.json"          # see metrics.metrics_to_dict
FACES_POOL = "faces_pool.npz"     # arrays `rows` (int64 row numbers into predictions.csv) and `faces` (k,64,64,3 uint8 RGB)
AUDIT_SUMMARY = "audit_summary.json"  # folder audits (`ferreport predict`): counts, skips by reason, timing
SKIPPED = "skipped.csv"           # folder audits: path,reason of every file that got no prediction
SALIENCY = "saliency.npz"         # Grad-CAM of the pooled faces: `rows`, `maps` (k,h,w uint8), `info` (JSON); ferreport.evaluation.saliency
LABEL_ISSUES = "label_issues.csv"  # labels to check (cleanlab): source, face_id, given, suggested, score; most suspect first
GATES = "gates.json"              # quality-gate verdicts and baseline deltas of the last evaluation (ferreport.runs.gates)
FACE_STATS = "face_stats.csv"     # one row per predictions.csv row: the face's slice attributes (ferreport.evaluation.facestats)
SLICES = "slices.json"            # accuracy and macro-F1 per slice with intervals, the weak slices (ferreport.evaluation.slices)
EMBEDDINGS = "embeddings.npz"     # `rows` into predictions.csv and `embeddings` (penultimate layer, float16): drift
DRIFT = "drift.json"              # folder audits with a reference: drift tests and drift_detected (ferreport.evaluation.drift)
REPORT_HTML = "report.html"
REPORT_PDF = "report.pdf"

#: Probability columns of predictions.csv, in class order.
PROBA_COLUMNS: tuple[str, ...] = tuple(f"p_{name}" for name in CLASS_NAMES)
#: Columns of predictions.csv (evaluation). ``true_label``/``pred_label`` hold class names;
#: ``true_label`` is empty when unknown (folder audits without labels).
PREDICTION_COLUMNS: tuple[str, ...] = (
    "source", "face_id", "true_label", "pred_label", "confidence", *PROBA_COLUMNS,
)
#: Extra columns of an audit's predictions.csv: the face box in image pixels and how the face was
#: found (``detected``, ``whole`` or ``fallback``; ``extra``: a further detection in a labelled
#: image, listed but not labelled or scored; see :mod:`ferreport.audit.predict`).
AUDIT_EXTRA_COLUMNS: tuple[str, ...] = ("top", "left", "right", "bottom", "found")
