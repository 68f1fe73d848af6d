"""`tf.distribute` support: strategies by name, the cross-replica gather pair losses need, synced BatchNorm.

Pair losses compare every embedding with every other one, so under data parallelism each replica
must see the *global* batch: `gather_across_replicas` all-gathers embeddings and labels (gradients
flow back to each replica's slice). Every replica then computes the same global loss; the gather's
gradient sums the replicas' upstream gradients and the optimizer sums the replicas' variable
gradients, so the step divides the loss by the number of replicas (`replica_scale`) to make N
replicas take exactly the update of one device on the same global batch.

Example (not run as a doctest: it needs a config and several devices):
    >>> strategy = get_strategy("mirrored")  # doctest: +SKIP
    >>> with strategy.scope():               # doctest: +SKIP
    ...     model = tfdml.training.build_model(config, num_classes)
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

STRATEGIES = ("none", "mirrored", "multi_worker")
_STRATEGIES: dict[str, tf.distribute.Strategy] = {}


def get_strategy(name: str = "none") -> tf.distribute.Strategy:
    """`none`: the default (one device); `mirrored`: all local GPUs (or CPU); `multi_worker`: all workers
    of the cluster in `$TF_CONFIG` (one worker when unset)."""
    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        # One per process: a second one would configure the cluster's collectives again (MLRC runs folds).
        if "multi_worker" not in _STRATEGIES:
            _STRATEGIES["multi_worker"] = tf.distribute.MultiWorkerMirroredStrategy()
        return _STRATEGIES["multi_worker"]
    raise ValueError(f"unknown distribute strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """Whether this process writes a run's files: the `chief` task, else worker 0, else (no cluster) True.

    `strategy` None reads the cluster from `$TF_CONFIG`; a strategy without a cluster (`none`,
    `mirrored`) is always the chief, whatever `$TF_CONFIG` says.

    Under `multi_worker` every worker runs the same command; only the chief writes checkpoints, logs
    and exports (the others would race it for the same paths).
    """
    resolver = (getattr(strategy, "cluster_resolver", None) if strategy is not None
                else tf.distribute.cluster_resolver.TFConfigClusterResolver())
    if resolver is None or not resolver.task_type:
        return True
    if "chief" in resolver.cluster_spec().as_dict():
        return resolver.task_type == "chief"
    return resolver.task_type == "worker" and int(resolver.task_id) == 0


def same_on_all_workers(strategy: tf.distribute.Strategy, value: float) -> bool:
    """Whether every worker of `strategy` passed the same `value` (a collective: all workers must call it)."""
    if strategy.num_replicas_in_sync == 1:
        return True

    @tf.function
    def gathered() -> Any:
        return strategy.run(lambda: gather_across_replicas(tf.constant([value], tf.float64))[0])

    values = strategy.experimental_local_results(gathered())[0].numpy()
    return bool((values == values[0]).all())


def num_replicas() -> int:
    """Replicas taking part in the current step (1 outside any strategy)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def num_workers() -> int:
    """Workers (processes) in the current strategy's cluster: 1 outside `multi_worker` with a `$TF_CONFIG` cluster."""
    if not tf.distribute.has_strategy():
        return 1
    strategy = tf.distribute.get_strategy()
    return max(1, strategy.num_replicas_in_sync // max(1, len(strategy.extended.worker_devices)))


def per_replica_logs(logs: dict) -> dict:
    """A step's scalar logs as Keras's multi-worker reduction expects them (workaround for keras-team/keras#20585).

    With several workers, Keras 3's TF trainer reduces each log value with
    `strategy.reduce("MEAN", value, axis=0)`, which fails on the scalars every `train_step` returns
    ("Invalid reduction dimension 0 for input with 0 dimensions"); a shape `(1,)` reduces to the
    scalar. Elsewhere the logs stay scalars.
    """
    if num_workers() == 1:
        return logs
    return {name: tf.reshape(value, (1,)) for name, value in logs.items()}


def replica_scale() -> float:
    """Factor on a replica's copy of a global loss so that summed replica gradients equal one device's."""
    return 1.0 / num_replicas()


def gather_across_replicas(*tensors: Any) -> tuple:
    """Concatenate each tensor's per-replica batches along axis 0, in replica order (identity on one device)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return tensors
    # `tf.identity` places each tensor on this replica's device: under MultiWorkerMirroredStrategy with
    # one device per worker, a step's inputs (the labels straight from the iterator) carry no device,
    # and `all_gather` then fails with "destinations can not be empty".
    return tuple(_dense_gradient(context.all_gather(tf.identity(t), axis=0)) for t in tensors)


@tf.custom_gradient
def _dense_gradient(x: tf.Tensor) -> tuple:
    """Identity whose gradient is dense: `all_gather`'s gradient cannot take the `IndexedSlices` that a
    `take` downstream produces (Metrix picks its pairs from the gathered batch)."""
    return tf.identity(x), lambda upstream: tf.convert_to_tensor(upstream)


def synchronize_batchnorm(model: keras.Model) -> int:
    """Make every BatchNormalization layer compute batch statistics over the global batch; return their count.

    Without it each replica normalises with its own slice's statistics, which changes the model's
    function as replicas are added (and breaks equivalence with one device).
    """
    layers = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in layers:
        layer.synchronized = True
    return len(layers)
