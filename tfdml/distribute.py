"""`tf.distribute` support: strategies by name, the cross-replica gather pair losses need, synced BatchNorm.

Pair losses compare every embedding with every other one, so under data parallelism each replica
must see the *global* batch: `gather_across_replicas` all-gathers embeddings and labels (gradients
flow back to each replica's slice). Every replica then computes the same global loss; the gather's
gradient sums the replicas' upstream gradients and the optimizer sums the replicas' variable
gradients, so the step divides the loss by the number of replicas (`replica_scale`) to make N
replicas take exactly the update of one device on the same global batch.

Example:
    >>> strategy = get_strategy("mirrored")  # doctest: +SKIP
    >>> with strategy.scope():               # doctest: +SKIP
    ...     model = tfdml.training.build_model(config, num_classes)
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

STRATEGIES = ("none", "mirrored", "multi_worker")


def get_strategy(name: str = "none") -> tf.distribute.Strategy:
    """`none`: the default (one device); `mirrored`: all local GPUs (or CPU); `multi_worker`: all workers
    of the cluster in `$TF_CONFIG` (one worker when unset)."""
    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown distribute strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


def num_replicas() -> int:
    """Replicas taking part in the current step (1 outside any strategy)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def replica_scale() -> float:
    """Factor on a replica's copy of a global loss so that summed replica gradients equal one device's."""
    return 1.0 / num_replicas()


def gather_across_replicas(*tensors: Any) -> tuple:
    """Concatenate each tensor's per-replica batches along axis 0, in replica order (identity on one device)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return tensors
    return tuple(context.all_gather(t, axis=0) for t in tensors)


def synchronize_batchnorm(model: keras.Model) -> int:
    """Make every BatchNormalization layer compute batch statistics over the global batch; return their count.

    Without it each replica normalises with its own slice's statistics, which changes the model's
    function as replicas are added (and breaks equivalence with one device).
    """
    layers = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in layers:
        layer.synchronized = True
    return len(layers)
