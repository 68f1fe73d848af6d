"""BN-Inception (Ioffe & Szegedy 2015), the backbone of the MLRC/CCP protocol, as a Keras functional model.

The graph and the layer names follow Cadene's `pretrainedmodels` ``bninception`` (itself converted
from Caffe), so its ImageNet weights map one-to-one onto this model: ``conv1_7x7_s2``,
``conv1_7x7_s2_bn``, ``inception_3a_1x1``, ``inception_3a_double_3x3_2_bn``, ... Convolutions keep
their biases and BatchNorm uses epsilon 1e-5, as there. Input: RGB 0-255; the ``preprocess`` layer
turns it into the Caffe model's BGR minus ``[104, 117, 128]`` (no scaling). Output: the 1024-channel
map of ``inception_5b`` before pooling (7x7 at 224 or 227 px); the EmbeddingHead pools it.

Weights (``weights=``): a ``.weights.h5`` file written by ``save_weights`` of this model, or a
Keras-2-style ``.h5`` file, loaded by layer name (layers the model lacks, such as the classifier
``last_linear``, are skipped). :func:`convert_pretrainedmodels` writes the latter from the PyTorch
checkpoint.

Example (not run as a doctest: it builds an 11M-parameter network, slow on CPU):
    >>> bn_inception((227, 227, 3)).output_shape  # doctest: +SKIP
    (None, 7, 7, 1024)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers

from tfdml.models.pixels import CaffePreprocess
from tfdml.models.registry import load_backbone_weights, register_backbone

BN_INCEPTION_MEAN = (104.0, 117.0, 128.0)  # BGR, from the Caffe model
BN_INCEPTION_URL = "http://data.lip6.fr/cadene/pretrainedmodels/bn_inception-52deb4733.pth"
BN_INCEPTION_HINT = (
    f"Download the ImageNet BN-Inception checkpoint ({BN_INCEPTION_URL}, Cadene's pretrainedmodels) on a "
    "machine with internet access and convert it there with `python -m tfdml.models.bn_inception "
    "bn_inception-52deb4733.pth bn_inception.h5` (needs torch), copy the .h5 file here and set "
    "`model.backbone_weights: /path/to/bn_inception.h5`, or set `model.backbone_weights: null` to "
    "start from random weights."
)

# name: (1x1, (3x3 reduce, 3x3), (double reduce, double 3x3), pool projection, pool kind, stride)
# A stride-2 block has no 1x1 or projection branch and max-pools; "max" at stride 1 is 5b's.
_BLOCKS: dict[str, tuple] = {
    "3a": (64, (64, 64), (64, 96), 32, "avg", 1),
    "3b": (64, (64, 96), (64, 96), 64, "avg", 1),
    "3c": (0, (128, 160), (64, 96), 0, "max", 2),
    "4a": (224, (64, 96), (96, 128), 128, "avg", 1),
    "4b": (192, (96, 128), (96, 128), 128, "avg", 1),
    "4c": (160, (128, 160), (128, 160), 128, "avg", 1),
    "4d": (96, (128, 192), (160, 192), 128, "avg", 1),
    "4e": (0, (128, 192), (192, 256), 0, "max", 2),
    "5a": (352, (192, 320), (160, 224), 128, "avg", 1),
    "5b": (352, (192, 320), (192, 224), 128, "max", 1),
}


def _conv_bn(x: Any, filters: int, kernel: int, name: str, stride: int = 1) -> Any:
    """Conv (with bias) + BN + ReLU; padding (kernel - 1) / 2 on every side, as in Caffe."""
    pad = (kernel - 1) // 2
    if pad and stride > 1:  # Keras "same" would pad asymmetrically at stride 2 on even sizes
        x = layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same" if stride == 1 else "valid", name=name)(x)
    x = layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _ceil_max_pool(x: Any, name: str, out: int | None = None) -> Any:
    """3x3/2 max pooling with PyTorch's ``ceil_mode=True``: the last window may overhang the border.

    Zero padding is exact here because every pooled map follows a ReLU. ``out`` (the parallel conv
    branch's size) pads one more pixel on odd sizes, where the original cannot concatenate at all.
    """
    size = x.shape[1]
    pad = 1 if out is None or size is None else max(2 * out + 1 - size, 0)
    x = layers.ZeroPadding2D(((0, pad), (0, pad)), name=f"{name}_pad")(x)
    return layers.MaxPooling2D(3, strides=2, name=name)(x)


def _inception(x: Any, block: str) -> Any:
    n1x1, (r3, n3), (rd, nd), proj, pool, stride = _BLOCKS[block]
    p = f"inception_{block}"
    branches = [_conv_bn(x, n1x1, 1, f"{p}_1x1")] if n1x1 else []
    y = _conv_bn(x, r3, 1, f"{p}_3x3_reduce")
    branches.append(_conv_bn(y, n3, 3, f"{p}_3x3", stride))
    y = _conv_bn(x, rd, 1, f"{p}_double_3x3_reduce")
    y = _conv_bn(y, nd, 3, f"{p}_double_3x3_1")
    branches.append(_conv_bn(y, nd, 3, f"{p}_double_3x3_2", stride))
    if stride == 2:
        branches.append(_ceil_max_pool(x, f"{p}_pool", out=branches[-1].shape[1]))
    else:
        if pool == "avg":  # PyTorch/Caffe count the zero padding in the average (always / 9)
            y = layers.ZeroPadding2D(1, name=f"{p}_pool_pad")(x)
            y = layers.AveragePooling2D(3, strides=1, name=f"{p}_pool")(y)
        else:
            y = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{p}_pool")(x)
        branches.append(_conv_bn(y, proj, 1, f"{p}_pool_proj"))
    return layers.Concatenate(name=f"{p}_output")(branches)


@register_backbone("bn_inception")
def bn_inception(input_shape: tuple[int, int, int] = (227, 227, 3), weights: str | None = None) -> keras.Model:
    """BN-Inception without its classifier: RGB 0-255 ``[B, H, W, 3]`` -> ``[B, H/32, W/32, 1024]``.

    Example (not run as a doctest: it builds an 11M-parameter network, slow on CPU):
        >>> bn_inception((224, 224, 3)).count_params()  # doctest: +SKIP
        10290272
    """
    inputs = keras.Input(input_shape, name="image")
    x = CaffePreprocess(mean=BN_INCEPTION_MEAN, name="preprocess")(inputs)
    x = _conv_bn(x, 64, 7, "conv1_7x7_s2", stride=2)
    x = _ceil_max_pool(x, "pool1_3x3_s2")
    x = _conv_bn(x, 64, 1, "conv2_3x3_reduce")
    x = _conv_bn(x, 192, 3, "conv2_3x3")
    x = _ceil_max_pool(x, "pool2_3x3_s2")
    for block in _BLOCKS:
        x = _inception(x, block)
    model = keras.Model(inputs, x, name="bn_inception")
    if weights:
        load_backbone_weights(model, weights, "bn_inception", BN_INCEPTION_HINT, by_name=True)
    return model


def pretrainedmodels_to_keras(state_dict: Mapping[str, Any]) -> dict[str, list[np.ndarray]]:
    """PyTorch ``bninception`` tensors (``conv1_7x7_s2.weight``, ``..._bn.running_var``) -> weights per Keras layer.

    Conv kernels go from ``[out, in, kh, kw]`` to ``[kh, kw, in, out]``; BN weights are ordered as
    Keras keeps them (gamma, beta, moving mean, moving variance). The classifier is kept too, under
    its own name, and skipped when loading by name.
    """
    arrays = {k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v, np.float32)
              for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
    out: dict[str, list[np.ndarray]] = {}
    for layer in sorted({k.rsplit(".", 1)[0] for k in arrays}):
        if f"{layer}.running_mean" in arrays:
            out[layer] = [arrays[f"{layer}.{p}"] for p in ("weight", "bias", "running_mean", "running_var")]
        elif arrays[f"{layer}.weight"].ndim == 4:
            out[layer] = [arrays[f"{layer}.weight"].transpose(2, 3, 1, 0), arrays[f"{layer}.bias"]]
        else:  # last_linear: [out, in] -> [in, out]
            out[layer] = [arrays[f"{layer}.weight"].T, arrays[f"{layer}.bias"]]
    return out


def save_by_name(weights: Mapping[str, list[np.ndarray]], path: str | Path) -> None:
    """Write ``{layer name: [arrays]}`` as a Keras-2-style ``.h5`` weights file, which loads by layer name."""
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n in weights])
        for name, arrays in weights.items():
            group = f.create_group(name)
            group.attrs["weight_names"] = np.array([f"{name}/{i}".encode() for i in range(len(arrays))])
            for i, array in enumerate(arrays):
                group.create_dataset(f"{name}/{i}", data=array)


def convert_pretrainedmodels(checkpoint: str | Path, out: str | Path) -> None:
    """Convert Cadene's ``bn_inception-52deb4733.pth`` (needs torch) into a by-name ``.h5`` file for ``weights=``."""
    import torch  # only for the conversion, on a machine that has it

    save_by_name(pretrainedmodels_to_keras(torch.load(checkpoint, map_location="cpu")), out)
    bn_inception(weights=str(out))  # fails here, naming the problem, if a layer does not fit


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3:
        sys.exit("usage: python -m tfdml.models.bn_inception bn_inception-52deb4733.pth bn_inception.h5")
    convert_pretrainedmodels(sys.argv[1], sys.argv[2])
