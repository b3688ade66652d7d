"""ferreport.models.input_pipeline: uint8 faces to tf.data batches; shuffle, shards and augmentation by seed."""

from __future__ import annotations

import numpy as np
import pytest

from ferreport.errors import DatasetError
from ferreport.models.input_pipeline import (
    AUGMENT_STREAM,
    _BatchSeeds,
    _draws_per_batch,
    derive_seed,
    make_dataset,
    seeded_augmentation_layers,
)
from ferreport.models.model_file import tf
from tests.conftest import pattern_faces


@pytest.fixture(scope="module")
def data():
    xt, yt = pattern_faces(40, 1)
    xv, yv = pattern_faces(16, 2)
    return xt, yt, xv, yv


# --------------------------------------------------------------------------- make_dataset


def _collect(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds], strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def test_validation_dataset_is_scaled_ordered_and_one_hot(data):
    xt, yt, _, _ = data
    ds = make_dataset(xt, yt, 16, training=False, augment=True, seed=0)
    batches = [x.shape[0] for x, _ in ds]
    assert batches == [16, 16, 8]
    x, y = _collect(ds)
    assert x.dtype == np.float32 and y.dtype == np.float32
    np.testing.assert_array_equal(x, (xt.astype(np.float32) / np.float32(255.0)))  # no augmentation, no shuffle
    np.testing.assert_array_equal(y, np.eye(7, dtype=np.float32)[yt])


def test_training_dataset_shuffles_and_augments_deterministically(data):
    xt, yt, _, _ = data
    plain = _collect(make_dataset(xt, yt, 8, training=True, augment=False, seed=0))
    aug1 = _collect(make_dataset(xt, yt, 8, training=True, augment=True, seed=0))
    aug2 = _collect(make_dataset(xt, yt, 8, training=True, augment=True, seed=0))
    other_epoch = _collect(make_dataset(xt, yt, 8, training=True, augment=False, seed=0, epoch=1))
    # every face exactly once, with its own label
    assert sorted(plain[1].argmax(1).tolist()) == sorted(yt.tolist())
    assert not np.array_equal(plain[1].argmax(1), yt)  # shuffled
    assert not np.array_equal(other_epoch[1], plain[1])  # a new order per epoch
    # augmentation: same order as without it, different pixels, still in [0, 1], reproducible
    np.testing.assert_array_equal(aug1[1], plain[1])
    assert not np.allclose(aug1[0], plain[0])
    assert aug1[0].min() >= 0.0 and aug1[0].max() <= 1.0
    np.testing.assert_array_equal(aug1[0], aug2[0])


def _layers_in_turn(xt, yt, batch_size, seed, epoch, class_weight=None):
    """The augmented epoch as the Keras layers' own calls give it, one batch after another."""
    layers = seeded_augmentation_layers(derive_seed(seed, epoch, AUGMENT_STREAM))
    out = []
    for x, *rest in make_dataset(xt, yt, batch_size, training=True, augment=False, seed=seed, epoch=epoch,
                                 class_weight=class_weight):
        for layer in layers:
            x = layer(x, training=True)
        out.append((np.clip(x.numpy(), 0.0, 1.0), *(r.numpy() for r in rest)))
    return [np.concatenate(parts) for parts in zip(*out, strict=True)]


@pytest.mark.parametrize("pool", [1, 2])
def test_parallel_augmentation_equals_the_layers_own_stream(data, pool):
    xt, yt, _, _ = data
    weights = [1.0, 2.0, 0.5, 1.0, 1.5, 1.0, 0.25]
    expected = _layers_in_turn(xt, yt, 8, seed=5, epoch=2, class_weight=weights)
    ds = make_dataset(xt, yt, 8, training=True, augment=True, seed=5, epoch=2, class_weight=weights)
    options = tf.data.Options()
    options.threading.private_threadpool_size = pool
    got = [np.concatenate(parts)
           for parts in zip(*(tuple(t.numpy() for t in b) for b in ds.with_options(options)), strict=True)]
    assert len(got) == 3  # faces, one-hot labels, weights
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_array_equal(g, e)  # bit for bit, whatever the thread count


def test_batch_seeds_refuse_a_draw_beyond_the_counted_ones():
    layer = seeded_augmentation_layers(1)[1]  # RandomTranslation: two draws a batch
    calls = _draws_per_batch(layer)
    assert calls == 2
    seeds = _BatchSeeds(layer.seed, 3, calls)
    assert [s.numpy().tolist() for s in (seeds.next(), seeds.next())] == [[layer.seed, 6], [layer.seed, 7]]
    with pytest.raises(RuntimeError, match="draws differently"):
        seeds.next()


def test_dataset_reads_memory_map_without_copy(data, tmp_path):
    xt, yt, _, _ = data
    path = tmp_path / "faces.u8"
    mm = np.memmap(path, dtype=np.uint8, mode="w+", shape=xt.shape)
    mm[:] = xt
    mm.flush()
    ro = np.memmap(path, dtype=np.uint8, mode="r", shape=xt.shape)
    x, _ = _collect(make_dataset(ro, yt, 8, training=False, augment=False, seed=0))
    np.testing.assert_array_equal(x, xt / np.float32(255.0))


def test_dataset_rejects_bad_input(data):
    xt, yt, _, _ = data
    with pytest.raises(DatasetError, match="uint8"):
        make_dataset(xt.astype(np.float32), yt, 8, training=False, augment=False, seed=0)
    with pytest.raises(DatasetError, match="0..6"):
        make_dataset(xt, yt + 7, 8, training=False, augment=False, seed=0)


def test_shards_partition_each_epoch_equally():
    n = 23
    faces = np.zeros((n, 64, 64, 3), np.uint8)
    faces[:, 0, 0, 0] = np.arange(n)  # face id in a pixel
    labels = np.arange(n) % 7
    seen = []
    sizes = []
    for index in range(2):
        ds = make_dataset(faces, labels, 4, training=True, augment=False, seed=5, epoch=2, shard=(2, index),
                          class_weight=[float(c + 1) for c in range(7)])
        ids = []
        batches = 0
        for x, y, w in ds:
            batches += 1
            ids += np.rint(x.numpy()[:, 0, 0, 0] * 255).astype(int).tolist()
            np.testing.assert_allclose(w.numpy(), np.argmax(y.numpy(), axis=1) + 1.0)
        seen.append(ids)
        sizes.append((len(ids), batches))
    assert sizes[0] == sizes[1] == (11, 3)  # 23 -> 22 faces, 11 each, same step count
    assert not set(seen[0]) & set(seen[1])
    assert len(set(seen[0]) | set(seen[1])) == 22
