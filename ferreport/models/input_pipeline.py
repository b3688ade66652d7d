"""The training input pipeline: uint8 faces to ``tf.data`` batches, shuffled and augmented by seed.

Used by the epoch loop (:mod:`ferreport.models.training`) and by every multi-worker replica
(:mod:`ferreport.models.distributed`), so both draw the same data for the same ``(seed, epoch)``.

* **Memory.** Faces stay uint8 (possibly a read-only ``np.memmap``); the pipeline
  iterates over *indices*, gathers one batch at a time with NumPy and scales to
  float32 ``[0, 1]`` inside the graph. Nothing of size N x 64 x 64 x 3 is ever
  copied or converted to float32 (170k faces: 2 GB uint8 stay 2 GB, not +8 GB).
* **Seeds.** Every random stream is derived from ``(seed, epoch, purpose)`` by
  :func:`derive_seed`: the shuffle order (purpose 0), the augmentation layers (1);
  the training loop derives the layers' own random state (2) the same way. A resumed
  run therefore repeats the data order and augmentation of an uninterrupted one.
* **Augmentation in parallel, bit for bit.** The augmentation layers' draws are keyed
  by batch index (:class:`_BatchSeeds`), so the map runs batches on every core and
  still gives the pixels of calling the layers one batch after another.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ferreport.backend import keras, tf
from ferreport.constants import FACE_SHAPE, NUM_CLASSES
from ferreport.datasets.face_cache import check_faces
from ferreport.errors import DatasetError, UsageError
from ferreport.models.architectures import augmentation_layers
from ferreport.models.contract import ModelContract, to_model_input

__all__ = ["check_labels", "derive_seed", "make_dataset", "seeded_augmentation_layers"]

#: ``derive_seed(seed, epoch, purpose)``: the purposes of the per-epoch streams.
SHUFFLE_STREAM, AUGMENT_STREAM, LAYER_STREAM = 0, 1, 2


def derive_seed(seed: int, *parts: int) -> int:
    """A 31-bit seed derived from ``seed`` and ``parts`` (independent streams)."""
    return int(np.random.SeedSequence([int(seed), *map(int, parts)]).generate_state(1)[0] & 0x7FFFFFFF)


def check_labels(labels: np.ndarray, n: int, what: str) -> np.ndarray:
    """``labels`` as ``n`` int32 class ids in 0..6; DatasetError naming ``what`` otherwise."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != n:
        raise DatasetError(f"{what}: expected {n} labels (one per face), got shape {labels.shape}")
    if n and not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"{what}: labels must be integer class ids, got dtype {labels.dtype}")
    if n and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DatasetError(f"{what}: labels must be in 0..{NUM_CLASSES - 1}, got {labels.min()}..{labels.max()}")
    return labels.astype(np.int32, copy=False)


def seeded_augmentation_layers(seed: int) -> list[keras.layers.Layer]:
    """Fresh, seeded Keras preprocessing layers (created on the CPU, used inside tf.data)."""
    with tf.device("/cpu:0"):
        return augmentation_layers(tuple(derive_seed(seed, k) for k in range(1, 6)))


class _BatchSeeds(keras.random.SeedGenerator):
    """The seeds a layer's own ``SeedGenerator`` hands out for batch ``index``, without its state.

    ``SeedGenerator(s)`` gives ``[s, 0], [s, 1], ...`` (each ``next()`` adds ``[0, 1]``) and a
    layer draws ``calls`` times a batch, so batch ``i`` draws ``[s, i * calls + j]``. Computed
    from the batch index, the draws need no shared state: the augmentation map can run in
    parallel and still give the sequential stream bit for bit (tests/test_input_pipeline.py
    compares with the layers' own calls). ``calls=None`` only counts the draws.
    """

    def __init__(self, seed: int, index: tf.Tensor | int = 0, calls: int | None = None):  # no state variable
        self.name, self._initial_seed = "batch_seeds", seed
        self._seed, self._index, self._calls, self.draws = int(seed), index, calls, 0

    def next(self, ordered: bool = True) -> tf.Tensor:
        if self._calls is not None and self.draws >= self._calls:
            raise RuntimeError(f"augmentation layer drew more than the {self._calls} seeds a batch it drew when "
                               "counted: this Keras version draws differently (see input_pipeline._BatchSeeds)")
        k = tf.cast(self._index, tf.int64) * (self._calls or 0) + self.draws
        self.draws += 1
        return tf.stack([tf.constant(self._seed, tf.int64), k])


def _draws_per_batch(layer: keras.layers.Layer, shape: tuple[int, ...] = FACE_SHAPE) -> int:
    """How many seeds ``layer`` draws for one batch (the same for any batch size)."""
    counter = _BatchSeeds(layer.seed)
    layer.get_random_transformation(tf.zeros((2, *shape)), training=True, seed=counter)
    return counter.draws


#: The value range each input scaling lives in (augmentation clips back into it; none for standardize).
_INPUT_BOUNDS: dict[str, tuple[float, float] | None] = {"0,1": (0.0, 1.0), "-1,1": (-1.0, 1.0),
                                                       "0,255": (0.0, 255.0), "standardize": None}


