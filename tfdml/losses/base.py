"""Loss base classes and the name -> class registry that YAML configs resolve.

A metric loss is a Keras layer: losses with trainable parameters (proxies) then save, checkpoint and
distribute with the model that owns them, and every loss gets `get_config` for free.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

import keras
from keras import ops

from tfdml.losses.core import Distance, References, assert_labels_below, check_inputs, get_distance, pair_weights

LOSSES: dict[str, type["MetricLoss"]] = {}
T = TypeVar("T", bound=type)


def register_loss(name: str) -> Callable[[T], T]:
    """Register a loss class under `name` (for YAML) and as Keras-serializable (for `.keras` files)."""

    def wrap(cls: T) -> T:
        if name in LOSSES:
            raise ValueError(f"loss name {name!r} is already registered by {LOSSES[name].__name__}")
        LOSSES[name] = cls
        return keras.saving.register_keras_serializable(package="tfdml", name=cls.__name__)(cls)

    return wrap


def get_loss(name: str, **args: Any) -> "MetricLoss":
    """Instantiate a registered loss, e.g. `get_loss("multi_similarity", alpha=2.0)`."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(sorted(LOSSES))}")
    return LOSSES[name](**args)


def wrapped_pair_loss(loss: Any, wrapper: str) -> "MetricLoss":
    """The pair loss a wrapper (cross-batch memory, CCP) is given, deserialised from a config if need be."""
    if isinstance(loss, dict):
        loss = keras.saving.deserialize_keras_object(loss)
    if not isinstance(loss, MetricLoss) or not loss.accepts_references:
        raise ValueError(f"{wrapper} needs a pair loss that accepts references (contrastive, multi_similarity, "
                         f"triplet); got {type(loss).__name__}")
    return loss


class MetricLoss(keras.layers.Layer):
    """A loss on `(embeddings [B, D], labels [B])` returning a scalar.

    `compute(embeddings, labels, references)` checks its inputs (clear errors for wrong shapes or
    dtypes), then calls the subclass's `_compute`. Computed in float32 whatever the model's precision
    policy, because exponentials of scaled similarities overflow in float16.
    """

    #: whether `compute` accepts references other than the batch (proxies, a memory)
    accepts_references: bool = False

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, embeddings: Any, labels: Any, training: bool | None = None) -> Any:
        return self.compute(embeddings, labels)

    def compute(self, embeddings: Any, labels: Any, references: References | None = None) -> Any:
        """The loss of `embeddings` against `references` (default: the batch itself)."""
        if references is not None and not self.accepts_references:
            raise ValueError(f"{self.name} compares the batch with its own parameters; it takes no other references")
        embeddings, labels = check_inputs(embeddings, labels, self.name)
        if getattr(self, "num_classes", None):  # losses with per-class parameters index them by label
            labels = assert_labels_below(labels, self.num_classes, self.name)
        return self._compute(embeddings, labels, references)

    def _compute(self, embeddings: Any, labels: Any, references: References | None) -> Any:
        raise NotImplementedError


class PairLoss(MetricLoss):
    """A loss over anchor/reference pairs, written once in `from_pairs(values, w_pos, w_neg)`.

    `values [B, M]` are the distance's outputs (similarities or distances, see `Distance`), `w_pos`
    and `w_neg` non-negative pair weights (hard masks, or Metrix's soft targets `y` and `1 - y`).
    """

    accepts_references = True

    def __init__(self, distance: str = "cosine", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.distance: Distance = get_distance(distance)
        self.built = True  # no weights

    def _compute(self, embeddings: Any, labels: Any, references: References | None) -> Any:
        refs = references if references is not None else References.from_batch(embeddings, labels)
        values = self.distance(embeddings, ops.cast(refs.embeddings, "float32"))
        w_pos, w_neg = pair_weights(labels, refs)
        return self.from_pairs(values, w_pos, w_neg)

    def anchors(self, embeddings: Any, labels: Any) -> tuple[Any, Any, Any]:
        """The rows `from_pairs` sums over: `(anchor embeddings [A, D], labels [A], batch index [A])`.

        The batch itself here; proxy-anchored losses return their proxies with index -1. Metrix
        compares these anchors with mixed embeddings under soft targets.
        """
        return embeddings, labels, ops.arange(ops.shape(labels)[0], dtype="int32")

    def from_pairs(self, values: Any, w_pos: Any, w_neg: Any) -> Any:
        raise NotImplementedError

    def get_config(self) -> dict:
        return {**super().get_config(), "distance": self.distance.name}
