"""A model's input contract and output reading: the one place faces become model input.

Every model ferreport runs - one it trained, a Keras/HDF5/SavedModel/ONNX file from
elsewhere - gets a :class:`ModelContract`: the input size, channels and layout read from
the model itself, plus what the model cannot say about itself (pixel scaling, channel
order, class order, whether it outputs probabilities or logits), taken from the command
line, a ``--model-spec`` file, or the contract file saved next to the model
(:func:`contract_path`). Defaults are ferreport's own models' contract: 64x64 RGB in
``[0, 1]``, seven softmax outputs in ExpW order.

* :func:`to_model_input` turns cached uint8 RGB faces ``(N, 64, 64, 3)`` into the model's
  float32 input. Training, evaluation, folder audits and the Ray engine all call it.
* :class:`OutputReader` checks raw outputs (NaN/inf refused, logits told from
  probabilities) and maps them onto the seven classes, renormalising over the scored
  classes when the model has others (FER+'s ``contempt``).

NumPy and OpenCV only: no TensorFlow here.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ferreport.constants import CHANNEL_ORDERS, CLASS_NAMES, FACE_SIZE, INPUT_RANGES, OUTPUT_KINDS
from ferreport.datasets.classes import parse_classes
from ferreport.errors import ModelError, UsageError
from ferreport.runs.atomic import write_json
from ferreport.runs.guard import ArtefactError, parse_json, read_inside
from ferreport.runs.schemas import validate

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "CHANNEL_ORDERS",
    "INPUT_RANGES",
    "LAYOUTS",
    "OUTPUT_KINDS",
    "PROBABILITY_TOLERANCE",
    "SPEC_KEYS",
    "SPEC_MAX_BYTES",
    "SPEC_SCHEMA",
    "ModelContract",
    "OutputReader",
    "contract_path",
    "read_spec",
    "softmax",
    "to_model_input",
    "write_contract",
]

LAYOUTS: tuple[str, ...] = ("nhwc", "nchw")
#: Rows of probabilities sum to 1 within this; anything else (or a negative value) is logits.
PROBABILITY_TOLERANCE = 1e-3
#: Keys a ``--model-spec`` file (TOML or JSON) may set; the contract file written next to
#: a model carries the shape keys too, which are checked against the model.
SPEC_KEYS: tuple[str, ...] = ("input_range", "channel_order", "classes", "outputs")
SHAPE_KEYS: tuple[str, ...] = ("height", "width", "channels", "layout")
_RANGE_TEXT = {"0,1": "[0, 1]", "-1,1": "[-1, 1]", "0,255": "[0, 255]", "standardize": "per-image standardised"}


@dataclass(frozen=True)
class ModelContract:
    """What a model takes and gives. ``outputs`` is what was asked for (``auto`` decides on the outputs)."""

    height: int = FACE_SIZE
    width: int = FACE_SIZE
    channels: int = 3
    layout: str = "nhwc"
    channel_order: str = "rgb"
    input_range: str = "0,1"
    outputs: str = "auto"
    classes: tuple[str, ...] = CLASS_NAMES
    recipe: str | None = None  # how ferreport trained it (informational)

    def __post_init__(self) -> None:
        for name, allowed in (("layout", LAYOUTS), ("channel_order", CHANNEL_ORDERS),
                              ("input_range", INPUT_RANGES), ("outputs", OUTPUT_KINDS)):
            value = getattr(self, name)
            if value not in allowed:
                raise UsageError(f"--{name.replace('_', '-')} {value!r}: choose one of {', '.join(allowed)}")
        if self.channels not in (1, 3):
            raise ModelError(f"the model takes {self.channels}-channel images; ferreport feeds 1 (grayscale) or 3 "
                             "(RGB/BGR) channels")
        for name in ("height", "width"):
            if not isinstance(getattr(self, name), int) or not 8 <= getattr(self, name) <= 4096:
                raise ModelError(f"the model's input {name} {getattr(self, name)!r} is not a usable image size "
                                 "(8 to 4096 pixels)")
        object.__setattr__(self, "classes", parse_classes(self.classes, where="classes"))

    # ------------------------------------------------------------------ derived facts

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """One face's input shape in the model's layout."""
        if self.layout == "nchw":
            return (self.channels, self.height, self.width)
        return (self.height, self.width, self.channels)

    @property
    def scored(self) -> tuple[str, ...]:
        """The ExpW classes the model predicts, in ExpW order."""
        return tuple(c for c in CLASS_NAMES if c in self.classes)

    @property
    def dropped(self) -> tuple[str, ...]:
        """The model's classes ferreport does not score (e.g. ``contempt``), in output order."""
        return tuple(c for c in self.classes if c not in CLASS_NAMES)

    @property
    def missing(self) -> tuple[str, ...]:
        """ExpW classes the model cannot predict."""
        return tuple(c for c in CLASS_NAMES if c not in self.classes)

    @property
    def reordered(self) -> bool:
        return self.classes != CLASS_NAMES

    def describe(self, decided: str | None = None, assumed: tuple[str, ...] = ()) -> str:
        """``Model input: 64×64 grayscale, [-1, 1]; outputs: logits → softmax; classes: 7 of 8 scored``; the fields
        in ``assumed`` are marked ``(assumed)``."""
        mark = {k: " (assumed)" if k in assumed else "" for k in ("input_range", "channel_order", "classes")}
        colour = "grayscale" if self.channels == 1 else self.channel_order.upper() + mark["channel_order"]
        layout = ", channels first" if self.layout == "nchw" else ""
        kind = decided or self.outputs
        outputs = "logits → softmax" if kind == "logits" else kind
        if self.outputs == "auto" and decided:
            outputs += " (detected)"
        classes = f"{len(self.scored)} of {len(self.classes)} scored"
        if self.dropped:
            classes += f" ({', '.join(self.dropped)} dropped)"
        if self.missing:
            classes += f"; no output for {', '.join(self.missing)}"
        if self.reordered and not self.dropped and not self.missing:
            classes += " (model order " + ",".join(self.classes) + ")"
        if mark["classes"]:
            classes += ", order assumed"
        return (f"Model input: {self.height}×{self.width} {colour}{layout}, {_RANGE_TEXT[self.input_range]}"
                f"{mark['input_range']}; outputs: {outputs}; classes: {classes}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["classes"] = list(self.classes)
        if out["recipe"] is None:
            del out["recipe"]
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, where: str = "contract") -> ModelContract:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known - {"summary", "format", "outputs_detected", "outputs_evidence"})
        if unknown:
            raise UsageError(f"{where}: unknown key(s) {', '.join(unknown)} (expected {', '.join(sorted(known))})")
        return cls(**{k: (tuple(v) if k == "classes" else v) for k, v in values.items() if k in known})

    def with_options(self, options: Mapping[str, Any]) -> ModelContract:
        """This contract with the non-empty ``options`` (``SPEC_KEYS``) applied."""
        given = {k: v for k, v in options.items() if k in SPEC_KEYS and v not in (None, "", ())}
        if "classes" in given:
            given["classes"] = parse_classes(given["classes"])
        return replace(self, **given) if given else self


