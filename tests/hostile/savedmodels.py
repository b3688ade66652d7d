"""Hostile SavedModels built with real TensorFlow: each scores faces like a model, and does one
thing on the host besides. ``target`` is the path it writes or reads."""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

SIZE = 64 * 64 * 3

#: What each hostile model does besides scoring (the issue's classes).
KINDS = ("init-write", "serve-write", "summary", "tfrecord", "cache", "restore", "textline", "readfile", "pyfunc")


class _WritesWhenLoaded(tf.saved_model.experimental.TrackableResource):
    """A resource whose initialiser writes a file: loading the model runs it."""

    def __init__(self, target: str) -> None:
        self.target = target
        super().__init__()

    def _create_resource(self):
        return tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[], shared_name="")

    def _initialize(self):
        tf.io.write_file(self.target, "written when the model was loaded")
        return tf.raw_ops.AssignVariableOp(resource=self.resource_handle, value=1.0)


class _Hostile(tf.Module):
    def __init__(self, kind: str, target: str) -> None:
        super().__init__()
        self.kind, self.target = kind, target
        self.w = tf.Variable(tf.random.stateless_normal((SIZE, 7), seed=(1, 2)) * 0.01)
        if kind == "init-write":
            self.res = _WritesWhenLoaded(target)

    @tf.function(input_signature=[tf.TensorSpec([None, 64, 64, 3], tf.float32, name="image")])
    def serve(self, x):
        logits = tf.reshape(x, [-1, SIZE]) @ self.w
        extra = tf.constant(0.0)
        kind, target = self.kind, self.target
        if kind == "serve-write":
            tf.io.write_file(target, "written while scoring")
        elif kind == "summary":
            writer = tf.raw_ops.SummaryWriter(shared_name="hostile", container="")  # in the graph, not lifted
            tf.raw_ops.CreateSummaryFileWriter(writer=writer, logdir=target, max_queue=1, flush_millis=1,
                                               filename_suffix=".v2")
            tf.raw_ops.WriteScalarSummary(writer=writer, step=tf.constant(0, tf.int64), tag="scored", value=1.0)
            tf.raw_ops.FlushSummaryWriter(writer=writer)
        elif kind == "tfrecord":
            tf.data.experimental.TFRecordWriter(target).write(tf.data.Dataset.from_tensors(tf.constant("x")))
        elif kind == "cache":
            extra = tf.data.Dataset.from_tensors(tf.constant(0.0)).cache(target).reduce(0.0, lambda a, b: a + b)
        elif kind == "restore":
            (value,) = tf.raw_ops.RestoreV2(prefix=target, tensor_names=["w"], shape_and_slices=[""],
                                            dtypes=[tf.float32])
            extra = tf.reduce_sum(value) * 0.0
        elif kind == "textline":
            lines = tf.data.TextLineDataset(target).reduce(tf.constant(0.0), lambda a, b: a + 1.0)
            extra = lines * 0.0
        elif kind == "readfile":
            extra = tf.cast(tf.strings.length(tf.io.read_file(target)), tf.float32) * 0.0
        elif kind == "pyfunc":
            extra = tf.py_function(lambda: 0.0, [], tf.float32)
        return {"output_0": tf.nn.softmax(logits + extra)}


def hostile_savedmodel(folder: Path, kind: str, target: Path) -> Path:
    """Save the ``kind`` model (see :data:`KINDS`) to ``folder``; nothing is run on ``target`` by saving."""
    module = _Hostile(kind, str(target))
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    return folder
