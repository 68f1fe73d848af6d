"""The embedding head: pooling, a linear layer, a normalisation (L2, or CCP's unit-ball projection) and,
optionally, a learned whitening fitted after training."""

from __future__ import annotations

from typing import Any, Sequence

import keras
from keras import layers, ops

from tfdml.losses.core import l2_normalize, unit_ball
from tfdml.models.whitening import Whitening

#: `l2`: unit vectors; `unit_ball`: `v / max(1, ||v||)`, CCP's normalisation (norms <= 1); `none`: raw.
NORMALIZATIONS = {"l2": l2_normalize, "unit_ball": unit_ball, "none": lambda x: x}


@keras.saving.register_keras_serializable(package="tfdml")
class EmbeddingHead(layers.Layer):
    """Feature map `[B, H, W, C]` -> embedding `[B, dim]`, unit-norm by default.

    `pooling` is `avg`, `max` or `avg+max` (the two summed, as in Metrix and the peer's small CNN).
    `normalize` is `l2` (unit vectors), `unit_ball` (CCP: `v / max(1, ||v||)`, so norms can be < 1)
    or `none`; `True`/`False` (files saved before the option had names) mean `l2`/`none`.
    `whitening=True` (an `l2` head only) adds a `Whitening` layer after the normalisation, the
    identity until `head.whitening.set(...)` gives it a fit (`tfdml.models.fit_whitening`); it acts
    at inference only: losses train on the embeddings it whitens. `descriptor_dims` (with
    whitening) are the channels of inner backbone layers whose feature maps `call` takes as `taps`
    at inference (`tfdml.models.tap_backbone`): pooled and unit-length, they follow the embedding
    into the whitening (`describe`), which zeroes them until it is fitted.

    Example:
        >>> import numpy as np
        >>> head = EmbeddingHead(8)
        >>> tuple(head(np.ones((2, 4, 4, 16), "float32")).shape)
        (2, 8)
        >>> EmbeddingHead(8, normalize="unit_ball").normalize
        'unit_ball'
    """

    def __init__(self, dim: int = 128, pooling: str = "avg+max", normalize: str | bool = "l2",
                 whitening: bool = False, descriptor_dims: Sequence[int] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if pooling not in ("avg", "max", "avg+max"):
            raise ValueError(f"pooling must be 'avg', 'max' or 'avg+max', got {pooling!r}")
        if isinstance(normalize, bool):
            normalize = "l2" if normalize else "none"
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {', '.join(map(repr, NORMALIZATIONS))}, got {normalize!r}")
        if whitening and normalize != "l2":
            raise ValueError(f"whitening acts on unit-length embeddings: it needs normalize='l2', got {normalize!r}")
        if descriptor_dims and not whitening:
            raise ValueError("descriptor_dims join the embedding through the whitening: they need whitening=True")
        self.dim, self.pooling, self.normalize = int(dim), pooling, normalize
        self.descriptor_dims = [int(d) for d in descriptor_dims]
        self.linear = layers.Dense(self.dim, name="linear")
        self.whitening = (Whitening(self.dim + sum(self.descriptor_dims), keep=self.dim, name="whitening")
                          if whitening else None)

    def build(self, input_shape: tuple) -> None:
        self.linear.build((input_shape[0], input_shape[-1]))
        if self.whitening is not None:
            self.whitening.build((input_shape[0], self.whitening.dim))

    def pool(self, features: Any) -> Any:
        pooled = 0.0
        if "avg" in self.pooling:
            pooled = pooled + ops.mean(features, axis=(1, 2))
        if "max" in self.pooling:
            pooled = pooled + ops.max(features, axis=(1, 2))
        return pooled

    def call(self, features: Any, training: bool = False, taps: Sequence[Any] = ()) -> Any:
        embeddings = self.linear(self.pool(features))
        # Normalise in float32: a float16 norm of 128+ squares can overflow under mixed precision.
        embeddings = self.project(ops.cast(embeddings, "float32"))
        if self.whitening is not None and not training:  # fitted after training, on what the loss trained
            if len(taps) != len(self.descriptor_dims):
                raise ValueError(f"this head takes {len(self.descriptor_dims)} descriptor feature maps (taps), got "
                                 f"{len(taps)}: call the model, which passes its backbone's tapped layers")
            embeddings = self.whitening(self.describe(embeddings, taps))
        return embeddings

    def describe(self, embeddings: Any, taps: Sequence[Any] = ()) -> Any:
        """The raw descriptor the whitening takes: `embeddings`, then each tap pooled and unit-length, all
        normalised together (the whitening's fit and its input must agree in scale: it centres)."""
        if not taps:
            return embeddings
        parts = [embeddings] + [l2_normalize(ops.cast(self.pool(t), "float32")) for t in taps]
        return l2_normalize(ops.concatenate(parts, axis=-1))  # unit length: what the identity whitening outputs

    def project(self, embeddings: Any) -> Any:
        """This head's normalisation (Metrix re-applies it to embedding-level mixtures)."""
        return NORMALIZATIONS[self.normalize](embeddings)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], self.dim)

    def get_config(self) -> dict:
        return {**super().get_config(), "dim": self.dim, "pooling": self.pooling, "normalize": self.normalize,
                "whitening": self.whitening is not None, "descriptor_dims": self.descriptor_dims}
