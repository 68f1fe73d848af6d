"""Any `keras.applications` model as a backbone: `model.backbone: keras/<Application>`.

`keras/MobileNet`, `keras/EfficientNetV2B0`, `keras/ResNet50`, `keras/ConvNeXtTiny`, ... (the class
names of `keras.applications`), without the classifier, after a `preprocess` layer that applies the
family's own pixel convention (`tfdml.models.pixels`), so the backbone takes RGB 0-255 like every
other. `model.backbone_args` passes the application's own arguments through (e.g. `alpha` for
MobileNet); `model.backbone_weights` is `imagenet` (Keras's download and cache, `~/.keras/models`)
or a local file (`.weights.h5`, `.keras`, or a Keras-2 `.h5` matched by layer name).

Example:
    >>> backbone = keras_backbone("MobileNet")(input_shape=(64, 64, 3), alpha=0.25)
    >>> backbone.output_shape, backbone.get_layer("preprocess").convention
    ((None, 2, 2, 256), 'tf')
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable

import keras

from tfdml.errors import ConfigError
from tfdml.models.pixels import PixelConvention
from tfdml.models.registry import KERAS_PREFIX, load_backbone_weights

# The pixel convention of each keras.applications family (the module of the application), i.e. what
# its `preprocess_input` does. `none`: the model normalises inside (`include_preprocessing=True`).
FAMILY_CONVENTIONS = {
    "mobilenet": "tf", "mobilenet_v2": "tf", "inception_v3": "tf", "inception_resnet_v2": "tf",
    "xception": "tf", "nasnet": "tf", "resnet_v2": "tf",
    "resnet": "caffe", "vgg16": "caffe", "vgg19": "caffe",
    "densenet": "torch",
    "efficientnet": "none", "efficientnet_v2": "none", "convnext": "none", "mobilenet_v3": "none",
    "regnet": "none",
}
# Constructor arguments tfdml sets itself: a backbone is the network without its classifier.
_FIXED = ("include_top", "weights", "input_tensor", "input_shape", "pooling", "classes", "classifier_activation",
          "include_preprocessing", "name")


def applications() -> list[str]:
    """The class names of `keras.applications` (each usable as `keras/<name>`)."""
    return sorted(n for n in dir(keras.applications) if n[:1].isupper() and callable(getattr(keras.applications, n)))


def family(name: str) -> str:
    """The module of application `name`, e.g. `mobilenet_v2` for `MobileNetV2`."""
    return getattr(keras.applications, name).__module__.rsplit(".", 1)[-1]


def keras_backbone(name: str) -> Callable[..., keras.Model]:
    """A builder `(input_shape, weights=None, **args) -> keras.Model` for `keras.applications.<name>`."""
    known = applications()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f"; did you mean `{KERAS_PREFIX}{close[0]}`?" if close else "."
        raise ConfigError(f"`{KERAS_PREFIX}{name}` is not a keras.applications model{hint} Known: {', '.join(known)}")
    if family(name) not in FAMILY_CONVENTIONS:
        raise ConfigError(f"tfdml does not know the pixel convention of the keras.applications family "
                          f"`{family(name)}` ({name}); add it to tfdml.models.keras_applications.FAMILY_CONVENTIONS")
    application = getattr(keras.applications, name)
    params = inspect.signature(application).parameters

    def build(input_shape: tuple[int, int, int], weights: str | None = None, **args: Any) -> keras.Model:
        unknown = sorted(set(args) - set(build.arguments))
        if unknown:
            raise ValueError(f"{unknown[0]} is not an argument of keras.applications.{name}; "
                             f"its arguments: {', '.join(build.arguments)}")
        if "include_preprocessing" in params:
            args["include_preprocessing"] = True
        inputs = keras.Input(input_shape, name="image")
        x = PixelConvention(FAMILY_CONVENTIONS[family(name)], name="preprocess")(inputs)
        core = _application(name, input_shape, imagenet=weights == "imagenet", **args)
        if weights and weights != "imagenet":
            load_backbone_weights(core, weights, f"{KERAS_PREFIX}{name}", _local_hint(name), by_name=True)
        return keras.Model(inputs, core(x), name=f"keras_{name.lower()}")

    build.arguments = [p for p in params if p not in _FIXED]  # type: ignore[attr-defined]
    build.__doc__ = f"keras.applications.{name} without its classifier, RGB 0-255 in."
    return build


def _application(name: str, input_shape: tuple[int, int, int], imagenet: bool, **args: Any) -> keras.Model:
    application = getattr(keras.applications, name)
    if not imagenet:
        return application(include_top=False, weights=None, input_shape=input_shape, **args)
    try:
        return application(include_top=False, weights="imagenet", input_shape=input_shape, **args)
    except Exception as err:  # noqa: BLE001 - keras.utils.get_file raises a bare Exception when offline
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        if "fetch failure" in message or isinstance(err, OSError):
            raise ConfigError(f"could not download the ImageNet weights of keras.applications.{name} ({message}); "
                              f"{_local_hint(name)}") from None
        raise ConfigError(f"keras.applications.{name} with ImageNet weights: {message}") from None


def _local_hint(name: str) -> str:
    return (f"on a machine with internet, `keras.applications.{name}(include_top=False, weights='imagenet')"
            f".save_weights('{name.lower()}_notop.weights.h5')` (or copy Keras's cached file from ~/.keras/models/), "
            f"then set `model.backbone_weights: /path/to/that/file` here")