def _augment_batch(layers: Sequence[keras.layers.Layer], calls: Sequence[int], index: tf.Tensor,
                   x: tf.Tensor, bounds: tuple[float, float] | None = (0.0, 1.0)) -> tf.Tensor:
    """Batch ``index`` of the layers' stream: exactly ``layer(x, training=True)`` in turn."""
    for layer, m in zip(layers, calls, strict=True):
        transformation = layer.get_random_transformation(x, training=True, seed=_BatchSeeds(layer.seed, index, m))
        x = layer.transform_images(x, transformation, training=True)
    return x if bounds is None else tf.clip_by_value(x, bounds[0], bounds[1])


def make_dataset(
    faces_uint8: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    *,
    training: bool,
    augment: bool,
    seed: int,
    epoch: int = 0,
    shard: tuple[int, int] | None = None,
    class_weight: Sequence[float] | None = None,
    contract: ModelContract | None = None,
) -> tf.data.Dataset:
    """Batches ``(float32 model input, one-hot float32 labels)`` from uint8 arrays.

    The faces become the model's input through :func:`ferreport.models.contract.to_model_input`
    (``contract``, default ferreport's own: 64x64 RGB in ``[0, 1]``).

    The arrays are not copied: the dataset iterates over indices and gathers each
    batch from ``faces_uint8`` (which may be a memory map). With ``training=True`` the
    order is shuffled (seeded from ``seed`` and ``epoch``; re-iterating the dataset
    reshuffles deterministically) and, with ``augment=True``, each batch goes through
    random rotation, translation, shear, zoom and horizontal flip (Keras preprocessing
    layers seeded from ``seed``/``epoch``; their draws are keyed by batch index, so the
    map runs batches in parallel on every core and gives the same pixels as calling the
    layers one batch after another). Validation/test datasets (``training=False``) keep
    file order and are never augmented.

    ``shard=(count, index)`` keeps every ``count``-th face of the (shuffled) order,
    starting at ``index``, after dropping the last ``n % count`` faces so that every
    shard has the same number of faces and batches (multi-worker training: workers
    that ran different step counts would wait for each other forever). Every worker
    draws the same shuffle, so the shards partition the epoch. ``class_weight`` (one
    weight per class) adds a third element, the per-face weight, for training loops
    that weight the loss themselves.
    """
    faces = check_faces(faces_uint8, "make_dataset")
    labels = check_labels(labels, len(faces), "make_dataset")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    ds = _index_batches(len(faces), int(batch_size), shuffle_seed=derive_seed(seed, epoch, SHUFFLE_STREAM)
                        if training else None, shard=shard)
    ds = ds.map(_batch_loader(faces, labels, contract or ModelContract()), num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True)
    if class_weight is not None:
        ds = ds.map(_face_weigher(class_weight))
    if training and augment:
        ds = _augmented(ds, derive_seed(seed, epoch, AUGMENT_STREAM), contract)
    return ds.prefetch(tf.data.AUTOTUNE)


def _index_batches(n: int, batch_size: int, *, shuffle_seed: int | None,
                   shard: tuple[int, int] | None) -> tf.data.Dataset:
    """Batches of face indices: shuffled when ``shuffle_seed`` is given, then this shard's share."""
    ds = tf.data.Dataset.range(n)
    if shuffle_seed is not None and n:
        ds = ds.shuffle(n, seed=shuffle_seed, reshuffle_each_iteration=True)
    if shard is not None:
        count, index = shard
        if not 0 <= index < count:
            raise ValueError(f"shard index {index} is not in 0..{count - 1}")
        ds = ds.take(n - n % count).shard(count, index)
    return ds.batch(batch_size)


def _batch_loader(faces: np.ndarray, labels: np.ndarray,
                  contract: ModelContract) -> Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]]:
    """Index batch -> ``(float32 model input, one-hot labels)``, gathered from the uint8 arrays."""

    def gather(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = np.sort(idx)  # sequential reads from a memory map; order inside a batch is irrelevant
        return to_model_input(np.take(faces, idx, axis=0), contract), np.take(labels, idx, axis=0)

    def load(idx: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        x, y = tf.numpy_function(gather, [idx], (tf.float32, tf.int32), stateful=False)
        x.set_shape((None, *contract.input_shape))
        y.set_shape((None,))
        return x, tf.one_hot(y, NUM_CLASSES, dtype=tf.float32)

    return load


def _face_weigher(class_weight: Sequence[float]) -> Callable[..., tuple[tf.Tensor, tf.Tensor, tf.Tensor]]:
    """``(x, y) -> (x, y, weight of each face's class)``."""
    weights = tf.constant(np.asarray(class_weight, dtype=np.float32).reshape(NUM_CLASSES))

    def weigh(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        return x, y, tf.gather(weights, tf.argmax(y, axis=-1))

    return weigh


def _augmented(ds: tf.data.Dataset, layer_seed: int, contract: ModelContract | None = None) -> tf.data.Dataset:
    """``ds`` with its faces (first element) augmented by layers seeded from ``layer_seed``."""
    contract = contract or ModelContract()
    if contract.layout != "nhwc":
        raise UsageError("augmentation needs channels-last (NHWC) input; train without augmentation (--no-augment)")
    layers = seeded_augmentation_layers(layer_seed)
    calls = [_draws_per_batch(layer, contract.input_shape) for layer in layers]
    bounds = _INPUT_BOUNDS[contract.input_range]

    def aug(index: tf.Tensor, batch: tuple[tf.Tensor, ...]) -> tuple[tf.Tensor, ...]:
        return (_augment_batch(layers, calls, index, batch[0], bounds), *batch[1:])

    # draws come from the batch index, so batches augment in parallel with the same result
    return ds.enumerate().map(aug, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
