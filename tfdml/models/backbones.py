"""Backbones: image `[B, H, W, 3]` in pixel values 0-255 -> feature map `[B, h, w, C]`.

Each backbone owns its pixel normalisation, so the data pipeline and exported models always hand
over plain RGB pixel values (uint8 or float in [0, 255]) and each backbone converts them in its
first layer:

| backbone | its first layer turns RGB 0-255 into | usual size |
|---|---|---|
| `small_cnn` | RGB rescaled to [-1, 1] (`Rescaling(1/127.5, offset=-1)`) | 32 |
| `resnet50` | BGR minus the ImageNet mean [103.939, 116.779, 123.68], no scaling (Keras's "caffe") | 224 |
| `bn_inception` | BGR minus the Caffe model's mean [104, 117, 128], no scaling | 227 (224 works too) |
| `keras/<Application>` | the family's own convention (`tfdml.models.keras_applications`) | any |

Pretrained weights come from local files (`weights=`); only `keras/...` backbones with
`weights="imagenet"` download (Keras's own cache), and say so in one line when offline.

Example:
    >>> build_backbone("small_cnn", (32, 32, 3)).output_shape
    (None, 4, 4, 256)
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import layers

from tfdml.models.pixels import CaffePreprocess
from tfdml.models.registry import (BACKBONES, backbone_arguments, build_backbone, freeze_batchnorm,  # noqa: F401
                                   load_backbone_weights, register_backbone, resolve_backbone)


@register_backbone("small_cnn")
def small_cnn(input_shape: tuple[int, int, int] = (32, 32, 3), widths: Sequence[int] = (32, 64, 128, 256),
              weights: str | None = None, bn_momentum: float = 0.9) -> keras.Model:
    """A VGG-style CNN for small images: per width, two 3x3 conv + BN + ReLU, then 2x2 max pooling
    (none after the last block, whose map the head pools).

    `bn_momentum` is the BatchNorm moving-average momentum. It only changes the statistics used at
    evaluation (training normalises by the batch). The default 0.9 is PyTorch's convention: with
    Keras's 0.99, 8-epoch emoji runs (208 steps) were evaluated with unsettled statistics, which cost
    2-4 points of R@1; at 34 epochs both give the same validation metric (benchmarks/RESULTS.md).

    Example:
        >>> small_cnn((32, 32, 3)).output_shape
        (None, 4, 4, 256)
    """
    if not 0.0 <= bn_momentum < 1.0:
        raise ValueError(f"bn_momentum must be in [0, 1), e.g. 0.9 or 0.99; got {bn_momentum}")
    inputs = keras.Input(input_shape, name="image")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale")(inputs)
    for i, width in enumerate(widths):
        for j in range(2):
            x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"block{i}_conv{j}")(x)
            x = layers.BatchNormalization(momentum=bn_momentum, name=f"block{i}_bn{j}")(x)
            x = layers.ReLU(name=f"block{i}_relu{j}")(x)
        if i < len(widths) - 1:
            x = layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
    model = keras.Model(inputs, x, name="small_cnn")
    if weights:
        load_backbone_weights(model, weights, "small_cnn")
    return model


RESNET50_HINT = (
    "Keras's ImageNet ResNet-50 file (resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5) cannot be "
    "downloaded at run time here; copy it from a machine that has it (e.g. ~/.keras/models/) and set "
    "`model.backbone_weights: /path/to/file` in the config (or model.backbone_weights=... on the command "
    "line), set `model.backbone_weights: null` to start from random weights, or use `model.backbone: "
    "keras/ResNet50` with `model.backbone_weights: imagenet` where the internet is reachable."
)


@register_backbone("resnet50")
def resnet50(input_shape: tuple[int, int, int] = (224, 224, 3), weights: str | None = None) -> keras.Model:
    """ResNet-50 from `keras.applications` without its classifier; ImageNet weights from a local file."""
    inputs = keras.Input(input_shape, name="image")
    x = CaffePreprocess(name="preprocess")(inputs)
    core = keras.applications.ResNet50(include_top=False, weights=None, input_shape=input_shape)
    model = keras.Model(inputs, core(x), name="resnet50")
    if weights:
        load_backbone_weights(core, weights, "resnet50", RESNET50_HINT)
    return model
