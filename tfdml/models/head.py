"""The embedding head: pooling, a linear layer and L2 normalisation."""

from __future__ import annotations

from typing import Any

import keras
from keras import layers, ops

from tfdml.losses.core import l2_normalize


@keras.saving.register_keras_serializable(package="tfdml")
class EmbeddingHead(layers.Layer):
    """Feature map `[B, H, W, C]` -> unit embedding `[B, dim]`.

    `pooling` is `avg`, `max` or `avg+max` (the two summed, as in Metrix and the peer's small CNN).

    Example:
        >>> import numpy as np
        >>> head = EmbeddingHead(8)
        >>> head(np.ones((2, 4, 4, 16), "float32")).shape
        (2, 8)
    """

    def __init__(self, dim: int = 128, pooling: str = "avg+max", normalize: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if pooling not in ("avg", "max", "avg+max"):
            raise ValueError(f"pooling must be 'avg', 'max' or 'avg+max', got {pooling!r}")
        self.dim, self.pooling, self.normalize = int(dim), pooling, bool(normalize)
        self.linear = layers.Dense(self.dim, name="linear")

    def build(self, input_shape: tuple) -> None:
        self.linear.build((input_shape[0], input_shape[-1]))

    def pool(self, features: Any) -> Any:
        pooled = 0.0
        if "avg" in self.pooling:
            pooled = pooled + ops.mean(features, axis=(1, 2))
        if "max" in self.pooling:
            pooled = pooled + ops.max(features, axis=(1, 2))
        return pooled

    def call(self, features: Any) -> Any:
        embeddings = self.linear(self.pool(features))
        # Normalise in float32: a float16 norm of 128+ squares can overflow under mixed precision.
        embeddings = ops.cast(embeddings, "float32")
        return l2_normalize(embeddings) if self.normalize else embeddings

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], self.dim)

    def get_config(self) -> dict:
        return {**super().get_config(), "dim": self.dim, "pooling": self.pooling, "normalize": self.normalize}
