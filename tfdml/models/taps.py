"""Feature maps of a backbone's inner layers beside its output (`model.descriptor_layers`).

Retrieval descriptors often gain from an earlier layer's pooled features (finer, less class-tuned)
next to the trained embedding, once a learned whitening balances the two (`tfdml.models.whitening`).
`tap_backbone` rebuilds nothing: the model it returns shares the backbone's layers and weights.

Example:
    >>> from tfdml.models import build_backbone
    >>> backbone = build_backbone("keras/MobileNet", (64, 64, 3), alpha=0.25)
    >>> tapped = tap_backbone(backbone, ["conv_pw_11_relu"])
    >>> [tuple(shape) for shape in tapped.output_shape]
    [(None, 2, 2, 256), (None, 4, 4, 128)]
"""

from __future__ import annotations

import difflib
from typing import Sequence

import keras

from tfdml.models.registry import all_layers


def tap_backbone(backbone: keras.Model, names: Sequence[str]) -> keras.Model:
    """`images -> [backbone output, *feature maps of the layers named names]`, sharing `backbone`'s weights.

    The layers may sit in a model nested in `backbone` (as `keras/<Application>` backbones nest the
    application after their `preprocess` layer); the outer model must then be a chain of layers with
    one input each. Raises ValueError (one line) for an unknown name, a layer without a 4-D feature
    map, or layers spread over two nested models.
    """
    names = list(names)
    known = [layer.name for layer in all_layers(backbone)]
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3)
            raise ValueError(f"the backbone {backbone.name} has no layer {name!r}"
                             + (f"; did you mean {', '.join(map(repr, close))}?" if close else
                                f"; its layers include {', '.join(map(repr, known[-5:]))}"))
    outputs = _tapped_outputs(backbone, names)
    for name, tensor in zip(names, outputs[1:]):
        if len(tensor.shape) != 4:
            raise ValueError(f"layer {name!r} of {backbone.name} outputs shape {tuple(tensor.shape)}; a descriptor "
                             "layer needs a feature map [batch, height, width, channels]")
    return keras.Model(backbone.input, outputs, name=f"{backbone.name}_tapped")


def descriptor_channels(tapped: keras.Model) -> list[int]:
    """The channels of each tapped feature map of a `tap_backbone` model (the head's `descriptor_dims`)."""
    return [int(shape[-1]) for shape in tapped.output_shape[1:]]


def _tapped_outputs(model: keras.Model, names: list[str]) -> list:
    """Symbolic `[model.output, *taps]` on `model`'s own inputs."""
    direct = {layer.name for layer in model.layers}
    if all(name in direct for name in names):
        return [model.output] + [model.get_layer(name).output for name in names]
    holders = [layer for layer in model.layers if isinstance(layer, keras.Model)
               and all(name in {inner.name for inner in all_layers(layer)} for name in names)]
    if not holders:
        raise ValueError(f"the descriptor layers {names} lie in different parts of {model.name}; "
                         "name layers of one (nested) model")
    holder = holders[0]
    inner = keras.Model(holder.input, _tapped_outputs(holder, names), name=f"{holder.name}_tapped")
    # Replay the outer chain with the tapped inner model in its place.
    x = model.inputs[0]
    taps: list = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if len(keras.tree.flatten(layer._inbound_nodes[0].input_tensors)) != 1:  # [0]: the model's own call
            raise ValueError(f"{model.name} is not a chain of single-input layers ({layer.name}); name descriptor "
                             "layers of its outer model instead")
        if layer is holder:
            x, *taps = inner(x)
        else:
            x = layer(x)
    return [x, *taps]