# --------------------------------------------------------------------------- input


def to_model_input(faces: np.ndarray, contract: ModelContract) -> np.ndarray:
    """uint8 RGB faces ``(N, h, w, 3)`` -> the model's float32 input ``(N, *contract.input_shape)``.

    Order: grayscale (OpenCV's RGB->GRAY on the uint8 face) when the model takes one
    channel; resize to the model's size (INTER_AREA when shrinking, INTER_LINEAR when
    enlarging); BGR when asked; scale in float32; channels first when the model wants it.
    ``0,1`` is exactly ``x / 255`` (what ferreport's models were trained on).
    """
    x = np.asarray(faces)
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
        raise ValueError(f"to_model_input expects uint8 faces (N, h, w, 3), got {x.dtype} {x.shape}")
    n, h, w, _ = x.shape
    if n == 0:
        return np.zeros((0, *contract.input_shape), np.float32)

    c, height, width = contract.channels, contract.height, contract.width
    if c == 1:  # a per-pixel operation: the whole batch as one tall image
        x = cv2.cvtColor(np.ascontiguousarray(x).reshape(n * h, w, 3), cv2.COLOR_RGB2GRAY).reshape(n, h, w, 1)
    elif contract.channel_order == "bgr":
        x = x[..., ::-1]
    if (height, width) != (h, w):
        interpolation = cv2.INTER_AREA if height <= h and width <= w else cv2.INTER_LINEAR
        resized = np.empty((n, height, width, c), np.uint8)
        for i in range(n):
            resized[i] = cv2.resize(np.ascontiguousarray(x[i]), (width, height),
                                    interpolation=interpolation).reshape(height, width, c)
        x = resized
    y = x.astype(np.float32)
    if contract.input_range == "0,1":
        y /= np.float32(255.0)
    elif contract.input_range == "-1,1":  # keras/fer preprocess_input: x/255, -0.5, *2, in float32
        y /= np.float32(255.0)
        y -= np.float32(0.5)
        y *= np.float32(2.0)
    elif contract.input_range == "standardize":
        flat = y.reshape(n, -1)
        mean = flat.mean(axis=1, dtype=np.float64)
        std = flat.std(axis=1, dtype=np.float64)
        floor = 1.0 / math.sqrt(flat.shape[1])
        y = ((flat - mean[:, None]) / np.maximum(std, floor)[:, None]).astype(np.float32).reshape(y.shape)
    if contract.layout == "nchw":
        y = np.ascontiguousarray(y.transpose(0, 3, 1, 2))
    return y


