"""Learned whitening of embeddings (Radenović, Tolias & Chum, TPAMI 2018, "learned whitening").

Fitted after training on the training classes' embeddings: a linear map that whitens the
*within-class* scatter, so the directions in which images of one class differ (a vendor's drawing
style, pose, lighting) weigh less in the distance than those in which classes differ. Shrinkage
towards a scaled identity keeps the inverse square root stable when a direction has little
within-class variance (few images per class). The layer applies it inside the model, so evaluation,
retrieval and SavedModels all see whitened, unit-length embeddings.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import layers, ops

from tfdml.evaluation.neighbours import l2_normalise
from tfdml.losses.core import l2_normalize


def fit_whitening(embeddings: np.ndarray, labels: np.ndarray, shrinkage: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """`(mean, projection)` that whiten the within-class scatter of `embeddings` (`[N, d]`, one label each).

    Whitened embeddings are `l2_normalize((x - mean) @ projection)` (`apply_whitening`). The scatter
    is shrunk towards `trace / d * I` by `shrinkage` in (0, 1]; 1 leaves only the centring.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> labels = np.repeat(np.arange(20), 4)
        >>> x = rng.normal(size=(80, 8)) + 3 * rng.normal(size=(20, 8))[labels]
        >>> mean, projection = fit_whitening(x, labels, shrinkage=0.2)
        >>> mean.shape, projection.shape
        ((8,), (8, 8))
    """
    x = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(labels)
    if x.ndim != 2 or len(labels) != len(x):
        raise ValueError(f"fit_whitening needs embeddings [N, d] and N labels, got embeddings of shape {x.shape} "
                         f"and {len(labels)} labels")
    if not 0.0 < shrinkage <= 1.0:
        raise ValueError(f"shrinkage must be in (0, 1] (0.2 is a good start; 1 only centres), got {shrinkage}")
    if not np.isfinite(x).all():
        raise ValueError(f"fit_whitening: {int((~np.isfinite(x)).any(axis=1).sum())} embeddings hold NaN or inf; "
                         "whiten a model whose outputs are finite")
    classes, index, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if counts.max() < 2:
        raise ValueError(f"fit_whitening needs classes with at least two embeddings (the within-class scatter), "
                         f"and each of the {len(classes)} classes has one")
    means = np.zeros((len(classes), x.shape[1]))
    np.add.at(means, index, x)
    deviations = x - (means / counts[:, None])[index]
    scatter = deviations.T @ deviations / max(1, int((counts - 1).sum()))
    scale = np.trace(scatter) / len(scatter)
    if scale <= 0:
        raise ValueError("fit_whitening: the images of each class have identical embeddings; nothing to whiten")
    scatter = (1 - shrinkage) * scatter + shrinkage * scale * np.eye(len(scatter))
    values, vectors = np.linalg.eigh(scatter)
    projection = (vectors / np.sqrt(values)) @ vectors.T  # the symmetric inverse square root
    return x.mean(axis=0).astype(np.float32), projection.astype(np.float32)


def apply_whitening(embeddings: np.ndarray, mean: np.ndarray, projection: np.ndarray) -> np.ndarray:
    """`l2_normalize((embeddings - mean) @ projection)` in numpy: what `Whitening` computes in the model."""
    return l2_normalise((np.asarray(embeddings, np.float32) - mean) @ projection)


def unfitted_whitening(dim: int, keep: int) -> tuple[np.ndarray, np.ndarray]:
    """`(mean, projection)` that keep the first `keep` of `dim` columns and zero the rest (no whitening)."""
    return np.zeros(dim, "float32"), np.diag((np.arange(dim) < keep).astype("float32"))


@keras.saving.register_keras_serializable(package="tfdml")
class Whitening(layers.Layer):
    """`l2_normalize((x - mean) @ projection)` with non-trainable `mean` and `projection`, so a model
    saved with it keeps its whitening.

    Until `set` gives it a fit it passes the first `keep` columns (default: all) and zeroes the rest:
    with `model.descriptor_layers` the input is the embedding followed by inner layers' pooled
    features, which join only through a fitted whitening (`unfitted()` is that selection).

    Example:
        >>> layer = Whitening(4)
        >>> layer.set(np.ones(4, "float32"), 2 * np.eye(4, dtype="float32"))
        >>> np.round(np.asarray(layer(np.array([[2.0, 1.0, 1.0, 1.0]], "float32"))), 3)
        array([[1., 0., 0., 0.]], dtype=float32)
    """

    def __init__(self, dim: int, keep: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dim = int(dim)
        self.keep = self.dim if keep is None else int(keep)
        if not 0 < self.keep <= self.dim:
            raise ValueError(f"keep must be in [1, {self.dim}], got {self.keep}")
        self.mean = self.add_weight(shape=(self.dim,), initializer="zeros", trainable=False, name="mean")
        self.projection = self.add_weight(shape=(self.dim, self.dim), trainable=False, name="projection",
                                          initializer=lambda shape, dtype=None: ops.cast(self.unfitted()[1], dtype))

    def unfitted(self) -> tuple[np.ndarray, np.ndarray]:
        """`(mean, projection)` before a fit (`unfitted_whitening`)."""
        return unfitted_whitening(self.dim, self.keep)

    def set(self, mean: np.ndarray, projection: np.ndarray) -> None:
        """Use the whitening `fit_whitening` returned."""
        if np.shape(mean) != (self.dim,) or np.shape(projection) != (self.dim, self.dim):
            raise ValueError(f"this whitening is {self.dim}-d: it needs a mean of shape ({self.dim},) and a projection "
                             f"of ({self.dim}, {self.dim}), got {np.shape(mean)} and {np.shape(projection)}")
        self.mean.assign(np.asarray(mean, "float32"))
        self.projection.assign(np.asarray(projection, "float32"))

    def call(self, x: Any) -> Any:
        return l2_normalize(ops.matmul(ops.cast(x, "float32") - self.mean, self.projection))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "dim": self.dim, "keep": self.keep}
