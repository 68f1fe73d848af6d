"""The pair core: distances, references and pair weights shared by every pair loss (reducers: `reducers.py`).

A pair loss compares anchors (the batch) with *references*: the batch itself (self-pairs excluded),
class proxies, or a memory of past embeddings with a validity mask. All three are one `References`
value, so a loss is written once, as a function of a `[B, M]` closeness matrix and two `[B, M]` pair
weight matrices (`w_pos`, `w_neg`). With hard labels the weights are 0/1 masks; Metrix passes soft
targets through the same code.

Example:
    >>> import numpy as np
    >>> from tfdml.losses import core
    >>> emb = core.l2_normalize(np.eye(3, dtype="float32"))
    >>> refs = core.References.from_batch(emb, np.array([0, 0, 1]))
    >>> w_pos, w_neg = core.pair_weights(np.array([0, 0, 1]), refs)
    >>> np.asarray(w_pos).tolist()
    [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import keras
import tensorflow as tf
from keras import ops

from tfdml.losses.reducers import REDUCTIONS, reduce  # noqa: F401  (re-exported: the pair core's reducers)

_EPS = 1e-12


# ----------------------------------------------------------------------------- normalisation


def l2_normalize(x: Any, axis: int = -1) -> Any:
    """`x / ||x||` (zero rows stay zero)."""
    return x / ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=axis, keepdims=True), _EPS))


def unit_ball(x: Any, axis: int = -1) -> Any:
    """Projection onto the unit ball, `x / max(1, ||x||)` (CCP's "Lipschitz" normalisation)."""
    return x / ops.maximum(ops.norm(x, axis=axis, keepdims=True), 1.0)


# ----------------------------------------------------------------------------- distances


class Distance:
    """Pairwise comparison of `[B, D]` queries with `[M, D]` references.

    `is_similarity` says whether larger means closer, so losses can serve both families.
    """

    name: str = ""
    is_similarity: bool = False

    def __call__(self, queries: Any, references: Any) -> Any:
        raise NotImplementedError

    def closeness(self, values: Any) -> Any:
        """Map values so that larger always means closer (similarities unchanged, distances negated)."""
        return values if self.is_similarity else -values


class CosineSimilarity(Distance):
    """Inner product of L2-normalised vectors."""

    name, is_similarity = "cosine", True

    def __call__(self, queries: Any, references: Any) -> Any:
        return ops.matmul(l2_normalize(queries), ops.transpose(l2_normalize(references)))


class SquaredEuclidean(Distance):
    """`||q - r||^2`, via the expansion `|q|^2 + |r|^2 - 2 q.r` (clipped at 0)."""

    name = "squared_euclidean"

    def __call__(self, queries: Any, references: Any) -> Any:
        q2 = ops.sum(ops.square(queries), axis=-1, keepdims=True)
        r2 = ops.sum(ops.square(references), axis=-1, keepdims=True)
        return ops.maximum(q2 + ops.transpose(r2) - 2.0 * ops.matmul(queries, ops.transpose(references)), 0.0)


class Euclidean(SquaredEuclidean):
    """`||q - r||`, exactly 0 for identical vectors, with a zero (not NaN) gradient there."""

    name = "euclidean"

    def __call__(self, queries: Any, references: Any) -> Any:
        squared = super().__call__(queries, references)
        positive = squared > _EPS
        return ops.where(positive, ops.sqrt(ops.where(positive, squared, 1.0)), 0.0)


DISTANCES: dict[str, Callable[[], Distance]] = {
    cls.name: cls for cls in (CosineSimilarity, Euclidean, SquaredEuclidean)
}


def get_distance(distance: str | Distance) -> Distance:
    if isinstance(distance, Distance):
        return distance
    if distance not in DISTANCES:
        raise ValueError(f"unknown distance {distance!r}; choose one of {', '.join(DISTANCES)}")
    return DISTANCES[distance]()


# ----------------------------------------------------------------------------- references


@dataclass(frozen=True)
class References:
    """What anchors are compared with: `embeddings [M, D]`, `labels [M]`, `valid [M]` (float 0/1).

    `is_batch` marks references that are the anchors themselves, whose diagonal must be excluded.
    """

    embeddings: Any
    labels: Any
    valid: Any = None
    is_batch: bool = False

    @classmethod
    def from_batch(cls, embeddings: Any, labels: Any) -> "References":
        return cls(embeddings, labels, None, True)

    @classmethod
    def from_proxies(cls, proxies: Any, proxy_labels: Any) -> "References":
        return cls(proxies, proxy_labels)

    @classmethod
    def from_memory(cls, embeddings: Any, labels: Any, valid: Any) -> "References":
        return cls(embeddings, labels, valid)


def pair_weights(labels: Any, references: References) -> tuple[Any, Any]:
    """Hard 0/1 weights `[B, M]` of positive (same label) and negative pairs.

    Self-pairs (the diagonal of batch references) and invalid memory slots get weight 0 in both.
    """
    anchors, refs = ops.cast(labels, "int32"), ops.cast(references.labels, "int32")
    same = ops.cast(ops.equal(ops.expand_dims(anchors, 1), ops.expand_dims(refs, 0)), "float32")
    keep = ops.ones_like(same)
    if references.is_batch:
        keep = keep - ops.eye(ops.shape(same)[0], ops.shape(same)[1], dtype="float32")
    if references.valid is not None:
        keep = keep * ops.expand_dims(ops.cast(references.valid, "float32"), 0)
    return same * keep, (1.0 - same) * keep


# ----------------------------------------------------------------------------- input checks


def check_inputs(embeddings: Any, labels: Any, who: str) -> tuple[Any, Any]:
    """Embeddings as float32 `[B, D]` and labels as int32 `[B]`, or an error that says what would be right.

    Shapes and dtypes are checked when the loss is traced, so a mistake is named before TensorFlow
    meets it as a broadcasting error deep inside the loss.
    """
    embeddings, labels = ops.convert_to_tensor(embeddings), ops.convert_to_tensor(labels)
    e_shape, l_shape = tuple(embeddings.shape), tuple(labels.shape)
    if len(e_shape) != 2:
        raise ValueError(f"{who}: embeddings must be a matrix [batch, dim]; got shape {e_shape}")
    if len(l_shape) != 1:
        hint = "; squeeze the last axis" if len(l_shape) == 2 and l_shape[-1] == 1 else ""
        raise ValueError(f"{who}: labels must be a vector [batch] of integer class ids; got shape {l_shape}{hint}")
    dtype = keras.backend.standardize_dtype(labels.dtype)
    if not dtype.startswith(("int", "uint")):
        raise TypeError(f"{who}: labels must be integer class ids (int32 or int64); got dtype {dtype}. "
                        "One-hot or float labels are not accepted: pass the class index")
    if None not in (e_shape[0], l_shape[0]) and e_shape[0] != l_shape[0]:
        raise ValueError(f"{who}: {e_shape[0]} embeddings but {l_shape[0]} labels; there must be one label per row")
    return ops.cast(embeddings, "float32"), ops.cast(labels, "int32")


def assert_labels_below(labels: Any, limit: int, who: str) -> Any:
    """`labels`, with a run-time check that they lie in `0..limit-1` (a no-op under XLA, which drops asserts)."""
    message = (f"{who}: a label is outside 0..{limit - 1}, the classes its proxies cover; set num_classes to "
               "the number of training classes and give dense labels 0..num_classes-1")
    checks = [tf.debugging.assert_non_negative(labels, message=message),
              tf.debugging.assert_less(labels, tf.cast(limit, labels.dtype), message=message)]
    with tf.control_dependencies(checks):
        return tf.identity(labels)


# ----------------------------------------------------------------------------- log-sum-exps


def weighted_logsumexp(logits: Any, weights: Any, axis: int = -1) -> Any:
    """Stable `log(sum_i w_i exp(z_i))` with `w_i >= 0`; entries with `w_i = 0` are masked.

    A row with no positive weight gives `log(1e-30)` rather than `-inf` (callers mask it); use
    `weighted_log1p_sum_exp` where an empty sum must cost exactly 0.
    """
    active = weights > 0
    masked = ops.where(active, logits + ops.log(ops.where(active, weights, 1.0)), -1e30)
    peak = ops.stop_gradient(ops.max(masked, axis=axis, keepdims=True))
    peak = ops.where(peak > -1e29, peak, 0.0)
    total = ops.sum(ops.where(active, ops.exp(masked - peak), 0.0), axis=axis)
    return ops.log(ops.maximum(total, 1e-30)) + ops.squeeze(peak, axis)


def weighted_log1p_sum_exp(logits: Any, weights: Any, axis: int = -1) -> Any:
    """Stable `log(1 + sum_i w_i exp(z_i))` with `w_i >= 0`; entries with `w_i = 0` are masked.

    Computed as `softplus(logsumexp(z_i + log w_i))`, the form that keeps soft (Metrix) targets exact;
    an empty sum (no positive weight in the row) costs exactly 0.
    """
    lse = weighted_logsumexp(logits, weights, axis)
    return ops.where(ops.any(weights > 0, axis=axis), ops.softplus(lse), 0.0)