# --------------------------------------------------------------------------- outputs


def softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (stable)."""
    z = np.asarray(x, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def output_kind(raw: np.ndarray) -> tuple[str, str]:
    """``("probabilities" | "logits", why)`` for a batch of finite raw outputs."""
    if raw.size == 0:
        return "probabilities", "no outputs"
    low = float(raw.min())
    if low < 0:
        return "logits", f"negative values (min {low:.3g})"
    off = float(np.abs(raw.sum(axis=1, dtype=np.float64) - 1.0).max())
    if off > PROBABILITY_TOLERANCE:
        return "logits", f"rows that do not sum to 1 (off by up to {off:.3g})"
    return "probabilities", f"values in [0, 1] with rows summing to 1 (within {max(off, 1e-9):.1e})"


class OutputReader:
    """Raw model outputs -> probabilities ``(N, 7)`` in ExpW order, checked batch by batch.

    ``outputs="auto"`` decides on the first batch it sees (the adapter feeds it a probe
    batch when the model is opened) and checks every later batch against the decision:
    a model that looked like softmax and then gives a negative value is refused rather
    than half-scored. Declared ``probabilities`` are checked the same way.
    """

    def __init__(self, contract: ModelContract, source: str | os.PathLike[str]) -> None:
        self.contract = contract
        self.source = str(source)
        self.kind: str | None = None if contract.outputs == "auto" else contract.outputs
        self.evidence = "declared" if self.kind else ""
        self.rows_without_scored_mass = 0
        self._columns = np.array([contract.classes.index(c) if c in contract.classes else -1 for c in CLASS_NAMES])
        self._identity = contract.classes == CLASS_NAMES
        self._width = len(contract.classes)

    def decide(self, raw: np.ndarray, what: str) -> None:
        """Settle ``auto`` on this batch (no-op once decided)."""
        raw = self._check(raw)
        if self.kind is None:
            self.kind, why = output_kind(raw)
            self.evidence = f"{why} on {what}"

    def _check(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw)
        if raw.ndim != 2 or raw.shape[1] != self._width:
            raise ModelError(f"{self.source}: the model gave outputs of shape {raw.shape}, expected (N, {self._width}) "
                             f"for its {self._width} classes")
        finite = np.isfinite(raw)
        if not finite.all():
            rows = np.flatnonzero(~finite.all(axis=1))
            raise ModelError(f"{self.source}: the model output NaN/inf for {rows.size} of {len(raw)} faces (first: "
                             f"face {int(rows[0])}); the model is numerically broken, retrain or re-export it")
        return raw

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        raw = self._check(raw)
        if self.kind is None:
            self.decide(raw, "the first scored faces")
        if self.kind == "probabilities":
            kind, why = output_kind(raw)
            if kind != "probabilities":
                asked = "--outputs probabilities" if self.contract.outputs == "probabilities" else \
                    f"outputs detected as probabilities ({self.evidence})"
                raise ModelError(f"{self.source}: {asked}, but these outputs have {why}; pass --outputs logits "
                                 "if the model ends without a softmax")
            proba = raw
        else:
            proba = softmax(raw)
        if self._identity:
            return proba if proba.dtype == np.float32 else proba.astype(np.float32)
        out = np.zeros((len(proba), len(CLASS_NAMES)), np.float64)
        for target, column in enumerate(self._columns):
            if column >= 0:
                out[:, target] = proba[:, column]
        if self.contract.dropped:  # probabilities over the scored classes only
            mass = out.sum(axis=1, keepdims=True)
            empty = mass[:, 0] <= 0
            self.rows_without_scored_mass += int(empty.sum())
            out = np.divide(out, mass, out=np.zeros_like(out), where=mass > 0)
            if empty.any():
                out[np.ix_(empty, self._columns >= 0)] = 1.0 / len(self.contract.scored)
        return out.astype(np.float32)

    def record(self) -> dict[str, Any]:
        """What provenance.json keeps about the outputs."""
        out: dict[str, Any] = {"outputs": self.contract.outputs, "outputs_detected": self.kind,
                               "outputs_evidence": self.evidence}
        if self.rows_without_scored_mass:
            out["rows_without_scored_mass"] = self.rows_without_scored_mass
        return out


# --------------------------------------------------------------------------- files


def contract_path(model_path: str | os.PathLike[str]) -> Path:
    """Where a model's contract file lives: ``model.keras`` -> ``model.contract.json`` beside it."""
    p = Path(model_path)
    stem = p.name[: -len(p.suffix)] if p.suffix and not p.is_dir() else p.name
    return p.with_name(f"{stem}.contract.json")


