"""Pixel conventions: layers that turn RGB 0-255 into what a backbone was trained on.

| convention | RGB 0-255 becomes | used by |
|---|---|---|
| `tf` | scaled to [-1, 1] | MobileNet V1/V2, Inception, Xception, NASNet, ResNet V2, small_cnn |
| `caffe` | BGR minus the ImageNet mean, no scaling | ResNet (V1), VGG, BN-Inception (its own mean) |
| `torch` | scaled to [0, 1], minus the ImageNet mean, over its std | DenseNet |
| `none` | unchanged (the model normalises inside) | EfficientNet, EfficientNetV2, ConvNeXt, MobileNetV3 |

These are the formulas of `keras.applications.<family>.preprocess_input` (tests check each family).
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
from keras import layers, ops

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
CONVENTIONS = ("tf", "caffe", "torch", "none")


@keras.saving.register_keras_serializable(package="tfdml")
class CaffePreprocess(layers.Layer):
    """The Caffe convention: RGB 0-255 -> BGR minus a per-channel `mean` (BGR order), no scaling.

    The default mean is keras.applications' ImageNet one (ResNet-50); BN-Inception passes its own.
    """

    def __init__(self, mean: Sequence[float] = (103.939, 116.779, 123.68), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mean = tuple(float(v) for v in mean)

    def call(self, images: Any) -> Any:
        mean = ops.convert_to_tensor(self.mean, dtype=self.compute_dtype)
        return ops.flip(ops.cast(images, self.compute_dtype), axis=-1) - mean

    def get_config(self) -> dict:
        return {**super().get_config(), "mean": list(self.mean)}


@keras.saving.register_keras_serializable(package="tfdml")
class PixelConvention(layers.Layer):
    """RGB 0-255 -> the input convention `tf`, `caffe`, `torch` or `none` (see the module table).

    Example:
        >>> import numpy as np
        >>> np.asarray(PixelConvention("tf")(np.array([[0.0, 127.5, 255.0]], "float32"))).round(3).tolist()
        [[-1.0, 0.0, 1.0]]
    """

    def __init__(self, convention: str = "tf", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if convention not in CONVENTIONS:
            raise ValueError(f"pixel convention must be one of {', '.join(CONVENTIONS)}; got {convention!r}")
        self.convention = convention

    def call(self, images: Any) -> Any:
        x = ops.cast(images, self.compute_dtype)
        if self.convention == "tf":
            return x / 127.5 - 1.0
        if self.convention == "caffe":
            return ops.flip(x, axis=-1) - ops.convert_to_tensor((103.939, 116.779, 123.68), self.compute_dtype)
        if self.convention == "torch":
            mean = ops.convert_to_tensor(IMAGENET_MEAN_RGB, self.compute_dtype)
            std = ops.convert_to_tensor(IMAGENET_STD_RGB, self.compute_dtype)
            return (x / 255.0 - mean) / std
        return x

    def get_config(self) -> dict:
        return {**super().get_config(), "convention": self.convention}
