"""Training across several workers: ``tf.distribute.MultiWorkerMirroredStrategy``.

Every worker runs the same ``ferreport train --strategy multiworker`` command with
its own ``TF_CONFIG`` (the standard TensorFlow variable naming the cluster and this
worker's place in it). The workers train one model together, synchronously: each
step, every replica takes its share of the global batch, gradients are summed
across workers (collective all-reduce), and every replica applies the same update.

* **Batch.** ``--batch-size`` is the *global* batch, as for ``--strategy mirrored``:
  each of R replicas gets ``batch_size / R`` faces a step, so steps per epoch,
  learning rate and results do not depend on how many machines share the work.
  Raise ``--batch-size`` (and usually ``--learning-rate``) to use more hardware per step.
* **Data.** Every worker prepares the same dataset and split (same seed), draws the
  same shuffle each epoch and keeps its own shard of it
  (:func:`ferreport.models.input_pipeline.make_dataset` with ``shard=``), so workers read disjoint
  faces and run exactly the same number of steps.
* **Files.** Only the chief (task ``chief``, or ``worker`` 0 when there is no chief)
  writes: checkpoints, history, model and every other file of the run directory.
  Other workers write nothing. To resume (``--resume``), every worker reads the
  chief's checkpoint, so the run directory must be on storage all workers see
  (one host, or a shared file system).
* **Why a custom loop.** Keras 3's ``Model.fit`` fails under this strategy
  (keras-team/keras#20585: its symbolic build reduces per-replica input batches), so
  each epoch runs a small ``tf.function`` loop over ``strategy.run`` with the same
  loss (mean categorical cross-entropy over the global batch, class weights as
  per-face weights, as ``fit`` computes it), the model's own optimizer and the same
  per-step learning-rate schedule.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np

from ferreport.backend import keras, tf
from ferreport.constants import NUM_CLASSES
from ferreport.errors import UsageError
from ferreport.models.input_pipeline import make_dataset

__all__ = ["is_chief", "multiworker_strategy", "run_epoch", "worker_info"]

_TF_CONFIG_HELP = (
    'set TF_CONFIG on every worker, e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
    '"task": {"type": "worker", "index": 0}} (index 1 on the second host)'
)


def worker_info(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """``TF_CONFIG`` checked: ``{"workers": N, "task_type": ..., "task_index": i, "chief": bool}``.

    Raises UsageError naming what is wrong (missing, not JSON, no cluster, task not in it).
    """
    env = os.environ if environ is None else environ
    raw = env.get("TF_CONFIG")
    if not raw:
        raise UsageError(f"--strategy multiworker: TF_CONFIG is not set; {_TF_CONFIG_HELP}")
    try:
        conf = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--strategy multiworker: TF_CONFIG is not valid JSON ({exc.msg} at character "
                         f"{exc.pos}); {_TF_CONFIG_HELP}") from None
    cluster = conf.get("cluster") if isinstance(conf, dict) else None
    task = conf.get("task") if isinstance(conf, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise UsageError(f"--strategy multiworker: TF_CONFIG needs both 'cluster' and 'task'; {_TF_CONFIG_HELP}")
    task_type, index = task.get("type"), task.get("index")
    members = cluster.get(task_type) if isinstance(task_type, str) else None
    if not isinstance(members, list) or not isinstance(index, int) or not 0 <= index < len(members):
        raise UsageError(f"--strategy multiworker: TF_CONFIG task {json.dumps(task, sort_keys=True)} is not in "
                         f"its cluster ({', '.join(sorted(map(str, cluster)))}); {_TF_CONFIG_HELP}")
    if task_type not in ("chief", "worker"):
        raise UsageError(f"--strategy multiworker: TF_CONFIG task type {task_type!r} does not train; "
                         "use 'chief' or 'worker'")
    workers = sum(len(cluster.get(k) or []) for k in ("chief", "worker"))
    has_chief = bool(cluster.get("chief"))
    chief = task_type == "chief" or (not has_chief and index == 0)
    return {"workers": workers, "task_type": task_type, "task_index": index, "chief": chief}


def multiworker_strategy() -> tf.distribute.MultiWorkerMirroredStrategy:
    """The strategy for this worker (blocks until every worker of TF_CONFIG has joined)."""
    worker_info()  # a clear error before TensorFlow's own
    return tf.distribute.MultiWorkerMirroredStrategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files (always true off multi-worker)."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    resolver = strategy.cluster_resolver
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (task_type == "worker" and task_id == 0
                                    and "chief" not in resolver.cluster_spec().as_dict())


class _Steps:
    """The compiled per-replica train and eval steps of one model (built once per run)."""

    def __init__(self, strategy: tf.distribute.Strategy, model: keras.Model, global_batch: int,
                 label_smoothing: float):
        self.strategy, self.model, self.global_batch = strategy, model, global_batch
        loss_obj = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing, reduction=None)
        replicas = strategy.num_replicas_in_sync

        def train_one(x: tf.Tensor, y: tf.Tensor, w: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            with tf.GradientTape() as tape:
                p = model(x, training=True)
                per_face = loss_obj(y, p) * w
                loss = tf.nn.compute_average_loss(per_face, global_batch_size=global_batch)
                if model.losses:
                    loss += tf.add_n(model.losses) / replicas
            grads = tape.gradient(loss, model.trainable_variables)
            model.optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            correct = tf.cast(tf.equal(tf.argmax(p, -1), tf.argmax(y, -1)), tf.float32)
            return tf.reduce_sum(per_face), tf.reduce_sum(correct), tf.cast(tf.shape(x)[0], tf.float32)

        def eval_one(x: tf.Tensor, y: tf.Tensor, w: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            p = model(x, training=False)
            correct = tf.cast(tf.equal(tf.argmax(p, -1), tf.argmax(y, -1)), tf.float32)
            return tf.reduce_sum(loss_obj(y, p) * w), tf.reduce_sum(correct), tf.cast(tf.shape(x)[0], tf.float32)

        def reduce(values: Any) -> Any:
            return [strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in values]

        @tf.function
        def train_step(batch: Any) -> Any:
            return reduce(strategy.run(train_one, args=batch))

        @tf.function
        def eval_step(batch: Any) -> Any:
            return reduce(strategy.run(eval_one, args=batch))

        self.train_step, self.eval_step = train_step, eval_step


_STEPS: dict[int, _Steps] = {}


def run_epoch(strategy: tf.distribute.Strategy, model: keras.Model, data: dict[str, np.ndarray], config: Any,
              *, epoch: int, class_weight: dict[int, float] | None,
              set_learning_rate: Any, contract: Any = None) -> dict[str, float]:
    """One epoch on this worker's shard: ``{"loss", "accuracy", "val_loss", "val_accuracy"}`` (all workers).

    ``data`` holds ``x_train``, ``y_train``, ``x_val``, ``y_val`` (every worker the full
    arrays; each keeps its shard). ``set_learning_rate(step)`` is called before every
    step with the step number within the epoch. Train loss and accuracy are the means
    over the epoch's faces (class-weighted loss, as ``fit`` reports it); validation is
    unweighted, as ``fit`` computes it (Keras applies ``class_weight`` to training only).
    """
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise UsageError(f"--batch-size {config.batch_size} is the global batch and must divide evenly among "
                         f"the {replicas} replicas; use a multiple of {replicas}")
    key = id(model)
    if key not in _STEPS or _STEPS[key].model is not model:
        _STEPS.clear()
        _STEPS[key] = _Steps(strategy, model, config.batch_size, config.label_smoothing)
    steps = _STEPS[key]
    weights = [1.0] * NUM_CLASSES
    if class_weight is not None:
        weights = [float(class_weight.get(c, 1.0)) for c in range(NUM_CLASSES)]

    def dataset(x: np.ndarray, y: np.ndarray, training: bool, w: list[float]) -> Any:
        def fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
            return make_dataset(x, y, ctx.get_per_replica_batch_size(config.batch_size), training=training,
                                augment=training and config.augment, seed=config.seed, epoch=epoch,
                                shard=(ctx.num_input_pipelines, ctx.input_pipeline_id), class_weight=w,
                                contract=contract)

        return strategy.distribute_datasets_from_function(fn)

    def run(dist: Any, step_fn: Any) -> tuple[float, float, float]:
        total = [0.0, 0.0, 0.0]  # loss sum, correct, faces: summed over all workers
        for step, batch in enumerate(dist):
            if step_fn is steps.train_step:
                set_learning_rate(step)
            total = [t + float(v) for t, v in zip(total, step_fn(batch), strict=True)]
        return total[0], total[1], total[2]

    loss_sum, correct, seen = run(dataset(data["x_train"], data["y_train"], True, weights), steps.train_step)
    v_loss, v_correct, v_seen = run(dataset(data["x_val"], data["y_val"], False, [1.0] * NUM_CLASSES),
                                    steps.eval_step)
    nan = math.nan
    return {
        "loss": loss_sum / seen if seen else nan,
        "accuracy": correct / seen if seen else nan,
        "val_loss": v_loss / v_seen if v_seen else nan,
        "val_accuracy": v_correct / v_seen if v_seen else nan,
    }

