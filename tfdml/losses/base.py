"""Loss base classes: `MetricLoss` (any loss), `PairLoss` (the pair core) and `LossWrapper` (a loss
around another one).

A metric loss is a Keras layer: losses with trainable parameters (proxies) then save, checkpoint and
distribute with the model that owns them, and every loss gets `get_config` for free.

A new pair loss is one method, `from_pairs`, returning per-anchor `Terms`; the base class computes
distances and pair weights, applies `mining=` and reduces the terms by `reduction=` (as a Keras loss
returns per-sample values and `keras.losses.Loss` reduces them):

    @register_loss("negative_hinge")
    class NegativeHinge(PairLoss):
        def __init__(self, margin=0.5, distance="cosine", reduction="mean", mining=None, **kwargs):
            super().__init__(distance=distance, reduction=reduction, mining=mining, **kwargs)
            self.margin = float(margin)

        def from_pairs(self, values, w_pos, w_neg):
            return Terms.of_pairs(w_neg * ops.relu(self.distance.closeness(values) - self.margin))

        def get_config(self):
            return {**super().get_config(), "margin": self.margin}

`tfdml/losses/circle.py` is a whole loss written so.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import keras
from keras import ops

from tfdml.losses.capabilities import DESCRIPTIONS, Capabilities, Unsupported, losses_supporting, require, supports
from tfdml.losses.core import Distance, References, assert_labels_below, check_inputs, get_distance, pair_weights
from tfdml.losses.mining import get_miner, miner_config
from tfdml.losses.reducers import Terms, check_reduction, reduce_terms
from tfdml.losses.registry import LOSSES, get_loss, register_loss

__all__ = ["LOSSES", "Capabilities", "LossWrapper", "MetricLoss", "PairLoss", "get_loss", "register_loss", "supports",
           "unwrap"]


class MetricLoss(keras.layers.Layer):
    """A loss on `(embeddings [B, D], labels [B])` returning a scalar.

    `compute(embeddings, labels, references)` checks its inputs (clear errors for wrong shapes or
    dtypes), then calls the subclass's `_compute`. Computed in float32 whatever the model's precision
    policy, because exponentials of scaled similarities overflow in float16. `capabilities` says
    what the loss can do (see `tfdml.losses.capabilities`); `part_names` names the parts of the loss
    that `with_parts` reports (e.g. CCP's proxy term), which the training step logs as `loss_<part>`.
    """

    capabilities: ClassVar[Capabilities] = Capabilities()
    part_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **kwargs: Any) -> None:
        misplaced = [key for key in ("reduction", "mining") if key in kwargs]
        if misplaced:
            raise Unsupported(f"{type(self).__name__} is not a pair loss, so it takes no {' or '.join(misplaced)}=; "
                              f"the pair losses do: {', '.join(losses_supporting('pair_based'))}")
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, embeddings: Any, labels: Any, training: bool | None = None, return_parts: bool = False) -> Any:
        loss, parts = self.with_parts(embeddings, labels, training)
        return (loss, parts) if return_parts else loss

    def with_parts(self, embeddings: Any, labels: Any, training: bool | None = None) -> tuple[Any, dict[str, Any]]:
        """The loss and its parts named in `part_names`, each its (weighted) contribution to the loss."""
        return self.compute(embeddings, labels), {}

    def compute(self, embeddings: Any, labels: Any, references: References | None = None) -> Any:
        """The loss of `embeddings` against `references` (default: the batch itself)."""
        if references is not None and not self.capabilities.accepts_references:
            raise ValueError(f"{self.name} compares the batch with its own parameters; it takes no other references")
        embeddings, labels = self.checked(embeddings, labels)
        return self._compute(embeddings, labels, references)

    def checked(self, embeddings: Any, labels: Any) -> tuple[Any, Any]:
        """Embeddings as float32 `[B, D]`, labels as int32 `[B]` (below `num_classes` for proxy losses)."""
        embeddings, labels = check_inputs(embeddings, labels, self.name)
        if self.capabilities.has_proxies:  # per-class parameters are indexed by label
            labels = assert_labels_below(labels, self.num_classes, self.name)
        return embeddings, labels

    def _compute(self, embeddings: Any, labels: Any, references: References | None) -> Any:
        raise NotImplementedError


class PairLoss(MetricLoss):
    """A loss over anchor/reference pairs, written once in `from_pairs(values, w_pos, w_neg)`.

    `values [A, M]` are the distance's outputs (similarities or distances, see `Distance`), `w_pos`
    and `w_neg` non-negative pair weights (hard masks, or Metrix's soft targets `y` and `1 - y`).
    `from_pairs` returns per-anchor `Terms` (or a tuple of them, reduced separately and added);
    `reduction` (see `tfdml.losses.reducers`) makes them a scalar, after `mining` (see
    `tfdml.losses.mining`) has reweighted the pairs.
    """

    capabilities = Capabilities(pair_based=True, accepts_references=True, mixable=True, needs_batch_positives=True)

    def __init__(self, distance: str | Distance = "cosine", reduction: str = "mean", mining: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.distance: Distance = get_distance(distance)
        self.reduction = check_reduction(reduction)
        self.mining = get_miner(mining)
        self.built = True  # no weights

    def _compute(self, embeddings: Any, labels: Any, references: References | None) -> Any:
        refs = references if references is not None else References.from_batch(embeddings, labels)
        values = self.distance(embeddings, ops.cast(refs.embeddings, "float32"))
        w_pos, w_neg = pair_weights(labels, refs)
        return self.loss_from_pairs(values, w_pos, w_neg)

    def loss_from_pairs(self, values: Any, w_pos: Any, w_neg: Any) -> Any:
        """The loss of given pairs: mining, `from_pairs`, then the reduction (Metrix calls it with soft targets)."""
        if self.mining is not None:
            w_pos, w_neg = self.mining(self.distance.closeness(values), w_pos, w_neg)
        return reduce_terms(self.from_pairs(values, w_pos, w_neg), self.reduction)

    def from_pairs(self, values: Any, w_pos: Any, w_neg: Any) -> Terms | tuple[Terms, ...]:
        raise NotImplementedError

    def anchors(self, embeddings: Any, labels: Any) -> tuple[Any, Any, Any]:
        """The rows `from_pairs` sums over: `(anchor embeddings [A, D], labels [A], batch index [A])`.

        The batch itself here; proxy-anchored losses return their proxies with index -1. Metrix
        compares these anchors with mixed embeddings under soft targets.
        """
        return embeddings, labels, ops.arange(ops.shape(labels)[0], dtype="int32")

    def get_config(self) -> dict:
        return {**super().get_config(), "distance": self.distance.name, "reduction": self.reduction,
                "mining": miner_config(self.mining)}


class LossWrapper(MetricLoss):
    """A loss around an inner loss, `self.inner` (a cross-batch memory, CCP's objective).

    Subclasses declare what the inner loss must support (`requires`), the capabilities in which they
    differ from it (`overrides`; the rest pass through), and whether they have their own Metrix
    objective (`mixes_itself`, with a `mixed` method; otherwise Metrix mixes the inner loss).
    `mining=` and `reduction=`, when given, set those of the innermost pair loss. The inner loss is
    saved under the config key `loss`, the name of the constructor's argument; a registered name
    (`"contrastive"`) stands for that loss with its default arguments.
    """

    requires: ClassVar[str] = "accepts_references"
    overrides: ClassVar[dict[str, bool]] = {}
    mixes_itself: ClassVar[bool] = False
    what: ClassVar[str] = "a loss wrapper"  # the wrapper's name in error messages

    def __init__(self, loss: MetricLoss | dict | str, mining: Any = None, reduction: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(loss, str):  # a registered name, with its default arguments
            loss = get_loss(loss)
        if isinstance(loss, dict):  # a serialised loss (the wrapper's saved config)
            loss = keras.saving.deserialize_keras_object(loss)
        require(loss, self.requires, f"{self.what} needs {DESCRIPTIONS[self.requires]} ({{supported}}); got {{got}}")
        self.inner = loss
        if mining is not None or reduction is not None:
            target = unwrap(loss)
            require(target, "pair_based", "mining= and reduction= apply to pair losses ({supported}); got {got}")
            target.mining = target.mining if mining is None else get_miner(mining)
            target.reduction = target.reduction if reduction is None else check_reduction(reduction)

    @property
    def capabilities(self) -> Capabilities:  # type: ignore[override]
        return dataclasses.replace(self.inner.capabilities, **self.overrides)

    def get_config(self) -> dict:
        return {**super().get_config(), "loss": keras.saving.serialize_keras_object(self.inner)}


def unwrap(loss: MetricLoss) -> MetricLoss:
    """The innermost loss of a chain of wrappers (`loss` itself when it wraps none)."""
    while isinstance(loss, LossWrapper):
        loss = loss.inner
    return loss

