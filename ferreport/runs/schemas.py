"""JSON Schemas of the run folder's JSON artefacts: the types and ranges of every field a reader uses.

A shared run folder is untrusted input: a ``slices.json`` with text where a number belongs, a negative
count or a list where an object belongs must be refused by name, not crash the report. Fields no
reader uses are left open (older and newer ferreport versions add fields). Checked with
``jsonschema`` (Draft 2020-12), the reference validator, rather than by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ferreport.runs.guard import validate

__all__ = ["AUDIT_SUMMARY_SCHEMA", "CHECKPOINT_STATE_SCHEMA", "COMPARE_SCHEMA", "CONFIG_SCHEMA",
           "DATA_SUMMARY_SCHEMA", "DRIFT_SCHEMA", "GATES_SCHEMA", "LABEL_NOISE_SCHEMA", "MARKER_SCHEMA",
           "METRICS_SCHEMA",
           "PROVENANCE_SCHEMA", "SLICES_SCHEMA", "validate"]

# ----------------------------------------------------------------------------- building blocks

STR = {"type": "string"}
BOOL = {"type": "boolean"}
NUM = {"type": "number"}  # finite: the reader refuses NaN, Infinity and overflowing numbers
#: A count: a whole number JSON and int64 both hold exactly (jsonschema takes 1e300 for an integer).
COUNT = {"type": "integer", "minimum": 0, "maximum": 2**53}
SHARE = {"type": "number", "minimum": 0, "maximum": 1}
POSITIVE = {"type": "number", "minimum": 0}


def nullable(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"anyOf": [dict(schema), {"type": "null"}]}


def obj(required: tuple[str, ...] = (), **props: Any) -> dict[str, Any]:
    """An object whose listed properties have these schemas (others left open)."""
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = list(required)
    return out


def mapping(values: Mapping[str, Any]) -> dict[str, Any]:
    """An object of any keys whose values all have schema ``values``."""
    return {"type": "object", "additionalProperties": dict(values)}


def array(items: Mapping[str, Any], *, length: int | None = None, max_items: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "array", "items": dict(items)}
    if length is not None:
        out["minItems"] = out["maxItems"] = length
    if max_items is not None:
        out["maxItems"] = max_items
    return out


INTERVAL = array(SHARE, length=2)
COUNTS = mapping(COUNT)
STRINGS = array(STR)

# ----------------------------------------------------------------------------- artefacts

_PER_CLASS = obj(("precision", "recall", "f1", "support"), precision=SHARE, recall=SHARE, f1=SHARE, support=COUNT,
                 roc_auc=nullable(SHARE), average_precision=nullable(SHARE))
_CI = obj(("confidence", "n_resamples", "seed"), confidence=SHARE, n_resamples=COUNT, seed=COUNT, method=STR,
          accuracy=INTERVAL, macro_f1=INTERVAL, weighted_f1=INTERVAL,
          per_class=mapping(mapping(INTERVAL)))
_BIN = obj(("count", "lower", "upper"), count=COUNT, lower=SHARE, upper=SHARE, accuracy=nullable(SHARE),
           confidence=nullable(SHARE))
_CALIBRATION = obj(n=COUNT, n_bins=COUNT, ece=SHARE, mce=SHARE, brier=POSITIVE, log_loss=POSITIVE,
                   bins=array(_BIN, max_items=1000))
_WARNINGS = array({"anyOf": [STR, mapping({"type": ["string", "number", "boolean", "null"]})]})
_COLLAPSE = obj(reasons=STRINGS, likely_causes=STRINGS)

METRICS_SCHEMA = obj(
    (),
    n=COUNT, n_rows=COUNT, n_unlabelled=COUNT, prediction_counts=COUNTS, labels=STRINGS,
    accuracy=SHARE, macro_precision=SHARE, macro_recall=SHARE, macro_f1=SHARE, weighted_precision=SHARE,
    weighted_recall=SHARE, weighted_f1=SHARE, per_class=mapping(_PER_CLASS),
    confusion_matrix=array(array(COUNT, max_items=1000), max_items=1000),
    ci=nullable(_CI), calibration=nullable(_CALIBRATION), collapse=nullable(_COLLAPSE), warnings=_WARNINGS,
    training=nullable(obj(complete=BOOL, epochs_run=COUNT, epochs=COUNT)),
)

_CONTRACT = obj(height=COUNT, width=COUNT, channels=COUNT, layout=STR, channel_order=STR, input_range=STR,
                outputs=STR, outputs_detected=nullable(STR), outputs_evidence=STR, classes=STRINGS, recipe=STR,
                format=STR, summary=STR, sources=mapping(STR))
_SALIENCY_INFO = obj(available=BOOL, faces=COUNT, layer=STR, map_size=array(COUNT), method=STR, model_input=STR,
                     seconds=POSITIVE, target=STR, reason=nullable(STR))
_TEXT_OR_NUMBER = {"type": ["string", "number", "boolean", "null"]}

PROVENANCE_SCHEMA = obj(
    seed=COUNT, best_epoch=nullable(COUNT), epochs_run=COUNT, command_line=STR, data_fingerprint=STR,
    model_sha256=STR, started=STR, finished=STR, run_id=STR, platform=STR, packages=mapping(STR),
    model_contract=_CONTRACT, collapse=nullable(_COLLAPSE), saliency=nullable(_SALIENCY_INFO),
    evaluation=obj(data_fingerprint=STR, faces=COUNT, finished=STR, started=STR, model=STR, model_sha256=STR),
    unsafe_model=BOOL,
)

CONFIG_SCHEMA = mapping({"type": ["string", "number", "boolean", "null", "array", "object"]})

_SPLIT_COUNTS = mapping(COUNT)
DATA_SUMMARY_SCHEMA = obj(
    dataset=STR, faces_read=COUNT, balance=STR, kind=STR, fingerprint=STR, cache=STR, clipped_boxes=COUNT,
    splits=mapping(_SPLIT_COUNTS), train_balanced=_SPLIT_COUNTS, skipped=COUNTS,
    skipped_examples=mapping({"anyOf": [STR, STRINGS]}),
)

_SLICE = obj(("name", "attribute", "faces", "accuracy"),
             name=STR, attribute=STR, attribute_title=STR, faces=COUNT, accuracy=SHARE, accuracy_ci=INTERVAL,
             accuracy_gap=NUM, macro_f1=nullable(SHARE), macro_f1_ci=nullable(INTERVAL), macro_f1_gap=nullable(NUM),
             rank=nullable(COUNT), weak=BOOL, worst_rows=array(COUNT))
SLICES_SCHEMA = obj(
    ("slices",),
    slices=array(_SLICE), n=COUNT, min_faces=COUNT, min_slice_accuracy=nullable(SHARE), macro_f1_over=STR,
    weak_rule=STR,
    overall=obj(accuracy=SHARE, accuracy_ci=INTERVAL, macro_f1=SHARE, macro_f1_ci=INTERVAL),
    interval=obj(confidence=SHARE, method=STR, n_resamples=COUNT, seed=COUNT),
    attributes=array(obj(key=STR, title=STR, binning=STR, edges=array(NUM))),
    weakest=array({"type": ["string", "object"]}),
)

_DRIFT_PART = obj(reference_share=SHARE, incoming_share=SHARE, **{"class": STR})
_DRIFT_TEST = obj(("key",), key=STR, title=STR, fired=nullable(BOOL), p_value=nullable(SHARE), statistic=nullable(NUM),
                  statistic_name=STR, threshold=STR, verdict=STR, parts=array(mapping(_TEXT_OR_NUMBER)))
DRIFT_SCHEMA = obj(
    ("tests",),
    tests=array(_DRIFT_TEST), drift_detected=BOOL, drift_psi=nullable(POSITIVE), embedding_auc=nullable(SHARE),
    fired=STRINGS, incoming=STR, reference=STR, n_incoming=COUNT, n_reference=COUNT,
    settings=mapping(_TEXT_OR_NUMBER),
)

AUDIT_SUMMARY_SCHEMA = obj(
    batch_size=COUNT, chunk_size=COUNT, engine=STR, faces_found=COUNT, faces_mode=STR, faces_per_second=POSITIVE,
    files_seen=COUNT, files_skipped=COUNT, fingerprint=STR, folder=STR, images_per_second=POSITIVE,
    images_read=COUNT, images_with_face=COUNT, images_without_face=COUNT, labelled_faces=COUNT, labels=STR,
    model=STR, model_run_dir=nullable(STR), model_sha256=STR, predicted_counts=COUNTS, true_counts=nullable(COUNTS),
    seconds=POSITIVE, skipped=COUNTS, skipped_examples=mapping({"anyOf": [STR, STRINGS]}), workers=COUNT,
    faces_by_method=COUNTS, training_distribution=nullable(mapping(COUNTS)),
    confidence=obj(mean=nullable(SHARE), histogram=obj(counts=array(COUNT), edges=array(SHARE)),
                   **{"below_0.5": COUNT}),
    detector=nullable(mapping({"type": ["string", "number", "boolean", "null", "array", "object"]})),
)

_NOISE_ROW = obj(name=STR, n_given=COUNT, n_wrong=POSITIVE, noise_rate=SHARE, likely_true=nullable(STR))
LABEL_NOISE_SCHEMA = obj(
    classes=STRINGS, n_checked=COUNT, ranking=STR, reason=nullable(STR),
    issues=array(obj(("row", "given", "suggested"), row=COUNT, given=COUNT, suggested=COUNT, score=SHARE)),
    noise=array(_NOISE_ROW),
)

_GATE = obj(("name", "passed"), name=STR, kind=STR, key=STR, message=STR, passed=BOOL, threshold=NUM,
            actual=nullable(NUM), margin=nullable(NUM), baseline=nullable(NUM), change=nullable(NUM))
_DELTA = obj(baseline=nullable(NUM), actual=nullable(NUM), change=nullable(NUM))
GATES_SCHEMA = obj((), gates=array(_GATE), passed=BOOL, n_gates=COUNT, n_failed=COUNT,
                   baseline=nullable(obj(path=STR, deltas=mapping(_DELTA))))

COMPARE_SCHEMA = mapping({"type": ["string", "number", "boolean", "null", "array", "object"]})

CHECKPOINT_STATE_SCHEMA = obj(("epochs_done",), epochs_done=COUNT)

MARKER_SCHEMA = obj(("tool",), tool=STR, version=STR, kind=STR, pid=COUNT, created=STR)