def write_contract(model_path: str | os.PathLike[str], contract: ModelContract) -> Path:
    """Save ``contract`` next to the model (atomically); returns the file."""

    path = contract_path(model_path)
    write_json(path, contract.to_dict())
    return path


#: The most bytes a spec or contract file is read at (they hold a few keys).
SPEC_MAX_BYTES = 64 * 1024
_NAME = {"type": "string", "minLength": 1, "maxLength": 100, "pattern": "\\S"}
#: What a spec or contract file may hold: its keys, their types and allowed values.
SPEC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "input_range": {"enum": list(INPUT_RANGES)}, "channel_order": {"enum": list(CHANNEL_ORDERS)},
        "outputs": {"enum": list(OUTPUT_KINDS)}, "layout": {"enum": list(LAYOUTS)}, "channels": {"enum": [1, 3]},
        "height": {"type": "integer", "minimum": 8, "maximum": 4096},
        "width": {"type": "integer", "minimum": 8, "maximum": 4096},
        "classes": {"anyOf": [{"type": "string", "minLength": 1, "maxLength": 10_000},
                              {"type": "array", "items": _NAME, "minItems": 1, "maxItems": 1000, "uniqueItems": True}]},
        "recipe": {"type": ["string", "null"]}, "summary": {"type": "string"}, "format": {"type": "string"},
        "outputs_detected": {"type": ["string", "null"]}, "outputs_evidence": {"type": ["string", "null"]},
    },
}


def read_spec(path: str | os.PathLike[str], *, option: str | None = "--model-spec") -> dict[str, Any]:
    """A ``--model-spec`` file (TOML, or JSON such as a saved contract): its keys, checked against
    :data:`SPEC_SCHEMA`. Read guarded (:mod:`ferreport.runs.guard`: a regular file, at most
    :data:`SPEC_MAX_BYTES`, JSON depth-limited).

    A missing, unreadable or malformed spec is a UsageError (exit 2) naming the file and the field;
    with ``option=None`` (the contract file saved beside a model) a ModelError (exit 4).
    """
    p = Path(path)
    error = UsageError if option else ModelError
    where = f"{option} {p}" if option else str(p)
    root = p.parent if option is None else None  # a contract beside a model must not link away from it
    try:
        data = read_inside(p, SPEC_MAX_BYTES, root=root)
        if p.suffix.lower() == ".json":
            values = parse_json(data, p)
        else:
            try:
                values = tomllib.loads(data.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise ArtefactError(p, f"is not UTF-8 text (byte {exc.start})") from None
            except tomllib.TOMLDecodeError as exc:
                raise ArtefactError(p, f"invalid TOML ({exc})") from None
    except FileNotFoundError:
        raise error(f"{where}: file not found") from None
    except ArtefactError as exc:
        raise error(f"{where}: {exc.reason}") from None
    if not isinstance(values, dict):
        raise error(f"{where}: expected a table of keys ({', '.join(SPEC_KEYS)})")
    allowed = set(SPEC_KEYS) | set(SHAPE_KEYS) | {"recipe", "summary", "format", "outputs_detected",
                                                  "outputs_evidence"}
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise error(f"{where}: unknown key(s) {', '.join(unknown)}; a spec sets {', '.join(SPEC_KEYS)}")
    try:
        validate(values, SPEC_SCHEMA, p, hint="see the README's model contract keys")
    except ArtefactError as exc:
        raise error(f"{where}: {exc.reason}") from None
    return values
