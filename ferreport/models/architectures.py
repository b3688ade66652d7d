"""The networks and the augmentation layers: everything defined in Keras alone.

Only Keras is needed here (see :mod:`ferreport.backend`), so the same definitions
build on TensorFlow (the tool) or on JAX/PyTorch (``benchmarks/gpu_train.py`` on a
GPU machine without TensorFlow). Input contract of every architecture: float32
``(N, 64, 64, 3)`` RGB faces in ``[0, 1]``; output: softmax probabilities ``(N, 7)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ferreport.backend import keras
from ferreport.constants import FACE_SHAPE, NUM_CLASSES

__all__ = ["ARCHITECTURES", "AUGMENTATION", "LogProbabilities", "augmentation_layers", "build_model", "compile_model",
           "register_architecture"]

#: Geometric augmentation of training batches (seed notebook: rotation 15 degrees,
#: shifts 0.1, shear, zoom 0.1, horizontal flip; edges filled with the nearest pixel).
AUGMENTATION: dict[str, float] = {
    "rotation_degrees": 15.0,
    "translation": 0.1,
    "shear": 0.1,
    "zoom": 0.1,
}


def augmentation_layers(seeds: Sequence[int | None] = (None,) * 5) -> list[keras.layers.Layer]:
    """The five training augmentations as Keras preprocessing layers, in the order applied:
    rotation, translation, shear, zoom, horizontal flip (one seed each).

    :func:`ferreport.models.input_pipeline.make_dataset` runs them in ``tf.data`` on the CPU.
    ``benchmarks/gpu_train.py`` also times them on the device, in front of the network:
    on Keras' JAX backend that costs ~0.26 s a step (benchmarks/README.md)."""
    if len(seeds) != 5:
        raise ValueError(f"augmentation_layers needs 5 seeds, got {len(seeds)}")
    a = AUGMENTATION
    return [
        keras.layers.RandomRotation(a["rotation_degrees"] / 360.0, fill_mode="nearest", seed=seeds[0]),
        keras.layers.RandomTranslation(a["translation"], a["translation"], fill_mode="nearest", seed=seeds[1]),
        keras.layers.RandomShear(x_factor=a["shear"], y_factor=0.0, fill_mode="nearest", seed=seeds[2]),
        keras.layers.RandomZoom(a["zoom"], a["zoom"], fill_mode="nearest", seed=seeds[3]),
        keras.layers.RandomFlip("horizontal", seed=seeds[4]),
    ]


@keras.saving.register_keras_serializable(package="ferreport")
class LogProbabilities(keras.layers.Layer):
    """log(max(p, 1e-7)): a model's probabilities back to logits, for a new head on top (fine-tuning).

    Registered here, in the module every model load imports, so safe mode reloads it.
    """

    def call(self, p: Any) -> Any:
        return keras.ops.log(keras.ops.maximum(p, 1e-7))


# --------------------------------------------------------------------------- architectures

#: name -> builder(input_shape, num_classes) returning an *uncompiled* keras.Model.
ARCHITECTURES: dict[str, Callable[[tuple[int, int, int], int], keras.Model]] = {}


def register_architecture(name: str) -> Callable:
    """Decorator adding a builder to :data:`ARCHITECTURES` (hook for better architectures)."""

    def deco(fn: Callable[[tuple[int, int, int], int], keras.Model]) -> Callable:
        if name in ARCHITECTURES:
            raise ValueError(f"architecture {name!r} is already registered")
        ARCHITECTURES[name] = fn
        return fn

    return deco


@register_architecture("seed")
def _seed_architecture(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """The seed notebook's CNN, layer for layer.

    3 x [Conv2D(3x3, same, relu) -> BatchNorm -> MaxPool(2) -> Dropout(0.25)] with
    32/64/128 filters, Flatten, Dense(256, relu), Dropout(0.5), Dense(7, softmax).
    About 2.2 M parameters for 64x64x3 input.

    Known weakness: trained from scratch on real faces with Adam at 1e-3 it can
    collapse to predicting the majority class (see ``collapse.detect_collapse``).
    """
    inputs = keras.Input(shape=input_shape, name="face")
    x = inputs
    for i, filters in enumerate((32, 64, 128), start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
        x = keras.layers.Dropout(0.25, name=f"drop{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(256, activation="relu", name="dense")(x)
    x = keras.layers.Dropout(0.5, name="drop_dense")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="seed_cnn")


def compile_model(model: keras.Model, *, learning_rate: float = 1e-3, label_smoothing: float = 0.0) -> keras.Model:
    """Compile with Adam, categorical cross-entropy (one-hot targets) and accuracy."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
        metrics=["accuracy"],
    )
    return model


def build_model(
    arch: str = "seed",
    input_shape: tuple[int, int, int] = FACE_SHAPE,
    num_classes: int = NUM_CLASSES,
    learning_rate: float = 1e-3,
    label_smoothing: float = 0.0,
) -> keras.Model:
    """Build and compile architecture ``arch``.

    The model expects float input in ``[0, 1]`` (no Rescaling layer inside) and
    returns softmax probabilities. Build it inside ``strategy.scope()`` for
    distributed training.
    """
    try:
        builder = ARCHITECTURES[arch]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ValueError(f"unknown architecture {arch!r}; choose one of: {known}") from None
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    model = builder(tuple(input_shape), int(num_classes))
    return compile_model(model, learning_rate=learning_rate, label_smoothing=label_smoothing)


@register_architecture("compact")
def _compact_architecture(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """A small from-scratch CNN that learns on real faces (see benchmarks/README.md).

    Conv(32) -> pool, then three stages of two Conv(3x3, same, no bias) -> BatchNorm
    -> ReLU with 64/128/256 filters (max-pool + Dropout(0.1) between stages),
    GlobalAveragePooling, Dropout(0.4), Dense(7, softmax). About 1.2 M parameters (half
    the seed's: global average pooling replaces the 2 M-weight Flatten -> Dense head);
    no downloaded weights.
    """
    inputs = keras.Input(shape=input_shape, name="face")
    x = inputs
    for stage, (filters, convs) in enumerate(((32, 1), (64, 2), (128, 2), (256, 2)), start=1):
        for j in range(1, convs + 1):
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{stage}_{j}")(x)
            x = keras.layers.BatchNormalization(name=f"bn{stage}_{j}")(x)
            x = keras.layers.ReLU(name=f"relu{stage}_{j}")(x)
        if stage < 4:
            x = keras.layers.MaxPooling2D(2, name=f"pool{stage}")(x)
            if stage > 1:
                x = keras.layers.Dropout(0.1, name=f"drop{stage}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dropout(0.4, name="drop_head")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="compact_cnn")


@register_architecture("compact-std")
def _compact_std_architecture(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """The compact CNN behind a per-image standardisation (the default for ``train``).

    ``LayerNormalization`` over height, width and channels without scale or offset
    subtracts each face's mean and divides by its standard deviation, so faces shot in
    dim, bright, low- or high-contrast light reach the CNN alike; on faces-real it
    lifted macro-F1 well above the compact CNN alone (benchmarks/README.md). A plain
    Keras layer, so the model loads in safe mode. The compact CNN is built first and
    nested, so a seed gives the same initial weights as the compact CNN.
    """
    body = _compact_architecture(input_shape, num_classes)
    inputs = keras.Input(shape=input_shape, name="face")
    x = keras.layers.LayerNormalization(axis=[1, 2, 3], center=False, scale=False, epsilon=1e-3,
                                        name="standardize")(inputs)
    return keras.Model(inputs, body(x), name="compact_std_cnn")
