"""Facts shared by every stage: the ExpW class order and the model's face size."""

from __future__ import annotations

#: ExpW expression labels, in label-id order (0..6).
CLASS_NAMES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_CLASSES: int = len(CLASS_NAMES)
#: Side of the square face crop the model consumes.
FACE_SIZE: int = 64
FACE_SHAPE: tuple[int, int, int] = (FACE_SIZE, FACE_SIZE, 3)
#: Image file suffixes the tool decodes (lower case).
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
)
#: What picks the best epoch (the weights kept) and drives early stopping / plateau
#: reduction: the validation loss (lower is better) or the validation macro-F1 (higher is
#: better; the metric that matters with imbalanced classes, and not blurred by label
#: smoothing or class weights the way the loss is).
#: The architectures the command line offers (``--arch``), in --help order; the Python API also takes any
#: name added with ``ferreport.models.architectures.register_architecture``.
ARCH_NAMES: tuple[str, ...] = ("compact-std", "compact", "seed")
MONITORS: dict[str, str] = {"val_loss": "min", "val_macro_f1": "max"}

#: The face detectors by name, best first; ``auto`` (the command line's default) is the first one available.
DETECTORS: tuple[str, ...] = ("blazeface", "haar")

#: Pixel scalings (``--input-range``; the model contract, :mod:`ferreport.models.contract`): uint8 ``x`` becomes x/255,
#: (x/255 - 0.5)*2, x, or per-image (x - mean) / max(std, 1/sqrt(pixels)) (TensorFlow's per_image_standardization).
INPUT_RANGES: tuple[str, ...] = ("0,1", "-1,1", "0,255", "standardize")
CHANNEL_ORDERS: tuple[str, ...] = ("rgb", "bgr")
OUTPUT_KINDS: tuple[str, ...] = ("auto", "probabilities", "logits")
