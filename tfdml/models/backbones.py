"""Backbones: image `[B, H, W, 3]` in pixel values 0-255 -> feature map `[B, h, w, C]`.

Each backbone owns its pixel normalisation, so the data pipeline and exported models always hand
over plain RGB pixel values (uint8 or float in [0, 255]) and each backbone converts them in its
first layer:

| backbone | its first layer turns RGB 0-255 into | usual size |
|---|---|---|
| `small_cnn` | RGB rescaled to [-1, 1] (`Rescaling(1/127.5, offset=-1)`) | 32 |
| `resnet50` | BGR minus the ImageNet mean [103.939, 116.779, 123.68], no scaling (Keras's "caffe") | 224 |
| `bn_inception` | BGR minus the Caffe model's mean [104, 117, 128], no scaling | 227 (224 works too) |

Pretrained weights come from local files (`weights=`); nothing is downloaded at run time.

Example:
    >>> build_backbone("small_cnn", (32, 32, 3)).output_shape
    (None, 4, 4, 256)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import keras
from keras import layers, ops

from tfdml.errors import ConfigError

BACKBONES: dict[str, Callable[..., keras.Model]] = {}


def register_backbone(name: str) -> Callable:
    def wrap(fn: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
        BACKBONES[name] = fn
        return fn

    return wrap


def build_backbone(name: str, input_shape: tuple[int, int, int], weights: str | None = None, **args: Any) -> keras.Model:
    """Build a registered backbone, e.g. `build_backbone("small_cnn", (32, 32, 3))`."""
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}; known: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name](input_shape=input_shape, weights=weights, **args)


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
    "line), or set `model.backbone_weights: null` to start from random weights."
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


def load_backbone_weights(model: keras.Model, path: str, name: str, hint: str = "Check `model.backbone_weights`.",
                          by_name: bool = False) -> None:
    """Load a local weights file into `model`, or raise a ConfigError naming the file and `hint`.

    With `by_name`, a Keras-2-style `.h5` file (not `.weights.h5`) is matched by layer name, so
    converted files may hold extra layers (a classifier) but must cover every layer with weights.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"backbone weights file not found: {file}. {hint}")
    by_name = by_name and file.suffix == ".h5" and not file.name.endswith(".weights.h5")
    try:
        if by_name:
            _check_layer_names(model, file)
            model.load_weights(str(file), by_name=True)
        else:
            model.load_weights(str(file))
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - any load failure is a user-facing file problem
        raise ConfigError(f"could not load {name} weights from {file}: {err}. {hint}") from None


def _check_layer_names(model: keras.Model, file: Path) -> None:
    """Loading by name skips absent layers silently; a converted file must not leave any random."""
    import h5py

    with h5py.File(file, "r") as f:
        group = f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f else f
        names = {n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs.get("layer_names", [])}
    missing = [layer.name for layer in model.layers if layer.weights and layer.name not in names]
    if missing:
        raise ConfigError(f"{file} has no weights for {len(missing)} of the {model.name} layers (e.g. "
                          f"{', '.join(missing[:3])}); expected a file with those layer names, as written by "
                          f"tfdml.models.bn_inception.save_by_name or Keras 2's save_weights(..., 'x.h5')")


# Registers `bn_inception`; imported last because it builds on the helpers above.
from tfdml.models import bn_inception as _bn_inception  # noqa: E402,F401
