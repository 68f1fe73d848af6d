"""Cross-batch memory (XBM, Wang et al., CVPR 2020): compare each batch with the last `memory_size`
embeddings too, as a fixed-size ring buffer that any pair loss accepts as references.

The buffer is three non-trainable weights of fixed shape (embeddings, labels, a validity mask), so
nothing retraces as it fills, and it is saved in checkpoints with the rest of the model. Under a
`tf.distribute` strategy every replica writes the same gathered global batch, so the variables
aggregate as "only first replica".

Example:
    >>> import numpy as np
    >>> from tfdml.losses import ContrastiveLoss
    >>> xbm = CrossBatchMemory(ContrastiveLoss.c1(), memory_size=64, start_step=0)
    >>> emb = np.eye(8, 4, dtype="float32")
    >>> _ = xbm(emb, np.arange(8) % 4, training=True)   # compares with the batch, then stores it
    >>> int(np.asarray(xbm.valid).sum())
    8
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfdml.losses.base import LossWrapper, MetricLoss
from tfdml.losses.core import References


@keras.saving.register_keras_serializable(package="tfdml")
class CrossBatchMemory(LossWrapper):
    """`inner(batch, batch) + weight * inner(batch, memory)`, the memory taking part from `start_step` on.

    The memory term uses the embeddings of earlier steps only (the batch is written after the loss is
    computed), so no self-pairs occur. Only training calls write to the memory and count steps; the
    training step logs the memory term as `loss_memory`. Metrix mixes the inner loss (the memory
    holds clean embeddings only). XBM's settings: memory of 25 batches (CUB, Cars196), 400 (In-Shop),
    1400 (SOP), from step 1000.
    """

    what = "cross-batch memory"
    # It takes no references of its own, and its memory supplies positives a batch may lack.
    overrides = {"accepts_references": False, "needs_batch_positives": False}
    part_names = ("memory",)

    def __init__(self, loss: MetricLoss | dict | str, memory_size: int, start_step: int = 1000, weight: float = 1.0,
                 **kwargs: Any) -> None:
        super().__init__(loss, **kwargs)
        if memory_size < 1 or start_step < 0:
            raise ValueError(f"memory_size ({memory_size}) must be >= 1 and start_step ({start_step}) >= 0")
        self.memory_size, self.start_step, self.weight = int(memory_size), int(start_step), float(weight)

    def build(self, input_shape: tuple) -> None:
        state = {"trainable": False, "aggregation": "only_first_replica"}
        self.memory = self.add_weight(shape=(self.memory_size, input_shape[-1]), initializer="zeros",
                                      name="memory", **state)
        self.memory_labels = self.add_weight(shape=(self.memory_size,), initializer="zeros", dtype="int32",
                                             name="memory_labels", **state)
        self.valid = self.add_weight(shape=(self.memory_size,), initializer="zeros", name="valid", **state)
        self.pointer = self.add_weight(shape=(), initializer="zeros", dtype="int32", name="pointer", **state)
        self.steps = self.add_weight(shape=(), initializer="zeros", dtype="int32", name="steps", **state)
        self.built = True

    def with_parts(self, embeddings: Any, labels: Any, training: bool | None = None) -> tuple[Any, dict[str, Any]]:
        embeddings, labels = self.checked(embeddings, labels)
        batch, memory = self._batch_and_memory(embeddings, labels)
        if training:
            self.enqueue(ops.stop_gradient(embeddings), labels)
        return batch + memory, {"memory": memory}

    def _compute(self, embeddings: Any, labels: Any, references: References | None) -> Any:
        batch, memory = self._batch_and_memory(embeddings, labels)  # no training step: the memory stays as it is
        return batch + memory

    def _batch_and_memory(self, embeddings: Any, labels: Any) -> tuple[Any, Any]:
        """The batch term and the (weighted) memory term."""
        started = ops.cast(self.steps >= self.start_step, "float32")
        memory = References.from_memory(self.memory, self.memory_labels, self.valid * started)
        return self.inner.compute(embeddings, labels), self.weight * self.inner.compute(embeddings, labels, memory)

    def enqueue(self, embeddings: Any, labels: Any) -> None:
        """Write a batch over the oldest slots."""
        batch = embeddings.shape[0]
        if batch is not None and batch > self.memory_size:
            raise ValueError(f"a batch of {batch} does not fit a memory of {self.memory_size}; "
                             "make memory_size at least the (global) batch size")
        n = ops.shape(embeddings)[0]
        slots = ops.expand_dims((self.pointer + ops.arange(n, dtype="int32")) % self.memory_size, 1)
        self.memory.assign(ops.scatter_update(self.memory, slots, embeddings))
        self.memory_labels.assign(ops.scatter_update(self.memory_labels, slots, labels))
        self.valid.assign(ops.scatter_update(self.valid, slots, ops.ones((n,), "float32")))
        self.pointer.assign((self.pointer + n) % self.memory_size)
        self.steps.assign(self.steps + 1)

    def get_config(self) -> dict:
        return {**super().get_config(), "memory_size": self.memory_size, "start_step": self.start_step,
                "weight": self.weight}
