"""Guards for Keras habits that would silently do something else on a `DMLModel`.

`compile(loss=..., metrics=...)` is refused with what to do instead; a first batch without any
positive pair (a plain shuffled dataset) warns once, naming the m-per-class sampler; `predict`
composites RGBA and grey inputs on white as training does.

Example:
    >>> import numpy as np
    >>> has_positive_pair(np.array([3, 1, 3])), has_positive_pair(np.array([0, 1, 2]))
    (True, False)
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import tensorflow as tf

COMPILE_HINTS = {
    "loss": "the metric loss is part of the model: DMLModel(backbone, head, loss=tfdml.losses.MultiSimilarityLoss(...))",
    "metrics": ("retrieval metrics need the whole validation set, not batches: pass "
                "callbacks=[tfdml.evaluation.callback.RetrievalValidation(val_dataset)] to fit, or call "
                "model.evaluate(labelled_dataset) after it"),
    "weighted_metrics": "see metrics",
    "loss_weights": "weight terms inside the loss (e.g. CCP's w_pair/w_proxy, Metrix's weight)",
}
NO_POSITIVES = ("the first training batch has no two images of the same class, so a pair loss sees no positive pair "
                "and trains at loss 0; batch with tfdml.data.MPerClassSampler(labels, m=4, batch_size=...) and "
                "tfdml.data.train_dataset(table, sampler, image_size=...)")


def refuse_compile_arguments(kwargs: dict[str, Any]) -> None:
    """Raise ValueError for compile arguments a DMLModel would ignore, saying what to do instead."""
    for name, hint in COMPILE_HINTS.items():
        if kwargs.get(name) is not None:
            raise ValueError(f"DMLModel.compile does not take {name}= (it would be ignored); {hint}")


def has_positive_pair(labels: Any) -> bool:
    labels = np.asarray(labels).ravel()
    return len(np.unique(labels)) < len(labels)


def first_labels(x: Any, y: Any = None, batch_size: int | None = None) -> np.ndarray | None:
    """The labels of the first batch `fit` would see, when they can be read without side effects."""
    if isinstance(x, tf.data.Dataset):
        spec = x.element_spec
        if not (isinstance(spec, tuple) and len(spec) >= 2):
            return None
        for batch in x.take(1):
            return np.asarray(batch[1])
        return None
    if y is not None and hasattr(y, "__len__"):
        return np.asarray(y)[: batch_size or 32]
    return None


def warn_without_positive_pairs(model: Any, labels: np.ndarray | None) -> None:
    """Warn once per model when the first batch has no positive pair and the loss's positives come from the batch."""
    from tfdml.losses.capabilities import supports

    if labels is None or getattr(model, "_warned_no_positives", False):
        return
    if supports(model.metric_loss, "needs_batch_positives") and not has_positive_pair(labels):
        model._warned_no_positives = True
        warnings.warn(NO_POSITIVES, UserWarning, stacklevel=3)


def as_rgb(images: Any) -> Any:
    """RGB pixels 0-255 from 1-4 channel ones (alpha composited on white, as in training); a clear error otherwise."""
    from tfdml.data.pipeline import _composite_on_white

    message = ("DMLModel takes images [batch, height, width, channels] with 1 (grey), 2 (grey+alpha), 3 (RGB) or "
               "4 (RGBA) channels, values 0-255; got shape")
    channels = images.shape[-1]
    if images.shape.rank != 4 or (channels is not None and channels not in (1, 2, 3, 4)):
        raise ValueError(f"{message} {images.shape}")
    if channels == 3:
        return images
    if channels is None:  # a retraced predict function with relaxed shapes: check at run time
        c = tf.shape(images)[-1]
        check = tf.debugging.Assert(tf.logical_and(c >= 1, c <= 4), [message, tf.shape(images)])
        with tf.control_dependencies([check]):
            images = tf.identity(images)
    return _composite_on_white(tf.cast(images, tf.float32) / 255.0) * 255.0
